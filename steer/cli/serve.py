"""``steer serve``: steer's OpenAI-compatible server, or the hand-over to vLLM's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from steer import ui
from steer.cli.app import app
from steer.cli.options import ModelArg, model_options, quiet_libraries
from steer.errors import UsageError


@app.command()
@model_options
def serve(
    model: ModelArg,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (0.0.0.0 exposes the server to the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=0, max=65535)] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="STEER_API_KEY", help="Require 'Authorization: Bearer KEY' (prefer STEER_API_KEY or --api-key-file: a command line is visible to every user).")] = None,
    api_key_file: Annotated[Optional[str], typer.Option("--api-key-file", help="Read the API key from this file.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a connection may take to send its request (idle and slow clients are closed).", min=0.1)] = 10.0,
    model_options: Any = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name clients ask for (default: the folder name).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Largest max_tokens a request may ask for.", min=1)] = 512,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait; more get 503 + Retry-After.", min=1)] = 64,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Requests batched into one generate call.", min=1)] = 16,
    grace: Annotated[int, typer.Option("--grace", help="Seconds to finish in-flight requests on SIGTERM.", min=0)] = 30,
    print_command: Annotated[bool, typer.Option("--print-command", help="With --engine vllm: print the vllm serve command and exit.")] = False,
    guard: Annotated[Optional[str], typer.Option("--guard", help="cost:PATH: score every chat answer with a cost model "
                                                 "and regenerate it under a safer steering while over --max-cost.")] = None,
    max_cost: Annotated[Optional[float], typer.Option("--max-cost", help="The threshold of the guard and of best_of's "
                                                      "cost (default 0: a cost model's boundary between safe and unsafe).")] = None,
    guard_prompts: Annotated[bool, typer.Option("--guard-prompts", help="Screen each prompt with the guard's cost model "
                                                "first: over --max-cost, the refusal without generating.")] = False,
    guard_rounds: Annotated[int, typer.Option("--guard-rounds", help="Regenerations before the refusal.", min=0)] = 2,
    refusal: Annotated[Optional[str], typer.Option("--refusal", help="What the guard answers when every round is over "
                                                   "the threshold.")] = None,
    judge: Annotated[Optional[str], typer.Option("--judge", help="What a request's best_of ranks its answers by: "
                                                 "rm:PATH, or a judge of one attribute.")] = None,
    max_best_of: Annotated[int, typer.Option("--max-best-of", help="The largest best_of a request may ask for.", min=2)] = 8,
    cost: Annotated[Optional[str], typer.Option("--cost", help="cost:PATH: best_of keeps the best answer whose cost is "
                                                "within --max-cost (default: the --guard model).")] = None,
    max_images: Annotated[int, typer.Option("--max-images", help="Image parts one request may send (base64 data: URLs).",
                                            min=0)] = 4,
    max_image_bytes: Annotated[int, typer.Option("--max-image-bytes", help="The largest image, decoded; for a model "
                                                 "that reads images the body limit grows to fit --max-images of them.",
                                                 min=1)] = 4_000_000,
    allow_remote_images: Annotated[bool, typer.Option("--allow-remote-images", help="Fetch http(s) image URLs too (within "
                                                      "--max-image-bytes and --timeout); only on a trusted network: the "
                                                      "server makes the request a client names.")] = False,
    vector: Annotated[list[str], typer.Option("--vector", help="A steering vector requests may name in steer.vectors: "
                                              "NAME=FILE or FILE (named by its stem); repeatable. Requests never "
                                              "name a path.")] = [],  # noqa: B006
) -> None:
    """Serve a model over an OpenAI-compatible API (chat and completions, streaming), steered per request."""
    quiet_libraries()
    if allow_remote_images:
        import importlib.util

        if importlib.util.find_spec("httpx") is None:
            raise UsageError("--allow-remote-images fetches with httpx, which is not installed (pip install httpx)")
    served = name or Path(model.rstrip("/")).name or "steer"
    if api_key_file:
        try:
            api_key = Path(api_key_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise UsageError(f"--api-key-file {api_key_file}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--api-key-file {api_key_file}: not UTF-8 text") from None
        if not api_key:
            raise UsageError(f"--api-key-file {api_key_file}: the file is empty (an empty key would let anyone in)")
    elif api_key is not None and not api_key.strip():
        raise UsageError("--api-key is empty (an empty key would let anyone in); leave it out to serve without one")
    engine, template, schema = model_options["engine"], model_options["template"], model_options["schema"]
    if engine == "vllm" and (guard or judge or vector):
        raise UsageError("--guard, --judge and --vector run in steer's own server: serve with --engine hf (vLLM's "
                         "server has none of them)")
    if engine == "vllm":
        from steer.engines.vllm import INSTALL
        from steer.serve.vllm_command import plan

        vllm = plan(model, name=served, template=template, schema=schema, host=host, port=port, api_key=api_key)
        ui.vllm_plan(vllm.shell(), vllm.stop)
        if not print_command:
            if shutil.which(vllm.command[0]) is None:
                raise UsageError(INSTALL)
            os.execvpe(vllm.command[0], vllm.command, {**os.environ, **vllm.env})  # vLLM's server takes over
        return
    if print_command:
        raise UsageError("--print-command is for --engine vllm")
    from steer.engines.load import load_engine
    from steer.serve.app import Limits
    from steer.serve.app import serve as run_server

    from steer.generate import best_of
    from steer.generate.guard import make

    if cost and not judge:
        raise UsageError("--cost ranks a request's best_of answers: it needs --judge (rm:PATH, or a judge of one attribute)")
    # bad cost models fail before the model loads; a cost model given twice is loaded once (judges.head_scorer)
    guarding = make(guard, None if cost and not guard else max_cost, guard_rounds, refusal, prompts=guard_prompts)
    ranked_by = cost or guard
    ranking = (best_of.make(max_best_of, judge, ranked_by, (0.0 if max_cost is None else max_cost) if ranked_by else None)
               if judge else None)
    from steer.vectors import allow_list

    allowed = allow_list(vector)  # every file read before the model loads
    loaded = load_engine(model, engine=engine, template=template, schema=schema)
    allow_list(vector, loaded.model)  # ... and checked against it once it has
    ui.serving(served, host, port, loaded.template.schema)
    run_server(loaded, served, host=host, port=port, api_key=api_key, grace_s=grace, guard=guarding, judge=ranking,
               vectors=allowed,
               limits=Limits(max_tokens=max_tokens, max_queue=max_queue, max_batch=max_batch, timeout_s=timeout,
                             max_best_of=max_best_of, max_images=max_images, max_image_bytes=max_image_bytes,
                             allow_remote_images=allow_remote_images,
                             # a model that reads images: room for them as base64 beside the rest of a request
                             max_body_bytes=1_000_000 + (max_images * (max_image_bytes * 4 // 3 + 64)
                                                         if getattr(loaded, "reads_images", False) else 0)))
