"""Load any supported dataset into canonical records, with validation that never loses rows silently.

Every row ends up counted: as examples produced, as a rejected row (with the reason, in a rejects
JSONL when ``skip_invalid``), or as filtered (deleted messages, other languages). Without
``skip_invalid`` the first malformed row raises a ``DataError`` naming file, row and column.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from steer.data import canonical, helpsteer, multifaceted, oasst, safety
from steer.data.io import read_rows
from steer.data.records import DataError, Record

RowConverter = Callable[[dict, str], Record | list[Record]]

ROW_FORMATS: dict[str, RowConverter] = {
    "helpsteer": lambda row, key: helpsteer.convert(row, key, multi_turn=False),
    "helpsteer2": lambda row, key: helpsteer.convert(row, key, multi_turn=True),
    "multifaceted": multifaceted.convert,
    "multifaceted-dpo": multifaceted.convert_dpo,
    "pku-saferlhf": safety.convert_pku,
    "beavertails": safety.convert_beavertails,
    "steer": canonical.convert,
}
FORMATS = ("helpsteer", "helpsteer2", "oasst", "multifaceted", "multifaceted-dpo", "pku-saferlhf", "beavertails", "steer")
# Checked in order: the first whose columns are all present wins.
_SIGNATURES = (
    ("steer", ("messages",)),
    ("steer", ("type", "prompt", "chosen", "rejected")),
    ("oasst", oasst.COLUMNS),
    ("pku-saferlhf", safety.PKU_COLUMNS),
    ("beavertails", safety.BEAVERTAILS_COLUMNS),
    ("multifaceted-dpo", multifaceted.DPO_COLUMNS),
    ("multifaceted", multifaceted.COLUMNS),
    ("helpsteer", helpsteer.COLUMNS),
)


@dataclass
class LoadReport:
    """What happened to every row of a source."""

    source: str = ""
    format: str = ""
    rows: int = 0
    examples: int = 0
    rejected: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        return {"source": self.source, "format": self.format, "rows": self.rows, "examples": self.examples,
                "rejected": dict(self.rejected), "filtered": dict(self.filtered)}


def detect_format(columns: Iterable[str], sample: list[dict], source: str) -> str:
    """The format whose signature columns are present (HelpSteer2 if prompts hold inline turns)."""
    cols = set(columns)
    for name, needed in _SIGNATURES:
        if set(needed) <= cols:
            if name == "helpsteer" and ("helpsteer2" in source.lower() or any(
                    "<extra_id_1>" in str(r.get("prompt", "")) for r in sample)):
                return "helpsteer2"
            return name
    raise DataError("unknown format", f"cannot tell the format from columns {sorted(cols)[:12]}; pass --format"
                    f" ({', '.join(FORMATS)})", where=source)


def _rowwise(rows: Iterable[tuple[int, dict]], convert: RowConverter, where: str, stem: str) -> Iterator[tuple[int, Any]]:
    for number, row in rows:
        try:
            out = convert(row, f"{stem}:{number}")
        except DataError as err:
            yield number, err.at(where, number)
            continue
        except (TypeError, ValueError, AttributeError, KeyError) as err:  # malformed nested values
            yield number, DataError("malformed row", f"{type(err).__name__}: {err}", where=where, row=number)
            continue
        yield number, out


def iter_records(source: str | Path, *, format: str = "auto", split: str = "train", skip_invalid: bool = False,
                 rejects: IO[str] | None = None, langs: set[str] | None = None,
                 report: LoadReport | None = None) -> Iterator[Record]:
    """Stream canonical records from ``source`` (a file, a dataset directory or a hub id).

    ``report`` (if given) is filled in as rows are consumed. With ``skip_invalid``, malformed rows
    are counted per reason and written to ``rejects`` (JSONL: source, row, column, reason, error).
    """
    report = report if report is not None else LoadReport()
    src = read_rows(source, split)
    report.source = src.name
    rows = _counted(src.rows, report)
    if format == "auto":
        head = list(itertools.islice(rows, 100))
        columns = set().union(*(r.keys() for _, r in head)) if head else set()
        format = detect_format(columns, [r for _, r in head], str(source)) if head else "steer"
        rows = itertools.chain(head, rows)
    if format not in FORMATS:
        raise DataError("unknown format", f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    report.format = format
    stem = Path(str(source)).name.split(".")[0] or "row"
    if format == "oasst":
        outcomes = oasst.threads(rows, langs=langs, where=src.name)
    else:
        outcomes = _rowwise(rows, ROW_FORMATS[format], src.name, stem)
    for number, outcome in outcomes:
        if isinstance(outcome, DataError):
            if not skip_invalid:
                raise outcome
            report.rejected[outcome.reason] += 1
            if rejects is not None:
                rejects.write(json.dumps({"source": src.name, "row": number, "column": outcome.column,
                                          "reason": outcome.reason, "error": str(outcome)}, ensure_ascii=False) + "\n")
            continue
        if isinstance(outcome, str):
            report.filtered[outcome.removeprefix("filtered: ")] += 1
            continue
        for record in outcome if isinstance(outcome, list) else [outcome]:
            report.examples += 1
            yield record


def _counted(rows: Iterator[tuple[int, dict]], report: LoadReport) -> Iterator[tuple[int, dict]]:
    for item in rows:
        report.rows += 1
        yield item


def load(source: str | Path, *, format: str = "auto", split: str = "train", skip_invalid: bool = False,
         rejects_path: str | Path | None = None, langs: set[str] | None = None) -> tuple[list[Record], LoadReport]:
    """Load every record of ``source`` into memory; see :func:`iter_records`."""
    report = LoadReport()
    handle = open(rejects_path, "w", encoding="utf-8") if rejects_path and skip_invalid else None
    try:
        records = list(iter_records(source, format=format, split=split, skip_invalid=skip_invalid, rejects=handle,
                                    langs=langs, report=report))
    finally:
        if handle:
            handle.close()
    return records, report
