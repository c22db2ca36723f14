"""The ``vllm`` engine: ``vllm.LLM`` with a ``LoRARequest`` for adapters; steer renders every prompt.

vLLM is optional and imported only when this engine is used. Prompts come from the same rendering
path as the ``hf`` engine (:func:`steer.generate.engine.steering_prompt`), so each row of a batch can
carry its own attributes; vLLM only completes text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from steer.errors import UsageError
from steer.generate.engine import Response, Sampling, model_template
from steer.templates import SteerTemplate
from steer.train.export import find_run_file

INSTALL = "vLLM is not installed: pip install 'steer[vllm]' (Linux with a CUDA GPU), or use --engine hf"


def sampling_params(sampling: Sampling, template: SteerTemplate) -> dict:
    """``vllm.SamplingParams`` keyword arguments for steer's sampling settings."""
    stop = list(dict.fromkeys(template.stop + sampling.stop))
    return {"temperature": sampling.temperature, "top_p": sampling.top_p,
            "top_k": sampling.top_k if sampling.top_k > 0 else -1, "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed, "stop": stop or None, "skip_special_tokens": True}


def model_and_adapter(path: str) -> tuple[str, str | None, dict | None]:
    """``(base model, adapter folder or None, steer.json or None)`` for a model argument."""
    folder = Path(path)
    spec = find_run_file(folder) if folder.is_dir() else None
    if spec is not None and (folder / "adapter_config.json").is_file():
        adapter = json.loads((folder / "adapter_config.json").read_text())
        return spec.get("base_model") or adapter["base_model_name_or_path"], str(folder), spec
    return path, None, spec


class VLLMEngine:
    """Generation with ``vllm.LLM`` (offline batch inference)."""

    def __init__(self, llm: Any, tokenizer: Any, template: SteerTemplate, lora: Any = None) -> None:
        self.llm, self.tokenizer, self.template, self.lora = llm, tokenizer, template, lora
        self.context_length = llm.llm_engine.model_config.max_model_len

    @classmethod
    def load(cls, path: str, *, template: str | None = None, schema: str | None = None, dtype: str = "auto") -> VLLMEngine:
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise UsageError(INSTALL) from None
        from transformers import AutoTokenizer

        base, adapter, spec = model_and_adapter(path)
        tokenizer = AutoTokenizer.from_pretrained(adapter or path)
        steering = model_template(tokenizer, spec, kind=template, schema=schema)
        llm = vllm.LLM(model=base, tokenizer=adapter or path, dtype=dtype, enable_lora=adapter is not None)
        lora = LoRARequest("steer", 1, adapter) if adapter else None
        return cls(llm, tokenizer, steering, lora)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[Response]:
        import vllm

        params = vllm.SamplingParams(**sampling_params(sampling, self.template))
        start = time.perf_counter()
        outs = self.llm.generate([{"prompt": p} for p in prompts], params, lora_request=self.lora, use_tqdm=False)
        seconds = time.perf_counter() - start
        results = []
        for out in outs:
            c = out.outputs[0]
            results.append(Response(c.text, list(c.token_ids), "length" if c.finish_reason == "length" else "stop",
                                    len(out.prompt_token_ids), len(c.token_ids), seconds))
        return results

    def stream(self, prompt: str, sampling: Sampling, cancel: Any = None) -> Iterator[str | Response]:
        (response,) = self.generate([prompt], sampling)  # offline vLLM has no token stream: one piece
        yield response.text
        yield response
