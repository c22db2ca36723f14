"""The terminal: the two consoles, one-line errors, plain and JSON output, streamed answers."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)


err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One red line on stderr."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else (a NaN or infinity, which
    JSON has no word for, is written as null)."""
    sys.stdout.write(json.dumps(_finite(data), ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def show(data: Any, as_json: bool, render: Any) -> None:
    """A command's result: one JSON object with ``--json``, else what ``render`` draws of it."""
    if as_json:
        print_json(data)
    else:
        render(data)


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


def stream(piece: str) -> None:
    """Write streamed model text as it arrives (no markup interpretation)."""
    console.file.write(piece)
    console.file.flush()


def stream_answer(pieces: Iterable[Any]) -> None:
    """Show a streamed answer as it arrives, then its dim line; on Ctrl-C or an error the line is
    ended and the exception passed on."""
    final = None
    try:
        for piece in pieces:
            if isinstance(piece, str):
                stream(piece)
            else:
                final = piece
    except BaseException:
        stream_end(None)
        raise
    stream_end(final)


def stream_end(response: Any) -> None:
    """Finish a streamed answer with a dim line: tokens, seconds, tokens/s, why it stopped."""
    console.file.write("\n")
    if response is not None:
        err_console.print(f"[dim]{response.completion_tokens} tokens, {response.seconds:.2f} s, "
                          f"{response.tokens_per_s:.1f} tokens/s, {response.finish_reason}[/]")


def ask(prompt: str) -> str:
    """Read one line from the user (``input`` so pipes and terminals both work)."""
    return input(prompt)


def dim(message: str) -> None:
    err_console.print(f"[dim]{message}[/]", highlight=False)


def serving(name: str, host: str, port: int, schema: Any) -> None:
    """The line ``steer serve`` shows before the server's own log."""
    steering = ", ".join(schema.names) if schema is not None else "values"
    dim(f"serving {name} on http://{host}:{port}/v1 (steering: {steering})")


def vllm_plan(command: str, stop: tuple[str, ...]) -> None:
    """The ``vllm serve`` command and the stop strings requests to it need."""
    plain(command)
    if stop:
        dim(f"this template's stop strings: {list(stop)} (send them as 'stop' in requests to vLLM)")


def chat_banner(model: str, steering: str) -> None:
    err_console.print(f"[bold]steer chat[/] {model}\n[dim]steering: {steering}\n"
                      "/help for commands, Ctrl-C stops an answer, /quit or Ctrl-D leaves[/]", highlight=False)


__all__ = ['console', 'err_console', 'error', 'print_json', 'show', 'key_values', 'schema_table', 'plain', 'stream_answer', 'stream', 'stream_end', 'ask', 'dim', 'serving', 'vllm_plan', 'chat_banner']
