"""Loading a model on the chosen engine."""

from __future__ import annotations

from steer.engines.base import Engine
from steer.errors import UsageError

ENGINES = ("hf", "vllm")


def load_engine(model: str, *, engine: str = "hf", template: str | None = None, schema: str | None = None,
                dtype: str = "auto") -> Engine:
    """Load ``model`` (run directory, exported model, HF directory or hub id) on ``engine``."""
    if engine == "hf":
        from steer.engines.hf import HFEngine

        return HFEngine.load(model, template=template, schema=schema, dtype=dtype)
    if engine == "vllm":
        from steer.engines.vllm import VLLMEngine

        return VLLMEngine.load(model, template=template, schema=schema, dtype=dtype)
    raise UsageError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})", field="engine")
