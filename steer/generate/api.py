"""The Python API: ``steer.generate`` and ``steer.stream`` mirror ``steer generate`` for notebooks and jobs.

    import steer
    r = steer.generate("runs/tiny-synth", "How old is Bexren?", attributes={"verbosity": 0}, temperature=0)
    print(r.text, r.completion_tokens)
    for piece in steer.stream("runs/tiny-synth", "How old is Bexren?", preset="detailed"):
        print(piece, end="")

``model`` is a path or hub id (loaded once and cached) or an engine from
:func:`steer.engines.load.load_engine`. ``steer generate`` goes through :func:`request` too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer.engines.base import Engine, Prompt, Response, Sampling
from steer.errors import UsageError
from steer.steering import AttributeInput, Steering, ValuesInput, VectorsInput, steering_from, steering_prompt

_ENGINES: dict[tuple, Any] = {}


def engine_for(model: Any, engine: str = "hf", template: str | None = None, schema: str | None = None) -> Engine:
    """The engine for ``model``: itself if it is one, else loaded once per process and cached until the
    model's folder changes (a run trained again into the same directory is loaded afresh)."""
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str):
        return model
    from steer.engines.load import load_engine

    key = (model, engine, template, schema)
    stamp = _stamp(model)
    if key in _ENGINES and _ENGINES[key][0] != stamp:
        del _ENGINES[key]  # stale: its weights were written again
    if key not in _ENGINES:
        _ENGINES[key] = (stamp, load_engine(model, engine=engine, template=template, schema=schema))
    return _ENGINES[key][1]


def _stamp(model: str) -> int:
    """When a model folder's files last changed (0 for a hub id or an alias)."""
    folder = Path(model)
    if not folder.is_dir():
        return 0
    return max((f.stat().st_mtime_ns for f in folder.iterdir() if f.is_file()), default=0)


@dataclass
class Request:
    """One steered generation, ready to run: the engine, the rendered prompt, sampling and steering."""

    engine: Engine
    prompt: Prompt
    sampling: Sampling
    steering: Steering
    messages: list[dict] = field(default_factory=list)  # the conversation before steering (what judges read)

    @property
    def attributes(self) -> dict[str, int] | None:
        """The attribute values the prompt is steered by (None: the model has no schema)."""
        return self.steering.resolved(self.engine.template.schema)

    def generate(self) -> Response:
        return self.engine.generate([self.prompt], self.sampling)[0]

    def stream(self) -> Iterator[str | Response]:
        return self.engine.stream(self.prompt, self.sampling)


def sampling_from(sampling: Sampling | None, settings: Mapping[str, Any]) -> Sampling:
    """``sampling``, or one from keyword settings (``stop`` may be one string)."""
    if sampling is not None:
        return sampling
    kw = dict(settings)
    if isinstance(kw.get("stop"), str):
        kw["stop"] = (kw["stop"],)
    if "stop" in kw:
        kw["stop"] = tuple(kw["stop"])
    unknown = sorted(set(kw) - set(Sampling.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown argument {unknown[0]!r} (sampling takes {', '.join(Sampling.__dataclass_fields__)})",
                         field=unknown[0])
    return Sampling(**kw)


def request(model: Any, prompt: str | Sequence[Mapping[str, Any]], *, attributes: AttributeInput = None,
            preset: str | None = None, values: ValuesInput = None, system: str | None = None,
            vectors: VectorsInput = None, engine: str = "hf",
            template: str | None = None, schema: str | None = None, sampling: Sampling | None = None,
            **settings: Any) -> Request:
    """A :class:`Request` for one prompt (a string, or a list of chat messages), steered and validated."""
    eng = engine_for(model, engine, template, schema)
    steering = steering_from(eng.template.schema, attributes=attributes, preset=preset, values=values, system=system,
                             vectors=vectors)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return Request(eng, steering_prompt(eng.template, messages, steering), sampling_from(sampling, settings), steering,
                   messages)


def generate(model: Any, prompt: str | Sequence[Mapping[str, Any]], **kwargs: Any) -> Response:
    """One steered completion; keyword arguments as :func:`request` (``attributes``, ``preset``,
    ``values``, ``system``, ``vectors`` (``"FILE[:COEF]"`` strings), ``engine``, ``template``, ``schema``) plus sampling: temperature, top_p,
    top_k, max_new_tokens, seed, stop."""
    return request(model, prompt, **kwargs).generate()


def stream(model: Any, prompt: str | Sequence[Mapping[str, Any]], **kwargs: Any) -> Iterator[str]:
    """Like :func:`generate`, yielding the text as it is decoded."""
    for piece in request(model, prompt, **kwargs).stream():
        if not isinstance(piece, Response):
            yield piece
