"""Steerability: sweep one attribute over its range with the others at their defaults, judge the
realised attributes of what the model wrote, and summarise requested vs realised.

The sweep and the summary are judge-agnostic: a judge maps (prompt, answer) to a dict of realised
attribute values (None where it cannot tell).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer.attributes import Schema, get_schema, require_schema
from steer.callables import make_callable
from steer.engines.base import Sampling
from steer.errors import UsageError
from steer.evaluate.instructions import INSTRUCTIONS
from steer.evaluate.instructions import load as load_instructions
from steer.evaluate.judges import Judge
from steer.evaluate.methods import METHODS, Methods
from steer.events import Events, Progress
from steer.stats import spearman
from steer.steering import Steering, content_images, row_images, row_messages, steering_from, steering_prompt


@dataclass(frozen=True)
class Request:
    """One generation of a sweep: ``attribute`` asked for at ``level`` by ``method`` (the others at
    their defaults; in a grid, ``other`` is the second attribute and its level). ``attributes``: every
    requested level; ``steering``: what the method made of them."""

    attribute: str
    level: int
    prompt_index: int
    attributes: dict[str, int] = field(hash=False, compare=False)
    instruction: str | None = None
    method: str = "attributes"
    steering: Steering | None = field(default=None, hash=False, compare=False)
    other: tuple[str, int] | None = None


def _levels(schema: Schema, name: str) -> range:
    attr = schema.get(name)
    return range(attr.min, attr.max + 1)


def sweep(schema: Schema, n_prompts: int, names: Sequence[str] | None = None,
          instructions: Mapping[str, Mapping[int, str]] | None = None, *, methods: Methods | None = None,
          method_names: Sequence[str] = ("attributes",)) -> Iterator[Request]:
    """Every (method, attribute, level, prompt) of the sweep, each attribute over its whole range at
    each prompt (``instructions``: the prompting baseline alone, as before ``--method``)."""
    if instructions is not None and methods is None:
        methods, method_names = Methods(schema, instructions), ("prompt",)
    methods = methods or Methods(schema)
    for method in method_names:
        for attr in schema.attributes:
            if names and attr.name not in names:
                continue
            for level in _levels(schema, attr.name):
                steering = methods.steering(method, {attr.name: level})
                for i in range(n_prompts):
                    yield Request(attr.name, level, i, {attr.name: level}, steering.system if method == "prompt" else None,
                                  method, steering)


def grid(schema: Schema, n_prompts: int, pair: tuple[str, str], methods: Methods,
         method_names: Sequence[str]) -> Iterator[Request]:
    """Every (method, level of the first, level of the second, prompt): two attributes at once."""
    a, b = pair
    for method in method_names:
        for la in _levels(schema, a):
            for lb in _levels(schema, b):
                steering = methods.steering(method, {a: la, b: lb})
                for i in range(n_prompts):
                    yield Request(a, la, i, {a: la, b: lb}, None, method, steering, (b, lb))


def read_prompts(path: str) -> list[dict]:
    """Rows of a prompts file (JSONL, compressed too; each row with ``prompt`` or ``messages``);
    errors name file and line."""
    from steer.data.io import read_rows

    if not Path(path).is_file():
        raise UsageError(f"--prompts: no such file {path}")
    rows = []
    for n, row in read_rows(path).rows:
        where = f"{path}:{n}"
        messages = row_messages(row, where)  # a row without a usable prompt is an error here, not mid-sweep
        if "images" in row or any(content_images(m["content"]) for m in messages):
            # images are taken relative to the prompts file, and checked now
            row = {k: v for k, v in row.items() if k != "images"} | {
                "messages": row_images(row, messages, Path(path).parent, where)}
        rows.append(row)
    if not rows:
        raise UsageError(f"--prompts: {path} has no rows")
    return rows


def answer(engine: Any, jobs: Sequence[tuple[list[dict], Steering]], sampling: Sampling,
           events: Events | None = None, batch: int = 100) -> list[str]:
    """The engine's answer to every ``(messages, Steering)`` job, in batches (progress as ``generate`` events)."""
    texts: list[str] = []
    if events:
        events(Progress("generate", 0, len(jobs)))
    for start in range(0, len(jobs), batch):
        rendered = [steering_prompt(engine.template, messages, steering) for messages, steering in jobs[start:start + batch]]
        texts += [resp.text for resp in engine.generate(rendered, sampling)]
        if events:
            events(Progress("generate", len(texts), len(jobs)))
    return texts


def generate(engine: Any, rows: Sequence[Mapping[str, Any]], requests: Sequence[Request], sampling: Sampling,
             events: Events | None = None, batch: int = 100) -> list[str]:
    """The engine's answer to every request of a sweep (rows hold ``prompt`` or ``messages``)."""
    schema = engine.template.schema
    jobs = [(row_messages(dict(rows[r.prompt_index]), "prompt"),
             r.steering if r.steering is not None else steering_from(schema, attributes=r.attributes)) for r in requests]
    return answer(engine, jobs, sampling, events, batch)


@dataclass
class Sweep:
    """A finished sweep: each request, the text generated for it, what the judge found, the summary
    (per attribute; of the first method), per method (``methods``) and of a grid (``grid``)."""

    requests: list[Request]
    texts: list[str]
    judged: list[dict[str, Any]]
    summary: dict[str, dict]
    methods: dict[str, dict[str, dict]] = field(default_factory=dict)
    grid: dict[str, Any] | None = None


def run(engine: Any, rows: Sequence[Mapping[str, Any]], judge: Judge, names: Sequence[str], sampling: Sampling, *,
        events: Events | None = None, batch: int = 64,
        instructions: Mapping[str, Mapping[int, str]] | None = None, methods: Sequence[str] | None = None,
        vector_files: Mapping[str, str] | None = None, scale: float = 1.0, pair: tuple[str, str] | None = None,
        own_scale: Sequence[str] = ()) -> Sweep:
    """Sweep ``names`` (each over its range, the others at their defaults) by each of ``methods``
    (default ``attributes``; ``prompt`` alone when only ``instructions`` are given) on every prompt
    row, generate with ``engine``, judge every answer, and summarise requested against realised per
    method. ``pair``: two attributes swept together over their grid too. ``own_scale``: attributes the
    judge reports on its own scale (calibration maps them onto the attribute's range)."""
    if methods is None:
        methods = ("prompt",) if instructions is not None else ("attributes",)
    model_schema = engine.template.schema
    schema = sweep_schema(model_schema, "attributes" not in methods)
    for name in [*names, *(pair or ())]:
        schema.get(name)  # an unknown name is a one-line error with a suggestion
    ways = Methods(schema, instructions if instructions is not None else INSTRUCTIONS, vector_files or {}, scale)
    ways.check(methods, list(dict.fromkeys([*names, *(pair or ())])), model_schema)
    requests = list(sweep(schema, len(rows), names, methods=ways, method_names=methods))
    if pair is not None:
        requests += list(grid(schema, len(rows), pair, ways, methods))
    texts = generate(engine, rows, requests, sampling, events, batch)
    judged = judge([rows[r.prompt_index] for r in requests], texts)
    scales = judge_scales(judged, [*names, *(pair or ())], own_scale)
    by_method = {}
    for method in methods:
        mine = [(r, t, j) for r, t, j in zip(requests, texts, judged) if r.method == method and r.other is None]
        by_method[method] = summarize([r for r, _, _ in mine], [j for _, _, j in mine], schema,
                                      texts=[t for _, t, _ in mine], scales=scales)
    cells = None
    if pair is not None:
        cells = grid_summary([(r, j) for r, j in zip(requests, judged) if r.other is not None], pair, methods, schema)
    return Sweep(requests, texts, judged, by_method[methods[0]], by_method, cells)


def sweep_schema(schema: Schema | None, instructed: bool) -> Schema:
    """The ranges a sweep walks: the model's schema; for methods other than ``attributes`` on a model
    without one, HelpSteer's (verbosity and complexity 0-4)."""
    if instructed and schema is None:
        return get_schema("helpsteer")
    return require_schema(schema, "attributes")


def evaluate(model: str, prompts: str, *, judge: str = "oracle", attributes: Sequence[str] = (), max_new_tokens: int = 128,
             batch_size: int = 64, engine: str = "hf", template: str | None = None, schema: str | None = None,
             by: str | None = None, methods: Sequence[str] = (), instructions: str | None = None,
             vectors: Sequence[str] = (), vector_scale: float = 1.0, pair: Sequence[str] = (),
             plot_path: str | None = None, outputs: str | None = None, events: Events | None = None) -> dict:
    """``steer eval steerability``: load the judge, the prompts and the model, sweep (greedy) by each
    method, judge, summarise, and plot when asked. ``methods``: among ``attributes`` (steer's
    conditioning), ``prompt`` (an instruction per level as the system message), ``values`` (the
    instructions as value statements) and ``vector`` (``vectors``: ``ATTRIBUTE=FILE``, the coefficient
    ``vector_scale`` times the level's distance from the vector's midpoint); ``by`` is the older
    spelling of one method (``instructions`` = ``prompt``). ``pair``: two attributes swept together
    (a grid). ``outputs``: every answer with what the judge found, as JSONL (:func:`write_outputs`)."""
    from steer.engines.load import load_engine
    from steer.evaluate.judges import make_judge, own_scale
    from steer.evaluate.methods import parse_vector_files

    # from Python: a path for the model, one string where a list goes (as the command's repeatable options)
    model, prompts = str(model), str(prompts)
    attributes, methods, vectors = ([x] if isinstance(x, str) else list(x) for x in (attributes, methods, vectors))
    pair = pair.split(",") if isinstance(pair, str) else list(pair)
    chosen = _methods(by, methods, instructions)
    if pair and len(pair) != 2:
        raise UsageError("--grid takes two attributes: --grid A,B", field="grid")
    table = load_instructions(instructions) if {"prompt", "values"} & set(chosen) else None
    files = parse_vector_files(vectors)
    if files and "vector" not in chosen:
        raise UsageError("--vector needs --method vector", field="vector")
    judge_fn, measured = make_judge(judge)
    rows = read_prompts(prompts)
    loaded = load_engine(model, engine=engine, template=template, schema=schema)
    sch = sweep_schema(loaded.template.schema, "attributes" not in chosen)
    names = list(attributes) or list(measured or sch.names)
    result = run(loaded, rows, judge_fn, names, Sampling(temperature=0.0, max_new_tokens=max_new_tokens),
                 events=events, batch=batch_size, instructions=table, methods=chosen, vector_files=files,
                 scale=vector_scale, pair=tuple(pair) if pair else None, own_scale=sorted(own_scale(judge)))
    png = None
    if plot_path:
        from steer.evaluate.plots import plot_methods

        png = plot_methods(result, plot_path)
    if outputs:
        write_outputs(outputs, result, rows, inputs=[prompts, *files.values()])
    return {"model": model, "judge": judge, "methods": list(chosen), "by": by or chosen[0], "prompts": len(rows),
            "attributes": result.summary, "by_method": result.methods, "grid": result.grid, "plot": png,
            "outputs": outputs, "vector_scale": vector_scale if "vector" in chosen else None}


def _methods(by: str | None, methods: Sequence[str], instructions: str | None) -> tuple[str, ...]:
    """The methods asked for: ``--method`` (repeatable or comma-joined) or the older ``--by``."""
    if by is not None and methods:
        raise UsageError("give --method (or the older --by), not both", field="method")
    if by is not None:
        if by not in ("attributes", "instructions"):
            raise UsageError(f"--by must be attributes or instructions, not {by!r}", field="by")
        chosen: tuple[str, ...] = ("prompt",) if by == "instructions" else ("attributes",)
        if instructions is not None and by != "instructions":
            raise UsageError("--instructions needs --by instructions (or --method prompt|values)", field="instructions")
        return chosen
    chosen = tuple(dict.fromkeys(m.strip() for spec in methods or ["attributes"] for m in spec.split(",") if m.strip()))
    bad = [m for m in chosen if m not in METHODS]
    if bad:
        raise UsageError(f"--method must be among {', '.join(METHODS)}, not {bad[0]!r}", field="method")
    if instructions is not None and not {"prompt", "values"} & set(chosen):
        raise UsageError("--instructions needs --method prompt or values", field="instructions")
    return chosen


OUTPUT_KEYS = ("key", "attribute", "requested", "text", "judged")


def write_outputs(path: str, result: Sweep, rows: Sequence[Mapping[str, Any]], inputs: Sequence[str] = ()) -> None:
    """One JSONL row per answer of a sweep (``key`` = prompt, method and request, ``method``,
    ``attribute``, ``requested``, ``text``, ``judged``; a grid's answers add ``grid``), written
    atomically: ``steer eval length-bias A --compare B --score judged.NAME`` compares two sweeps on the
    same prompts."""
    import json

    from steer.outputs import atomic_output, jsonl_with

    with atomic_output(path, inputs=list(inputs), owned=lambda p: jsonl_with(p, OUTPUT_KEYS), what="--outputs") as handle:
        for request, text, judged in zip(result.requests, result.texts, result.judged):
            row = rows[request.prompt_index]
            asked = ",".join(f"{k}={v}" for k, v in request.attributes.items())
            key = f"{row.get('id', request.prompt_index)}:{request.method}:{asked}"
            out = {"key": key, "method": request.method, "attribute": request.attribute, "requested": request.level,
                   "text": text, "judged": judged}
            if request.other is not None:
                out["grid"] = dict(request.attributes)
            handle.write(json.dumps(out, default=str) + "\n")


def monotonicity_violations(means: Sequence[float | None]) -> int:
    """How many steps between consecutive requested levels move the realised mean down."""
    known = [m for m in means if m is not None]
    return sum(1 for a, b in zip(known, known[1:]) if b < a)


def judge_scales(judged: Sequence[Mapping[str, Any]], names: Sequence[str], own: Sequence[str]) -> dict[str, tuple[float, float]]:
    """For each attribute a judge reports on its own scale: the 5th and 95th percentile of every value
    it gave in this run (all methods together), the span mapped onto the attribute's range."""
    out = {}
    for name in dict.fromkeys(n for n in names if n in own):
        values = sorted(float(j[name]) for j in judged if j.get(name) is not None)
        if len(values) >= 2:
            lo, hi = values[int(0.05 * (len(values) - 1))], values[int(round(0.95 * (len(values) - 1)))]
            if hi > lo:
                out[name] = (lo, hi)
    return out


def on_scale(value: float, attr: Any, scale: tuple[float, float] | None) -> float:
    """A realised value on the attribute's range: mapped from the judge's own span when it has one, clipped."""
    if scale is not None:
        lo, hi = scale
        value = attr.min + (value - lo) / (hi - lo) * (attr.max - attr.min)
    return min(max(value, attr.min), attr.max)


def words(text: str) -> int:
    return len(text.split())


def per_prompt(rows: Sequence[tuple[Request, dict[str, Any]]], name: str) -> dict[str, float | None]:
    """Per prompt, whether what was realised follows what was asked: the share of prompts whose
    Spearman(requested, realised) is negative (anti-steerable) and zero or undefined (flat)."""
    prompts: dict[int, list[tuple[int, float]]] = {}
    for r, v in rows:
        if v.get(name) is not None:
            prompts.setdefault(r.prompt_index, []).append((r.level, float(v[name])))
    rhos = [spearman([a for a, _ in pts], [b for _, b in pts]) if len({a for a, _ in pts}) > 1 else None
            for pts in prompts.values()]
    if not rhos:
        return {"anti_steerable": None, "flat": None}
    return {"anti_steerable": sum(1 for r in rhos if r is not None and r < 0) / len(rhos),
            "flat": sum(1 for r in rhos if r is None or r == 0) / len(rhos)}


QUALITY = ("reward", "helpfulness")  # what a level's quality is read from, the first one judged


def summarize(requests: Sequence[Request], realised: Sequence[dict[str, Any]], schema: Schema, *,
              texts: Sequence[str] | None = None, scales: Mapping[str, tuple[float, float]] | None = None) -> dict[str, dict]:
    """Per swept attribute: mean realised value (and answer length in words) per requested level,
    Spearman(requested, realised) over every judged answer, monotonicity violations, calibration
    error (mean |requested - realised| with realised on the attribute's range: :func:`on_scale`),
    per-prompt anti-steerability, side effects (the largest range of another attribute's mean, of
    the length and of a reward or cost model's score across the sweep) and quality per level
    (a reward model's score, or the judge's helpfulness) with its drop from the best level."""
    out: dict[str, dict] = {}
    lengths = [words(t) for t in texts] if texts is not None else [None] * len(requests)
    for name in dict.fromkeys(r.attribute for r in requests):
        rows = [(r, v, n) for r, v, n in zip(requests, realised, lengths) if r.attribute == name]
        levels = sorted({r.level for r, _, _ in rows})
        means = {lvl: _mean([v.get(name) for r, v, _ in rows if r.level == lvl]) for lvl in levels}
        pairs = [(r.level, v[name]) for r, v, _ in rows if v.get(name) is not None]
        attr = schema.get(name)
        errors = [abs(on_scale(float(x), attr, (scales or {}).get(name)) - lvl) for lvl, x in pairs]
        side = {}
        scores = [k for k in ("reward", "cost") if any(k in v for _, v, _ in rows)]  # rm:/cost: judges' scores
        for other in [*schema.names, *scores]:
            if other == name:
                continue
            m = [x for x in (_mean([v.get(other) for r, v, _ in rows if r.level == lvl]) for lvl in levels) if x is not None]
            if m:
                side[other] = max(m) - min(m)
        length = {lvl: _mean([n for r, _, n in rows if r.level == lvl]) for lvl in levels}
        if texts is not None and name != "verbosity" and all(x is not None for x in length.values()):
            side["words"] = max(length.values()) - min(length.values())  # type: ignore[type-var, operator]
        out[name] = {
            "levels": [{"requested": lvl, "realised": means[lvl], "words": length[lvl],
                        "judged": sum(1 for r, v, _ in rows if r.level == lvl and v.get(name) is not None)} for lvl in levels],
            "spearman": spearman([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None,
            "monotonicity_violations": monotonicity_violations([means[lvl] for lvl in levels]),
            "calibration_error": sum(errors) / len(errors) if errors else None,
            **per_prompt([(r, v) for r, v, _ in rows], name),
            "side_effects": side,
            "quality": _quality(rows, name, levels),
        }
    return out


def _quality(rows: Sequence[tuple[Request, dict[str, Any], Any]], name: str, levels: Sequence[int]) -> dict | None:
    """Quality per requested level (a reward model's score, else helpfulness when it is not the swept
    attribute) and the drop from the best level to the worst."""
    key = next((k for k in QUALITY if k != name and any(v.get(k) is not None for _, v, _ in rows)), None)
    if key is None:
        return None
    per = {lvl: _mean([v.get(key) for r, v, _ in rows if r.level == lvl]) for lvl in levels}
    known = [x for x in per.values() if x is not None]
    return {"by": key, "levels": {str(k): v for k, v in per.items()}, "drop": max(known) - min(known) if known else None}


def grid_summary(rows: Sequence[tuple[Request, dict[str, Any]]], pair: tuple[str, str], methods: Sequence[str],
                 schema: Schema) -> dict[str, Any]:
    """Two attributes swept together, per method: the mean realised value of each in every cell, each
    one's Spearman against its own request, and the interaction: Spearman of each one's realised value
    against the *other's* request (0: raising one leaves the other alone)."""
    a, b = pair
    out: dict[str, Any] = {"attributes": [a, b], "methods": {}}
    for method in methods:
        mine = [(r, v) for r, v in rows if r.method == method]
        cells = []
        for la in _levels(schema, a):
            for lb in _levels(schema, b):
                here = [v for r, v in mine if r.attributes[a] == la and r.attributes[b] == lb]
                cells.append({a: la, b: lb, f"realised_{a}": _mean([v.get(a) for v in here]),
                              f"realised_{b}": _mean([v.get(b) for v in here])})

        def rho(asked: str, got: str) -> float | None:
            pts = [(r.attributes[asked], v[got]) for r, v in mine if v.get(got) is not None]
            return spearman([p[0] for p in pts], [p[1] for p in pts]) if pts else None

        out["methods"][method] = {"cells": cells, "spearman": {a: rho(a, a), b: rho(b, b)},
                                  "interaction": {f"{a}<-{b}": rho(b, a), f"{b}<-{a}": rho(a, b)}}
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


make_callable(__name__, "steer.evaluate.steerability:evaluate")  # steer.evaluate.steerability(...) is this module's evaluate
