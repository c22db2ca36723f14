"""Experiment tracking: TensorBoard, Weights & Biases and MLflow through the Trainer's own integrations.

``train.report_to`` names the trackers. Each gets every logged metric (transformers' callbacks), and
this module adds what they do not: the run is filed under ``train.project`` with ``train.run_name``,
the resolved recipe is logged with it (W&B config ``steer``, an MLflow artifact and tags), and the
tracked run is closed when the run ends (its final evaluation included; marked failed when training
fails), so a second ``steer.train`` in one Python process starts a run of its own instead of appending
to the first. Offline modes are the trackers' own:
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
def tracked_run(report_to: list[str], project: str, run_name: str, run_dir: Path) -> Iterator[None]:
    """Around training, its final evaluation and the saving: the tracked runs are started here, so that
    transformers' integrations log into them (they start none while one is active), and closed here
    (marked failed when training raises), so that each training is a run of its own, its final
    evaluation included, and the next training in this process starts afresh.

    Explicit settings, not the environment the integrations would read: W&B keeps the first settings a
    process sees. The W&B project and the MLflow experiment are ``project`` (``WANDB_PROJECT`` /
    ``MLFLOW_EXPERIMENT_NAME`` win), W&B's files go to the run directory (``WANDB_DIR`` wins). A run the
    user started before is theirs: W&B's is logged into as transformers does, and inside an MLflow run
    this training is a nested run. Only the main process tracks."""
    wandb_run = mlflow_run = None
    if int(os.environ.get("RANK", "0")) == 0:
        if "wandb" in report_to:
            import wandb

            if wandb.run is None:
                wandb_run = wandb.init(project=os.environ.get("WANDB_PROJECT") or project, name=run_name,
                                       dir=os.environ.get("WANDB_DIR") or str(run_dir))
        if "mlflow" in report_to:
            import mlflow

            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if uri and not mlflow.is_tracking_uri_set():
                mlflow.set_tracking_uri(uri)
            nested = mlflow.active_run() is not None
            if not nested:
                mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or project)
            mlflow_run = mlflow.start_run(run_name=run_name, nested=nested).info.run_id
    failed = True
    try:
        yield
        failed = False
    finally:
        if wandb_run is not None and sys.modules["wandb"].run is wandb_run:
            sys.modules["wandb"].finish(exit_code=1 if failed else 0)
        if mlflow_run is not None:
            active = sys.modules["mlflow"].active_run()
            if active is not None and active.info.run_id == mlflow_run:
                sys.modules["mlflow"].end_run(status="FAILED" if failed else "FINISHED")
