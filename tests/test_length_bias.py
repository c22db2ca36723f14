"""`steer eval length-bias`: correlation with length, non-length reward gain, longer-preferred accuracy."""

import json

import pytest

from steer.evaluate.length_bias import Scored, correlation, longer_preferred, nrg
from tests.conftest import invoke_cli
from tests.fixtures import pku_rows, write


def test_nrg_separates_length_from_quality():
    # other scores higher only because it is longer: inside each length bin the scores are equal
    base = [Scored(f"p{i}", 10, 1.0) for i in range(10)] + [Scored(f"q{i}", 50, 3.0) for i in range(10)]
    longer = [Scored(f"p{i}", 50, 3.0) for i in range(15)] + [Scored(f"q{i}", 10, 1.0) for i in range(5)]
    r = nrg(base, longer)
    assert r["gain"] == pytest.approx(0.5) and r["nrg"] == pytest.approx(0.0) and r["nrg_share"] == pytest.approx(0.0)
    # a real improvement at the same lengths is all non-length gain
    better = [Scored(s.key, s.length, s.score + 0.5) for s in base]
    r = nrg(base, better)
    assert r["gain"] == pytest.approx(0.5) and r["nrg"] == pytest.approx(0.5) and r["nrg_share"] == pytest.approx(1.0)
    # bins only one set reaches do not count; weights are shares of the outputs in shared bins
    r = nrg([Scored("a", 5, 0.0), Scored("b", 45, 2.0)], [Scored("a", 6, 1.0), Scored("b", 90, 9.0)])
    assert r["shared_bins"] == 1 and r["nrg"] == pytest.approx(1.0) and r["outputs_in_shared_bins"] == 0.5
    with pytest.raises(ValueError):
        nrg([], better)


def test_correlation_and_longer_preferred():
    rows = [Scored(str(i), i, float(i * i)) for i in range(1, 8)]
    c = correlation(rows)
    assert c["spearman"] == pytest.approx(1.0) and 0.9 < c["pearson"] < 1.0 and c["n"] == 7
    assert longer_preferred([(10, 5), (3, 9), (4, 4), (8, 2)]) == {"pairs": 4, "ties": 1, "accuracy": pytest.approx(2 / 3)}
    assert longer_preferred([(4, 4)])["accuracy"] is None


def test_cli_length_bias(tmp_path):
    base, other = tmp_path / "base.jsonl", tmp_path / "steered.jsonl"
    write([{"id": i, "text": "word " * (5 + i), "realised": {"score": i / 10}} for i in range(30)], base)
    write([{"id": i, "text": "word " * (5 + i), "realised": {"score": 2 + i / 10}} for i in range(30)], other)
    out = invoke_cli("eval", "length-bias", str(base), "--score", "realised.score", "--compare", str(other), "--json",
                     "--plot", str(tmp_path / "lb.png"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["length_unit"] == "words" and data["correlation"]["realised.score"]["spearman"] == pytest.approx(1.0)
    assert data["compare"]["gain"] == pytest.approx(2.0) and data["compare"]["nrg"] == pytest.approx(2.0)
    assert (tmp_path / "lb.png").stat().st_size > 5000
    table = invoke_cli("eval", "length-bias", str(base), "--score", "realised.score", "--compare", str(other))
    assert table.returncode == 0 and "non-length gain" in table.stdout
    missing = invoke_cli("eval", "length-bias", str(base), "--score", "nope")
    assert missing.returncode == 2 and "base.jsonl:1: column 'nope'" in missing.stderr
    assert invoke_cli("eval", "length-bias", str(base), "--compare", str(other)).returncode == 2
    apm = invoke_cli("eval", "length-bias", str(base), "--apm", str(tmp_path / "no-apm"))
    assert apm.returncode == 2 and "not a directory" in apm.stderr


def test_cli_length_bias_on_labels_and_pairs(tmp_path):
    from steer import synth

    paths = synth.write_corpus(tmp_path, 300, seed=0)
    out = invoke_cli("eval", "length-bias", str(paths["train"]), "--json")
    assert out.returncode == 0, out.stderr
    corr = json.loads(out.stdout)["correlation"]
    assert corr["verbosity"]["spearman"] > 0.3 and set(corr) == set(synth.SCHEMA.names)
    pku = write(pku_rows(), tmp_path / "pku.jsonl")
    pairs = invoke_cli("eval", "length-bias", str(pku), "--json")
    assert pairs.returncode == 0, pairs.stderr
    assert json.loads(pairs.stdout)["longer_preferred"]["pairs"] > 0
