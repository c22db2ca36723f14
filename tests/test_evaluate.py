"""Steerability: judges, the sweep summary, and `steer eval steerability` end to end."""

import json

import pytest

from steer.attributes import get_schema
from steer.errors import UsageError
from steer.evaluate.judges import fkgl, make_judge, syllables
from steer.evaluate.steerability import Request, monotonicity_violations, summarize, sweep
from tests.conftest import run_cli


def test_fkgl_and_syllables():
    assert [syllables(w) for w in ("cat", "table", "make", "university", "tree")] == [1, 2, 1, 5, 1]
    assert fkgl("The cat sat.") == pytest.approx(0.39 * 3 + 11.8 * 1 - 15.59)
    plain, technical = fkgl("Zubex is red. It is old."), fkgl("Photometric chromaticity quantification characterises Zubex.")
    assert technical > plain + 10
    assert fkgl("...") is None


def test_judges():
    length, measured = make_judge("length")
    assert length([{}, {}], ["abcd", "ab"]) == [{"verbosity": 4}, {"verbosity": 2}] and measured == ("verbosity",)
    oracle, measured = make_judge("oracle")
    assert measured is None
    row = {"prompt": "What is 2 plus 3?", "field": "sum", "subject": [2, 3], "facts": {}, "support": []}
    assert oracle([row], ["2 and 3 make 5."])[0]["answer_right"]
    with pytest.raises(UsageError, match="steer data synth"):
        oracle([{"prompt": "hi"}], ["text"])
    with pytest.raises(UsageError, match="not a directory"):
        make_judge("apm:runs/no-such-apm")
    with pytest.raises(UsageError, match="unknown judge"):
        make_judge("vibes")


def test_sweep_and_summary():
    schema = get_schema("helpsteer")
    requests = list(sweep(schema, 2, ["verbosity"]))
    assert len(requests) == 10 and {r.attributes["complexity"] for r in requests} == {2}
    assert [r.level for r in requests] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    realised = [{"verbosity": r.level * 10 + r.prompt_index, "complexity": 2 + (r.level == 4)} for r in requests]
    out = summarize(requests, realised, schema)["verbosity"]
    assert out["spearman"] > 0.98 and out["monotonicity_violations"] == 0  # < 1 only through ties in requested
    assert out["levels"][0] == {"requested": 0, "realised": 0.5, "judged": 2}
    assert out["side_effects"]["complexity"] == 1.0
    assert monotonicity_violations([1, 2, 1.5, 3, None, 2]) == 2
    noisy = summarize([Request("verbosity", 0, 0, {}), Request("verbosity", 1, 0, {})], [{"verbosity": None}, {}], schema)
    assert noisy["verbosity"]["spearman"] is None


def test_cli_eval_steerability(tmp_path, shared_assets):
    model = str(shared_assets / "models/stories260k")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in ("Once upon a time", "A dog")) + "\n")
    out = run_cli("eval", "steerability", model, "--template", "steerlm", "--prompts", str(prompts), "--judge", "length",
                  "--max-new-tokens", "8", "--json", "--plot", str(tmp_path / "s.png"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data["attributes"]) == ["verbosity"] and len(data["attributes"]["verbosity"]["levels"]) == 5
    assert all(level["judged"] == 2 for level in data["attributes"]["verbosity"]["levels"])
    assert (tmp_path / "s.png").stat().st_size > 5000
    table = run_cli("eval", "steerability", model, "--template", "steerlm", "--prompts", str(prompts), "--judge", "fkgl",
                    "--max-new-tokens", "8")
    assert table.returncode == 0 and "complexity" in table.stdout and "Spearman" in table.stdout
    oracle = run_cli("eval", "steerability", model, "--template", "steerlm", "--prompts", str(prompts), "--max-new-tokens", "4")
    assert oracle.returncode == 2 and "steer data synth" in oracle.stderr
    typo = run_cli("eval", "steerability", model, "--template", "steerlm", "--prompts", str(prompts), "--attr", "verbosty")
    assert typo.returncode == 2 and "did you mean 'verbosity'" in typo.stderr
    prompts.write_text('{"prompt": "ok"}\n{not json\n')
    bad = run_cli("eval", "steerability", model, "--prompts", str(prompts), "--judge", "length")
    assert bad.returncode == 2 and "p.jsonl:2: invalid JSON" in bad.stderr
