"""``steer train sft|apm|dpo|rm|cost`` and ``steer export``."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Annotated, Optional

import typer

from steer import ui
from steer.cli.app import app, train_app
from steer.cli.options import JsonOpt, RecipeArg, SetOpt, quiet_libraries
from steer.errors import SteerError, UsageError

NprocOpt = Annotated[Optional[int], typer.Option("--nproc", help="Processes on this machine (relaunches under torchrun).")]
ResumeOpt = Annotated[Optional[str], typer.Option("--resume", help="Continue from a checkpoint: 'last' (the run's latest) or a folder.")]


def _torchrun(nproc: int, argv: list[str]) -> int:
    """Relaunch this command under torchrun with ``nproc`` processes on this machine."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "steer", *argv]
    ui.dim("launching: " + " ".join(cmd[2:]))  # stderr: stdout stays the result (--json)
    return subprocess.run(cmd, check=False).returncode


def _train(kind: str, recipe: str, overrides: list[str], nproc: int | None, resume: str | None, as_json: bool) -> None:
    """``steer train KIND``: load the recipe, relaunch under torchrun when asked, train, summarise."""
    from steer.config import load_recipe

    cfg = load_recipe(recipe, overrides, kind=kind)
    n = nproc or cfg.distributed.nproc
    if n > 1 and "LOCAL_RANK" not in os.environ:
        argv = ["train", kind, recipe, *(a for o in overrides for a in ("--set", o))]
        argv += ["--resume", resume] if resume else []
        argv += ["--json"] if as_json else []
        raise typer.Exit(_torchrun(n, argv))
    quiet_libraries()
    from steer.train import train
    from steer.train.loop import is_main_process
    from steer.train.tracking import quiet_integrations

    quiet_integrations()  # before the display takes over stderr

    target: str | bool | None = True if resume == "last" else resume
    if as_json or not is_main_process():
        result = train(cfg, resume=target)
    else:
        with ui.TrainDisplay() as display:
            result = train(cfg, resume=target, events=display)
    if not is_main_process():
        return
    if as_json:
        ui.print_json(result.to_json())
    else:
        ui.trained(result)


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


@train_app.command("dpo")
def train_dpo_cmd(recipe: RecipeArg, overrides: SetOpt = [], nproc: NprocOpt = None, resume: ResumeOpt = None,  # noqa: B006
                  as_json: JsonOpt = False) -> None:
    """Preference optimisation on chosen/rejected pairs: DPO, IPO, hinge, SimPO, RPO, ORPO, with length control."""
    _train("dpo", recipe, overrides, nproc, resume, as_json)


@train_app.command("rm")
def train_rm_cmd(recipe: RecipeArg, overrides: SetOpt = [], nproc: NprocOpt = None, resume: ResumeOpt = None,  # noqa: B006
                 as_json: JsonOpt = False) -> None:
    """Train a Bradley-Terry reward model on preference pairs (a judge: rm:RUN; best-of-N)."""
    _train("rm", recipe, overrides, nproc, resume, as_json)


@train_app.command("cost")
def train_cost_cmd(recipe: RecipeArg, overrides: SetOpt = [], nproc: NprocOpt = None, resume: ResumeOpt = None,  # noqa: B006
                   as_json: JsonOpt = False) -> None:
    """Train a Safe RLHF cost model on safety-labelled pairs (cost > 0: unsafe; a judge: cost:RUN)."""
    _train("cost", recipe, overrides, nproc, resume, as_json)


@train_app.command("rl")
def train_rl_cmd(recipe: RecipeArg, overrides: SetOpt = [], nproc: NprocOpt = None, resume: ResumeOpt = None,  # noqa: B006
                 as_json: JsonOpt = False) -> None:
    """Online RL from a policy run: rewards and costs from judges, lambda by dual ascent (Safe RLHF), GRPO or PPO."""
    _train("rl", recipe, overrides, nproc, resume, as_json)


@app.command()
def export(
    run_dir: Annotated[str, typer.Argument(help="A steer run directory (or one of its checkpoint-N folders).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Where the plain Hugging Face model goes.")],
    dtype: Annotated[str, typer.Option("--dtype", help="Saved weights: float32, bfloat16, float16 or auto (as trained).")] = "auto",
    push_to_hub: Annotated[Optional[str], typer.Option(
        "--push-to-hub", metavar="REPO_ID", help="Then upload OUT to this Hugging Face hub model repo (NAMESPACE/NAME, or "
        "NAME in the token's own namespace), created if missing; the endpoint is HF_ENDPOINT's.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the hub repo private (an existing repo keeps its "
                                          "visibility: a public one is refused).")] = False,
    token: Annotated[Optional[str], typer.Option("--token", help="A hub token with write access (default: HF_TOKEN, "
                                                 "else the one `hf auth login` saved; prefer those: other users of the "
                                                 "machine can see a command line).")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="The hub branch to push to (created from main if "
                                                    "missing; default main).")] = None,
    commit_message: Annotated[Optional[str], typer.Option("--commit-message", help="The hub commit's message.")] = None,
) -> None:
    """Merge a LoRA run into its base model (on CPU) and write a plain HF model directory any engine serves, with a
    model card (README.md); --push-to-hub uploads it."""
    quiet_libraries()
    from steer.train.export import check, push, target
    from steer.train.export import export as do_export

    if push_to_hub is None and (private or token or revision or commit_message):
        raise UsageError("--private, --token, --revision and --commit-message go with --push-to-hub REPO_ID")
    where = target(push_to_hub, token) if push_to_hub is not None else None
    if where is not None:
        user = check(where)  # no token, a refused or read-only one: fails before the export, not after it
        if "/" not in where.repo_id:  # a bare name lands in the token's namespace: the card names that repo
            if not user:
                raise UsageError(f"the hub at {where.endpoint} did not say whose token this is, so the repo "
                                 f"--push-to-hub {where.repo_id} lands in is unknown: give NAMESPACE/NAME",
                                 field="push_to_hub")
            where = dataclasses.replace(where, repo_id=f"{user}/{where.repo_id}")
    path = do_export(run_dir, out, dtype=dtype, repo_id=where.repo_id if where is not None else None)
    ui.plain(f"exported: {path}  (transformers, vLLM and TGI load it as is; steering variables: steer_attributes, steer_values)")
    if where is None:
        return
    ui.dim(f"pushing {path} to {where.endpoint}/{where.repo_id} ...")
    try:
        pushed = push(path, where, private=private, revision=revision, commit_message=commit_message)
    except SteerError as err:  # the export stands: say how to push it again without exporting again
        again = UsageError if isinstance(err, UsageError) else SteerError
        given = [f"{str(path)!r}", f"{where.repo_id!r}"]
        given += ["private=True"] if private else []
        given += [f"revision={revision!r}"] if revision else []
        given += [f"commit_message={commit_message!r}"] if commit_message else []
        raise again(f"{err} (the export in {path} stands: push it again with "
                    f"steer.train.export.push({', '.join(given)}))") from None
    ui.plain(f"pushed: {pushed.url}  ({pushed.files} files to branch {pushed.revision}; commit {pushed.commit_url})")
