"""The ``steer`` command line: thin adapters over the library.

Nothing heavy is imported at module level (no torch, transformers, datasets or vllm), so
``steer --help`` stays instant; each command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from steer import __version__, ui
from steer.errors import SteerError, UsageError

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
data_app = typer.Typer(help="Load, check, inspect and summarise datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

AttrOpt = Annotated[list[str], typer.Option("--attr", "-a", help="Attribute value NAME=VALUE (repeatable).")]
AttrsOpt = Annotated[Optional[str], typer.Option("--attrs", help='Attribute string "name:v,name:v".')]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", "-p", help="A named preset (see `steer attrs`).")]
SchemaOpt = Annotated[str, typer.Option("--schema", "-s", help="Attribute schema: helpsteer, oasst, steerlm, safety.")]
SetOpt = Annotated[list[str], typer.Option("--set", help="Override a recipe key: a.b.c=value (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
SourceArg = Annotated[str, typer.Argument(help="A data file (jsonl/json/parquet/csv, .gz/.xz), a dataset folder or a hub id.")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Dataset format (auto-detected from the columns).")]
SplitOpt = Annotated[str, typer.Option("--split", help="Split, for hub datasets and dataset folders.")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="Skip malformed rows (counted, written to --rejects).")]
RejectsOpt = Annotated[Optional[str], typer.Option("--rejects", help="Where skipped rows go (JSONL).")]
LangOpt = Annotated[list[str], typer.Option("--lang", help="Keep only these languages (OASST; repeatable).")]
TokenizerOpt = Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="Tokenizer directory or hub id.")]


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
    kind: Annotated[Optional[str], typer.Option(help="Recipe kind: sft or apm (default: the recipe's own kind key).")] = None,
) -> None:
    """Validate a recipe (with overrides) and print it fully resolved."""
    from steer.config import dump_recipe, load_recipe

    ui.plain(dump_recipe(load_recipe(recipe, overrides, kind=kind)).rstrip())


def _load(source: str, fmt: str, split: str, skip_invalid: bool, rejects: str | None, lang: list[str]):
    from steer.data.loader import load

    if skip_invalid and rejects is None:
        rejects = f"{source.rstrip('/').split('/')[-1].split('.')[0]}.rejects.jsonl"
    return load(source, format=fmt, split=split, skip_invalid=skip_invalid, rejects_path=rejects,
                langs=set(lang) if lang else None)


@data_app.command("inspect")
def data_inspect(
    source: SourceArg,
    fmt: FormatOpt = "auto",
    template: Annotated[str, typer.Option("--template", help="auto, steerlm, chat or janus.")] = "auto",
    schema: Annotated[Optional[str], typer.Option("--schema", "-s", help="Attribute schema (guessed from the data).")] = None,
    tokenizer: TokenizerOpt = None,
    n: Annotated[int, typer.Option("-n", help="How many examples.")] = 3,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Truncate like training would.")] = None,
    split: SplitOpt = "train",
    skip_invalid: SkipOpt = False,
    rejects: RejectsOpt = None,
    lang: LangOpt = [],  # noqa: B006
) -> None:
    """Render examples exactly as training sees them and show which tokens carry loss."""
    from steer.attributes import get_schema
    from steer.data.encode import as_conversation, explain, guess_schema, load_tokenizer, template_for

    records, report = _load(source, fmt, split, skip_invalid, rejects, lang)
    tok = load_tokenizer(tokenizer) if tokenizer else None
    sch = get_schema(schema) if schema else guess_schema(records[:1000])
    tmpl = template_for(template, sch, tok)
    ui.load_summary(report.to_json())
    ui.inspect_legend(tmpl.kind, sch.name if sch else None, tokenizer)
    for index, record in enumerate(records[:n]):
        ui.inspect_example(explain(as_conversation(record), tmpl, tok, max_length=max_length), index)


@data_app.command("stats")
def data_stats(
    source: SourceArg,
    fmt: FormatOpt = "auto",
    tokenizer: TokenizerOpt = None,
    as_json: JsonOpt = False,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of histograms and attribute-vs-length.")] = None,
    split: SplitOpt = "train",
    skip_invalid: SkipOpt = False,
    rejects: RejectsOpt = None,
    lang: LangOpt = [],  # noqa: B006
) -> None:
    """Counts, attribute histograms, lengths, attribute-vs-length correlation, longer-response baseline."""
    from steer.data import stats as data_stats_lib
    from steer.data.encode import load_tokenizer

    records, report = _load(source, fmt, split, skip_invalid, rejects, lang)
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
    from steer.data.prepare import prepare

    cfg = load_recipe(recipe, overrides)
    with ui.progress_bar("preparing") as bar:
        result = prepare(cfg, progress=bar.update, force=force)
    if as_json:
        ui.print_json(result.to_json())
    else:
        ui.prepared(result.to_json())


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
    from steer.synth import write_corpus, write_dataset, write_prompts

    if tokenizer:
        paths = write_dataset(Path(out), n, seed=seed, valid=valid, vocab_size=vocab)
    else:
        paths = write_corpus(Path(out), n, seed=seed, valid=valid)
    if prompts:
        paths["prompts"] = write_prompts(Path(out) / "prompts.jsonl", prompts, seed=seed)
    for name, path in paths.items():
        ui.plain(f"{name}: {path}")


ModelArg = Annotated[str, typer.Argument(help="A steer run directory, an exported model, or any HF model (folder or hub id).")]
EngineOpt = Annotated[str, typer.Option("--engine", help="hf (transformers) or vllm.")]
TemplateOpt = Annotated[Optional[str], typer.Option("--template", help="Override the steering format: steerlm, chat or janus.")]
ModelSchemaOpt = Annotated[Optional[str], typer.Option("--schema", help="Attribute schema (default: the model's own).")]
SystemOpt = Annotated[Optional[str], typer.Option("--system", help="System message.")]
ValueOpt = Annotated[list[str], typer.Option("--value", help="A value statement, Janus-style (repeatable).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="0 is greedy.")]
TopPOpt = Annotated[float, typer.Option("--top-p")]
TopKOpt = Annotated[int, typer.Option("--top-k", help="0 turns it off.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed")]
StopOpt = Annotated[list[str], typer.Option("--stop", help="Extra stop string (repeatable).")]


def _steering(template, attr: list[str], attrs_: str | None, preset: str | None, values: list[str], system: str | None):
    from steer.attributes import parse_assignments
    from steer.generate.engine import Steering, preset_or_error

    items = [*attr, *([attrs_] if attrs_ else [])]
    schema = template.schema
    if schema is None and (items or preset):
        raise UsageError("this model has no attribute schema; steer it with --value or --system")
    parsed = parse_assignments(items, schema) if schema is not None else {}
    return Steering(parsed, preset_or_error(preset, schema), list(values), system)


@app.command()
def generate(
    model: ModelArg,
    prompt: Annotated[Optional[str], typer.Argument(help="The user prompt; '-' reads it from stdin.")] = None,
    attr: AttrOpt = [],  # noqa: B006
    attrs_: AttrsOpt = None,
    preset: PresetOpt = None,
    system: SystemOpt = None,
    value: ValueOpt = [],  # noqa: B006
    temperature: TemperatureOpt = 0.7,
    top_p: TopPOpt = 1.0,
    top_k: TopKOpt = 0,
    max_new_tokens: MaxNewOpt = 256,
    seed: SeedOpt = None,
    stop: StopOpt = [],  # noqa: B006
    as_json: JsonOpt = False,
    engine: EngineOpt = "hf",
    template: TemplateOpt = None,
    schema: ModelSchemaOpt = None,
) -> None:
    """Generate one steered answer (streamed to the terminal; --json for one JSON object)."""
    if prompt is None or prompt == "-":
        if prompt is None and sys.stdin.isatty():
            raise UsageError("give a prompt, or '-' to read it from stdin")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    _quiet_libraries()
    from steer.generate.engine import Response, Sampling, load_engine, steering_prompt

    sampling = Sampling(temperature, top_p, top_k, max_new_tokens, seed, tuple(stop))
    eng = load_engine(model, engine=engine, template=template, schema=schema)
    steering = _steering(eng.template, attr, attrs_, preset, value, system)
    messages = [{"role": "user", "content": prompt}]
    text = steering_prompt(eng.template, messages, steering)
    attributes = steering.resolved(eng.template.schema)
    if as_json:
        response = eng.generate([text], sampling)[0]
        ui.print_json({"model": model, "prompt": prompt, "attributes": attributes, "values": steering.values,
                       "system": system, **response.to_json()})
        return
    final = None
    for piece in eng.stream(text, sampling):
        if isinstance(piece, Response):
            final = piece
        else:
            ui.stream(piece)
    ui.stream_end(final)


@app.command()
def batch(
    model: ModelArg,
    input_: Annotated[str, typer.Option("--input", "-i", help="JSONL rows: id, prompt or messages, optional attributes/preset/system/values.")],
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL out (appended; re-running resumes).")],
    grid: Annotated[list[str], typer.Option("--grid", help="Sweep an attribute: name=v1,v2,... (repeatable; cross product).")] = [],  # noqa: B006
    attr: AttrOpt = [],  # noqa: B006
    attrs_: AttrsOpt = None,
    preset: PresetOpt = None,
    system: SystemOpt = None,
    value: ValueOpt = [],  # noqa: B006
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per engine call.", min=1)] = 8,
    temperature: TemperatureOpt = 0.7,
    top_p: TopPOpt = 1.0,
    top_k: TopKOpt = 0,
    max_new_tokens: MaxNewOpt = 256,
    seed: SeedOpt = None,
    stop: StopOpt = [],  # noqa: B006
    engine: EngineOpt = "hf",
    template: TemplateOpt = None,
    schema: ModelSchemaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate for every row of a JSONL file (optionally over an attribute grid); streamed and resumable.

    --attr/--preset/--system/--value are defaults: a row's own attributes, preset, system and values win.
    """
    _quiet_libraries()
    from steer.generate.batch import errors_path, iter_jobs, parse_grid, run_batch
    from steer.generate.engine import Sampling, load_engine

    sampling = Sampling(temperature, top_p, top_k, max_new_tokens, seed, tuple(stop))
    eng = load_engine(model, engine=engine, template=template, schema=schema)
    defaults = _steering(eng.template, attr, attrs_, preset, value, system)
    sweep = parse_grid(grid, eng.template.schema)
    points = 1
    for values in sweep.values():
        points *= len(values)
    if not Path(input_).is_file():
        raise UsageError(f"input not found: {input_}")
    with open(input_, "rb") as handle:  # a cheap count for the progress bar; rows are streamed later
        total = sum(1 for line in handle if line.strip()) * points
    with ui.progress_bar("generating", unit="rows") as bar:
        report = run_batch(eng, iter_jobs(input_, eng.template.schema, sweep, defaults), output, sampling,
                           batch_size=batch_size, total=total, progress=bar.update)
    if as_json:
        ui.print_json({**report.to_json(), "output": output})
    else:
        ui.plain(f"{report.written} rows written, {report.skipped} already done, {report.errors} bad rows"
                 f"{' (see ' + str(errors_path(Path(output))) + ')' if report.errors else ''}; {report.total} in all: {output}")


@app.command()
def label(
    apm: Annotated[str, typer.Argument(help="An attribute prediction model (a `steer train apm` run directory).")],
    input_: Annotated[str, typer.Option("--input", "-i", help="Any supported dataset: a file, a dataset folder or a hub id.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Canonical JSONL out (appended; re-running resumes).")],
    fmt: FormatOpt = "auto",
    split: SplitOpt = "train",
    raw: Annotated[bool, typer.Option("--float", help="Keep the raw predicted scores (default: clipped and rounded).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Turns scored per forward pass.", min=1)] = 32,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Annotate every assistant turn of a dataset with predicted attributes: unlabelled data to SteerLM data."""
    _quiet_libraries()
    from steer.data.loader import load
    from steer.label import label_records
    from steer.train.apm import APM

    model = APM.load(apm)
    records, loaded = load(input_, format=fmt, split=split, skip_invalid=skip_invalid)
    with ui.progress_bar("labelling", unit="records") as bar:
        report = label_records(model, records, output, raw=raw, batch_size=batch_size, total=len(records),
                               progress=bar.update)
    out = {**report.to_json(), "rejected": sum(loaded.rejected.values()), "output": output}
    if as_json:
        ui.print_json(out)
    else:
        ui.plain(f"{report.written} records labelled, {report.skipped} already done; {report.total} in all "
                 f"({', '.join(model.schema.names)}): {output}")


@app.command()
def chat(
    model: ModelArg,
    attr: AttrOpt = [],  # noqa: B006
    attrs_: AttrsOpt = None,
    preset: PresetOpt = None,
    system: SystemOpt = None,
    value: ValueOpt = [],  # noqa: B006
    temperature: TemperatureOpt = 0.7,
    top_p: TopPOpt = 1.0,
    top_k: TopKOpt = 0,
    max_new_tokens: MaxNewOpt = 256,
    seed: SeedOpt = None,
    engine: EngineOpt = "hf",
    template: TemplateOpt = None,
    schema: ModelSchemaOpt = None,
) -> None:
    """Chat with a model, steering as you go (/help lists the commands; Ctrl-C stops an answer)."""
    _quiet_libraries()
    from steer.generate.chat import ChatSession
    from steer.generate.engine import Response, Sampling, load_engine

    eng = load_engine(model, engine=engine, template=template, schema=schema)
    session = ChatSession(eng.template, _steering(eng.template, attr, attrs_, preset, value, system),
                          Sampling(temperature, top_p, top_k, max_new_tokens, seed))
    ui.chat_banner(model, session.steering_line())
    while True:
        try:
            line = ui.ask("you> ")
        except EOFError:
            break
        except KeyboardInterrupt:
            ui.dim("(Ctrl-C stops an answer; /quit or Ctrl-D leaves)")
            continue
        if not line.strip():
            continue
        if line.startswith("/"):
            try:
                reply = session.command(line)
            except SteerError as err:
                ui.error(str(err))
                continue
            if reply.text:
                ui.plain(reply.text)
            if reply.quit:
                break
            if not reply.generate:
                continue
            prompt = session.prompt_for(None)
        else:
            try:
                prompt = session.prompt_for(line)
            except SteerError as err:
                ui.error(str(err))
                session.interrupted()
                continue
        final = None
        try:
            for piece in eng.stream(prompt, session.sampling):
                if isinstance(piece, Response):
                    final = piece
                else:
                    ui.stream(piece)
        except KeyboardInterrupt:
            ui.stream_end(None)
            ui.dim("(answer stopped)")
            session.interrupted()
            continue
        except SteerError as err:
            ui.stream_end(None)
            ui.error(str(err))
            session.interrupted()
            continue
        ui.stream_end(final)
        session.answered(final.text)


train_app = typer.Typer(help="Train steerable models.", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _quiet_libraries() -> None:
    """Keep transformers/datasets chatter (load bars, advisory warnings) off the user's terminal."""
    import warnings

    import datasets
    import transformers

    if os.environ.get("STEER_DEBUG") != "1":
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def _torchrun(nproc: int, argv: list[str]) -> int:
    """Relaunch this command under torchrun with ``nproc`` processes on this machine."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "steer", *argv]
    ui.plain("launching: " + " ".join(cmd[2:]))
    return subprocess.run(cmd, check=False).returncode


RecipeArg = Annotated[str, typer.Argument(help="Recipe YAML file (see recipes/).")]
NprocOpt = Annotated[Optional[int], typer.Option("--nproc", help="Processes on this machine (relaunches under torchrun).")]
ResumeOpt = Annotated[Optional[str], typer.Option("--resume", help="Continue from a checkpoint: 'last' (the run's latest) or a folder.")]


def _train(kind: str, recipe: str, overrides: list[str], nproc: int | None, resume: str | None, as_json: bool) -> None:
    """``steer train sft|apm``: load the recipe, relaunch under torchrun when asked, train, summarise."""
    from steer.config import load_recipe

    cfg = load_recipe(recipe, overrides, kind=kind)
    config = cfg.distributed.config
    if config and not Path(config).exists() and (Path(recipe).parent / config).exists():
        cfg.distributed.config = str(Path(recipe).parent / config)  # relative to the recipe file
    n = nproc or cfg.distributed.nproc
    if n > 1 and "LOCAL_RANK" not in os.environ:
        argv = ["train", kind, recipe, *(a for o in overrides for a in ("--set", o))]
        argv += ["--resume", resume] if resume else []
        argv += ["--json"] if as_json else []
        raise typer.Exit(_torchrun(n, argv))
    _quiet_libraries()
    from steer.train.sft import is_main_process, train_sft

    if kind == "apm":
        from steer.train.apm import train_apm as run
    else:
        run = train_sft
    target: str | bool | None = True if resume == "last" else resume
    if as_json or not is_main_process():
        result = run(cfg, resume=target)
    else:
        with ui.TrainDisplay() as display:
            result = run(cfg, resume=target, events=display)
    if not is_main_process():
        return
    if as_json:
        ui.print_json(result.to_json())
    else:
        ui.trained(result.to_json(), kind)


@train_app.command("sft")
def train_sft_cmd(recipe: RecipeArg, overrides: SetOpt = [], nproc: NprocOpt = None, resume: ResumeOpt = None,  # noqa: B006
                  as_json: JsonOpt = False) -> None:
    """Fine-tune with attribute conditioning (SteerLM) or value statements (Janus), LoRA or full."""
    _train("sft", recipe, overrides, nproc, resume, as_json)


@train_app.command("apm")
def train_apm_cmd(recipe: RecipeArg, overrides: SetOpt = [], nproc: NprocOpt = None, resume: ResumeOpt = None,  # noqa: B006
                  as_json: JsonOpt = False) -> None:
    """Train an attribute prediction model (a regression head per attribute) that labels data and judges outputs."""
    _train("apm", recipe, overrides, nproc, resume, as_json)


@app.command()
def export(
    run_dir: Annotated[str, typer.Argument(help="A steer run directory (or one of its checkpoint-N folders).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Where the plain Hugging Face model goes.")],
    dtype: Annotated[str, typer.Option("--dtype", help="Saved weights: float32, bfloat16, float16 or auto (as trained).")] = "auto",
) -> None:
    """Merge a LoRA run into its base model (on CPU) and write a plain HF model directory any engine serves."""
    _quiet_libraries()
    from steer.train.export import export as do_export

    path = do_export(run_dir, out, dtype=dtype)
    ui.plain(f"exported: {path}  (transformers, vLLM and TGI load it as is; steering variables: steer_attributes, steer_values)")


@app.command()
def serve(
    model: ModelArg,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (0.0.0.0 exposes the server to the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=0, max=65535)] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="STEER_API_KEY", help="Require 'Authorization: Bearer KEY'.")] = None,
    engine: EngineOpt = "hf",
    name: Annotated[Optional[str], typer.Option("--name", help="Model name clients ask for (default: the folder name).")] = None,
    template: TemplateOpt = None,
    schema: ModelSchemaOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Largest max_tokens a request may ask for.", min=1)] = 512,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait; more get 503 + Retry-After.", min=1)] = 64,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Requests batched into one generate call.", min=1)] = 16,
    grace: Annotated[int, typer.Option("--grace", help="Seconds to finish in-flight requests on SIGTERM.", min=0)] = 30,
    print_command: Annotated[bool, typer.Option("--print-command", help="With --engine vllm: print the vllm serve command and exit.")] = False,
) -> None:
    """Serve a model over an OpenAI-compatible API (chat and completions, streaming), steered per request."""
    _quiet_libraries()
    served = name or Path(model.rstrip("/")).name or "steer"
    if engine == "vllm":
        from steer.generate.engine import model_template
        from steer.serve.vllm_command import shell, vllm_command
        from steer.train.export import find_run_file

        tokenizer = _tokenizer_for(model)
        spec = find_run_file(Path(model)) if Path(model).is_dir() else None
        tmpl = model_template(tokenizer, spec, kind=template, schema=schema)
        cmd = vllm_command(model, tmpl.source, name=served, host=host, port=port, api_key=api_key)
        ui.plain(shell(cmd))
        if tmpl.stop:
            ui.dim(f"this template's stop strings: {list(tmpl.stop)} (send them as 'stop' in requests to vLLM)")
        if print_command:
            return
        os.execvp(cmd[0], cmd)  # vLLM's own server takes over this process
    if engine != "hf":
        raise UsageError(f"unknown engine {engine!r} (known: hf, vllm)")
    if print_command:
        raise UsageError("--print-command is for --engine vllm")
    from steer.generate.engine import load_engine
    from steer.serve.app import Limits
    from steer.serve.app import serve as run_server

    loaded = load_engine(model, engine="hf", template=template, schema=schema)
    limits = Limits(max_tokens=max_tokens, max_queue=max_queue, max_batch=max_batch)
    ui.dim(f"serving {served} on http://{host}:{port}/v1 (steering: {', '.join(loaded.template.schema.names) if loaded.template.schema else 'values'})")
    run_server(loaded, served, host=host, port=port, api_key=api_key, limits=limits, grace_s=grace)


def _tokenizer_for(model: str) -> Any:
    from transformers import AutoTokenizer

    from steer.generate.vllm import model_and_adapter

    _, adapter, _ = model_and_adapter(model)
    try:
        return AutoTokenizer.from_pretrained(adapter or model)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load the tokenizer of {model!r}: {str(err).strip().splitlines()[0]}") from None


eval_app = typer.Typer(help="Measure steering: requested vs realised attributes.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("steerability")
def eval_steerability(
    model: ModelArg,
    prompts: Annotated[str, typer.Option("--prompts", help="JSONL rows with 'prompt' or 'messages' (steer data synth writes prompts.jsonl).")],
    attrs: Annotated[list[str], typer.Option("--attr", help="Attribute to sweep (repeatable; default: those the judge measures).")] = [],  # noqa: B006
    judge: Annotated[str, typer.Option("--judge", help="length (verbosity), fkgl (complexity), oracle (synthetic prompts) or apm:PATH.")] = "oracle",
    max_new_tokens: MaxNewOpt = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Generations per engine call.", min=1)] = 64,
    engine: EngineOpt = "hf",
    template: TemplateOpt = None,
    schema: ModelSchemaOpt = None,
    as_json: JsonOpt = False,
    plot_path: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of requested vs realised.")] = None,
) -> None:
    """Sweep attributes over their range (others at defaults), generate, and judge what was realised."""
    _quiet_libraries()
    from steer.evaluate.judges import make_judge
    from steer.evaluate.steerability import generate, plot, read_prompts, summarize, sweep
    from steer.generate.engine import Sampling, load_engine

    judge_fn, measured = make_judge(judge)
    rows = read_prompts(prompts)
    loaded = load_engine(model, engine=engine, template=template, schema=schema)
    sch = loaded.template.schema
    if sch is None:
        raise UsageError("this model has no attribute schema to sweep")
    names = list(attrs) or list(measured or sch.names)
    for name in names:
        sch.get(name)  # an unknown name is a one-line error with a suggestion
    requests = list(sweep(sch, len(rows), names))
    sampling = Sampling(temperature=0.0, max_new_tokens=max_new_tokens)
    if as_json:
        texts = generate(loaded, rows, requests, sampling, batch=batch_size)
    else:
        with ui.progress_bar("generate", unit="answers") as bar:
            texts = generate(loaded, rows, requests, sampling, lambda e: bar.update(e["done"], e["total"]), batch_size)
    judged = judge_fn([rows[r.prompt_index] for r in requests], texts)
    summary = summarize(requests, judged, sch)
    png = plot(summary, requests, judged, plot_path) if plot_path else None
    if as_json:
        ui.print_json({"model": model, "judge": judge, "prompts": len(rows), "attributes": summary, "plot": png})
    else:
        ui.steerability(summary)
        ui.side_effects(summary)
        if png:
            ui.plain(f"plot: {png}")


@eval_app.command("values")
def eval_values(
    model: ModelArg,
    prompts: Annotated[str, typer.Option("--prompts", help="JSONL rows with 'prompt' or 'messages'.")],
    values: Annotated[str, typer.Option("--values", help="JSONL value statements, one per row ('value', 'system' or 'text').")],
    judge: Annotated[str, typer.Option("--judge", help="apm:PATH (an attribute's prediction) or rm:PATH (a reward model).")],
    score_attr: Annotated[Optional[str], typer.Option("--score-attr", help="The APM attribute that scores (default helpfulness).")] = None,
    temperature: TemperatureOpt = 0.0,
    max_new_tokens: MaxNewOpt = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Generations per engine call.", min=1)] = 32,
    engine: EngineOpt = "hf",
    template: TemplateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Janus-style matching: answer under each value statement, then judge each answer under every statement."""
    _quiet_libraries()
    from steer.evaluate.steerability import answer, read_prompts
    from steer.evaluate.values import make_scorer, matching, read_values, score_matrix
    from steer.generate.batch import row_messages
    from steer.generate.engine import Sampling, Steering, load_engine

    statements = read_values(values)
    rows = read_prompts(prompts)
    scorer, scored_by = make_scorer(judge, score_attr)
    loaded = load_engine(model, engine=engine, template=template)
    messages = [row_messages(dict(r), f"{prompts}:{n}") for n, r in enumerate(rows, start=1)]
    jobs = [(m, Steering(values=[v])) for m in messages for v in statements]
    sampling = Sampling(temperature=temperature, max_new_tokens=max_new_tokens, seed=0)
    if as_json:
        texts = answer(loaded, jobs, sampling, batch=batch_size)
    else:
        with ui.progress_bar("generate", unit="answers") as bar:
            texts = answer(loaded, jobs, sampling, lambda e: bar.update(e["done"], e["total"]), batch_size)
    k = len(statements)
    answers = [texts[p * k:(p + 1) * k] for p in range(len(rows))]
    result = {"model": model, "judge": judge, "scored_by": scored_by,
              **matching(score_matrix(messages, statements, answers, scorer), statements)}
    if as_json:
        ui.print_json(result)
    else:
        ui.value_matching(result)


@eval_app.command("length-bias")
def eval_length_bias(
    data: Annotated[str, typer.Argument(help="A dataset (any supported format) or a JSONL of outputs (steer batch / label).")],
    fmt: Annotated[str, typer.Option("--format", help="Dataset format (auto-detected by default).")] = "auto",
    score: Annotated[Optional[str], typer.Option("--score", help="Numeric column (dotted path) of a JSONL of outputs to use as the score.")] = None,
    apm: Annotated[Optional[str], typer.Option("--apm", help="Score responses with an attribute prediction model.")] = None,
    compare: Annotated[Optional[str], typer.Option("--compare", help="A second JSONL of outputs on the same prompts (needs --score): gain and NRG.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="Count lengths in this tokenizer's tokens (default: words).")] = None,
    as_json: JsonOpt = False,
    plot_path: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of score against length.")] = None,
) -> None:
    """Is length doing the work? Score-length correlation, non-length reward gain, longer-preferred accuracy."""
    from steer.evaluate import length_bias as lb

    if apm and score:
        raise UsageError("give --score or --apm, not both")
    if compare and not score:
        raise UsageError("--compare needs --score (the column both output files are scored by)")
    model = None
    if apm:  # load it first: a bad path fails before the data is read
        _quiet_libraries()
        from steer.train.apm import APM

        model = APM.load(apm)
    tok = None
    if tokenizer:
        _quiet_libraries()
        from steer.data.encode import load_tokenizer

        tok = load_tokenizer(tokenizer)
    length, unit = lb.token_counter(tok)
    out: dict[str, Any] = {"data": data, "length_unit": unit}
    series: dict[str, list] = {}
    if score:
        base = lb.read_scored(data, score, length)
        out["correlation"] = {score: lb.correlation(base)}
        series[Path(data).name] = base
        if compare:
            other = lb.read_scored(compare, score, length)
            series[Path(compare).name] = other
            out["compare"] = {"other": compare, **lb.nrg(base, other), "bin_" + unit: lb.BIN_TOKENS,
                              "correlation_other": lb.correlation(other)}
    else:
        from steer.data.loader import load

        records, _ = load(data, format=fmt)
        if model is not None:
            from steer.label import predicted

            records = predicted(model, records, raw=True)
            out["scores"] = f"apm:{apm}"
        scored, pairs = lb.label_scores(records, length)
        if not scored and not pairs:
            raise UsageError(f"{data}: no labelled assistant turns and no preference pairs to analyse")
        out["correlation"] = {name: lb.correlation(rows) for name, rows in scored.items()}
        series.update(scored)
        if pairs:
            out["longer_preferred"] = lb.longer_preferred(pairs)
    if plot_path:
        out["plot"] = lb.plot(series, unit, plot_path)
    if as_json:
        ui.print_json(out)
    else:
        ui.length_bias(out)


@app.command()
def quickstart(
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for the data, the model, report.json and the plot.")] = "steer-quickstart",
    fast: Annotated[bool, typer.Option("--fast", help="Half the training and a smaller sweep (about 2 minutes on 2 CPU cores).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Corpus, training and prompt seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train a steerable tiny Llama from scratch on a synthetic corpus (no network), then measure its steering."""
    import dataclasses

    _quiet_libraries()
    from steer import quickstart as qs
    from steer.evaluate.steerability import plot

    folder = Path(out)
    if (folder / "model").exists():
        raise UsageError(f"{folder} already holds a quickstart run; pass --out NEW_DIR or remove it")
    settings = dataclasses.replace(qs.FAST if fast else qs.DEFAULT, seed=seed)
    if as_json:
        report = qs.run(folder, settings)
    else:
        with ui.TrainDisplay() as display:
            report = qs.run(folder, settings, events=display)
    png = plot(report["attributes"], *qs.sweep_records(report), str(folder / "steerability.png"))
    if as_json:
        ui.print_json({k: v for k, v in report.items() if k != "generations"} | {"plot": png})
    else:
        ui.quickstart(report, str(folder), png)


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
