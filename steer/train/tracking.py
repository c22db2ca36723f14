"""Experiment tracking: TensorBoard, Weights & Biases and MLflow through the Trainer's own integrations.

``train.report_to`` names the trackers. Each gets every logged metric (transformers' callbacks), and
this module adds what they do not: the run is filed under ``train.project`` with ``train.run_name``,
the resolved recipe is logged with it (W&B config ``steer``, an MLflow artifact and tags), and the
tracked run is closed when the run ends (its final evaluation included), so a second ``steer.train`` in one Python process starts a
run of its own instead of appending to the first. Offline modes are the trackers' own:
``WANDB_MODE=offline`` (files under ``WANDB_DIR``, default the run directory) and a file or SQLite
``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steer.errors import UsageError

PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow-skinny")}


def quiet_integrations() -> None:
    """Import transformers' tracker integrations with their stdout sent to stderr: with WANDB_MODE=offline
    the module prints a line at import, and a command's stdout is its result (``--json``)."""
    if "transformers.integrations.integration_utils" in sys.modules:
        return
    with contextlib.redirect_stdout(sys.stderr):
        import transformers.integrations.integration_utils  # noqa: F401


def check_trackers(report_to: list[str]) -> None:
    """Refuse, before anything is prepared, a tracker whose package is not installed."""
    for name in report_to:
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"train.report_to {name} needs the {package} package: pip install {package}",
                             field="train.report_to")


def tracker_environment(report_to: list[str], project: str, run_dir: Path) -> None:
    """Defaults the integrations read from the environment (set ones win): the project or experiment,
    and W&B's files in the run directory rather than the working directory."""
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_PROJECT", project)
        os.environ.setdefault("WANDB_DIR", str(run_dir))
    if "mlflow" in report_to:
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", project)


def tracking_callback(report_to: list[str], recipe_file: Path, kind: str) -> Any:
    """A Trainer callback that logs the recipe to the trackers when training begins."""
    from transformers import TrainerCallback

    class Tracked(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not state.is_world_process_zero:
                return
            import yaml

            recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) if recipe_file.is_file() else {}
            if "wandb" in report_to:
                import wandb

                if wandb.run is not None:
                    wandb.config.update({"steer": {"kind": kind, "recipe": recipe}}, allow_val_change=True)
            if "mlflow" in report_to:
                import mlflow

                if mlflow.active_run() is not None:
                    mlflow.set_tags({"steer.kind": kind, "steer.model": str((recipe.get("model") or {}).get("name_or_path"))})
                    if recipe_file.is_file():
                        mlflow.log_artifact(str(recipe_file))

    return Tracked()


@contextlib.contextmanager
def tracked_run(report_to: list[str]) -> Iterator[None]:
    """Around training, its final evaluation and the saving: the W&B run is finished at the end (marked
    failed on an error), since it would otherwise stay open until the process exits; transformers ends
    its MLflow run itself when training ends."""
    failed = True
    try:
        yield
        failed = False
    finally:
        if "wandb" in report_to and "wandb" in sys.modules:
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=1 if failed else 0)
