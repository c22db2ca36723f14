"""``steer data prepare``: load and mix sources, render, tokenize, save an Arrow dataset.

The result lives in a cache folder named by a content hash of the inputs (file bytes or hub id),
the tokenizer files, the steering template and the length settings; preparing the same recipe
twice reuses it, and training reads it from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from steer import __version__
from steer.config import SFTRecipe, SourceConfig
from steer.data.encode import Encoded, Scored, encode_many, encode_scored, load_tokenizer, recipe_template, template_for
from steer.data.loader import LoadReport, load
from steer.data.records import Conversation, DataError
from steer.errors import UsageError

Progress = Callable[[int, int], None]
CHUNK = 512


@dataclass
class Prepared:
    """Where the tokenized dataset is and what went into it."""

    path: Path
    examples: int
    tokens: int
    loss_tokens: int
    cached: bool
    reports: list[LoadReport] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    kind: str = "sft"  # "apm": examples are rated turns and loss_tokens counts them

    def to_json(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "examples": self.examples, "tokens": self.tokens,
                "loss_tokens": self.loss_tokens, "cached": self.cached, "rejected": dict(self.rejected),
                "sources": [r.to_json() for r in self.reports]}


def cache_root(recipe: SFTRecipe) -> Path:
    """The recipe's cache folder, else $STEER_CACHE, else ~/.cache/steer/prepared."""
    if recipe.data.cache_dir:
        return Path(recipe.data.cache_dir)
    return Path(os.environ.get("STEER_CACHE", Path.home() / ".cache" / "steer")) / "prepared"


def _digest_path(path: Path, h: Any) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)


def cache_key(sources: list[SourceConfig], tokenizer_id: str, template_source: str, recipe: SFTRecipe) -> str:
    """Content hash of everything that decides the tokenized output."""
    h = hashlib.sha256()
    settings = {"version": __version__, "kind": recipe.kind, "sources": [s.model_dump() for s in sources], "tokenizer": tokenizer_id,
                "max_length": recipe.data.max_length, "overlong": recipe.data.overlong,
                "seed": recipe.train.seed, "skip_invalid": recipe.data.skip_invalid}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(template_source.encode())
    for ident in [s.path for s in sources] + [tokenizer_id]:
        if Path(ident).exists():
            _digest_path(Path(ident), h)
    return h.hexdigest()[:16]


def mix(sources: list[SourceConfig], seed: int, skip_invalid: bool) -> tuple[list[Conversation], list[LoadReport]]:
    """Load every source and mix by weight: the whole part repeats, the fraction is a seeded sample."""
    rng = random.Random(seed)
    mixed: list[Conversation] = []
    reports = []
    for source in sources:
        records, report = load(source.path, format=source.format, split=source.split, skip_invalid=skip_invalid)
        reports.append(report)
        convs = [r for r in records if isinstance(r, Conversation)]
        if len(convs) < len(records):
            report.filtered["preference pairs (not SFT)"] += len(records) - len(convs)
        if source.max_examples is not None:
            convs = convs[: source.max_examples]
        whole, frac = int(source.weight), source.weight - int(source.weight)
        mixed += convs * whole + rng.sample(convs, round(frac * len(convs)))
    rng.shuffle(mixed)
    return mixed, reports


_WORKER: dict = {}
# The second column: token labels for SFT, attribute targets (one per schema attribute) for an APM.
SECOND = {"sft": ("labels", "int32"), "apm": ("targets", "float32")}


def _init_worker(template: Any, tokenizer: Any, max_length: int, overlong: str, schema: Any = None) -> None:
    _WORKER.update(template=template, tokenizer=tokenizer, max_length=max_length, overlong=overlong, schema=schema)


def _encode_chunk(chunk: list[Conversation]) -> tuple[Any, list[DataError], int, int]:
    """Encode a chunk into an Arrow table (built in the worker: cheap to send back) plus its rejects.

    Returns the table, the rejects, the tokens kept and what carries loss (tokens for SFT, rated
    turns for an APM).
    """
    import pyarrow as pa

    w = _WORKER
    lengths = {"max_length": w["max_length"], "overlong": w["overlong"]}
    if w["schema"] is None:
        encoded: list = encode_many(chunk, w["template"], w["tokenizer"], **lengths)
        kept: list = [e for e in encoded if isinstance(e, Encoded)]
        name, dtype = SECOND["sft"]
        second, loss = [e.labels for e in kept], sum(e.loss_tokens for e in kept)
    else:
        encoded = encode_scored(chunk, w["template"], w["schema"], w["tokenizer"], **lengths)
        kept = [e for e in encoded if isinstance(e, Scored)]
        name, dtype = SECOND["apm"]
        second, loss = [e.targets for e in kept], len(kept)
    errors = [e for e in encoded if isinstance(e, DataError)]
    table = pa.table({"input_ids": pa.array([e.input_ids for e in kept], pa.list_(pa.int32())),
                      name: pa.array(second, pa.list_(getattr(pa, dtype)()))})
    return table, errors, sum(len(e.input_ids) for e in kept), loss


def prepare(recipe: SFTRecipe, *, sources: list[SourceConfig] | None = None, progress: Progress | None = None,
            force: bool = False) -> Prepared:
    """Tokenize the recipe's (training) sources into ``<cache>/<hash>`` with ``input_ids`` and ``labels``."""
    import datasets

    sources = sources if sources is not None else recipe.data.sources
    tok_id = recipe.model.tokenizer or recipe.model.name_or_path
    tokenizer = load_tokenizer(tok_id)
    apm = recipe.kind == "apm"
    template = (template_for(recipe.template.kind, None, tokenizer, recipe.template.default_system) if apm
                else recipe_template(recipe.template, tokenizer))
    out = cache_root(recipe) / cache_key(sources, tok_id, template.source, recipe)
    if (out / "steer_prepared.json").is_file() and not force:
        meta = json.loads((out / "steer_prepared.json").read_text())
        reports = [LoadReport(**{**r, "rejected": Counter(r["rejected"]), "filtered": Counter(r["filtered"])})
                   for r in meta["sources"]]
        return Prepared(out, meta["examples"], meta["tokens"], meta["loss_tokens"], True, reports,
                        Counter(meta["rejected"]), recipe.kind)
    records, reports = mix(sources, recipe.train.seed, recipe.data.skip_invalid)
    chunks = [records[i:i + CHUNK] for i in range(0, len(records), CHUNK)]
    args = (template, tokenizer, recipe.data.max_length, recipe.data.overlong,
            recipe.template.build_schema() if apm else None)
    tables: list = []
    rejected: Counter = Counter()
    totals = [0, 0, 0]  # examples done, tokens, loss tokens

    def collect(chunk: list[Conversation], result: tuple[Any, list[DataError], int, int]) -> None:
        table, errors, tokens, loss = result
        for error in errors:
            if not recipe.data.skip_invalid and error.reason not in ("too long", "no loss tokens", "no labels"):
                raise error
            rejected[error.reason] += 1
        tables.append(table)
        totals[0] += len(chunk)
        totals[1] += tokens
        totals[2] += loss
        if progress:
            progress(totals[0], len(records))

    if recipe.data.num_proc > 1 and len(chunks) > 1:
        with get_context("fork").Pool(recipe.data.num_proc, _init_worker, args) as pool:
            for chunk, result in zip(chunks, pool.imap(_encode_chunk, chunks)):
                collect(chunk, result)
    else:
        _init_worker(*args)
        for chunk in chunks:
            collect(chunk, _encode_chunk(chunk))
    if totals[0] and not any(t.num_rows for t in tables):
        why = ", ".join(f"{k}: {v}" for k, v in rejected.items())
        raise UsageError(f"no examples left to train on: all {totals[0]} were rejected ({why}); "
                         f"raise data.max_length (now {recipe.data.max_length})"
                         + (" or set data.overlong: truncate" if "too long" in rejected else ""))
    import pyarrow as pa

    columns = {"input_ids": "int32", SECOND[recipe.kind][0]: SECOND[recipe.kind][1]}
    features = datasets.Features({name: datasets.List(datasets.Value(t)) for name, t in columns.items()})
    empty = pa.table({name: pa.array([], pa.list_(getattr(pa, t)())) for name, t in columns.items()})
    ds = datasets.Dataset(pa.concat_tables(tables or [empty]), info=datasets.DatasetInfo(features=features))
    tmp = out.with_name(out.name + ".tmp")
    datasets.disable_progress_bars()  # steer shows its own progress
    try:
        ds.save_to_disk(str(tmp))
    finally:
        datasets.enable_progress_bars()
    tokens, loss = totals[1], totals[2]
    meta = {"examples": len(ds), "tokens": tokens, "loss_tokens": loss, "rejected": dict(rejected),
            "template": template.spec(), "tokenizer": tok_id, "sources": [r.to_json() for r in reports]}
    (tmp / "steer_prepared.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return Prepared(out, len(ds), tokens, loss, False, reports, rejected, recipe.kind)
