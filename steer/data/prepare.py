"""``steer data prepare``: load and mix sources, encode them with a task's encoder, save an Arrow dataset.

What a record becomes is the task's business (an :class:`Encoder`: SFT token labels, APM attribute
targets, ...); this module only loads, mixes, encodes in parallel, counts and caches. The result
lives in a cache folder named by a content hash of the inputs (file bytes or hub id), the encoder's
fingerprint (task, template, tokenizer files, what else decides the rows) and the data settings;
preparing the same recipe twice reuses it, and training reads it from there.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from steer import __version__
from steer.config import DataConfig, SourceConfig
from steer.data.loader import LoadReport, load
from steer.data.records import Conversation, DataError, Record
from steer.errors import UsageError
from steer.events import Events, Progress
from steer.models import cache_home
from steer.templates import SteerTemplate

CHUNK = 512
META = "steer_prepared.json"
# Rejections every task may produce in the normal course of things (counted, never fatal).
OTHER_AXIS = "other axis"  # a preference pair on an axis the recipe does not train on
IDENTICAL = "identical sides"  # a pair whose chosen and rejected texts are the same
ROUTINE = ("too long", "no loss tokens", "no labels", OTHER_AXIS, IDENTICAL)


@dataclass
class EncodedBatch:
    """What an encoder made of a batch of records: one list per column, the rejects, the tokens
    kept and how much carries loss (in the encoder's ``loss_unit``)."""

    columns: dict[str, list]
    errors: list[DataError]
    tokens: int
    loss: int


@dataclass
class Encoder:
    """How records become the columns of a prepared dataset; each task builds its own.

    ``encode(records, max_length, overlong)`` does the work; ``columns`` maps each column to the
    Arrow type of its list items; ``fingerprint`` holds whatever, besides the template and the
    tokenizer, decides the rows (the APM's attribute names, say); ``accepts`` are the record types
    it encodes (others are counted as filtered); ``select``, given a source's accepted records, returns
    those to use and the counts of the rest by reason (the cost model takes a source's pairs, or its
    single rated answers when it has no pairs).
    """

    kind: str
    template: SteerTemplate
    tokenizer: Any
    columns: Mapping[str, str]
    loss_unit: str
    encode: Callable[[list[Any], int, str], EncodedBatch]
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    accepts: tuple[type, ...] = (Conversation,)
    schema: Any = None  # the schema records' attribute labels are checked against (None: the built-in ones)
    select: Callable[[list[Any]], tuple[list[Any], Mapping[str, int]]] | None = None
    tokenizer_id: str = ""  # a folder (its files are hashed) or hub id
    vision: Any = None  # a vision-language model's ImageInputs (steer.vision): images become its image tokens


@dataclass
class Prepared:
    """Where the tokenized dataset is and what went into it."""

    path: Path
    examples: int
    tokens: int
    loss: int
    loss_unit: str
    cached: bool
    reports: list[LoadReport] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        return {"path": str(self.path), "examples": self.examples, "tokens": self.tokens, "loss": self.loss,
                "loss_unit": self.loss_unit, "cached": self.cached, "rejected": dict(self.rejected),
                "sources": [r.to_json() for r in self.reports]}


def cache_root(data: DataConfig) -> Path:
    """The recipe's cache folder, else steer's cache (``models.cache_home``) ``/prepared``."""
    if data.cache_dir:
        return Path(data.cache_dir)
    return cache_home() / "prepared"


def _digest_path(path: Path, h: Any) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)


def cache_key(sources: list[SourceConfig], encoder: Encoder, data: DataConfig, seed: int) -> str:
    """Content hash of everything that decides the prepared rows."""
    h = hashlib.sha256()
    settings = {"version": __version__, "kind": encoder.kind, "sources": [s.model_dump() for s in sources],
                "tokenizer": encoder.tokenizer_id, "columns": dict(encoder.columns), "fingerprint": dict(encoder.fingerprint),
                "schema": encoder.schema.to_dict() if encoder.schema is not None else None,
                "max_length": data.max_length, "overlong": data.overlong, "seed": seed, "skip_invalid": data.skip_invalid}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(encoder.template.source.encode())
    for ident in [s.path for s in sources] + [encoder.tokenizer_id]:
        if Path(ident).exists():
            _digest_path(Path(ident), h)
    return h.hexdigest()[:16]


def mix(sources: list[SourceConfig], seed: int, skip_invalid: bool, accepts: tuple[type, ...] = (Conversation,),
        schema: Any = None, select: Any = None) -> tuple[list[Record], list[LoadReport]]:
    """Load every source and mix by weight: the whole part repeats, the fraction is a seeded sample.
    Records of other types than ``accepts`` (or left out by ``select``) are counted as filtered; labels
    are checked against ``schema``."""
    rng = random.Random(seed)
    mixed: list[Record] = []
    reports = []
    for source in sources:
        records, report = load(source.path, format=source.format, split=source.split, skip_invalid=skip_invalid,
                               schema=schema)
        reports.append(report)
        kept = [r for r in records if isinstance(r, accepts)]
        for other, n in Counter(type(r).__name__ for r in records if not isinstance(r, accepts)).items():
            report.filtered[f"{other} records (not used by this task)"] += n
        if select is not None:
            kept, dropped = select(kept)
            for reason, n in dropped.items():
                report.filtered[reason] += n
        if source.max_examples is not None:
            kept = kept[: source.max_examples]
        whole, frac = int(source.weight), source.weight - int(source.weight)
        mixed += kept * whole + rng.sample(kept, round(frac * len(kept)))
    rng.shuffle(mixed)
    return mixed, reports


_WORKER: dict = {}


def _init_worker(encoder: Encoder, max_length: int, overlong: str) -> None:
    _WORKER.update(encoder=encoder, max_length=max_length, overlong=overlong)


def _encode_chunk(chunk: list[Record]) -> tuple[Any, list[DataError], int, int]:
    """Encode a chunk into an Arrow table (built in the worker: cheap to send back) plus its rejects,
    the tokens kept and what carries loss."""
    import pyarrow as pa

    encoder: Encoder = _WORKER["encoder"]
    batch = encoder.encode(chunk, _WORKER["max_length"], _WORKER["overlong"])
    table = pa.table({name: pa.array(batch.columns[name], pa.list_(getattr(pa, kind)()))
                      for name, kind in encoder.columns.items()})
    return table, batch.errors, batch.tokens, batch.loss


def _cached(out: Path, encoder: Encoder) -> Prepared:
    meta = json.loads((out / META).read_text())
    reports = [LoadReport(**{**r, "rejected": Counter(r["rejected"]), "filtered": Counter(r["filtered"])})
               for r in meta["sources"]]
    return Prepared(out, meta["examples"], meta["tokens"], meta["loss"], encoder.loss_unit, True, reports,
                    Counter(meta["rejected"]))


def prepare(sources: list[SourceConfig], encoder: Encoder, data: DataConfig, *, seed: int,
            progress: Events | None = None, force: bool = False) -> Prepared:
    """Encode ``sources`` into ``<cache>/<hash>`` (an Arrow dataset with ``encoder.columns``); reused when cached."""
    out = cache_root(data) / cache_key(sources, encoder, data, seed)
    if (out / META).is_file() and not force:
        return _cached(out, encoder)
    records, reports = mix(sources, seed, data.skip_invalid, encoder.accepts, encoder.schema, encoder.select)
    chunks = [records[i:i + CHUNK] for i in range(0, len(records), CHUNK)]
    args = (encoder, data.max_length, data.overlong)
    tables: list = []
    rejected: Counter = Counter()
    totals = [0, 0, 0]  # records done, tokens, loss
    if progress:
        progress(Progress("tokenize", 0, len(records)))

    def collect(chunk: list[Record], result: tuple[Any, list[DataError], int, int]) -> None:
        table, errors, tokens, loss = result
        for error in errors:
            if not data.skip_invalid and error.reason not in ROUTINE:
                raise error
            rejected[error.reason] += 1
        tables.append(table)
        totals[0] += len(chunk)
        totals[1] += tokens
        totals[2] += loss
        if progress:
            progress(Progress("tokenize", totals[0], len(records)))

    if data.num_proc > 1 and len(chunks) > 1:
        with get_context("fork").Pool(data.num_proc, _init_worker, args) as pool:
            for chunk, result in zip(chunks, pool.imap(_encode_chunk, chunks)):
                collect(chunk, result)
    else:
        _init_worker(*args)
        for chunk in chunks:
            collect(chunk, _encode_chunk(chunk))
    if totals[0] and not any(t.num_rows for t in tables):
        why = ", ".join(f"{k}: {v}" for k, v in rejected.items())
        raise UsageError(f"no examples left to train on: all {totals[0]} were rejected ({why}); "
                         f"raise data.max_length (now {data.max_length})"
                         + (" or set data.overlong: truncate" if "too long" in rejected else ""))
    meta = {"tokens": totals[1], "loss": totals[2], "loss_unit": encoder.loss_unit,
            "rejected": dict(rejected), "template": encoder.template.spec(), "tokenizer": encoder.tokenizer_id,
            "sources": [r.to_json() for r in reports]}
    meta["examples"] = _save(tables, encoder, out, meta)
    return Prepared(out, meta["examples"], totals[1], totals[2], encoder.loss_unit, False, reports, rejected)


def _save(tables: list, encoder: Encoder, out: Path, meta: dict) -> int:
    """Write the dataset and its metadata into a temporary folder, then move it into place; the row count."""
    import datasets
    import pyarrow as pa

    features = datasets.Features({name: datasets.List(datasets.Value(t)) for name, t in encoder.columns.items()})
    empty = pa.table({name: pa.array([], pa.list_(getattr(pa, t)())) for name, t in encoder.columns.items()})
    ds = datasets.Dataset(pa.concat_tables(tables or [empty]), info=datasets.DatasetInfo(features=features))
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a run that was killed while writing
    datasets.disable_progress_bars()  # steer shows its own progress
    try:
        ds.save_to_disk(str(tmp))
    finally:
        datasets.enable_progress_bars()
    (tmp / META).write_text(json.dumps({**meta, "examples": len(ds)}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return len(ds)
