"""The ``steer`` command line: thin adapters over the library, one module per command group.

Nothing heavy is imported at module level (no torch, transformers, datasets or vllm), so
``steer --help`` stays instant; each command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from steer import __version__, ui
from steer.cli import info, data, generate, train, serve, evaluate  # noqa: F401,I001 - each registers its commands, in this order
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: SteerErrors become one red line and an exit code."""
    try:
        app(args=argv, prog_name="steer")
    except SteerError as err:
        if os.environ.get("STEER_DEBUG") == "1":
            raise
        ui.error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        ui.error("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
