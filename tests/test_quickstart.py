"""``steer quickstart --fast`` end to end in CI: corpus, tokenizer, training, sweep, oracle judgements."""

import json

import pytest

from steer import quickstart
from tests.conftest import REPO, run_cli


def test_recipe_file_is_the_embedded_recipe(tmp_path):
    """recipes/tiny/synth-steerlm.yaml trains exactly what the quickstart trains (paths and length aside)."""
    from steer.config import load_recipe

    from_file = load_recipe(REPO / "recipes/tiny/synth-steerlm.yaml").model_dump()
    embedded = quickstart.recipe(tmp_path, quickstart.DEFAULT).model_dump()
    assert from_file["model"]["from_scratch"] == embedded["model"]["from_scratch"]
    assert from_file["template"] == embedded["template"]
    assert {k: from_file["data"][k] for k in ("max_length", "packing")} == {k: embedded["data"][k] for k in ("max_length", "packing")}
    for key in ("method", "epochs", "learning_rate", "lr_scheduler", "warmup_ratio", "batch_size", "seed"):
        assert from_file["train"][key] == embedded["train"][key], key


@pytest.mark.slow
def test_quickstart_fast_steers(quickstart_fast):
    """`steer quickstart --fast` end to end: verbosity and complexity are steered (Spearman >= 0.8) and
    answers at correctness 4 are right at least 50 points more often than at correctness 0, all judged
    by the oracles on generated text."""
    out, result = quickstart_fast
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["rows"] == quickstart.FAST.rows
    assert report["attributes"]["verbosity"]["spearman"] >= 0.8
    assert report["attributes"]["complexity"]["spearman"] >= 0.8
    right = report["correct_answer_rate"]
    assert right["4"] - right["0"] >= 0.5, right
    assert set(report["correct_answer_rate"]) == {"0", "1", "2", "3", "4"}
    assert (out / "steerability.png").stat().st_size > 10_000
    generations = report["generations"]
    assert len(generations) == 5 * 5 * quickstart.FAST.prompts and all(g["text"] for g in generations)
    for text in ("Steering sweep", "verbosity", "Spearman", "right answers", "steer generate", "steer chat"):
        assert text in result.stdout, text
    again = run_cli("quickstart", "--fast", "--out", str(out))
    assert again.returncode == 2 and "already holds" in again.stderr


def test_the_real_recipe_file_is_the_real_quickstarts_recipe(tmp_path):
    """recipes/real/smollm2-steerlm.yaml trains what ``steer quickstart --real`` trains (its data aside:
    the quickstart draws ``rows`` of the same corpus)."""
    from steer import quickstart_real
    from steer.config import load_recipe

    from_file = load_recipe(REPO / "recipes/real/smollm2-steerlm.yaml").model_dump()
    embedded = quickstart_real.recipe(tmp_path, quickstart_real.DEFAULT).model_dump()
    for section in ("model", "template"):
        assert from_file[section] == embedded[section], section
    assert {k: v for k, v in from_file["data"].items() if k not in ("sources", "cache_dir")} == \
        {k: v for k, v in embedded["data"].items() if k not in ("sources", "cache_dir")}
    assert {k: v for k, v in from_file["train"].items() if k != "output_dir"} == \
        {k: v for k, v in embedded["train"].items() if k != "output_dir"}
    assert (REPO / from_file["data"]["sources"][0]["path"]).resolve() == quickstart_real.TRAIN_FILE.resolve()
