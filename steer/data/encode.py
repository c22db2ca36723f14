"""Render a canonical conversation with its steering template and tokenize it with loss labels.

This is the one path from a conversation to language-model inputs: ``steer data inspect`` shows its
output, the SFT task's encoder (:mod:`steer.train.tasks.sft`) prepares training data with it. Labels are -100 except on assistant text and its
end-of-turn marker; with an attribute schema, a turn without attribute labels carries no loss.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from steer.attributes import SCHEMAS, Schema
from steer.data.records import Conversation, DataError, PreferencePair, Record
from steer.errors import SteerError
from steer.templates import SteerTemplate
from steer.tokens import tokenize

IGNORE = -100


@dataclass
class Encoded:
    """Token ids and labels of one example (labels are -100 where no loss)."""

    input_ids: list[int]
    labels: list[int]
    text: str
    truncated: bool = False
    images: list[str] = field(default_factory=list)  # the example's images in order (JSON references)

    @property
    def loss_tokens(self) -> int:
        return len(self.labels) - self.labels.count(IGNORE)


def as_conversation(record: Record) -> Conversation:
    """SFT view of a record; a preference pair becomes its prompt plus the chosen reply (with its steering)."""
    return record.sides()[0] if isinstance(record, PreferencePair) else record


def loss_spans(record: Conversation, template: SteerTemplate, values: list[str] | None = None, *,
               reply: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """Training text and the character spans that carry loss (``values``: value statements to steer with).

    Under a schema an unlabelled assistant turn is context, except with ``reply`` the last one: a
    preference pair's answer always carries loss, under its pair's steering or the template's defaults.
    """
    text, spans = template.training(record.chat(), values=values)
    assistants = [m for m in record.messages if m.role == "assistant"]
    if template.schema is not None:
        last = len(assistants) - 1
        spans = [s for k, (s, m) in enumerate(zip(spans, assistants)) if m.attributes is not None or (reply and k == last)]
    return text, spans


def encode(record: Conversation, template: SteerTemplate, tokenizer: Any, *, max_length: int | None = None,
           overlong: str = "truncate") -> Encoded:
    """Tokenize one conversation; overlong examples are truncated or rejected (``DataError``)."""
    text, spans = loss_spans(record, template)
    [(ids, offsets)] = tokenize(tokenizer, [text])
    result = _labelled(text, spans, ids, offsets, max_length, overlong)
    if isinstance(result, DataError):
        raise result
    return result


def guess_schema(records: Iterable[Record]) -> Schema | None:
    """The first built-in schema, in ``SCHEMAS`` order (helpsteer, oasst, steerlm, vlfeedback, vision,
    safety: the text schemas before the ones that share their names), holding every attribute name
    seen (None: no attributes). For the text schemas this is the smallest that fits."""
    names: set[str] = set()
    for record in records:
        if isinstance(record, Conversation):
            for m in record.messages:
                names |= set(m.attributes or {})
        else:
            names |= set(record.attributes or {})
    if not names:
        return None
    fitting = [s for s in SCHEMAS.values() if names <= set(s.names)]
    if not fitting:
        raise DataError("unknown attributes", f"no built-in schema has all of {sorted(names)}; define one in the recipe")
    return fitting[0]


def explain(record: Conversation, template: SteerTemplate, tokenizer: Any = None, *, max_length: int | None = None,
            overlong: str = "truncate", values: list[str] | None = None, reply: bool = False) -> dict:
    """What training sees for one example: ``segments`` of ``(text, carries_loss)`` (per token with a
    tokenizer); ``values``: the value statements it is steered by; ``reply``: see :func:`loss_spans`."""
    text, spans = loss_spans(record, template, values, reply=reply)
    if tokenizer is None:
        cuts = sorted({0, len(text), *(p for span in spans for p in span)})
        segments = [(text[a:b], any(s <= a < e for s, e in spans)) for a, b in zip(cuts, cuts[1:]) if b > a]
        return {"id": record.id, "segments": segments, "chars": len(text),
                "loss_chars": sum(b - a for a, b in spans), "tokens": None}
    [(ids, offsets)] = tokenize(tokenizer, [text])
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, offsets = ids[:max_length], offsets[:max_length]
    segments = [(text[a:b], any(s <= a < e for s, e in spans)) for a, b in offsets]
    loss = sum(1 for _, carries in segments if carries)
    # Training would reject this example (too long, or no loss left): show it anyway, and say so.
    note = ("rejected by training: longer than max_length" if truncated and overlong == "reject"
            else "rejected by training: no token carries loss" if loss == 0 else None)
    return {"id": record.id, "segments": segments, "tokens": len(ids), "loss_tokens": loss, "truncated": truncated,
            "note": note}


IMAGE_PARTS = "image parts"  # a record with images, for a text model: a counted reject


def encode_many(records: list[Conversation], template: SteerTemplate, tokenizer: Any, *, max_length: int | None = None,
                overlong: str = "truncate", values: list[list[str] | None] | None = None,
                reply: bool = False, vision: Any = None) -> list[Encoded | DataError]:
    """:func:`encode` for a batch, tokenizing all texts in one (parallel, Rust-side) call (``values``:
    each record's value statements, when it is steered by some; ``reply``: see :func:`loss_spans`).
    ``vision`` (:class:`steer.vision.ImageInputs`): a vision-language model's, whose image parts
    become its image tokens (never carrying loss); without it a record with images is rejected."""
    rendered: list[tuple[str, list[tuple[int, int]]] | DataError] = []
    for n, record in enumerate(records):
        if vision is None and any(not isinstance(m.content, str) for m in record.messages):
            rendered.append(DataError(IMAGE_PARTS, f"example {record.id}: it has image parts, and a text model's "
                                      "template renders text only"))
            continue
        try:
            rendered.append(loss_spans(record, template, values[n] if values else None, reply=reply))
        except SteerError as err:
            rendered.append(DataError("template error", f"example {record.id}: {err}"))
    texts = [r[0] for r in rendered if not isinstance(r, DataError)]
    batch = tokenize(tokenizer, texts)
    out: list[Encoded | DataError] = []
    k = 0
    for item in rendered:
        if isinstance(item, DataError):
            out.append(item)
            continue
        text, spans = item
        ids, offsets = batch[k]
        record = records[len(out)]
        k += 1
        refs = [ref for m in record.messages for ref in m.images]
        if not refs:
            out.append(_labelled(text, spans, ids, offsets, max_length, overlong))
            continue
        try:
            out.append(_with_images(text, spans, ids, offsets, refs, vision, max_length, overlong, record.id))
        except DataError as err:
            out.append(DataError(err.reason, f"example {record.id}: {err.detail}"))
    return out


def _with_images(text: str, spans: list[tuple[int, int]], ids: list[int], offsets: list[tuple[int, int]],
                 refs: list[Any], vision: Any, max_length: int | None, overlong: str, where: str) -> Encoded | DataError:
    """An example with images: each image token repeated for its image, none of them carrying loss,
    and a ``max_length`` that would cut into an image's tokens a rejection (a model cannot read half an image)."""
    from steer import images
    from steer.data.records import image_json

    pictures = [images.load(ref) for ref in refs]
    ids, offsets = vision.expand(ids, offsets, pictures, where)
    if max_length is not None and vision.token_id in ids[max_length:]:
        return DataError("too long", f"max_length {max_length} cuts into an image's tokens ({len(ids)} tokens)")
    encoded = _labelled(text, spans, ids, offsets, max_length, overlong)
    if isinstance(encoded, DataError):
        return encoded
    encoded.labels = [IGNORE if t == vision.token_id else y for t, y in zip(encoded.input_ids, encoded.labels)]
    encoded.images = [image_json(ref) for ref in refs]
    return encoded


def _mask(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Labels: the token id where the token starts inside a loss span, else -100."""
    starts = [start for start, _ in offsets]
    if starts != sorted(starts):  # not seen with real tokenizers; keep the exact, slow rule
        return [tok if any(a <= start < b for a, b in spans) else IGNORE for tok, start in zip(ids, starts)]
    labels = [IGNORE] * len(ids)
    for a, b in spans:
        i, j = bisect_left(starts, a), bisect_left(starts, b)
        labels[i:j] = ids[i:j]
    return labels


def _labelled(text: str, spans: list[tuple[int, int]], ids: list[int], offsets: list[tuple[int, int]],
              max_length: int | None, overlong: str) -> Encoded | DataError:
    labels = _mask(ids, offsets, spans)
    truncated = False
    if max_length is not None and len(ids) > max_length:
        if overlong == "reject":
            return DataError("too long", f"{len(ids)} tokens > max_length {max_length}")
        ids, labels, truncated = ids[:max_length], labels[:max_length], True
    if not any(x != IGNORE for x in labels):
        return DataError("no loss tokens", "no token carries loss (no labelled assistant turn"
                         + (" within max_length)" if truncated else ")"))
    return Encoded(list(ids), labels, text, truncated)
