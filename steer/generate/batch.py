"""``steer batch``: JSONL jobs in, one output row per (input row, grid point) out; resumable.

Each input row has an ``id``, a ``prompt`` (or ``messages``) and optional ``attributes``,
``preset``, ``system`` and ``values``. ``--grid name=v1,v2`` sweeps attributes: every row is
generated once per point of the cross product (grid values override the row's own). Output rows
carry the input row, the steering used, the text, token counts and finish reason. Rows are
appended and flushed batch by batch; re-running skips what is already in the output (a line cut
short by a kill is dropped first), so after any interruption each row is written exactly once.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer.attributes import Schema, parse_assignments
from steer.errors import UsageError
from steer.generate.engine import Engine, Sampling, Steering, steering_prompt

Progress = Callable[[int, int], None]


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

    def to_json(self) -> dict:
        return {"total": self.total, "written": self.written, "skipped": self.skipped}


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


def _row_messages(row: dict, where: str) -> list[dict]:
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


def read_jobs(path: str | Path, schema: Schema | None, grid: dict[str, list[int]]) -> list[Job]:
    """Validate every input row (errors name file and line) and expand the grid."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"input not found: {path}")
    jobs: list[Job] = []
    seen: set[str] = set()
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"{where}: invalid JSON ({err.msg})") from None
            if not isinstance(row, dict) or "id" not in row:
                raise UsageError(f"{where}: each row is an object with an 'id'")
            if str(row["id"]) in seen:
                raise UsageError(f"{where}: duplicate id {row['id']!r}")
            seen.add(str(row["id"]))
            messages = _row_messages(row, where)
            attrs = row.get("attributes") or {}
            if attrs and schema is None:
                raise UsageError(f"{where}: 'attributes' given but the model has no attribute schema")
            try:
                own = schema.validate(attrs) if schema is not None and attrs else {}
            except UsageError as err:
                raise UsageError(f"{where}: {err}") from None
            values = row.get("values") or []
            values = [values] if isinstance(values, str) else list(values)
            for point in points:
                steering = Steering({**own, **point}, row.get("preset"), values, row.get("system"))
                jobs.append(Job(row, messages, steering, point))
    return jobs


def _done_keys(out: Path) -> set[str]:
    """Keys already in the output; a last line cut short by a kill is truncated away first."""
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
            keys.add(json.loads(line)["key"])
    return keys


def run_batch(engine: Engine, jobs: list[Job], out: str | Path, sampling: Sampling, *, batch_size: int = 8,
              progress: Progress | None = None) -> BatchReport:
    """Generate every job not yet in ``out``, appending and flushing a batch at a time."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done_keys(out)
    todo = [j for j in jobs if j.key not in done]
    schema = engine.template.schema
    written = 0
    with open(out, "a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            prompts = [steering_prompt(engine.template, j.messages, j.steering) for j in chunk]
            for job, response in zip(chunk, engine.generate(prompts, sampling)):
                record: dict[str, Any] = {**job.row, "key": job.key, "grid": job.grid,
                                          "steering": {"attributes": job.steering.resolved(schema),
                                                       "values": job.steering.values, "system": job.steering.system},
                                          "text": response.text, "finish_reason": response.finish_reason,
                                          "prompt_tokens": response.prompt_tokens,
                                          "completion_tokens": response.completion_tokens}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            written += len(chunk)
            if progress:
                progress(len(jobs) - len(todo) + written, len(jobs))
    return BatchReport(len(jobs), written, len(jobs) - len(todo))
