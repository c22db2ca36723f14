"""``steer batch``: JSONL jobs in, one output row per (input row, grid point) out; resumable.

Each input row has an ``id``, a ``prompt`` (or ``messages``) and optional ``attributes``,
``preset``, ``system`` and ``values``, which override the command's defaults as
:func:`steer.steering.steering_from` says. ``--grid name=v1,v2`` sweeps attributes: every row is
generated once per point of the cross product (grid values override the row's own). Output rows
carry the input row, the steering used, the text, token counts and finish reason. The input is
streamed (never loaded whole); a bad row goes to ``OUT.errors.jsonl`` with its reason and the batch
goes on. Rows are appended and fsynced batch by batch (:mod:`steer.outputs`); re-running skips what
is already in the output, so after any interruption each row is written exactly once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from steer.attributes import Schema, require_schema
from steer.data.io import decode_json, decode_line
from steer.data.records import DataError
from steer.engines.base import Engine, Sampling
from steer.errors import UsageError
from steer.events import Events, Progress
from steer.outputs import BatchReport, append_rows, changed, refuse_stale, resume
from steer.runs import model_id
from steer.steering import (Steering, content_images, parse_attributes, row_images, row_messages, steering_from,
                            steering_prompt)


@dataclass
class Job:
    """One generation: an input row at one grid point."""

    row: dict
    messages: list[dict]
    steering: Steering
    grid: dict[str, int]
    sample: int = 0  # which of ``--samples N`` answers to the same prompt and steering

    @property
    def key(self) -> str:
        head = f"{self.row['id']}|{json.dumps(self.grid, sort_keys=True)}"
        return f"{head}|{self.sample}" if self.sample else head  # sample 0 keeps the key of a one-sample batch


@dataclass
class BadRow:
    """An input row that cannot be generated for (written to ``OUT.errors.jsonl``)."""

    line: int
    reason: str
    raw: str

    @property
    def key(self) -> str:
        return f"line {self.line}"


def parse_grid(items: Sequence[str], schema: Schema | None) -> dict[str, list[int]]:
    """``["verbosity=0,2,4", "complexity=1,3"]`` into ``{"verbosity": [0, 2, 4], ...}`` (validated)."""
    grid: dict[str, list[int]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not raw.strip():
            raise UsageError(f"--grid {item!r}: expected name=v1,v2,...")
        require_schema(schema, "grid")
        name = name.strip()
        if name in grid:
            raise UsageError(f"--grid {name!r} given twice")
        grid[name] = [parse_attributes(f"{name}={v.strip()}", schema, field="grid")[name] for v in raw.split(",")]
    return grid


def _parse_row(line: bytes, where: str, schema: Schema | None, seen: set[str], defaults: Steering,
               reads_images: bool, base: Path = Path(".")) -> tuple[dict, list[dict], Steering]:
    try:  # not UTF-8, or a lone surrogate, is a bad row here, not a crash mid-batch
        row = decode_json(decode_line(line, where, None), where, None)
    except DataError as err:
        raise UsageError(str(err)) from None
    if not isinstance(row, dict) or "id" not in row:
        raise UsageError(f"{where}: each row is an object with an 'id'")
    if str(row["id"]) in seen:
        raise UsageError(f"{where}: duplicate id {row['id']!r}")
    seen.add(str(row["id"]))
    messages = row_messages(row, where)
    if not reads_images and ("images" in row or any(content_images(m["content"]) for m in messages)):
        raise UsageError(f"{where}: this model reads text only: the row has image parts")
    if reads_images:
        messages = row_images(row, messages, base, where)
    # a row's explicit null clears the command's default preset or system message
    base = replace(defaults, **{k: None for k in ("preset", "system") if k in row and row[k] is None})
    try:
        steering = steering_from(schema, attributes=row.get("attributes"), preset=row.get("preset"),
                                 values=row.get("values"), system=row.get("system"), base=base)
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    return row, messages, steering


def iter_jobs(path: str | Path, schema: Schema | None, grid: dict[str, list[int]],
              defaults: Steering | None = None, reads_images: bool = False, samples: int = 1) -> Iterator[Job | BadRow]:
    """Stream the input: ``samples`` :class:`Job` s per row and grid point, or a :class:`BadRow` saying
    why not (``reads_images``: whether the model takes rows with image parts)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"input not found: {path}")
    defaults = defaults or Steering()
    seen: set[str] = set()
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    with open(path, "rb") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row, messages, steering = _parse_row(line, f"{path}:{n}", schema, seen, defaults, reads_images,
                                                     Path(path).parent)
            except UsageError as err:
                yield BadRow(n, str(err), line.decode("utf-8", "replace").rstrip("\n"))
                continue
            for point in points:
                steered = steering_from(schema, attributes=point, base=steering)
                for sample in range(samples):
                    yield Job(row, messages, steered, point, sample)


def errors_path(out: str | Path) -> Path:
    """Where the bad rows of a batch writing to ``out`` go."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")


# prompts handed to the engine per call, in batch sizes: it decodes batch_size at a time and refills the
# slot of a finished answer from the rest (the call's rows are then appended and fsynced together)
REFILL = 4


def run_batch(engine: Engine, jobs: Iterable[Job | BadRow], out: str | Path, sampling: Sampling, *,
              batch_size: int = 8, total: int | None = None, progress: Events | None = None,
              settings: Mapping[str, Any] | None = None, inputs: Sequence[str | Path] = (),
              best: Any = None) -> BatchReport:
    """Generate every job not yet in ``out``, ``batch_size`` decoding at once, appending and fsyncing
    ``REFILL`` batches at a time.

    Bad rows go to ``OUT.errors.jsonl`` (once each) and the batch goes on. Each output row records
    the ``settings`` (model, template, sampling) and steering it was made with; a job already in
    ``out`` but made otherwise (other settings, steering or input row) is refused, not skipped.
    """
    out = Path(out)
    settings = {**(settings or {}), "sampling": asdict(sampling), **({"best_of": dict(best.spec)} if best else {})}
    done, bad_done = resume(out, "key", inputs=inputs), resume(errors_path(out), "key", inputs=inputs)
    schema = engine.template.schema
    report = BatchReport(0, 0, 0)
    tokens = 0
    pending: list[Job] = []
    started = False
    with open(out, "a", encoding="utf-8") as handle, open(errors_path(out), "a", encoding="utf-8") as errors:

        def flush() -> None:
            nonlocal tokens
            prompts = [steering_prompt(engine.template, j.messages, j.steering) for j in pending]
            responses, extras = _generate(engine, prompts, pending, sampling, batch_size, best)
            records = []
            for job, response, extra in zip(pending, responses, extras):
                records.append({**job.row, "key": job.key, "grid": job.grid, **({"sample": job.sample} if job.sample else {}),
                                "steering": job.steering.to_json(schema),
                                "settings": settings, "text": response.text, "finish_reason": response.finish_reason,
                                "prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens,
                                **extra})
                tokens += response.completion_tokens
            append_rows(handle, records)
            report.written += len(pending)
            pending.clear()

        for item in jobs:
            if isinstance(item, Job) and item.key in done:
                stale = changed(done[item.key].get("settings") or {}, settings) + changed(
                    done[item.key], {**item.row, "steering": item.steering.to_json(schema)})
                if stale:
                    refuse_stale(out, item.key, stale)
            if progress and not started:  # the clock starts with the first row: rows/s counts generation only
                progress(Progress("generate", 0, total or 0, 0))
                started = True
            report.total += 1
            if isinstance(item, BadRow):
                report.errors += 1
                if item.key not in bad_done:
                    append_rows(errors, [{"key": item.key, "line": item.line, "reason": item.reason, "row": item.raw}])
            elif item.key in done:
                report.skipped += 1
            else:
                pending.append(item)
                if len(pending) >= batch_size * REFILL:
                    flush()
            if progress and not pending:
                progress(Progress("generate", report.total, max(total or 0, report.total), tokens))
        if pending:
            flush()
    if progress:
        progress(Progress("generate", report.total, report.total, tokens))
    return report


def _generate(engine: Engine, prompts: list[Any], jobs: list[Job], sampling: Sampling, batch_size: int,
              best: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """One engine call for the jobs: their answers and what each output row adds (best-of-N: the kept
    answer of each job's N and ``best_of`` with every candidate)."""
    if best is None:
        return engine.generate(prompts, sampling, slots=batch_size), [{}] * len(prompts)
    from steer.generate.best_of import choose

    flat = engine.generate([p for p in prompts for _ in range(best.n)], sampling, slots=batch_size)
    groups = [flat[k * best.n:(k + 1) * best.n] for k in range(len(prompts))]
    chosen = choose(best, [j.row for j in jobs], groups)
    return ([group[index] for group, (index, _) in zip(groups, chosen)],
            [{"best_of": {"chosen": index, "score": best.score, "candidates": cands}} for index, cands in chosen])


def run(engine: Engine, input_path: str | Path, output: str | Path, sampling: Sampling, *, grid: Sequence[str] = (),
        steering: Mapping[str, Any] | None = None, batch_size: int = 8, progress: Events | None = None,
        model: str | None = None, samples: int = 1, best: Any = None) -> BatchReport:
    """``steer batch``: every row of ``input_path`` at every ``grid`` point, ``samples`` answers each
    (rows ``sample`` 1.. after the first: what ``steer data pairs`` ranks); ``steering`` (the keyword
    arguments of :func:`steer.steering.steering_from`) is the default a row's own steering overrides;
    ``model`` (what the engine was loaded from) is recorded with each output row; ``best`` (a
    :class:`steer.generate.best_of.BestOf`) keeps the best of N answers per job, with every candidate in
    the row's ``best_of``."""
    if best is not None:
        best.check(sampling)
    if samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if samples > 1 and sampling.temperature == 0:
        raise UsageError(f"--samples {samples} with --temperature 0 gives {samples} copies of the greedy answer: "
                         "sample with a temperature > 0")
    schema = engine.template.schema
    defaults = steering_from(schema, **(steering or {}))
    points = parse_grid(grid, schema)
    path = Path(input_path)
    if not path.is_file():
        raise UsageError(f"input not found: {path}")
    with open(path, "rb") as handle:  # a cheap count for the progress bar; rows are streamed later
        total = sum(1 for line in handle if line.strip()) * max(1, len(list(itertools.product(*points.values())))) * samples
    jobs = iter_jobs(path, schema, points, defaults, getattr(engine, "reads_images", False), samples)
    template = engine.template
    settings = {"model": model_id(model) if model else None, "template": {"kind": template.kind, "schema": template.schema.name if template.schema else None,
                                             "sha256": hashlib.sha256(template.source.encode()).hexdigest()[:16]}}
    return run_batch(engine, jobs, output, sampling, batch_size=batch_size, total=total, progress=progress,
                     settings=settings, inputs=[path], best=best)
