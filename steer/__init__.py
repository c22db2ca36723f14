"""steer: train and run language models you can steer by attributes and value statements.

``steer.generate(model, prompt, ...)`` and ``steer.stream(...)`` are the Python API
(:mod:`steer.generate.api`); nothing heavy is imported until they are called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def stream(*args: Any, **kwargs: Any) -> Any:
    """Streamed steered generation from Python; see :func:`steer.generate.api.stream`."""
    from steer.generate.api import stream as _stream

    return _stream(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # ``steer.generate`` is the generation package, callable as the API (steer/generate/__init__.py);
    # it is imported on first use so that ``import steer`` stays light
    if name == "generate":
        import importlib

        return importlib.import_module("steer.generate")
    raise AttributeError(f"module 'steer' has no attribute {name!r}")
