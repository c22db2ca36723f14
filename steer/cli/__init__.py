"""The ``steer`` command line: thin adapters over the library, one module per command group.

Nothing heavy is imported at module level (no torch, transformers, datasets or vllm), so
``steer --help`` stays instant; each command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from steer import __version__, ui
from steer.cli import info, models, data, generate, train, vectors, serve, evaluate  # noqa: F401,I001 - each registers its commands, in this order
from steer.cli.app import app
from steer.errors import SteerError


def _version(value: bool) -> None:
    if value:
        ui.plain(f"steer {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Train and run language models you can steer by attributes and value statements."""


def tidy_help(command: Any) -> Any:
    """Plain metavars in ``--help``: ``MODEL`` and ``[PROMPT]`` for arguments, ``INT``/``FLOAT``/``TEXT``
    for options, nothing for flags, instead of the labels Typer prints (``{model}``, ``<int>``,
    ``<list[str]>``, ``<bool>``)."""
    from typer._click import Context

    for param in getattr(command, "params", []):
        if param.param_type_name == "argument":
            name = param.name.upper()
            param.metavar = name
            param.display_type_rich = lambda ctx: None  # the name says it; no "<str>" column
            param._usage_display_name = (lambda n=name: n) if param.required else (lambda n=name: f"[{n}]")
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            label = param.display_type(Context(command)).strip("<>").removeprefix("list[").rstrip("]")
            label = label.removesuffix(" range")
            param.metavar = "TEXT" if label == "str" else label.upper()
    make_help = command.get_help_option

    def help_option(ctx: Any) -> Any:  # --help is made per context: a flag, no metavar
        option = make_help(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)
    return command


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: SteerErrors become one red line and an exit code."""
    from typer.main import get_command

    try:
        tidy_help(get_command(app)).main(args=argv, prog_name="steer")
    except SteerError as err:
        if os.environ.get("STEER_DEBUG") == "1":
            raise
        ui.error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        ui.error("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
