"""``steer batch``: JSONL jobs in, one output row per (input row, grid point) out; resumable.

Each input row has an ``id``, a ``prompt`` (or ``messages``) and optional ``attributes``,
``preset``, ``system`` and ``values``. ``--grid name=v1,v2`` sweeps attributes: every row is
generated once per point of the cross product (grid values override the row's own). Output rows
carry the input row, the steering used, the text, token counts and finish reason. The input is
streamed (never loaded whole); a bad row goes to ``OUT.errors.jsonl`` with its reason and the batch
goes on. Rows are appended and fsynced batch by batch; re-running skips what is already in the
output (a line cut short by a kill is dropped first), so after any interruption each row is
written exactly once.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer.attributes import Schema, parse_assignments, preset_values
from steer.errors import UsageError
from steer.generate.engine import Engine, Sampling, Steering, steering_prompt

Progress = Callable[[int, int, int], None]  # done, total, completion tokens so far


@dataclass
class Job:
    """One generation: an input row at one grid point."""

    row: dict
    messages: list[dict]
    steering: Steering
    grid: dict[str, int]

    @property
    def key(self) -> str:
        return f"{self.row['id']}|{json.dumps(self.grid, sort_keys=True)}"


@dataclass
class BatchReport:
    total: int
    written: int
    skipped: int
    errors: int = 0

    def to_json(self) -> dict:
        return {"total": self.total, "written": self.written, "skipped": self.skipped, "errors": self.errors}


def parse_grid(items: Sequence[str], schema: Schema | None) -> dict[str, list[int]]:
    """``["verbosity=0,2,4", "complexity=1,3"]`` into ``{"verbosity": [0, 2, 4], ...}`` (validated)."""
    grid: dict[str, list[int]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not raw.strip():
            raise UsageError(f"--grid {item!r}: expected name=v1,v2,...")
        if schema is None:
            raise UsageError("--grid needs a model with an attribute schema")
        name = name.strip()
        if name in grid:
            raise UsageError(f"--grid {name!r} given twice")
        grid[name] = [parse_assignments([f"{name}={v.strip()}"], schema)[name] for v in raw.split(",")]
    return grid


def row_messages(row: dict, where: str) -> list[dict]:
    """The chat messages of an input row (``messages``, or ``prompt`` as one user turn), validated."""
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
            raise UsageError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        if msgs[-1]["role"] != "user":
            raise UsageError(f"{where}: the last message must be from the user")
        return [dict(m) for m in msgs]
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(f"{where}: needs a non-empty 'prompt' (or 'messages')")
    return [{"role": "user", "content": prompt}]


@dataclass
class BadRow:
    """An input row that cannot be generated for (written to ``OUT.errors.jsonl``)."""

    line: int
    reason: str
    raw: str

    @property
    def key(self) -> str:
        return f"line {self.line}"


def _override(defaults: Steering, row: dict, own: dict[str, int]) -> Steering:
    """Per-row steering over the command's defaults (the row wins)."""
    values = row.get("values")
    values = defaults.values if values is None else ([values] if isinstance(values, str) else list(values))
    return Steering({**defaults.attributes, **own}, row.get("preset", defaults.preset), values,
                    row.get("system", defaults.system))


def iter_jobs(path: str | Path, schema: Schema | None, grid: dict[str, list[int]],
              defaults: Steering | None = None) -> Iterator[Job | BadRow]:
    """Stream the input: a :class:`Job` per row and grid point, or a :class:`BadRow` saying why not."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"input not found: {path}")
    defaults = defaults or Steering()
    seen: set[str] = set()
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row, messages, own = _parse_row(line, f"{path}:{n}", schema, seen)
            except UsageError as err:
                yield BadRow(n, str(err), line.rstrip("\n"))
                continue
            for point in points:
                yield Job(row, messages, _override(defaults, row, {**own, **point}), point)


def _parse_row(line: str, where: str, schema: Schema | None, seen: set[str]) -> tuple[dict, list[dict], dict]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"{where}: invalid JSON ({err.msg})") from None
    if not isinstance(row, dict) or "id" not in row:
        raise UsageError(f"{where}: each row is an object with an 'id'")
    if str(row["id"]) in seen:
        raise UsageError(f"{where}: duplicate id {row['id']!r}")
    seen.add(str(row["id"]))
    messages = row_messages(row, where)
    attrs = row.get("attributes") or {}
    if attrs and schema is None:
        raise UsageError(f"{where}: 'attributes' given but the model has no attribute schema")
    try:
        own = schema.validate(attrs) if schema is not None and attrs else {}
        if row.get("preset") is not None and schema is not None:
            preset_values(row["preset"], schema)
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    return row, messages, own


def read_jobs(path: str | Path, schema: Schema | None, grid: dict[str, list[int]],
              defaults: Steering | None = None) -> list[Job]:
    """All jobs of an input file; the first bad row is an error (``iter_jobs`` streams and skips)."""
    jobs = []
    for item in iter_jobs(path, schema, grid, defaults):
        if isinstance(item, BadRow):
            raise UsageError(item.reason)
        jobs.append(item)
    return jobs


def done_keys(out: Path, field: str = "key") -> set[str]:
    """Keys (``field``) already in the output; a last line cut short by a kill is truncated away first."""
    if not out.is_file():
        return set()
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(out, "r+b") as handle:
            handle.truncate(end)
    keys = set()
    for line in data[:end].decode("utf-8").splitlines():
        if line.strip():
            keys.add(str(json.loads(line)[field]))
    return keys


def append_rows(handle: Any, records: list[dict]) -> None:
    """Append JSON lines and fsync them (a kill loses at most the line being written)."""
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def errors_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")


def run_batch(engine: Engine, jobs: Iterable[Job | BadRow], out: str | Path, sampling: Sampling, *,
              batch_size: int = 8, total: int | None = None, progress: Progress | None = None) -> BatchReport:
    """Generate every job not yet in ``out``, appending and fsyncing a batch at a time.

    Bad rows go to ``OUT.errors.jsonl`` (once each) and the batch goes on.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done, bad_done = done_keys(out), done_keys(errors_path(out))
    schema = engine.template.schema
    report = BatchReport(0, 0, 0)
    tokens = 0
    pending: list[Job] = []
    with open(out, "a", encoding="utf-8") as handle, open(errors_path(out), "a", encoding="utf-8") as errors:

        def flush() -> None:
            nonlocal tokens
            prompts = [steering_prompt(engine.template, j.messages, j.steering) for j in pending]
            records = []
            for job, response in zip(pending, engine.generate(prompts, sampling)):
                records.append({**job.row, "key": job.key, "grid": job.grid,
                                "steering": {"attributes": job.steering.resolved(schema), "preset": job.steering.preset,
                                             "values": job.steering.values, "system": job.steering.system},
                                "text": response.text, "finish_reason": response.finish_reason,
                                "prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens})
                tokens += response.completion_tokens
            append_rows(handle, records)
            report.written += len(pending)
            pending.clear()

        for item in jobs:
            report.total += 1
            if isinstance(item, BadRow):
                report.errors += 1
                if item.key not in bad_done:
                    append_rows(errors, [{"key": item.key, "line": item.line, "reason": item.reason, "row": item.raw}])
            elif item.key in done:
                report.skipped += 1
            else:
                pending.append(item)
                if len(pending) >= batch_size:
                    flush()
            if progress and not pending:
                progress(report.total, max(total or 0, report.total), tokens)
        if pending:
            flush()
    if progress:
        progress(report.total, report.total, tokens)
    return report
