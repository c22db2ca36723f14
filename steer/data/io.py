"""Reading rows from local files (jsonl, json, parquet, csv; .gz/.xz/.bz2) or the Hugging Face hub.

Rows stream: a 100,000-row JSONL file is never held in memory at once. Every row comes with its
1-based row number (the line number for JSONL) so errors can name it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from steer.data.records import DataError

_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
LOCAL_KINDS = ("jsonl", "json", "parquet", "csv")


@dataclass
class RowSource:
    """Where rows come from (for messages) and the stream of ``(row_number, row)``."""

    name: str
    rows: Iterator[tuple[int, dict]]


def file_kind(path: Path) -> tuple[str, str | None]:
    """``(kind, compression)`` from a file name such as ``data.jsonl.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in _OPENERS else None
    kind = suffixes[-1].lstrip(".") if suffixes else ""
    if kind == "ndjson":
        kind = "jsonl"
    if kind not in LOCAL_KINDS:
        raise DataError("unsupported file", f"cannot read {path.name!r}: expected .jsonl, .json, .parquet or .csv"
                        " (optionally .gz, .xz or .bz2)")
    return kind, compression


def _open_text(path: Path, compression: str | None) -> IO[str]:
    if compression:
        return io.TextIOWrapper(_OPENERS[compression](path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _jsonl(path: Path, compression: str | None) -> Iterator[tuple[int, dict]]:
    with _open_text(path, compression) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            yield number, _decode(line, path, number)


def _decode(line: str, path: Path, number: int) -> dict:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError("invalid json", f"invalid JSON ({err.msg} at column {err.colno})",
                        where=str(path), row=number) from None
    if not isinstance(value, dict):
        raise DataError("invalid json", f"a row must be a JSON object, got {type(value).__name__}",
                        where=str(path), row=number)
    return value


def _json(path: Path, compression: str | None) -> Iterator[tuple[int, dict]]:
    with _open_text(path, compression) as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # JSON lines in a .json file, as datasets accepts
            yield from ((n, _decode(line, path, n)) for n, line in enumerate(text.splitlines(), 1) if line.strip())
            return
        raise DataError("invalid json", f"invalid JSON ({err.msg})", where=str(path), row=err.lineno) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError("invalid json", "a .json file must hold a list of row objects", where=str(path))
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError("invalid json", f"a row must be a JSON object, got {type(row).__name__}",
                            where=str(path), row=number)
        yield number, row


def _parquet(path: Path, compression: str | None) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _csv(path: Path, compression: str | None) -> Iterator[tuple[int, dict]]:
    import pandas as pd

    # Row numbers count the header as line 1, like a spreadsheet.
    number = 1
    for chunk in pd.read_csv(path, chunksize=4096, compression="infer",
                             keep_default_na=False):
        for row in chunk.to_dict(orient="records"):
            number += 1
            yield number, {k: _py(v) for k, v in row.items()}


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


_READERS = {"jsonl": _jsonl, "json": _json, "parquet": _parquet, "csv": _csv}


def _hub(source: str, split: str) -> Iterator[tuple[int, dict]]:
    import datasets

    try:
        data = datasets.load_dataset(source, split=split)
    except Exception as err:  # datasets raises many types (connection, not found, bad split)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError("unreadable source", f"cannot load dataset {source!r} (split {split!r}): {first}") from None
    for number, row in enumerate(data, start=1):
        yield number, row


def read_rows(source: str | Path, split: str = "train") -> RowSource:
    """Rows of a local file, a local dataset directory, or a hub dataset id (``owner/name``)."""
    path = Path(source)
    if path.is_file():
        kind, compression = file_kind(path)
        return RowSource(str(path), _READERS[kind](path, compression))
    if path.is_dir() or (not path.exists() and str(source).count("/") == 1 and not str(source).startswith((".", "/"))):
        return RowSource(f"{source}[{split}]", _hub(str(source), split))
    raise DataError("unreadable source", f"no such file or dataset: {source}")
