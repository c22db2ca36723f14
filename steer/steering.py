"""What a request is steered by, the one place user input becomes it, and the prompt it renders
(from chat messages, or from an input row of a batch or prompts file: :func:`row_messages`).

Every way of steering goes through :func:`steering_from`: CLI flags, the Python API, a batch row
over the command's defaults, a chat slash command over the session's steering, and a server
request. The rules are the same everywhere: attribute values may be a mapping, a ``"name:v,name=v"``
string or a list of such strings; given attributes merge over the base steering's; a given preset,
value statements or system message replace the base's; everything is validated at once, so bad
input fails before anything is generated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer.attributes import Schema, parse_assignments, preset_values, require_schema
from steer.engines.base import Prompt
from steer.errors import SteerError, UsageError
from steer.templates import SteerTemplate

AttributeInput = Mapping[str, object] | str | Sequence[str] | None
ValuesInput = str | Sequence[str] | None
VectorsInput = str | Sequence[Any] | Mapping[str, object] | None


@dataclass
class Steering:
    """Attribute values (over a preset and the schema defaults), value statements, a system message,
    and steering vectors (``(file, coefficient)``, added to the residual stream: :mod:`steer.vectors`)."""

    attributes: dict[str, int] = field(default_factory=dict)
    preset: str | None = None
    values: list[str] = field(default_factory=list)
    system: str | None = None
    vectors: list[tuple[str, float]] = field(default_factory=list)

    def resolved(self, schema: Schema | None) -> dict[str, int] | None:
        """The full attribute dict for the schema (defaults < preset < explicit values); None without a schema."""
        if schema is None:
            if self.attributes or self.preset:
                require_schema(schema)
            return None
        return schema.resolve(preset=self.preset, values=self.attributes)

    def to_json(self, schema: Schema | None) -> dict:
        """What a record of this steering holds (attributes resolved)."""
        out = {"attributes": self.resolved(schema), "preset": self.preset, "values": self.values, "system": self.system}
        if self.vectors:
            from steer.vectors import digest

            out["vectors"] = [{"file": f, "coef": c, "sha256": digest(f)} for f, c in self.vectors]
        return out


@contextmanager
def blame(field: str) -> Iterator[None]:
    """Name ``field`` as the input at fault in a ``UsageError`` raised inside (the server reports it
    as the request parameter) unless the error already names one."""
    try:
        yield
    except UsageError as err:
        err.field = err.field or field
        raise


def parse_attributes(source: AttributeInput, schema: Schema | None, *, field: str = "attributes") -> dict[str, int]:
    """Validated attribute values from a mapping, a ``"name:v,name=v"`` string or a list of such strings."""
    if source is None or (isinstance(source, (str, list, tuple, Mapping)) and not source):
        return {}
    sch = require_schema(schema, field)
    with blame(field):
        if isinstance(source, Mapping):
            return sch.validate(source)
        if isinstance(source, str):
            return parse_assignments([source], sch)
        if isinstance(source, (list, tuple)) and all(isinstance(s, str) for s in source):
            return parse_assignments(source, sch)
    raise UsageError(f"{field} must be an object or a 'name:value,...' string", field=field)


def parse_values(source: ValuesInput, *, field: str = "values") -> list[str]:
    """Value statements from a string or a list of strings."""
    if source is None:
        return []
    if isinstance(source, str):
        return [source]
    if isinstance(source, (list, tuple)) and all(isinstance(v, str) for v in source):
        return list(source)
    raise UsageError(f"{field} must be a string or a list of strings", field=field)


def parse_vectors(source: VectorsInput, allowed: Mapping[str, str] | None = None, *,
                  field: str = "vectors") -> list[tuple[str, float]]:
    """Steering vectors as ``(file, coefficient)`` pairs, each file checked to be a vector.

    Without ``allowed`` (the command line, the Python API): ``"FILE[:COEF]"`` strings (one, or a
    list), or ``(file, coef)`` pairs. With ``allowed`` (a server's allow-list, name -> file): names
    only, never a path, as ``{name: coef}``, a list of names or ``{"name", "coef"}`` objects."""
    from steer import vectors as vec

    if source is None or (isinstance(source, (str, list, tuple, Mapping)) and not source):
        return []
    if allowed is None:
        items = [source] if isinstance(source, str) else source
        if not isinstance(items, (list, tuple)):
            raise UsageError(f"{field} must be FILE[:COEF] strings", field=field)
        out = [vec.parse_spec(x) if isinstance(x, str) else _pair(x, field) for x in items]
    else:
        out = [(_allowed(name, allowed, field), coef) for name, coef in _named(source, field)]
    with blame(field):
        for path, _ in out:
            vec.load(path)  # a missing or foreign file fails now, before anything is generated
    return out


def _pair(item: Any, field: str) -> tuple[str, float]:
    if (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], (str, Path))
            and isinstance(item[1], (int, float)) and not isinstance(item[1], bool)):
        return str(item[0]), float(item[1])
    raise UsageError(f"{field}: each vector is 'FILE[:COEF]' or (file, coef)", field=field)


def _named(source: Any, field: str) -> list[tuple[str, float]]:
    """(name, coefficient) pairs from ``{name: coef}``, names, or ``{"name", "coef"}`` objects."""
    def coef(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{field}: the coefficient of {name!r} must be a number", field=field)
        return float(value)

    if isinstance(source, Mapping):
        return [(str(k), coef(v, str(k))) for k, v in source.items()]
    items = [source] if isinstance(source, str) else source
    if not isinstance(items, (list, tuple)):
        raise UsageError(f"{field} must be an object {{name: coefficient}} or a list of names", field=field)
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((item, 1.0))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out.append((item["name"], coef(item.get("coef", 1.0), item["name"])))
        else:
            raise UsageError(f"{field}: each vector is a name or {{\"name\", \"coef\"}}", field=field)
    return out


def _allowed(name: str, allowed: Mapping[str, str], field: str) -> str:
    if name not in allowed:
        known = ", ".join(sorted(allowed)) or "none (start the server with --vector NAME=FILE)"
        raise UsageError(f"{field}: unknown steering vector {name!r}; this server has: {known}", field=field)
    return allowed[name]


def steering_from(schema: Schema | None, *, attributes: AttributeInput = None, preset: str | None = None,
                  values: ValuesInput = None, system: str | None = None, vectors: VectorsInput = None,
                  vector_files: Mapping[str, str] | None = None, base: Steering | None = None) -> Steering:
    """The :class:`Steering` that user input asks for, over ``base`` (see the module docstring).
    ``vectors`` replace the base's; ``vector_files`` is a server's allow-list (see :func:`parse_vectors`)."""
    base = base or Steering()
    parsed = parse_attributes(attributes, schema)
    if preset is not None:
        if not isinstance(preset, str):
            raise UsageError("preset must be a string", field="preset")
        with blame("preset"):
            preset_values(preset, require_schema(schema, "preset"))
    if system is not None and not isinstance(system, str):
        raise UsageError("system must be a string", field="system")
    steering = Steering({**base.attributes, **parsed}, base.preset if preset is None else preset,
                        list(base.values) if values is None else parse_values(values),
                        base.system if system is None else system,
                        list(base.vectors) if vectors is None else parse_vectors(vectors, vector_files))
    steering.resolved(schema)  # a preset that sets attributes the schema lacks fails here
    return steering


def content_text(content: Any, where: str = "content") -> str:
    """The text of a message's content: a string, or the text parts of a list of parts, joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, Mapping) and p.get("type") == "text"
                       and isinstance(p.get("text"), str))
    raise UsageError(f"{where} must be a string or a list of parts", field="messages")


def content_images(content: Any) -> list[Any]:
    """The image parts of a message's content, in order (none for a string)."""
    if not isinstance(content, list):
        return []
    return [p for p in content if isinstance(p, Mapping) and p.get("type") in ("image", "image_url")]


def image_ref(part: Mapping[str, Any]) -> Any:
    """The image an image part holds: ``image`` (a path, bytes, a data URL) or OpenAI's ``image_url``."""
    if "image" in part:
        return part["image"]
    url = part.get("image_url")
    return url.get("url") if isinstance(url, Mapping) else url


def row_messages(row: dict, where: str) -> list[dict]:
    """The chat messages of an input row (``messages``, or ``prompt`` as one user turn), validated."""
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
            raise UsageError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        if msgs[-1]["role"] != "user":
            raise UsageError(f"{where}: the last message must be from the user")
        for k, m in enumerate(msgs):
            content_text(m["content"], f"{where}: messages[{k}].content")
        return [dict(m) for m in msgs]
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(f"{where}: needs a non-empty 'prompt' (or 'messages')")
    return [{"role": "user", "content": prompt}]


def row_images(row: dict, messages: list[dict], base: Path, where: str) -> list[dict]:
    """The row's messages with every image resolved and checked: image parts (a path relative to the
    input file, a data URL), or an ``images`` list of paths beside a ``prompt`` (the prompt's user
    turn, images first)."""
    from steer import images

    if "images" in row:
        if "messages" in row or not isinstance(row["images"], list):
            raise UsageError(f"{where}: 'images' is a list of image paths beside a 'prompt' (with 'messages', "
                             "put image parts in the content)")
        messages = [{"role": "user", "content": [{"type": "image", "image": p} for p in row["images"]]
                     + [{"type": "text", "text": messages[0]["content"]}]}]
    out = []
    for k, m in enumerate(messages):
        if not content_images(m["content"]):
            out.append(m)
            continue
        parts = []
        for j, p in enumerate(m["content"]):
            if isinstance(p, dict) and p.get("type") in ("image", "image_url"):
                column = f"messages[{k}].content[{j}]"
                try:
                    p = {"type": "image", "image": images.reference(image_ref(p), base, column)}
                except SteerError as err:  # a missing or broken image: one line naming the row
                    raise UsageError(f"{where}: {err}") from None
            parts.append(p)
        out.append({**m, "content": parts})
    return out


def steering_prompt(template: SteerTemplate, messages: Sequence[Mapping[str, Any]], steering: Steering) -> Prompt:
    """The prompt for the next assistant turn, steered: the one rendering path every engine gets.

    A message's content may be a list of parts: text parts are rendered, and image parts as the
    model's image placeholder when it reads images; their images travel in :attr:`Prompt.images`
    (a text model's engine refuses a prompt that has some).
    """
    def content(k: int, m: Mapping[str, Any]) -> Any:
        text = content_text(m.get("content"), f"messages[{k}].content")  # checks it either way
        return m["content"] if template.image_token and isinstance(m.get("content"), list) else text

    msgs = [{**m, "content": content(k, m)} for k, m in enumerate(messages)]
    images = tuple(image_ref(p) for m in messages for p in content_images(m.get("content")))
    if steering.system is not None:
        msgs = [m for m in msgs if m.get("role") != "system"]
        if steering.system:
            msgs.insert(0, {"role": "system", "content": steering.system})
    text = template.prompt(msgs, attributes=steering.resolved(template.schema), values=steering.values or None)
    return Prompt(text, images, tuple(steering.vectors))
