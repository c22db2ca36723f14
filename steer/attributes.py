"""Attribute schemas, parsing and rendering of steering values.

A schema is an ordered list of integer attributes. The order is fixed: it is the order of the
attribute string ``name:int,name:int`` that SteerLM conditions on, so it must never change for
a trained model.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from steer.errors import UsageError


@dataclass(frozen=True)
class Attribute:
    """One steerable attribute with an inclusive integer range."""

    name: str
    min: int
    max: int
    default: int
    description: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise UsageError(f"attribute name {self.name!r} must be lower-case letters, digits or '_'")
        if not self.min <= self.default <= self.max:
            raise UsageError(f"attribute {self.name!r}: default {self.default} outside {self.min}-{self.max}")


@dataclass(frozen=True)
class Schema:
    """An ordered set of attributes; the order is the order of the rendered attribute string."""

    name: str
    attributes: tuple[Attribute, ...]
    description: str = ""
    _index: dict[str, Attribute] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {a.name: a for a in self.attributes}
        if len(index) != len(self.attributes):
            raise UsageError(f"schema {self.name!r} names an attribute twice")
        object.__setattr__(self, "_index", index)

    @property
    def names(self) -> list[str]:
        """Attribute names in schema order."""
        return [a.name for a in self.attributes]

    def defaults(self) -> dict[str, int]:
        """The default value of every attribute, in schema order."""
        return {a.name: a.default for a in self.attributes}

    def get(self, name: str) -> Attribute:
        """The attribute called ``name``; unknown names raise with a did-you-mean hint."""
        try:
            return self._index[name]
        except KeyError:
            raise UsageError(
                f"unknown attribute {name!r} for schema {self.name!r}{_suggest(name, self.names)}"
                f" (known: {', '.join(self.names)})"
            ) from None

    def check(self, name: str, value: object) -> int:
        """Validate one value for attribute ``name`` and return it as an int."""
        attr = self.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"attribute {name!r}: value {value!r} is not an integer")
        if not attr.min <= value <= attr.max:
            raise UsageError(f"attribute {name!r}: value {value} out of range {attr.min}-{attr.max}")
        return value

    def validate(self, values: Mapping[str, object]) -> dict[str, int]:
        """Validate a (possibly partial) mapping; returns it in schema order."""
        checked = {name: self.check(name, value) for name, value in values.items()}
        return {n: checked[n] for n in self.names if n in checked}

    def resolve(self, *, preset: str | None = None, values: Mapping[str, object] | None = None) -> dict[str, int]:
        """Complete steering values: schema defaults < preset < explicit values."""
        out = self.defaults()
        if preset:
            out.update(preset_values(preset, self))
        out.update(self.validate(values or {}))
        return out

    def render(self, values: Mapping[str, object]) -> str:
        """The attribute string ``name:int,...`` in schema order; missing names take defaults."""
        full = {**self.defaults(), **self.validate(values)}
        return ",".join(f"{name}:{full[name]}" for name in self.names)

    def parse(self, text: str) -> dict[str, int]:
        """Parse an attribute string ``name:int,...`` (as rendered) back into a dict."""
        return parse_assignments([text], self)

    def to_dict(self) -> dict:
        """A JSON-able description (saved with trained models)."""
        return {
            "name": self.name,
            "description": self.description,
            "attributes": [
                {"name": a.name, "min": a.min, "max": a.max, "default": a.default, "description": a.description}
                for a in self.attributes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Schema:
        """Inverse of :meth:`to_dict`."""
        attrs = tuple(Attribute(**a) for a in data["attributes"])
        return cls(name=str(data["name"]), attributes=attrs, description=str(data.get("description", "")))


def _suggest(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _scale(name: str, default: int, description: str) -> Attribute:
    return Attribute(name, 0, 4, default, description)


_HELPSTEER = (
    _scale("helpfulness", 4, "overall helpfulness of the response to the prompt"),
    _scale("correctness", 4, "inclusion of all pertinent facts without errors"),
    _scale("coherence", 4, "consistency and clarity of expression"),
    _scale("complexity", 2, "intellectual depth needed to write the response (0 basic, 4 expert)"),
    _scale("verbosity", 2, "amount of detail relative to what the prompt asks for"),
)
_OASST = (
    _scale("quality", 4, "overall quality of the response"),
    _scale("toxicity", 0, "rude, abusive or harmful content"),
    _scale("humor", 0, "humorous content"),
    _scale("creativity", 0, "creative, original content"),
)

# Harmlessness from PKU-SafeRLHF's severity level: 0 safe, 1 minor, 2 moderate, 3 severe harm.
# harmlessness = 3 - severity, so 3 is a safe response and 0 a severely harmful one. A response
# flagged unsafe with no severity (BeaverTails, or PKU rows with level 0 on an unsafe response)
# gets the middle of the unsafe range, 1.
SAFETY_FROM_SEVERITY = {0: 3, 1: 2, 2: 1, 3: 0}
UNSAFE_UNKNOWN_SEVERITY = 1

SCHEMAS: dict[str, Schema] = {
    "helpsteer": Schema("helpsteer", _HELPSTEER, "HelpSteer / HelpSteer2 attributes (0-4)"),
    "oasst": Schema("oasst", _OASST, "OpenAssistant labels used by SteerLM (0-4)"),
    "steerlm": Schema("steerlm", _OASST + _HELPSTEER, "NeMo SteerLM's nine attributes in NeMo order"),
    "vlfeedback": Schema("vlfeedback", (
        _scale("helpfulness", 4, "how well the response answers the question about the image"),
        _scale("visual_faithfulness", 4, "agreement with what the image shows (no invented details)"),
        _scale("ethics", 4, "ethical considerations: safe, fair, privacy-respecting"),
    ), "VLFeedback / Silkie ratings (1-5 mapped to 0-4)"),
    "vision": Schema("vision", (
        _scale("visual_faithfulness", 4, "agreement with what the image shows (no invented details)"),
        _scale("verbosity", 2, "amount of detail relative to what the prompt asks for"),
    ), "the visual synthetic world's attributes (0-4): steer data synth --vision"),
    "safety": Schema(
        "safety",
        (Attribute("harmlessness", 0, 3, 3, "3 safe, 2 minor, 1 moderate, 0 severe harm (PKU-SafeRLHF severity)"),),
        "harmlessness derived from PKU-SafeRLHF severity levels",
    ),
}

# Presets are data: a name, a one-line description, and the values they set. A preset applies to
# any schema that has all of its attributes.
PRESETS: dict[str, tuple[str, dict[str, int]]] = {
    "concise": ("short, to-the-point answers", {"verbosity": 0}),
    "detailed": ("long answers with full detail", {"verbosity": 4}),
    "expert": ("technical depth for specialists", {"complexity": 4}),
    "simple": ("plain words a child can follow", {"complexity": 0, "verbosity": 1}),
    "balanced": ("the schema defaults, spelled out", {}),
    "creative": ("original, imaginative answers", {"creativity": 4}),
    "funny": ("humorous answers", {"humor": 4}),
    "safe": ("harmless answers only", {"harmlessness": 3}),
}


NO_SCHEMA = "this model has no attribute schema; steer it with value statements or a system message"


def require_schema(schema: Schema | None, field: str = "attributes") -> Schema:
    """``schema``, or the one error for steering by attributes a model that has none."""
    if schema is None:
        raise UsageError(NO_SCHEMA, field=field)
    return schema


def get_schema(name: str) -> Schema:
    """A built-in schema by name, with a did-you-mean hint for typos."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise UsageError(f"unknown schema {name!r}{_suggest(name, SCHEMAS)} (known: {', '.join(SCHEMAS)})") from None


def presets_for(schema: Schema) -> dict[str, tuple[str, dict[str, int]]]:
    """The presets whose attributes all belong to ``schema``."""
    return {n: p for n, p in PRESETS.items() if set(p[1]) <= set(schema.names)}


def preset_values(name: str, schema: Schema) -> dict[str, int]:
    """The values a preset sets, validated against ``schema``."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}{_suggest(name, PRESETS)} (known: {', '.join(presets_for(schema))})")
    values = PRESETS[name][1]
    missing = [k for k in values if k not in schema.names]
    if missing:
        raise UsageError(f"preset {name!r} sets {', '.join(missing)}, which schema {schema.name!r} does not have")
    return schema.validate(values)


_PAIR = re.compile(r"^\s*([^=:\s]+)\s*[=:]\s*(\S+?)\s*$")


def parse_assignments(items: Iterable[str], schema: Schema) -> dict[str, int]:
    """Parse ``["helpfulness=4", "verbosity:1,complexity=2"]`` into a validated dict.

    Each item holds one or more ``name=value`` / ``name:value`` pairs separated by commas.
    Unknown names, non-integers, out-of-range values and duplicates raise ``UsageError``.
    """
    out: dict[str, int] = {}
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                raise UsageError(f"empty attribute in {item!r}; expected name=value pairs separated by ','")
            match = _PAIR.match(part)
            if not match:
                raise UsageError(f"cannot parse attribute {part.strip()!r}; expected name=value or name:value")
            name, raw = match.groups()
            schema.get(name)
            if name in out:
                raise UsageError(f"attribute {name!r} given twice")
            if not re.fullmatch(r"[+-]?\d+", raw):
                raise UsageError(f"attribute {name!r}: value {raw!r} is not an integer")
            out[name] = schema.check(name, int(raw))
    return {n: out[n] for n in schema.names if n in out}
