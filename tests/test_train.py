"""Training: packing, resume, distributed, artifacts and export (tiny models on CPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from steer.config import validate_recipe
from steer.errors import SteerError, UsageError
from tests import fixtures
from tests.conftest import REPO, invoke_cli

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512}


def _data(tmp_path, n: int = 8) -> str:
    rows = []
    for k in range(n):  # varied lengths and labels
        for row in fixtures.helpsteer_rows():
            rows.append({**row, "response": row["response"] + " More." * (k % 4), "verbosity": (row["verbosity"] + k) % 5})
    return str(fixtures.write(rows, tmp_path / "hs.jsonl"))


def _recipe(tmp_path, shared_assets, out: str = "run", **train) -> dict:
    base = {"model": {"from_scratch": TINY, "tokenizer": str(shared_assets / "models/stories260k")},
            "data": {"sources": [{"path": _data(tmp_path)}], "max_length": 512, "cache_dir": str(tmp_path / "cache")},
            "train": {"method": "full", "max_steps": 6, "batch_size": 4, "learning_rate": 3e-3, "save_steps": 3,
                      "logging_steps": 1, "seed": 7, "output_dir": str(tmp_path / out), **train}}
    return base


def _losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_packed_loss_equals_unpacked_and_never_crosses_examples():
    from transformers import LlamaConfig, LlamaForCausalLM

    from steer.train.packing import PackedCollator, PaddedCollator, register_varlen, segments

    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation=register_varlen()))
    feats = []
    for n in (9, 31, 4, 17):
        ids = torch.randint(3, 500, (n,)).tolist()
        feats.append({"input_ids": ids, "labels": [-100] * 2 + ids[2:]})
    packed = PackedCollator()(feats)
    assert packed["input_ids"].shape == (1, 61) and "attention_mask" not in packed
    assert segments(packed["position_ids"]) == [(0, 9), (9, 40), (40, 44), (44, 61)]
    with torch.no_grad():
        p = model(**packed).loss.item()
        u = model(**PaddedCollator(0)(feats)).loss.item()
        # the same examples one at a time, weighted by their loss tokens
        parts = [(model(**PaddedCollator(0)([f])).loss.item(), sum(x != -100 for x in f["labels"][1:])) for f in feats]
    alone = sum(loss * n for loss, n in parts) / sum(n for _, n in parts)
    assert abs(p - u) < 1e-4 and abs(p - alone) < 1e-4


def test_packing_keeps_each_example_whole_or_rejected(tmp_path, shared_assets):
    import datasets

    from steer.train import prepare
    from steer.train.packing import PackedCollator, segments

    raw = _recipe(tmp_path, shared_assets)
    raw["data"]["max_length"] = 280
    for policy in ("truncate", "reject"):
        raw["data"]["overlong"] = policy
        prepared = prepare(validate_recipe(raw))
        ds = datasets.load_from_disk(str(prepared.path))
        lengths = [len(x) for x in ds["input_ids"]]
        assert max(lengths) <= 280
        batch = PackedCollator()([ds[i] for i in range(min(4, len(ds)))])
        assert [b - a for a, b in segments(batch["position_ids"])] == lengths[:4]
        if policy == "reject":
            assert prepared.rejected["too long"] > 0
    raw["data"]["max_length"] = 20
    with pytest.raises(UsageError, match="no examples left"):
        prepare(validate_recipe(raw))


def test_train_writes_a_complete_run_directory(tmp_path, shared_assets):
    from steer.train import train

    raw = _recipe(tmp_path, shared_assets, eval_steps=3)
    raw["data"]["validation_fraction"] = 0.25
    events = []
    result = train(validate_recipe(raw), events=events.append)
    run = result.run_dir
    for name in ("model.safetensors", "config.json", "tokenizer.json", "recipe.yaml", "steer.json", "metrics.jsonl",
                 "checkpoint-3", "checkpoint-6"):
        assert (run / name).exists(), name
    losses = _losses(run)
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_loss" in r for r in rows) and result.eval_loss is not None
    spec = json.loads((run / "steer.json").read_text())
    assert spec["template"]["kind"] == "steerlm" and spec["template"]["schema"]["name"] == "helpsteer"
    assert "steer_attributes" in (run / "chat_template.jinja").read_text()
    from steer.events import DataReady, Progress, TrainLog

    assert {Progress, DataReady, TrainLog} <= {type(e) for e in events}
    steps = [e for e in events if isinstance(e, Progress) and e.stage == "train"]
    assert [e.done for e in steps] == list(range(7)) and all(e.total == 6 for e in steps)
    assert steps[0].tokens == 0 and all(a.tokens < b.tokens for a, b in zip(steps, steps[1:]))
    assert [e.values["loss"] for e in events if isinstance(e, TrainLog) and "loss" in e.values] == losses
    # same seed, same run
    raw["train"]["output_dir"] = str(tmp_path / "again")
    train(validate_recipe(raw))
    assert _losses(tmp_path / "again") == losses


def test_resume_continues_exactly(tmp_path, shared_assets):
    from transformers import TrainerCallback

    from steer.train import train

    straight = train(validate_recipe(_recipe(tmp_path, shared_assets, out="straight")))

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt  # as if killed right after checkpoint-3 was written

    broken = validate_recipe(_recipe(tmp_path, shared_assets, out="broken"))
    with pytest.raises(KeyboardInterrupt):
        train(broken, callbacks=[Crash()])
    assert not (tmp_path / "broken/checkpoint-6").exists()
    with pytest.raises(UsageError, match="already holds checkpoints"):
        train(broken)
    resumed = train(broken, resume=True)
    assert resumed.resumed_from.endswith("checkpoint-3") and resumed.steps == 6
    assert abs(resumed.train_loss - straight.train_loss) < 1e-5
    assert _losses(tmp_path / "broken")[-3:] == pytest.approx(_losses(tmp_path / "straight")[-3:], abs=1e-5)


def test_lora_run_adapter_guard_and_export_roundtrip(tmp_path, shared_assets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steer.engines.base import Sampling
    from steer.steering import Steering, steering_prompt
    from steer.engines.hf import HFEngine
    from steer.train.export import export
    from steer.train import train
    from steer.train.loop import check_adapter

    raw = _recipe(tmp_path, shared_assets, method="lora", learning_rate=5e-2, max_steps=4, save_steps=4,
                  lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    raw["model"] = {"name_or_path": str(shared_assets / "models/stories260k")}
    run = train(validate_recipe(raw)).run_dir
    assert (run / "adapter_model.safetensors").is_file() and not (run / "model.safetensors").exists()
    check_adapter(run)

    engine = HFEngine.load(str(run))
    messages = [{"role": "user", "content": "What colour is the sky over Zorbia?"}]
    prompt = steering_prompt(engine.template, messages, Steering(attributes={"verbosity": 0, "complexity": 4}))
    steer_out = engine.generate([prompt], Sampling(temperature=0, max_new_tokens=24))[0]

    out = export(run, tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(str(out))  # plain transformers, no steer code
    tok = AutoTokenizer.from_pretrained(str(out))
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                   steer_attributes={"verbosity": 0, "complexity": 4})
    assert text == prompt.text
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=24, do_sample=False, tokenizer=tok)
    new = gen[0, ids["input_ids"].shape[1]:].tolist()
    assert new[: len(steer_out.token_ids)] == steer_out.token_ids and steer_out.token_ids
    with pytest.raises(UsageError, match="not empty"):
        export(run, out)


def test_empty_adapter_is_refused(tmp_path):
    from safetensors.torch import save_file

    from steer.train.loop import check_adapter

    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.zeros(0)}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(SteerError, match="adapter is empty"):
        check_adapter(tmp_path)


def test_unavailable_options_fail_clearly(tmp_path, shared_assets):
    from steer.train import train

    raw = _recipe(tmp_path, shared_assets, method="lora")
    with pytest.raises(UsageError, match="from scratch needs train.method full"):
        train(validate_recipe(raw))
    raw["model"] = {"name_or_path": str(shared_assets / "models/stories260k")}
    raw["train"]["method"] = "qlora"
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="qlora needs a CUDA GPU"):
            train(validate_recipe(raw))
    raw["train"]["method"] = "lora"
    raw["distributed"] = {"strategy": "deepspeed"}
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(UsageError, match="needs DeepSpeed"):
            train(validate_recipe(raw))
    with pytest.raises(UsageError, match="no checkpoint"):
        train(validate_recipe(_recipe(tmp_path, shared_assets, out="fresh")), resume=str(tmp_path))


def test_two_gloo_processes_match_one(tmp_path, shared_assets):
    """torchrun with 2 CPU processes (gloo) follows the single-process loss curve for the same global batch."""
    import yaml

    single = _recipe(tmp_path, shared_assets, out="one", batch_size=4, save_steps=100)
    double = _recipe(tmp_path, shared_assets, out="two", batch_size=2, save_steps=100)
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(single))
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(double))
    assert invoke_cli("train", "sft", str(tmp_path / "one.yaml"), "--json").returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "steer", "train", "sft", str(tmp_path / "two.yaml"), "--nproc", "2", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-3


def test_cli_train_and_export(tmp_path, shared_assets):
    import yaml

    raw = _recipe(tmp_path, shared_assets, max_steps=2, save_steps=2)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = invoke_cli("train", "sft", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "trained 2 steps" in proc.stdout and "steer generate" in proc.stdout
    again = invoke_cli("train", "sft", str(path))
    assert again.returncode == 2 and "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    proc = invoke_cli("export", str(tmp_path / "run"), "--out", str(tmp_path / "exported"))
    assert proc.returncode == 0, proc.stderr
    from safetensors.torch import load_file

    trained, exported = load_file(str(tmp_path / "run/model.safetensors")), load_file(str(tmp_path / "exported/model.safetensors"))
    assert trained.keys() == exported.keys() and all(torch.equal(trained[k], exported[k]) for k in trained)
    assert json.loads((tmp_path / "exported/steer.json").read_text())["exported_from"] == "run"  # the folder's name: no local path is shipped
    bad = invoke_cli("export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "not a directory" in bad.stderr


def test_loss_on_labelled_positions_only_equals_the_models_loss(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from steer.train.packing import PackedCollator, PaddedCollator, register_varlen
    from steer.train.tasks.sft import trainer_class as _trainer_class

    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation=register_varlen()))
    feats = []
    for n in (12, 30, 7):
        ids = torch.randint(3, 500, (n,)).tolist()
        feats.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2:]})
    trainer = _trainer_class()(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))
    for batch in (PackedCollator()(feats), PaddedCollator(0)(feats)):
        with torch.no_grad():
            expected = model(**batch).loss
            ours = trainer.compute_loss(model, dict(batch))
        assert abs(ours.item() - expected.item()) < 1e-5


def test_recipe_stories260k_lora_runs_end_to_end(tmp_path, shared_assets):
    """recipes/tiny/stories260k-lora.yaml on the real pretrained tiny Llama (shortened): the loss falls,
    every LoRA matrix moved off its initialisation, and the base model's weights are untouched."""
    from safetensors.torch import load_file

    from steer.config import load_recipe
    from steer.runs import load_model, resolve
    from steer.synth import write_corpus
    from steer.train import train

    base = shared_assets / "models/stories260k"
    data = write_corpus(tmp_path / "synth", 64, seed=1)
    recipe = load_recipe(REPO / "recipes/tiny/stories260k-lora.yaml", [
        f"model.name_or_path={base}", f"data.sources.0.path={data['train']}", "train.max_steps=6",
        "train.save_steps=6", "train.eval_steps=6", "train.logging_steps=1", f"train.output_dir={tmp_path / 'run'}",
        f"data.cache_dir={tmp_path / 'cache'}"])
    result = train(recipe)
    losses = _losses(tmp_path / "run")
    assert result.steps == 6 and result.eval_loss is not None and len(losses) == 6 and losses[-1] < losses[0]
    adapter = load_file(str(tmp_path / "run/adapter_model.safetensors"))
    assert all(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)  # B starts at zero: every one moved
    trained = load_model(resolve(tmp_path / "run")).get_base_model().state_dict()
    base_weights = {k.replace(".base_layer", ""): v for k, v in trained.items() if "lora_" not in k}
    original = load_file(str(base / "model.safetensors"))
    assert original and all(torch.equal(base_weights[k], v) for k, v in original.items())


def test_recipe_tiny_from_scratch_runs_end_to_end(tmp_path):
    """recipes/tiny/synth-steerlm.yaml with its own synthetic data and tokenizer (shortened): the loss
    falls and the validation loss is measured."""
    from steer.config import load_recipe
    from steer.synth import write_dataset
    from steer.train import train

    paths = write_dataset(tmp_path / "synth", 96, seed=2, valid=16)
    recipe = load_recipe(REPO / "recipes/tiny/synth-steerlm.yaml", [
        f"model.tokenizer={tmp_path / 'synth/tokenizer'}", f"data.sources.0.path={paths['train']}",
        f"data.validation.0.path={paths['valid']}", "train.max_steps=8", "train.eval_steps=4", "train.logging_steps=1",
        f"train.output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}"])
    result = train(recipe)
    losses = _losses(tmp_path / "run")
    assert result.steps == 8 and len(losses) == 8 and sum(losses[-3:]) < sum(losses[:3])
    assert result.eval_loss is not None and result.eval_loss < losses[0]


def test_warmup_is_a_share_of_the_steps(tmp_path, shared_assets):
    """train.warmup_ratio 0.25 of 40 steps warms up for 10, whichever transformers is installed."""
    from steer.train.loop import training_arguments

    raw = _recipe(tmp_path, shared_assets, warmup_ratio=0.25)
    args = training_arguments(validate_recipe(raw), tmp_path / "run", has_eval=False)
    assert args.get_warmup_steps(40) == 10


def test_resume_last_takes_the_newest_complete_checkpoint_and_metrics_stay_single(tmp_path, shared_assets):
    """A kill can leave an empty checkpoint-N, or one without its trainer state: --resume last takes the
    newest complete one, names the problem when none is, and metrics.jsonl holds each step once."""
    import shutil

    from transformers import TrainerCallback

    from steer.train import train
    from steer.train.loop import COMPLETE, find_checkpoint

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    recipe = validate_recipe(_recipe(tmp_path, shared_assets, out="run"))
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(recipe, callbacks=[Crash()])
    assert (run / "checkpoint-3" / COMPLETE).is_file()
    (run / "checkpoint-5").mkdir()  # killed while creating it
    shutil.copytree(run / "checkpoint-3", run / "checkpoint-4")
    (run / "checkpoint-4" / COMPLETE).unlink()
    (run / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    assert find_checkpoint(run, True) == str(run / "checkpoint-3")
    with pytest.raises(UsageError, match="checkpoint-4 cannot be resumed from: no readable trainer_state.json"):
        find_checkpoint(run, str(run / "checkpoint-4"))
    with open(run / "metrics.jsonl", "a") as handle:  # rows logged after checkpoint 3 before the kill
        handle.write(json.dumps({"step": 4, "loss": 9.0}) + "\n" + '{"step": 5, "lo')
    shutil.rmtree(run / "checkpoint-4")
    resumed = train(recipe, resume=True)
    assert resumed.resumed_from.endswith("checkpoint-3") and resumed.steps == 6
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4, 5, 6]  # once each, and the resumed run's own rows after step 3
    empty = tmp_path / "empty"
    (empty / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(UsageError, match="no complete checkpoint"):
        find_checkpoint(empty, True)


def test_bf16_mixed_precision_autocasts_on_cpu_over_float32_weights(tmp_path, shared_assets):
    """train.mixed_precision bf16 on CPU: the linear layers run in bfloat16 while the weights stay float32
    and the loss falls; fp16 on CPU is refused before any work."""
    import torch
    from transformers import TrainerCallback

    from steer.train import train

    seen: dict = {}

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            layer = model.model.layers[0].mlp.down_proj
            layer.register_forward_hook(lambda mod, inp, out: seen.setdefault("out", out.dtype) and None)
            seen["weight"] = layer.weight.dtype

    recipe = validate_recipe(_recipe(tmp_path, shared_assets, mixed_precision="bf16"))
    result = train(recipe, callbacks=[Probe()])
    assert seen == {"weight": torch.float32, "out": torch.bfloat16}
    losses = _losses(tmp_path / "run")
    assert result.steps == 6 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        train(validate_recipe(_recipe(tmp_path, shared_assets, out="run16", mixed_precision="fp16")))
    assert not (tmp_path / "run16").exists()


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_loss_equals_cross_entropy_of_the_full_logits(autocast):
    """The chunked fused LM-head loss gives cross_entropy's loss and gradients (float32: to 1e-5); under
    bf16 autocast its matmuls run in bfloat16 like the model's layers, within bf16's precision."""
    from steer.train.fused_ce import linear_cross_entropy

    torch.manual_seed(0)
    hidden = torch.randn(70, 16, requires_grad=True)
    weight = (torch.randn(50, 16) / 4).requires_grad_()
    targets = torch.randint(0, 50, (70,))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        ours = linear_cross_entropy(hidden, weight, targets, chunk=32)
    ours.backward()
    got = (ours.detach(), hidden.grad.clone(), weight.grad.clone())
    hidden.grad = weight.grad = None
    expected = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    expected.backward()
    tol = {"rtol": 3e-2, "atol": 3e-2} if autocast else {"rtol": 1e-5, "atol": 1e-5}
    for a, b in zip(got, (expected.detach(), hidden.grad, weight.grad)):
        torch.testing.assert_close(a, b, **tol)
    assert got[1].dtype == got[2].dtype == torch.float32
