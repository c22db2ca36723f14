"""Steered generation: the shared prompt path, the hf engine, `steer generate`, and vLLM's thin layer."""

from __future__ import annotations

import json
import re

import pytest

from steer.attributes import get_schema
from steer.errors import UsageError
from steer.engines.base import Sampling
from steer.steering import Steering, steering_prompt
from steer.templates import build_template
from tests.conftest import invoke_cli, run_cli


def _model(shared_assets) -> str:
    return str(shared_assets / "models/stories260k")


def test_steering_prompt_resolves_preset_values_and_system():
    t = build_template("steerlm", schema=get_schema("helpsteer"))
    messages = [{"role": "system", "content": "old"}, {"role": "user", "content": "Hi"}]
    text = steering_prompt(t, messages, Steering({"verbosity": 0}, "expert", ["Be terse."], "You are kind.")).text
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
    from steer.engines.hf import HFEngine

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
    assert r.prompt_tokens == engine.count_tokens(prompts[0].text) and r.completion_tokens == len(r.token_ids)
    assert r.finish_reason in ("stop", "length") and r.seconds > 0
    cut = engine.generate([prompts[0]], Sampling(temperature=0, max_new_tokens=16, stop=(r.text[3:6],)))[0]
    if r.text[3:6].strip():
        assert cut.finish_reason == "stop" and r.text[3:6] not in cut.text
    sampled = [engine.generate([prompts[0]], Sampling(temperature=1.0, max_new_tokens=12, seed=3))[0].text for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable
    with pytest.raises(UsageError, match="context"):
        engine.generate(["word " * 600], greedy)


def test_batches_drop_finished_rows_and_give_generates_tokens(shared_assets):
    """steer's decoder (finished rows leave the batch) gives model.generate's greedy tokens for every row of
    a batch whose answers end at different steps (an EOS, a stop string, the token limit), and seeded
    sampling is repeatable and top_k 1 is greedy."""
    import torch
    from transformers import StopStringCriteria

    from steer.engines import decode
    from steer.engines.hf import HFEngine

    engine = HFEngine.load(_model(shared_assets), template="steerlm")
    model, tok = engine.model, engine.tokenizer
    assert decode.usable(model)
    tok.padding_side = "left"
    texts = ["Once upon a time", "Tom had a red ball. One day", "The cat", "Lily and her mom went to the park. They saw"]
    enc = tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    # this tiny model never ends a story within 60 tokens: let a full stop end a sequence, as EOS would
    eos = {tok(".", add_special_tokens=False)["input_ids"][-1]}
    with torch.inference_mode():
        reference = model.generate(**enc, max_new_tokens=60, do_sample=False, pad_token_id=tok.pad_token_id,
                                   eos_token_id=sorted(eos))
        ours = decode.decode(model, ids, pad_id=tok.pad_token_id, max_new_tokens=60, eos=eos)
    width = enc["input_ids"].shape[1]
    for row, got in zip(reference[:, width:].tolist(), ours):
        ended = [i for i, t in enumerate(row) if t in eos]
        assert got == (row[: ended[0] + 1] if ended else row)
    assert len({len(r) for r in ours}) > 1  # the rows really finished at different steps
    texts2 = texts + ["A big dog ran", "Sam found a shell on the beach. He"]
    ids2 = tok(texts2, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        alone = [decode.decode(model, [p], pad_id=tok.pad_token_id, max_new_tokens=60, eos=eos)[0] for p in ids2]
        refilled = decode.decode(model, ids2, pad_id=tok.pad_token_id, max_new_tokens=60, eos=eos, slots=2)
    assert refilled == alone and alone[:4] == ours  # prompts joined into a running batch: the same tokens
    eos = decode.eos_ids(model, tok)
    with torch.inference_mode():
        ours = decode.decode(model, ids, pad_id=tok.pad_token_id, max_new_tokens=60, eos=eos)
    stop = StopStringCriteria(tokenizer=tok, stop_strings=[","])
    with torch.inference_mode():
        cut = decode.decode(model, ids, pad_id=tok.pad_token_id, max_new_tokens=60, eos=eos, stop=stop)
    for full, short in zip(ours, cut):
        assert full[: len(short)] == short and "," not in tok.decode(short[:-1])
        assert "," in tok.decode(short) or short == full  # cut at the token that completes the stop string
    with torch.inference_mode():
        torch.manual_seed(5)
        a = decode.decode(model, ids, pad_id=tok.pad_token_id, max_new_tokens=20, eos=eos, temperature=1.0)
        torch.manual_seed(5)
        b = decode.decode(model, ids, pad_id=tok.pad_token_id, max_new_tokens=20, eos=eos, temperature=1.0)
        k1 = decode.decode(model, ids, pad_id=tok.pad_token_id, max_new_tokens=20, eos=eos, temperature=0.8,
                           top_k=1)
    assert a == b and k1 == [r[:20] for r in ours]
    model.generation_config.repetition_penalty = 1.3  # logits processing this decoder does not do: generate's path
    try:
        assert not decode.usable(model)
    finally:
        model.generation_config.repetition_penalty = 1.0


@pytest.mark.slow  # a CLI process that loads torch and a model (~23 s); the slow suite runs it
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

    from steer.engines.vllm import INSTALL, sampling_params
    from steer.runs import resolve

    t = build_template("steerlm", schema=get_schema("helpsteer"))
    params = sampling_params(Sampling(temperature=0, top_k=0, max_new_tokens=9, seed=1, stop=("END",)), t)
    assert params == {"temperature": 0, "top_p": 1.0, "top_k": -1, "max_tokens": 9, "seed": 1,
                      "stop": ["<extra_id_1>", "END"], "skip_special_tokens": True}
    run = tmp_path / "run"
    run.mkdir()
    (run / "steer.json").write_text(json.dumps({"base_model": "/models/base", "template": t.spec()}))
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "ignored"}))
    ref = resolve(str(run))
    assert (ref.weights, ref.adapter, ref.tokenizer) == ("/models/base", str(run), "/models/base")
    if importlib.util.find_spec("vllm") is None:
        proc = invoke_cli("generate", str(run), "hi", "--engine", "vllm")
        assert proc.returncode == 2 and INSTALL in proc.stderr


class FakeVLLM:
    """Enough of vLLM's API for steer's engine: ``SamplingParams``, ``LLM.generate`` and the request
    loop of ``LLM.llm_engine`` (add_request / step / abort_request), with vLLM's stop rule: the text
    ends before the first stop string, which is not included, and finish_reason is "stop"."""

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def __init__(self, continuation: str, ids: list[int], max_model_len: int = 512):
        import types

        self.continuation, self.ids, self.aborted = continuation, ids, []
        fake = self

        class Engine:
            model_config = types.SimpleNamespace(max_model_len=max_model_len)

            def __init__(self):
                self.requests = {}

            def add_request(self, rid, prompt, params, lora_request=None):
                self.requests[rid] = [params, 0]

            def step(self):
                outs = []
                for rid, state in list(self.requests.items()):
                    state[1] += 1
                    out = fake.output(state[0], state[1])
                    out.request_id = rid
                    if out.finished:
                        del self.requests[rid]
                    outs.append(out)
                return outs

            def abort_request(self, rids):
                fake.aborted += rids
                for rid in rids:
                    self.requests.pop(rid, None)

        self.llm_engine = Engine()

    def output(self, params, chars: int | None = None):
        import types

        text, reason = self.continuation, "length"
        cuts = [i for i in (text.find(s) for s in params.stop or []) if i >= 0]
        if cuts:
            text, reason = text[: min(cuts)], "stop"
        finished = chars is None or chars >= len(text)
        shown = text if finished else text[:chars]
        done = types.SimpleNamespace(text=shown, token_ids=self.ids, finish_reason=reason if finished else None)
        return types.SimpleNamespace(outputs=[done], prompt_token_ids=[1, 2, 3], finished=finished, request_id=None)

    def generate(self, prompts, params, lora_request=None, use_tqdm=False):
        self.params = params if isinstance(params, list) else [params] * len(prompts)  # vLLM: one, or one per prompt
        return [self.output(p) for p in self.params]


@pytest.mark.parametrize("raw, user_stop", [
    ("Paris is the capital.\n<extra_id_1>User\nMore", ()),  # the turn ends: the closing newline goes too
    ("Paris is the capital. Paris is large.", ()),  # cut by length: nothing is removed
    ("Paris is the capital.\nEND and more", ("END",)),  # a user stop string
])
def test_hf_and_vllm_finish_the_same_raw_output_the_same(shared_assets, raw, user_stop):
    """One raw continuation, both engines: the same Response.text and finish reason."""
    from steer.engines.hf import HFEngine
    from steer.engines.vllm import VLLMEngine

    hf = HFEngine.load(_model(shared_assets), template="steerlm")
    ids = hf.tokenizer(raw, add_special_tokens=False)["input_ids"]
    sampling = Sampling(temperature=0, max_new_tokens=64, stop=user_stop)
    ours = hf._finish(ids, sampling, 3, 0.1, None)
    fake = FakeVLLM(hf.tokenizer.decode(ids, skip_special_tokens=True), ids)
    vllm = VLLMEngine(fake, hf.tokenizer, hf.template, vllm=FakeVLLM)
    (theirs,) = vllm.generate(["prompt"], sampling)
    assert theirs.text == ours.text and theirs.finish_reason == ours.finish_reason
    assert not theirs.text.endswith("\n") or ours.finish_reason == "length"
    streamed = list(vllm.stream("prompt", sampling))
    assert "".join(p for p in streamed[:-1]) == streamed[-1].text == ours.text  # nothing shown that is cut later


def test_vllm_seeds_each_prompt_of_a_call_apart(shared_assets):
    """A seeded vLLM request is deterministic per request: copies of one prompt (batch --samples) need seeds apart."""
    from steer.engines.vllm import VLLMEngine

    hf_tok = __import__("transformers").AutoTokenizer.from_pretrained(_model(shared_assets))
    fake = FakeVLLM("an answer", [5, 6])
    engine = VLLMEngine(fake, hf_tok, build_template("steerlm", schema=get_schema("helpsteer")), vllm=FakeVLLM)
    engine.generate(["same", "same", "same"], Sampling(temperature=1.0, max_new_tokens=8, seed=7))
    assert [p.seed for p in fake.params] == [7, 8, 9]
    engine.generate(["same", "same"], Sampling(temperature=1.0, max_new_tokens=8))
    assert [p.seed for p in fake.params] == [None, None]


def test_vllm_stream_honours_cancel_and_checks_the_context(shared_assets):
    import threading

    from steer.engines.vllm import VLLMEngine

    hf_tok = __import__("transformers").AutoTokenizer.from_pretrained(_model(shared_assets))
    template = build_template("steerlm", schema=get_schema("helpsteer"))
    fake = FakeVLLM("a long answer " * 20, [5] * 40, max_model_len=64)
    engine = VLLMEngine(fake, hf_tok, template, vllm=FakeVLLM)
    cancel = threading.Event()
    pieces = []
    for piece in engine.stream("prompt", Sampling(temperature=0, max_new_tokens=8), cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 2:
            cancel.set()
    assert len(fake.aborted) == 1 and not fake.llm_engine.requests  # the request was aborted, the engine is free
    assert len(pieces) < 20
    with pytest.raises(UsageError, match="context"):
        engine.generate(["word " * 100], Sampling(max_new_tokens=8))


def _jobs_file(tmp_path, n=3):
    path = tmp_path / "in.jsonl"
    rows = [{"id": f"r{i}", "prompt": f"Tell me about day {i}", "meta": i} for i in range(n)]
    rows[0]["attributes"] = {"complexity": 1}
    rows[1] = {"id": "r1", "messages": [{"role": "user", "content": "Hi"}], "system": "Be brief.", "values": "Terse."}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_batch_grid_output_rows_and_resume_after_a_cut_line(tmp_path, shared_assets):
    from steer.engines.hf import HFEngine
    from steer.generate.batch import iter_jobs, parse_grid, run_batch

    engine = HFEngine.load(_model(shared_assets), template="steerlm")
    schema = engine.template.schema
    grid = parse_grid(["verbosity=0,4", "complexity=1,3"], schema)
    jobs = list(iter_jobs(_jobs_file(tmp_path), schema, grid))
    assert len(jobs) == 3 * 4
    out = tmp_path / "out.jsonl"
    greedy = Sampling(temperature=0, max_new_tokens=6)
    report = run_batch(engine, jobs[:5], out, greedy, batch_size=2)
    assert report.written == 5
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])  # killed mid-write
    report = run_batch(engine, jobs, out, greedy, batch_size=4)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert report.skipped == 4 and report.written == 8 and len(rows) == 12
    assert len({r["key"] for r in rows}) == 12
    r0 = next(r for r in rows if r["id"] == "r0" and r["grid"] == {"verbosity": 4, "complexity": 3})
    assert r0["steering"]["attributes"]["verbosity"] == 4 and r0["steering"]["attributes"]["complexity"] == 3
    assert r0["meta"] == 0 and r0["finish_reason"] in ("stop", "length") and r0["completion_tokens"] > 0
    r1 = next(r for r in rows if r["id"] == "r1")
    assert r1["steering"]["system"] == "Be brief." and r1["steering"]["values"] == ["Terse."]


def test_batch_errors_name_the_line(tmp_path, shared_assets):
    from steer.generate.batch import BadRow, iter_jobs, parse_grid

    schema = get_schema("helpsteer")
    bad = tmp_path / "bad.jsonl"
    for text, msg in [('{"id": 1, "prompt": "a"}\n{"id": 2\n', "bad.jsonl:2: invalid JSON"),
                      ('{"prompt": "a"}\n', "with an 'id'"),
                      ('{"id": 1}\n', "needs a non-empty 'prompt'"),
                      ('{"id": 1, "prompt": "a", "attributes": {"verbosty": 1}}\n', "did you mean 'verbosity'"),
                      ('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n', "duplicate id")]:
        bad.write_text(text)
        bad_rows = [j for j in iter_jobs(bad, schema, {}) if isinstance(j, BadRow)]
        assert len(bad_rows) == 1 and re.search(msg, bad_rows[0].reason), (bad_rows, msg)
    with pytest.raises(UsageError, match="out of range|between"):
        parse_grid(["verbosity=0,9"], schema)
    # the command streams on: a bad row goes to OUT.errors.jsonl, the others are generated
    bad.write_text('{"id": 1, "prompt": "a"}\nnot json\n{"id": 1, "prompt": "b"}\n{"id": 2, "prompt": "c", "attributes": {"verbosity": 3}, "system": "Own."}\n')
    out = tmp_path / "o.jsonl"
    args = ["batch", _model(shared_assets), "--template", "steerlm", "--input", str(bad), "--output", str(out),
            "--attr", "verbosity=1", "--attr", "complexity=4", "--system", "Default.", "--max-new-tokens", "4", "--json",
            "--preset", "expert", "--value", "V.", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "7", "--seed", "3",
            "--stop", "zzz", "--batch-size", "1", "--engine", "hf"]
    proc = invoke_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"total": 4, "written": 2, "skipped": 0, "errors": 2, "output": str(out)}
    errors = [json.loads(line) for line in (tmp_path / "o.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [2, 3] and "invalid JSON" in errors[0]["reason"] and "duplicate id" in errors[1]["reason"]
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows[1]["steering"]["attributes"]["verbosity"] == 1 and rows[1]["steering"]["system"] == "Default."
    assert rows[2]["steering"]["attributes"]["verbosity"] == 3 and rows[2]["steering"]["system"] == "Own."
    assert rows[2]["steering"]["attributes"]["complexity"] == 4  # the command's default where the row is silent
    assert rows[1]["steering"]["preset"] == "expert" and rows[1]["steering"]["values"] == ["V."]
    again = invoke_cli(*args)
    assert json.loads(again.stdout)["skipped"] == 2 and len((tmp_path / "o.errors.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow  # CLI processes end to end: the default suite stays under 6 minutes
def test_cli_batch_killed_then_rerun_writes_every_row_once(tmp_path, shared_assets):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "prompt": f"Story {i}"}) + "\n" for i in range(24)))
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "steer", "batch", _model(shared_assets), "--template", "steerlm", "--input", str(src),
            "--output", str(out), "--grid", "verbosity=0,4", "--batch-size", "1", "--max-new-tokens", "24",
            "--temperature", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.is_file() and out.read_text().count("\n") >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    again = subprocess.run(args + ["--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 48 and len({r["key"] for r in rows}) == 48
    assert json.loads(again.stdout)["skipped"] >= 3


def test_chat_repl_commands_through_stdin(tmp_path, shared_assets):
    from steer.data.loader import load

    saved = tmp_path / "chat.jsonl"
    script = "\n".join([
        "/help", "/attrs", "/set verbosty 1", "/set verbosity 1", "/preset nope", "/preset concise",
        "/system Be nice.", "/value I am busy.", "/params temperature=0 max_new_tokens=8", "/params temprature=1",
        "Once upon a time", "/retry", "Tell me more", "/undo", "/foo", "/sav", f"/save {saved}", "/system clear", "/value clear", "/reset", "/undo",
        "/quit", "never read"]) + "\n"
    proc = invoke_cli("chat", _model(shared_assets), "--template", "steerlm", input=script, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out, err = proc.stdout, proc.stderr
    assert "/retry" in out and "/save" in out  # /help
    assert "did you mean 'verbosity'" in err and "unknown preset 'nope'" in err
    assert "helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:1" in out
    assert "verbosity:0" in out and "system: Be nice.; value: I am busy." in out  # concise preset, then system/value
    assert "temperature=0.0" in out and "max_new_tokens=8" in out and "did you mean 'temperature'" in err
    assert "unknown command /foo" in err and "did you mean /save?" in err and "nothing to undo" in err
    assert err.count("tokens/s") == 3  # three answers, each with its dim line
    assert "never read" not in out
    cleared = out.split("you> ")[script.splitlines().index("/value clear") + 1]
    assert "verbosity:0" in cleared and "system:" not in cleared and "value:" not in cleared
    (record,), report = load(str(saved), format="steer")
    assert [m.role for m in record.messages] == ["user", "assistant"]  # /undo dropped the second exchange
    assert record.messages[1].attributes["verbosity"] == 0 and record.system == "Be nice.\n\nI am busy."


def test_chat_ctrl_c_stops_the_answer_not_the_session(shared_assets):
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from tests.conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "steer", "chat", _model(shared_assets), "--template", "steerlm",
                             "--max-new-tokens", "200", "--temperature", "1", "--seed", "1"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stdout.read(1), "")), daemon=True)
    reader.start()
    proc.stdin.write("Once upon a time\n")
    proc.stdin.flush()
    deadline = time.time() + 120
    while time.time() < deadline and "".join(seen).count("you> ") < 1:
        time.sleep(0.01)
    start = len("".join(seen))
    while time.time() < deadline and len("".join(seen)) <= start + 3:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.stdin.write("/attrs\n/quit\n")
    proc.stdin.flush()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    reader.join(timeout=10)
    assert "(answer stopped)" in err
    assert "helpfulness:4" in "".join(seen)  # the session went on after the stopped answer


def test_python_api_mirrors_the_cli(shared_assets):
    import sys

    import steer

    model = _model(shared_assets)
    r = steer.generate(model, "Once upon a time", attributes={"verbosity": 1}, template="steerlm", temperature=0,
                       max_new_tokens=10)
    cli = invoke_cli("generate", model, "Once upon a time", "--template", "steerlm", "--attr", "verbosity=1",
                     "--temperature", "0", "--max-new-tokens", "10", "--json")
    assert r.text == json.loads(cli.stdout)["text"] and r.completion_tokens > 0
    assert "".join(steer.stream(model, "Once upon a time", attributes="verbosity:1", template="steerlm",
                                temperature=0, max_new_tokens=10)) == r.text
    assert callable(steer.generate) and steer.generate.__name__ == "steer.generate" and "steer.generate.api" in sys.modules
    with pytest.raises(UsageError, match="unknown preset"):
        steer.generate(model, "hi", preset="nope", template="steerlm")


@pytest.mark.slow  # CLI processes end to end: the default suite stays under 6 minutes
def test_cli_generate_steering_and_sampling_flags(shared_assets):
    model = _model(shared_assets)
    base = ["generate", model, "Once upon a time", "--template", "steerlm", "--max-new-tokens", "8", "--json"]
    out = json.loads(run_cli(*base, "--attrs", "verbosity:0,complexity:3", "--preset", "expert", "--system", "Sys.",
                             "--value", "Be terse.", "--value", "Be kind.", "--temperature", "0.9", "--top-p", "0.8",
                             "--top-k", "5", "--seed", "11").stdout)
    assert out["attributes"]["verbosity"] == 0 and out["attributes"]["complexity"] == 3  # explicit beats preset
    assert out["values"] == ["Be terse.", "Be kind."] and out["system"] == "Sys."
    again = json.loads(run_cli(*base, "--attrs", "verbosity:0,complexity:3", "--preset", "expert", "--system", "Sys.",
                               "--value", "Be terse.", "--value", "Be kind.", "--temperature", "0.9", "--top-p", "0.8",
                               "--top-k", "5", "--seed", "11").stdout)
    assert again["token_ids"] == out["token_ids"]  # --seed makes sampling repeatable
    greedy = json.loads(run_cli(*base, "--temperature", "0").stdout)
    if len(greedy["text"]) > 6 and greedy["text"][2:5].strip():
        cut = json.loads(run_cli(*base, "--temperature", "0", "--stop", greedy["text"][2:5]).stdout)
        assert cut["finish_reason"] == "stop" and cut["text"] == greedy["text"][:2]
    bad = run_cli(*base, "--preset", "nope")
    assert bad.returncode == 2 and "unknown preset" in bad.stderr


def test_plain_peft_adapter_directory_loads(tmp_path, shared_assets):
    """A PEFT adapter folder without steer.json (someone else's LoRA) loads with --template."""
    import shutil

    from transformers import AutoModelForCausalLM

    from steer.engines.hf import HFEngine
    from steer.train import train as train_sft
    from steer.config import validate_recipe
    from tests import fixtures

    data = fixtures.write(fixtures.helpsteer_rows() * 4, tmp_path / "hs.jsonl")
    run = train_sft(validate_recipe({
        "model": {"name_or_path": _model(shared_assets)}, "data": {"sources": [{"path": str(data)}], "max_length": 512,
                                                                 "cache_dir": str(tmp_path / "c")},
        "train": {"method": "lora", "max_steps": 2, "learning_rate": 0.05, "batch_size": 4, "save_steps": 2,
                  "output_dir": str(tmp_path / "run"), "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}})).run_dir
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(run / name, bare / name)
    assert isinstance(AutoModelForCausalLM.from_pretrained(str(bare)), torch_module().nn.Module)
    greedy = Sampling(temperature=0, max_new_tokens=8)
    ours = HFEngine.load(str(run))
    theirs = HFEngine.load(str(bare), template="steerlm")
    messages = [{"role": "user", "content": "Hello"}]
    p1 = steering_prompt(ours.template, messages, Steering({"verbosity": 1}))
    p2 = steering_prompt(theirs.template, messages, Steering({"verbosity": 1}))
    assert p1 == p2
    assert ours.generate([p1], greedy)[0].token_ids == theirs.generate([p2], greedy)[0].token_ids


def torch_module():
    import torch

    return torch
