"""Options shared by several commands, and the option groups that add a whole set of them at once.

``@sampling_options`` gives a command ``--temperature --top-p --top-k --max-new-tokens --seed --stop``
and passes it one ``sampling`` (a :class:`steer.engines.base.Sampling`); ``@steering_options`` gives it
``--attr --attrs --preset --system --value --vector`` and passes ``steering`` (the keyword arguments of
:func:`steer.steering.steering_from`); ``@model_options`` gives ``--engine --template --schema`` and
passes ``model_options``; ``@loading_options`` gives ``--split --skip-invalid --rejects --lang --strict`` and
passes ``loading``. Nothing heavy is imported here, so ``steer --help`` stays instant.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

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
TokenizerOpt = Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="Tokenizer directory or hub id.")]
RecipeArg = Annotated[str, typer.Argument(help="Recipe YAML file (see recipes/).")]
ModelArg = Annotated[str, typer.Argument(help="A steer run directory, an exported model, or any HF model (folder or hub id).")]
SystemOpt = Annotated[Optional[str], typer.Option("--system", help="System message.")]
ValueOpt = Annotated[list[str], typer.Option("--value", help="A value statement, Janus-style (repeatable).")]
VectorOpt = Annotated[list[str], typer.Option("--vector", help="A steering vector FILE[:COEF] (`steer vectors train`; "
                                              "repeatable; the hf engine).")]
EngineOpt = Annotated[str, typer.Option("--engine", help="hf (transformers) or vllm.")]
TemplateOpt = Annotated[Optional[str], typer.Option("--template", help="Override the steering format: steerlm, chat (an attribute line in the model's own template) or janus (value statements only; the default for a model steer did not train).")]
ModelSchemaOpt = Annotated[Optional[str], typer.Option("--schema", help="Attribute schema (default: the model's own).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="0 is greedy.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Generations per engine call.", min=1)]
BestOfOpt = Annotated[Optional[int], typer.Option("--best-of", help="Sample N answers in one batched call and keep "
                                                  "the best by --judge.", min=2)]
JudgeOpt = Annotated[Optional[str], typer.Option("--judge", help="What --best-of ranks by: rm:PATH (a reward model) "
                                                 "or a judge of one attribute (length, fkgl, apm:PATH needs one).")]
CostOpt = Annotated[Optional[str], typer.Option("--cost", help="cost:PATH: a cost model that scores each candidate too.")]
MaxCostOpt = Annotated[Optional[float], typer.Option("--max-cost", help="Keep only candidates whose cost is <= this "
                                                     "(none within: the least costly, marked).")]

Group = dict[str, tuple[Any, Any]]  # parameter name -> (annotation, default)

SAMPLING: Group = {
    "temperature": (TemperatureOpt, 0.7),
    "top_p": (Annotated[float, typer.Option("--top-p")], 1.0),
    "top_k": (Annotated[int, typer.Option("--top-k", help="0 turns it off.")], 0),
    "max_new_tokens": (MaxNewOpt, 256),
    "seed": (Annotated[Optional[int], typer.Option("--seed")], None),
    "stop": (Annotated[list[str], typer.Option("--stop", help="Extra stop string (repeatable).")], []),
}
STEERING: Group = {"attr": (AttrOpt, []), "attrs_": (AttrsOpt, None), "preset": (PresetOpt, None),
                   "system": (SystemOpt, None), "value": (ValueOpt, []), "vector": (VectorOpt, [])}
MODEL: Group = {"engine": (EngineOpt, "hf"), "template": (TemplateOpt, None), "schema": (ModelSchemaOpt, None)}
LOADING: Group = {
    "split": (SplitOpt, "train"),
    "skip_invalid": (SkipOpt, False),
    "rejects": (Annotated[Optional[str], typer.Option("--rejects", help="Where skipped rows go (JSONL).")], None),
    "lang": (Annotated[list[str], typer.Option("--lang", help="Keep only these languages (OASST; repeatable).")], []),
    "strict": (Annotated[bool, typer.Option("--strict", help="An OASST message whose parent is not in the file is an "
                                            "error (default: filtered and counted with its replies).")], False),
}


def option_group(param: str, group: Group, build: Callable[..., Any], **defaults: Any) -> Callable:
    """A decorator that replaces a command's ``param`` by the options of ``group`` (``defaults``
    override the group's) and calls the command with ``param=build(**values)``."""

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        params: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            if p.name != param:
                params.append(p)
                continue
            params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
                                         default=defaults.get(name, default)) for name, (annotation, default) in group.items()]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in group}
            return fn(**kwargs, **{param: build(**values)})

        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap


def _sampling(temperature: float, top_p: float, top_k: int, max_new_tokens: int, seed: int | None,
              stop: list[str]) -> Any:
    from steer.engines.base import Sampling

    return Sampling(temperature, top_p, top_k, max_new_tokens, seed, tuple(stop))


def _steering(attr: list[str], attrs_: str | None, preset: str | None, system: str | None, value: list[str],
              vector: list[str]) -> dict:
    return {"attributes": [*attr, *([attrs_] if attrs_ else [])], "preset": preset, "values": list(value),
            "system": system, "vectors": list(vector)}


def sampling_options(**defaults: Any) -> Callable:
    """Add the sampling options (``defaults`` per command, e.g. ``max_new_tokens=128``)."""
    return option_group("sampling", SAMPLING, _sampling, **defaults)


def steering_options(fn: Callable) -> Callable:
    """Add ``--attr --attrs --preset --system --value --vector``."""
    return option_group("steering", STEERING, _steering)(fn)


def model_options(fn: Callable) -> Callable:
    """Add ``--engine --template --schema``."""
    return option_group("model_options", MODEL, lambda **kw: kw)(fn)


def loading_options(fn: Callable) -> Callable:
    """Add ``--split --skip-invalid --rejects --lang --strict``, passed on as ``loading``."""
    return option_group("loading", LOADING, lambda **kw: kw)(fn)


# read by transformers, huggingface_hub and datasets when they are imported
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
             "TQDM_DISABLE": "1"}  # bars that call tqdm directly (transformers' GGUF reader)


def quiet_libraries() -> None:
    """Keep transformers/datasets chatter (load bars, advisory warnings) off the user's terminal.

    Through their environment variables, so that a command never imports a library (datasets costs
    a second) only to quiet it; one already imported is told directly."""
    import sys
    import warnings

    if os.environ.get("STEER_DEBUG") == "1":
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)