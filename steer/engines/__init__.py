"""Engines: the backends that complete rendered, steered prompts (``hf``: transformers; ``vllm``)."""
