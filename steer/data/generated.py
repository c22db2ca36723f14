"""``steer batch`` output rows as a dataset (``--format steer-batch``): each row is the prompt it was
generated for plus the generated answer, so ``steer label`` can rate it and ``steer data pairs`` can
rank the answers to one prompt.

A row is the input row (``id``, ``prompt`` or ``messages``, anything else it held) with ``key``,
``grid``, ``sample`` (after the first), ``steering`` (``attributes, preset, values, system``),
``settings``, ``text``, ``finish_reason`` and token counts. The record keeps in ``meta``: ``group``
(the input row and grid point: answers in one group were made for the same prompt under the same
steering), ``steering`` and ``row`` (the input row's own fields, which judges such as ``oracle`` read).
"""

from __future__ import annotations

import json
from typing import Any

from steer.data import fields
from steer.data.canonical import _messages
from steer.data.records import Conversation, DataError, Message

COLUMNS = ("key", "steering", "settings", "text")
ADDED = ("key", "grid", "sample", "steering", "settings", "text", "finish_reason", "prompt_tokens", "completion_tokens")


def convert(row: dict, key: str, schema: Any = None) -> Conversation:
    """One generated answer as a conversation: the row's prompt, then the answer (unlabelled)."""
    text = row.get("text")
    if not isinstance(text, str):
        raise DataError("missing column" if "text" not in row else "wrong type", "expected the generated text",
                        column="text")
    if "id" not in row:
        raise DataError("missing column", "a steer batch row has the input row's id", column="id")
    steering = row.get("steering") if isinstance(row.get("steering"), dict) else {}
    if "messages" in row:
        prompt = _messages(row["messages"], "messages", schema)
    else:
        prompt = [Message("user", fields.text(row, "prompt"))]
    system = steering.get("system") or (row.get("system") if isinstance(row.get("system"), str) else None)
    group = f"{row['id']}|{json.dumps(row.get('grid') or {}, sort_keys=True)}"
    return Conversation(id=str(row["key"]), messages=[*prompt, Message("assistant", text)], system=system,
                        source="steer-batch",
                        meta={"group": group, "steering": steering, "row": {k: v for k, v in row.items() if k not in ADDED}})
