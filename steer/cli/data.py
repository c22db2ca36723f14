"""``steer data inspect|stats|prepare|synth``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from steer import ui
from steer.cli.app import data_app
from steer.cli.options import FormatOpt, JsonOpt, SetOpt, SourceArg, TokenizerOpt, loading_options

@data_app.command("inspect")
@loading_options
def data_inspect(
    source: SourceArg,
    fmt: FormatOpt = "auto",
    template: Annotated[str, typer.Option("--template", help="auto, steerlm, chat or janus.")] = "auto",
    schema: Annotated[Optional[str], typer.Option("--schema", "-s", help="Attribute schema (guessed from the data).")] = None,
    tokenizer: TokenizerOpt = None,
    n: Annotated[int, typer.Option("-n", help="How many examples.")] = 3,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Truncate like training would.")] = None,
    loading: Any = None,
) -> None:
    """Render examples exactly as training sees them and show which tokens carry loss."""
    from steer.data.inspect import inspect

    shown = inspect(source, format=fmt, template=template, schema=schema, tokenizer=tokenizer, n=n,
                    max_length=max_length, **loading)
    ui.inspection(shown, tokenizer)


@data_app.command("stats")
@loading_options
def data_stats(
    source: SourceArg,
    fmt: FormatOpt = "auto",
    tokenizer: TokenizerOpt = None,
    as_json: JsonOpt = False,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of histograms and attribute-vs-length.")] = None,
    schema: Annotated[Optional[str], typer.Option("--schema", "-s", help="Schema the labels must fit (default: each "
                                                  "built-in attribute's range).")] = None,
    loading: Any = None,
) -> None:
    """Counts, attribute histograms, lengths, attribute-vs-length correlation, longer-response baseline."""
    from steer.data.stats import describe

    ui.show(describe(source, format=fmt, tokenizer=tokenizer, plot_path=plot, schema=schema, **loading), as_json,
            ui.data_stats)


@data_app.command("prepare")
def data_prepare(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML file.")],
    overrides: SetOpt = [],  # noqa: B006
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if a cached copy exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load, mix, render and tokenize a recipe's data into a cached Arrow dataset (training reuses it)."""
    from steer.config import load_recipe
    from steer.train import prepare

    cfg = load_recipe(recipe, overrides)
    with ui.progress_bar("preparing") as bar:
        result = prepare(cfg, progress=bar, force=force)
    if as_json:
        ui.print_json(result.to_json())
    else:
        ui.prepared(result)


@data_app.command("synth")
def data_synth(
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for train.jsonl, valid.jsonl and tokenizer/.")],
    n: Annotated[int, typer.Option("-n", "--rows", help="Training rows.", min=1)] = 6000,
    valid: Annotated[int, typer.Option("--valid", help="Validation rows (more rows from the same world).", min=0)] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same corpus.")] = 0,
    tokenizer: Annotated[bool, typer.Option("--tokenizer/--no-tokenizer", help="Also train a BPE tokenizer on it.")] = True,
    vocab: Annotated[int, typer.Option("--vocab", help="Tokenizer vocabulary size.", min=300)] = 1024,
    prompts: Annotated[int, typer.Option("--prompts", help="Held-out questions for `steer eval steerability` (prompts.jsonl).", min=0)] = 40,
    rl_prompts: Annotated[int, typer.Option("--rl-prompts", help="Questions from another stream for `steer train rl`'s "
                                            "rollouts (rl-prompts.jsonl).", min=0)] = 0,
    vision: Annotated[int, typer.Option("--vision", help="Rows of the visual world: PNGs of shapes with known facts and "
                                        "answers labelled with visual_faithfulness and verbosity (vision/train.jsonl, "
                                        "a fifth as many in vision/valid.jsonl, half as many faithful-over-contradicting "
                                        "pairs in vision/pairs.jsonl, a tenth as many held-out prompts in "
                                        "vision/prompts.jsonl, images in vision/images).", min=0)] = 0,
    pairs: Annotated[int, typer.Option("--pairs", help="Preference pairs of each kind (pairs-correct.jsonl: right "
                                       "facts chosen; pairs-longer.jsonl: the length-only control), and a twentieth as many "
                                       "held-out (pairs-KIND-valid.jsonl).", min=0)] = 0,
    safety: Annotated[int, typer.Option("--safety", help="PKU-SafeRLHF-shaped rows where safety is learnable from the "
                                        "text (pku-safety.jsonl, a fifth as many in pku-safety-valid.jsonl), and "
                                        "BeaverTails-shaped single answers with harm categories (beavertails-safety"
                                        ".jsonl): for `steer train cost`.", min=0)] = 0,
) -> None:
    """Write the synthetic steerable corpus (helpsteer attributes known by construction) and a tokenizer."""
    from steer.synth import write_all
    from steer.synth_pairs import KINDS, write_pairs

    written = write_all(Path(out), n, seed=seed, valid=valid, vocab_size=vocab if tokenizer else None, prompts=prompts)
    for kind in KINDS if pairs else ():
        written[f"pairs ({kind})"] = write_pairs(Path(out) / f"pairs-{kind}.jsonl", pairs, seed=seed, kind=kind)
        written[f"validation pairs ({kind})"] = write_pairs(Path(out) / f"pairs-{kind}-valid.jsonl", max(1, pairs // 20),
                                                            seed=seed, kind=kind, stream=1)
    if vision:
        from steer import synth_vision

        written["visual rows"] = synth_vision.write(Path(out) / "vision", vision, seed=seed)
        written["validation visual rows"] = synth_vision.write(Path(out) / "vision", max(1, vision // 5), seed=seed + 1,
                                                               name="valid.jsonl")
        written["visual pairs"] = synth_vision.write_pairs(Path(out) / "vision", max(1, vision // 2), seed=seed + 2)
        written["visual prompts"] = synth_vision.write_prompts(Path(out) / "vision", max(1, vision // 10), seed=seed + 3)
    if rl_prompts:
        from steer.synth import write_prompts

        written["rollout prompts"] = write_prompts(Path(out) / "rl-prompts.jsonl", rl_prompts, seed=seed, stream=2)
    if safety:
        from steer import synth_safety

        written["safety rows"] = synth_safety.write(Path(out) / "pku-safety.jsonl", safety, seed=seed)
        written["validation safety rows"] = synth_safety.write(Path(out) / "pku-safety-valid.jsonl", max(1, safety // 5),
                                                               seed=seed + 1)
        written["single-answer safety rows"] = synth_safety.write(Path(out) / "beavertails-safety.jsonl", safety,
                                                                  seed=seed, form="beavertails")
        written["validation single-answer rows"] = synth_safety.write(
            Path(out) / "beavertails-safety-valid.jsonl", max(1, safety // 5), seed=seed + 1, form="beavertails")
    for name, path in written.items():
        ui.plain(f"{name}: {path}")


@data_app.command("pairs")
@loading_options
def data_pairs(
    source: SourceArg,
    out: Annotated[str, typer.Option("--out", "-o", help="Canonical pair JSONL to write (for `steer train dpo`).")],
    by: Annotated[str, typer.Option("--by", help="The score: an attribute, or NAME=WEIGHT,... summed "
                                    "(HelpSteer2's reward weights: helpfulness=0.65,correctness=0.8,...).")],
    fmt: FormatOpt = "auto",
    mode: Annotated[str, typer.Option("--mode", help="best-worst (one pair per prompt) or all (every two answers).")] = "best-worst",
    min_margin: Annotated[float, typer.Option("--min-margin", help="Keep a pair only when its scores differ by more.", min=0)] = 0.0,
    judge: Annotated[Optional[str], typer.Option("--judge", help="Score the answers with a judge (length, fkgl, oracle, "
                                                 "apm:PATH) instead of their labels.")] = None,
    axis: Annotated[Optional[str], typer.Option("--axis", help="The pairs' axis (default: the --by attribute, or weighted).")] = None,
    as_json: JsonOpt = False,
    loading: Any = None,
) -> None:
    """Preference pairs from rated answers to shared prompts (HelpSteer rows, OASST replies, labelled or judged
    `steer batch --samples` outputs): best vs worst by an attribute or a weighted sum."""
    from steer.data.pairs import run
    from steer.evaluate.judges import make_judge

    scorer = make_judge(judge)[0] if judge else None
    report, loaded = run(source, out, by, mode=mode, min_margin=min_margin, judge=scorer, axis=axis, format=fmt, **loading)
    ui.show({**report.to_json(), "out": out, "load": loaded.to_json()}, as_json, ui.pairs_derived)
