"""``steer data inspect|stats|prepare|synth``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from steer import ui
from steer.cli.app import data_app
from steer.cli.options import FormatOpt, Group, JsonOpt, SetOpt, SkipOpt, SourceArg, SplitOpt, TokenizerOpt, option_group

LOADING: Group = {
    "split": (SplitOpt, "train"),
    "skip_invalid": (SkipOpt, False),
    "rejects": (Annotated[Optional[str], typer.Option("--rejects", help="Where skipped rows go (JSONL).")], None),
    "lang": (Annotated[list[str], typer.Option("--lang", help="Keep only these languages (OASST; repeatable).")], []),
}


def loading_options(fn: Any) -> Any:
    """Add ``--split --skip-invalid --rejects --lang``, passed on as ``loading``."""
    return option_group("loading", LOADING, lambda **kw: kw)(fn)


def _load(source: str, fmt: str, loading: dict) -> Any:
    from steer.data.loader import load

    rejects = loading["rejects"]
    if loading["skip_invalid"] and rejects is None:
        rejects = f"{source.rstrip('/').split('/')[-1].split('.')[0]}.rejects.jsonl"
    return load(source, format=fmt, split=loading["split"], skip_invalid=loading["skip_invalid"], rejects_path=rejects,
                langs=set(loading["lang"]) if loading["lang"] else None)


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
    from steer.attributes import get_schema
    from steer.data.encode import as_conversation, explain, guess_schema
    from steer.runs import load_tokenizer
    from steer.templates import for_tokenizer

    records, report = _load(source, fmt, loading)
    tok = load_tokenizer(tokenizer) if tokenizer else None
    sch = get_schema(schema) if schema else guess_schema(records[:1000])
    tmpl = for_tokenizer(template, sch, tok)
    ui.load_summary(report.to_json())
    ui.inspect_legend(tmpl.kind, sch.name if sch else None, tokenizer)
    for index, record in enumerate(records[:n]):
        ui.inspect_example(explain(as_conversation(record), tmpl, tok, max_length=max_length), index)


@data_app.command("stats")
@loading_options
def data_stats(
    source: SourceArg,
    fmt: FormatOpt = "auto",
    tokenizer: TokenizerOpt = None,
    as_json: JsonOpt = False,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of histograms and attribute-vs-length.")] = None,
    loading: Any = None,
) -> None:
    """Counts, attribute histograms, lengths, attribute-vs-length correlation, longer-response baseline."""
    from steer.data import stats as data_stats_lib
    from steer.runs import load_tokenizer

    records, report = _load(source, fmt, loading)
    result = data_stats_lib.compute(records, report, load_tokenizer(tokenizer) if tokenizer else None)
    if plot:
        data_stats_lib.plot(result, plot)
    result.pop("_series")
    if as_json:
        ui.print_json(result)
    else:
        ui.data_stats(result)
        if plot:
            ui.plain(f"plot: {plot}")


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
) -> None:
    """Write the synthetic steerable corpus (helpsteer attributes known by construction) and a tokenizer."""
    from steer.synth import write_all

    for name, path in write_all(Path(out), n, seed=seed, valid=valid, vocab_size=vocab if tokenizer else None,
                                prompts=prompts).items():
        ui.plain(f"{name}: {path}")
