"""The canonical ``steer`` JSONL format (see ``steer.data.records`` for the schema)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steer.attributes import SCHEMAS, Attribute, Schema
from steer.data import fields
from steer.data.records import Conversation, DataError, Message, PreferencePair, Record

# every built-in attribute by name (one range per name across the built-in schemas)
BUILT_IN: dict[str, Attribute] = {a.name: a for s in SCHEMAS.values() for a in s.attributes}


def _content(value: Any, column: str, base: Path | None) -> str | list[dict]:
    """A message's content: non-empty text, or a list of text and image parts (images relative to the
    data file, or ``data:`` URLs; checked)."""
    from steer import images

    if isinstance(value, str):
        if not value.strip():
            raise DataError("empty text", "empty text", column=column)
        return value
    if not isinstance(value, list) or not value:
        raise DataError("missing column" if value is None else "wrong type", "expected text or a list of parts",
                        column=column)
    parts: list[dict] = []
    for k, item in enumerate(value):
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind == "text" and isinstance(item.get("text"), str):
            parts.append(images.text_part(item["text"]))
        elif kind == "image":
            parts.append(images.part(images.reference(item.get("image", item.get("path")), base, f"{column}[{k}].image")))
        else:
            raise DataError("wrong type", "a part is {type: text, text} or {type: image, image: PATH}",
                            column=f"{column}[{k}]")
    return parts


def _messages(value: Any, column: str, schema: Schema | None, *, allow_empty: bool = False,
              base: Path | None = None) -> list[Message]:
    if not isinstance(value, list) or (not value and not allow_empty):
        raise DataError("wrong type", "expected a non-empty list of messages", column=column)
    out = []
    for n, item in enumerate(value):
        where = f"{column}[{n}]"
        if not isinstance(item, Mapping):
            raise DataError("wrong type", "a message must be an object", column=where)
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise DataError("wrong type", f"role must be user or assistant, got {role!r}", column=f"{where}.role")
        content = _content(item.get("content"), f"{where}.content", base)
        out.append(Message(role, content, attributes(item.get("attributes"), f"{where}.attributes", schema),
                           _scores(item.get("scores"), f"{where}.scores")))
    return out


def _known(name: Any, schema: Schema | None, column: str) -> Attribute:
    """The attribute ``name`` of ``schema``, or of a built-in schema when none is given."""
    if schema is not None:
        if name in schema.names:
            return schema.get(name)
        raise DataError("unknown attribute", f"attribute {name!r} is not in schema {schema.name!r} "
                        f"({', '.join(schema.names)})", column=column)
    if name in BUILT_IN:
        return BUILT_IN[name]
    raise DataError("unknown attribute", f"attribute {name!r} is in no built-in schema (a recipe's own schema "
                    "names its attributes)", column=column)


def attributes(value: Any, column: str, schema: Schema | None = None) -> dict[str, int] | None:
    """Attribute labels: integers (as numbers or text) within the range of their attribute."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DataError("wrong type", "attributes must be an object of name: integer", column=column)
    out: dict[str, int] = {}
    for name, raw in value.items():
        attr = _known(name, schema, column)
        number = fields.as_integer(raw)
        if number is None:
            raise DataError("wrong type", f"attribute {name!r} must be an integer, got {raw!r}", column=column)
        if not attr.min <= number <= attr.max:
            raise DataError("out of range", f"attribute {name!r}: {number} is outside {attr.min}-{attr.max}",
                            column=column)
        out[name] = number
    return out


def _scores(value: Any, column: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DataError("wrong type", "scores must be an object of name: number", column=column)
    out = {}
    for name, raw in value.items():
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise DataError("wrong type", f"score {name!r} must be a finite number, got {raw!r}", column=column)
        out[str(name)] = float(raw)
    return out


def _values(value: Any) -> list[str] | None:
    """Value statements: one text or a list of texts."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise DataError("wrong type", "values must be a text or a list of non-empty texts", column="values")
    return items or None


def _strength(value: Any) -> float | None:
    """A preference strength: a positive finite number."""
    if value is None:
        return None
    number = fields.number(value, "strength", 0, math.inf)
    if number <= 0 or not math.isfinite(number):
        raise DataError("out of range", f"strength must be a positive number, got {value!r}", column="strength")
    return number


def alternating(messages: list[Message], column: str, *, ends_with: str) -> None:
    """Refuse turns that do not alternate user/assistant from a user turn to an ``ends_with`` one."""
    roles = [m.role for m in messages]
    if not roles or any(a == b for a, b in zip(roles, roles[1:])) or roles[0] != "user" or roles[-1] != ends_with:
        raise DataError("malformed turns", f"turns must alternate user/assistant, start with user and end with {ends_with}",
                        column=column)


def convert(row: Mapping, key: str, schema: Schema | None = None, base: Path | None = None) -> Record:
    """A canonical row: an SFT conversation, or a preference pair (``type: preference``); attribute
    labels are checked against ``schema`` (else the built-in attribute of each name); image parts'
    paths are relative to ``base`` (the data file's folder)."""
    rid = row.get("id", key)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise DataError("wrong type", "id must be a string or integer", column="id")
    common = {"id": str(rid), "system": fields.optional_text(row, "system"),
              "source": row.get("source") or "", "meta": row.get("meta") or {}}
    if not isinstance(common["meta"], Mapping):
        raise DataError("wrong type", "meta must be an object", column="meta")
    if row.get("type") == "preference" or "chosen" in row:
        prompt = _messages(fields.get(row, "prompt"), "prompt", schema, base=base)
        alternating(prompt, "prompt", ends_with="user")
        labels = row.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise DataError("wrong type", "labels must be an object", column="labels")
        return PreferencePair(prompt=prompt, chosen=fields.text(row, "chosen"), rejected=fields.text(row, "rejected"),
                              axis=fields.text(row, "axis") if "axis" in row else "overall", labels=dict(labels),
                              attributes=attributes(row.get("attributes"), "attributes", schema),
                              values=_values(row.get("values")), strength=_strength(row.get("strength")), **common)
    if row.get("type") not in (None, "sft"):
        raise DataError("wrong type", f"type must be sft or preference, got {row.get('type')!r}", column="type")
    messages = _messages(fields.get(row, "messages"), "messages", schema, base=base)
    alternating(messages, "messages", ends_with="assistant")
    return Conversation(messages=messages, **common)
