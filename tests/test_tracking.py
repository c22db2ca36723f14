"""Experiment tracking: W&B and MLflow in their offline modes write their local run files, with every
logged metric and the recipe; a missing tracker package is one clear line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from steer.config import validate_recipe
from steer.errors import UsageError
from tests.conftest import run_cli
from tests.test_train import _losses, _recipe


def wandb_records(path: Path) -> list:
    """The records of a W&B offline run file (``run-ID.wandb``): a LevelDB-style log of protobuf records
    (a 7-byte file header, 32 KiB blocks, each chunk with a crc32/length/type header), as ``wandb sync`` reads it."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, out, pos, parts = path.read_bytes(), [], 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk  # full / first, else middle / last
        if kind in (1, 4) and parts:
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
    return out


def wandb_run(folder: Path) -> tuple[list[dict], dict]:
    """(history rows as {key: value}, the config as {key: value} and ``_project``) of an offline run folder."""
    (log,) = folder.glob("run-*.wandb")
    history, config = [], {}
    for r in wandb_records(log):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "run":
            config["_project"] = r.run.project
        elif kind == "config":
            config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.config.update})
    return history, config


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline into tmp_path/wandb, MLflow into a file store under tmp_path (nothing leaves the machine)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 prefers a database; a folder is what CI has
    for name in ("WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())  # MLflow keeps the first URI a process sets
    return tmp_path


def test_wandb_and_mlflow_offline_get_every_metric_and_the_recipe(offline, shared_assets):
    import mlflow
    from mlflow.tracking import MlflowClient

    from steer.train import train

    tmp_path = offline
    raw = _recipe(tmp_path, shared_assets, report_to=["wandb", "mlflow", "tensorboard"], project="steer-test",
                  run_name="first", eval_steps=4)
    raw["data"]["validation_fraction"] = 0.25  # evaluated at step 4 and at the end (6), after training's last step
    result = train(validate_recipe(raw))
    losses = _losses(tmp_path / "run")
    evals = [json.loads(line)["eval_loss"] for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
             if "eval_loss" in line]
    assert len(evals) == 2 and result.eval_loss == evals[-1]

    # W&B: an offline run folder of its own, every logged loss in its history, the recipe in its config
    runs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history, config = wandb_run(runs[0])
    logged = [row["train/loss"] for row in history if "train/loss" in row]
    assert logged == pytest.approx(losses, rel=1e-6)
    assert [row["eval/loss"] for row in history if "eval/loss" in row] == pytest.approx(evals, rel=1e-6)
    assert config["steer"]["kind"] == "sft" and config["steer"]["recipe"]["train"]["learning_rate"] == 3e-3
    assert config["learning_rate"] == 3e-3 and config["run_name"] == "first"
    assert config["_project"] == "steer-test"

    # MLflow: the experiment is the project, the run its name, every loss a metric step, the recipe an artifact
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("steer-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "first" and run.info.status == "FINISHED" and run.data.tags["steer.kind"] == "sft"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [round(m.value, 4) for m in sorted(history, key=lambda m: m.step)] == [round(x, 4) for x in losses]
    assert "recipe.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert [m.value for m in sorted(client.get_metric_history(run.info.run_id, "eval_loss"), key=lambda m: m.step)] \
        == pytest.approx(evals, rel=1e-6)
    assert mlflow.active_run() is None  # ended with training

    # TensorBoard event files in the run directory, as before
    assert list((tmp_path / "run").rglob("events.out.tfevents.*"))

    # a second training in the same process is a run of its own (W&B's would otherwise stay open)
    raw = _recipe(tmp_path, shared_assets, out="second", report_to=["wandb", "mlflow"], project="steer-test")
    train(validate_recipe(raw))
    assert len(list((tmp_path / "wb" / "wandb").glob("offline-run-*"))) == 2
    names = sorted(r.info.run_name for r in client.search_runs([experiment.experiment_id]))
    assert names == ["first", "second"]  # the default name is the output folder's


def test_a_missing_tracker_is_one_line_before_anything_runs(tmp_path, shared_assets, monkeypatch):
    import importlib.util

    from steer.train import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UsageError, match="train.report_to wandb needs the wandb package: pip install wandb"):
        train(validate_recipe(_recipe(tmp_path, shared_assets, report_to=["wandb"])))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_report_to_is_checked_and_the_legacy_switch_still_works():
    from steer.errors import ConfigError

    base = {"model": {"name_or_path": "m"}, "data": {"sources": [{"path": "d.jsonl"}]}}
    with pytest.raises(ConfigError, match="train.report_to.0"):
        validate_recipe({**base, "train": {"report_to": ["comet"]}})
    assert validate_recipe({**base, "train": {"tensorboard": True}}).train.report_to == ["tensorboard"]
    assert validate_recipe({**base, "train": {"tensorboard": False}}).train.report_to == []


@pytest.mark.slow  # a fresh process (the module prints once per process)
def test_json_stays_json_with_wandb_offline(offline, shared_assets):
    """transformers prints a line on stdout when its integrations load under WANDB_MODE=offline; a fresh
    process (the module loads once) shows that `steer train --json` still prints JSON only."""
    import yaml

    path = offline / "r.yaml"
    path.write_text(yaml.safe_dump(_recipe(offline, shared_assets, max_steps=2, report_to=["wandb"])))
    out = run_cli("train", "sft", str(path), "--json", env={"WANDB_MODE": "offline", "WANDB_DIR": str(offline / "wb")},
                  timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["steps"] == 2 and "Running in WANDB offline mode" in out.stderr


def test_a_failed_run_is_closed_as_failed_and_each_run_has_its_own_project(offline, shared_assets):
    """A training that raises leaves no tracked run open (the next one is a run of its own, in its own
    project), and the settings steer puts in the environment are gone afterwards."""
    import os

    from mlflow.tracking import MlflowClient
    from transformers import TrainerCallback

    from steer.train import train

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                raise RuntimeError("boom")

    tmp_path = offline
    os.environ.pop("WANDB_DIR")  # W&B's default folder is then the run directory
    with pytest.raises(RuntimeError, match="boom"):
        train(validate_recipe(_recipe(tmp_path, shared_assets, out="a", report_to=["wandb", "mlflow"], project="proj-a")),
              callbacks=[Boom()])
    import mlflow
    import wandb

    assert mlflow.active_run() is None and wandb.run is None
    assert not {"WANDB_PROJECT", "WANDB_DIR", "MLFLOW_EXPERIMENT_NAME"} & set(os.environ)
    train(validate_recipe(_recipe(tmp_path, shared_assets, out="b", report_to=["wandb", "mlflow"], project="proj-b")))
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (failed,) = client.search_runs([client.get_experiment_by_name("proj-a").experiment_id])
    (done,) = client.search_runs([client.get_experiment_by_name("proj-b").experiment_id])
    assert (failed.info.run_name, failed.info.status) == ("a", "FAILED") and (done.info.run_name, done.info.status) == ("b", "FINISHED")
    (a,) = (tmp_path / "a" / "wandb").glob("offline-run-*")  # each run's W&B files in its own run directory
    (b,) = (tmp_path / "b" / "wandb").glob("offline-run-*")
    assert wandb_run(a)[1]["_project"] == "proj-a" and wandb_run(b)[1]["_project"] == "proj-b"
    assert not {"WANDB_PROJECT", "WANDB_DIR", "MLFLOW_EXPERIMENT_NAME"} & set(os.environ)


def test_inside_the_users_own_mlflow_run_each_training_is_nested(offline, shared_assets):
    import mlflow
    from mlflow.tracking import MlflowClient

    from steer.train import train

    tmp_path = offline
    mlflow.set_experiment("sweeps")
    with mlflow.start_run(run_name="sweep") as parent:
        for out in ("one", "two"):  # the same params twice would clash inside one run
            train(validate_recipe(_recipe(tmp_path, shared_assets, out=out, report_to=["mlflow"], max_steps=2)))
        assert mlflow.active_run().info.run_id == parent.info.run_id  # the user's run is left to them
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    runs = client.search_runs([parent.info.experiment_id])
    children = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert children == ["one", "two"]


def test_report_to_takes_the_trainer_spellings():
    base = {"model": {"name_or_path": "m"}, "data": {"sources": [{"path": "d.jsonl"}]}}
    spelled = lambda value: validate_recipe({**base, "train": {"report_to": value}}).train.report_to  # noqa: E731
    assert spelled("wandb") == ["wandb"] and spelled("none") == [] and spelled(["mlflow", "mlflow"]) == ["mlflow"]
    assert set(spelled("all")) == {"tensorboard", "wandb", "mlflow"}  # every installed tracker (all three here)
    assert validate_recipe({**base, "train": {"report_to": "wandb", "tensorboard": True}}).train.report_to == [
        "wandb", "tensorboard"]
