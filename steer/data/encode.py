"""Render a canonical conversation with its steering template and tokenize it with loss labels.

This is the one path from a record to model inputs: ``steer data inspect`` shows its output,
``steer data prepare`` and training consume it. Labels are -100 except on assistant text and its
end-of-turn marker; with an attribute schema, a turn without attribute labels carries no loss.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from steer.attributes import SCHEMAS, Schema
from steer.data.records import Conversation, DataError, PreferencePair, Record
from steer.errors import SteerError
from steer.templates import STEERLM_STOP, SteerTemplate, build_template

IGNORE = -100


@dataclass
class Encoded:
    """Token ids and labels of one example (labels are -100 where no loss)."""

    input_ids: list[int]
    labels: list[int]
    text: str
    truncated: bool = False

    @property
    def loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def as_conversation(record: Record) -> Conversation:
    """SFT view of a record; a preference pair becomes its prompt plus the chosen reply."""
    if isinstance(record, PreferencePair):
        from steer.data.records import Message

        return Conversation(id=record.id, system=record.system, source=record.source,
                            messages=[*record.prompt, Message("assistant", record.chosen)])
    return record


def loss_spans(record: Conversation, template: SteerTemplate) -> tuple[str, list[tuple[int, int]]]:
    """Training text and the character spans that carry loss."""
    text, spans = template.training(record.chat())
    assistants = [m for m in record.messages if m.role == "assistant"]
    if template.schema is not None:
        spans = [s for s, m in zip(spans, assistants) if m.attributes is not None]
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
    """The smallest built-in schema holding every attribute name seen (None: no attributes)."""
    names: set[str] = set()
    for record in records:
        if isinstance(record, Conversation):
            for m in record.messages:
                names |= set(m.attributes or {})
    if not names:
        return None
    fitting = [s for s in SCHEMAS.values() if names <= set(s.names)]
    if not fitting:
        raise DataError("unknown attributes", f"no built-in schema has all of {sorted(names)}; define one in the recipe")
    return min(fitting, key=lambda s: len(s.names))


def template_for(kind: str, schema: Schema | None, tokenizer: Any = None, default_system: str | None = None) -> SteerTemplate:
    """The steering template of ``kind`` (``auto``: the tokenizer's chat template if it has one);
    ``default_system`` replaces the SteerLM format's default system message."""
    base = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if kind == "auto":
        kind = "chat" if base else "steerlm"
    tokens = dict(tokenizer.special_tokens_map) if tokenizer is not None else {}
    extra = {"default_system": default_system} if default_system is not None else {}
    return build_template(kind, schema=schema, base=base, special_tokens=tokens, **extra)


def recipe_template(template: Any, tokenizer: Any) -> SteerTemplate:
    """The steering template a recipe's ``template`` section describes, over ``tokenizer``."""
    return template_for(template.kind, template.build_schema(), tokenizer, template.default_system)


def load_tokenizer(path: str) -> Any:
    """A tokenizer from a local directory or hub id, with a clear error when it cannot be read."""
    from transformers import AutoTokenizer

    from steer.errors import UsageError

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load tokenizer {path!r}: {str(err).strip().splitlines()[0]}") from None


def explain(record: Conversation, template: SteerTemplate, tokenizer: Any = None, *, max_length: int | None = None,
            overlong: str = "truncate") -> dict:
    """What training sees for one example: ``segments`` of ``(text, carries_loss)`` (per token with a tokenizer)."""
    if tokenizer is None:
        text, spans = loss_spans(record, template)
        cuts = sorted({0, len(text), *(p for span in spans for p in span)})
        segments = [(text[a:b], any(s <= a < e for s, e in spans)) for a, b in zip(cuts, cuts[1:]) if b > a]
        return {"id": record.id, "segments": segments, "chars": len(text),
                "loss_chars": sum(b - a for a, b in spans), "tokens": None}
    text, spans = loss_spans(record, template)
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


def encode_many(records: list[Conversation], template: SteerTemplate, tokenizer: Any, *, max_length: int | None = None,
                overlong: str = "truncate") -> list[Encoded | DataError]:
    """:func:`encode` for a batch, tokenizing all texts in one (parallel, Rust-side) call."""
    rendered: list[tuple[str, list[tuple[int, int]]] | DataError] = []
    for record in records:
        try:
            rendered.append(loss_spans(record, template))
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
        k += 1
        out.append(_labelled(text, spans, ids, offsets, max_length, overlong))
    return out


_BACKENDS: WeakKeyDictionary = WeakKeyDictionary()


def tokenize(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Token ids and character offsets of each text, without added special tokens.

    A fast tokenizer is run through its Rust backend directly (a copy with truncation and padding
    off, so nothing the tokenizer file configures changes the result): same ids as calling the
    transformers tokenizer, without its per-call Python overhead.
    """
    if not texts:
        return []
    backend = _BACKENDS.get(tokenizer)
    if backend is None and getattr(tokenizer, "is_fast", False) and hasattr(tokenizer, "backend_tokenizer"):
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_truncation()
        backend.no_padding()
        _BACKENDS[tokenizer] = backend
    if backend is not None:
        return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return list(zip(enc["input_ids"], enc["offset_mapping"]))


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


# --- attribute prediction (APM) inputs --------------------------------------------------------

MISSING = -100.0  # an attribute without a label (NeMo's marker): masked out of the regression loss
APM_MARK = "<extra_id_2>"  # SteerLM's APM reads the hidden state at the attribute token after the response


@dataclass
class Scored:
    """Token ids of one rated assistant turn (its conversation up to and including it) and its targets."""

    input_ids: list[int]
    targets: list[float]
    text: str
    truncated: bool = False


def apm_text(template: SteerTemplate, messages: list[dict]) -> str:
    """The text an APM rates: the conversation ending with the rated assistant turn, without steering.

    In the SteerLM format the turn's closing ``<extra_id_1>`` becomes ``<extra_id_2>``, the position
    where NeMo's regression head reads; other formats end with the model's own end of turn.
    """
    plain = [{k: v for k, v in m.items() if k != "attributes"} for m in messages]
    text = template.render(plain)
    if template.kind == "steerlm":
        text = text.removesuffix(STEERLM_STOP) + APM_MARK
    return text


def rated_turns(record: Conversation) -> list[tuple[list[dict], dict]]:
    """``(messages up to and including the turn, its attributes)`` for each labelled assistant turn."""
    chat = record.chat()
    return [(chat[: k + 1], m["attributes"]) for k, m in enumerate(chat)
            if m["role"] == "assistant" and m.get("attributes")]


def encode_scored(records: list[Conversation], template: SteerTemplate, schema: Schema, tokenizer: Any, *,
                  max_length: int | None = None, overlong: str = "truncate") -> list[Scored | DataError]:
    """APM examples of a batch of conversations (one per labelled assistant turn).

    Too long: ``truncate`` keeps the *last* ``max_length`` tokens, since the head reads the end.
    """
    texts, targets, out = [], [], []
    for record in records:
        try:
            turns = rated_turns(record)
            if not turns:
                out.append(DataError("no labels", f"example {record.id}: no assistant turn carries attributes"))
            for messages, attrs in turns:
                texts.append(apm_text(template, messages))
                targets.append([float(attrs[n]) if attrs.get(n) is not None else MISSING for n in schema.names])
        except SteerError as err:
            out.append(DataError("template error", f"example {record.id}: {err}"))
    for text, target, (ids, _) in zip(texts, targets, tokenize(tokenizer, texts)):
        truncated = max_length is not None and len(ids) > max_length
        if truncated and overlong == "reject":
            out.append(DataError("too long", f"{len(ids)} tokens > max_length {max_length}"))
            continue
        out.append(Scored(list(ids[-max_length:] if truncated else ids), target, text, truncated))
    return out
