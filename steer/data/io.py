"""Reading rows from local files (jsonl, json, parquet, csv; .gz/.xz/.bz2) or the Hugging Face hub.

Rows stream: a 100,000-row JSONL file is never held in memory at once. Every row comes with its
1-based row number (the line number for JSONL and CSV, the header being line 1) so errors can name
it. A file that cannot be read (not UTF-8, a broken or truncated archive, not parquet, a CSV quote
left open) is one ``DataError`` naming the file and, where known, the row. A row that cannot be
read (invalid JSON, nested too deep, text that is not valid Unicode, a CSV row with too many or too
few fields) is a ``DataError`` too: raised, or with ``lenient`` yielded in the row's place, so that
``--skip-invalid`` can count it and go on.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from steer.data.records import DataError

_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
LOCAL_KINDS = ("jsonl", "json", "parquet", "csv")
# a JSON \u escape of a UTF-16 surrogate: only lines holding one can hold a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)  # long responses are fields of many MB

Row = tuple[int, dict | DataError]


@dataclass
class RowSource:
    """Where rows come from (for messages) and the stream of ``(row_number, row)``; with ``lenient``
    a row that cannot be read comes as a ``DataError`` instead of a dict."""

    name: str
    rows: Iterator[tuple[int, Any]]


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


def _open_binary(path: Path, compression: str | None) -> IO[bytes]:
    return _OPENERS[compression](path, "rb") if compression else open(path, "rb")


def decode_line(line: bytes, where: str, number: int | None) -> str:
    """One line as text; not UTF-8 is a ``DataError`` naming the line."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError("invalid text", f"not UTF-8 text ({err.reason} at byte {err.start} of the line)",
                        where=where, row=number) from None


def _lines(handle: IO[bytes], where: str) -> Iterator[str]:
    """The lines of a binary file as text, each decoded on its own so an error names its line."""
    for number, line in enumerate(handle, start=1):
        yield decode_line(line, where, number)


def has_lone_surrogate(value: Any) -> bool:
    """Whether a string inside ``value`` (nested lists and dicts too) holds a lone UTF-16 surrogate,
    which JSON can escape but no text encoding can write. Walks with a stack: any depth JSON parsed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def decode_json(text: str, where: str, number: int | None) -> Any:
    """One JSON value from ``text``, every way it can fail as a ``DataError`` naming ``where`` and ``number``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError("invalid json", f"invalid JSON ({err.msg} at column {err.colno})", where=where, row=number) from None
    except RecursionError:
        raise DataError("invalid json", "JSON nested too deeply to read", where=where, row=number) from None
    except ValueError as err:  # an integer literal longer than Python converts
        raise DataError("invalid json", f"invalid JSON ({str(err).split(':')[0]})", where=where, row=number) from None
    if _SURROGATE_ESCAPE.search(text) and has_lone_surrogate(value):
        raise DataError("invalid text", "a string holds a lone surrogate (\\ud800-\\udfff): not valid Unicode text",
                        where=where, row=number)
    return value


def _object(value: Any, where: str, number: int) -> dict:
    if not isinstance(value, dict):
        raise DataError("invalid json", f"a row must be a JSON object, got {type(value).__name__}", where=where, row=number)
    return value


def _row_or_error(read: Callable[[], dict], lenient: bool) -> dict | DataError:
    """``read()``'s row; a row it cannot read is raised, or with ``lenient`` returned in its place."""
    try:
        return read()
    except DataError as err:
        if lenient:
            return err
        raise


def _row(text: str, where: str, number: int, lenient: bool) -> dict | DataError:
    return _row_or_error(lambda: _object(decode_json(text, where, number), where, number), lenient)


def _jsonl(path: Path, compression: str | None, lenient: bool) -> Iterator[Row]:
    where = str(path)
    with _open_binary(path, compression) as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, _row_or_error(
                    lambda: _object(decode_json(decode_line(raw, where, number), where, number), where, number), lenient)


def _json(path: Path, compression: str | None, lenient: bool) -> Iterator[Row]:
    with _open_binary(path, compression) as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError("invalid text", f"not UTF-8 text ({err.reason})", where=str(path), row=line) from None
    try:
        data = decode_json(text, str(path), None)
    except DataError as err:
        if "Extra data" not in err.detail:
            raise
        # JSON lines in a .json file, as datasets accepts
        yield from ((n, _row(line, str(path), n, lenient)) for n, line in enumerate(text.splitlines(), 1) if line.strip())
        return
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError("invalid json", "a .json file must hold a list of row objects", where=str(path))
    for number, row in enumerate(data, start=1):
        yield number, _row_or_error(lambda: _object(row, str(path), number), lenient)


def _parquet(path: Path, compression: str | None, lenient: bool) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise DataError("unreadable file", f"not a readable parquet file ({_first_line(err)})", where=str(path),
                        row=number + 1 if number else None) from None


def _csv(path: Path, compression: str | None, lenient: bool) -> Iterator[Row]:
    """CSV rows as strings (the loaders convert each cell: no guessing of a column's type from a chunk);
    a row with more or fewer fields than the header is refused. Line numbers count the header as 1."""
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with _open_binary(path, compression) as handle:
        reader = csv.reader(_lines(handle, str(path)), strict=True)
        try:
            header = next(reader, None)
            if not header:
                raise DataError("empty", "no header row: an empty CSV file", where=str(path))
            for fields in reader:
                number = reader.line_num
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) == len(header):
                    yield number, dict(zip(header, fields))
                    continue
                yield number, _row_or_error(lambda: _ragged(fields, header, str(path), number), lenient)
        except csv.Error as err:
            raise DataError("unreadable file", f"malformed CSV ({err})", where=str(path), row=reader.line_num) from None


def _ragged(fields: list[str], header: list[str], where: str, number: int) -> dict:
    """Refuses a CSV row whose field count is not the header's (always raises)."""
    raise DataError("malformed row", f"{len(fields)} fields, the header has {len(header)}", where=where, row=number)


_READERS = {"jsonl": _jsonl, "json": _json, "parquet": _parquet, "csv": _csv}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _guarded(rows: Iterator[Row], path: Path, compression: str | None) -> Iterator[Row]:
    """The rows of a local file, with every way the file itself cannot be read as one ``DataError``."""
    number = 0
    try:
        for number, row in rows:
            yield number, row
    except (EOFError, OSError, lzma.LZMAError, zlib.error, UnicodeDecodeError) as err:
        what = f"a readable {compression.lstrip('.')} archive" if compression else "a readable file"
        raise DataError("unreadable file", f"not {what} ({_first_line(err)})", where=str(path),
                        row=number + 1 if number else None) from None


def _hub(source: str, split: str) -> Iterator[Row]:
    import datasets

    try:
        data = datasets.load_dataset(source, split=split)
    except Exception as err:  # datasets raises many types (connection, not found, bad split)
        raise DataError("unreadable source", f"cannot load dataset {source!r} (split {split!r}): {_first_line(err)}") from None
    images = {name: datasets.Image(decode=False) for name, kind in (data.features or {}).items()
              if isinstance(kind, datasets.Image)}
    if images:  # rows bring {"bytes", "path"}: steer checks each image itself, so a bad one is a counted reject
        data = data.cast(datasets.Features({**data.features, **images}))
    for number, row in enumerate(data, start=1):
        yield number, row


def read_rows(source: str | Path, split: str = "train", lenient: bool = False) -> RowSource:
    """Rows of a local file, a local dataset directory, or a hub dataset id (``owner/name``)."""
    path = Path(source)
    if path.is_file():
        kind, compression = file_kind(path)
        return RowSource(str(path), _guarded(_READERS[kind](path, compression, lenient), path, compression))
    if path.is_dir() or (not path.exists() and str(source).count("/") == 1 and not str(source).startswith((".", "/"))):
        return RowSource(f"{source}[{split}]", _hub(str(source), split))
    raise DataError("unreadable source", f"no such file or dataset: {source}")
