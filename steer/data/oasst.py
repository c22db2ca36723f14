"""OpenAssistant (OASST1) message rows: rebuild trees and flatten every root-to-leaf thread.

Label values (0-1 floats) map to ``round(v * 4)`` as NeMo's SteerLM does (Python's round, halves
to even). Deleted messages and failed reviews drop their whole subtree, every message of it counted
as filtered. Both of OASST's layouts load: one row per message (``oasst``) and the nested tree export
(``oasst-tree``, one tree per row).
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


def _flag(row: Mapping, column: str) -> bool:
    """A flag that may be missing (False), a bool, 0/1 or "true"/"false" text."""
    value = row.get(column)
    return False if value is None else fields.boolean(row, column)


def _message(row: Mapping) -> dict:
    role = fields.text(row, "role")
    if role not in _ROLES:
        raise DataError("wrong type", f"role must be prompter or assistant, got {role!r}", column="role")
    parent = row.get("parent_id")
    if parent is not None and not isinstance(parent, str):
        raise DataError("wrong type", f"expected a message id, got {parent!r}", column="parent_id")
    review = row.get("review_result")
    return {"id": fields.text(row, "message_id"), "parent": parent or None, "tree": fields.text(row, "message_tree_id"),
            "role": _ROLES[role], "text": fields.text(row, "text"), "lang": row.get("lang"),
            "deleted": _flag(row, "deleted"), "failed_review": review is not None and not _flag(row, "review_result"),
            "labels": labels(row) if role == "assistant" else None}


def threads(rows: Iterable[tuple[int, object]], *, langs: set[str] | None, where: str,
            strict: bool = False) -> Iterator[tuple[int, object]]:
    """Yield ``(row, Conversation | DataError | 'filtered: reason')`` for every root-to-leaf thread.

    A message whose parent is not in the file (a per-language export holds replies to messages in
    other languages) is filtered with its whole subtree, counted message by message; with ``strict``
    it is an error. A message in a parent cycle (a self-parent too) can never be reached: an error.
    """
    nodes: dict[str, dict] = {}
    for number, row in rows:
        if isinstance(row, DataError):
            yield number, row
            continue
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
        children[node["parent"] if node["parent"] in nodes else None].append(node)
    reached: set[str] = set()
    for top in children[None]:
        if top["parent"] is None:
            yield from _walk(top, children, langs, where, reached)
        elif strict:
            reached.update(n["id"] for n in _subtree(top, children))
            yield top["row"], DataError("broken tree link", f"parent_id {top['parent']!r} is not a message of this "
                                        "dataset", where=where, row=top["row"], column="parent_id")
        else:
            yield from _drop(top, children, "parent not in this file", reached)
    for node in nodes.values():
        if node["id"] not in reached:
            yield node["row"], DataError("broken tree link", "its parent_id chain never reaches a root message (it "
                                         "loops back: a cycle)", where=where, row=node["row"], column="parent_id")


def _subtree(node: dict, children: dict) -> Iterator[dict]:
    stack = [node]
    while stack:
        top = stack.pop()
        yield top
        stack.extend(reversed(children.get(top["id"], [])))


def _drop(node: dict, children: dict, reason: str, reached: set[str]) -> Iterator[tuple[int, str]]:
    """``node`` and every message under it, filtered for ``reason``."""
    for n in _subtree(node, children):
        reached.add(n["id"])
        yield n["row"], f"filtered: {reason}"


def _walk(root: dict, children: dict, langs: set[str] | None, where: str,
          reached: set[str]) -> Iterator[tuple[int, object]]:
    """Every root-to-leaf thread under ``root``, depth first without recursion (threads can be deep)."""
    stack: list[tuple[dict, int]] = [(root, 0)]
    path: list[dict] = []
    while stack:
        node, depth = stack.pop()
        del path[depth:]
        if node["deleted"] or node["failed_review"]:
            yield from _drop(node, children, "deleted or failed review", reached)
            continue
        if langs is not None and node["lang"] not in langs:
            yield from _drop(node, children, "language", reached)
            continue
        reached.add(node["id"])
        path.append(node)
        kids = children.get(node["id"], [])
        if kids:
            stack.extend((kid, depth + 1) for kid in reversed(kids))
        else:
            yield node["row"], _thread(list(path), where)


TREE_COLUMNS = ("message_tree_id", "tree_state", "prompt")


def tree_rows(rows: Iterable[tuple[int, object]]) -> Iterator[tuple[int, object]]:
    """OASST's nested tree export (``{message_tree_id, tree_state, prompt: {..., replies: [...]}}``) as
    message rows (each with its ``parent_id`` and ``message_tree_id``), every message of a tree at
    the tree's row number."""
    for number, row in rows:
        if isinstance(row, DataError):
            yield number, row
            continue
        root = row.get("prompt") if isinstance(row, Mapping) else None
        tree = row.get("message_tree_id") if isinstance(row, Mapping) else None
        if not isinstance(root, Mapping) or not isinstance(tree, str):
            yield number, DataError("wrong type", "a tree row needs message_tree_id and a root message object in prompt",
                                    column="prompt")
            continue
        stack: list[tuple[Mapping, str | None]] = [(root, None)]
        while stack:
            message, parent = stack.pop()
            replies = message.get("replies") or []
            if not isinstance(replies, list) or not all(isinstance(r, Mapping) for r in replies):
                yield number, DataError("wrong type", "replies must be a list of message objects", column="prompt.replies")
                break
            yield number, {**{k: v for k, v in message.items() if k != "replies"}, "parent_id": parent,
                           "message_tree_id": tree}
            stack.extend((reply, message.get("message_id")) for reply in reversed(replies))


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
