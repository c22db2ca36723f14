"""Preference datasets with a strength: HelpSteer2's preference subset and HelpSteer3.

- HelpSteer2 preference (``nvidia/HelpSteer2``, ``data_dir="preference"``): ``prompt, response_1,
  response_2, preference_strength`` (-3..3; negative: response_1 is better; 0: no preference), the
  prompt holding earlier turns inline as in HelpSteer2;
- HelpSteer3 preference (``nvidia/HelpSteer3``): ``context`` (a list of ``{role, content}`` messages
  ending with a user turn), ``response1, response2, overall_preference`` (-3..3, negative:
  response1 is better), ``domain``, ``language``.

A pair's strength is the magnitude (1-3); ties (0) are filtered and counted.
"""

from __future__ import annotations

from collections.abc import Mapping

from steer.data import fields
from steer.data.helpsteer import split_turns
from steer.data.records import DataError, Message, PreferencePair

HELPSTEER2_COLUMNS = ("prompt", "response_1", "response_2", "preference_strength")
HELPSTEER3_COLUMNS = ("context", "response1", "response2", "overall_preference")
TIE = "filtered: ties (no preference)"


def _ordered(first: str, second: str, preference: int) -> tuple[str, str]:
    """``(chosen, rejected)``: a negative preference means the first response is better."""
    return (first, second) if preference < 0 else (second, first)


def convert_helpsteer2(row: Mapping, key: str) -> PreferencePair | str:
    """One HelpSteer2 preference row as a pair (strength = |preference_strength|), or a counted tie."""
    preference = fields.integer(row, "preference_strength", -3, 3)
    first, second = fields.text(row, "response_1"), fields.text(row, "response_2")
    if preference == 0:
        return TIE
    chosen, rejected = _ordered(first, second, preference)
    meta = {k: row[k] for k in ("split", "preference_statement") if row.get(k) is not None}
    return PreferencePair(id=key, prompt=split_turns(fields.text(row, "prompt")), chosen=chosen, rejected=rejected,
                          axis="overall", strength=float(abs(preference)), source="helpsteer2-preference", meta=meta)


def _context(row: Mapping) -> tuple[str | None, list[Message]]:
    """The system message (when the context opens with one) and the alternating turns, ending with a user turn."""
    value = fields.get(row, "context")
    if not isinstance(value, list) or not value:
        raise DataError("wrong type", "expected a non-empty list of messages", column="context")
    system, turns = None, []
    for n, item in enumerate(value):
        where = f"context[{n}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("content"), str):
            raise DataError("wrong type", "a message must be an object with text content", column=where)
        role = item.get("role")
        if role == "system" and n == 0:
            system = item["content"] or None
        elif role in ("user", "assistant"):
            turns.append(Message(role, item["content"]))
        else:
            raise DataError("wrong type", f"role must be user or assistant, got {role!r}", column=f"{where}.role")
    roles = [m.role for m in turns]
    if not roles or roles[0] != "user" or roles[-1] != "user" or any(a == b for a, b in zip(roles, roles[1:])):
        raise DataError("malformed turns", "turns must alternate user/assistant from a user turn to a user turn",
                        column="context")
    return system, turns


def convert_helpsteer3(row: Mapping, key: str) -> PreferencePair | str:
    """One HelpSteer3 preference row as a pair (strength = |overall_preference|), or a counted tie."""
    preference = fields.integer(row, "overall_preference", -3, 3)
    system, turns = _context(row)
    first, second = fields.text(row, "response1"), fields.text(row, "response2")
    if preference == 0:
        return TIE
    chosen, rejected = _ordered(first, second, preference)
    meta = {k: row[k] for k in ("domain", "language") if row.get(k) is not None}
    return PreferencePair(id=key, prompt=turns, system=system, chosen=chosen, rejected=rejected, axis="overall",
                          strength=float(abs(preference)), source=str(row.get("domain") or "helpsteer3"), meta=meta)
