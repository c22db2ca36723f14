"""The package's shape: no import circle (function-level imports count), and nothing heavy on import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "steer"
HEAVY = ("torch", "transformers", "datasets", "vllm", "peft")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (a submodule importing its own
    package is left out: that is how a package exposes its parts, not a dependency)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "steer.engines.base" in graph["steer.engines.hf"]  # the walk sees imports (a sanity check)
    assert "steer.runs" in graph["steer.engines.hf"]  # ... function-level ones included
    assert cycles(graph) == []


def test_lower_layers_never_import_upper_ones():
    """The core (engines, runs, steering, templates, attributes, events, tokens, apm, config, outputs, models,
    errors, images, vision) imports no job and no CLI module."""
    upper = ("steer.cli", "steer.generate", "steer.serve", "steer.evaluate", "steer.train", "steer.data",
             "steer.label", "steer.quickstart", "steer.api", "steer.recipes")
    core = ("steer.callables", "steer.engines", "steer.runs", "steer.steering", "steer.templates", "steer.attributes", "steer.events",
            "steer.tokens", "steer.apm", "steer.config", "steer.outputs", "steer.models", "steer.errors", "steer.images",
            "steer.vision")
    lower = [m for m in import_graph() if m.startswith(core)]
    graph = import_graph()
    for module in lower:
        assert not [t for t in graph[module] if t.startswith(upper)], module


def test_importing_steer_and_its_cli_stays_light():
    """``import steer`` and ``import steer.cli`` pull in none of the heavy libraries (``steer --help`` is instant)."""
    code = (f"import json, sys; heavy = {HEAVY!r}; import steer; a = [m for m in heavy if m in sys.modules]; "
            "import steer.cli; print(json.dumps([a, [m for m in heavy if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[], []]
    engine = subprocess.run([sys.executable, "-c", "import sys, steer.engines.hf; print('torch' in sys.modules)"],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
    assert engine.stdout.strip() == "False"  # an engine imports torch when it loads a model, not before
