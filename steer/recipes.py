"""Recipes as a user meets them: the shipped ones listed, a commented one to start from, and the
reference of every key, all read from the typed schema in :mod:`steer.config` so none can drift."""

from __future__ import annotations

import textwrap
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from steer import __version__
from steer.config import RECIPES, Section, _section_type, load_recipe, validate_recipe
from steer.errors import SteerError, UsageError

COMMON = ("kind", "model", "template", "data", "train", "distributed")
WHAT = {"sft": "attribute-conditioned (SteerLM) or value-conditioned (Janus) fine-tuning",
        "apm": "an attribute prediction model (one regression output per attribute)",
        "dpo": "preference optimisation on pairs (DPO, IPO, SimPO, ORPO, RPO, ...)",
        "rm": "a Bradley-Terry reward model on pairs", "cost": "Safe RLHF's cost model on safety-labelled pairs",
        "rl": "online RL from a policy run, with a reward, a cost and the Lagrangian"}


@dataclass(frozen=True)
class FieldDoc:
    """One recipe key: its dotted path (``[]`` for list items), type, default and meaning."""

    path: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class RecipeInfo:
    """A recipe file: its kind, first comment line, model, data sources and whether it validates."""

    path: str
    kind: str
    purpose: str
    model: str
    data: tuple[str, ...]
    problem: str | None = None


def _type_name(annotation: Any) -> str:
    """A reader's spelling of a field type: ``lora | full``, ``list of str``, ``int or null``."""
    if annotation is Any:
        return "any"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping" if not args else f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if args:  # a union
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _flow(value: Any) -> str:
    """``value`` as one line of YAML."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**6, allow_unicode=True).strip()[1:-1]


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return _flow(value)


def field_docs(model: type[Section], prefix: str = "") -> Iterator[FieldDoc]:
    """Every key of a section, depth first; a sub-section's keys follow its own line."""
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        sub = _section_type(field.annotation)
        is_list = typing.get_origin(field.annotation) is list
        if sub is not field.annotation:
            yield FieldDoc(key, _type_name(field.annotation), _default(field), field.description or "")
        if sub is not None:
            yield from field_docs(sub, key + ("[]." if is_list else "."))


def reference_markdown() -> str:
    """``docs/recipes.md``: every key of every recipe kind with its type, default and meaning."""
    out = ["# Recipe reference", "",
           "Generated from the typed schema (`steer/config.py`) by `steer recipe reference`; a test fails when this",
           "page is stale. Every key below is optional unless its default says *required*; unknown keys are errors",
           "that name the key path (with a did-you-mean). Precedence: code defaults < the recipe YAML < `--set a.b=v`.",
           "`steer recipe init --kind KIND` writes a commented recipe with every key; `steer recipe check FILE` prints",
           "one fully resolved.", ""]
    out += ["| kind | trains | command |", "|---|---|---|"]
    out += [f"| `{k}` | {WHAT[k]} | `steer train {k} RECIPE` |" for k in RECIPES]
    base = RECIPES["sft"]
    for name in COMMON[1:]:
        out += _section_table(name, base, "every kind")
    for kind, model in RECIPES.items():
        for name in model.model_fields:
            if name not in COMMON:
                out += _section_table(name, model, f"`kind: {kind}`")
    return "\n".join(out) + "\n"


def _section_table(name: str, recipe: type[Section], where: str) -> list[str]:
    section = _section_type(recipe.model_fields[name].annotation)
    assert section is not None
    about = " ".join((section.__doc__ or "").split())
    lines = ["", f"## `{name}` ({where})", "", about, "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for doc in field_docs(section, name + "."):
        cells = [f"`{doc.path}`", doc.type, f"`{doc.default}`" if doc.default != "required" else "*required*",
                 doc.description]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def shipped_folder() -> Path | None:
    """The recipes that come with steer (the source checkout's ``recipes/``), if present."""
    folder = Path(__file__).resolve().parent.parent / "recipes"
    return folder if folder.is_dir() else None


def _purpose(text: str) -> str:
    """The recipe's first comment paragraph, as one line up to its first sentence."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if not body or body.endswith(":"):
            break
        lines.append(body)
    first = " ".join(lines).split(". ")[0].rstrip(".")
    # the head of the sentence, where it says what the recipe is: up to the first break past 20 characters
    cuts = [i for mark in (": ", " (", "; ", ", ") for i in range(20, len(first)) if first.startswith(mark, i)]
    first = first[:min(cuts)] if cuts else first
    return first if len(first) <= 80 else textwrap.shorten(first, 80, placeholder=" ...")


def describe(path: Path, root: Path | None = None) -> RecipeInfo:
    """What one recipe file is (a file that does not validate says why, instead of failing the list);
    its path is shown relative to ``root``."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        text, raw = "", {}
    raw = raw if isinstance(raw, dict) else {}
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    name = model.get("name_or_path") or (f"from scratch ({model['from_scratch'].get('model_type', '?')})"
                                         if isinstance(model.get("from_scratch"), dict) else "?")
    sources = ((raw.get("data") or {}).get("sources") or []) if isinstance(raw.get("data"), dict) else []
    data = tuple(f"{s.get('path')}" + (f" ({s['format']})" if s.get("format", "auto") != "auto" else "")
                 for s in sources if isinstance(s, dict))
    problem = None
    try:
        load_recipe(path)
    except SteerError as err:
        problem = str(err).removeprefix(f"{path}: ")
    shown = path.relative_to(root) if root is not None else path
    return RecipeInfo(str(shown), str(raw.get("kind", "sft")), _purpose(text), str(name), data, problem)


def list_recipes(folder: str | Path | None = None, kind: str | None = None) -> list[RecipeInfo]:
    """The recipes under ``folder`` (default: the shipped ones), sorted by path, of one ``kind`` if given."""
    if kind is not None and kind not in RECIPES:
        raise UsageError(f"unknown recipe kind {kind!r} (known: {', '.join(RECIPES)})", field="--kind")
    root = Path(folder) if folder is not None else shipped_folder()
    if root is None:
        raise UsageError("no recipes folder: steer is not running from its source checkout; give one with --dir")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder", field="--dir")
    infos = [describe(p, root) for p in sorted(root.rglob("*.yaml")) + sorted(root.rglob("*.yml"))]
    return [i for i in infos if kind is None or i.kind == kind]


def init_recipe(kind: str, model: str, data: str, *, format: str = "auto", template: str = "steerlm",
                output_dir: str | None = None, reward: str | None = None) -> str:
    """A commented recipe of ``kind`` for ``model`` on ``data``: every key with its default and meaning,
    valid as written (``steer recipe check`` passes on it)."""
    if kind not in RECIPES:
        raise UsageError(f"unknown recipe kind {kind!r} (known: {', '.join(RECIPES)})", field="--kind")
    if reward is not None and kind != "rl":
        raise UsageError("--reward is for kind rl (the reward's judge)", field="--reward")
    raw: dict[str, Any] = {"kind": kind, "model": {"name_or_path": model}, "template": {"kind": template},
                           "data": {"sources": [{"path": data, "format": format}]},
                           "train": {"output_dir": output_dir or f"runs/{kind}"}}
    if kind == "rl":
        raw["rl"] = {"reward": reward or "rm:runs/rm"}
    recipe = validate_recipe(raw, kind=kind, origin="steer recipe init")
    values = recipe.model_dump(mode="json", by_alias=True)
    head = [f"# {WHAT[kind][0].upper()}{WHAT[kind][1:]}:", f"# {model} on {data}.",
            f"# Written by `steer recipe init` (steer {__version__}) with every key at its default; delete what you",
            "# do not change. Every key: docs/recipes.md. Check it: steer recipe check FILE",
            f"# Run it: steer train {kind} FILE"]
    return "\n".join(head + _emit(RECIPES[kind], values, 0)) + "\n"


def _comment(text: str, pad: str) -> list[str]:
    return [f"{pad}# {line}" for line in textwrap.wrap(text, 100 - len(pad))] if text else []


def _emit(model: type[BaseModel], values: dict, depth: int) -> list[str]:
    """YAML lines of a section's values, each key under its description as a comment."""
    pad, lines = "  " * depth, []
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = values.get(key)
        sub = _section_type(field.annotation)
        if depth == 0 and lines:
            lines.append("")
        about = field.description or (" ".join((sub.__doc__ or "").split()) if sub is not None and depth == 0 else "")
        lines += _comment(about, pad)
        if sub is not None and isinstance(value, dict):
            lines += [f"{pad}{key}:", *_emit(sub, value, depth + 1)]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key}:")
            for item in value:
                body = yaml.safe_dump(item, sort_keys=False, default_flow_style=False, allow_unicode=True).splitlines()
                lines += [f"{pad}  - {body[0]}", *(f"{pad}    {b}" for b in body[1:])]
        else:
            lines.append(f"{pad}{key}: {_flow(value)}")
    return lines
