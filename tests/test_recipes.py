"""Recipe discovery: `steer recipe list`, `steer recipe init` (valid as written, for every kind) and the
generated reference page (docs/recipes.md), which this suite refuses to let go stale."""

from __future__ import annotations

import json

import yaml

from steer.config import RECIPES, load_recipe
from steer.recipes import field_docs, init_recipe, reference_markdown
from tests.conftest import REPO, invoke_cli


def test_recipe_list_shows_every_shipped_recipe_and_each_validates():
    out = invoke_cli("recipe", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    shipped = sorted(str(p.relative_to(REPO / "recipes")) for p in (REPO / "recipes").rglob("*.yaml"))
    assert sorted(r["path"] for r in rows) == shipped
    assert [r for r in rows if r["problem"]] == []  # every shipped recipe validates as written
    by_path = {r["path"]: r for r in rows}
    rl = by_path["tiny/synth-rl.yaml"]
    assert rl["kind"] == "rl" and rl["model"] == "runs/tiny-synth" and rl["data"] == ["data/synth/rl-prompts.jsonl"]
    assert rl["purpose"].startswith("Constrained online RL on CPU")
    assert by_path["tiny/synth-apm.yaml"]["model"] == "from scratch (llama)"
    dpo = invoke_cli("recipe", "list", "--kind", "dpo", "--json")
    assert {r["kind"] for r in json.loads(dpo.stdout)} == {"dpo"}
    table = invoke_cli("recipe", "list")
    assert table.returncode == 0 and "synth-steerlm.yaml" in table.stdout and "recipe init" in table.stdout


def test_recipe_list_reports_a_broken_recipe_instead_of_failing(tmp_path):
    (tmp_path / "good.yaml").write_text(init_recipe("sft", "m", "d.jsonl"))
    (tmp_path / "bad.yaml").write_text("# Broken on purpose.\nmodel: {name_or_path: m}\ndata: {sources: [{path: d}]}\n"
                                       "train: {learning_rat: 1}\n")
    rows = {r["path"]: r for r in json.loads(invoke_cli("recipe", "list", "--dir", str(tmp_path), "--json").stdout)}
    assert rows["good.yaml"]["problem"] is None
    assert "unknown key train.learning_rat (did you mean 'learning_rate'?)" in rows["bad.yaml"]["problem"]
    assert rows["bad.yaml"]["purpose"] == "Broken on purpose"
    for args, msg in ((["--kind", "ppo"], "unknown recipe kind 'ppo'"), (["--dir", str(tmp_path / "no")], "is not a folder")):
        bad = invoke_cli("recipe", "list", *args)
        assert bad.returncode == 2 and msg in bad.stderr


def test_recipe_init_is_valid_as_written_for_every_kind(tmp_path):
    for kind in RECIPES:
        path = tmp_path / f"{kind}.yaml"
        out = invoke_cli("recipe", "init", "--kind", kind, "--model", "HuggingFaceTB/SmolLM2-135M-Instruct",
                         "--data", "data/train.jsonl", "--format", "steer", "--template", "chat", "-o", str(path))
        assert out.returncode == 0, out.stderr
        assert f"steer train {kind} {path}" in out.stdout
        check = invoke_cli("recipe", "check", str(path))
        assert check.returncode == 0, (kind, check.stderr)
        recipe = load_recipe(path)
        assert recipe.kind == kind and recipe.model.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert recipe.data.sources[0].format == "steer" and recipe.template.kind == "chat"
        assert recipe.train.output_dir == f"runs/{kind}"
        text = path.read_text()
        # every key is there, under its meaning as a comment: the file is its own documentation
        for doc in field_docs(RECIPES[kind]):
            if "[]" not in doc.path and not doc.path.startswith("template.schema."):
                assert doc.description.split()[0] in text, doc.path
        assert yaml.safe_load(text)["train"]["learning_rate"] == 2e-4
    again = invoke_cli("recipe", "init", "--kind", "sft", "--model", "m", "--data", "d", "-o", str(tmp_path / "sft.yaml"))
    assert again.returncode == 2 and "does not overwrite" in again.stderr
    printed = invoke_cli("recipe", "init", "--kind", "rl", "--model", "runs/sft", "--data", "prompts.jsonl")
    assert printed.returncode == 0 and yaml.safe_load(printed.stdout)["rl"]["reward"] == "rm:runs/rm"
    for args, msg in ((["--kind", "ppo"], "unknown recipe kind 'ppo'"), (["--kind", "sft", "--reward", "length"], "--reward is for kind rl"),
                      (["--kind", "sft", "--template", "nemo"], "template.kind")):
        bad = invoke_cli("recipe", "init", *args, "--model", "m", "--data", "d")
        assert bad.returncode == 2 and msg in bad.stderr, bad.stderr


def test_every_recipe_key_is_documented_and_the_reference_page_is_current():
    for kind, model in RECIPES.items():
        assert [d.path for d in field_docs(model) if not d.description] == [], kind
    page = (REPO / "docs" / "recipes.md").read_text()
    assert page == reference_markdown(), "docs/recipes.md is stale: run `steer recipe reference -o docs/recipes.md`"
    assert "| `dpo.loss` |" in page and "| `train.report_to` |" in page and "| `data.sources[].format` |" in page


def test_recipe_list_from_anywhere_and_on_files_that_are_not_recipes(tmp_path):
    out = invoke_cli("recipe", "list", "--json", cwd=tmp_path)  # the shipped recipes from another directory
    assert out.returncode == 0 and [r["path"] for r in json.loads(out.stdout) if r["problem"]] == []
    (tmp_path / "str-model.yaml").write_text("model: gpt2\ndata: {sources: [{path: d.jsonl}]}\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    rows = {r["path"]: r for r in json.loads(invoke_cli("recipe", "list", "--dir", str(tmp_path), "--json").stdout)}
    assert "model" in rows["str-model.yaml"]["problem"] and rows["str-model.yaml"]["model"] == "?"
    assert "not a text file" in rows["binary.yaml"]["problem"]
    bad = invoke_cli("recipe", "check", str(tmp_path / "binary.yaml"))
    assert bad.returncode == 2 and "binary.yaml: not a text file (a recipe is UTF-8 YAML)" in bad.stderr
