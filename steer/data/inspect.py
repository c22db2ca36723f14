"""``steer data inspect`` and the loading rules ``steer data`` commands share: examples rendered
exactly as training sees them, with the tokens that carry loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer.data.loader import LoadReport, load
from steer.data.records import PreferencePair, Record


def rejects_for(source: str | Path) -> str:
    """Where ``--skip-invalid`` writes skipped rows unless told: ``<name>.rejects.jsonl`` here."""
    return f"{str(source).rstrip('/').split('/')[-1].split('.')[0]}.rejects.jsonl"


def load_source(source: str, *, format: str = "auto", split: str = "train", skip_invalid: bool = False,
                rejects: str | None = None, lang: list[str] | tuple[str, ...] = (), strict: bool = False,
                schema: Any = None) -> tuple[list[Record], LoadReport]:
    """Load a dataset for a ``steer data`` command (skipped rows to ``rejects``, by default
    :func:`rejects_for`; labels checked against ``schema``, by default each built-in attribute's range)."""
    if skip_invalid and rejects is None:
        rejects = rejects_for(source)
    return load(source, format=format, split=split, skip_invalid=skip_invalid, rejects_path=rejects,
                langs=set(lang) if lang else None, strict=strict, schema=schema)


@dataclass
class Inspection:
    """What ``steer data inspect`` shows: the load report, the template and schema used, and one
    :func:`steer.data.encode.explain` result per example (a preference pair: one per side, under ``sides``)."""

    report: LoadReport
    template: str
    schema: str | None
    examples: list[dict]


def inspect(source: str, *, format: str = "auto", template: str = "auto", schema: str | None = None,
            tokenizer: str | None = None, n: int = 3, max_length: int | None = None, **loading: Any) -> Inspection:
    """The first ``n`` examples of ``source`` rendered with ``template`` (over ``tokenizer``'s chat
    template when given) and the loss each token carries; the schema is guessed from the data unless given."""
    from steer.attributes import get_schema
    from steer.data.encode import explain, guess_schema
    from steer.runs import load_tokenizer
    from steer.templates import for_tokenizer

    given = get_schema(schema) if schema else None
    records, report = load_source(source, format=format, schema=given, **loading)
    from steer.vision import image_inputs

    vision = image_inputs(tokenizer) if tokenizer else None  # a vision-language model's processor folder
    tok = vision.processor.tokenizer if vision is not None else load_tokenizer(tokenizer) if tokenizer else None
    sch = given or guess_schema(records[:1000])
    tmpl = for_tokenizer(template, sch, tok)
    if vision is not None or (tok is None and any(m.images for r in records[:n] for m in _messages(r))):
        # each image shows as the model's placeholder (one token here; training repeats it per image feature)
        tmpl = tmpl.with_image_token(vision.placeholder if vision is not None else "<image>")
    shown = []
    for record in records[:n]:
        if isinstance(record, PreferencePair):
            both = [explain(side, tmpl, tok, max_length=max_length, values=record.values, reply=True) for side in record.sides()]
            shown.append({"id": record.id, "axis": record.axis, "strength": record.strength,
                          "sides": dict(zip(("chosen", "rejected"), both))})
        else:
            shown.append(explain(record, tmpl, tok, max_length=max_length))
    return Inspection(report, tmpl.kind, sch.name if sch else None, shown)


def _messages(record: Any) -> list:
    """A record's messages (a pair's prompt and both answers)."""
    return list(record.prompt) if isinstance(record, PreferencePair) else list(record.messages)
