import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steer.config import validate_recipe
from steer.data.encode import IGNORE, _mask
from steer.train import prepare
from steer.errors import UsageError
from steer.templates import _common_prefix
from tests import fixtures


def recipe(tmp_path, shared_assets, **data):
    return validate_recipe({
        "model": {"name_or_path": str(shared_assets / "models/stories260k")},
        "template": {"kind": "steerlm", "schema": "helpsteer"},
        "data": {"sources": [{"path": str(tmp_path / "hs.jsonl")}], "max_length": 1024,
                 "cache_dir": str(tmp_path / "cache"), **data}})


def test_prepare_tokenizes_mixes_and_caches(tmp_path, shared_assets):
    fixtures.write(fixtures.helpsteer_rows(), tmp_path / "hs.jsonl")
    cfg = recipe(tmp_path, shared_assets, sources=[{"path": str(tmp_path / "hs.jsonl"), "weight": 2.0}])
    seen = []
    first = prepare(cfg, progress=lambda e: seen.append((e.done, e.total)))
    assert not first.cached and first.examples == 6 and seen[-1] == (6, 6)
    ds = datasets.load_from_disk(str(first.path))
    assert ds.column_names == ["input_ids", "labels"] and len(ds) == 6
    for ids, labels in zip(ds["input_ids"], ds["labels"]):
        assert len(ids) == len(labels) and IGNORE in labels and any(x != IGNORE for x in labels)
    again = prepare(cfg)
    assert again.cached and again.path == first.path and again.reports[0].rows == 3
    # changing the data changes the content hash
    rows = fixtures.helpsteer_rows()
    rows[0]["response"] = "Something else entirely."
    fixtures.write(rows, tmp_path / "hs.jsonl")
    assert prepare(cfg).path != first.path


def test_fractional_weight_and_overlong_policies(tmp_path, shared_assets):
    fixtures.write(fixtures.helpsteer_rows() * 4, tmp_path / "hs.jsonl")
    half = prepare(recipe(tmp_path, shared_assets, sources=[{"path": str(tmp_path / "hs.jsonl"), "weight": 0.5}]))
    assert half.examples == 6
    rejected = prepare(recipe(tmp_path, shared_assets, max_length=260, overlong="reject"))
    assert rejected.examples == 4 and rejected.rejected == {"too long": 8}
    with pytest.raises(UsageError, match=r"all 12 were rejected \(too long: 12\)"):
        prepare(recipe(tmp_path, shared_assets, max_length=200, overlong="reject"))
    truncated = prepare(recipe(tmp_path, shared_assets, max_length=260, overlong="truncate"))
    assert truncated.examples + sum(truncated.rejected.values()) == 12
    assert all(len(ids) <= 260 for ids in datasets.load_from_disk(str(truncated.path))["input_ids"])


def test_prepare_in_parallel_matches_serial(tmp_path, shared_assets, monkeypatch):
    import steer.data.prepare as prep

    monkeypatch.setattr(prep, "CHUNK", 2)
    fixtures.write(fixtures.helpsteer_rows() * 3, tmp_path / "hs.jsonl")
    serial = datasets.load_from_disk(str(prepare(recipe(tmp_path, shared_assets)).path))
    parallel = prepare(recipe(tmp_path, shared_assets, num_proc=2), force=True)
    together = datasets.load_from_disk(str(parallel.path))
    assert len(serial) == 9 and together["input_ids"] == serial["input_ids"] and together["labels"] == serial["labels"]
    assert parallel.tokens == sum(len(ids) for ids in serial["input_ids"])


def test_cli_prepare(tmp_path, shared_assets):
    import json

    from tests.conftest import invoke_cli

    fixtures.write(fixtures.helpsteer_rows(), tmp_path / "hs.jsonl")
    (tmp_path / "r.yaml").write_text(
        f"model: {{name_or_path: {shared_assets / 'models/stories260k'}}}\n"
        f"data: {{sources: [{{path: {tmp_path / 'hs.jsonl'}}}], max_length: 1024, cache_dir: {tmp_path / 'c'}}}\n")
    out = invoke_cli("data", "prepare", str(tmp_path / "r.yaml"), "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout.strip().splitlines()[-1])
    assert first["examples"] == 3 and not first["cached"] and first["loss"] > 0 and first["loss_unit"] == "with loss"
    again = invoke_cli("data", "prepare", str(tmp_path / "r.yaml"))
    assert again.returncode == 0 and "3 examples" in again.stdout and "reused from cache" in again.stdout
    assert f"{first['loss']} with loss" in again.stdout


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=40), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)), max_size=4),
       st.booleans())
def test_label_mask_matches_the_per_token_rule(widths, raw_spans, shuffle):
    starts = [sum(widths[:i]) for i in range(len(widths))]
    if shuffle:
        starts = starts[::-1]  # the non-monotone fallback path
    offsets = [(s, s + 1) for s in starts]
    ids = list(range(1000, 1000 + len(starts)))
    spans, edge = [], 0
    for gap, width in raw_spans:  # sorted, non-overlapping, as loss_spans gives them
        spans.append((edge + gap, edge + gap + width))
        edge += gap + width
    expected = [t if any(a <= s < b for a, b in spans) else IGNORE for t, s in zip(ids, starts)]
    assert _mask(ids, offsets, spans) == expected


@given(st.text(alphabet="ab", max_size=30), st.text(alphabet="ab", max_size=30))
def test_common_prefix(a, b):
    n = _common_prefix(a, b)
    assert a[:n] == b[:n] and (n == min(len(a), len(b)) or a[n] != b[n])
