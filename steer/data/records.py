"""Canonical records: an SFT conversation and a preference pair, with their JSONL form.

Canonical JSONL (``--format steer``), one object per line:

* SFT conversation::

    {"id": "ex1", "system": "optional", "source": "optional",
     "messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "...", "attributes": {"verbosity": 1}}],
     "meta": {}}

* preference pair (``"type": "preference"`` or recognised by ``chosen``/``rejected``)::

    {"type": "preference", "id": "p1", "system": null, "axis": "helpfulness",
     "prompt": [{"role": "user", "content": "..."}], "chosen": "...", "rejected": "...",
     "attributes": {"verbosity": 1}, "values": ["..."], "strength": 2,
     "labels": {}, "source": "", "meta": {}}

  ``attributes`` and ``values`` (optional) are the steering both responses were judged under: they
  are rendered identically into both sides' prompts. ``strength`` (optional, > 0) says how strongly
  the chosen response is preferred (HelpSteer2/3's preference magnitude).

Assistant ``attributes`` are optional; a turn without them carries no loss when training with
an attribute schema (its labels are unknown). They are integers within the range of their schema's
attribute (a built-in schema's, or the recipe's own); ``scores`` holds raw predictions (floats,
written by ``steer label --float``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from steer.errors import DataError, SteerError  # noqa: F401 - DataError: its home is steer.errors

Role = Literal["user", "assistant"]


def image_json(ref: Any) -> str:
    """A JSON-able image reference: a path as is; bytes and PIL images as a base64 ``data:`` URL."""
    import base64
    import io

    if isinstance(ref, str):
        return ref
    if not isinstance(ref, (bytes, bytearray)):  # a PIL image: PNG keeps RGB(A) and L; CMYK and others convert
        buffer = io.BytesIO()
        (ref if ref.mode in ("RGB", "RGBA", "L") else ref.convert("RGB")).save(buffer, format="PNG")
        ref = buffer.getvalue()
    kind = "png" if bytes(ref[:8]) == b"\x89PNG\r\n\x1a\n" else "jpeg" if bytes(ref[:2]) == b"\xff\xd8" else "octet"
    return f"data:image/{kind};base64," + base64.b64encode(bytes(ref)).decode("ascii")


@dataclass
class Message:
    """One turn; assistant turns may carry the attribute values they exhibit. ``content`` is text, or
    a list of parts (``{"type": "text", "text"}``, ``{"type": "image", "image": REF}``; see
    :mod:`steer.images`)."""

    role: Role
    content: str | list[dict]
    attributes: dict[str, int] | None = None  # integer labels, within their schema's range
    scores: dict[str, float] | None = None  # raw predictions (``steer label --float``), any finite number

    @property
    def text(self) -> str:
        """The text of the content (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p["text"] for p in self.content if p.get("type") == "text")

    @property
    def images(self) -> list[Any]:
        """The image references of the content, in order."""
        return [] if isinstance(self.content, str) else [p["image"] for p in self.content if p.get("type") == "image"]

    def to_json(self) -> dict:
        content: Any = self.content if isinstance(self.content, str) else [
            {"type": "image", "image": image_json(p["image"])} if p.get("type") == "image" else dict(p)
            for p in self.content]
        out: dict[str, Any] = {"role": self.role, "content": content}
        if self.attributes is not None:
            out["attributes"] = dict(self.attributes)
        if self.scores is not None:
            out["scores"] = dict(self.scores)
        return out


@dataclass
class Conversation:
    """An SFT example: optional system message, alternating user/assistant turns."""

    id: str
    messages: list[Message]
    system: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "sft"

    def chat(self) -> list[dict]:
        """Messages as chat-template dicts (the system message first when present)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [m.to_json() for m in self.messages]

    def to_json(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "system": self.system, "source": self.source,
                               "messages": [m.to_json() for m in self.messages]}
        if self.meta:
            out["meta"] = self.meta
        return out


@dataclass
class PreferencePair:
    """Two responses to one prompt conversation, with the axis the preference is on."""

    id: str
    prompt: list[Message]
    chosen: str
    rejected: str
    axis: str
    system: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, int] | None = None  # the steering both sides were judged under
    values: list[str] | None = None
    strength: float | None = None  # how strongly ``chosen`` is preferred (> 0)

    kind = "preference"

    def sides(self) -> tuple[Conversation, Conversation]:
        """The chosen and the rejected conversation: the same prompt, system message and steering."""
        def side(reply: str) -> Conversation:
            return Conversation(id=self.id, system=self.system, source=self.source,
                                messages=[*self.prompt, Message("assistant", reply, self.attributes)])

        return side(self.chosen), side(self.rejected)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"type": "preference", "id": self.id, "system": self.system, "axis": self.axis,
                               "prompt": [m.to_json() for m in self.prompt], "chosen": self.chosen,
                               "rejected": self.rejected, "labels": self.labels, "source": self.source}
        for name in ("attributes", "values", "strength"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.meta:
            out["meta"] = self.meta
        return out


Record = Conversation | PreferencePair
