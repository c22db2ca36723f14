"""HelpSteer and HelpSteer2: prompt, response and five 0-4 attributes per row.

HelpSteer2 puts earlier turns of multi-turn prompts inline:
``{user 1}\\n<extra_id_1>Assistant\\n{assistant 1}\\n<extra_id_1>User\\n{user 2}``; they are split
into real turns. Earlier assistant turns have no labels, so they carry no loss.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from steer.attributes import SCHEMAS
from steer.data import fields
from steer.data.records import Conversation, DataError, Message

COLUMNS = ("prompt", "response", *SCHEMAS["helpsteer"].names)
_TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n")


def split_turns(prompt: str) -> list[Message]:
    """Split an inline multi-turn HelpSteer2 prompt into alternating messages ending with a user turn."""
    parts = _TURN.split(prompt)
    messages = [Message("user", parts[0])]
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append(Message("user" if role == "User" else "assistant", content))
    roles = [m.role for m in messages]
    if roles != ["user", "assistant"] * (len(roles) // 2) + ["user"] or any(not m.content.strip() for m in messages):
        raise DataError("malformed turns", "inline turns do not alternate user/assistant or one is empty",
                        column="prompt")
    return messages


def convert(row: Mapping, key: str, *, multi_turn: bool) -> Conversation:
    """One HelpSteer(2) row as a conversation whose last assistant turn carries the labels."""
    prompt = fields.text(row, "prompt")
    response = fields.text(row, "response")
    attributes = {name: fields.integer(row, name, 0, 4) for name in SCHEMAS["helpsteer"].names}
    turns = split_turns(prompt) if multi_turn else [Message("user", prompt)]
    return Conversation(id=key, messages=[*turns, Message("assistant", response, attributes)])
