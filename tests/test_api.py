"""The Python API of every job mirrors its command: the same results and the same errors, typed."""

from __future__ import annotations

import json

import pytest
import yaml

import steer
from steer.errors import ConfigError, SteerError, UsageError
from tests import fixtures
from tests.conftest import invoke_cli
from tests.test_train import TINY, _losses, _recipe


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_and_prepare_from_a_path_a_dict_or_a_recipe_equal_the_command(tmp_path, shared_assets):
    raw = _recipe(tmp_path, shared_assets, out="cli", max_steps=3, save_steps=3)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    cli = invoke_cli("train", "sft", str(path), "--json")
    assert cli.returncode == 0, cli.stderr
    expected = _losses(tmp_path / "cli")

    result = steer.train(path, overrides=[f"train.output_dir={tmp_path / 'api'}"])
    assert type(result).__name__ == "RunResult" and result.kind == "sft" and result.steps == 3
    assert _losses(tmp_path / "api") == expected and result.run_dir == tmp_path / "api"
    assert result.to_json()["steps"] == json.loads(cli.stdout)["steps"]

    from steer.config import validate_recipe

    as_dict = steer.train(raw, overrides=[f"train.output_dir={tmp_path / 'dict'}"])
    as_recipe = steer.train(validate_recipe(raw), overrides=[f"train.output_dir={tmp_path / 'obj'}"])
    assert _losses(as_dict.run_dir) == _losses(as_recipe.run_dir) == expected
    assert raw["train"]["output_dir"] == str(tmp_path / "cli")  # the caller's dict is left as it was

    prepared = steer.prepare(path)
    cli_prep = json.loads(invoke_cli("data", "prepare", str(path), "--json").stdout)
    assert prepared.cached and prepared.to_json() == cli_prep


def test_train_errors_are_the_commands(tmp_path, shared_assets):
    raw = _recipe(tmp_path, shared_assets)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    cli = invoke_cli("train", "sft", str(path), "--set", "train.lr=1")
    with pytest.raises(ConfigError) as err:
        steer.train(path, overrides=["train.lr=1"])
    assert cli.returncode == 2 and str(err.value) in cli.stderr
    assert "unknown key train.lr (did you mean 'learning_rate'?)" in str(err.value)
    with pytest.raises(ConfigError, match="this is a 'sft' recipe"):
        steer.train(raw, kind="dpo")
    with pytest.raises(UsageError, match="list of 'key.path=value' strings"):
        steer.train(raw, overrides="train.max_steps=1")
    with pytest.raises(UsageError, match="a Python call is one process"):
        steer.train(raw, overrides=["distributed.nproc=2"])
    with pytest.raises(UsageError, match="a recipe is a YAML path, a dict or a recipe object"):
        steer.train(42)
    assert not (tmp_path / "run").exists()


def test_batch_equals_the_command_and_checks_its_arguments(tmp_path, shared_assets):
    model = str(shared_assets / "models/stories260k")
    rows = fixtures.write([{"id": "a", "prompt": "Once upon a time"}, {"id": "b", "prompt": "A dog"}], tmp_path / "in.jsonl")
    cli = invoke_cli("batch", model, "-i", str(rows), "-o", str(tmp_path / "cli.jsonl"), "--template", "steerlm",
                     "--grid", "verbosity=0,4", "--temperature", "0", "--max-new-tokens", "6", "--json")
    assert cli.returncode == 0, cli.stderr
    report = steer.batch(model, rows, tmp_path / "api.jsonl", template="steerlm", grid=["verbosity=0,4"],
                         temperature=0, max_new_tokens=6)
    assert type(report).__name__ == "BatchReport" and report.written == 4
    assert {k: v for k, v in json.loads(cli.stdout).items() if k != "output"} == report.to_json()
    keep = ("key", "grid", "steering", "settings", "text", "completion_tokens")
    assert [{k: r[k] for k in keep} for r in _rows(tmp_path / "api.jsonl")] == \
           [{k: r[k] for k in keep} for r in _rows(tmp_path / "cli.jsonl")]
    again = steer.batch(model, rows, tmp_path / "api.jsonl", template="steerlm", grid=["verbosity=0,4"],
                        temperature=0, max_new_tokens=6)
    assert again.written == 0 and again.skipped == 4  # a re-run resumes, as the command's does
    with pytest.raises(UsageError, match="unknown argument 'temprature'"):
        steer.batch(model, rows, tmp_path / "x.jsonl", template="steerlm", temprature=0)
    with pytest.raises(UsageError, match="give best_of"):
        steer.batch(model, rows, tmp_path / "x.jsonl", template="steerlm", judge="length")
    with pytest.raises(UsageError, match="did you mean 'verbosity'"):
        steer.batch(model, rows, tmp_path / "x.jsonl", template="steerlm", attributes={"verbosty": 1})
    assert not (tmp_path / "x.jsonl").exists() or (tmp_path / "x.jsonl").read_text() == ""


def test_label_equals_the_command(tmp_path, shared_assets):
    apm = {"kind": "apm", "model": {"from_scratch": TINY, "tokenizer": str(shared_assets / "models/stories260k")},
           "data": {"sources": [{"path": str(fixtures.write(fixtures.helpsteer_rows() * 4, tmp_path / "hs.jsonl"))}],
                    "max_length": 256, "cache_dir": str(tmp_path / "cache")},
           "train": {"method": "full", "max_steps": 2, "batch_size": 4, "output_dir": str(tmp_path / "apm")}}
    run = steer.train(apm)
    assert run.kind == "apm"
    data = fixtures.write(fixtures.helpsteer2_rows(), tmp_path / "unlabelled.jsonl")
    cli = invoke_cli("label", str(run.run_dir), "-i", str(data), "-o", str(tmp_path / "cli.jsonl"), "--json")
    assert cli.returncode == 0, cli.stderr
    result = steer.label(run.run_dir, data, tmp_path / "api.jsonl")
    assert type(result).__name__ == "LabelResult" and result.attributes == (
        "helpfulness", "correctness", "coherence", "complexity", "verbosity")
    printed = json.loads(cli.stdout)
    assert {k: v for k, v in result.to_json().items() if k not in ("output", "attributes")} == \
           {k: v for k, v in printed.items() if k != "output"}
    assert _rows(tmp_path / "api.jsonl") == _rows(tmp_path / "cli.jsonl")
    with pytest.raises(UsageError):
        steer.label(tmp_path / "nothing-here", data, tmp_path / "y.jsonl")


def test_evaluations_are_callable_and_equal_the_command(tmp_path, shared_assets):
    model = str(shared_assets / "models/stories260k")
    prompts = fixtures.write([{"prompt": "Once upon a time"}, {"prompt": "A dog"}], tmp_path / "p.jsonl")
    cli = invoke_cli("eval", "steerability", model, "--template", "steerlm", "--prompts", str(prompts), "--judge", "length",
                     "--max-new-tokens", "6", "--json")
    assert cli.returncode == 0, cli.stderr
    result = steer.evaluate.steerability(model, str(prompts), template="steerlm", judge="length", max_new_tokens=6)
    assert json.loads(json.dumps(result)) == json.loads(cli.stdout)
    with pytest.raises(UsageError, match="did you mean 'verbosity'"):
        steer.evaluate.steerability(model, str(prompts), template="steerlm", judge="length", attributes=["verbosty"])
    assert all(callable(getattr(steer.evaluate, name)) for name in ("steerability", "values", "length_bias", "pairs", "curves"))
    bias = steer.evaluate.length_bias(str(fixtures.write(fixtures.helpsteer_rows(), tmp_path / "hs.jsonl")))
    assert bias == json.loads(invoke_cli("eval", "length-bias", str(tmp_path / "hs.jsonl"), "--json").stdout)


def test_python_spellings_are_accepted_and_bad_values_are_one_line(tmp_path, shared_assets):
    from pathlib import Path

    from steer.train import train as train_validated

    raw = _recipe(tmp_path, shared_assets)
    raw["model"]["tokenizer"] = Path(raw["model"]["tokenizer"])  # a Path where YAML would hold a string
    raw["data"]["sources"][0]["path"] = Path(raw["data"]["sources"][0]["path"])
    assert steer.recipe(raw).model.tokenizer == str(shared_assets / "models/stories260k")
    with pytest.raises(ConfigError, match="distributed.config nope.json not found"):
        steer.recipe({**raw, "distributed": {"strategy": "fsdp", "config": "nope.json"}})
    with pytest.raises(ConfigError, match=r"no kind key means sft"):
        steer.recipe(raw, kind="dpo")
    with pytest.raises(UsageError, match="for a path or a dict call steer.train"):
        train_validated("r.yaml")
    model = str(shared_assets / "models/stories260k")
    rows = fixtures.write([{"prompt": "A dog"}], tmp_path / "in.jsonl")
    with pytest.raises(UsageError, match="--batch-size must be >= 1"):
        steer.batch(model, rows, tmp_path / "o.jsonl", template="steerlm", batch_size=0)
    with pytest.raises(UsageError, match="--batch-size must be >= 1"):
        steer.label(tmp_path / "apm", rows, tmp_path / "l.jsonl", batch_size=0)
    # one string where the command takes a repeatable option
    result = steer.evaluate.steerability(Path(model), rows, template="steerlm", judge="length", attributes="verbosity",
                                         max_new_tokens=2)
    assert list(result["attributes"]) == ["verbosity"] and result["model"] == model
    with pytest.raises(SteerError, match=r"not a directory: .*nothing$"):  # one run, not the letters of its name
        steer.evaluate.curves(str(tmp_path / "nothing"), "loss")


def test_a_model_trained_again_into_its_folder_is_loaded_afresh(tmp_path, shared_assets):
    from steer.generate.api import engine_for

    raw = _recipe(tmp_path, shared_assets, max_steps=1)
    run = steer.train(raw).run_dir
    first = engine_for(run)
    assert engine_for(run) is first and engine_for(str(run)) is first  # cached while the folder is unchanged
    import shutil

    shutil.rmtree(run)
    steer.train(raw)
    assert engine_for(run) is not first
