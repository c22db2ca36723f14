"""``steer generate``, ``steer chat``, ``steer batch`` and ``steer label``."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from steer import ui
from steer.cli.app import app
from steer.cli.options import (FormatOpt, JsonOpt, ModelArg, SkipOpt, SplitOpt, model_options, quiet_libraries,
                               sampling_options, steering_options)
from steer.errors import SteerError, UsageError


def _read_prompt(prompt: str | None) -> str:
    if prompt is None or prompt == "-":
        if prompt is None and sys.stdin.isatty():
            raise UsageError("give a prompt, or '-' to read it from stdin")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    return prompt


@app.command()
@model_options
@sampling_options()
@steering_options
def generate(
    model: ModelArg,
    prompt: Annotated[Optional[str], typer.Argument(help="The user prompt; '-' reads it from stdin.")] = None,
    steering: Any = None,
    sampling: Any = None,
    as_json: JsonOpt = False,
    model_options: Any = None,
) -> None:
    """Generate one steered answer (streamed to the terminal; --json for one JSON object)."""
    text = _read_prompt(prompt)
    quiet_libraries()
    from steer.generate.api import request

    req = request(model, text, **steering, **model_options, sampling=sampling)
    if as_json:
        ui.print_json({"model": model, "prompt": text, "attributes": req.attributes, "values": req.steering.values,
                       "system": req.steering.system, **req.generate().to_json()})
    else:
        ui.stream_answer(req.stream())


@app.command()
@model_options
@sampling_options()
@steering_options
def chat(model: ModelArg, steering: Any = None, sampling: Any = None, model_options: Any = None) -> None:
    """Chat with a model, steering as you go (/help lists the commands; Ctrl-C stops an answer)."""
    quiet_libraries()
    from steer.generate.chat import ChatSession

    session = ChatSession.open(model, steering, sampling, **model_options)
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
        try:
            reply = session.handle(line)
            if reply.text:
                ui.plain(reply.text)
            if reply.quit:
                break
            if reply.generate:
                ui.stream_answer(session.answer())
        except KeyboardInterrupt:
            ui.dim("(answer stopped)")
        except SteerError as err:
            ui.error(str(err))


@app.command()
@model_options
@sampling_options()
@steering_options
def batch(
    model: ModelArg,
    input_: Annotated[str, typer.Option("--input", "-i", help="JSONL rows: id, prompt or messages, optional attributes/preset/system/values.")],
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL out (appended; re-running resumes).")],
    grid: Annotated[list[str], typer.Option("--grid", help="Sweep an attribute: name=v1,v2,... (repeatable; cross product).")] = [],  # noqa: B006
    steering: Any = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per engine call.", min=1)] = 8,
    samples: Annotated[int, typer.Option("--samples", help="Answers per row and grid point (sampled: for "
                                         "best-vs-worst pairs, `steer data pairs`).", min=1)] = 1,
    sampling: Any = None,
    model_options: Any = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate for every row of a JSONL file (optionally over an attribute grid); streamed and resumable.

    --attr/--preset/--system/--value are defaults: a row's own attributes, preset, system and values win.
    """
    quiet_libraries()
    from steer.generate import batch as jobs
    from steer.generate.api import engine_for

    engine = engine_for(model, **model_options)  # loaded before the bar starts: rows/s counts generation only
    with ui.progress_bar("generating", unit="rows") as bar:
        report = jobs.run(engine, input_, output, sampling, grid=grid, steering=steering, batch_size=batch_size,
                          progress=bar, model=model, samples=samples)
    if as_json:
        ui.print_json({**report.to_json(), "output": output})
    else:
        ui.batch_done(report, output, str(jobs.errors_path(output)))


@app.command()
def label(
    apm: Annotated[str, typer.Argument(help="An attribute prediction model (a `steer train apm` run directory).")],
    input_: Annotated[str, typer.Option("--input", "-i", help="Any supported dataset: a file, a dataset folder or a hub id.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Canonical JSONL out (appended; re-running resumes).")],
    fmt: FormatOpt = "auto",
    split: SplitOpt = "train",
    raw: Annotated[bool, typer.Option("--float", help="Also keep the raw predictions, as each turn's scores "
                                      "(attributes are always clipped and rounded).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Turns scored per forward pass.", min=1)] = 32,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Annotate every assistant turn of a dataset with predicted attributes: unlabelled data to SteerLM data."""
    quiet_libraries()
    from steer.label import run

    with ui.progress_bar("labelling", unit="records") as bar:
        report, model, rejected = run(apm, input_, output, format=fmt, split=split, raw=raw, batch_size=batch_size,
                                      skip_invalid=skip_invalid, progress=bar)
    if as_json:
        ui.print_json({**report.to_json(), "rejected": rejected, "output": output})
    else:
        ui.labelled(report, model.schema.names, output)

