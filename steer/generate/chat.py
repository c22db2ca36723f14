"""``steer chat``: the state and slash commands of the interactive REPL (the CLI does the I/O).

A :class:`ChatSession` holds the conversation (each assistant turn keeps the attributes it was
generated with), the current steering and the sampling settings. :meth:`ChatSession.command`
runs one slash command and returns what to show; :meth:`ChatSession.prompt_for` renders the
prompt for the next answer through the same path as every engine.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from steer.attributes import parse_assignments, preset_values
from steer.errors import UsageError
from steer.generate.engine import Sampling, Steering, steering_prompt
from steer.templates import SteerTemplate

COMMANDS = {
    "/help": "this list",
    "/attrs": "show the current steering",
    "/set": "NAME VALUE: set one attribute",
    "/preset": "NAME: apply a preset",
    "/system": "TEXT | clear: the system message",
    "/value": "TEXT | clear: add a value statement (or clear them)",
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
    """What a command asks the REPL to do: show ``text``, then maybe generate or quit."""

    text: str = ""
    generate: bool = False
    quit: bool = False


@dataclass
class ChatSession:
    template: SteerTemplate
    steering: Steering
    sampling: Sampling
    messages: list[dict] = field(default_factory=list)

    def steering_line(self) -> str:
        parts = []
        attrs = self.steering.resolved(self.template.schema)
        if attrs is not None:
            parts.append(self.template.schema.render(attrs))
        if self.steering.system:
            parts.append(f"system: {self.steering.system}")
        parts += [f"value: {v}" for v in self.steering.values]
        return "; ".join(parts) or "(no steering)"

    def prompt_for(self, text: str | None = None) -> str:
        """Add the user's ``text`` (None: answer the pending question again) and render the prompt."""
        if text is not None:
            self.messages.append({"role": "user", "content": text})
        return steering_prompt(self.template, self.messages, self.steering)

    def answered(self, text: str) -> None:
        """Record the assistant's answer with the attributes it was steered by."""
        turn: dict[str, Any] = {"role": "assistant", "content": text}
        attrs = self.steering.resolved(self.template.schema)
        if attrs is not None:
            turn["attributes"] = attrs
        self.messages.append(turn)

    def interrupted(self) -> None:
        """An answer was stopped: drop the question so the conversation stays well formed."""
        if self.messages and self.messages[-1]["role"] == "user":
            self.messages.pop()

    def command(self, line: str) -> Reply:
        """Run one slash command; bad input raises ``UsageError`` (the REPL shows it and goes on)."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if name not in COMMANDS:
            hint = difflib.get_close_matches(name, COMMANDS, n=1)
            raise UsageError(f"unknown command {name}" + (f"; did you mean {hint[0]}?" if hint else "; /help lists them"))
        schema = self.template.schema
        if name == "/help":
            return Reply("\n".join(f"{c:9} {d}" for c, d in COMMANDS.items()))
        if name == "/attrs":
            return Reply(self.steering_line())
        if name == "/set":
            parts = arg.split()
            if len(parts) != 2:
                raise UsageError("usage: /set NAME VALUE")
            if schema is None:
                raise UsageError("this model has no attribute schema; use /system or /value")
            value = parse_assignments([f"{parts[0]}={parts[1]}"], schema)
            self.steering = replace(self.steering, attributes={**self.steering.attributes, **value})
            return Reply(self.steering_line())
        if name == "/preset":
            if schema is None:
                raise UsageError("this model has no attribute schema")
            preset_values(arg, schema)
            self.steering = replace(self.steering, preset=arg, attributes={})
            return Reply(self.steering_line())
        if name == "/system":
            if not arg:
                raise UsageError("usage: /system TEXT | clear")
            self.steering = replace(self.steering, system=None if arg == "clear" else arg)
            return Reply(self.steering_line())
        if name == "/value":
            if not arg:
                raise UsageError("usage: /value TEXT | clear")
            values = [] if arg == "clear" else [*self.steering.values, arg]
            self.steering = replace(self.steering, values=values)
            return Reply(self.steering_line())
        if name == "/params":
            return Reply(self._params(arg))
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
            if not self.messages or self.messages[-1]["role"] != "assistant":
                raise UsageError("nothing to retry")
            self.messages.pop()
            return Reply(generate=True)
        if name == "/save":
            if not arg:
                raise UsageError("usage: /save PATH")
            return Reply(f"saved {self.save(Path(arg))}")
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

    def save(self, path: Path) -> Path:
        """Append the conversation as one canonical ``steer`` JSONL row (``steer data`` loads it)."""
        if not any(m["role"] == "assistant" for m in self.messages):
            raise UsageError("nothing to save yet")
        system = "\n\n".join(x for x in [self.steering.system, *self.steering.values] if x) or None
        digest = hashlib.sha1(json.dumps(self.messages, sort_keys=True).encode()).hexdigest()[:12]
        row = {"id": f"chat-{digest}", "source": "steer chat",
               "messages": self.messages}
        if system:
            row["system"] = system
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
