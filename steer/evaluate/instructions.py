"""The prompting baseline: a plain instruction per attribute level, sent as the system message, so a
model steer never trained can be swept like a steerable one (``steer eval steerability --method
prompt``; ``--method values`` sends the same texts as value statements). The built-in table covers the two attributes the ``length`` and ``fkgl`` judges
measure; ``--instructions FILE`` takes a JSON object ``{attribute: {level: instruction}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from steer.attributes import Schema
from steer.errors import UsageError

INSTRUCTIONS: dict[str, dict[int, str]] = {
    "verbosity": {
        0: "Answer in as few words as possible: one short sentence at most.",
        1: "Answer briefly, in one or two sentences.",
        2: "Answer in a short paragraph.",
        3: "Answer in detail, in a few paragraphs.",
        4: "Answer at great length, covering every detail, with several long paragraphs.",
    },
    "complexity": {
        0: "Use only very simple, everyday words and short sentences, as for a young child.",
        1: "Use simple words that a teenager would understand.",
        2: "Write for an ordinary adult reader.",
        3: "Write for an educated reader, using some technical terms.",
        4: "Write for an expert, using precise technical vocabulary and complex sentences.",
    },
}


def load(path: str | None) -> dict[str, dict[int, str]]:
    """The instruction table: built in, or read from ``path`` (levels as JSON keys "0".."4")."""
    if path is None:
        return INSTRUCTIONS
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"--instructions: cannot read {path} ({err.strerror or err})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"--instructions: {path} is not valid JSON ({err})") from None
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError(f"--instructions: {path} must be an object {{attribute: {{level: instruction}}}}")
    table: dict[str, dict[int, str]] = {}
    for name, levels in raw.items():
        if not isinstance(levels, Mapping) or not levels:
            raise UsageError(f"--instructions: {path}: {name} must map levels to instructions")
        table[name] = {}
        for level, text in levels.items():
            if not str(level).lstrip("-").isdigit() or not isinstance(text, str) or not text.strip():
                raise UsageError(f"--instructions: {path}: {name}.{level} must be an integer level with a text")
            table[name][int(level)] = text
    return table


def check(table: Mapping[str, Mapping[int, str]], schema: Schema, names: list[str]) -> None:
    """Every swept attribute has an instruction for each level of its range."""
    for name in names:
        attr = schema.get(name)
        missing = [lvl for lvl in range(attr.min, attr.max + 1) if lvl not in table.get(name, {})]
        if missing:
            raise UsageError(f"--instructions: no instruction for {name} at level(s) {', '.join(map(str, missing))}")
