"""``steer label``: annotate every assistant turn of a dataset with an APM's predicted attributes (or a
reward or cost model's score: ``scores.reward`` / ``scores.cost``).

Any supported dataset goes in; canonical JSONL (``--format steer``) comes out, each record as it was
loaded (id, system, source, meta, every turn) with ``attributes`` on each assistant turn set to the
predictions: clipped to the schema's range and rounded, or raw floats. A preference pair gets
``labels.chosen`` and ``labels.rejected``. This is how unlabelled data becomes SteerLM training data.

Records are appended and fsynced a batch at a time; re-running skips the ids already written (a line
cut short by a kill is dropped first), so after any interruption each record is written exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from steer.callables import make_callable
from steer.data.records import PreferencePair, Record
from steer.errors import UsageError
from steer.events import Events, Progress
from steer.outputs import BatchReport, append_rows, changed, refuse_stale, resume
from steer.runs import model_id


def _conversations(record: Record) -> list[list[dict]]:
    """The conversations to rate for a record: one per assistant turn (a pair: chosen, then rejected)."""
    if isinstance(record, PreferencePair):
        head = ([{"role": "system", "content": record.system}] if record.system else []) + [m.to_json() for m in record.prompt]
        return [head + [{"role": "assistant", "content": reply}] for reply in (record.chosen, record.rejected)]
    chat = record.chat()
    return [chat[: k + 1] for k, m in enumerate(chat) if m["role"] == "assistant"]


def predicted(apm: Any, records: list[Record], *, raw: bool = False, batch_size: int = 32) -> list[Record]:
    """Copies of ``records`` with every assistant turn's ``attributes`` set to the APM's predictions,
    clipped and rounded, and with ``raw`` its raw predictions as ``scores`` too (a preference pair:
    ``labels.chosen`` and ``labels.rejected``, raw when ``raw``)."""
    convs = [_conversations(r) for r in records]
    predictions = iter(apm.predict([c for cs in convs for c in cs], batch_size))
    out: list[Record] = []
    for record in records:
        if isinstance(record, PreferencePair):
            chosen, rejected = (apm.values(next(predictions), raw=raw) for _ in range(2))
            out.append(replace(record, labels={**record.labels, "chosen": chosen, "rejected": rejected}))
        else:
            messages = [_rated(m, apm, next(predictions), raw) if m.role == "assistant" else m for m in record.messages]
            out.append(replace(record, messages=messages))
    return out


def _rated(message: Any, apm: Any, prediction: list[float], raw: bool) -> Any:
    if apm.schema is None:  # a reward or cost model: its score joins the turn's raw scores, labels stay
        return replace(message, scores={**(message.scores or {}), **apm.values(prediction)})
    return replace(message, attributes=apm.values(prediction), scores=apm.values(prediction, raw=True) if raw else None)


def label_records(apm: Any, records: Iterable[Record], out: str | Path, *, raw: bool = False, batch_size: int = 32,
                  total: int | None = None, progress: Events | None = None, labelled_by: str = "",
                  inputs: tuple[str | Path, ...] = ()) -> BatchReport:
    """Score and write every record not yet in ``out`` (by id); ``apm`` is a loaded :class:`steer.apm.APM`.

    Each written record says in ``meta.steer_label`` which APM labelled it (``labelled_by``) and
    whether raw scores were kept; a re-run with another APM, or over a file of other records, is refused.
    """
    out = Path(out)
    mark = {"apm": labelled_by, "raw": raw}
    done = resume(out, "id", inputs=inputs)
    for key, row in done.items():
        stale = changed((row.get("meta") or {}).get("steer_label") or {}, mark)
        if stale:
            refuse_stale(out, f"record {key}", [f"steer_label.{name}" for name in stale])
    report = BatchReport(0, 0, 0)
    seen: set[str] = set()
    pending: list[Record] = []
    turns = 0  # conversations to rate in pending
    if progress:
        progress(Progress("label", 0, total or 0))
    with open(out, "a", encoding="utf-8") as handle:

        def flush() -> None:
            nonlocal turns
            labelled = predicted(apm, pending, raw=raw, batch_size=batch_size)
            append_rows(handle, [{**r.to_json(), "meta": {**r.meta, "steer_label": mark}} for r in labelled])
            report.written += len(pending)
            pending.clear()
            turns = 0

        for record in records:
            if record.id in seen:
                raise UsageError(f"duplicate id {record.id!r}: labelling resumes by id, so ids must be unique")
            seen.add(record.id)
            report.total += 1
            if record.id in done:
                report.skipped += 1
            else:
                pending.append(record)
                turns += 2 if isinstance(record, PreferencePair) else sum(m.role == "assistant" for m in record.messages)
                if turns >= batch_size:
                    flush()
            if progress and not pending:
                progress(Progress("label", report.total, max(total or 0, report.total)))
        if pending:
            flush()
    if progress:
        progress(Progress("label", report.total, report.total))
    return report


def run(apm_path: str, source: str, out: str | Path, *, format: str = "auto", split: str = "train", raw: bool = False,
        batch_size: int = 32, skip_invalid: bool = False, progress: Events | None = None) -> tuple[BatchReport, Any, int]:
    """``steer label``: load the APM (or reward or cost model), then the data, and label every record;
    ``(report, model, rows rejected)``."""
    from steer.apm import Scorer
    from steer.data.loader import load

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    apm = Scorer.load(apm_path, kinds=("apm", "rm", "cost"))
    records, loaded = load(source, format=format, split=split, skip_invalid=skip_invalid)
    report = label_records(apm, records, out, raw=raw, batch_size=batch_size, total=len(records), progress=progress,
                           labelled_by=model_id(apm_path), inputs=(source,))
    return report, apm, sum(loaded.rejected.values())


make_callable(__name__, "steer.api:label")  # steer.label(model, input, output): the Python API
