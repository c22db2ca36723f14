"""The attribute prediction model: inputs, head, loss, training, resume, reloading, labelling, judging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from steer import synth
from steer.config import validate_recipe
from steer.apm import APM_MARK, MISSING, apm_text
from steer.templates import for_tokenizer
from steer.train.tasks.apm import RatedTurn, encode_rated
from steer.data.records import Conversation, DataError, Message
from steer.errors import ConfigError, UsageError
from tests import fixtures
from tests.conftest import REPO, invoke_cli, run_cli

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512}


def _backbone(seed: int = 0):
    from transformers import LlamaConfig, LlamaModel

    from steer.train.packing import register_varlen

    torch.manual_seed(seed)
    cfg = {k: v for k, v in TINY.items() if k != "model_type"}
    return LlamaModel(LlamaConfig(**cfg, attn_implementation=register_varlen()))


def _model():
    from steer.attributes import get_schema
    from steer.apm import AttributeModel

    return AttributeModel.for_schema(_backbone(), get_schema("helpsteer"))


def test_apm_text_is_nemo_format_without_the_labels():
    template = for_tokenizer("steerlm", None, None)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                {"role": "assistant", "content": "Hello.", "attributes": {"verbosity": 0}}]
    assert apm_text(template, messages) == (
        "<extra_id_0>System\nBe brief.\n<extra_id_1>User\nHi?\n<extra_id_1>Assistant\nHello.\n" + APM_MARK)


def test_apm_text_with_a_real_chat_template(shared_assets):
    from transformers import AutoTokenizer

    path = shared_assets / "tokenizers"
    folder = next((p for p in sorted(path.iterdir()) if (p / "chat_template.jinja").is_file()), None)
    if folder is None:
        pytest.skip("no tokenizer with a chat template in the shared assets")
    tok = AutoTokenizer.from_pretrained(str(folder))
    messages = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello.", "attributes": {"verbosity": 4}}]
    text = apm_text(for_tokenizer("chat", None, tok), messages)
    assert text == tok.apply_chat_template([{k: m[k] for k in ("role", "content")} for m in messages], tokenize=False)
    assert "verbosity" not in text and "Hello." in text


def test_encode_rated_one_example_per_labelled_turn(shared_assets):
    from steer.attributes import get_schema
    from steer.runs import load_tokenizer

    tok = load_tokenizer(str(shared_assets / "models/stories260k"))
    schema = get_schema("helpsteer")
    conv = Conversation("c1", [Message("user", "One?"), Message("assistant", "Yes.", {"verbosity": 1, "correctness": 3}),
                               Message("user", "Two?"), Message("assistant", "No, because " + "very " * 80 + "so.",
                                                                 {"helpfulness": 4}),
                               Message("user", "Three?"), Message("assistant", "Unlabelled.")])
    bare = Conversation("c2", [Message("user", "Q?"), Message("assistant", "A.")])
    template = for_tokenizer("steerlm", None, tok)
    out = encode_rated([conv, bare], template, schema, tok)
    scored = [o for o in out if isinstance(o, RatedTurn)]
    assert len(scored) == 2 and [o.reason for o in out if isinstance(o, DataError)] == ["no labels"]
    assert scored[0].targets == [MISSING, 3.0, MISSING, MISSING, 1.0]
    assert scored[1].targets == [4.0] + [MISSING] * 4
    assert scored[0].text.endswith("Yes.\n" + APM_MARK) and "Two?" not in scored[0].text
    assert scored[1].text.endswith("so.\n" + APM_MARK) and "Unlabelled" not in scored[1].text
    full = len(scored[1].input_ids)
    [cut] = encode_rated([Conversation("c", conv.messages[:4])], template, schema, tok, max_length=full - 10)[1:]
    assert cut.truncated and cut.input_ids == scored[1].input_ids[10:]  # the head reads the end: keep it
    [rejected] = encode_rated([Conversation("c", conv.messages[:4])], template, schema, tok, max_length=full - 10,
                               overlong="reject")[1:]
    assert isinstance(rejected, DataError) and rejected.reason == "too long"


def test_packed_and_padded_batches_predict_the_same():
    from steer.apm import ScoredCollator

    model = _model().eval()
    feats = [{"input_ids": torch.randint(3, 500, (n,)).tolist(), "targets": [1.0, 2.0, MISSING, 0.0, 4.0]}
             for n in (9, 31, 4, 17)]
    packed, padded = ScoredCollator(True)(feats), ScoredCollator(False, 0)(feats)
    assert packed["input_ids"].shape == (1, 61) and packed["index"].tolist() == [8, 39, 43, 60]
    assert padded["index"].tolist() == [8, 31 + 30, 62 + 3, 93 + 16]
    with torch.no_grad():
        a, b = model(**packed), model(**padded)
        alone = torch.cat([model(**ScoredCollator(False)([f])).predictions for f in feats])
    assert a.predictions.shape == (4, 5)
    assert torch.allclose(a.predictions, b.predictions, atol=1e-4) and torch.allclose(a.predictions, alone, atol=1e-4)
    assert abs(a.loss.item() - b.loss.item()) < 1e-4


def test_masked_mse_ignores_missing_attributes():
    from steer.apm import ScoredCollator

    model = _model()
    feats = [{"input_ids": [5, 6, 7], "targets": [MISSING, 2.0, MISSING, MISSING, MISSING]},
             {"input_ids": [8, 9], "targets": [MISSING, MISSING, MISSING, MISSING, 4.0]}]
    out = model(**ScoredCollator(True)(feats))
    p = out.predictions.detach()
    assert out.loss.item() == pytest.approx((((p[0, 1] - 2) ** 2 + (p[1, 4] - 4) ** 2) / 2).item(), rel=1e-5)
    out.loss.backward()
    grad = model.head.weight.grad
    assert grad[1].abs().sum() > 0 and grad[4].abs().sum() > 0 and grad[[0, 2, 3]].abs().sum() == 0


def test_regression_metrics_by_hand():
    from steer.train.tasks.apm import regression_metrics

    preds = [[1.0, 0.0], [2.0, 0.0], [4.0, 9.0]]
    gold = [[1.0, MISSING], [3.0, MISSING], [3.0, MISSING]]
    m = regression_metrics(preds, gold, ["a", "b"])
    assert m["a_mae"] == pytest.approx(2 / 3) and m["a_rmse"] == pytest.approx((2 / 3) ** 0.5)
    assert m["a_pearson"] == pytest.approx(24 / (42 * 24) ** 0.5)  # corr([1,2,4], [1,3,3]) = cov 24/9 over sqrt(42/9 * 24/9)
    assert not any(k.startswith("b_") for k in m)  # no labels: no metrics


def _recipe(tmp_path, shared_assets, out: str = "apm", **train) -> dict:
    rows = []
    for k in range(8):
        for row in fixtures.helpsteer_rows():
            rows.append({**row, "response": row["response"] + " More." * (k % 4), "verbosity": (row["verbosity"] + k) % 5})
    path = fixtures.write(rows, tmp_path / "hs.jsonl")
    return {"kind": "apm", "model": {"from_scratch": TINY, "tokenizer": str(shared_assets / "models/stories260k")},
            "data": {"sources": [{"path": str(path)}], "max_length": 512, "cache_dir": str(tmp_path / "cache"),
                     "validation_fraction": 0.25},
            "train": {"method": "full", "max_steps": 6, "batch_size": 4, "learning_rate": 3e-3, "save_steps": 3,
                      "eval_steps": 3, "logging_steps": 1, "seed": 7, "output_dir": str(tmp_path / out), **train}}


def test_apm_recipes_declare_their_kind(tmp_path):
    from steer.config import load_recipe

    recipe = load_recipe(REPO / "recipes/tiny/synth-apm.yaml")
    assert recipe.kind == "apm"
    with pytest.raises(ConfigError, match="steer train apm"):
        load_recipe(REPO / "recipes/tiny/synth-apm.yaml", kind="sft")
    with pytest.raises(ConfigError, match="steer train sft"):
        load_recipe(REPO / "recipes/tiny/synth-steerlm.yaml", kind="apm")
    with pytest.raises(ConfigError, match="needs a schema"):
        load_recipe(REPO / "recipes/tiny/synth-apm.yaml", ["template.schema=null"])


def test_train_apm_resumes_exactly_and_reloads(tmp_path, shared_assets):
    from safetensors.torch import load_file
    from transformers import AutoModel, TrainerCallback

    from steer.apm import APM, HEAD_FILE
    from steer.train import train

    straight = train(validate_recipe(_recipe(tmp_path, shared_assets, out="straight"), kind="apm"))
    run = straight.run_dir
    assert {"eval_verbosity_mae", "eval_verbosity_rmse", "eval_loss"} <= set(straight.evaluation)
    for name in (HEAD_FILE, "model.safetensors", "config.json", "tokenizer.json", "steer.json", "recipe.yaml",
                 "metrics.jsonl", "checkpoint-3/" + HEAD_FILE):
        assert (run / name).exists(), name
    spec = json.loads((run / "steer.json").read_text())
    assert spec["kind"] == "apm" and spec["apm"]["schema"]["name"] == "helpsteer"

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    broken = validate_recipe(_recipe(tmp_path, shared_assets, out="broken"), kind="apm")
    with pytest.raises(KeyboardInterrupt):
        train(broken, callbacks=[Crash()])
    resumed = train(broken, resume=True)
    assert resumed.resumed_from.endswith("checkpoint-3") and resumed.steps == 6
    assert abs(resumed.train_loss - straight.train_loss) < 1e-5

    # plain transformers + the head file reproduce steer's predictions
    apm = APM.load(run)
    conv = [{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Rayleigh scattering."}]
    [ours] = apm.predict([conv])
    backbone = AutoModel.from_pretrained(str(run)).eval()
    head = load_file(str(run / HEAD_FILE))
    ids = apm.tokenizer(apm.texts([conv])[0], add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        last = backbone(input_ids=ids).last_hidden_state[0, -1]
    plain = head["weight"] @ last + head["bias"]
    assert torch.allclose(plain, torch.tensor(ours), atol=1e-4)
    scored = apm.score([conv])[0]
    assert set(scored) == set(apm.schema.names) and all(isinstance(v, int) and 0 <= v <= 4 for v in scored.values())
    with pytest.raises(UsageError, match="ends with an assistant turn"):
        apm.predict([conv[:1]])


def test_lora_apm_on_a_pretrained_model(tmp_path, shared_assets):
    """LoRA on stories260k: the adapter is saved non-empty, base weights stay, the head is trained;
    steer export merges it into a plain backbone that predicts the same."""
    from safetensors.torch import load_file

    from steer.apm import APM, HEAD_FILE
    from steer.train import train
    from steer.train.export import export

    raw = _recipe(tmp_path, shared_assets)
    raw["model"] = {"name_or_path": str(shared_assets / "models/stories260k")}
    raw["train"].update(method="lora", lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, save_steps=6)
    run = train(validate_recipe(raw, kind="apm")).run_dir
    assert (run / "adapter_model.safetensors").is_file() and not (run / "model.safetensors").exists()
    adapter = load_file(str(run / "adapter_model.safetensors"))
    assert adapter and all(t.numel() for t in adapter.values())
    assert any(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)  # B starts at zero: it trained
    conv = [{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": "Once upon a time."}]
    before = APM.load(run).predict([conv])
    merged = export(run, tmp_path / "merged")
    assert (merged / HEAD_FILE).is_file() and not (merged / "adapter_config.json").exists()
    assert json.loads((merged / "steer.json").read_text())["kind"] == "apm"
    assert APM.load(merged).predict([conv])[0] == pytest.approx(before[0], abs=1e-4)


@pytest.mark.slow
def test_synth_apm_predicts_verbosity_and_correctness(synth_apm, quickstart_fast, tmp_path):
    """The APM trained on the synthetic corpus predicts held-out verbosity and correctness (Pearson >= 0.8)."""
    import numpy as np

    from steer.apm import APM

    settings = json.loads((quickstart_fast[0] / "report.json").read_text())["settings"]
    held_out = synth.corpus(settings["rows"] + 600, seed=settings["seed"])[-500:]  # rows no split has used
    apm = APM.load(synth_apm)
    convs = [[{"role": "system", "content": r["system"]}, *r["messages"]] for r in held_out]
    preds = apm.predict(convs, batch_size=64)
    for k, name in enumerate(apm.schema.names):
        gold = [r["messages"][-1]["attributes"][name] for r in held_out]
        r = float(np.corrcoef([p[k] for p in preds], gold)[0, 1])
        if name in ("verbosity", "correctness"):
            assert r >= 0.8, (name, r)


def _synth_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_label_cli_writes_canonical_rows_and_resumes_after_sigkill(synth_apm, tmp_path):
    from steer.data.loader import load

    rows = synth.corpus(1500, seed=3)
    for r in rows:
        r["meta"] = {"keep": r["id"]}
        del r["messages"][-1]["attributes"]
    data = _synth_jsonl(tmp_path / "unlabelled.jsonl", rows)
    out = tmp_path / "labelled.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "steer", "label", str(synth_apm), "--input", str(data), "--output",
                             str(out), "--batch-size", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 20):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("\n")
    assert 20 <= partial < len(rows)
    result = run_cli("label", str(synth_apm), "--input", str(data), "--output", str(out), "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["total"] == len(rows) and report["skipped"] >= partial - 1
    labelled = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in labelled) == sorted(r["id"] for r in rows)  # each exactly once
    # the input's meta is kept; steer adds which APM labelled the record (resume refuses another)
    assert all(r["meta"] == {"keep": r["id"], "steer_label": {"apm": str(synth_apm), "raw": False}} for r in labelled)
    attrs = [r["messages"][-1]["attributes"] for r in labelled]
    assert all(set(a) == set(synth.SCHEMA.names) and all(isinstance(v, int) and 0 <= v <= 4 for v in a.values())
               for a in attrs)
    records, _ = load(str(out), format="steer")  # labelled data is training data
    assert len(records) == len(rows)
    raw = run_cli("label", str(synth_apm), "--input", str(data), "--output", str(tmp_path / "float.jsonl"), "--float",
                  timeout=600)
    assert raw.returncode == 0, raw.stderr[-2000:]
    first = json.loads((tmp_path / "float.jsonl").read_text().splitlines()[0])
    turn = first["messages"][-1]
    assert any(not float(v).is_integer() for v in turn["scores"].values())  # raw predictions
    assert all(isinstance(v, int) for v in turn["attributes"].values())  # labels stay integers
    assert {k: min(4, max(0, round(v))) for k, v in turn["scores"].items()} == turn["attributes"]


@pytest.mark.slow
def test_length_bias_with_an_apm(synth_apm, quickstart_fast):
    data = quickstart_fast[0] / "data" / "valid.jsonl"
    result = run_cli("eval", "length-bias", str(data), "--apm", str(synth_apm), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert set(out["correlation"]) == set(synth.SCHEMA.names)
    labels = json.loads(run_cli("eval", "length-bias", str(data), "--json").stdout)["correlation"]
    predicted = out["correlation"]["verbosity"]["spearman"]
    # predicted verbosity grows with length about as much as the labelled verbosity does
    assert predicted > 0.3 and abs(predicted - labels["verbosity"]["spearman"]) < 0.15, (predicted, labels["verbosity"])
    both = run_cli("eval", "length-bias", str(data), "--apm", str(synth_apm), "--score", "x")
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.slow
def test_steerability_apm_judge_agrees_with_the_oracle(synth_apm, quickstart_fast):
    """`steer eval steerability` on the quickstart model: the APM judge and the oracle agree in
    direction (the sign of Spearman) for every attribute."""
    qs = quickstart_fast[0]
    runs = {}
    for judge in ("oracle", f"apm:{synth_apm}"):
        result = run_cli("eval", "steerability", str(qs / "model"), "--prompts", str(qs / "data/prompts.jsonl"),
                         "--judge", judge, "--json", "--max-new-tokens", "96", timeout=900)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[judge.split(":")[0]] = json.loads(result.stdout)["attributes"]
    for name in synth.SCHEMA.names:
        oracle, apm = runs["oracle"][name]["spearman"], runs["apm"][name]["spearman"]
        assert oracle is not None and apm is not None and oracle * apm > 0, (name, oracle, apm)


@pytest.mark.slow
def test_eval_values_cli(synth_apm, quickstart_fast, tmp_path):
    """`steer eval values`: every answer judged under every statement; the numbers add up."""
    qs = quickstart_fast[0]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q["prompt"]}) + "\n" for q in synth.prompts(4, seed=0)))
    values = tmp_path / "v.jsonl"
    values.write_text("".join(json.dumps({"value": v}) + "\n" for v in
                              ("I am a busy expert; be terse.", "Explain everything in detail.", "Answer questions about the world.")))
    result = run_cli("eval", "values", str(qs / "model"), "--prompts", str(prompts), "--values", str(values),
                     "--judge", f"apm:{synth_apm}", "--score-attr", "verbosity", "--max-new-tokens", "64", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert (out["prompts"], out["values"], out["answers"], out["comparisons"]) == (4, 3, 12, 24)
    assert out["scored_by"] == "verbosity" and 0 <= out["matched_win_rate"] <= 1 and 0 <= out["best_match_rate"] <= 1
    assert len(out["per_value"]) == 3
    table = run_cli("eval", "values", str(qs / "model"), "--prompts", str(prompts), "--values", str(values),
                    "--judge", f"apm:{synth_apm}", "--max-new-tokens", "32")
    assert table.returncode == 0 and "own statement" in table.stdout and "per value statement" in table.stdout
    bad = run_cli("eval", "values", str(qs / "model"), "--prompts", str(prompts), "--values", str(values),
                  "--judge", f"apm:{synth_apm}", "--score-attr", "humour")
    assert bad.returncode == 2 and "humour" in bad.stderr


@pytest.mark.slow  # two torchrun processes; test_train's gloo test covers the default suite
def test_apm_two_gloo_processes_match_one(tmp_path, shared_assets):
    """`steer train apm --nproc 2` (torchrun, gloo) follows the single-process loss curve for the same global batch."""
    import yaml

    losses = {}
    for name, batch, nproc in (("one", 4, "1"), ("two", 2, "2")):
        raw = _recipe(tmp_path, shared_assets, out=name, batch_size=batch, save_steps=100, eval_steps=None)
        raw["data"]["validation_fraction"] = 0.0
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        args = ["train", "apm", str(tmp_path / f"{name}.yaml"), "--nproc", nproc, "--json"]
        if nproc == "1":  # trains in the command's own process: no need to start one
            proc = invoke_cli(*args)
        else:  # relaunches under torchrun
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
            proc = subprocess.run([sys.executable, "-m", "steer", *args], cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in rows if "loss" in r]
    assert len(losses["one"]) == len(losses["two"]) == 6
    assert max(abs(a - b) for a, b in zip(losses["one"], losses["two"])) < 1e-3
