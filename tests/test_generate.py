"""Steered generation: the shared prompt path, the hf engine, `steer generate`, and vLLM's thin layer."""

from __future__ import annotations

import json

import pytest

from steer.attributes import get_schema
from steer.errors import UsageError
from steer.generate.engine import Sampling, Steering, steering_prompt
from steer.templates import build_template
from tests.conftest import run_cli


def _model(shared_assets) -> str:
    return str(shared_assets / "models/stories260k")


def test_steering_prompt_resolves_preset_values_and_system():
    t = build_template("steerlm", schema=get_schema("helpsteer"))
    messages = [{"role": "system", "content": "old"}, {"role": "user", "content": "Hi"}]
    text = steering_prompt(t, messages, Steering({"verbosity": 0}, "expert", ["Be terse."], "You are kind."))
    assert "<extra_id_0>System\nYou are kind.\n\nBe terse.\n" in text and "old" not in text
    assert text.endswith("<extra_id_2>helpfulness:4,correctness:4,coherence:4,complexity:4,verbosity:0\n")
    with pytest.raises(UsageError, match="no attribute schema"):
        steering_prompt(build_template("janus", schema=None), messages, Steering({"verbosity": 1}))


def test_sampling_is_validated():
    with pytest.raises(UsageError, match="top_p"):
        Sampling(top_p=0)
    with pytest.raises(UsageError, match="max_new_tokens"):
        Sampling(max_new_tokens=0)


def test_hf_engine_batches_streams_and_stops(shared_assets):
    from steer.generate.hf import HFEngine

    engine = HFEngine.load(_model(shared_assets), template="steerlm")
    prompts = [steering_prompt(engine.template, [{"role": "user", "content": q}], Steering({"verbosity": v}))
               for q, v in (("Once upon a time", 0), ("Tell me a story about a dog and a very long day", 4))]
    greedy = Sampling(temperature=0, max_new_tokens=16)
    batch = engine.generate(prompts, greedy)
    alone = [engine.generate([p], greedy)[0] for p in prompts]
    assert [r.token_ids for r in batch] == [r.token_ids for r in alone]  # left padding changes nothing
    pieces = list(engine.stream(prompts[0], greedy))
    assert "".join(p for p in pieces[:-1]) == pieces[-1].text == alone[0].text
    r = alone[0]
    assert r.prompt_tokens == engine.count_tokens(prompts[0]) and r.completion_tokens == len(r.token_ids)
    assert r.finish_reason in ("stop", "length") and r.seconds > 0
    cut = engine.generate([prompts[0]], Sampling(temperature=0, max_new_tokens=16, stop=(r.text[3:6],)))[0]
    if r.text[3:6].strip():
        assert cut.finish_reason == "stop" and r.text[3:6] not in cut.text
    sampled = [engine.generate([prompts[0]], Sampling(temperature=1.0, max_new_tokens=12, seed=3))[0].text for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable
    with pytest.raises(UsageError, match="context"):
        engine.generate(["word " * 600], greedy)


def test_cli_generate(shared_assets):
    model = _model(shared_assets)
    out = run_cli("generate", model, "Once upon a time", "--template", "steerlm", "--attr", "verbosity=1",
                  "--temperature", "0", "--max-new-tokens", "12", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["attributes"]["verbosity"] == 1 and data["completion_tokens"] == len(data["token_ids"]) > 0
    streamed = run_cli("generate", model, "-", "--template", "steerlm", "--attr", "verbosity=1", "--temperature", "0",
                       "--max-new-tokens", "12", input="Once upon a time")
    assert streamed.returncode == 0 and streamed.stdout.strip() == data["text"].strip()
    assert "tokens/s" in streamed.stderr
    bad = run_cli("generate", model, "hi", "--template", "steerlm", "--attr", "verbosty=1")
    assert bad.returncode == 2 and "did you mean 'verbosity'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    missing = run_cli("generate", "/nonexistent/model", "hi")
    assert missing.returncode == 2 and "not found" in missing.stderr
    long = run_cli("generate", model, "word " * 600, "--template", "steerlm")
    assert long.returncode == 2 and "context" in long.stderr


def test_vllm_layer_without_vllm(tmp_path):
    import importlib.util

    from steer.generate.vllm import INSTALL, model_and_adapter, sampling_params

    t = build_template("steerlm", schema=get_schema("helpsteer"))
    params = sampling_params(Sampling(temperature=0, top_k=0, max_new_tokens=9, seed=1, stop=("END",)), t)
    assert params == {"temperature": 0, "top_p": 1.0, "top_k": -1, "max_tokens": 9, "seed": 1,
                      "stop": ["<extra_id_1>", "END"], "skip_special_tokens": True}
    run = tmp_path / "run"
    run.mkdir()
    (run / "steer.json").write_text(json.dumps({"base_model": "/models/base", "template": t.spec()}))
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "ignored"}))
    assert model_and_adapter(str(run))[:2] == ("/models/base", str(run))
    if importlib.util.find_spec("vllm") is None:
        proc = run_cli("generate", str(run), "hi", "--engine", "vllm")
        assert proc.returncode == 2 and INSTALL in proc.stderr
