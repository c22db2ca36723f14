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

from steer.data import canonical, generated, helpsteer, multifaceted, nemo, oasst, preference, safety, vision
from steer.data.io import read_rows
from steer.data.records import DataError, Record

RowConverter = Callable[[dict, str, Any], Record | list[Record]]  # (row, key, schema)

ROW_FORMATS: dict[str, RowConverter] = {
    "helpsteer": lambda row, key, schema: helpsteer.convert(row, key, multi_turn=False),
    "helpsteer2": lambda row, key, schema: helpsteer.convert(row, key, multi_turn=True),
    "multifaceted": lambda row, key, schema: multifaceted.convert(row, key),
    "multifaceted-dpo": lambda row, key, schema: multifaceted.convert_dpo(row, key),
    "helpsteer2-preference": lambda row, key, schema: preference.convert_helpsteer2(row, key),
    "helpsteer3": lambda row, key, schema: preference.convert_helpsteer3(row, key),
    "pku-saferlhf": lambda row, key, schema: safety.convert_pku(row, key),
    "beavertails": lambda row, key, schema: safety.convert_beavertails(row, key),
    "nemo-steerlm": nemo.convert_sft,
    "nemo-rm": nemo.convert_rm,
    "steer": canonical.convert,
    "steer-batch": generated.convert,
}
# formats whose rows may hold images: their converters also take the data file's folder (``base``)
VISION_FORMATS: dict[str, Callable[..., Record | list[Record]]] = {
    "steer": canonical.convert, "spa-vl": vision.convert_spa_vl, "vlfeedback": vision.convert_vlfeedback,
    "beavertails-v": vision.convert_beavertails_v, "beavertails-v-single": vision.convert_beavertails_v_single,
    "llamafactory": vision.convert_llamafactory,
}
TREE_FORMATS = ("oasst", "oasst-tree")  # rows are messages of trees, rebuilt before threads come out
FORMATS = ("helpsteer", "helpsteer2", "helpsteer2-preference", "helpsteer3", "oasst", "oasst-tree", "multifaceted",
           "multifaceted-dpo", "pku-saferlhf", "beavertails", "nemo-steerlm", "nemo-rm", "steer", "steer-batch",
           "spa-vl", "vlfeedback", "beavertails-v", "beavertails-v-single", "llamafactory")
# Checked in order: the first whose columns are all present wins.
_SIGNATURES = (
    ("steer-batch", generated.COLUMNS),  # before "steer": a batch row may hold the input's messages
    ("llamafactory", vision.LLAMAFACTORY_COLUMNS),  # before "steer": messages plus an images list
    ("steer", ("messages",)),
    ("vlfeedback", vision.VLFEEDBACK_COLUMNS),
    ("beavertails-v", vision.BEAVERTAILS_V_COLUMNS),
    ("beavertails-v-single", vision.BEAVERTAILS_V_SINGLE_COLUMNS),
    ("spa-vl", vision.SPA_VL_COLUMNS),
    ("steer", ("type", "prompt", "chosen", "rejected")),
    ("oasst-tree", oasst.TREE_COLUMNS),
    ("oasst", oasst.COLUMNS),
    ("nemo-steerlm", nemo.SFT_COLUMNS),
    ("nemo-rm", nemo.RM_COLUMNS),
    ("helpsteer3", preference.HELPSTEER3_COLUMNS),
    ("helpsteer2-preference", preference.HELPSTEER2_COLUMNS),
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


def _rowwise(rows: Iterable[tuple[int, Any]], convert: RowConverter, where: str, stem: str,
             schema: Any) -> Iterator[tuple[int, Any]]:
    for number, row in rows:
        if isinstance(row, DataError):  # a row that could not be read (lenient reading)
            yield number, row
            continue
        try:
            out = convert(row, f"{stem}:{number}", schema)
        except DataError as err:
            yield number, err.at(where, number)
            continue
        except (TypeError, ValueError, AttributeError, KeyError) as err:  # malformed nested values
            yield number, DataError("malformed row", f"{type(err).__name__}: {err}", where=where, row=number)
            continue
        yield number, out


def _outcomes(rows: Iterator[tuple[int, Any]], format: str, where: str, stem: str, langs: set[str] | None,
              strict: bool, schema: Any) -> Iterator[tuple[int, Any]]:
    if format == "oasst-tree":
        rows = oasst.tree_rows(rows)
    if format in TREE_FORMATS:
        return oasst.threads(rows, langs=langs, where=where, strict=strict)
    if format in VISION_FORMATS:
        base = Path(where).resolve().parent if Path(where).is_file() else None  # image paths are relative to the file
        vision_convert = VISION_FORMATS[format]
        convert: RowConverter = (lambda row, key, schema: vision_convert(row, key, schema, base=base)) if format == "steer" \
            else (lambda row, key, schema: vision_convert(row, key, base=base))
        return _rowwise(rows, convert, where, stem, schema)
    return _rowwise(rows, ROW_FORMATS[format], where, stem, schema)


def iter_records(source: str | Path, *, format: str = "auto", split: str = "train", skip_invalid: bool = False,
                 rejects: IO[str] | None = None, langs: set[str] | None = None, strict: bool = False,
                 schema: Any = None, report: LoadReport | None = None) -> Iterator[Record]:
    """Stream canonical records from ``source`` (a file, a dataset directory or a hub id).

    ``report`` (if given) is filled in as rows are consumed. With ``skip_invalid``, malformed rows
    are counted per reason and written to ``rejects`` (JSONL: source, row, column, reason, error).
    ``schema`` checks canonical and NeMo attribute labels (default: each built-in attribute's range);
    ``strict`` makes an OASST message whose parent is not in the file an error instead of a filter.
    A source with no rows at all is an error.
    """
    report = report if report is not None else LoadReport()
    src = read_rows(source, split, lenient=skip_invalid)
    report.source = src.name
    rows = _counted(src.rows, report)
    if format == "auto":
        head = list(itertools.islice(rows, 100))
        readable = [r for _, r in head if isinstance(r, dict)]
        columns = set().union(*(r.keys() for r in readable)) if readable else set()
        format = detect_format(columns, readable, str(source)) if readable else "steer"
        rows = itertools.chain(head, rows)
    if format not in FORMATS:
        raise DataError("unknown format", f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    report.format = format
    stem = Path(str(source)).name.split(".")[0] or "row"
    for number, outcome in _outcomes(rows, format, src.name, stem, langs, strict, schema):
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
            if isinstance(record, str):  # a part of the row left out (VLFeedback's unrated completions)
                report.filtered[record.removeprefix("filtered: ")] += 1
                continue
            report.examples += 1
            yield record
    if report.rows == 0:
        raise DataError("empty", "no rows: the source is empty", where=src.name)


def _counted(rows: Iterator[tuple[int, dict]], report: LoadReport) -> Iterator[tuple[int, dict]]:
    for item in rows:
        report.rows += 1
        yield item


REJECT_KEYS = ("source", "row", "reason", "error")


def load(source: str | Path, *, format: str = "auto", split: str = "train", skip_invalid: bool = False,
         rejects_path: str | Path | None = None, langs: set[str] | None = None, strict: bool = False,
         schema: Any = None) -> tuple[list[Record], LoadReport]:
    """Load every record of ``source`` into memory; see :func:`iter_records`. The rejects file is
    written atomically, never onto the source, never through a link, never over a file that is not a
    rejects file."""
    from contextlib import nullcontext

    from steer.outputs import atomic_output, jsonl_with

    report = LoadReport()
    writing = rejects_path is not None and skip_invalid
    target = (atomic_output(rejects_path, inputs=[source], owned=lambda p: jsonl_with(p, REJECT_KEYS), what="--rejects")
              if writing else nullcontext(None))
    with target as handle:
        records = list(iter_records(source, format=format, split=split, skip_invalid=skip_invalid, rejects=handle,
                                    langs=langs, strict=strict, schema=schema, report=report))
    return records, report
