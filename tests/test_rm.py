"""Reward and cost models (``steer train rm|cost``), ``steer eval pairs``, the rm:/cost: judges, and
best-of-N generation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from steer.data.loader import load
from steer.errors import UsageError
from steer.train.score_loss import bradley_terry, cost_loss, sign_term
from tests import fixtures
from tests.conftest import REPO, invoke_cli, run_cli

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512}
T = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
LS = lambda x: math.log(1 / (1 + math.exp(-x)))  # noqa: E731  (log sigmoid)


def test_bradley_terry_by_hand_with_strength_as_margin_or_weight():
    c, r, s = T(2.0, -1.0), T(0.5, 0.0), T(2.0, 1.0)
    assert bradley_terry(c, r).tolist() == pytest.approx([-LS(1.5), -LS(-1.0)])
    assert bradley_terry(c, r, s, "margin").tolist() == pytest.approx([-LS(1.5 - 2.0), -LS(-1.0 - 1.0)])
    assert bradley_terry(c, r, s, "weight").tolist() == pytest.approx([-2.0 * LS(1.5), -1.0 * LS(-1.0)])


def test_cost_loss_by_hand_the_less_safe_costs_more_and_signs_follow_labels():
    safer, unsafer = T(-1.0, 0.5), T(2.0, 1.0)
    s_safer, s_unsafer = T(-1.0, 0.0), T(1.0, 1.0)  # pair 2: the safer side's label is unknown
    w = T(1.0, 3.0)  # severity weights of the unsafer sides
    got = cost_loss(safer, unsafer, s_safer, s_unsafer, sign_weight=0.5, unsafer_weight=w).tolist()
    want = [-LS(2.0 - -1.0) + 0.5 * (-LS(-1.0 * -1.0) - LS(1.0 * 2.0)),
            -LS(1.0 - 0.5) + 0.5 * (0.0 - 3.0 * LS(1.0 * 1.0))]
    assert got == pytest.approx(want)
    assert sign_term(T(3.0), T(0.0)).tolist() == [0.0]  # no label: no term


def test_length_balance_keeps_as_many_longer_wins_as_losses_per_bin():
    from steer.train.tasks.rm import balance_by_length

    lengths = [(10, 5), (12, 6), (30, 10), (5, 10), (7, 7), (20, 19), (19, 20), (21, 20)]
    keep, counts = balance_by_length(lengths, seed=0)
    kept = [lengths[k] for k in keep]
    assert (7, 7) in kept and counts == {"pairs": 8, "kept": len(keep), "dropped": 8 - len(keep)}
    for low, high in ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 1.01)):
        inside = [(c, r) for c, r in kept if c != r and low <= abs(c - r) / max(c, r) < high]
        assert sum(c > r for c, r in inside) == sum(c < r for c, r in inside)
    assert len(keep) == 5  # (7,7); one of (20,19)/(21,20) with (19,20); one of (10,5)/(12,6)/(30,10) with (5,10)


def test_pku_pairs_carry_each_side_s_sign_and_severity(tmp_path):
    from steer.train.tasks.cost import safety_columns

    pairs = [r for r in load(fixtures.write(fixtures.pku_rows(), tmp_path / "pku.jsonl"))[0] if r.kind == "preference"]
    harmless = next(p for p in pairs if p.id == "pku:1:harmlessness")
    assert safety_columns(harmless) == {"chosen_sign": [-1.0], "chosen_severity": [0.0], "rejected_sign": [1.0],
                                        "rejected_severity": [2.0]}
    assert safety_columns(pairs[0].__class__(id="x", prompt=[], chosen="a", rejected="b", axis="h")) == {
        "chosen_sign": [0.0], "chosen_severity": [0.0], "rejected_sign": [0.0], "rejected_severity": [0.0]}


def _recipe(tmp_path, kind, data, valid, **section):
    recipe = {"kind": kind, "model": {"from_scratch": TINY, "tokenizer": str(REPO.parent / "shared/assets/models/stories260k")},
              "template": {"kind": "steerlm"},
              "data": {"sources": [{"path": str(data)}], "validation": [{"path": str(valid)}], "max_length": 256,
                       "cache_dir": str(tmp_path / "cache")},
              "train": {"method": "full", "epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "save_steps": 10,
                        "lr_scheduler": "constant", "warmup_ratio": 0.0,  # the first steps do not depend on max_steps
                        "eval_steps": 1000, "logging_steps": 5, "output_dir": str(tmp_path / kind)},
              kind: section}
    path = tmp_path / f"{kind}.yaml"
    path.write_text(json.dumps(recipe))
    return path


@pytest.mark.slow  # 30 s: three runs (CI runs it with -m slow)
def test_cost_model_learns_safety_resumes_exactly_and_exports_the_same_scores(tmp_path, shared_assets):
    """On PKU-shaped rows where safety is in the text: held-out pairwise and sign accuracy; a resumed run
    equals an uninterrupted one; the export scores as the run does."""
    from steer import synth_safety
    from steer.apm import Scorer

    data, valid = (synth_safety.write(tmp_path / n, k, seed=s) for n, k, s in (("pku.jsonl", 200, 0), ("v.jsonl", 40, 1)))
    path = _recipe(tmp_path, "cost", data, valid, severity=True)
    first = run_cli("train", "cost", str(path), "--json", "--set", "train.max_steps=10")
    assert first.returncode == 0, first.stderr[-2000:]
    done = run_cli("train", "cost", str(path), "--json", "--resume", "last", "--set", "train.max_steps=30")
    assert done.returncode == 0, done.stderr[-2000:]
    from steer.config import load_recipe
    from steer.evaluate.pairs import evaluate
    from steer.train import train

    train(load_recipe(path, ["train.max_steps=30", f"train.output_dir={tmp_path / 'straight'}"]))  # in one go
    result = json.loads(done.stdout)
    assert result["kind"] == "cost" and result["resumed_from"].endswith("checkpoint-10")
    assert result["train_loss"] is not None
    report = evaluate(str(tmp_path / "cost"), str(valid))
    assert report["kind"] == "cost" and report["other_axes"] == report["pairs"] == 40  # helpfulness pairs left out
    assert report["accuracy"] >= 0.85 and report["sign"]["accuracy"] >= 0.9  # measured: 0.95 and 1.00
    assert set(report["sign"]["by_level"]) <= {"safe", "severity 1", "severity 2", "severity 3"}
    exported = tmp_path / "exported"
    assert run_cli("export", str(tmp_path / "cost"), "--out", str(exported)).returncode == 0
    convs = [[{"role": "user", "content": "Question 7: how do I do the risky thing number 3?"},
              {"role": "assistant", "content": text + " (ref 7-0)"}]
             for text in (synth_safety.SAFE_REPLIES[0], synth_safety.UNSAFE_REPLIES[0])]
    run, out, again = ([row[0] for row in Scorer.load(p, kinds=("cost",)).predict(convs)]
                       for p in (tmp_path / "cost", exported, tmp_path / "straight"))
    assert out == pytest.approx(run, abs=1e-5) and again == pytest.approx(run, abs=1e-4)  # resume == uninterrupted
    assert run[0] < 0 < run[1]  # the declining reply is safe (cost < 0), the complying one unsafe
    with pytest.raises(UsageError, match="is not a reward model"):
        Scorer.load(tmp_path / "cost", kinds=("rm",))


def test_reward_model_on_any_pair_source_with_scaled_bt_and_length_balance(tmp_path):
    from steer.apm import AttributeModel, Scorer

    rows = fixtures.helpsteer2_preference_rows() * 8
    data = fixtures.write(rows, tmp_path / "pref.jsonl")
    path = _recipe(tmp_path, "rm", data, data, strength="weight", length_balance="bins", regularization=0.01)
    done = invoke_cli("train", "rm", str(path), "--json", "--set", "train.epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = [json.loads(line) for line in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert any("length_balance/kept" in m for m in metrics) and any("rewards/accuracy" in m for m in metrics)
    spec = json.loads((tmp_path / "rm" / "steer.json").read_text())
    assert spec["kind"] == "rm" and spec["rm"]["outputs"] == ["reward"]
    model = Scorer.load(tmp_path / "rm", kinds=("rm",))
    assert type(model.model) is AttributeModel and model.names == ["reward"]  # the APM's head module
    from steer.evaluate.length_bias import evaluate as length_bias

    bias = length_bias(str(data), apm=str(tmp_path / "rm"))  # a reward model's length bias, as the APM's
    assert bias["scores"].startswith("rm:") and set(bias["correlation"]) == {"reward"}


def test_judges_and_best_of_refuse_what_they_cannot_use(tmp_path):
    from steer.evaluate.judges import make_judge
    from steer.generate.best_of import make

    with pytest.raises(UsageError, match="not a steer run directory|not a directory"):
        make_judge(f"cost:{tmp_path}")
    with pytest.raises(UsageError, match="--max-cost needs --cost"):
        make(3, "length", max_cost=0.0)
    with pytest.raises(UsageError, match="expected cost:PATH"):
        make(3, "length", cost="rm:x")
    with pytest.raises(UsageError, match="needs one score"):
        make(3, "oracle")
    with pytest.raises(UsageError, match="needs --judge"):
        make(3, None)


def test_best_of_picks_the_highest_score_within_the_cost_threshold():
    from steer.engines.base import Response
    from steer.generate.best_of import BestOf, choose

    def answers(*texts):
        return [Response(t, [], "stop", 1, 1, 0.0) for t in texts]

    score = lambda rows, texts: [{"verbosity": len(t)} for t in texts]  # noqa: E731
    cost = lambda rows, texts: [{"cost": 1.0 if "bad" in t else -1.0} for t in texts]  # noqa: E731
    best = BestOf(3, score, "verbosity", cost, 0.0)
    ((k, cands), (k2, cands2)) = choose(best, [{"prompt": "a"}, {"prompt": "b"}],
                                        [answers("ok", "a bad long one", "fine ok"), answers("bad", "very bad")])
    assert k == 2 and [c["within_cost"] for c in cands] == [True, False, True]
    assert k2 == 0 and not any(c["within_cost"] for c in cands2)  # none within: the least costly (a tie: the first)
    assert BestOf(2, score, "verbosity").check is not None
    with pytest.raises(UsageError, match="temperature"):
        BestOf(2, score, "verbosity").check(__import__("steer.engines.base", fromlist=["Sampling"]).Sampling(temperature=0))


@pytest.mark.slow  # five CLI processes: the default suite stays under 6 minutes
def test_cli_generate_and_batch_best_of_with_a_length_judge(tmp_path, shared_assets):
    model = str(shared_assets / "models/stories260k")
    done = run_cli("generate", model, "Once upon a time", "--template", "steerlm", "--best-of", "4", "--judge", "length",
                   "--temperature", "1.0", "--seed", "0", "--max-new-tokens", "12", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    cands = out["best_of"]["candidates"]
    assert len(cands) == 4 and out["text"] == cands[out["best_of"]["chosen"]]["text"]
    assert out["best_of"]["score"] == "verbosity" and len(out["text"]) == max(len(c["text"]) for c in cands)
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"id": "a", "prompt": "The cat"}\n{"id": "b", "prompt": "A dog"}\n')
    out_file = tmp_path / "out.jsonl"
    batch = run_cli("batch", model, "-i", str(rows), "-o", str(out_file), "--template", "steerlm", "--best-of", "3",
                    "--judge", "length", "--temperature", "1.0", "--seed", "0", "--max-new-tokens", "8")
    assert batch.returncode == 0, batch.stderr[-2000:]
    written = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [len(r["best_of"]["candidates"]) for r in written] == [3, 3]
    assert all(r["text"] == r["best_of"]["candidates"][r["best_of"]["chosen"]]["text"] for r in written)
    other = run_cli("batch", model, "-i", str(rows), "-o", str(out_file), "--template", "steerlm", "--best-of", "4",
                    "--judge", "length", "--temperature", "1.0", "--seed", "0", "--max-new-tokens", "8")
    assert other.returncode == 2 and "best_of" in other.stderr  # another N is another run, not "already done"
    alone = run_cli("generate", model, "Hi", "--template", "steerlm", "--judge", "length")
    assert alone.returncode == 2 and "give --best-of" in alone.stderr


@pytest.mark.slow
def test_recipe_synth_rm_ranks_held_out_pairs_and_judges_answers(quickstart_fast, tmp_path):
    """recipes/tiny/synth-rm.yaml from the quickstart's model: held-out accuracy on right-vs-wrong pairs,
    near chance on the length-only control; then as a judge: steer label and best-of-N."""
    from steer.synth_pairs import write_pairs

    model = str(quickstart_fast[0] / "model")
    pairs, valid = write_pairs(tmp_path / "p.jsonl", 400), write_pairs(tmp_path / "v.jsonl", 60, stream=1)
    longer = write_pairs(tmp_path / "l.jsonl", 60, kind="longer", stream=1)
    done = run_cli("train", "rm", str(REPO / "recipes/tiny/synth-rm.yaml"), "--json",
                   "--set", f"model.name_or_path={model}", "--set", f"data.sources.0.path={pairs}",
                   "--set", f"data.validation.0.path={valid}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                   "--set", f"train.output_dir={tmp_path / 'rm'}", timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rm = str(tmp_path / "rm")
    right = json.loads(run_cli("eval", "pairs", rm, "--pairs", str(valid), "--json").stdout)
    control = json.loads(run_cli("eval", "pairs", rm, "--pairs", str(longer), "--json").stdout)
    assert right["accuracy"] >= 0.8  # measured: 0.95
    assert control["longer_wins"]["accuracy"] == 1.0 and control["accuracy"] < 0.8  # length alone is not rewarded
    labelled = tmp_path / "labelled.jsonl"
    assert run_cli("label", rm, "-i", str(valid), "-o", str(labelled)).returncode == 0
    first = json.loads(labelled.read_text().splitlines()[0])
    assert set(first["labels"]["chosen"]) == {"reward"}
    best = run_cli("generate", model, "How old is Zubex?", "--best-of", "4", "--judge", f"rm:{rm}", "--temperature", "1",
                   "--seed", "0", "--json")
    assert best.returncode == 0, best.stderr[-2000:]
    assert {"reward"} <= set(json.loads(best.stdout)["best_of"]["candidates"][0])


def test_steerability_reports_how_a_reward_or_cost_moves_as_a_side_effect():
    """``--judge length,rm:PATH``: sweeping verbosity also shows how the reward moves (is length rewarded?)."""
    from steer.attributes import get_schema
    from steer.evaluate.steerability import Request, summarize

    requests = [Request("verbosity", level, 0, {}) for level in (0, 4)]
    realised = [{"verbosity": 10, "reward": -1.0, "cost": 0.5}, {"verbosity": 90, "reward": 2.0, "cost": 0.25}]
    side = summarize(requests, realised, get_schema("helpsteer"))["verbosity"]["side_effects"]
    assert side == {"reward": 3.0, "cost": 0.25}


def test_guard_regenerates_under_a_safer_steering_then_refuses():
    from steer.attributes import get_schema
    from steer.engines.base import Response
    from steer.generate.guard import SAFETY_VALUE, Guard
    from steer.steering import Steering

    seen: list[Steering] = []

    def generate(steering):
        seen.append(steering)
        return Response("safe now" if len(seen) == 2 else "unsafe", [], "length", 1, 1, 0.0)

    cost = lambda convs: [(-1.0 if c[-1]["content"] == "safe now" else 2.0) for c in convs]  # noqa: E731
    guard = Guard(cost, max_cost=0.0, rounds=2, refusal="No.")
    out = guard.run([{"role": "user", "content": "x"}], Steering(values=["Be brief."]), get_schema("helpsteer"), generate)
    assert out.to_json() == {"rounds": 2, "costs": [2.0, -1.0], "tokens": [1, 1], "refused": False}
    assert out.response.text == "safe now"
    assert seen[1].values == ["Be brief.", SAFETY_VALUE]  # no harmlessness attribute: the value statement
    seen.clear()
    safety = get_schema("safety")
    always = Guard(lambda convs: [5.0] * len(convs), max_cost=0.0, rounds=1, refusal="No.")
    refused = always.run([{"role": "user", "content": "x"}], Steering(attributes={"harmlessness": 0}), safety, generate)
    assert refused.refused and refused.response.text == "No." and refused.costs == [5.0, 5.0]
    assert seen[1].attributes["harmlessness"] == safety.get("harmlessness").max


@pytest.fixture(scope="module")
def tiny_cost(tmp_path_factory, shared_assets):
    """A cost model trained for a few steps (the guard's mechanics do not need a good one)."""
    from steer import synth_safety
    from steer.config import load_recipe
    from steer.train import train

    tmp = tmp_path_factory.mktemp("cost")
    data = synth_safety.write(tmp / "pku.jsonl", 40)
    train(load_recipe(_recipe(tmp, "cost", data, data), ["train.max_steps=3", "data.validation=[]"]))
    return tmp / "cost"


@pytest.mark.slow  # a server process of its own
def test_serve_guard_through_the_openai_client_buffers_and_refuses(tiny_cost, shared_assets):
    """Every answer over an impossible threshold: regenerated once, then the refusal, in the ``steer`` field
    of the response; a streamed answer is released only after the guard, in one piece."""
    import httpx
    from openai import OpenAI

    from tests.test_serve import _start

    bad = run_cli("serve", str(shared_assets / "models/stories260k"), "--guard", "rm:x")
    assert bad.returncode == 2 and "expected cost:PATH" in bad.stderr
    proc, base = _start(str(shared_assets / "models/stories260k"), "--guard", f"cost:{tiny_cost}", "--max-cost", "-1000",
                        "--guard-rounds", "1", "--refusal", "Sorry, no.", "--name", "tiny")
    try:
        client = OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Once upon a time"}],
                                             max_tokens=8, temperature=0)
        assert out.choices[0].message.content == "Sorry, no."
        guard = out.model_extra["steer"]["guard"]
        assert guard["rounds"] == 2 and guard["refused"] and len(guard["costs"]) == 2
        pieces = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                     max_tokens=8, temperature=0, stream=True))
        assert "".join(p.choices[0].delta.content or "" for p in pieces) == "Sorry, no."
        assert pieces[-1].model_extra["steer"]["guard"]["refused"]
        plain = httpx.post(base + "/v1/completions", json={"prompt": "Once", "max_tokens": 4}, timeout=30)
        assert plain.status_code == 200 and plain.json()["choices"][0]["text"] == "Sorry, no."  # no way around it
        assert plain.json()["steer"]["guard"]["rounds"] == 2
        no_judge = httpx.post(base + "/v1/completions", json={"prompt": "Once", "max_tokens": 4, "best_of": 2}, timeout=30)
        assert no_judge.status_code == 400 and "--judge" in no_judge.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow  # CLI processes and a module fixture's training run
def test_chat_guard_shows_only_what_passed(tiny_cost, shared_assets):
    done = run_cli("chat", str(shared_assets / "models/stories260k"), "--template", "steerlm", "--guard",
                   f"cost:{tiny_cost}", "--max-cost", "-1000", "--guard-rounds", "0", "--refusal", "Nope.",
                   "--max-new-tokens", "8", input="Once upon a time\n/quit\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Nope." in done.stdout and "(guard: 1 rounds" in done.stdout and "refused" in done.stdout
    alone = run_cli("chat", str(shared_assets / "models/stories260k"), "--max-cost", "0", input="/quit\n")
    assert alone.returncode == 2 and "--max-cost needs --guard" in alone.stderr
    screened = run_cli("chat", str(shared_assets / "models/stories260k"), "--template", "steerlm", "--guard",
                       f"cost:{tiny_cost}", "--guard-prompts", "--max-cost", "-1000", "--refusal", "Nope.",
                       "--max-new-tokens", "8", input="Once upon a time\n/quit\n")
    assert screened.returncode == 0, screened.stderr[-2000:]
    assert "Nope." in screened.stdout and "(guard: the prompt was refused, its cost" in screened.stdout
    bare = run_cli("chat", str(shared_assets / "models/stories260k"), "--guard-prompts", input="/quit\n")
    assert bare.returncode == 2 and "--guard-prompts needs --guard" in bare.stderr


@pytest.mark.slow  # a server process of its own
def test_serve_best_of_with_a_cost_model_and_a_prompt_screen(tiny_cost, shared_assets):
    """``--judge length --cost cost:PATH``: each best_of candidate carries its cost and whether it is within
    --max-cost; ``--guard-prompts`` reports the prompt's cost; ``--cost`` without ``--judge`` is refused."""
    from openai import OpenAI

    from tests.test_serve import _start

    lone = run_cli("serve", str(shared_assets / "models/stories260k"), "--cost", f"cost:{tiny_cost}")
    assert lone.returncode == 2 and "--cost ranks a request's best_of answers: it needs --judge" in lone.stderr
    proc, base = _start(str(shared_assets / "models/stories260k"), "--judge", "length", "--cost", f"cost:{tiny_cost}",
                        "--guard", f"cost:{tiny_cost}", "--guard-prompts", "--max-cost", "1000", "--name", "tiny")
    try:
        client = OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Once upon a time"}],
                                             max_tokens=12, temperature=1.0, seed=3, extra_body={"best_of": 3})
        steer = out.model_extra["steer"]
        cands = steer["best_of"]["candidates"]
        assert len(cands) == 3 and all(isinstance(c["cost"], float) and c["within_cost"] for c in cands)
        assert out.choices[0].message.content == max((c["text"] for c in cands), key=len)
        assert isinstance(steer["guard"]["prompt_cost"], float) and not steer["guard"]["refused"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_reward_model_resumes_exactly_and_plain_transformers_reproduce_its_scores(tmp_path, shared_assets):
    """A run killed after its checkpoint and resumed ends where an uninterrupted one does; the backbone
    (``AutoModel``) and the head file reproduce the reward outside steer."""
    from safetensors.torch import load_file
    from transformers import AutoModel, TrainerCallback

    from steer.apm import HEAD_FILE, Scorer
    from steer.config import load_recipe
    from steer.train import train

    data = fixtures.write(fixtures.helpsteer2_preference_rows() * 12, tmp_path / "pref.jsonl")
    path = _recipe(tmp_path, "rm", data, data, strength="margin")
    settings = ["train.max_steps=6", "train.save_steps=3", "data.validation=[]"]
    straight = train(load_recipe(path, [*settings, f"train.output_dir={tmp_path / 'straight'}"]))

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    broken = load_recipe(path, [*settings, f"train.output_dir={tmp_path / 'broken'}"])
    with pytest.raises(KeyboardInterrupt):
        train(broken, callbacks=[Crash()])
    resumed = train(broken, resume=True)
    assert resumed.resumed_from.endswith("checkpoint-3") and resumed.steps == 6
    rm = Scorer.load(straight.run_dir, kinds=("rm",))
    conv = [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}]
    [[ours]] = rm.predict([conv])
    [[again]] = Scorer.load(resumed.run_dir, kinds=("rm",)).predict([conv])
    assert again == pytest.approx(ours, abs=1e-5)  # the same weights at the end
    backbone = AutoModel.from_pretrained(str(straight.run_dir)).eval()
    head = load_file(str(straight.run_dir / HEAD_FILE))
    ids = rm.tokenizer(rm.texts([conv])[0], add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        last = backbone(input_ids=ids).last_hidden_state[0, -1]
    assert float(head["weight"][0] @ last + head["bias"][0]) == pytest.approx(ours, abs=1e-4)


def test_rm_and_cost_judges_in_data_pairs_and_eval_values(tmp_path, shared_assets):
    """A steer reward model ranks answers for ``steer data pairs --judge rm:`` and scores for ``eval values``;
    an APM or cost run given as rm: is a one-line error."""
    from steer.config import load_recipe
    from steer.data.pairs import derive, parse_by
    from steer.evaluate.judges import make_judge, make_scorer
    from steer.train import train

    data = fixtures.write(fixtures.helpsteer2_preference_rows() * 4, tmp_path / "pref.jsonl")
    run = train(load_recipe(_recipe(tmp_path, "rm", data, data), ["train.max_steps=2", "data.validation=[]"])).run_dir
    judge, names = make_judge(f"rm:{run}")
    assert names == ("reward",)
    answers = load(fixtures.write(fixtures.steer_batch_rows(), tmp_path / "b.jsonl"))[0]
    pairs, report = derive(answers, parse_by("reward"), judge=judge)
    assert report.groups == 2 and report.dropped.get("unscored (no reward)", 0) == 0
    scorer, name = make_scorer(f"rm:{run}")
    assert name == "reward" and len(scorer([[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]])) == 1
    with pytest.raises(UsageError, match="is not a cost model"):
        make_scorer(f"cost:{run}")


@pytest.mark.slow  # a server process of its own
def test_serve_best_of_through_the_openai_client(shared_assets):
    """``steer serve --judge length``: a request's ``best_of`` samples that many answers, keeps the best, and
    lists every candidate in the ``steer`` field; bad values are 400s naming the parameter."""
    import httpx
    from openai import OpenAI

    from tests.test_serve import _start

    proc, base = _start(str(shared_assets / "models/stories260k"), "--judge", "length", "--max-best-of", "4",
                        "--name", "tiny")
    try:
        client = OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Once upon a time"}],
                                             max_tokens=12, temperature=1.0, seed=3, extra_body={"best_of": 3})
        best = out.model_extra["steer"]["best_of"]
        assert len(best["candidates"]) == 3 and best["score"] == "verbosity"
        assert out.choices[0].message.content == best["candidates"][best["chosen"]]["text"]
        assert len(out.choices[0].message.content) == max(len(c["text"]) for c in best["candidates"])
        done = client.completions.create(model="tiny", prompt="The cat", max_tokens=6, temperature=1.0, best_of=2)
        assert len(done.model_extra["steer"]["best_of"]["candidates"]) == 2
        for bad, word in (({"best_of": 9, "temperature": 1.0}, "from 1 to 4"), ({"best_of": 2, "temperature": 0}, "temperature 0")):
            reply = httpx.post(base + "/v1/completions", json={"prompt": "A", "max_tokens": 4, **bad}, timeout=30)
            assert reply.status_code == 400 and word in reply.json()["error"]["message"], reply.text
        plain = client.completions.create(model="tiny", prompt="The cat", max_tokens=4, temperature=0)
        assert "steer" not in (plain.model_extra or {})  # without best_of: the usual path
    finally:
        proc.terminate()
        proc.wait(30)


def _unsafe(text: str) -> bool:
    """The synthetic world's oracle: an answer is unsafe when it opens as a complying reply does."""
    from steer import synth_safety

    return any(text.startswith(reply[:8]) for reply in synth_safety.UNSAFE_REPLIES)


@pytest.mark.slow
def test_a_guarded_model_answers_unsafely_less_often(tmp_path, shared_assets):
    """A SteerLM model with the safety schema, trained on PKU-shaped rows, asked for harmlessness 0: the
    guard (a cost model trained on the same rows) regenerates at harmlessness 3 and the unsafe rate
    (by the oracle) falls; the extra rounds' tokens are counted."""
    from steer import synth_safety
    from steer.config import load_recipe
    from steer.engines.base import Sampling
    from steer.engines.hf import HFEngine
    from steer.evaluate.judges import make_scorer
    from steer.generate.guard import Guard
    from steer.steering import Steering, steering_prompt
    from steer.train import train

    data = synth_safety.write(tmp_path / "pku.jsonl", 300)
    sft = _recipe(tmp_path, "sft", data, data)
    recipe = json.loads(sft.read_text())
    recipe["template"]["schema"] = "safety"
    recipe.pop("sft")
    recipe["model"]["from_scratch"] = {**TINY, "hidden_size": 64, "intermediate_size": 128}
    sft.write_text(json.dumps(recipe))
    policy = train(load_recipe(sft, ["data.validation=[]", "train.epochs=6"])).run_dir
    cost = train(load_recipe(_recipe(tmp_path, "cost", data, data), ["data.validation=[]"])).run_dir
    engine = HFEngine.load(str(policy))
    scorer, _ = make_scorer(f"cost:{cost}")
    guard = Guard(scorer, max_cost=0.0, rounds=2)
    sampling = Sampling(temperature=0.5, max_new_tokens=16, seed=0)
    prompts = [[{"role": "user", "content": row["prompt"]}] for row in synth_safety.rows(40, seed=9)]
    asked = Steering(attributes={"harmlessness": 0})

    def generate(steering, messages):
        return engine.generate([steering_prompt(engine.template, messages, steering)], sampling)[0]

    plain = [generate(asked, m) for m in prompts]
    guarded = [guard.run(m, asked, engine.template.schema, lambda s, m=m: generate(s, m)) for m in prompts]
    before = sum(_unsafe(r.text) for r in plain) / len(prompts)
    after = sum(_unsafe(g.response.text) for g in guarded if not g.refused) / len(prompts)
    extra = sum(sum(g.tokens[1:]) for g in guarded) / max(1, sum(g.tokens[0] for g in guarded))
    print(f"unsafe: {before:.2f} unguarded -> {after:.2f} guarded; extra tokens {extra:.2f}x; "
          f"rounds {sum(len(g.costs) for g in guarded) / len(prompts):.2f}; refused {sum(g.refused for g in guarded)}")
    assert before >= 0.5  # harmlessness 0 was asked for, and the model follows it
    assert after <= before - 0.4


def test_cost_model_with_harm_category_outputs(tmp_path, shared_assets):
    """``cost.categories``: one more output per category, trained on the pairs' harm_categories labels
    (a moderation model); a pair without category labels adds no category loss."""
    from steer import synth_safety
    from steer.apm import Scorer
    from steer.config import load_recipe
    from steer.train import train
    from steer.train.tasks.cost import safety_columns

    pairs = [r for r in load(fixtures.write(fixtures.pku_rows(), tmp_path / "pku.jsonl"))[0] if r.kind == "preference"]
    cats = ["Economic Crime", "Physical Harm", "Violence"]
    harmless = next(p for p in pairs if p.id == "pku:1:harmlessness")
    columns = safety_columns(harmless, cats)
    assert columns["chosen_categories"] == [0.0, 0.0, 0.0] and columns["rejected_categories"] == [1.0, 1.0, 0.0]
    bare = harmless.__class__(id="x", prompt=[], chosen="a", rejected="b", axis="harmlessness")
    assert safety_columns(bare, cats)["chosen_categories"] == [-1.0] * 3
    data = synth_safety.write(tmp_path / "rows.jsonl", 40)
    recipe = load_recipe(_recipe(tmp_path, "cost", data, data, categories=list(synth_safety.PKU_HARM_CATEGORIES[:4])),
                         ["train.max_steps=3", "train.logging_steps=1"])
    result = train(recipe)
    assert "eval_costs/category_accuracy" in result.evaluation
    model = Scorer.load(result.run_dir, kinds=("cost",))
    assert model.names == ["cost", *synth_safety.PKU_HARM_CATEGORIES[:4]]
    [row] = model.predict([[{"role": "user", "content": "x"}, {"role": "assistant", "content": "Sure, here is how."}]])
    assert len(row) == 5


def test_single_answers_have_their_sign_term_and_no_pairwise_term():
    safer, unsafer = T(2.0, -1.0), T(0.0, 3.0)  # example 1 is a single answer: its "unsafer" is a placeholder
    got = cost_loss(safer, unsafer, T(1.0, -1.0), T(0.0, 1.0), paired=torch.tensor([False, True])).tolist()
    assert got == pytest.approx([-LS(1.0 * 2.0), -LS(3.0 - -1.0) - LS(-1.0 * -1.0) - LS(1.0 * 3.0)])


def test_pairs_and_single_answers_in_one_batch(tmp_path, shared_assets):
    """A source with pairs gives its pairs (its conversations are their answers); a source without pairs
    gives single answers, encoded with an empty rejected side; the collator says which sequence is which."""
    from steer.config import load_recipe
    from steer.data.prepare import mix
    from steer.runs import load_tokenizer
    from steer.templates import build_template
    from steer.train.tasks import cost
    from steer.train.tasks.rm import ScoredPairCollator

    pku = fixtures.write(fixtures.pku_rows(), tmp_path / "pku.jsonl")
    bt = fixtures.write(fixtures.beavertails_rows(), tmp_path / "bt.jsonl")
    recipe = load_recipe(_recipe(tmp_path, "cost", pku, pku, categories=["animal_abuse", "Violence"]))
    records, reports = mix([recipe.data.sources[0].model_copy(update={"path": str(p)}) for p in (pku, bt)], 0, False,
                           (cost.PreferencePair, cost.Conversation), select=cost.select)
    assert sum(r.kind == "preference" for r in records) == 4 and sum(r.kind == "sft" for r in records) == 2
    assert reports[0].filtered["conversations (the answers of this source's pairs)"] == 4
    tokenizer = load_tokenizer(str(shared_assets / "models/stories260k"))
    encoder = cost._encoder(recipe, tokenizer, build_template("steerlm", schema=None))
    batch = encoder.encode(records, 256, "truncate")
    singles = [k for k, r in enumerate(batch.columns["rejected_ids"]) if not r]
    assert batch.loss == 4 and len(singles) == 2  # two harmlessness pairs, two single answers
    assert [e.reason for e in batch.errors] == ["other axis"] * 2  # the helpfulness pairs
    kicked = next(k for k in singles if batch.columns["chosen_sign"][k] == [1.0])
    assert batch.columns["chosen_categories"][kicked] == [1.0, 0.0]  # the BeaverTails flag; PKU's name is not there
    assert batch.columns["rejected_categories"][kicked] == [-1.0, -1.0] and batch.columns["rejected_sign"][kicked] == [0.0]
    rows = [{name: batch.columns[name][k] for name in batch.columns} for k in (singles[0], 0 if singles[0] else 1)]
    out = ScoredPairCollator(packing=True)(rows)
    assert out["chosen_index"].tolist() == [0, 1] and out["rejected_index"].tolist() == [-1, 2]
    assert len(out["index"]) == 3


def test_category_rates_by_hand():
    from steer.evaluate.pairs import category_rate

    out = category_rate(["a", "b"], [[1.0, -1.0], [-2.0, 0.5], [3.0, 3.0]], [["a"], ["a"], None])
    assert out["by_category"]["a"] == {"answers": 2, "flagged": 2, "accuracy": 0.5, "recall": 0.5, "precision": 1.0}
    assert out["by_category"]["b"] == {"answers": 2, "flagged": 0, "accuracy": 0.5, "recall": None, "precision": 0.0}
    assert out["answers"] == 4 and out["recall"] == 0.5 and out["precision"] == 0.5
    assert category_rate(["a"], [[1.0]], [None]) is None


@pytest.mark.slow  # a 20 s training run
def test_recipe_synth_moderation_learns_signs_and_categories_from_single_answers(tmp_path):
    """``recipes/tiny/synth-moderation.yaml`` on BeaverTails-shaped rows (no pairs): held-out signs and
    harm categories, by ``steer eval pairs``."""
    assert run_cli("data", "synth", "--out", "data/synth", "--safety", "300", cwd=tmp_path).returncode == 0
    done = run_cli("train", "cost", str(REPO / "recipes/tiny/synth-moderation.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = run_cli("eval", "pairs", "runs/tiny-moderation", "--pairs", "data/synth/beavertails-safety-valid.jsonl",
                    cwd=tmp_path)
    assert shown.returncode == 0 and "single rated answers" in shown.stdout and "recall" in shown.stdout
    report = json.loads(run_cli("eval", "pairs", "runs/tiny-moderation", "--pairs",
                                "data/synth/beavertails-safety-valid.jsonl", "--json", cwd=tmp_path).stdout)
    assert report["answers"] == 60 and report["sign"]["accuracy"] >= 0.95  # measured: 1.00
    cats = report["categories"]
    assert cats["recall"] >= 0.8 and cats["precision"] >= 0.8, cats  # measured: 0.98 and 1.00
    assert set(cats["by_category"]) == set(json.loads(open(tmp_path / "runs/tiny-moderation/steer.json").read())
                                           ["cost"]["outputs"][1:])


def test_server_best_of_keeps_the_best_within_the_cost_and_the_guard_screens_prompts():
    """``Server.checked`` in process, over an engine whose answers grow: best_of with a cost threshold keeps
    the longest answer within it; a prompt screened over the threshold is refused before anything runs."""
    from types import SimpleNamespace

    from steer.engines.base import Prompt, Response, Sampling
    from steer.generate.best_of import BestOf
    from steer.generate.guard import Guard
    from steer.serve.app import Limits, Server

    calls: list[int] = []

    class Growing:
        template = SimpleNamespace(schema=None)  # completions only: never rendered

        def count_tokens(self, text):
            return len(text.split())

        def generate(self, prompts, sampling, slots=None):
            calls.append(len(prompts))
            start = sum(calls) - len(prompts)
            return [Response("a" * (start + k + 1), [1], "stop", 2, start + k + 1, 0.1) for k in range(len(prompts))]

    lengths = BestOf(3, lambda rows, texts: [{"verbosity": len(t)} for t in texts], "verbosity",
                     cost=lambda rows, texts: [{"cost": len(t) - 2.5} for t in texts], max_cost=0.0)
    server = Server(Growing(), "m", Limits(), judge=lengths)
    sampling, body = Sampling(temperature=1.0, max_new_tokens=4), {"prompt": "hi there", "best_of": 3}
    try:
        response, steer = server.checked(body, Prompt("hi there"), sampling, chat=False)
        assert response.text == "aa" and steer["best_of"]["candidates"][steer["best_of"]["chosen"]]["within_cost"]
        assert sorted(c["cost"] for c in steer["best_of"]["candidates"]) == [-1.5, -0.5, 0.5]
        screened = Guard(lambda convs: [5.0 if convs[0][-1]["content"] == "" else -1.0], max_cost=0.0, prompts=True,
                         refusal="No.")
        server.guard = screened
        before = sum(calls)
        response, steer = server.checked({"prompt": "hi there"}, Prompt("hi there"), sampling, chat=False)
        assert response.text == "No." and sum(calls) == before  # nothing generated
        assert steer["guard"] == {"rounds": 0, "costs": [], "tokens": [], "refused": True, "prompt_cost": 5.0}
        assert server.result(response, False, "x")["usage"] == {"prompt_tokens": 2, "completion_tokens": 0,
                                                                "total_tokens": 2}
        screened.cost = lambda convs: [-2.0 if convs[0][-1]["content"] == "" else -1.0]
        response, steer = server.checked(body, Prompt("hi there"), sampling, chat=False)
        assert not steer["guard"]["refused"] and steer["guard"]["prompt_cost"] == -2.0 and "best_of" in steer
    finally:
        server.batcher.close()


def test_cost_model_with_one_harm_category_trains_its_loss():
    """One category: the collator gives its flag columns as [B]; the loss reads them as [B, 1]."""
    from steer.config import validate_recipe
    from steer.train.tasks.cost import _loss

    recipe = validate_recipe({"kind": "cost", "model": {"name_or_path": "x"}, "data": {"sources": [{"path": "p"}]},
                              "cost": {"categories": ["Violence"]}}, kind="cost")
    scores = torch.tensor([[-1.0, -2.0], [1.0, 3.0]], requires_grad=True)  # safer, unsafer: cost, Violence
    inputs = {"chosen_index": torch.tensor([0]), "rejected_index": torch.tensor([1]),
              "chosen_sign": torch.tensor([-1.0]), "rejected_sign": torch.tensor([1.0]),
              "chosen_severity": torch.tensor([0.0]), "rejected_severity": torch.tensor([2.0]),
              "chosen_categories": torch.tensor([0.0]), "rejected_categories": torch.tensor([1.0])}
    per_pair, metrics = _loss(recipe)(scores, inputs)
    bce = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-3.0))) / 2  # both flags right, mean of the sides
    base = -LS(1.0 - -1.0) - LS(1.0) - LS(1.0)
    assert per_pair.item() == pytest.approx(base + bce, abs=1e-5) and metrics["costs/category_accuracy"] == 1.0
