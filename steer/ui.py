"""Every rich Console, Table and Progress of steer lives here; library code never prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One red line on stderr."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)


def warn(message: str) -> None:
    """One yellow line on stderr."""
    err_console.print(f"[yellow]warning:[/] {message}")


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def key_values(data: Mapping[str, Any], title: str | None = None) -> None:
    """A two-column table (plain enough to paste into a bug report)."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        table.add_row(str(key), "-" if value is None else str(value))
    console.print(table)


def schema_table(schema: Any, presets: Mapping[str, tuple[str, Mapping[str, int]]]) -> None:
    """Attributes of a schema and the presets that apply to it."""
    table = Table(title=f"schema {schema.name}: {schema.description}", title_justify="left")
    for col in ("attribute", "range", "default", "description"):
        table.add_column(col)
    for a in schema.attributes:
        table.add_row(a.name, f"{a.min}-{a.max}", str(a.default), a.description)
    console.print(table)
    if presets:
        ptable = Table(title="presets", title_justify="left")
        for col in ("preset", "sets", "description"):
            ptable.add_column(col)
        for name, (desc, values) in presets.items():
            ptable.add_row(name, ",".join(f"{k}:{v}" for k, v in values.items()) or "(defaults)", desc)
        console.print(ptable)


def plain(text: str) -> None:
    """Text to stdout without markup interpretation."""
    console.print(text, markup=False, highlight=False)
