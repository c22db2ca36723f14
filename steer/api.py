"""The Python API of every job, for notebooks and scripts; each mirrors its command.

    import steer
    run = steer.train("recipes/tiny/synth-steerlm.yaml", overrides=["train.max_steps=50"])
    steer.batch(run.run_dir, "prompts.jsonl", "answers.jsonl", grid=["verbosity=0,4"], temperature=0)
    result = steer.evaluate.steerability(run.run_dir, "prompts.jsonl", judge="oracle")

The checks and errors are the command line's (a :class:`steer.errors.SteerError` naming the input at
fault, a :class:`steer.errors.UsageError` where the command exits 2); results are typed
(:class:`steer.train.loop.RunResult`, :class:`steer.data.prepare.Prepared`,
:class:`steer.outputs.BatchReport`, :class:`LabelResult`); long work reports through ``events`` /
``progress`` (:mod:`steer.events`) and nothing prints. The evaluations are ``steer.evaluate.steerability``,
``.values``, ``.length_bias``, ``.pairs`` and ``.curves``, each the ``evaluate`` of its module.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer.config import Section, apply_override, find_distributed_config, load_recipe, validate_recipe
from steer.errors import ConfigError, UsageError

RecipeInput = str | Path | Mapping[str, Any] | Section


def recipe(source: RecipeInput, overrides: Sequence[str] = (), kind: str | None = None) -> Section:
    """A validated recipe from a YAML path, a raw dict or a recipe object, with ``--set``-style
    ``overrides`` applied (``steer recipe check``); ``kind`` refuses a recipe of another kind."""
    if isinstance(overrides, str):
        raise UsageError("overrides is a list of 'key.path=value' strings, not one string", field="overrides")
    if isinstance(source, (str, Path)):
        return load_recipe(source, list(overrides), kind=kind)
    if isinstance(source, Section):
        data = source.model_dump(mode="json", by_alias=True)
    elif isinstance(source, Mapping):
        data = _plain(copy.deepcopy(dict(source)))
    else:
        raise UsageError(f"a recipe is a YAML path, a dict or a recipe object, not {type(source).__name__}",
                         field="recipe")
    for assignment in overrides:
        apply_override(data, assignment)
    declared = str(data.get("kind", "sft"))
    if kind is not None and declared != kind:
        said = "its kind key" if "kind" in data else "no kind key means sft"
        raise ConfigError(f"recipe: this is a {declared!r} recipe ({said}), not {kind!r}")
    return find_distributed_config(validate_recipe(data, kind=declared, origin="recipe"), "recipe")


def _plain(value: Any) -> Any:
    """A recipe dict with its paths (``pathlib.Path``, any ``os.PathLike``) as the strings YAML would hold."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def train(source: RecipeInput, *, overrides: Sequence[str] = (), kind: str | None = None,
          resume: str | bool | None = None, events: Any = None, callbacks: list | None = None) -> Any:
    """``steer train KIND RECIPE``: train any recipe through the task its ``kind`` names; ``resume`` is
    ``"last"`` (or True) for the run's newest checkpoint, or a checkpoint folder. One process: for
    several, run this under ``torchrun`` (``steer train --nproc N`` relaunches for you)."""
    from steer.train import train as run

    cfg = recipe(source, overrides, kind)
    if cfg.distributed.nproc > 1 and "LOCAL_RANK" not in os.environ:  # type: ignore[attr-defined]
        raise UsageError(f"distributed.nproc is {cfg.distributed.nproc}: a Python call is one process; run the "  # type: ignore[attr-defined]
                         "script under torchrun, or use `steer train --nproc N`", field="distributed.nproc")
    return run(cfg, resume=True if resume == "last" else resume, events=events, callbacks=callbacks)


def prepare(source: RecipeInput, *, overrides: Sequence[str] = (), kind: str | None = None, force: bool = False,
            progress: Any = None) -> Any:
    """``steer data prepare RECIPE``: the recipe's data loaded, mixed, rendered and tokenized into the
    cache training reuses; a :class:`steer.data.prepare.Prepared`."""
    from steer.train import prepare as run

    return run(recipe(source, overrides, kind), progress=progress, force=force)


def batch(model: Any, input: str | Path, output: str | Path, *, grid: Sequence[str] = (),
          attributes: Any = None, preset: str | None = None, system: str | None = None, values: Any = None,
          vectors: Any = None, batch_size: int = 8, samples: int = 1, best_of: int | None = None,
          judge: str | None = None, cost: str | None = None, max_cost: float | None = None, engine: str = "hf",
          template: str | None = None, schema: str | None = None, progress: Any = None, **sampling: Any) -> Any:
    """``steer batch``: every row of ``input`` (JSONL) answered into ``output`` (appended; a re-run
    resumes, and refuses rows made with other settings). The steering arguments are defaults a row's
    own win; ``grid`` sweeps attributes (``"verbosity=0,2,4"``); ``best_of`` keeps the best of N by
    ``judge``; sampling as :func:`steer.generate`: temperature, top_p, top_k, max_new_tokens, seed, stop.
    A :class:`steer.outputs.BatchReport`."""
    from steer.generate import batch as jobs
    from steer.generate.api import engine_for, sampling_from

    if isinstance(grid, str):
        grid = [grid]
    if best_of is None and (judge or cost or max_cost is not None):
        raise UsageError("judge, cost and max_cost choose among best_of N answers: give best_of", field="best_of")
    chooser = None
    if best_of is not None:
        from steer.generate.best_of import make

        chooser = make(best_of, judge, cost, max_cost)
    settings = sampling_from(None, sampling)
    steering = {"attributes": attributes, "preset": preset, "system": system, "values": values, "vectors": vectors}
    eng = engine_for(model, engine, template, schema)
    return jobs.run(eng, input, output, settings, grid=list(grid), steering=steering, batch_size=batch_size,
                    progress=progress, model=os.fspath(model) if isinstance(model, (str, os.PathLike)) else None,
                    samples=samples, best=chooser)


@dataclass(frozen=True)
class LabelResult:
    """What ``steer label`` did: the rows (a :class:`steer.outputs.BatchReport`), the attributes the
    model predicts, the input rows it rejected, and where the labelled data went."""

    report: Any
    attributes: tuple[str, ...]
    rejected: int
    output: Path

    def to_json(self) -> dict:
        return {**self.report.to_json(), "rejected": self.rejected, "output": str(self.output),
                "attributes": list(self.attributes)}


def label(model: str | Path, input: str | Path, output: str | Path, *, format: str = "auto", split: str = "train",
          raw: bool = False, batch_size: int = 32, skip_invalid: bool = False, progress: Any = None) -> LabelResult:
    """``steer label``: every assistant turn of a dataset annotated by an attribute prediction (or
    reward, or cost) model, written as canonical JSONL (appended; a re-run resumes)."""
    from steer.label import run

    report, apm, rejected = run(str(model), str(input), output, format=format, split=split, raw=raw,
                                batch_size=batch_size, skip_invalid=skip_invalid, progress=progress)
    return LabelResult(report, tuple(apm.names), rejected, Path(output))
