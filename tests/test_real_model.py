"""The real SmolLM2-135M-Instruct through every job: the pulled folder in plain transformers (its
chat template, the GGUF file's greedy answer), generate / chat / batch / serve steered by value
statements, and, after the short real quickstart, SteerLM attributes, export and the sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REAL_MODEL, run_cli

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France? Answer in one sentence."


def test_the_pulled_folder_is_plain_transformers_and_answers_like_the_gguf_file(real_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steer import models

    record = models.pulled(REAL_MODEL)
    assert record["check"]["equal"] and record["parameters"] == 134_515_008
    tok = AutoTokenizer.from_pretrained(real_model)
    model = AutoModelForCausalLM.from_pretrained(real_model)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    answer = models.greedy(model, tok, QUESTION)
    assert answer == record["check"]["gguf"] and "Paris" in answer


def test_generate_batch_and_chat_steer_the_real_model_by_value_statements(real_model, tmp_path):
    gen = run_cli("generate", REAL_MODEL, QUESTION, "--temperature", "0", "--max-new-tokens", "24",
                  "--value", "You answer in as few words as possible.", "--json", timeout=600)
    assert gen.returncode == 0, gen.stderr
    assert "Paris" in json.loads(gen.stdout)["text"]
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "prompt": "Name a color.", "values": "You answer in one word."},
        {"id": "b", "prompt": "Name a fruit.", "system": "You are a grocer."}]))
    out = tmp_path / "out.jsonl"
    batch = run_cli("batch", REAL_MODEL, "--input", str(rows), "--output", str(out), "--temperature", "0", "--max-new-tokens", "12",
                    timeout=600)
    assert batch.returncode == 0, batch.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == ["a", "b"] and all(r["text"].strip() for r in written)
    chat = run_cli("chat", REAL_MODEL, input="/params temperature=0 max_new_tokens=16\n/value You are terse.\n"
                   f"{QUESTION}\n/set verbosity 1\n/quit\n", timeout=600)
    assert chat.returncode == 0, chat.stderr
    assert "Paris" in chat.stdout and "no attribute schema" in chat.stderr


def test_serve_answers_with_the_real_chat_template(real_model):
    from openai import OpenAI

    from tests.test_serve import _start

    proc, base = _start(REAL_MODEL, "--api-key", "sk-real", "--max-tokens", "32", template=None)
    try:
        client = OpenAI(base_url=base + "/v1", api_key="sk-real", max_retries=0)
        reply = client.chat.completions.create(model=REAL_MODEL, temperature=0, max_tokens=24,
                                               messages=[{"role": "user", "content": QUESTION}],
                                               extra_body={"steer": {"values": "You are terse."}})
        assert "Paris" in reply.choices[0].message.content
        import httpx

        refused = httpx.post(base + "/v1/chat/completions", headers={"Authorization": "Bearer sk-real"}, json={
            "model": REAL_MODEL, "messages": [{"role": "user", "content": "hi"}], "steer": {"attributes": {"verbosity": 1}}})
        assert refused.status_code == 400 and "no attribute schema" in refused.text
    finally:
        proc.terminate()
        proc.wait(60)


def test_the_real_quickstart_trains_steerlm_and_measures_both_methods(real_quickstart):
    report = real_quickstart
    for method in ("baseline", "steerlm"):
        for name in ("verbosity", "complexity"):
            row = report[method][name]
            assert [lv["requested"] for lv in row["levels"]] == [0, 1, 2, 3, 4]
            assert row["spearman"] is not None and all(lv["judged"] == 2 for lv in row["levels"])
    import math

    assert report["train"]["steps"] > 0 and report["train"]["tokens"] > 0 and math.isfinite(report["train"]["train_loss"])
    logged = [json.loads(line) for line in (Path(report["run"]) / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["step"] == 1 and "loss" in logged[0]
    assert logged[-1]["step"] == report["train"]["steps"] and "train_loss" in logged[-1]
    assert json.loads((Path(report["run"]) / "steer.json").read_text())["base_model"] == report["model_path"]
    assert set(report["timings"]) == {"pull_s", "baseline_s", "train_s", "steerlm_s", "total_s"}
    assert Path(report["plots"][0]).is_file() and Path(report["plots"][1]).is_file()


def test_the_trained_real_model_takes_attributes_and_exports(real_quickstart, tmp_path):
    run = report_run = real_quickstart["run"]
    gen = run_cli("generate", run, QUESTION, "--attr", "verbosity=0", "--temperature", "0", "--max-new-tokens", "24",
                  "--json", timeout=600)
    assert gen.returncode == 0, gen.stderr
    shown = json.loads(gen.stdout)
    assert shown["text"].strip()
    out = tmp_path / "merged"
    export = run_cli("export", report_run, "--out", str(out), timeout=600)
    assert export.returncode == 0, export.stderr
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True,
                                     steer_attributes={"verbosity": 0})
    assert prompt.endswith("<|im_start|>assistant\n<attributes>complexity:2,verbosity:0</attributes>\n")
    assert "<|im_start|>system\nYou are a helpful AI assistant named SmolLM" in prompt
