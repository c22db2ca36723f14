"""``steer eval steerability|values|length-bias``: each evaluation computes its own result; this renders it."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from steer import ui
from steer.cli.app import eval_app
from steer.cli.options import (BatchOpt, EngineOpt, FormatOpt, SplitOpt, JsonOpt, MaxNewOpt, ModelArg, ModelSchemaOpt, TemperatureOpt,
                               TemplateOpt, quiet_libraries)


def _with_bar(as_json: bool, run: Any) -> Any:
    """Run ``run(events)`` with a progress bar over the answers (none for --json)."""
    if as_json:
        return run(None)
    with ui.progress_bar("generate", unit="answers") as bar:
        return run(bar)


@eval_app.command("steerability")
def eval_steerability(
    model: ModelArg,
    prompts: Annotated[str, typer.Option("--prompts", help="JSONL rows with 'prompt' or 'messages' (steer data synth writes prompts.jsonl).")],
    attrs: Annotated[list[str], typer.Option("--attr", help="Attribute to sweep (repeatable; default: those the judge measures).")] = [],  # noqa: B006
    judge: Annotated[str, typer.Option("--judge", help="length (verbosity), fkgl (complexity), oracle (synthetic prompts) or apm:PATH; several joined by commas (length,fkgl).")] = "oracle",
    method: Annotated[list[str], typer.Option("--method", "-m", help="How each level is asked for (repeatable or comma-joined; several compared in one run): attributes (the model's conditioning), prompt (an instruction per level as the system message; any chat model), values (the instructions as value statements), vector (--vector steering vectors).")] = [],  # noqa: B006
    by: Annotated[Optional[str], typer.Option("--by", help="Older spelling of one method: attributes, or instructions (= --method prompt).")] = None,
    instructions: Annotated[Optional[str], typer.Option("--instructions", help="JSON {attribute: {level: instruction}} for --method prompt|values (default: steer's built-in table for verbosity and complexity).")] = None,
    vector: Annotated[list[str], typer.Option("--vector", help="ATTRIBUTE=FILE: the steering vector --method vector steers that attribute with (repeatable).")] = [],  # noqa: B006
    vector_scale: Annotated[float, typer.Option("--vector-scale", help="--method vector: the coefficient per level is this times the level's distance from the vector's midpoint, over the distance between its two sides.")] = 1.0,
    grid: Annotated[Optional[str], typer.Option("--grid", help="A,B: also sweep two attributes together over their grid, for every method (does raising one move the other?).")] = None,
    max_new_tokens: MaxNewOpt = 128,
    batch_size: BatchOpt = 64,
    engine: EngineOpt = "hf",
    template: TemplateOpt = None,
    schema: ModelSchemaOpt = None,
    as_json: JsonOpt = False,
    plot_path: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of requested vs realised.")] = None,
    outputs: Annotated[Optional[str], typer.Option("--outputs", help="Write every answer and its judgement as JSONL (for eval length-bias --compare).")] = None,
) -> None:
    """Sweep attributes over their range (others at defaults) by one or more steering methods, generate, and
    judge what was realised: Spearman, calibration, anti-steerable prompts, side effects, quality."""
    quiet_libraries()
    from steer.evaluate.steerability import evaluate

    result = _with_bar(as_json, lambda events: evaluate(
        model, prompts, judge=judge, attributes=attrs, max_new_tokens=max_new_tokens, batch_size=batch_size,
        engine=engine, template=template, schema=schema, by=by, methods=method, instructions=instructions,
        vectors=vector, vector_scale=vector_scale, pair=grid.split(",") if grid else (), plot_path=plot_path,
        outputs=outputs, events=events))
    if as_json:
        ui.print_json(result)
    else:
        if len(result["methods"]) == 1:
            ui.steerability(result["attributes"])
            ui.side_effects(result["attributes"])
        else:
            ui.methods_table(result["by_method"])
        if result["grid"]:
            ui.grid_table(result["grid"])
        if result["plot"]:
            ui.plain(f"plot: {result['plot']}")
        if result["outputs"]:
            ui.plain(f"outputs: {result['outputs']}")


@eval_app.command("pairs")
def eval_pairs(
    model: Annotated[str, typer.Argument(help="A reward or cost model (`steer train rm|cost` run directory).")],
    pairs: Annotated[str, typer.Option("--pairs", help="Preference pairs: any pair source (file, folder or hub id).")],
    fmt: FormatOpt = "auto",
    split: SplitOpt = "train",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Answers scored per forward pass.", min=1)] = 16,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of score margin against length difference.")] = None,
    axis: Annotated[list[str], typer.Option("--axis", help="Pair axes to score (repeatable; default: those the model "
                                            "was trained on).")] = [],  # noqa: B006
    as_json: JsonOpt = False,
) -> None:
    """Pairwise accuracy of a reward or cost model (RewardBench-style): overall, per axis/source/category,
    against "longer wins"; a cost model's sign against the safety labels, per severity."""
    quiet_libraries()
    from steer.evaluate.pairs import evaluate

    ui.show(evaluate(model, pairs, fmt=fmt, split=split, batch_size=batch_size, plot_path=plot, axes=axis or None),
            as_json, ui.pair_accuracy)


@eval_app.command("curves")
def eval_curves(
    runs: Annotated[list[str], typer.Argument(help="Run directories (or their checkpoints; a run still training too).")],
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="A logged metric (repeatable; default: reward, "
                                              "cost, lambda).")] = [],  # noqa: B006
    window: Annotated[int, typer.Option("--window", help="Logged steps the end value is the mean of.", min=1)] = 10,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG: a panel per metric, a line per run.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where each run's logged metrics started and ended (an RL run's reward, cost and lambda; any loss)."""
    from steer.evaluate.curves import evaluate

    ui.show(evaluate(runs, metric or ["reward", "cost", "lambda"], window=window, plot_path=plot), as_json, ui.curves)


@eval_app.command("values")
def eval_values(
    model: ModelArg,
    prompts: Annotated[str, typer.Option("--prompts", help="JSONL rows with 'prompt' or 'messages'.")],
    values: Annotated[str, typer.Option("--values", help="JSONL value statements, one per row ('value', 'system' or 'text').")],
    judge: Annotated[str, typer.Option("--judge", help="apm:PATH (an attribute's prediction) or rm:PATH (a reward model).")],
    score_attr: Annotated[Optional[str], typer.Option("--score-attr", help="The APM attribute that scores (default helpfulness).")] = None,
    temperature: TemperatureOpt = 0.0,
    max_new_tokens: MaxNewOpt = 256,
    batch_size: BatchOpt = 32,
    engine: EngineOpt = "hf",
    template: TemplateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Janus-style matching: answer under each value statement, then judge each answer under every statement."""
    quiet_libraries()
    from steer.evaluate.values import evaluate

    result = _with_bar(as_json, lambda events: evaluate(
        model, prompts, values, judge=judge, score_attr=score_attr, temperature=temperature,
        max_new_tokens=max_new_tokens, batch_size=batch_size, engine=engine, template=template, events=events))
    ui.show(result, as_json, ui.value_matching)


@eval_app.command("length-bias")
def eval_length_bias(
    data: Annotated[str, typer.Argument(help="A dataset (any supported format) or a JSONL of outputs (steer batch / label).")],
    fmt: Annotated[str, typer.Option("--format", help="Dataset format (auto-detected by default).")] = "auto",
    score: Annotated[Optional[str], typer.Option("--score", help="Numeric column (dotted path) of a JSONL of outputs to use as the score.")] = None,
    apm: Annotated[Optional[str], typer.Option("--apm", help="Score responses with an attribute prediction model, "
                                               "reward model or cost model (steer train apm|rm|cost).")] = None,
    compare: Annotated[Optional[str], typer.Option("--compare", help="A second JSONL of outputs on the same prompts (needs --score): gain and NRG.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="Count lengths in this tokenizer's tokens (default: words).")] = None,
    as_json: JsonOpt = False,
    plot_path: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of score against length.")] = None,
) -> None:
    """Is length doing the work? Score-length correlation, non-length reward gain, longer-preferred accuracy."""
    from steer.evaluate.length_bias import evaluate

    if apm or tokenizer:
        quiet_libraries()
    result = evaluate(data, fmt=fmt, score=score, apm=apm, compare=compare, tokenizer=tokenizer, plot_path=plot_path)
    ui.show(result, as_json, ui.length_bias)
