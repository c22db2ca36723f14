"""``steer vectors train|show``: steering vectors (activation steering) for a model."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from steer import ui
from steer.cli.app import vectors_app
from steer.cli.options import FormatOpt, JsonOpt, ModelArg, ModelSchemaOpt, SplitOpt, TemplateOpt, quiet_libraries


@vectors_app.command("train")
def vectors_train(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", help="Rated answers (any labelled format) or preference pairs "
                                      "(chosen vs rejected; contrastive prompt pairs as canonical pairs).")],
    out: Annotated[str, typer.Option("--out", "-o", help="The vector file to write (safetensors).")],
    attr: Annotated[Optional[str], typer.Option("--attr", help="Contrast answers rated high vs low on this "
                                                "attribute (default: the data's pairs).")] = None,
    layers: Annotated[Optional[str], typer.Option("--layers", help="Layer indices (2,3; negative from the end) or "
                                                  "'all' (default: the middle layer).")] = None,
    pool: Annotated[str, typer.Option("--pool", help="mean (over the answer's tokens), first or last (its first or last token).")] = "mean",
    high: Annotated[Optional[int], typer.Option("--high", help="Ratings >= this are the positive side (default: the "
                                                "top quarter of the range).")] = None,
    low: Annotated[Optional[int], typer.Option("--low", help="Ratings <= this are the negative side (default: the "
                                               "bottom quarter).")] = None,
    normalize: Annotated[bool, typer.Option("--normalize", help="Scale each layer's vector to unit length.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many answers per side.", min=1)] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Answers per forward pass.", min=1)] = 8,
    fmt: FormatOpt = "auto",
    split: SplitOpt = "train",
    template: TemplateOpt = None,
    schema: ModelSchemaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute a steering vector: the mean difference of the model's residual stream between two groups of answers."""
    quiet_libraries()
    from steer.train.vectors import train

    def run(events):  # noqa: ANN001, ANN202
        return train(model, data, out, attribute=attr, layers=layers, pool=pool, high=high, low=low,
                     normalize=normalize, limit=limit, batch_size=batch_size, fmt=fmt, split_name=split,
                     template=template, schema=schema, events=events)

    if as_json:
        ui.print_json(run(None))
        return
    with ui.progress_bar("reading", unit="answers") as bar:
        result = run(bar)
    ui.vector_trained(result)


@vectors_app.command("show")
def vectors_show(
    path: Annotated[str, typer.Argument(help="A steering-vector file.")],
    as_json: JsonOpt = False,
) -> None:
    """What a vector file holds: its attribute, layers, norms, the model and data it came from."""
    from steer.vectors import describe

    ui.show(describe(path), as_json, ui.vector_info)
