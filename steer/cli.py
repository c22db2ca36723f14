"""The ``steer`` command line: thin adapters over the library.

Nothing heavy is imported at module level (no torch, transformers, datasets or vllm), so
``steer --help`` stays instant; each command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from steer import __version__, ui
from steer.errors import SteerError

app = typer.Typer(
    name="steer",
    help="Train and run language models you can steer by attributes and value statements.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
recipe_app = typer.Typer(help="Inspect and validate recipes.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

AttrOpt = Annotated[list[str], typer.Option("--attr", "-a", help="Attribute value NAME=VALUE (repeatable).")]
AttrsOpt = Annotated[Optional[str], typer.Option("--attrs", help='Attribute string "name:v,name:v".')]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", "-p", help="A named preset (see `steer attrs`).")]
SchemaOpt = Annotated[str, typer.Option("--schema", "-s", help="Attribute schema: helpsteer, oasst, steerlm, safety.")]
SetOpt = Annotated[list[str], typer.Option("--set", help="Override a recipe key: a.b.c=value (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


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


@app.command()
def env(as_json: JsonOpt = False) -> None:
    """Versions, device and CUDA facts (paste this into bug reports)."""
    from steer.envinfo import collect

    info = collect()
    if as_json:
        ui.print_json(info)
    else:
        ui.key_values(info)


@app.command()
def attrs(
    schema: SchemaOpt = "helpsteer",
    attr: AttrOpt = [],  # noqa: B006 - typer reads the default
    attrs_: AttrsOpt = None,
    preset: PresetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a schema and its presets, or resolve steering values into the attribute string."""
    from steer.attributes import get_schema, parse_assignments, presets_for

    sch = get_schema(schema)
    if not (attr or attrs_ or preset):
        if as_json:
            ui.print_json({**sch.to_dict(), "presets": {k: v[1] for k, v in presets_for(sch).items()}})
        else:
            ui.schema_table(sch, presets_for(sch))
        return
    values = sch.resolve(preset=preset, values=parse_assignments([*attr, *([attrs_] if attrs_ else [])], sch))
    if as_json:
        ui.print_json({"schema": sch.name, "attributes": values, "string": sch.render(values)})
    else:
        ui.plain(sch.render(values))


@recipe_app.command("check")
def recipe_check(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML file.")],
    overrides: SetOpt = [],  # noqa: B006
    kind: Annotated[str, typer.Option(help="Recipe kind.")] = "sft",
) -> None:
    """Validate a recipe (with overrides) and print it fully resolved."""
    from steer.config import dump_recipe, load_recipe

    ui.plain(dump_recipe(load_recipe(recipe, overrides, kind=kind)).rstrip())


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


if __name__ == "__main__":
    main()
