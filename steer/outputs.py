"""Writing outputs safely: never onto an input, never through a symbolic link, never over a file
this job did not write; whole files atomically (a temporary file renamed into place, so a kill
leaves the old file or the new one, never half of one).

Resumable JSONL outputs (``steer batch``, ``steer label``) are appended and fsynced a batch at a
time instead, and a re-run reads back the keys already written to skip them, so after any
interruption each row is written exactly once.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from steer.errors import UsageError


def check_output(path: str | Path, *, inputs: Sequence[str | Path] = (), owned: Callable[[Path], bool] | None = None,
                 what: str = "output") -> Path:
    """Refuse an output path that is a symbolic link, a folder, one of ``inputs``, or an existing file
    that ``owned`` says this job did not write; its folder is created. Returns the path."""
    path = Path(path)
    if path.is_symlink():
        raise UsageError(f"{what} {path} is a symbolic link: give the file it points to (steer does not write "
                         "through links)")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder, not a file")
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise UsageError(f"{what} {path} is the input {source}: steer never writes onto its input")
    if path.exists() and owned is not None and not owned(path):
        raise UsageError(f"{what} {path} exists and is not a file this command wrote: give another path, or "
                         "remove it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{what} {path}: cannot create its folder ({err.strerror})") from None
    return path


@contextmanager
def atomic_output(path: str | Path, *, binary: bool = False, **checks: Any) -> Iterator[IO[Any]]:
    """A handle on a temporary file beside ``path`` that replaces it when the block ends without an
    error (and is removed otherwise); ``checks`` go to :func:`check_output`."""
    path = check_output(path, **checks)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UsageError(f"cannot write {path} ({err.strerror})") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            yield handle
        os.chmod(tmp, _mode(path))  # mkstemp makes 0600; the file gets the mode a plain open() would give
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode(path: Path) -> int:
    """The mode to give ``path``: an existing file keeps its own, a new one 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (threads never see it move)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere reading it means setting it: put it straight back
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str, **checks: Any) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, **checks) as handle:
        handle.write(text)
    return Path(path)


def _json_object(line: str) -> dict | None:
    """The JSON object on ``line``, or None for anything else (not JSON, nested too deep, an integer
    too long to convert, not an object)."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None
    return row if isinstance(row, dict) else None


def jsonl_with(path: Path, keys: Sequence[str]) -> bool:
    """Whether ``path`` is empty or its first row is a JSON object holding ``keys`` (a file this kind
    of output wrote)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), None)
    if first is None:
        return True
    row = _json_object(first)
    return row is not None and all(k in row for k in keys)


def written_rows(path: Path, field: str) -> dict[str, dict]:
    """Every complete row already in ``path`` by its ``field`` (read only). Every complete line must
    be such a row: an unrelated file is refused, never appended to."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    rows: dict[str, dict] = {}
    for number, line in enumerate(data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        row = _json_object(line)
        if row is None or field not in row:
            raise UsageError(f"{path}:{number}: not a row this command wrote (no {field!r}); "
                             "give another --output, or remove the file to start over")
        rows[str(row[field])] = row
    return rows


def drop_partial_line(path: Path) -> None:
    """Cut off a last line that has no newline: a row a kill interrupted mid-write."""
    if not path.is_file():
        return
    with open(path, "r+b") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            handle.truncate(end)


def resume(path: Path, field: str, *, inputs: Sequence[str | Path] = ()) -> dict[str, dict]:
    """Make ``path`` ready to append to and return the rows it holds by ``field``: the path is checked
    (:func:`check_output`), every row read, then the partial last line (if any) cut off."""
    check_output(path, inputs=inputs)
    rows = written_rows(path, field)
    drop_partial_line(path)
    return rows


def changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted names of the values in ``new`` that ``old`` (a row written earlier) holds otherwise
    (``sampling.temperature``); compared as JSON, so a tuple equals the list it was written as."""
    if isinstance(new, dict) and isinstance(old, dict):
        return [name for k, v in new.items() for name in changed(old.get(k), v, f"{prefix}{k}.")]
    same = json.loads(json.dumps(old, default=str)) == json.loads(json.dumps(new, default=str))
    return [] if same else [prefix.rstrip(".") or "value"]


def refuse_stale(path: Path, key: str, what: list[str]) -> None:
    """The error for a re-run whose settings differ from those an output row was made with."""
    raise UsageError(f"{path}: {key} was made with other {', '.join(what)} than this run's; give another --output, "
                     "or remove the file to start over")


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
