"""Resumable JSONL outputs (``steer batch``, ``steer label``): rows are appended and fsynced a batch at
a time, and a re-run reads back the keys already written to skip them, so after any interruption each
row is written exactly once."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from steer.errors import UsageError


def written_keys(path: Path, field: str) -> set[str]:
    """The ``field`` of every complete row already in ``path`` (read only). Every complete line must be
    such a row: an unrelated file is refused, never appended to."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    keys = set()
    for number, line in enumerate(data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or field not in row:
            raise UsageError(f"{path}:{number}: not a row this command wrote (no {field!r}); "
                             "give another --output, or remove the file to start over")
        keys.add(str(row[field]))
    return keys


def drop_partial_line(path: Path) -> None:
    """Cut off a last line that has no newline: a row a kill interrupted mid-write."""
    if not path.is_file():
        return
    with open(path, "r+b") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            handle.truncate(end)


def resume(path: Path, field: str) -> set[str]:
    """Make ``path`` ready to append to and return the keys it holds: checked first, then the
    partial last line (if any) is cut off."""
    keys = written_keys(path, field)
    drop_partial_line(path)
    return keys


def append_rows(handle: IO[str], records: list[dict]) -> None:
    """Append JSON lines and fsync them (a kill loses at most the line being written)."""
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


@dataclass
class BatchReport:
    """How many rows a run saw, wrote, found already written, and refused."""

    total: int
    written: int
    skipped: int
    errors: int = 0

    def to_json(self) -> dict:
        return {"total": self.total, "written": self.written, "skipped": self.skipped, "errors": self.errors}
