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


def as_integer(value: Any) -> int | None:
    """``value`` as an int when it is one: an int, an integral float, or such a number as text
    ("4", " 4.0 ": ratings often arrive as strings, and CSV cells always do); else None."""
    if isinstance(value, str):
        try:
            value = float(value.strip()) if value.strip() else None
        except ValueError:
            return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def integer(row: Mapping, column: str, lo: int, hi: int) -> int:
    """An integer in ``lo..hi`` (an integral float, or a number as text, is accepted)."""
    value = get(row, column)
    if isinstance(value, str) and not value.strip():  # an empty CSV cell
        raise DataError("missing column", "missing value", column=column)
    number = as_integer(value)
    if number is None:
        raise DataError("wrong type", f"expected an integer, got {value!r}", column=column)
    if not lo <= number <= hi:
        raise DataError("out of range", f"{number} is outside {lo}-{hi}", column=column)
    return number


def number(value: Any, column: str, lo: float, hi: float) -> float:
    """A finite number in ``lo..hi``."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise DataError("wrong type", f"expected a number, got {value!r}", column=column)
    if not lo <= value <= hi:
        raise DataError("out of range", f"{value} is outside {lo}-{hi}", column=column)
    return float(value)


_TRUTH = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def as_boolean(value: Any) -> bool | None:
    """``value`` as a bool when it is one: a bool, 0/1, or "true"/"false"/"yes"/"no"/"0"/"1" as text; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _TRUTH.get(value.strip().lower())
    return None


def boolean(row: Mapping, column: str) -> bool:
    """A boolean (see :func:`as_boolean` for the spellings accepted)."""
    value = get(row, column)
    truth = as_boolean(value)
    if truth is None:
        raise DataError("wrong type", f"expected true/false, got {value!r}", column=column)
    return truth


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
