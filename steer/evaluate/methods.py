"""The ways a sweep can ask for an attribute level: each method turns requested levels into a
:class:`~steer.steering.Steering`, so every method runs through the same sweep and the same judges.

- ``attributes``: the model's own conditioning (SteerLM attribute lines; a model steer trained);
- ``prompt``: an instruction per level (:mod:`steer.evaluate.instructions`) as the system message,
  through the model's own template: any chat model, never trained to be steered;
- ``values``: the same instructions as Janus value statements (rendered the way the model's
  template renders values);
- ``vector``: a steering vector per attribute (``steer vectors train``) added to the residual
  stream, its coefficient a linear map of the level (:func:`coefficient`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steer.attributes import Attribute, Schema
from steer.errors import UsageError
from steer.evaluate.instructions import check as check_instructions
from steer.steering import Steering, steering_from

METHODS = ("attributes", "prompt", "values", "vector")


def coefficient(meta: Mapping, level: int, attr: Attribute, scale: float = 1.0) -> float:
    """The coefficient that asks a vector for ``level``: with the mean ratings of the vector's two
    sides (``meta["levels"]``), ``scale * (level - midpoint) / (positive - negative)``, so the
    midpoint between the sides adds nothing and one side's level is half the vector away; without
    them (a vector from pairs), the attribute's range mapped onto ``[-scale, scale]``."""
    levels = meta.get("levels") or {}
    pos, neg = levels.get("positive"), levels.get("negative")
    if isinstance(pos, (int, float)) and isinstance(neg, (int, float)) and pos != neg:
        return scale * (level - (pos + neg) / 2) / (pos - neg)
    span = attr.max - attr.min
    return scale * (2 * (level - attr.min) / span - 1) if span else 0.0


def parse_vector_files(specs: Sequence[str]) -> dict[str, str]:
    """``--vector NAME=FILE`` (repeatable) -> {attribute: file}."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--vector {spec!r}: ATTRIBUTE=FILE (the vector that steers that attribute)",
                             field="vector")
        out[name] = path
    return out


@dataclass
class Methods:
    """What each method needs: the sweep's schema, the instruction table (``prompt``, ``values``),
    a vector file per attribute and the coefficient scale (``vector``)."""

    schema: Schema
    table: Mapping[str, Mapping[int, str]] | None = None
    vector_files: Mapping[str, str] = field(default_factory=dict)
    scale: float = 1.0

    def check(self, methods: Sequence[str], names: Sequence[str], model_schema: Schema | None) -> None:
        """Refuse a method that cannot sweep ``names``, with the input at fault."""
        from steer import vectors

        for m in methods:
            if m not in METHODS:
                raise UsageError(f"--method must be among {', '.join(METHODS)}, not {m!r}", field="method")
        if "attributes" in methods and model_schema is None:
            raise UsageError("--method attributes: this model has no attribute schema (it was not trained to be "
                             "steered); use --method prompt, values or vector", field="method")
        if {"prompt", "values"} & set(methods):
            check_instructions(self.table or {}, self.schema, list(names))
        if "vector" in methods:
            for name in names:
                if name not in self.vector_files:
                    raise UsageError(f"--method vector: no vector for {name} (give --vector {name}=FILE)",
                                     field="vector")
                meta = vectors.load(self.vector_files[name]).meta
                made_for = meta.get("attribute")
                if made_for not in (None, name, "preference"):
                    raise UsageError(f"--vector {name}={self.vector_files[name]}: that vector is for {made_for}",
                                     field="vector")

    def steering(self, method: str, levels: Mapping[str, int]) -> Steering:
        """The steering that asks for ``levels`` (attribute -> level) by ``method``."""
        if method == "attributes":
            return steering_from(self.schema, attributes=dict(levels))
        if method in ("prompt", "values"):
            texts = [self.table[name][lvl] for name, lvl in levels.items()]  # type: ignore[index]
            return Steering(system=" ".join(texts)) if method == "prompt" else Steering(values=texts)
        from steer import vectors

        specs = [(self.vector_files[name], coefficient(vectors.load(self.vector_files[name]).meta, lvl,
                                                       self.schema.get(name), self.scale))
                 for name, lvl in levels.items()]
        return Steering(vectors=[(str(Path(f)), c) for f, c in specs])
