"""Bad files, bad rows and unsafe outputs: each is one line naming file, row and column (exit 2), and
nothing a user has is lost. Also the upstream layouts real SteerLM users have (NeMo, OASST trees)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steer.attributes import SCHEMAS, Attribute, Schema
from steer.data.loader import FORMATS, load
from steer.data.records import DataError
from steer.errors import UsageError
from tests import fixtures
from tests.conftest import invoke_cli

GOOD = {"prompt": "What is 2+2?", "response": "4", "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 0,
        "verbosity": 0}
CSV_HEADER = b"prompt,response,helpfulness,correctness,coherence,complexity,verbosity\n"


def _gzip_cut() -> bytes:
    data = gzip.compress(("".join(json.dumps(GOOD) + "\n" for _ in range(200))).encode())
    return data[: len(data) // 2]


FILES = {  # name -> (bytes, what the one-line error says)
    "utf8.jsonl": (json.dumps(GOOD).encode().replace(b"2+2", b"2\xff2") + b"\n", "not UTF-8"),
    "utf8.csv": (CSV_HEADER + b"a\xff,b,1,1,1,1,1\n", "not UTF-8"),
    "deep.jsonl": (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested too deeply"),
    "bigint.jsonl": (b'{"id": ' + b"9" * 5000 + b', "messages": []}\n', "invalid JSON"),
    "notgz.jsonl.gz": (b"plain text, not gzip\n", "not a readable gz archive"),
    "bad.jsonl.xz": (b"not xz", "not a readable xz archive"),
    "bad.jsonl.bz2": (b"not bz2", "not a readable bz2 archive"),
    "cut.jsonl.gz": (_gzip_cut(), "not a readable gz archive"),
    "random.parquet": (bytes(range(256)) * 4, "not a readable parquet file"),
    "ragged.csv": (CSV_HEADER + b"a,b,1,1,1,1,1,9,9\n", "9 fields, the header has 7"),
    "quote.csv": (CSV_HEADER + b'"a,b,1,1,1,1,1\n', "malformed CSV"),
    "empty.csv": (b"", "empty CSV"),
    "empty.jsonl": (b"", "no rows"),
    "surrogate.jsonl": (json.dumps({**GOOD, "response": "a \\ud800 b"}).replace("\\\\", "\\").encode() + b"\n",
                        "lone surrogate"),
    # deep enough that a recursive walk for surrogates overflows, shallow enough for json to parse
    "deep-surrogate.jsonl": (b'{"messages": ' + b"[" * 600 + b'"\\ud800"' + b"]" * 600 + b"}\n", "lone surrogate"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_unreadable_file_is_one_line_naming_it(tmp_path, name):
    data, needle = FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=needle) as err:
        load(path, format="auto" if "jsonl" in name or name.endswith("csv") else "helpsteer")
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    out = invoke_cli("data", "stats", str(path))  # the command line shows it as one red line, exit 2
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and needle in out.stderr, out.stderr


def test_a_lone_surrogate_is_a_row_skip_invalid_skips(tmp_path):
    rows = [json.dumps(GOOD), json.dumps({**GOOD, "prompt": "bad \udc80 text"}), json.dumps(GOOD)]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")  # json.dumps escapes the surrogate: \udc80
    with pytest.raises(DataError, match=r"s.jsonl:2: a string holds a lone surrogate"):
        load(path)
    records, report = load(path, skip_invalid=True)
    assert len(records) == 2 and report.rejected == {"invalid text": 1}
    paired = tmp_path / "emoji.jsonl"  # an escaped surrogate pair is a real character
    paired.write_text(json.dumps({**GOOD, "response": "ok 🙂"}, ensure_ascii=True) + "\n")
    assert load(paired)[0][0].messages[-1].content == "ok 🙂"


def test_csv_cells_are_converted_one_by_one(tmp_path):
    """An empty cell rejects only its row; text that looks like a number stays text; "4" is 4."""
    lines = [CSV_HEADER.decode()] + [f"Question {k},{k}0,4,4,4,2,{'' if k == 3 else k % 5}\n" for k in range(1, 6001)]
    path = tmp_path / "hs.csv"
    path.write_text("".join(lines))
    records, report = load(path, format="helpsteer", skip_invalid=True)
    assert report.rows == 6000 and len(records) == 5999 and report.rejected == {"missing column": 1}
    assert records[0].messages[1].content == "10" and records[0].messages[1].attributes["verbosity"] == 1


@pytest.mark.parametrize("value, reason", [(-1, "out of range"), (7, "out of range"), (2.5, "wrong type"),
                                           (1e30, "out of range"), ("inf", "wrong type"), (10**400, "out of range")])
def test_canonical_attributes_are_checked_against_the_schema(tmp_path, value, reason):
    row = {"id": "x", "messages": [{"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Hello.", "attributes": {"verbosity": value}}]}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(row).replace('"inf"', "Infinity") + "\n")
    with pytest.raises(DataError) as err:
        load(path)
    assert err.value.reason == reason and err.value.column == "messages[1].attributes"
    stats = invoke_cli("data", "stats", str(path), "--skip-invalid", "--rejects", str(tmp_path / "r.jsonl"), "--json")
    assert stats.returncode == 0 and "Infinity" not in stats.stdout and json.loads(stats.stdout)["rejected"] == {reason: 1}


def test_canonical_names_come_from_the_schema_and_scores_are_free(tmp_path):
    row = {"id": "x", "messages": [{"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Hello.", "attributes": {"formality": 2},
                                    "scores": {"formality": 1.73}}]}
    path = fixtures.write([row], tmp_path / "c.jsonl")
    with pytest.raises(DataError, match="'formality' is in no built-in schema"):
        load(path)
    mine = Schema("mine", (Attribute("formality", 0, 2, 1, ""),))
    (record,), _ = load(path, schema=mine)
    assert record.messages[1].attributes == {"formality": 2} and record.messages[1].scores == {"formality": 1.73}
    assert record.to_json()["messages"][1]["scores"] == {"formality": 1.73}
    with pytest.raises(DataError, match="not in schema 'helpsteer'"):
        load(path, schema=SCHEMAS["helpsteer"])


def test_oasst_tree_export_gives_the_same_threads_as_message_rows(tmp_path):
    flat, flat_report = load(fixtures.write(fixtures.oasst_rows(), tmp_path / "rows.jsonl"))
    trees, report = load(fixtures.write(fixtures.oasst_tree_rows(), tmp_path / "trees.jsonl"))
    assert report.format == "oasst-tree" and report.rows == 3
    assert [r.to_json() for r in trees] == [r.to_json() for r in flat]
    assert report.filtered == flat_report.filtered


def test_nemo_steerlm_sft_loads_with_labels_parsed_and_round_trips(tmp_path):
    from steer.templates import build_template

    records, report = load(fixtures.write(fixtures.nemo_steerlm_rows(), tmp_path / "nemo.jsonl"))
    assert report.format == "nemo-steerlm" and len(records) == 2
    first = records[0]
    assert [m.role for m in first.messages] == ["user", "assistant"] * 2 and first.meta == {"dataset": "helpsteer"}
    assert first.messages[1].attributes == SCHEMAS["steerlm"].parse(fixtures.NINE_LABEL.format(h=3, v=0))
    assert records[1].system is None and records[1].messages[1].attributes["complexity"] == 0
    again, _ = load(fixtures.write([r.to_json() for r in records], tmp_path / "canonical.jsonl"), format="steer")
    assert [r.to_json() for r in again] == [r.to_json() for r in records]
    # rendered back in the SteerLM format, each turn carries NeMo's own attribute string
    text = build_template("steerlm", schema=SCHEMAS["steerlm"]).render(first.chat())
    for turn in fixtures.nemo_steerlm_rows()[0]["conversations"][1::2]:
        assert f"<extra_id_2>{turn['label']}\n{turn['value']}\n" in text


def test_nemo_regression_rm_format_loads_labels_on_the_last_reply(tmp_path):
    from steer.apm import apm_text
    from steer.templates import build_template

    rows = fixtures.nemo_rm_rows()
    records, report = load(fixtures.write(rows, tmp_path / "rm.jsonl"))
    assert report.format == "nemo-rm" and len(records) == 2
    one, two = records
    assert one.messages[-1].attributes == {"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 0,
                                           "verbosity": 0}  # -100 is missing
    assert [m.content for m in two.messages] == ["Name a river in Quell.", "The Ombre.", "How long is it?",
                                                 "The Ombre is 412 km long."]
    assert two.system is None and two.messages[1].attributes is None and two.messages[-1].attributes["humor"] == 1
    # the APM reads exactly NeMo's text for a single-turn example
    assert apm_text(build_template("steerlm", schema=None), one.chat()) == rows[0]["text"]
    bad = fixtures.write([{"text": rows[0]["text"], "label": [4, 4]}], tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="list of 9 values"):
        load(bad, format="nemo-rm")


def test_rejects_never_overwrite_an_input_a_link_or_a_file_they_did_not_write(tmp_path):
    rows = [json.dumps(GOOD), json.dumps({**GOOD, "verbosity": 9})]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(rows) + "\n")
    before = data.read_bytes()
    same = invoke_cli("data", "stats", str(data), "--skip-invalid", "--rejects", str(data))
    assert same.returncode == 2 and "never writes onto its input" in same.stderr and data.read_bytes() == before
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "target.jsonl")
    refused = invoke_cli("data", "stats", str(data), "--skip-invalid", "--rejects", str(link))
    assert refused.returncode == 2 and "symbolic link" in refused.stderr and not (tmp_path / "target.jsonl").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    mine = invoke_cli("data", "stats", str(data), "--skip-invalid", "--rejects", str(notes))
    assert mine.returncode == 2 and "not a file this command wrote" in mine.stderr and notes.read_text() == "my notes\n"
    fresh = tmp_path / "new" / "folder" / "rejects.jsonl"
    ok = invoke_cli("data", "stats", str(data), "--skip-invalid", "--rejects", str(fresh), "--json")
    assert ok.returncode == 0 and json.loads(fresh.read_text())["row"] == 2
    again = invoke_cli("data", "stats", str(data), "--skip-invalid", "--rejects", str(fresh), "--json")
    assert again.returncode == 0 and len(fresh.read_text().splitlines()) == 1  # its own file: replaced, not appended
    assert [p.name for p in fresh.parent.iterdir()] == ["rejects.jsonl"]  # no temporary file left behind


def test_any_first_line_that_is_not_one_of_our_rows_is_not_ours(tmp_path):
    from steer.outputs import jsonl_with, written_rows

    for name, text in (("huge.jsonl", "9" * 5000), ("deep.jsonl", "[" * 100_000 + "]" * 100_000),
                       ("list.jsonl", "[1]"), ("notjson.jsonl", "hello")):
        path = tmp_path / name
        path.write_text(text + "\n")
        assert not jsonl_with(path, ["row"])
        with pytest.raises(UsageError, match=f"{name}:1: not a row this command wrote"):
            written_rows(path, "row")


def test_a_failed_load_leaves_the_old_rejects_file_whole(tmp_path):
    rejects = tmp_path / "r.jsonl"
    rejects.write_text(json.dumps({"source": "x", "row": 1, "column": None, "reason": "r", "error": "e"}) + "\n")
    before = rejects.read_bytes()
    broken = tmp_path / "cut.jsonl.gz"
    broken.write_bytes(_gzip_cut())
    with pytest.raises(DataError):
        load(broken, skip_invalid=True, rejects_path=rejects)
    assert rejects.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["cut.jsonl.gz", "r.jsonl"]


def _corrupt(data: bytes, how: str, where: float, junk: bytes) -> bytes:
    at = int(len(data) * where)
    return {"cut": data[:at], "junk": data[:at] + junk + data[at:], "flip": data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
            if at < len(data) else data}[how]


COMPRESS = {"": lambda b: b, ".gz": gzip.compress, ".xz": lzma.compress, ".bz2": bz2.compress}


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_only_ever_raise_one_line_data_errors(tmp_path, fmt, data):
    """Every format in every file type, cut, padded with junk or with a byte flipped: loading either
    works or raises one DataError line; no other exception escapes."""
    kind = data.draw(st.sampled_from([".jsonl", ".json", ".csv", ".parquet"] if fmt in ("helpsteer", "helpsteer2") else
                                     [".jsonl", ".json", ".parquet"]))
    compression = data.draw(st.sampled_from(list(COMPRESS))) if kind != ".parquet" else ""
    clean = fixtures.write(fixtures.ALL[fmt](), tmp_path / f"clean{kind}")
    raw = COMPRESS[compression](clean.read_bytes())
    how = data.draw(st.sampled_from(["cut", "junk", "flip", "none"]))
    if how != "none":
        raw = _corrupt(raw, how, data.draw(st.floats(0, 1)), data.draw(st.binary(min_size=1, max_size=20)))
    path = tmp_path / f"fuzz{kind}{compression}"
    path.write_bytes(raw)
    for skip in (False, True):
        try:
            load(path, format=fmt, skip_invalid=skip)
        except DataError as err:
            assert "\n" not in str(err) and str(path) in str(err)
    os.remove(path)
