"""``steer train sft|apm|dpo|rm|cost`` and ``steer export``."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from steer import ui
from steer.cli.app import app, train_app
from steer.cli.options import JsonOpt, RecipeArg, SetOpt, quiet_libraries

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
) -> None:
    """Merge a LoRA run into its base model (on CPU) and write a plain HF model directory any engine serves."""
    quiet_libraries()
    from steer.train.export import export as do_export

    path = do_export(run_dir, out, dtype=dtype)
    ui.plain(f"exported: {path}  (transformers, vLLM and TGI load it as is; steering variables: steer_attributes, steer_values)")
