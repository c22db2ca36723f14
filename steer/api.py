"""The Python API: ``steer.generate`` and ``steer.stream`` mirror ``steer generate`` for notebooks and jobs.

    import steer
    r = steer.generate("runs/tiny-synth", "How old is Bexren?", attributes={"verbosity": 0}, temperature=0)
    print(r.text, r.completion_tokens)
    for piece in steer.stream("runs/tiny-synth", "How old is Bexren?", preset="detailed"):
        print(piece, end="")

``model`` is a path or hub id (loaded once and cached) or an engine from ``load_engine``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from steer.errors import UsageError

_ENGINES: dict[tuple, Any] = {}


def _engine(model: Any, engine: str, template: str | None, schema: str | None) -> Any:
    if not isinstance(model, str):
        return model
    from steer.generate.engine import load_engine

    key = (model, engine, template, schema)
    if key not in _ENGINES:
        _ENGINES[key] = load_engine(model, engine=engine, template=template, schema=schema)
    return _ENGINES[key]


def _prepare(model: Any, prompt: str | Sequence[Mapping[str, Any]], attributes: Mapping[str, int] | str | None,
             preset: str | None, values: Sequence[str] | str, system: str | None, engine: str, template: str | None,
             schema: str | None, sampling: dict) -> tuple[Any, str, Any]:
    from steer.attributes import parse_assignments
    from steer.generate.engine import Sampling, Steering, preset_or_error, steering_prompt

    eng = _engine(model, engine, template, schema)
    sch = eng.template.schema
    if isinstance(attributes, str):
        if sch is None:
            raise UsageError("this model has no attribute schema; steer it with values= or system=")
        attributes = parse_assignments([attributes], sch)
    steering = Steering(dict(attributes or {}), preset_or_error(preset, sch),
                        [values] if isinstance(values, str) else list(values), system)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if "stop" in sampling:
        sampling["stop"] = tuple([sampling["stop"]] if isinstance(sampling["stop"], str) else sampling["stop"])
    return eng, steering_prompt(eng.template, messages, steering), Sampling(**sampling)


def generate(model: Any, prompt: str | Sequence[Mapping[str, Any]], *, attributes: Mapping[str, int] | str | None = None,
             preset: str | None = None, values: Sequence[str] | str = (), system: str | None = None, engine: str = "hf",
             template: str | None = None, schema: str | None = None, **sampling: Any) -> Any:
    """One steered completion (a :class:`steer.generate.engine.Response`); ``sampling``: temperature,
    top_p, top_k, max_new_tokens, seed, stop. ``prompt`` may be a list of chat messages."""
    eng, text, params = _prepare(model, prompt, attributes, preset, values, system, engine, template, schema, sampling)
    return eng.generate([text], params)[0]


def stream(model: Any, prompt: str | Sequence[Mapping[str, Any]], *, attributes: Mapping[str, int] | str | None = None,
           preset: str | None = None, values: Sequence[str] | str = (), system: str | None = None, engine: str = "hf",
           template: str | None = None, schema: str | None = None, **sampling: Any) -> Iterator[str]:
    """Like :func:`generate`, yielding the text as it is decoded."""
    from steer.generate.engine import Response

    eng, text, params = _prepare(model, prompt, attributes, preset, values, system, engine, template, schema, sampling)
    for piece in eng.stream(text, params):
        if not isinstance(piece, Response):
            yield piece
