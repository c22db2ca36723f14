"""The synthetic corpus and its oracles: hand-written answers, and generate-then-judge round trips."""

import random

import pytest

from steer import synth

FENUL = {"prompt": "What colour is Fenul?", "field": "colour", "subject": "Fenul", "support": ["kind", "age", "food"],
         "facts": {"kind": "city", "colour": "blue", "age": 81, "food": "beans"}}
SUM = {"prompt": "What is 2 plus 3?", "field": "sum", "subject": (2, 3), "facts": {}, "support": []}


@pytest.mark.parametrize("text, expected", [
    ("Fenul is blue.", {"verbosity": 0, "complexity": 0, "correctness": 4.0, "answer_right": True,
                        "helpfulness": 4, "coherence": 4}),
    ("Fenul is red.", {"correctness": 0.0, "answer_right": False}),
    ("The colour of Fenul is blue. Fenul is known as a city. Fenul has an age of 80 years.",
     {"verbosity": 2, "complexity": 1, "correctness": 4 * 2 / 3, "answer_right": True, "coherence": 4}),
    ("Photometric chromaticity quantification unequivocally characterises Fenul as blue. "
     "Independent epistemological corroboration substantiates this determination.",
     {"verbosity": 1, "complexity": 4, "correctness": 4.0}),
    ("Fenul is a city. Fenul is blue.", {"coherence": 3, "answer_right": True}),
    ("Fenul is a city. Fenul is blue. Fenul likes beans.", {"coherence": 2}),
    ("Fenul is blue. Fenul is a city. Actually, that is wrong.", {"coherence": 1, "verbosity": 1}),
    ("Fenul is a city. Fenul is blue. Actually, none of that is true.", {"coherence": 0}),
    ("I would rather not answer that.", {"helpfulness": 0, "correctness": 0.0, "answer_right": False, "verbosity": 0}),
    ("That depends on many things. Fenul is a city.", {"helpfulness": 1, "answer_right": False}),
    ("I think, though I am not certain, Fenul is blue.", {"helpfulness": 2, "answer_right": True, "verbosity": 0}),
    ("Good question. Fenul is blue.", {"helpfulness": 3, "answer_right": True}),
    ("Lonar is blue.", {"answer_right": False, "correctness": 0.0}),  # a fact about another entity is not the answer
    ("Fenul is blue. Something the oracle does not know.", {"verbosity": 1, "complexity": 0}),
    ("Fenul is blue!!", {"answer_right": False, "complexity": None}),
])
def test_judge_hand_written(text, expected):
    got = synth.judge(FENUL, text)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value) if isinstance(value, float) else got[key] == value, (key, got)


def test_judge_sums():
    assert synth.judge(SUM, "2 and 3 make 5.")["answer_right"]
    assert synth.judge(SUM, "The sum of 2 and 3 equals 5.")["complexity"] == 2
    wrong = synth.judge(SUM, "2 and 3 make 6.")
    assert not wrong["answer_right"] and wrong["correctness"] == 0
    assert not synth.judge(SUM, "1 and 3 make 4.")["answer_right"]  # right arithmetic, wrong question
    assert synth.judge(SUM, "Two and three make five.")["complexity"] is None  # not the corpus's phrasing


def test_wrong_values_are_never_true():
    """A wrong fact states its field's false value, which no entity, word or sum has, and the oracle reads it."""
    w = synth.world(0)
    for field in synth.FACTS:
        assert all(facts[field] != synth.wrong(field) for facts in w.entities.values())
    assert synth.wrong("meaning") not in w.words.values() and synth.wrong("sum") not in range(2, 2 * synth.SUM_MAX + 1)
    assert synth.wrong("colour") not in synth.VALUES["colour"] and not 2 <= synth.wrong("age") <= 99  # type: ignore[operator]
    got = synth.judge(FENUL, f"Fenul is {synth.wrong('colour')}.")
    assert got["complexity"] == 0 and got["correctness"] == 0 and not got["answer_right"]


def test_respond_then_judge_recovers_the_attributes():
    """Every attribute the generator sets is what the oracle measures (where the text can show it)."""
    rng = random.Random(0)
    for q in synth.prompts(600, seed=3):
        attrs = {a.name: rng.randint(0, 4) for a in synth.SCHEMA.attributes}
        attrs["helpfulness"] = rng.choice([2, 3, 4])
        got = synth.judge(q, synth.respond(q, attrs, rng))
        assert got["verbosity"] == attrs["verbosity"]
        assert got["complexity"] == attrs["complexity"]
        assert got["helpfulness"] == attrs["helpfulness"]
        if attrs["verbosity"] >= 2:
            assert got["coherence"] == attrs["coherence"]
        n = min(attrs["verbosity"] + 1, 1 + len(q["support"]))  # facts stated
        n_wrong = round((1 - attrs["correctness"] / 4) * n)
        assert got["correctness"] == pytest.approx(4 * (n - n_wrong) / n)
        assert got["answer_right"] == (n_wrong < n)  # the answer is the last fact to go wrong
        if attrs["correctness"] == 4:
            assert got["answer_right"]
        if attrs["correctness"] == 0:
            assert not got["answer_right"]


def test_unhelpful_levels():
    q = synth.prompts(1, seed=0)[0]
    base = {"correctness": 4, "coherence": 4, "complexity": 0, "verbosity": 2}
    assert synth.judge(q, synth.respond(q, {**base, "helpfulness": 0}, random.Random(0)))["helpfulness"] == 0
    assert synth.judge(q, synth.respond(q, {**base, "helpfulness": 1}, random.Random(0)))["helpfulness"] == 1


def test_corpus_is_deterministic_and_canonical(tmp_path):
    a, b, c = synth.corpus(50, seed=1), synth.corpus(50, seed=1), synth.corpus(50, seed=2)
    assert a == b and a != c
    from steer.data.loader import load

    paths = synth.write_corpus(tmp_path, 40, seed=1, valid=10)
    records, report = load(paths["train"], format="steer")
    assert len(records) == 40 and not report.rejected
    assert len(load(paths["valid"], format="steer")[0]) == 10
    labels = [m["attributes"] for r in a for m in r["messages"] if m["role"] == "assistant"]
    assert all(set(x) == set(synth.SCHEMA.names) for x in labels)


def test_evaluation_prompts_come_from_another_stream():
    train = [r["messages"][0]["content"] for r in synth.corpus(20, seed=0)]
    evals = [q["prompt"] for q in synth.prompts(20, seed=0)]
    assert evals == [q["prompt"] for q in synth.prompts(20, seed=0)]  # the same seed, the same prompts
    assert [q["prompt"] for q in synth.prompts(20, seed=1)] != evals
    assert evals != train  # another random stream than the training rows, over the same closed world
    facts = synth.world(0).entities
    assert all(q["facts"] == facts[q["subject"]] for q in synth.prompts(20, seed=0) if q["subject"] in facts)


def test_cli_data_synth(tmp_path):
    import json

    from tests.conftest import invoke_cli

    out = invoke_cli("data", "synth", "--out", str(tmp_path / "s"), "-n", "60", "--valid", "6", "--prompts", "7",
                     "--vocab", "400")
    assert out.returncode == 0, out.stderr
    for name in ("train.jsonl", "valid.jsonl", "prompts.jsonl", "tokenizer/tokenizer.json"):
        assert (tmp_path / "s" / name).is_file(), name
    rows = [json.loads(line) for line in (tmp_path / "s/prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and all({"prompt", "field", "subject", "facts"} <= set(r) for r in rows)
    assert [r["prompt"] for r in rows] == [q["prompt"] for q in synth.prompts(7, seed=0)]
    assert len((tmp_path / "s/train.jsonl").read_text().splitlines()) == 60


def test_tokenizer_gives_each_attribute_level_one_token(tmp_path):
    """The synthetic tokenizer keeps its vocabulary size, encodes every name:level pair as one token,
    and round-trips a rendered SteerLM example."""
    from transformers import AutoTokenizer

    paths = synth.write_dataset(tmp_path, 200, seed=0, vocab_size=400)
    tok = AutoTokenizer.from_pretrained(str(paths["tokenizer"]))
    assert len(tok) == 400
    for piece in synth.ATTRIBUTE_TOKENS:
        assert len(tok(piece, add_special_tokens=False)["input_ids"]) == 1, piece
    line = "<extra_id_2>helpfulness:4,correctness:0,coherence:4,complexity:2,verbosity:2\nZubex is red.\n<extra_id_1>"
    ids = tok(line, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == line
    assert tok.convert_ids_to_tokens(ids)[1:10] == ["helpfulness:4", ",", "correctness:0", ",", "coherence:4", ",",
                                                    "complexity:2", ",", "verbosity:2"]
