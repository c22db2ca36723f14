"""NVIDIA's own SteerLM data formats (NeMo-Aligner), as its released SteerLM datasets use them.

- SteerLM SFT (``nemo-steerlm``): ``{system, mask, dataset?, conversations: [{from, value, label}]}``;
  ``from`` is ``User``/``Assistant``, ``label`` is null on user turns and an attribute string
  (``helpfulness:4,correctness:4,...`` or NeMo's nine) on assistant turns; ``mask`` names the role whose
  turns carry no loss (``User``: steer trains on assistant turns only).
- Regression reward model (``nemo-rm``): ``{text, label}``: ``text`` is a whole SteerLM-format
  conversation ending in ``<extra_id_2>`` (where the head reads), ``label`` one value per attribute in
  NeMo's nine-attribute order, ``-100`` for a missing one. The labels go on the last assistant turn.
"""

from __future__ import annotations

from collections.abc import Mapping

from steer.attributes import SCHEMAS, Schema
from steer.data import fields
from steer.data.canonical import alternating, attributes
from steer.data.records import Conversation, DataError, Message

SFT_COLUMNS = ("system", "conversations")
RM_COLUMNS = ("text", "label")
NINE = SCHEMAS["steerlm"].names  # NeMo's attribute order
MISSING = -100
_ROLES = {"user": "user", "assistant": "assistant"}


def parse_label(label: str, column: str, schema: Schema | None = None) -> dict[str, int]:
    """An attribute string ``name:v,name:v`` (NeMo's label) as validated attribute values."""
    values: dict[str, str] = {}
    for part in label.split(","):
        name, sep, value = part.partition(":")
        if not sep or not name.strip():
            raise DataError("malformed label", f"cannot read {part.strip()!r} in label {label!r} (expected name:value)",
                            column=column)
        values[name.strip()] = value.strip()
    return attributes(values, column, schema) or {}


def convert_sft(row: Mapping, key: str, schema: Schema | None = None) -> Conversation:
    """One NeMo SteerLM SFT conversation; each assistant turn's label becomes its attributes."""
    mask = row.get("mask", "User")
    if not isinstance(mask, str) or mask.lower() != "user":
        raise DataError("unsupported mask", f"mask {mask!r}: steer trains on assistant turns only (mask User)",
                        column="mask")
    turns = fields.mapping_list(row, "conversations")
    messages = []
    for n, turn in enumerate(turns):
        where = f"conversations[{n}]"
        role = _ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise DataError("wrong type", f"from must be User or Assistant, got {turn.get('from')!r}", column=f"{where}.from")
        text = fields.text(turn, "value") if isinstance(turn.get("value"), str) else None
        if text is None:
            raise DataError("wrong type", "expected text", column=f"{where}.value")
        label = turn.get("label")
        if label is not None and not isinstance(label, str):
            raise DataError("wrong type", f"label must be an attribute string or null, got {label!r}", column=f"{where}.label")
        attrs = parse_label(label, f"{where}.label", schema) if role == "assistant" and label else None
        messages.append(Message(role, text, attrs))
    alternating(messages, "conversations", ends_with="assistant")
    meta = {"dataset": row["dataset"]} if isinstance(row.get("dataset"), str) else {}
    return Conversation(id=key, messages=messages, system=fields.optional_text(row, "system"), meta=meta)


def _turns(text: str) -> tuple[str, list[Message]]:
    """The system message and turns of SteerLM text that ends with ``<extra_id_2>`` after the last reply."""
    head, end = "<extra_id_0>System\n", "\n<extra_id_2>"
    if not text.startswith(head) or not text.endswith(end):
        raise DataError("malformed text", "expected SteerLM text from '<extra_id_0>System' to a final '<extra_id_2>'",
                        column="text")
    system, *chunks = text[len(head):-len(end)].split("\n<extra_id_1>")
    messages = []
    for chunk in chunks:
        role, sep, body = chunk.partition("\n")
        if role not in ("User", "Assistant") or not sep:
            raise DataError("malformed text", f"expected a User or Assistant turn, got {role[:30]!r}", column="text")
        if role == "Assistant" and body.startswith("<extra_id_2>"):  # an earlier turn's attribute line
            body = body.partition("\n")[2]
        messages.append(Message("user" if role == "User" else "assistant", body))
    return system, messages


def convert_rm(row: Mapping, key: str, schema: Schema | None = None) -> Conversation:
    """One NeMo regression reward-model example: the conversation, the labels on its last reply."""
    system, messages = _turns(fields.text(row, "text"))
    alternating(messages, "text", ends_with="assistant")  # the last reply is the rated one
    label = fields.get(row, "label")
    if not isinstance(label, list) or len(label) != len(NINE):
        raise DataError("wrong type", f"label must be a list of {len(NINE)} values in NeMo's order ({', '.join(NINE)})",
                        column="label")
    given = {name: value for name, value in zip(NINE, label) if fields.as_integer(value) != MISSING}
    messages[-1].attributes = attributes(given, "label", schema) or None
    return Conversation(id=key, messages=messages, system=system.strip() or None)
