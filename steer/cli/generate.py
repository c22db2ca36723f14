"""``steer generate``, ``steer chat``, ``steer batch`` and ``steer label``."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from steer import ui
from steer.cli.app import app
from steer.cli.options import (BestOfOpt, CostOpt, FormatOpt, JsonOpt, JudgeOpt, MaxCostOpt, ModelArg, SkipOpt,
                               SplitOpt, model_options, quiet_libraries, sampling_options, steering_options)
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
    best_of: BestOfOpt = None,
    judge: JudgeOpt = None,
    cost: CostOpt = None,
    max_cost: MaxCostOpt = None,
    as_json: JsonOpt = False,
    image: Annotated[Optional[list[str]], typer.Option("--image", help="An image the prompt is about (repeatable; "
                                                        "a vision-language model).")] = None,
    model_options: Any = None,
) -> None:
    """Generate one steered answer (streamed to the terminal; --json for one JSON object; --best-of N: the
    best of N sampled answers by a judge, within a cost threshold; --image: about an image)."""
    text = _read_prompt(prompt)
    quiet_libraries()
    from steer.generate.api import request
    from steer.images import user_message

    chooser = _chooser(best_of, judge, cost, max_cost)
    message = user_message(text, image or [])  # images checked before the model loads
    req = request(model, [message], **steering, **model_options, sampling=sampling)
    head = {"model": model, "prompt": text, "attributes": req.attributes, "values": req.steering.values,
            "system": req.steering.system, **({"images": [p["image"] for p in message["content"][:-1]]} if image else {})}
    if chooser is not None:
        from steer.generate.best_of import generate_best

        response, candidates, index = generate_best(req, chooser)
        ui.show({**head, **response.to_json(), "best_of": {"chosen": index, "score": chooser.score,
                                                           "candidates": candidates}}, as_json, ui.best_answer)
    elif as_json:
        ui.print_json({**head, **req.generate().to_json()})
    else:
        ui.stream_answer(req.stream())


def _chooser(n: int | None, judge: str | None, cost: str | None, max_cost: float | None) -> Any:
    """The best-of-N settings, or None without ``--best-of``; judge options without it are refused."""
    if n is None:
        if judge or cost or max_cost is not None:
            raise UsageError("--judge, --cost and --max-cost choose among --best-of N answers: give --best-of")
        return None
    from steer.generate.best_of import make

    return make(n, judge, cost, max_cost)


@app.command()
@model_options
@sampling_options()
@steering_options
def chat(model: ModelArg, steering: Any = None, sampling: Any = None, model_options: Any = None,
         guard: Annotated[Optional[str], typer.Option("--guard", help="cost:PATH: score every answer with a cost model "
                                                      "and regenerate it under a safer steering while over --max-cost.")] = None,
         max_cost: MaxCostOpt = None,
         guard_rounds: Annotated[int, typer.Option("--guard-rounds", help="Regenerations before the refusal.", min=0)] = 2,
         refusal: Annotated[Optional[str], typer.Option("--refusal", help="The guard's answer when every round is over "
                                                        "the threshold.")] = None,
         guard_prompts: Annotated[bool, typer.Option("--guard-prompts", help="Screen each prompt with the guard's cost "
                                                     "model first: over --max-cost, the refusal without generating.")] = False,
         ) -> None:
    """Chat with a model, steering as you go (/help lists the commands; Ctrl-C stops an answer)."""
    quiet_libraries()
    from steer.generate.chat import ChatSession
    from steer.generate.guard import make

    guarding = make(guard, max_cost, guard_rounds, refusal, prompts=guard_prompts)
    session = ChatSession.open(model, steering, sampling, **model_options, guard=guarding)
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
                if session.last_guard is not None:
                    ui.guard_note(session.last_guard.to_json())
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
    best_of: BestOfOpt = None,
    judge: JudgeOpt = None,
    cost: CostOpt = None,
    max_cost: MaxCostOpt = None,
    sampling: Any = None,
    model_options: Any = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate for every row of a JSONL file (optionally over an attribute grid); streamed and resumable
    (--best-of N: the best of N sampled answers per row by a judge, every candidate in the row).

    --attr/--preset/--system/--value are defaults: a row's own attributes, preset, system and values win.
    """
    quiet_libraries()
    from steer.generate import batch as jobs
    from steer.generate.api import engine_for

    chooser = _chooser(best_of, judge, cost, max_cost)  # judges load before the model: a bad path fails first
    engine = engine_for(model, **model_options)  # loaded before the bar starts: rows/s counts generation only
    with ui.progress_bar("generating", unit="rows") as bar:
        report = jobs.run(engine, input_, output, sampling, grid=grid, steering=steering, batch_size=batch_size,
                          progress=bar, model=model, samples=samples, best=chooser)
    if as_json:
        ui.print_json({**report.to_json(), "output": output})
    else:
        ui.batch_done(report, output, str(jobs.errors_path(output)))


@app.command()
def label(
    apm: Annotated[str, typer.Argument(help="An attribute prediction model, reward model or cost model "
                                           "(a `steer train apm|rm|cost` run directory).")],
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
        ui.labelled(report, model.names, output)

