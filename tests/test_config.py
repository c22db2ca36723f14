import json
from pathlib import Path

import pytest
import yaml

from steer.config import SFTRecipe, apply_override, dump_recipe, load_recipe, validate_recipe, write_resolved
from steer.errors import ConfigError
from tests.conftest import REPO

MINIMAL = {"model": {"name_or_path": "some/model"}, "data": {"sources": [{"path": "data.jsonl"}]}}


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", sorted(REPO.glob("recipes/**/*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_validates_and_says_how_to_run_it(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path} must open with a comment saying how to run it"
    comments = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    recipe = load_recipe(path)
    assert f"steer train {recipe.kind} {path.relative_to(REPO)}" in comments, "the comment shows the command that runs it"
    if recipe.distributed.config:  # the FSDP / DeepSpeed file it names exists and is JSON
        json.loads((REPO / recipe.distributed.config).read_text())


def test_every_kind_of_model_has_a_tiny_recipe_that_runs_on_a_cpu():
    """recipes/tiny/ holds a CPU recipe for every task the training loop knows (tests run each one)."""
    from steer.train.tasks import TASKS

    kinds = {load_recipe(path).kind for path in REPO.glob("recipes/tiny/*.yaml")}
    assert kinds == set(TASKS)
    assert all(load_recipe(path).model.dtype in ("auto", "float32") for path in REPO.glob("recipes/tiny/*.yaml"))


def test_code_defaults_then_yaml_then_set(tmp_path):
    path = write(tmp_path, {**MINIMAL, "train": {"learning_rate": 1e-3, "batch_size": 2}})
    recipe = load_recipe(path, ["train.batch_size=16", "train.lora.r=4", "data.sources.0.weight=2.5",
                                "template.schema=oasst", "train.tensorboard=true", "train.report_to=[mlflow]"])
    assert recipe.train.learning_rate == 1e-3          # yaml over default
    assert recipe.train.batch_size == 16               # --set over yaml
    assert recipe.train.lora.r == 4                    # --set into a default section
    assert recipe.train.lora.alpha == 32               # code default
    assert recipe.data.sources[0].weight == 2.5
    assert recipe.template.build_schema().name == "oasst"
    assert recipe.train.report_to == ["mlflow", "tensorboard"]  # the legacy switch joins the list


def test_unknown_keys_name_the_path_with_a_hint(tmp_path):
    path = write(tmp_path, {**MINIMAL, "train": {"learning_rat": 1e-3}})
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert "unknown key train.learning_rat (did you mean 'learning_rate'?)" in str(err.value)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown key data.sources.0.pth \(did you mean 'path'\?\)"):
        validate_recipe({**MINIMAL, "data": {"sources": [{"pth": "x"}]}})
    with pytest.raises(ConfigError, match="unknown key trian"):
        load_recipe(write(tmp_path, MINIMAL), ["trian.batch_size=3"])


def test_type_errors_and_missing_keys_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"train.batch_size: .*integer.* \(got 'many'\)"):
        load_recipe(write(tmp_path, MINIMAL), ["train.batch_size=many"])
    with pytest.raises(ConfigError, match="missing key data"):
        validate_recipe({"model": {"name_or_path": "m"}})
    with pytest.raises(ConfigError, match="exactly one of model.name_or_path and model.from_scratch"):
        validate_recipe({**MINIMAL, "model": {}})
    with pytest.raises(ConfigError, match="did you mean 'helpsteer'"):
        validate_recipe({**MINIMAL, "template": {"schema": "helpstear"}})


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"recipe.yaml:3: invalid YAML"):
        load_recipe(write(tmp_path, "model:\n  name_or_path: [unclosed\n"))
    with pytest.raises(ConfigError, match="--set 'train.batch_size': expected key.path=value"):
        apply_override({}, "train.batch_size")
    with pytest.raises(ConfigError, match="is not an index"):
        apply_override({"data": {"sources": [{}]}}, "data.sources.3.path=x")


def test_resolved_recipe_is_written_and_reloads_identically(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL), ["train.epochs=3"])
    out = write_resolved(recipe, tmp_path / "run")
    reloaded = validate_recipe(yaml.safe_load(out.read_text()))
    assert reloaded == recipe
    assert "learning_rate: 0.0002" in dump_recipe(recipe)   # defaults are spelled out
    assert isinstance(reloaded, SFTRecipe)


def test_custom_schema_in_a_recipe():
    recipe = validate_recipe({**MINIMAL, "template": {"schema": {"name": "mine", "attributes": [
        {"name": "formality", "min": 0, "max": 2, "default": 1}]}}})
    schema = recipe.template.build_schema()
    assert schema.render({"formality": 2}) == "formality:2"


def test_a_distributed_config_that_is_not_there_is_refused_at_check_time(tmp_path):
    path = write(tmp_path, {**MINIMAL, "distributed": {"strategy": "fsdp", "config": "nope.json"}})
    with pytest.raises(ConfigError, match="distributed.config nope.json not found"):
        load_recipe(path)
    (tmp_path / "fsdp.json").write_text("{}")  # beside the recipe: found there
    assert load_recipe(path, ["distributed.config=fsdp.json"]).distributed.config == str(tmp_path / "fsdp.json")
