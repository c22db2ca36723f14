"""Typed field access for rows: each check raises a DataError that names the column."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steer.data.records import DataError


def get(row: Mapping, column: str) -> Any:
    """The value of ``column``; a missing column (or null) is an error."""
    if column not in row or row[column] is None:
        raise DataError("missing column", "missing value", column=column)
    return row[column]


def text(row: Mapping, column: str) -> str:
    """A non-empty string."""
    value = get(row, column)
    if not isinstance(value, str):
        raise DataError("wrong type", f"expected text, got {type(value).__name__}", column=column)
    if not value.strip():
        raise DataError("empty text", "empty text", column=column)
    return value


def optional_text(row: Mapping, column: str) -> str | None:
    """A string or nothing (missing, null or empty)."""
    value = row.get(column)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError("wrong type", f"expected text, got {type(value).__name__}", column=column)
    return value


def integer(row: Mapping, column: str, lo: int, hi: int) -> int:
    """An integer in ``lo..hi`` (a float with an integral value, as CSV gives, is accepted)."""
    value = get(row, column)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError("wrong type", f"expected an integer, got {value!r}", column=column)
    if not lo <= value <= hi:
        raise DataError("out of range", f"{value} is outside {lo}-{hi}", column=column)
    return value


def number(value: Any, column: str, lo: float, hi: float) -> float:
    """A finite number in ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise DataError("wrong type", f"expected a number, got {value!r}", column=column)
    if not lo <= value <= hi:
        raise DataError("out of range", f"{value} is outside {lo}-{hi}", column=column)
    return float(value)


def boolean(row: Mapping, column: str) -> bool:
    """A boolean (0/1 integers, as CSV gives, are accepted)."""
    value = get(row, column)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)
    if not isinstance(value, bool):
        raise DataError("wrong type", f"expected true/false, got {value!r}", column=column)
    return value


def flags(row: Mapping, column: str) -> dict[str, bool]:
    """A mapping of category name to bool (harm categories)."""
    value = get(row, column)
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise DataError("wrong type", f"expected a mapping of category to true/false, got {type(value).__name__}",
                        column=column)
    return {k: boolean(value, k) for k in value}


def mapping_list(row: Mapping, column: str) -> list[dict]:
    """A list of objects."""
    value = get(row, column)
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise DataError("wrong type", "expected a list of objects", column=column)
    return [dict(v) for v in value]
