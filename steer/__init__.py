"""steer: train and run language models you can steer by attributes and value statements.

The Python API mirrors the commands: ``steer.generate`` / ``steer.stream`` (:mod:`steer.generate.api`),
``steer.train``, ``steer.prepare``, ``steer.batch``, ``steer.label``, ``steer.recipe`` (:mod:`steer.api`) and
``steer.evaluate.steerability`` / ``.values`` / ``.length_bias`` / ``.pairs`` / ``.curves``; nothing heavy is
imported until they are called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def stream(*args: Any, **kwargs: Any) -> Any:
    """Streamed steered generation from Python; see :func:`steer.generate.api.stream`."""
    from steer.generate.api import stream as _stream

    return _stream(*args, **kwargs)


_MODULES = ("generate", "train", "label", "evaluate")  # packages and modules that are also callable
_FUNCTIONS = {"prepare": "steer.api", "batch": "steer.api", "recipe": "steer.api"}


def __getattr__(name: str) -> Any:
    # imported on first use so that ``import steer`` stays light: ``steer.generate``, ``steer.train`` and
    # ``steer.label`` are callable modules (steer/callables.py), ``steer.evaluate.steerability`` and its
    # siblings too; ``steer.prepare``, ``steer.batch`` and ``steer.recipe`` are functions of steer/api.py
    import importlib

    if name in _MODULES:
        return importlib.import_module(f"steer.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'steer' has no attribute {name!r}")
