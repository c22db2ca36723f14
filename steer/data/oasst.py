"""OpenAssistant (OASST1) message rows: rebuild trees and flatten every root-to-leaf thread.

Label values (0-1 floats) map to ``round(v * 4)`` as NeMo's SteerLM does (Python's round, halves
to even). Deleted messages and failed reviews drop their whole subtree (counted as filtered).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

from steer.data import fields
from steer.data.records import Conversation, DataError, Message

COLUMNS = ("message_id", "parent_id", "message_tree_id", "role", "text")
KEEP = ("quality", "toxicity", "humor", "creativity", "helpfulness")
_ROLES = {"prompter": "user", "assistant": "assistant"}


def labels(row: Mapping) -> dict[str, int] | None:
    """``{name: round(v * 4)}`` for the kept label names, or None when the row has no labels."""
    raw = row.get("labels")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), list) for k in ("name", "value")):
        raise DataError("wrong type", "expected {name: [...], value: [...], count: [...]}", column="labels")
    names, values = raw["name"], raw["value"]
    if len(names) != len(values):
        raise DataError("malformed labels", f"{len(names)} names but {len(values)} values", column="labels")
    out = {}
    for name, value in zip(names, values):
        if name in KEEP:
            out[name] = round(fields.number(value, f"labels.{name}", 0.0, 1.0) * 4)
    return out or None


def _message(row: Mapping) -> dict:
    role = fields.text(row, "role")
    if role not in _ROLES:
        raise DataError("wrong type", f"role must be prompter or assistant, got {role!r}", column="role")
    parent = row.get("parent_id")
    if parent is not None and not isinstance(parent, str):
        raise DataError("wrong type", f"expected a message id, got {parent!r}", column="parent_id")
    deleted = row.get("deleted")
    review = row.get("review_result")
    return {"id": fields.text(row, "message_id"), "parent": parent or None, "tree": fields.text(row, "message_tree_id"),
            "role": _ROLES[role], "text": fields.text(row, "text"), "lang": row.get("lang"),
            "deleted": bool(deleted) if deleted is not None else False,
            "failed_review": review is False, "labels": labels(row) if role == "assistant" else None}


def threads(rows: Iterable[tuple[int, dict]], *, langs: set[str] | None, where: str) -> Iterator[tuple[int, object]]:
    """Yield ``(row, Conversation | DataError | 'filtered: reason')`` for every root-to-leaf thread."""
    nodes: dict[str, dict] = {}
    for number, row in rows:
        try:
            node = _message(row)
        except DataError as err:
            yield number, err.at(where, number)
            continue
        if node["id"] in nodes:
            yield number, DataError("duplicate id", f"message_id {node['id']!r} appears twice", where=where,
                                    row=number, column="message_id")
            continue
        node["row"] = number
        nodes[node["id"]] = node
    children: dict[str | None, list[dict]] = defaultdict(list)
    for node in nodes.values():
        if node["parent"] is not None and node["parent"] not in nodes:
            yield node["row"], DataError("broken tree link", f"parent_id {node['parent']!r} is not a message of this"
                                         " dataset", where=where, row=node["row"], column="parent_id")
            continue
        children[node["parent"]].append(node)
    for root in children[None]:
        yield from _walk(root, [], children, langs, where)


def _walk(node: dict, path: list[dict], children: dict, langs: set[str] | None, where: str) -> Iterator[tuple[int, object]]:
    if node["deleted"] or node["failed_review"]:
        yield node["row"], "filtered: deleted or failed review"
        return
    if langs is not None and node["lang"] not in langs:
        yield node["row"], "filtered: language"
        return
    path = path + [node]
    kids = children.get(node["id"], [])
    if kids:
        for kid in kids:
            yield from _walk(kid, path, children, langs, where)
        return
    yield node["row"], _thread(path, where)


def _thread(path: list[dict], where: str) -> object:
    if path[0]["role"] != "user" or any(a["role"] == b["role"] for a, b in zip(path, path[1:])):
        return DataError("malformed turns", "thread does not alternate prompter/assistant", where=where,
                         row=path[-1]["row"], column="role")
    while path and path[-1]["role"] == "user":
        path = path[:-1]  # a thread ending on a prompter turn: nothing to learn from that turn
    if not path:
        return "filtered: no assistant reply"
    messages = [Message(n["role"], n["text"], n["labels"] if n["role"] == "assistant" else None) for n in path]
    return Conversation(id=f"oasst:{path[0]['tree']}:{path[-1]['id']}", messages=messages,
                        meta={"lang": path[-1]["lang"]})
