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
    assert len(requests) == 10 and {r.steering.resolved(schema)["complexity"] for r in requests} == {2}
    assert [r.steering.resolved(schema)["verbosity"] for r in requests] == [r.level for r in requests]
    assert [r.level for r in requests] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    realised = [{"verbosity": r.level * 10 + r.prompt_index, "complexity": 2 + (r.level == 4)} for r in requests]
    out = summarize(requests, realised, schema)["verbosity"]
    assert out["spearman"] > 0.98 and out["monotonicity_violations"] == 0  # < 1 only through ties in requested
    assert out["levels"][0] == {"requested": 0, "realised": 0.5, "words": None, "judged": 2}
    assert out["side_effects"]["complexity"] == 1.0
    assert monotonicity_violations([1, 2, 1.5, 3, None, 2]) == 2
    noisy = summarize([Request("verbosity", 0, 0, {}), Request("verbosity", 1, 0, {})], [{"verbosity": None}, {}], schema)
    assert noisy["verbosity"]["spearman"] is None


@pytest.mark.slow  # CLI processes end to end: the default suite stays under 6 minutes
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
    prompted = run_cli("eval", "steerability", model, "--template", "janus", "--prompts", str(prompts), "--by", "instructions",
                       "--judge", "length,fkgl", "--max-new-tokens", "4", "--json")
    assert prompted.returncode == 0, prompted.stderr
    data = json.loads(prompted.stdout)
    assert data["by"] == "instructions" and set(data["attributes"]) == {"verbosity", "complexity"}
    mixed = run_cli("eval", "steerability", model, "--prompts", str(prompts), "--instructions", "x.json", "--judge", "length")
    assert mixed.returncode == 2 and "--instructions needs --method prompt or values" in mixed.stderr
    prompts.write_text('{"prompt": "ok"}\n{not json\n')
    bad = run_cli("eval", "steerability", model, "--prompts", str(prompts), "--judge", "length")
    assert bad.returncode == 2 and "p.jsonl:2: invalid JSON" in bad.stderr


def test_value_matching_by_hand():
    from steer.evaluate.values import judged, matching, score_matrix

    values = ["be terse", "be thorough"]
    prompts = [[{"role": "system", "content": "ignored"}, {"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]
    answers = [["a", "a long answer"], ["b", "bb"]]
    seen = []

    def scorer(convs):  # terse statements like short answers, thorough ones long answers
        seen.extend(convs)
        return [(-1 if c[0]["content"] == "be terse" else 1) * len(c[-1]["content"]) for c in convs]

    scores = score_matrix(prompts, values, answers, scorer)
    assert scores[0] == [[-1, 1], [-13, 13]] and scores[1] == [[-1, 1], [-2, 2]]
    assert seen[0] == judged(prompts[0], "be terse", "a") == [
        {"role": "system", "content": "be terse"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}]
    m = matching(scores, values)
    # answers written under "be terse" score lower under it (-1 < 1): they lose; the thorough ones win
    assert m["comparisons"] == 4 and m["matched_win_rate"] == 0.5 and m["best_match_rate"] == 0.5
    assert [v["win_rate"] for v in m["per_value"]] == [0.0, 1.0]
    assert m["mean_matched"] == (-1 + 13 - 1 + 2) / 4 and m["mean_mismatched"] == (1 - 13 + 1 - 2) / 4
    tie = matching([[[1.0, 1.0], [1.0, 1.0]]], values)
    assert tie["matched_win_rate"] == 0.5 and tie["best_match_rate"] == 0.0


def test_read_values_errors(tmp_path):
    from steer.evaluate.judges import make_scorer
    from steer.evaluate.values import read_values

    path = tmp_path / "v.jsonl"
    path.write_text('{"value": "be terse"}\n{"system": "be thorough"}\n')
    assert read_values(str(path)) == ["be terse", "be thorough"]
    path.write_text('{"value": "only one"}\n')
    with pytest.raises(UsageError, match="at least two"):
        read_values(str(path))
    path.write_text('{"value": "a"}\n{"other": 1}\n')
    with pytest.raises(UsageError, match=r"v.jsonl:2: needs a non-empty 'value'"):
        read_values(str(path))
    with pytest.raises(UsageError, match="no such file"):
        read_values(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UsageError, match="unknown judge"):
        make_scorer("oracle")


def test_reward_model_scorer(tmp_path, shared_assets):
    """rm:PATH: a sequence-classification model scores conversations through its own chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from steer.evaluate.judges import reward_model_scorer

    folder = next((p for p in sorted((shared_assets / "tokenizers").iterdir()) if (p / "chat_template.jinja").is_file()), None)
    if folder is None:
        pytest.skip("no tokenizer with a chat template in the shared assets")
    tok = AutoTokenizer.from_pretrained(str(folder))
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                                       num_hidden_layers=1, num_attention_heads=4, num_labels=1))
    model.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    score = reward_model_scorer(str(tmp_path / "rm"), batch_size=2)
    convs = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x" * n}] for n in (1, 5, 9)]
    batched = score(convs)
    alone = [score([c])[0] for c in convs]  # padding does not change a score
    assert len(batched) == 3 and batched == pytest.approx(alone, abs=1e-4) and len(set(batched)) == 3


class PromptedEngine:
    """A schema-less chat model (steered by system messages only) that writes as many words as the
    digit its system message ends with, or 'n/a': what a prompted model does, made exact."""

    def __init__(self, template_kind: str = "janus"):
        from steer.templates import build_template

        base = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
        self.template = build_template(template_kind, schema=None, base=base)
        self.seen: list[str] = []

    def generate(self, prompts, sampling, slots=None):
        import re

        from steer.engines.base import Response

        self.seen += [p.text for p in prompts]
        out = []
        for p in prompts:
            level = re.search(r"<\|system\|>.*level (\d)", p.text)
            out.append(Response(" ".join(["word"] * (int(level.group(1)) + 1)) if level else "n/a", [1], "stop", 3, 1, 0.1))
        return out


def test_the_prompting_baseline_sweeps_a_model_without_a_schema(tmp_path):
    from steer.engines.base import Sampling
    from steer.evaluate import instructions, steerability

    table = {"verbosity": {lvl: f"Write at level {lvl}." for lvl in range(5)},
             "complexity": {lvl: f"Use words of level {4 - lvl}." for lvl in range(5)}}
    engine = PromptedEngine()
    judge, measured = make_judge("length,fkgl")
    assert measured == ("verbosity", "complexity")
    result = steerability.run(engine, [{"prompt": "Hi"}, {"prompt": "Yo"}], judge, ["verbosity", "complexity"],
                              Sampling(temperature=0.0, max_new_tokens=8), instructions=table)
    assert "<|system|>Write at level 0.\n<|user|>Hi\n<|assistant|>" in engine.seen  # the instruction is the system message
    assert [lv["realised"] for lv in result.summary["verbosity"]["levels"]] == [4, 9, 14, 19, 24]
    assert result.summary["verbosity"]["spearman"] == pytest.approx(1.0)
    assert result.summary["complexity"]["spearman"] < 0  # this table asks backwards: the sweep says so
    assert all(set(j) == {"verbosity", "complexity"} for j in result.judged)
    with pytest.raises(UsageError, match="no attribute schema"):  # by attributes it cannot be swept
        steerability.run(engine, [{"prompt": "Hi"}], judge, ["verbosity"], Sampling(temperature=0.0))
    with pytest.raises(UsageError, match=r"no instruction for verbosity at level\(s\) 3, 4"):
        steerability.run(engine, [{"prompt": "Hi"}], judge, ["verbosity"], Sampling(temperature=0.0),
                         instructions={"verbosity": {0: "a", 1: "b", 2: "c"}})
    assert set(instructions.INSTRUCTIONS) == {"verbosity", "complexity"}
    assert all(sorted(levels) == [0, 1, 2, 3, 4] for levels in instructions.INSTRUCTIONS.values())


def test_instruction_files_and_judge_combinations_are_checked(tmp_path):
    from steer.evaluate.instructions import load

    good = tmp_path / "i.json"
    good.write_text(json.dumps({"verbosity": {"0": "Short.", "4": "Long."}}))
    assert load(str(good)) == {"verbosity": {0: "Short.", 4: "Long."}}
    for text, needle in (("{nope", "not valid JSON"), ("[]", "must be an object"), ('{"verbosity": {"x": "a"}}', "integer level"),
                         ('{"verbosity": {"1": ""}}', "integer level with a text"), ('{"verbosity": 3}', "must map levels")):
        good.write_text(text)
        with pytest.raises(UsageError, match=needle):
            load(str(good))
    with pytest.raises(UsageError, match="cannot read"):
        load(str(tmp_path / "none.json"))
    with pytest.raises(UsageError, match="only judges of named attributes combine"):
        make_judge("length,oracle")
    with pytest.raises(UsageError, match="unknown judge"):
        make_judge("length,vibes")
    with pytest.raises(UsageError, match="more than one judge measures verbosity"):
        make_judge("length,fkgl,length")
