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
    """The ``field`` of every row already in ``path``. Every complete line must be such a row (an
    unrelated file is refused, never appended to); a last line cut short by a kill is cut off."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    keys = set()
    for number, line in enumerate(data[:end].decode("utf-8", errors="replace").splitlines(), start=1):
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
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
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
