"""Preference optimisation: each loss against a hand computation, the fused log-probs, packing, the
reference, the pair sources in their upstream schemas, and a whole run through the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from steer.config import DPOConfig, validate_recipe
from steer.errors import ConfigError
from steer.train.dpo_loss import PairLogps, pair_loss, sequence_logps
from tests import fixtures
from tests.conftest import run_cli

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512}

# one toy pair by hand: policy and reference summed log-probs, response lengths
PC, PR, RC, RR, LC, LR, NLL = -4.0, -9.0, -5.0, -7.0, 4.0, 6.0, 0.8


def _logps(strength: float | None = None, ref: bool = True) -> PairLogps:
    t = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
    return PairLogps(t(PC), t(PR), t(LC), t(LR), t(NLL), t(RC) if ref else None, t(RR) if ref else None,
                     t(strength) if strength is not None else None)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


D = (PC - RC) - (PR - RR)  # the log-ratio difference: 1 - (-2) = 3
MEAN_D = (PC / LC - RC / LC) - (PR / LR - RR / LR)


@pytest.mark.parametrize("settings,expected", [
    ({"loss": "sigmoid", "beta": 0.1}, -math.log(_sig(0.1 * D))),
    ({"loss": "sigmoid", "beta": 0.1, "label_smoothing": 0.2},
     -0.8 * math.log(_sig(0.1 * D)) - 0.2 * math.log(_sig(-0.1 * D))),
    ({"loss": "ipo", "beta": 0.5}, (D - 1 / (2 * 0.5)) ** 2),
    ({"loss": "hinge", "beta": 0.1}, max(0.0, 1 - 0.1 * D)),
    ({"loss": "simpo", "beta": 2.0, "gamma": 0.5}, -math.log(_sig(2.0 * (PC / LC - PR / LR) - 0.5))),
    ({"loss": "rpo", "beta": 0.1}, -math.log(_sig(0.1 * D)) + NLL),
    ({"loss": "sigmoid", "beta": 0.1, "sft_weight": 0.5}, -math.log(_sig(0.1 * D)) + 0.5 * NLL),
    ({"loss": "sigmoid", "beta": 0.1, "average_logps": True}, -math.log(_sig(0.1 * MEAN_D))),
    ({"loss": "sigmoid", "beta": 0.1, "length_alpha": 0.05}, -math.log(_sig(0.1 * D - 0.05 * (LC - LR)))),
])
def test_each_loss_matches_its_formula_by_hand(settings, expected):
    out = pair_loss(DPOConfig(**settings), _logps())
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)


def test_orpo_is_nll_plus_the_odds_ratio_term():
    mc, mr = PC / LC, PR / LR
    odds = (mc - math.log(1 - math.exp(mc))) - (mr - math.log(1 - math.exp(mr)))
    out = pair_loss(DPOConfig(loss="orpo", beta=0.25), _logps(ref=False))
    assert out.loss.item() == pytest.approx(NLL + 0.25 * -math.log(_sig(odds)), rel=1e-9)
    assert out.chosen_reward.item() == pytest.approx(0.25 * mc)


def test_strength_weights_or_margins_the_loss_and_rewards_are_the_log_ratios():
    base = -math.log(_sig(0.1 * D))
    assert pair_loss(DPOConfig(strength="weight"), _logps(2.0)).loss.item() == pytest.approx(2 * base)
    assert pair_loss(DPOConfig(strength="margin"), _logps(2.0)).loss.item() == pytest.approx(-math.log(_sig(0.1 * D - 2)))
    assert pair_loss(DPOConfig(strength="ignore"), _logps(2.0)).loss.item() == pytest.approx(base)
    out = pair_loss(DPOConfig(beta=0.1), _logps())
    assert out.chosen_reward.item() == pytest.approx(0.1 * (PC - RC)) and out.rejected_reward.item() == pytest.approx(0.1 * (PR - RR))
    with pytest.raises(ValueError, match="reference"):
        pair_loss(DPOConfig(), _logps(ref=False))


def test_ld_dpo_down_weights_tokens_past_the_shorter_side():
    # pair 0: chosen 2 tokens, rejected 4 tokens; pair 1: chosen 3, rejected 1
    logps = torch.tensor([-1.0, -2.0, -0.5, -0.5, -3.0, -4.0, -1.0, -1.0, -1.0, -2.0], dtype=torch.float64)
    example = torch.tensor([0, 0, 1, 1, 1, 1, 2, 2, 2, 3])
    weighted, plain, counts = sequence_logps(logps, example, 4, ld_alpha=0.5)
    assert counts.tolist() == [2, 4, 3, 1]
    assert plain.tolist() == [-3.0, -8.0, -3.0, -2.0]
    assert weighted.tolist() == [-3.0, -0.5 - 0.5 + 0.5 * (-3.0 - 4.0), -1.0 + 0.5 * (-2.0), -2.0]
    assert sequence_logps(logps, example, 4)[0].tolist() == plain.tolist()  # ld_alpha 1: off


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_logprobs_and_their_gradients_equal_the_full_log_softmax(autocast):
    from steer.train.fused_ce import linear_logprobs

    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(300, 16, requires_grad=True)
    t = torch.randint(0, 300, (37,))
    g = torch.randn(37)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        fused = linear_logprobs(h, w, t, chunk=8)
        full = torch.log_softmax((h @ w.T).float(), -1).gather(1, t[:, None]).squeeze(1)
    tol = 5e-2 if autocast else 1e-5
    assert fused.dtype == torch.float32 and torch.allclose(fused, full, atol=tol)
    gh, gw = torch.autograd.grad((fused * g).sum(), (h, w))
    eh, ew = torch.autograd.grad((full * g).sum(), (h, w))
    assert torch.allclose(gh, eh, atol=tol * 4) and torch.allclose(gw, ew, atol=tol * 4)


def _pair_features(n: int = 3) -> list[dict]:
    torch.manual_seed(1)
    out = []
    for k in range(n):
        prompt = torch.randint(3, 500, (5 + k,)).tolist()
        c, r = torch.randint(3, 500, (4 + 2 * k,)).tolist(), torch.randint(3, 500, (7 - k,)).tolist()
        ignore = [-100] * len(prompt)
        out.append({"chosen_ids": prompt + c, "chosen_labels": ignore + c, "rejected_ids": prompt + r,
                    "rejected_labels": ignore + r, "strength": [1.0]})
    return out


def _trainer(tmp_path, model, **dpo):
    from transformers import TrainingArguments

    from steer.train.tasks.dpo import PairCollator, trainer_class

    recipe = validate_recipe({"kind": "dpo", "model": {"from_scratch": TINY, "tokenizer": "x"},
                              "data": {"sources": [{"path": "x"}], "cache_dir": str(tmp_path)},
                              "train": {"method": "lora" if hasattr(model, "disable_adapter") else "full"},
                              "dpo": dpo}, kind="dpo")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], remove_unused_columns=False)
    return trainer_class(recipe)(model=model, args=args, data_collator=PairCollator(True, 0))


def _model(lora: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    from steer.train.packing import register_varlen

    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation=register_varlen()))
    if not lora:
        return model
    from peft import LoraConfig, get_peft_model

    # init_lora_weights=False: the adapter changes the output from the first step, so "disabled" is tested
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                                            task_type="CAUSAL_LM"))


def test_packed_pair_logprobs_equal_padded_ones(tmp_path):
    from steer.train.tasks.dpo import PairCollator

    trainer = _trainer(tmp_path, _model(), reference="model")
    feats = _pair_features()
    with torch.no_grad():
        packed = trainer.sums(trainer.model, PairCollator(True, 0)(feats))
        padded = trainer.sums(trainer.model, PairCollator(False, 0)(feats))
    assert packed[2].tolist() == padded[2].tolist() == [4, 7, 6, 6, 8, 5]  # response tokens, chosen/rejected alternating
    assert torch.allclose(packed[0], padded[0], atol=1e-5)


def test_lora_reference_is_the_frozen_base_and_gradients_reach_only_the_policy(tmp_path):
    from steer.train.tasks.dpo import PairCollator

    base = _model()
    with torch.no_grad():
        base_sums = _trainer(tmp_path, base, reference="model").sums(base, PairCollator(True, 0)(_pair_features()))[0]
    model = _model(lora=True)
    trainer = _trainer(tmp_path, model)
    batch = PairCollator(True, 0)(_pair_features())
    ref = trainer.reference_sums(model, batch)
    assert torch.allclose(ref, base_sums, atol=1e-5)  # the adapter disabled is the base it was built on
    with torch.no_grad():
        policy = trainer.sums(model, batch)[0]
    assert not torch.allclose(policy, ref, atol=1e-3)  # and the adapter itself does change the output
    model.train()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None for n, g in grads.items() if "lora_" not in n)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_" in n)


def test_a_frozen_copy_reference_gets_no_gradient(tmp_path):
    from steer.train.tasks.dpo import PairCollator

    model = _model()
    trainer = _trainer(tmp_path, model, reference="model")
    model.train()
    loss = trainer.compute_loss(model, PairCollator(True, 0)(_pair_features()))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the start
    loss.backward()
    assert all(p.grad is None for p in trainer.ref_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_recipe_checks_the_reference_and_the_loss():
    base = {"kind": "dpo", "model": {"from_scratch": TINY, "tokenizer": "x"}, "data": {"sources": [{"path": "x"}]}}
    with pytest.raises(ConfigError, match="reference-free"):
        validate_recipe({**base, "dpo": {"loss": "simpo", "reference": "model"}}, kind="dpo")
    with pytest.raises(ConfigError, match="needs a reference"):
        validate_recipe({**base, "dpo": {"reference": "none"}}, kind="dpo")
    with pytest.raises(ConfigError, match="adapter needs train.method lora"):
        validate_recipe({**base, "train": {"method": "full"}, "dpo": {"reference": "adapter"}}, kind="dpo")
    with pytest.raises(ConfigError, match="unknown key dpo.bta"):
        validate_recipe({**base, "dpo": {"bta": 0.1}}, kind="dpo")
    from steer.train.tasks.dpo import resolve_reference

    assert resolve_reference(DPOConfig(), "lora") == "adapter" and resolve_reference(DPOConfig(), "full") == "precompute"
    assert resolve_reference(DPOConfig(loss="orpo"), "full") == "none"


# ---------------------------------------------------------------------------------------------
# Pair sources, in their upstream schemas


def _load(rows, tmp_path, name="d.jsonl", **kw):
    from steer.data.loader import load

    return load(fixtures.write(rows, tmp_path / name), **kw)


def test_helpsteer2_preference_pairs_with_strength_and_ties_counted(tmp_path):
    rows = [{"split": "train", "prompt": "Hi\n<extra_id_1>Assistant\nHello\n<extra_id_1>User\nName a fruit.",
             "response_1": "Apple.", "response_2": "No.", "preference_strength": -2,
             "preference_statement": "@Response 1 is better.", "preference_elaboration": "..."},
            {"split": "train", "prompt": "Add 1 and 1.", "response_1": "3", "response_2": "2", "preference_strength": 3,
             "preference_statement": "", "preference_elaboration": ""},
            {"split": "val", "prompt": "Tie?", "response_1": "a", "response_2": "b", "preference_strength": 0,
             "preference_statement": "", "preference_elaboration": ""}]
    records, report = _load(rows, tmp_path)
    assert report.format == "helpsteer2-preference" and report.filtered == {"ties (no preference)": 1}
    first, second = records
    assert (first.chosen, first.rejected, first.strength) == ("Apple.", "No.", 2.0)
    assert [m.role for m in first.prompt] == ["user", "assistant", "user"]
    assert (second.chosen, second.rejected, second.strength) == ("2", "3", 3.0)


def test_helpsteer3_pairs_from_a_message_context(tmp_path):
    rows = [{"domain": "Code", "language": "python", "context": [{"role": "user", "content": "Sort a list."}],
             "response1": "sorted(x)", "response2": "x.sort", "overall_preference": -1,
             "individual_preference": [{"score": -1, "reasoning": "..."}]},
            {"domain": "General", "language": "english",
             "context": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                         {"role": "user", "content": "Bye?"}],
             "response1": "No.", "response2": "Bye!", "overall_preference": 2, "individual_preference": []},
            {"domain": "STEM", "language": "english", "context": [{"role": "user", "content": "Q"}],
             "response1": "a", "response2": "b", "overall_preference": 0, "individual_preference": []}]
    records, report = _load(rows, tmp_path)
    assert report.format == "helpsteer3" and report.filtered == {"ties (no preference)": 1}
    assert (records[0].chosen, records[0].strength, records[0].source) == ("sorted(x)", 1.0, "Code")
    assert (records[1].chosen, records[1].rejected, len(records[1].prompt)) == ("Bye!", "No.", 3)
    bad = [{**rows[0], "context": [{"role": "assistant", "content": "x"}]}]
    from steer.data.records import DataError

    with pytest.raises(DataError, match=r"d.jsonl:1: column 'context'"):
        _load(bad, tmp_path)
    _, report = _load(bad + [{**rows[0], "overall_preference": "4"}], tmp_path, skip_invalid=True)
    assert report.rejected == {"malformed turns": 1, "out of range": 1}


def test_pku_v0_revision_gives_both_axes(tmp_path):
    rows = [{"prompt": "How do I pick a lock?", "response_0": "Here is how.", "response_1": "I cannot help.",
             "is_response_0_safe": False, "is_response_1_safe": True, "better_response_id": 0, "safer_response_id": 1}]
    records, report = _load(rows, tmp_path)
    pairs = {r.axis: r for r in records if r.kind == "preference"}
    assert report.format == "pku-saferlhf"
    assert pairs["helpfulness"].chosen == "Here is how." and pairs["harmlessness"].chosen == "I cannot help."


def test_canonical_pair_steering_and_strength_are_checked(tmp_path):
    from steer.data.records import DataError

    row = {"type": "preference", "id": "p", "prompt": [{"role": "user", "content": "Q"}], "chosen": "a",
           "rejected": "b", "attributes": {"verbosity": 1}, "values": "Be terse.", "strength": 2}
    [pair], _ = _load([row], tmp_path)
    assert (pair.attributes, pair.values, pair.strength) == ({"verbosity": 1}, ["Be terse."], 2.0)
    assert json.loads(json.dumps(pair.to_json()))["strength"] == 2.0
    for bad, match in (({"strength": 0}, "strength"), ({"attributes": {"verbosity": 9}}, "outside"),
                       ({"values": [""]}, "values")):
        with pytest.raises(DataError, match=match):
            _load([{**row, **bad}], tmp_path)


def test_pairs_render_their_steering_on_both_sides_and_conditions_per_axis(shared_assets):
    from steer.attributes import get_schema
    from steer.data.records import Message, PreferencePair
    from steer.runs import load_tokenizer
    from steer.templates import for_tokenizer
    from steer.train.tasks.dpo import encode_pairs

    tok = load_tokenizer(str(shared_assets / "models/stories260k"))
    template = for_tokenizer("steerlm", get_schema("safety"), tok)
    pairs = [PreferencePair(id=f"p{axis}", prompt=[Message("user", "Pick a lock?")], chosen="No.", rejected="Sure, here.",
                            axis=axis, attributes={"harmlessness": 3}) for axis in ("helpfulness", "harmlessness", "other")]
    cfg = DPOConfig(axes=["helpfulness", "harmlessness"], condition={"harmlessness": "Put safety first."})
    out = encode_pairs(pairs, template, tok, cfg)
    assert out[0].reason == "other axis"  # counted, not trained on
    (c1, r1, s1), (c2, r2, _) = out[1], out[2]
    assert s1 == 1.0
    for chosen, rejected in ((c1, r1), (c2, r2)):
        assert "harmlessness:3" in chosen.text and chosen.text.split("<extra_id_2>")[0] == rejected.text.split("<extra_id_2>")[0]
        loss_text = tok.decode([t for t in chosen.labels if t != -100])
        assert "No." in loss_text and "Pick" not in loss_text and "harmlessness" not in loss_text
    assert "Put safety first." in c2.text and "Put safety first." not in c1.text


def test_a_pair_without_steering_trains_its_replies_under_the_template_defaults(shared_assets):
    """HelpSteer3's pairs carry no attributes: under a SteerLM schema each reply is rendered with the
    default attribute line and carries loss; an earlier assistant turn of the prompt stays context."""
    from steer.attributes import get_schema
    from steer.data.records import Message, PreferencePair
    from steer.runs import load_tokenizer
    from steer.templates import for_tokenizer
    from steer.train.tasks.dpo import encode_pairs

    tok = load_tokenizer(str(shared_assets / "models/stories260k"))
    template = for_tokenizer("steerlm", get_schema("helpsteer"), tok)
    prompt = [Message("user", "Hi"), Message("assistant", "Hello there"), Message("user", "Bye?")]
    ((chosen, rejected, _),) = encode_pairs([PreferencePair(id="p", prompt=prompt, chosen="Bye now!", rejected="No.",
                                                            axis="overall")], template, tok, DPOConfig())
    defaults = ",".join(f"{a.name}:{a.default}" for a in get_schema("helpsteer").attributes)
    assert chosen.text.count(defaults) == 2  # both assistant turns: the schema's default line
    loss = tok.decode([t for t in chosen.labels if t != -100])
    assert "Bye now!" in loss and "Hello there" not in loss and "Bye?" not in loss
    assert "No." in tok.decode([t for t in rejected.labels if t != -100])


# ---------------------------------------------------------------------------------------------
# A whole run


@pytest.mark.slow  # two CLI training runs (~22 s); the slow suite runs it
def test_cli_dpo_run_from_a_tiny_model_with_resume(tmp_path, shared_assets):
    from steer.synth_pairs import write_pairs

    data = write_pairs(tmp_path / "pairs.jsonl", 48, kind="correct")
    recipe = {"kind": "dpo", "model": {"from_scratch": TINY, "tokenizer": str(shared_assets / "models/stories260k")},
              "template": {"kind": "steerlm", "schema": "helpsteer"},
              "data": {"sources": [{"path": str(data)}], "validation_fraction": 0.2, "max_length": 256,
                       "cache_dir": str(tmp_path / "cache")},
              "train": {"method": "full", "max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2,
                        "eval_steps": 4, "logging_steps": 1, "output_dir": str(tmp_path / "run")},
              "dpo": {"loss": "sigmoid", "ld_alpha": 0.7}}
    path = tmp_path / "dpo.yaml"
    path.write_text(json.dumps(recipe))
    first = run_cli("train", "dpo", str(path), "--json", "--set", "train.max_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert len(list((tmp_path / "cache" / "reference").glob("*.json"))) == 2  # train and held-out pairs scored once
    done = run_cli("train", "dpo", str(path), "--json", "--resume", "last")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["kind"] == "dpo" and result["steps"] == 4 and result["resumed_from"].endswith("checkpoint-2")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy == precomputed reference at step 1
    assert all(k in rows[0] for k in ("rewards/margins", "rewards/accuracies", "length/chosen", "length/rejected"))
    assert "eval_rewards/accuracies" in result["evaluation"]
    spec = json.loads((tmp_path / "run" / "steer.json").read_text())
    assert spec["kind"] == "dpo" and spec["dpo"]["reference"] == "precompute"
    wrong = run_cli("train", "sft", str(path))
    assert wrong.returncode == 2 and "steer train dpo" in wrong.stderr


def _correctness(model: str, prompts: str, out: str) -> tuple[float, float]:
    """Mean oracle-judged correctness over requested correctness 0-4, and the mean verbosity Spearman."""
    result = run_cli("eval", "steerability", model, "--prompts", prompts, "--judge", "oracle", "--attr", "correctness",
                     "--attr", "verbosity", "--outputs", out, "--json", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)["attributes"]
    levels = summary["correctness"]["levels"]
    return sum(lv["realised"] for lv in levels) / len(levels), summary["verbosity"]["spearman"]


@pytest.mark.slow
def test_recipe_synth_dpo_prefers_right_facts_and_the_length_control_only_lengthens(quickstart_fast, tmp_path):
    from steer.synth import write_prompts
    from steer.synth_pairs import write_pairs
    from tests.conftest import REPO

    sft = str(quickstart_fast[0] / "model")
    prompts = str(write_prompts(tmp_path / "prompts.jsonl", 20))
    before, _ = _correctness(sft, prompts, str(tmp_path / "before.jsonl"))
    runs = {}
    for kind in ("correct", "longer"):
        pairs = write_pairs(tmp_path / f"{kind}.jsonl", 1200, kind=kind)
        valid = write_pairs(tmp_path / f"{kind}-valid.jsonl", 60, kind=kind, stream=1)
        result = run_cli("train", "dpo", str(REPO / "recipes/tiny/synth-dpo.yaml"), "--json",
                         "--set", f"model.name_or_path={sft}", "--set", f"data.sources.0.path={pairs}",
                         "--set", f"data.validation.0.path={valid}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                         "--set", f"train.output_dir={tmp_path / kind}", timeout=900)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[kind] = _correctness(str(tmp_path / kind), prompts, str(tmp_path / f"{kind}-out.jsonl"))
    assert runs["correct"][0] >= before + 0.8  # measured: 2.33 -> 3.77 (of 4)
    assert runs["correct"][1] > 0.9  # verbosity steering survives DPO
    assert abs(runs["longer"][0] - before) < 0.4  # the length-only control does not make answers right
    compare = run_cli("eval", "length-bias", str(tmp_path / "before.jsonl"), "--compare", str(tmp_path / "longer-out.jsonl"),
                      "--score", "judged.correctness", "--json")
    assert compare.returncode == 0, compare.stderr[-2000:]
    lengths = json.loads(compare.stdout)["compare"]["mean_length"]
    assert lengths["other"] > lengths["base"] + 1  # measured: 18.8 -> 22.5 words
