import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steer.data.loader import FORMATS, load
from steer.data.records import Conversation, DataError, PreferencePair
from tests import fixtures


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_is_detected_from_its_columns(tmp_path, fmt):
    path = fixtures.write(fixtures.ALL[fmt](), tmp_path / f"{fmt}.jsonl")
    _, report = load(path)
    assert report.format == fmt
    explicit, _ = load(path, format=fmt)
    assert explicit


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".jsonl.xz", ".json.bz2",
                                    ".csv.gz"])
def test_local_file_types(tmp_path, suffix):
    path = fixtures.write(fixtures.helpsteer_rows(), tmp_path / f"hs{suffix}")
    records, report = load(path, format="helpsteer")
    assert report.rows == 3 and report.examples == 3
    assert records[2].messages[1].attributes == {"helpfulness": 4, "correctness": 4, "coherence": 4,
                                                 "complexity": 0, "verbosity": 0}


def test_hub_code_path_through_datasets_with_a_local_directory(tmp_path):
    # datasets.load_dataset(name, split=...) is what a hub id goes through; a directory takes the same call.
    fixtures.write(fixtures.helpsteer_rows(), tmp_path / "HelpSteer" / "train.jsonl")
    records, report = load(tmp_path / "HelpSteer", split="train")
    assert report.format == "helpsteer" and len(records) == 3
    with pytest.raises(DataError, match="cannot load dataset"):
        load(tmp_path / "HelpSteer", split="nope")


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="no such file or dataset"):
        load(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="expected .jsonl, .json, .parquet or .csv"):
        load(tmp_path / "x.txt")


def test_helpsteer2_splits_inline_turns(tmp_path):
    records, report = load(fixtures.write(fixtures.helpsteer2_rows(), tmp_path / "HelpSteer2.jsonl"))
    assert report.format == "helpsteer2"
    convo = records[0]
    assert [(m.role, m.content) for m in convo.messages] == [
        ("user", "Name a river in Quell."), ("assistant", "The Ombre flows through Quell."),
        ("user", "How long is it?"), ("assistant", "The Ombre is 412 km long.")]
    assert convo.messages[1].attributes is None      # earlier turn: unlabelled
    assert convo.messages[3].attributes["correctness"] == 3
    single, _ = load(fixtures.write(fixtures.helpsteer2_rows(), tmp_path / "x.jsonl"), format="helpsteer")
    assert len(single[0].messages) == 2 and "<extra_id_1>" in single[0].messages[0].content


def test_oasst_trees_threads_labels_and_filters(tmp_path):
    path = fixtures.write(fixtures.oasst_rows(), tmp_path / "oasst.jsonl")
    records, report = load(path)
    threads = {tuple(m.content for m in r.messages) for r in records}
    assert ("Tell me about the moons of Velt.", "Velt has two moons, Ari and Bo.", "Which one is larger?",
            "Ari is larger.") in threads
    # the thread ending in a prompter turn (m7) keeps its assistant history
    assert ("Tell me about the moons of Velt.", "Velt has two moons, Ari and Bo.") in threads
    assert ("Tell me about the moons of Velt.", "Moons? Who cares.") in threads
    assert report.filtered["deleted or failed review"] == 3     # m6, and r1 with its reply r2
    by_reply = {r.messages[-1].content: r.messages[-1].attributes for r in records}
    # round(v * 4), Python rounding: 0.125*4 = 0.5 -> 0, 0.375*4 = 1.5 -> 2, 0.625*4 = 2.5 -> 2
    assert by_reply["Velt has two moons, Ari and Bo."] == {"quality": 3, "toxicity": 0, "humor": 0, "creativity": 2,
                                                           "helpfulness": 4}
    assert by_reply["Moons? Who cares."] == {"quality": 0, "toxicity": 2, "humor": 2, "creativity": 0}
    english, report_en = load(path, langs={"en"})
    assert all(r.meta["lang"] == "en" for r in english) and report_en.filtered["language"] == 3  # m7, n1 and n2


def test_oasst_parent_in_another_file_is_a_counted_filter_and_strict_makes_it_an_error(tmp_path):
    """A per-language export holds replies whose parent is in another language: filtered with the whole
    subtree, each message counted; --strict makes it an error naming the row."""
    rows = fixtures.oasst_rows()
    rows[3]["parent_id"] = "ghost"  # m4 ("Which one is larger?"), whose replies m5 and m6 go with it
    path = fixtures.write(rows, tmp_path / "oasst.jsonl")
    records, report = load(path)
    assert report.filtered["parent not in this file"] == 3 and not report.rejected
    assert all("Which one is larger?" not in [m.content for m in r.messages] for r in records)
    with pytest.raises(DataError) as err:
        load(path, strict=True)
    assert str(err.value) == f"{path}:4: column 'parent_id': parent_id 'ghost' is not a message of this dataset"
    records, report = load(path, strict=True, skip_invalid=True, rejects_path=tmp_path / "rej.jsonl")
    assert report.rejected == {"broken tree link": 1}


def test_oasst_cycles_self_parents_deep_threads_and_string_flags(tmp_path):
    rows = fixtures.oasst_rows()
    rows[9]["parent_id"] = "r1"  # r1 its own parent
    rows[7]["parent_id"], rows[8]["parent_id"] = "n2", "n1"  # n1 <-> n2
    rows[1]["deleted"] = "false"  # as text: not deleted
    rows[5]["deleted"] = "true"
    deep = [fixtures._msg("d0", None, "prompter", "Count with me.", tree="deep")]
    for k in range(1, 1200):  # a thread 1,200 messages deep
        deep.append(fixtures._msg(f"d{k}", f"d{k - 1}", "assistant" if k % 2 else "prompter", f"{k}", tree="deep"))
    path = fixtures.write(rows + deep, tmp_path / "oasst.jsonl")
    with pytest.raises(DataError, match="loops back"):
        load(path)
    records, report = load(path, skip_invalid=True)
    assert report.rejected["broken tree link"] == 4  # r1, r2 under it, n1, n2
    assert any(r.messages[-1].content == "1199" and len(r.messages) == 1200 for r in records)
    assert ("Tell me about the moons of Velt.", "Velt has two moons, Ari and Bo.") in {
        tuple(m.content for m in r.messages) for r in records}


def test_multifaceted_keeps_system_and_preference_set(tmp_path):
    records, _ = load(fixtures.write(fixtures.multifaceted_rows(), tmp_path / "mf.jsonl"))
    assert records[0].system == "You are a terse assistant for a busy expert."
    assert records[0].meta["preference_set"][0]["subdimension"] == "conciseness"
    (pair,), report = load(fixtures.write(fixtures.multifaceted_dpo_rows(), tmp_path / "dpo.parquet"))
    assert report.format == "multifaceted-dpo"
    assert isinstance(pair, PreferencePair) and (pair.chosen, pair.rejected) == ("Ahoy, matey!", "Hello.")


def test_pku_gives_two_conversations_and_two_pairs_per_row(tmp_path):
    records, report = load(fixtures.write(fixtures.pku_rows(), tmp_path / "pku.jsonl"))
    assert report.rows == 2 and report.examples == 8
    convs = [r for r in records if isinstance(r, Conversation)]
    pairs = {r.id.rsplit(":", 1)[1]: r for r in records[:4] if isinstance(r, PreferencePair)}
    assert [c.messages[1].attributes["harmlessness"] for c in convs] == [3, 1, 2, 3]   # safe, moderate, minor, safe
    assert convs[1].meta["harm_categories"] == ["Economic Crime", "Physical Harm"]
    assert pairs["helpfulness"].chosen.startswith("Insert") and pairs["harmlessness"].chosen.startswith("I can't")


def test_beavertails(tmp_path):
    records, _ = load(fixtures.write(fixtures.beavertails_rows(), tmp_path / "bt.jsonl"))
    assert [r.messages[1].attributes["harmlessness"] for r in records] == [3, 1]
    assert records[1].meta["harm_categories"] == ["animal_abuse", "violence,aiding_and_abetting,incitement"]


def test_canonical_round_trip(tmp_path):
    records, _ = load(fixtures.write(fixtures.steer_rows(), tmp_path / "c.jsonl"))
    again, _ = load(fixtures.write([r.to_json() for r in records], tmp_path / "again.jsonl"), format="steer")
    assert [r.to_json() for r in again] == [r.to_json() for r in records]


BAD_HELPSTEER = [
    ({"response": "r"}, "missing column", "prompt"),
    ({"prompt": "  "}, "empty text", "prompt"),
    ({"verbosity": 7}, "out of range", "verbosity"),
    ({"verbosity": "high"}, "wrong type", "verbosity"),
    ({"verbosity": 2.5}, "wrong type", "verbosity"),
]


@pytest.mark.parametrize("change, reason, column", BAD_HELPSTEER)
def test_bad_rows_name_file_row_and_column(tmp_path, change, reason, column):
    rows = fixtures.helpsteer_rows()
    rows[1] = {k: v for k, v in {**rows[1], **change}.items() if not (k == "prompt" and "prompt" not in change
                                                                            and "response" in change)}
    path = fixtures.write(rows, tmp_path / "hs.jsonl")
    with pytest.raises(DataError) as err:
        load(path, format="helpsteer")
    assert err.value.reason == reason and err.value.row == 2 and err.value.column == column
    assert str(err.value).startswith(f"{path}:2: column '{column}':")


def test_skip_invalid_counts_and_writes_rejects(tmp_path):
    path = tmp_path / "hs.jsonl"
    good = [json.dumps(r) for r in fixtures.helpsteer_rows()]
    path.write_text("\n".join([good[0], "{not json", good[1], json.dumps({**fixtures.helpsteer_rows()[2], "verbosity": 9}),
                               "[1, 2]", good[2]]) + "\n")
    with pytest.raises(DataError, match=r"hs.jsonl:2: invalid JSON"):
        load(path, format="helpsteer")
    # invalid JSON stops a stream; skip_invalid applies to every row that parses
    rows_ok = tmp_path / "hs2.jsonl"
    rows_ok.write_text("\n".join([good[0], json.dumps({**fixtures.helpsteer_rows()[2], "verbosity": 9}), good[2]]) + "\n")
    records, report = load(rows_ok, format="helpsteer", skip_invalid=True, rejects_path=tmp_path / "rejects.jsonl")
    assert (report.rows, report.examples, dict(report.rejected)) == (3, 2, {"out of range": 1})
    (reject,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["row"] == 2 and reject["column"] == "verbosity" and reject["reason"] == "out of range"


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10), st.floats(allow_nan=True), st.text(max_size=8),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_rows_never_crash_the_loaders(tmp_path, fmt, data):
    base = fixtures.ALL[fmt]()
    rows = []
    for row in base:
        keys = list(row)
        drop = data.draw(st.sets(st.sampled_from(keys), max_size=2))
        mutate = data.draw(st.dictionaries(st.sampled_from(keys), VALUES, max_size=3))
        rows.append({k: v for k, v in {**row, **mutate}.items() if k not in drop})
    path = tmp_path / f"fuzz-{fmt}.jsonl"
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    records, report = load(path, format=fmt, skip_invalid=True)
    assert report.rows == len(rows)
    try:
        load(path, format=fmt)
    except DataError as err:
        assert "\n" not in str(err)
