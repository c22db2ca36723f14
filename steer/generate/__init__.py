"""Jobs that run a model: one prompt (the Python API), chat, batch.

The package is callable: ``steer.generate(model, prompt, attributes=..., ...)`` is
:func:`steer.generate.api.generate` (and ``steer.stream`` its streaming twin).
"""

from __future__ import annotations

from steer.callables import make_callable

make_callable(__name__, "steer.generate.api:generate")
