"""``steer chat``: the state, slash commands and answers of the interactive REPL (the CLI reads lines
and shows what comes back).

A :class:`ChatSession` holds the conversation (each assistant turn keeps the attributes it was
generated with), the current steering and the sampling settings. :meth:`ChatSession.handle` takes
one typed line: a slash command runs at once and says what to show; a question (or ``/retry``)
asks for an answer, which :meth:`ChatSession.answer` streams from the engine through the same
rendering path as every other job. An answer that is stopped (Ctrl-C) or fails leaves its question
pending: ``/retry`` asks it again, a new question replaces it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from steer.engines.base import Engine, Response, Sampling
from steer.errors import UsageError
from steer.steering import Steering, parse_vectors, steering_from, steering_prompt

COMMANDS = {
    "/help": "this list",
    "/attrs": "show the current steering",
    "/set": "NAME VALUE: set one attribute",
    "/preset": "NAME: apply a preset",
    "/system": "TEXT | clear: the system message",
    "/value": "TEXT | clear: add a value statement (or clear them)",
    "/vector": "FILE[:COEF] | clear: add a steering vector (one already added takes the new coefficient)",
    "/image": "PATH | clear: attach an image to the next question (a vision-language model)",
    "/params": "k=v ...: temperature, top_p, top_k, max_new_tokens, seed",
    "/reset": "forget the conversation (steering stays)",
    "/undo": "drop the last exchange",
    "/retry": "answer the last question again",
    "/save": "PATH: the conversation as canonical steer JSONL",
    "/quit": "leave",
}
PARAMS = {"temperature": float, "top_p": float, "top_k": int, "max_new_tokens": int, "seed": int}


@dataclass
class Reply:
    """What a line asks the REPL to do: show ``text``, then maybe answer or quit."""

    text: str = ""
    generate: bool = False
    quit: bool = False


@dataclass
class ChatSession:
    engine: Engine
    steering: Steering
    sampling: Sampling
    messages: list[dict] = field(default_factory=list)
    guard: Any = None  # a steer.generate.guard.Guard: answers are scored (and regenerated) before they are shown
    last_guard: Any = None  # what the guard did for the last answer (a Guarded)
    images: list[str] = field(default_factory=list)  # attached with /image, sent with the next question

    @classmethod
    def open(cls, model: Any, steering: Mapping[str, Any], sampling: Sampling, *, engine: str = "hf",
             template: str | None = None, schema: str | None = None, guard: Any = None) -> ChatSession:
        """A session with ``model`` (loaded on ``engine``), steered by ``steering`` (the keyword
        arguments of :func:`steer.steering.steering_from`), answers checked by ``guard`` when given."""
        from steer.generate.api import engine_for

        eng = engine_for(model, engine, template, schema)
        return cls(eng, steering_from(eng.template.schema, **steering), sampling, guard=guard)

    @property
    def schema(self) -> Any:
        return self.engine.template.schema

    def steering_line(self) -> str:
        parts = []
        attrs = self.steering.resolved(self.schema)
        if attrs is not None:
            parts.append(self.schema.render(attrs))
        if self.steering.system:
            parts.append(f"system: {self.steering.system}")
        parts += [f"value: {v}" for v in self.steering.values]
        parts += [f"vector: {f}:{c:g}" for f, c in self.steering.vectors]
        return "; ".join(parts) or "(no steering)"

    def handle(self, line: str) -> Reply:
        """One typed line: a slash command, or a question to answer (replacing a question whose answer
        was stopped). Bad input raises ``UsageError``."""
        if line.startswith("/"):
            return self.command(line)
        from steer.images import user_message

        if self.messages and self.messages[-1]["role"] == "user":
            self.messages.pop()  # the unanswered question before it: a new one takes its place
        self.messages.append(user_message(line, self.images, "/image"))
        self.images = []
        return Reply(generate=True)

    def answer(self) -> Iterator[str | Response]:
        """Stream the answer to the pending question, then record it with the attributes it was steered
        by. A stopped (Ctrl-C) or failed answer leaves the question pending: ``/retry`` asks it again."""
        prompt = steering_prompt(self.engine.template, self.messages, self.steering)
        final = None
        if self.guard is not None:  # nothing is shown before the guard has passed it: one piece, then the response
            self.last_guard = self.guard.run(self.messages, self.steering, self.schema, lambda steering: self.engine.generate(
                [steering_prompt(self.engine.template, self.messages, steering)], self.sampling)[0])
            final = self.last_guard.response
            yield final.text
            yield final
        for piece in self.engine.stream(prompt, self.sampling) if self.guard is None else ():
            final = piece if isinstance(piece, Response) else final
            yield piece
        turn: dict[str, Any] = {"role": "assistant", "content": final.text if final else ""}
        attrs = self.steering.resolved(self.schema)
        if attrs is not None:
            turn["attributes"] = attrs
        self.messages.append(turn)

    def command(self, line: str) -> Reply:
        """Run one slash command; bad input raises ``UsageError`` (the REPL shows it and goes on)."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if name not in COMMANDS:
            hint = difflib.get_close_matches(name, COMMANDS, n=1)
            raise UsageError(f"unknown command {name}" + (f"; did you mean {hint[0]}?" if hint else "; /help lists them"))
        if name == "/help":
            return Reply("\n".join(f"{c:9} {d}" for c, d in COMMANDS.items()))
        if name in ("/attrs", "/set", "/preset", "/system", "/value", "/vector"):
            if name != "/attrs":
                self.steering = self._steer(name, arg)
            return Reply(self.steering_line())
        if name == "/params":
            return Reply(self._params(arg))
        if name == "/image":
            return Reply(self._image(arg))
        if name == "/save":
            if not arg:
                raise UsageError("usage: /save PATH")
            return Reply(f"saved {self.save(Path(arg))}")
        return self._history(name)

    def _steer(self, name: str, arg: str) -> Steering:
        """The steering after ``/set``, ``/preset``, ``/system``, ``/value`` or ``/vector`` (``clear`` removes)."""
        if not arg or (name == "/set" and len(arg.split()) != 2):
            raise UsageError({"/set": "usage: /set NAME VALUE", "/preset": "usage: /preset NAME",
                              "/system": "usage: /system TEXT | clear", "/value": "usage: /value TEXT | clear",
                              "/vector": "usage: /vector FILE[:COEF] | clear"}[name])
        base = self.steering
        if name == "/set":
            return steering_from(self.schema, attributes="=".join(arg.split()), base=base)
        if name == "/preset":  # a preset replaces the values set one by one
            return steering_from(self.schema, preset=arg, base=replace(base, attributes={}))
        if arg == "clear":
            return replace(base, **{"/system": {"system": None}, "/value": {"values": []}, "/vector": {"vectors": []}}[name])
        if name == "/vector":
            [(path, coef)] = parse_vectors(arg)
            kept = [(f, c) for f, c in base.vectors if f != path]
            return steering_from(self.schema, vectors=[*kept, (path, coef)], base=base)
        if name == "/system":
            return steering_from(self.schema, system=arg, base=base)
        return steering_from(self.schema, values=[*base.values, arg], base=base)

    def _history(self, name: str) -> Reply:
        """``/reset``, ``/undo``, ``/retry`` and ``/quit``."""
        if name == "/reset":
            self.messages.clear()
            return Reply("conversation cleared")
        if name == "/undo":
            if not self.messages:
                raise UsageError("nothing to undo")
            while self.messages and self.messages.pop()["role"] != "user":
                pass
            return Reply(f"{len(self.messages) // 2} exchanges left")
        if name == "/retry":
            if not self.messages:
                raise UsageError("nothing to retry")
            if self.messages[-1]["role"] == "assistant":  # else the last answer was stopped: ask again
                self.messages.pop()
            return Reply(generate=True)
        return Reply(quit=True)

    def _params(self, arg: str) -> str:
        if not arg:
            s = self.sampling
            return " ".join(f"{k}={getattr(s, k)}" for k in PARAMS)
        changes: dict[str, Any] = {}
        for item in arg.split():
            key, sep, raw = item.partition("=")
            if key not in PARAMS or not sep:
                hint = difflib.get_close_matches(key, PARAMS, n=1)
                raise UsageError(f"unknown parameter {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else
                                 f" (known: {', '.join(PARAMS)})"))
            try:
                changes[key] = PARAMS[key](raw)
            except ValueError:
                raise UsageError(f"{key}: {raw!r} is not a {PARAMS[key].__name__}") from None
        self.sampling = replace(self.sampling, **changes)
        return self._params("")

    def _image(self, arg: str) -> str:
        """``/image PATH`` attaches an image (checked now) to the next question; ``/image clear`` drops them."""
        from steer.images import user_message

        if not arg:
            raise UsageError("usage: /image PATH | clear")
        if arg == "clear":
            self.images = []
            return "no image attached"
        if not getattr(self.engine, "reads_images", False):
            raise UsageError("this model reads text only: /image needs a vision-language model")
        [image] = user_message("", [arg], "/image")["content"][:1]
        self.images.append(image["image"])
        return f"{len(self.images)} image(s) attached to the next question: {', '.join(self.images)}"

    def save(self, path: Path) -> Path:
        """Append the conversation as one canonical ``steer`` JSONL row (``steer data`` loads it)."""
        if not any(m["role"] == "assistant" for m in self.messages):
            raise UsageError("nothing to save yet")
        system = "\n\n".join(x for x in [self.steering.system, *self.steering.values] if x) or None
        answered = self.messages[:-1] if self.messages[-1]["role"] == "user" else self.messages  # not a stopped question
        digest = hashlib.sha1(json.dumps(answered, sort_keys=True).encode()).hexdigest()[:12]
        row = {"id": f"chat-{digest}", "source": "steer chat", "messages": answered}
        if system:
            row["system"] = system
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
