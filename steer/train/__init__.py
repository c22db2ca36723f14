"""Training: the shared loop (:mod:`steer.train.loop`), one task per kind of model
(:mod:`steer.train.tasks`), model loading, packing, the fused loss and export.

``train(recipe)`` and ``prepare(recipe)`` run any validated recipe through the task its ``kind`` names; the
package itself is callable as :func:`steer.api.train` (a path, a dict or a recipe, with overrides).
"""

from __future__ import annotations

from typing import Any

from steer.callables import make_callable

make_callable(__name__, "steer.api:train")  # steer.train(recipe_or_path, overrides=...): the Python API


def train(recipe: Any, *, resume: str | bool | None = None, events: Any = None, callbacks: list | None = None) -> Any:
    """Train a recipe (``steer train KIND``); returns a :class:`steer.train.loop.RunResult`."""
    from steer.config import Section
    from steer.errors import UsageError

    if not isinstance(recipe, Section):
        raise UsageError("steer.train.train takes a validated recipe; for a path or a dict call steer.train(...) "
                         "(steer.api.train), which validates it", field="recipe")
    from steer.train.loop import train as run
    from steer.train.tasks import TASKS

    return run(recipe, TASKS[recipe.kind], resume=resume, events=events, callbacks=callbacks)


def prepare(recipe: Any, *, progress: Any = None, force: bool = False) -> Any:
    """Prepare a recipe's training data as its task encodes it (``steer data prepare``); a
    :class:`steer.data.prepare.Prepared`."""
    from steer.train.loop import prepare_recipe
    from steer.train.tasks import TASKS

    return prepare_recipe(recipe, TASKS[recipe.kind], progress=progress, force=force)
