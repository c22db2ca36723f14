"""The Multifaceted Collection (Janus): value statements in the system message.

SFT rows: ``main_source, original_source, preference_set, system, prompt, output``.
DPO/ORPO rows: ``system, prompt, chosen, rejected`` with chosen/rejected as message lists.
"""

from __future__ import annotations

from collections.abc import Mapping

from steer.data import fields
from steer.data.records import Conversation, DataError, Message, PreferencePair

COLUMNS = ("system", "prompt", "output")
DPO_COLUMNS = ("system", "prompt", "chosen", "rejected")
_PREFERENCE_KEYS = ("dimension", "subdimension", "preference", "description")


def _preference_set(row: Mapping) -> list[dict]:
    if row.get("preference_set") is None:
        return []
    items = fields.mapping_list(row, "preference_set")
    for item in items:
        missing = [k for k in _PREFERENCE_KEYS if k not in item]
        if missing:
            raise DataError("malformed preference set", f"an entry lacks {', '.join(missing)}", column="preference_set")
    return items


def convert(row: Mapping, key: str) -> Conversation:
    """One SFT row: the system message states the values the output follows."""
    meta = {k: row[k] for k in ("main_source", "original_source") if row.get(k) is not None}
    prefs = _preference_set(row)
    if prefs:
        meta["preference_set"] = prefs
    return Conversation(id=key, system=fields.text(row, "system"),
                        messages=[Message("user", fields.text(row, "prompt")),
                                  Message("assistant", fields.text(row, "output"))], meta=meta)


def _final_reply(row: Mapping, column: str) -> str:
    value = fields.get(row, column)
    if isinstance(value, str):
        return fields.text(row, column)
    if not isinstance(value, list) or not value or not isinstance(value[-1], Mapping):
        raise DataError("wrong type", "expected a list of messages", column=column)
    last = value[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"].strip():
        raise DataError("malformed turns", "the last message must be a non-empty assistant reply", column=column)
    return last["content"]


def convert_dpo(row: Mapping, key: str) -> PreferencePair:
    """One DPO/ORPO row: the chosen reply follows the system message's values, the rejected one does not."""
    return PreferencePair(id=key, system=fields.text(row, "system"), axis="values",
                          prompt=[Message("user", fields.text(row, "prompt"))],
                          chosen=_final_reply(row, "chosen"), rejected=_final_reply(row, "rejected"))
