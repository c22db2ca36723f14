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
from steer.engines.base import Sampling
from steer.errors import UsageError
from steer.evaluate.instructions import check as check_instructions
from steer.evaluate.instructions import load as load_instructions
from steer.evaluate.judges import Judge
from steer.events import Events, Progress
from steer.stats import spearman
from steer.steering import Steering, content_images, row_images, row_messages, steering_from, steering_prompt


@dataclass(frozen=True)
class Request:
    """One generation of a sweep: ``attribute`` set to ``level``, the others at their defaults; or,
    for the prompting baseline, ``instruction`` as the system message instead of any attribute."""

    attribute: str
    level: int
    prompt_index: int
    attributes: dict[str, int] = field(hash=False, compare=False)
    instruction: str | None = None


def sweep(schema: Schema, n_prompts: int, names: Sequence[str] | None = None,
          instructions: Mapping[str, Mapping[int, str]] | None = None) -> Iterator[Request]:
    """Every (attribute, level, prompt) of the sweep, the attribute's whole range at each prompt
    (``instructions``: each level asked for by its instruction, not by an attribute)."""
    defaults = schema.defaults()
    for attr in schema.attributes:
        if names and attr.name not in names:
            continue
        for level in range(attr.min, attr.max + 1):
            for i in range(n_prompts):
                if instructions is not None:
                    yield Request(attr.name, level, i, {}, instructions[attr.name][level])
                else:
                    yield Request(attr.name, level, i, {**defaults, attr.name: level})


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
             steering_from(schema, system=r.instruction) if r.instruction is not None
             else steering_from(schema, attributes=r.attributes)) for r in requests]
    return answer(engine, jobs, sampling, events, batch)


@dataclass
class Sweep:
    """A finished sweep: each request, the text generated for it, what the judge found, the summary."""

    requests: list[Request]
    texts: list[str]
    judged: list[dict[str, Any]]
    summary: dict[str, dict]


def run(engine: Any, rows: Sequence[Mapping[str, Any]], judge: Judge, names: Sequence[str], sampling: Sampling, *,
        events: Events | None = None, batch: int = 64,
        instructions: Mapping[str, Mapping[int, str]] | None = None) -> Sweep:
    """Sweep ``names`` (each over its range, the others at their defaults) on every prompt row, generate
    with ``engine``, judge every answer, and summarise requested against realised. With
    ``instructions`` each level is asked for in the system message (a model without an attribute
    schema sweeps HelpSteer's ranges)."""
    schema = sweep_schema(engine.template.schema, instructions is not None)
    for name in names:
        schema.get(name)  # an unknown name is a one-line error with a suggestion
    if instructions is not None:
        check_instructions(instructions, schema, list(names))
    requests = list(sweep(schema, len(rows), names, instructions))
    texts = generate(engine, rows, requests, sampling, events, batch)
    judged = judge([rows[r.prompt_index] for r in requests], texts)
    return Sweep(requests, texts, judged, summarize(requests, judged, schema))


def sweep_schema(schema: Schema | None, instructed: bool) -> Schema:
    """The ranges a sweep walks: the model's schema; for the prompting baseline on a model without
    one, HelpSteer's (verbosity and complexity 0-4)."""
    if instructed and schema is None:
        return get_schema("helpsteer")
    return require_schema(schema, "attributes")


def evaluate(model: str, prompts: str, *, judge: str = "oracle", attributes: Sequence[str] = (), max_new_tokens: int = 128,
             batch_size: int = 64, engine: str = "hf", template: str | None = None, schema: str | None = None,
             by: str = "attributes", instructions: str | None = None, plot_path: str | None = None,
             outputs: str | None = None, events: Events | None = None) -> dict:
    """``steer eval steerability``: load the judge, the prompts and the model, sweep (greedy), judge,
    summarise, and plot when asked. ``by``: ``attributes`` (steer's conditioning) or ``instructions``
    (the prompting baseline: an instruction per level in the system message). ``outputs``: every
    answer with what the judge found, as JSONL (:func:`write_outputs`)."""
    from steer.engines.load import load_engine
    from steer.evaluate.judges import make_judge

    if by not in ("attributes", "instructions"):
        raise UsageError(f"--by must be attributes or instructions, not {by!r}", field="by")
    if instructions is not None and by != "instructions":
        raise UsageError("--instructions needs --by instructions", field="instructions")
    table = load_instructions(instructions) if by == "instructions" else None
    judge_fn, measured = make_judge(judge)
    rows = read_prompts(prompts)
    loaded = load_engine(model, engine=engine, template=template, schema=schema)
    sch = sweep_schema(loaded.template.schema, table is not None)
    names = list(attributes) or list(measured or sch.names)
    result = run(loaded, rows, judge_fn, names, Sampling(temperature=0.0, max_new_tokens=max_new_tokens),
                 events=events, batch=batch_size, instructions=table)
    png = plot(result.summary, result.requests, result.judged, plot_path) if plot_path else None
    if outputs:
        write_outputs(outputs, result, rows, inputs=[prompts])
    return {"model": model, "judge": judge, "by": by, "prompts": len(rows), "attributes": result.summary, "plot": png,
            "outputs": outputs}


OUTPUT_KEYS = ("key", "attribute", "requested", "text", "judged")


def write_outputs(path: str, result: Sweep, rows: Sequence[Mapping[str, Any]], inputs: Sequence[str] = ()) -> None:
    """One JSONL row per answer of a sweep (``key`` = prompt and request, ``attribute``, ``requested``,
    ``text``, ``judged``), written atomically: ``steer eval length-bias A --compare B --score
    judged.NAME`` compares two models' sweeps on the same prompts."""
    import json

    from steer.outputs import atomic_output, jsonl_with

    with atomic_output(path, inputs=list(inputs), owned=lambda p: jsonl_with(p, OUTPUT_KEYS), what="--outputs") as handle:
        for request, text, judged in zip(result.requests, result.texts, result.judged):
            row = rows[request.prompt_index]
            key = f"{row.get('id', request.prompt_index)}:{request.attribute}={request.level}"
            handle.write(json.dumps({"key": key, "attribute": request.attribute, "requested": request.level,
                                     "text": text, "judged": judged}, default=str) + "\n")


def monotonicity_violations(means: Sequence[float | None]) -> int:
    """How many steps between consecutive requested levels move the realised mean down."""
    known = [m for m in means if m is not None]
    return sum(1 for a, b in zip(known, known[1:]) if b < a)


def summarize(requests: Sequence[Request], realised: Sequence[dict[str, Any]], schema: Schema) -> dict[str, dict]:
    """Per swept attribute: mean realised value per requested level, Spearman(requested, realised)
    over every judged answer, monotonicity violations, and side effects (the largest range of
    another attribute's mean across the sweep, and of a reward or cost model's score where judged)."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r.attribute for r in requests):
        rows = [(r, v) for r, v in zip(requests, realised) if r.attribute == name]
        levels = sorted({r.level for r, _ in rows})
        means = {lvl: _mean([v.get(name) for r, v in rows if r.level == lvl]) for lvl in levels}
        pairs = [(r.level, v[name]) for r, v in rows if v.get(name) is not None]
        side = {}
        scores = [k for k in ("reward", "cost") if any(k in v for _, v in rows)]  # rm:/cost: judges' scores
        for other in [*schema.names, *scores]:
            if other == name:
                continue
            m = [x for x in (_mean([v.get(other) for r, v in rows if r.level == lvl]) for lvl in levels) if x is not None]
            if m:
                side[other] = max(m) - min(m)
        out[name] = {
            "levels": [{"requested": lvl, "realised": means[lvl],
                        "judged": sum(1 for r, v in rows if r.level == lvl and v.get(name) is not None)} for lvl in levels],
            "spearman": spearman([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None,
            "monotonicity_violations": monotonicity_violations([means[lvl] for lvl in levels]),
            "side_effects": side,
        }
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


def plot(summary: dict[str, dict], requests: Sequence[Request], realised: Sequence[dict[str, Any]], path: str) -> str:
    """A PNG with one panel per swept attribute: every judged answer (jittered) and the mean per level."""
    import random

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    jitter = random.Random(0)
    for ax, name in zip(axes[0], names):
        pts = [(r.level, v[name]) for r, v in zip(requests, realised) if r.attribute == name and v.get(name) is not None]
        ax.scatter([x + jitter.uniform(-0.15, 0.15) for x, _ in pts], [y + jitter.uniform(-0.1, 0.1) for _, y in pts],
                   s=6, alpha=0.25, color="tab:blue")
        levels = [lv for lv in summary[name]["levels"] if lv["realised"] is not None]
        ax.plot([lv["requested"] for lv in levels], [lv["realised"] for lv in levels], "o-", color="tab:red", label="mean")
        lo = min((lv["requested"] for lv in summary[name]["levels"]), default=0)
        hi = max((lv["requested"] for lv in summary[name]["levels"]), default=4)
        ax.plot([lo, hi], [lo, hi], ":", color="grey", label="ideal")
        rho = summary[name]["spearman"]
        ax.set_title(f"{name}\nSpearman {rho:.2f}" if rho is not None else name, fontsize=10)
        ax.set_xlabel("requested")
        ax.set_xticks(range(lo, hi + 1))
    axes[0][0].set_ylabel("realised")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
