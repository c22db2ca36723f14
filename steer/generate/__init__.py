"""Steered generation: engines (hf, vllm), one prompt, chat, batch."""
