"""Modules that are also functions: ``steer.train(...)``, ``steer.label(...)``,
``steer.evaluate.steerability(...)`` call a job while ``steer.train.loop`` and friends stay importable."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(module: str, target: str) -> None:
    """Calling module ``module`` calls ``target`` (``"package.module:function"``), imported on the first call."""
    where, _, name = target.partition(":")

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(where), name)(*args, **kwargs)

    sys.modules[module].__class__ = CallableModule
