"""The canonical ``steer`` JSONL format (see ``steer.data.records`` for the schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steer.data import fields
from steer.data.records import Conversation, DataError, Message, PreferencePair, Record


def _messages(value: Any, column: str, *, allow_empty: bool = False) -> list[Message]:
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
        content = fields.text(item, "content") if isinstance(item.get("content"), str) else None
        if content is None:
            raise DataError("missing column" if "content" not in item else "wrong type", "expected text",
                            column=f"{where}.content")
        out.append(Message(role, content, _attributes(item.get("attributes"), f"{where}.attributes")))
    return out


def _attributes(value: Any, column: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DataError("wrong type", "attributes must be an object of name: number", column=column)
    for name, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise DataError("wrong type", f"attribute {name!r} must be a number, got {v!r}", column=column)
    return dict(value)


def _alternating(messages: list[Message], column: str, *, ends_with: str) -> None:
    roles = [m.role for m in messages]
    if any(a == b for a, b in zip(roles, roles[1:])) or roles[0] != "user" or roles[-1] != ends_with:
        raise DataError("malformed turns", f"turns must alternate user/assistant, start with user and end with {ends_with}",
                        column=column)


def convert(row: Mapping, key: str) -> Record:
    """A canonical row: an SFT conversation, or a preference pair (``type: preference``)."""
    rid = row.get("id", key)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise DataError("wrong type", "id must be a string or integer", column="id")
    common = {"id": str(rid), "system": fields.optional_text(row, "system"),
              "source": row.get("source") or "", "meta": row.get("meta") or {}}
    if not isinstance(common["meta"], Mapping):
        raise DataError("wrong type", "meta must be an object", column="meta")
    if row.get("type") == "preference" or "chosen" in row:
        prompt = _messages(fields.get(row, "prompt"), "prompt")
        _alternating(prompt, "prompt", ends_with="user")
        labels = row.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise DataError("wrong type", "labels must be an object", column="labels")
        return PreferencePair(prompt=prompt, chosen=fields.text(row, "chosen"), rejected=fields.text(row, "rejected"),
                              axis=fields.text(row, "axis") if "axis" in row else "overall", labels=dict(labels),
                              **common)
    if row.get("type") not in (None, "sft"):
        raise DataError("wrong type", f"type must be sft or preference, got {row.get('type')!r}", column="type")
    messages = _messages(fields.get(row, "messages"), "messages")
    _alternating(messages, "messages", ends_with="assistant")
    return Conversation(messages=messages, **common)
