"""Preference pairs derived from rated answers (``steer data pairs``), ``steer batch --samples``, and
the four-command loop generate -> score -> pair -> DPO."""

from __future__ import annotations

import json

import pytest

from steer.data.loader import load
from steer.data.pairs import derive, group_key, parse_by
from steer.data.records import Conversation, Message
from steer.errors import UsageError
from tests import fixtures
from tests.conftest import REPO, invoke_cli, run_cli


def _records(rows, tmp_path, name="d.jsonl", **kw):
    return load(fixtures.write(rows, tmp_path / name), **kw)[0]


def test_helpsteer_rows_sharing_a_prompt_become_best_vs_worst_pairs(tmp_path):
    records = _records(fixtures.helpsteer_rows(), tmp_path)
    pairs, report = derive(records, parse_by("verbosity"))
    assert (report.answers, report.groups, report.pairs) == (3, 2, 1)
    assert report.dropped == {"alone in its group": 1}  # "Add 17 and 25." has one response
    (p,) = pairs
    assert p.chosen.startswith("Green, because") and p.rejected == "The sky over Zorbia is green."
    assert p.axis == "verbosity" and p.strength == 2 and p.labels == {"chosen": 3, "rejected": 1}
    assert p.attributes is None and p.values is None  # no steering was common to both: labels are not steering
    assert [m.content for m in p.prompt] == ["What colour is the sky over Zorbia?"]


def test_weighted_sums_min_margin_and_multi_turn_prompts(tmp_path):
    records = _records(fixtures.helpsteer2_rows(), tmp_path)
    weights = parse_by("helpfulness=0.65,correctness=0.8")
    pairs, report = derive(records, weights, axis="reward")
    assert report.pairs == 2 and {p.axis for p in pairs} == {"reward"}
    multi = next(p for p in pairs if len(p.prompt) == 3)  # the inline earlier turns are the prompt
    assert multi.chosen == "The Ombre is 412 km long." and multi.strength == pytest.approx(0.65 * 3 + 0.8 * 2)
    # glimmerstone: 0.65 apart only: dropped as a tie under --min-margin 1, and counted
    pairs, report = derive(records, weights, min_margin=1.0)
    assert report.pairs == 1 and report.dropped == {"groups whose answers tie (within --min-margin)": 1}
    # ties are never pairs, even at --min-margin 0
    pairs, report = derive(records, parse_by("coherence"))
    assert report.pairs == 1 and report.dropped["groups whose answers tie (within --min-margin)"] == 1


def _answers(texts, group="g", scores=None):
    return [Conversation(id=f"a{k}", meta={"group": group}, messages=[
        Message("user", "Q?"), Message("assistant", t, scores={"correctness": s} if s is not None else None)])
        for k, (t, s) in enumerate(zip(texts, scores or [None] * len(texts)))]


def test_modes_duplicates_unscored_and_non_answers_are_counted():
    answers = _answers(["a", "bb", "ccc", "bb", "dddd"], scores=[1.0, 2.0, 3.0, 2.5, None])
    pair = derive(_records_pair(), parse_by("correctness"))[1]
    assert pair.dropped == {"not an answer (a pair, or no closing assistant turn)": 1}
    best, report = derive(answers, parse_by("correctness"))
    assert [(p.chosen, p.rejected) for p in best] == [("ccc", "a")]
    # the first "bb" is kept, the second (2.5) is the duplicate
    assert report.dropped == {"unscored (no correctness)": 1, "duplicate answer in its group": 1}
    every, report = derive(answers, parse_by("correctness"), mode="all")
    assert sorted((p.chosen, p.rejected) for p in every) == [("bb", "a"), ("ccc", "a"), ("ccc", "bb")]
    assert report.longer_chosen == 3 and report.unequal_length == 3  # "the longer answer chosen": 100%
    with pytest.raises(UsageError, match="--mode"):
        derive(answers, parse_by("correctness"), mode="pairs")


def _records_pair():
    from steer.data.records import PreferencePair

    return [PreferencePair(id="p", prompt=[Message("user", "Q?")], chosen="a", rejected="b", axis="x")]


def test_oasst_sibling_replies_deep_in_a_thread_pair_once(tmp_path):
    """OASST's flattened threads repeat the first reply (m2) in every thread through it; its sibling
    (m3) is a thread of its own: one pair, m2 over m3 by quality, the repeats counted."""
    records = _records(fixtures.oasst_rows(), tmp_path, format="oasst")
    pairs, report = derive(records, parse_by("quality"))
    (p,) = pairs
    assert (p.chosen, p.rejected) == ("Velt has two moons, Ari and Bo.", "Moons? Who cares.")
    assert p.strength == 3 and [m.content for m in p.prompt] == ["Tell me about the moons of Velt."]
    assert report.dropped.get("alone in its group", 0) >= 2  # "Ari is larger." and the German thread


@pytest.mark.parametrize("spec, message", [("", "expected NAME"), ("a=x", "not a number"), ("a,a=2", "given twice")])
def test_by_specs_are_checked(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_by(spec)


def test_batch_rows_group_by_prompt_and_grid_point_and_carry_their_steering(tmp_path):
    rows = fixtures.steer_batch_rows()
    rows.append({**rows[0], "key": 'q1|{"verbosity": 1}|2', "sample": 2, "text": "It is three, as one plus two is three."})
    rows.append({**rows[0], "key": 'q1|{"verbosity": 3}', "grid": {"verbosity": 3}, "text": "Three."})  # another group
    records = _records(rows, tmp_path)
    assert len({group_key(r) for r in records}) == 3
    pairs, report = derive(records, parse_by("verbosity"), judge=lambda rows, texts: [{"verbosity": len(t)} for t in texts])
    assert report.groups == 3 and report.pairs == 1 and report.dropped == {"alone in its group": 2}
    (p,) = pairs
    assert p.chosen.startswith("It is three") and p.rejected in ("It is 3.", "It is 4.")
    assert p.attributes["verbosity"] == 1 and p.values == ["Be exact."]  # the steering both answers were made under
    assert p.meta["chosen_id"] == 'q1|{"verbosity": 1}|2'


def test_a_judge_reads_the_input_row_and_labels_survive_steer_label_s_canonical_output(tmp_path):
    """The oracle judge reads the synth fields of the batch input row; a labelled (canonical) copy
    of the rows keeps the group and steering in meta, so pairs come out the same either way."""
    from steer import synth
    from steer.evaluate.judges import make_judge

    import random

    q = next(q for q in synth.prompts(20, seed=3) if q["field"] != "sum")
    attrs = {"helpfulness": 4, "coherence": 4, "complexity": 2, "verbosity": 2}
    right, wrong = (synth.respond(q, {**attrs, "correctness": c}, random.Random(0)) for c in (4, 0))
    base = {**fixtures.steer_batch_rows()[0], "id": "s1", "prompt": q["prompt"], **{k: q[k] for k in q if k != "prompt"}}
    rows = [{**base, "key": "s1|{}", "text": wrong}, {**base, "key": "s1|{}|1", "sample": 1, "text": right}]
    rows = json.loads(json.dumps(rows))  # as the file holds them (the subject pair a list)
    judge, _ = make_judge("oracle")
    pairs, _ = derive(_records(rows, tmp_path), parse_by("correctness"), judge=judge)
    assert [(p.chosen, p.rejected) for p in pairs] == [(right, wrong)] and pairs[0].strength == 4
    labelled = tmp_path / "labelled.jsonl"  # what `steer label --float` writes: canonical records with scores
    with open(labelled, "w") as handle:
        for record, value in zip(_records(rows, tmp_path), (0.4, 3.6)):
            last = record.messages[-1]
            messages = [*record.messages[:-1], Message("assistant", last.content, {"correctness": round(value)},
                                                       scores={"correctness": value})]
            handle.write(json.dumps(Conversation(record.id, messages, record.system, record.source,
                                                 record.meta).to_json()) + "\n")
    again, _ = derive(load(labelled)[0], parse_by("correctness"))
    assert [(p.chosen, p.rejected) for p in again] == [(right, wrong)] and again[0].strength == pytest.approx(3.2)


def test_cli_data_pairs_writes_canonical_pairs_and_refuses_what_it_must(tmp_path):
    source = fixtures.write(fixtures.helpsteer2_rows(), tmp_path / "hs2.jsonl")
    out = tmp_path / "pairs.jsonl"
    done = invoke_cli("data", "pairs", str(source), "-o", str(out), "--by", "helpfulness", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["pairs"] == 2 and result["load"]["format"] == "helpsteer2" and result["longer_is_chosen"] == 1.0
    pairs, report = load(out)
    assert report.format == "steer" and [p.kind for p in pairs] == ["preference"] * 2
    shown = invoke_cli("data", "pairs", str(source), "-o", str(out), "--by", "helpfulness")
    assert shown.returncode == 0 and "4 answers in 2 groups -> 2 pairs" in shown.stdout
    onto = invoke_cli("data", "pairs", str(source), "-o", str(source), "--by", "helpfulness")
    assert onto.returncode == 2 and "input" in onto.stderr and len(source.read_text().splitlines()) == 4
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"note": 1}\n')
    over = invoke_cli("data", "pairs", str(source), "-o", str(foreign), "--by", "helpfulness")
    assert over.returncode == 2 and foreign.read_text() == '{"note": 1}\n'
    none = invoke_cli("data", "pairs", str(source), "-o", str(tmp_path / "none.jsonl"), "--by", "coherence",
                      "--min-margin", "5")
    assert none.returncode == 2 and "no pairs" in none.stderr and len(none.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.jsonl").exists()
    bad = invoke_cli("data", "pairs", str(source), "-o", str(tmp_path / "x.jsonl"), "--by", "helpfulness",
                     "--judge", "nope")
    assert bad.returncode == 2 and "unknown judge" in bad.stderr


def test_inspect_shows_both_sides_of_a_pair_with_their_loss_masks(tmp_path, shared_assets):
    from steer.data.inspect import inspect

    source = fixtures.write(fixtures.helpsteer3_rows(), tmp_path / "hs3.jsonl")
    shown = inspect(str(source), tokenizer=str(shared_assets / "models/stories260k"), n=1)
    (pair,) = shown.examples
    sides = [pair["sides"][name]["segments"] for name in ("chosen", "rejected")]
    loss = ["".join(t for t, on in segs if on) for segs in sides]
    context = ["".join(t for t, on in segs if not on) for segs in sides]
    assert "sorted(x)" in loss[0] and "x.sort" in loss[1] and "x.sort" not in loss[0]  # each side's loss: its answer
    assert context[0] == context[1] and "Sort a list." in context[0]  # the same prompt, carrying no loss
    cli = invoke_cli("data", "inspect", str(source), "-n", "1", "--tokenizer",
                     str(shared_assets / "models/stories260k"))
    assert cli.returncode == 0 and "chosen" in cli.stdout and "rejected" in cli.stdout


def test_stats_report_pairs_ties_and_length_agreement(tmp_path):
    from steer.data.stats import describe

    rows = fixtures.helpsteer2_preference_rows()
    rows.append({**rows[0], "response_2": "Pear, or an apple.", "preference_strength": 0})  # a tie
    rows.append({**rows[0], "response_2": "A ripe pear.", "preference_strength": 1})  # the longer is better
    p = describe(str(fixtures.write(rows, tmp_path / "pref.jsonl")))["preference"]
    assert p["ties_dropped"] == 1 and p["pairs"] == sum(p["axes"].values()) == 3
    assert p["equal_length"] == 1  # "2" over "3"
    assert p["longer_is_chosen"] == 1.0 and p["chosen_length"]["count"] == p["rejected_length"]["count"] == 3


def test_batch_samples_key_resume_and_greedy_refusal(tmp_path, shared_assets):
    from steer.engines.base import Sampling
    from steer.engines.hf import HFEngine
    from steer.generate.batch import run

    engine = HFEngine.load(str(shared_assets / "models/stories260k"), template="steerlm")
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "Once upon a time"}\n{"id": "b", "prompt": "The cat"}\n')
    out = tmp_path / "out.jsonl"
    with pytest.raises(UsageError, match="temperature"):
        run(engine, source, out, Sampling(temperature=0, max_new_tokens=4), samples=3)
    sampling = Sampling(temperature=1.0, max_new_tokens=6, seed=0)
    report = run(engine, source, out, sampling, samples=3, grid=["verbosity=0,4"], batch_size=4)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert report.written == report.total == 12 and len({r["key"] for r in rows}) == 12
    assert {r.get("sample", 0) for r in rows} == {0, 1, 2}
    assert 'a|{"verbosity": 0}' in {r["key"] for r in rows}  # sample 0 keeps a one-sample batch's key
    again = run(engine, source, out, sampling, samples=4, grid=["verbosity=0,4"], batch_size=4)
    assert again.skipped == 12 and again.written == 4  # only the new fourth answers
    records = load(out)[0]
    assert len({group_key(r) for r in records}) == 4  # two prompts x two grid points


@pytest.mark.slow
def test_generate_label_pair_and_train_dpo_in_four_commands(quickstart_fast, synth_apm, tmp_path):
    """The iterative loop: ``steer batch --samples`` -> ``steer label`` -> ``steer data pairs`` -> ``steer train dpo``;
    the oracle judge reads the prompts' fields through the labelled file as well."""
    from steer import synth

    model = str(quickstart_fast[0] / "model")
    prompts = tmp_path / "prompts.jsonl"  # questions about the model's own world, not its evaluation prompts
    prompts.write_text("".join(json.dumps({"id": f"t{k}", **q}) + "\n" for k, q in enumerate(synth.prompts(60, 0, stream=2))))
    answers, labelled, pairs, judged = (str(tmp_path / n) for n in ("answers.jsonl", "labelled.jsonl", "pairs.jsonl",
                                                                   "judged.jsonl"))
    steps = [
        ("batch", model, "-i", str(prompts), "-o", answers, "--samples", "4", "--temperature", "1.0", "--seed", "0",
         "--attr", "verbosity=2", "--max-new-tokens", "48", "--json"),
        ("label", str(synth_apm), "-i", answers, "-o", labelled, "--float", "--json"),
        ("data", "pairs", labelled, "-o", pairs, "--by", "correctness", "--json"),
        ("data", "pairs", labelled, "-o", judged, "--by", "correctness", "--judge", "oracle", "--json"),
    ]
    results = []
    for args in steps:
        done = run_cli(*args, timeout=900)
        assert done.returncode == 0, (args[:2], done.stderr[-2000:])
        results.append(json.loads(done.stdout))
    assert results[0]["written"] == 240 and results[1]["written"] == 240
    for found in results[2:]:
        assert found["answers"] == 240 and found["groups"] == 60 and found["pairs"] >= 10
    made = load(pairs)[0]
    assert all(p.attributes and p.attributes["verbosity"] == 2 for p in made)  # the steering they were made under
    assert all(p.labels["chosen"] - p.labels["rejected"] >= 1 for p in load(judged)[0])  # a fact apart at least
    trained = run_cli("train", "dpo", str(REPO / "recipes/tiny/synth-dpo.yaml"), "--json",
                      "--set", f"model.name_or_path={model}", "--set", f"data.sources.0.path={pairs}",
                      "--set", "data.validation=[]", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                      "--set", f"train.output_dir={tmp_path / 'dpo'}", timeout=900)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert json.loads(trained.stdout)["kind"] == "dpo" and (tmp_path / "dpo" / "steer.json").is_file()
