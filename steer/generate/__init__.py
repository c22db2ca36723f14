"""Jobs that run a model: one prompt (the Python API), chat, batch.

The package is callable: ``steer.generate(model, prompt, attributes=..., ...)`` is
:func:`steer.generate.api.generate` (and ``steer.stream`` its streaming twin).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from steer.generate.api import generate

        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
