"""Steering vectors: the file, the hook (where and what it adds), per-request vectors in a batch, the
vector computed from data, and every way of asking for one (CLI, chat, server, the sweep's methods)."""

from __future__ import annotations

import json

import pytest

from steer.errors import UsageError
from tests.conftest import invoke_cli


@pytest.fixture(scope="module")
def engine(shared_assets):
    from steer.engines.hf import HFEngine

    return HFEngine.load(str(shared_assets / "models/stories260k"))


def _vector(path, layers: dict, meta: dict | None = None):
    from steer.vectors import SteeringVector, save

    return save(SteeringVector(layers, meta or {"attribute": "verbosity"}), path)


@pytest.fixture(scope="module")
def files(engine, tmp_path_factory):
    """A zero vector, two random ones (one at two layers) for stories260k, and one of the wrong size."""
    import torch

    folder = tmp_path_factory.mktemp("vectors")
    hidden = engine.model.config.hidden_size
    g = torch.Generator().manual_seed(0)
    return {"zero": _vector(folder / "zero.safetensors", {1: torch.zeros(hidden)}),
            "a": _vector(folder / "a.safetensors", {2: 3 * torch.randn(hidden, generator=g)}),
            "b": _vector(folder / "b.safetensors", {0: torch.randn(hidden, generator=g),
                                                    3: 3 * torch.randn(hidden, generator=g)}, {"attribute": "complexity"}),
            "wide": _vector(folder / "wide.safetensors", {1: torch.ones(hidden + 1)})}


PROMPTS = ["Once upon a time", "The cat sat on the", "Lily went to the park and"]


def test_zero_vector_changes_nothing_and_batched_vectors_equal_one_at_a_time(engine, files):
    from steer.engines.base import Prompt, Sampling

    s = Sampling(temperature=0, max_new_tokens=16)
    plain = [r.token_ids for r in engine.generate(PROMPTS, s)]
    zero = [r.token_ids for r in engine.generate([Prompt(p, (), ((str(files["zero"]), 5.0),)) for p in PROMPTS], s)]
    assert zero == plain
    specs = [((str(files["a"]), 2.0),), (), ((str(files["b"]), -1.5), (str(files["a"]), 0.5))]
    prompts = [Prompt(p, (), v) for p, v in zip(PROMPTS, specs)]
    alone = [engine.generate([p], s)[0].token_ids for p in prompts]
    assert alone[1] == plain[1] and alone[0] != plain[0] and alone[2] != plain[2]  # the vectors do something
    assert [r.token_ids for r in engine.generate(prompts, s)] == alone  # steer's decoder, all rows at once
    assert [r.token_ids for r in engine.generate(prompts, s, slots=2)] == alone  # a finished row's slot refilled
    assert [r.token_ids for r in engine.generate(prompts[::-1], s)] == alone[::-1]
    streamed = [piece for piece in engine.stream(prompts[2], s)][-1]
    assert streamed.token_ids == alone[2]


def _layer_outputs(model, ids, added=None):
    """Each decoder layer's output ``[seq, hidden]`` (seen after any steering hook: registered after it)."""
    import torch

    from steer import vectors

    seen = []
    with torch.inference_mode(), vectors.applied(model, added or {}) as hooks:
        if hooks is not None:
            hooks.rows = [0]
        layers = vectors.decoder_layers(model)
        handles = [layer.register_forward_hook(lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out)[0]))
                   for layer in layers]
        try:
            model(input_ids=ids)
        finally:
            for h in handles:
                h.remove()
    return seen


def test_a_vector_at_layer_l_changes_only_the_residual_stream_after_l(engine, files):
    import torch

    from steer import vectors

    model = engine.model
    ids = torch.tensor([engine.tokenizer("Once upon a time there was")["input_ids"]])
    added = vectors.deltas(model, [[(str(files["a"]), 1.0)]])  # layer 2
    assert set(added) == {2} and added[2].shape == (1, model.config.hidden_size)
    before, after = _layer_outputs(model, ids), _layer_outputs(model, ids, added)
    for k in (0, 1):  # the layers before it
        assert torch.equal(before[k], after[k])
    assert torch.allclose(after[2][-1] - before[2][-1], vectors.load(files["a"]).layers[2], atol=1e-5)
    assert torch.equal(after[2][:-1], before[2][:-1])  # only the last position: the prompt is read unchanged
    assert not torch.allclose(after[3][-1], before[3][-1])  # the layers after it see the change
    assert torch.equal(after[3][:-1], before[3][:-1])  # ... at that position only (attention looks back, not ahead)
    with vectors.applied(model, {}) as none:  # nothing asked for: no hooks at all
        assert none is None and not any(layer._forward_hooks for layer in vectors.decoder_layers(model))


def test_vector_files_specs_and_mismatches(engine, files, tmp_path):
    from safetensors.torch import save_file
    import torch

    from steer import vectors
    from steer.steering import parse_vectors

    assert vectors.parse_spec("v.safetensors") == ("v.safetensors", 1.0)
    assert vectors.parse_spec("dir:x/v.safetensors:-2.5") == ("dir:x/v.safetensors", -2.5)
    assert vectors.parse_spec("odd:name") == ("odd:name", 1.0)
    info = vectors.describe(files["b"])
    assert info["layers"] == [0, 3] and info["format"] == "steer-vector" and info["hidden_size"] == 64
    with pytest.raises(UsageError, match="steering vector not found"):
        parse_vectors(str(tmp_path / "none.safetensors"))
    save_file({"x": torch.zeros(3)}, tmp_path / "plain.safetensors")
    with pytest.raises(UsageError, match="without steer-vector metadata"):
        parse_vectors(str(tmp_path / "plain.safetensors"))
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(UsageError, match="is not a steering-vector file"):
        parse_vectors(str(tmp_path / "text.safetensors"))
    with pytest.raises(UsageError, match="hidden size 65; this model's is 64"):
        vectors.deltas(engine.model, [[(str(files["wide"]), 1.0)]])
    with pytest.raises(UsageError, match="NAME=FILE or FILE"):
        vectors.allow_list(["=x"])
    assert vectors.allow_list([str(files["a"]), f"other={files['b']}"], engine.model) == {
        "a": str(files["a"]), "other": str(files["b"])}
    with pytest.raises(UsageError, match="given twice"):
        vectors.allow_list([str(files["a"]), f"a={files['b']}"])
    # the writer never replaces a file that is not a vector
    with pytest.raises(UsageError):
        _vector(tmp_path / "text.safetensors", {0: torch.zeros(64)})
    assert (tmp_path / "text.safetensors").read_text() == "hello"


def _rated_corpus(path, n: int = 25):
    """Canonical conversations whose answers' verbosity is their length (HelpSteer ratings 0-4)."""
    rows = []
    for i in range(n):
        level = i % 5
        answer = " ".join(["The cat played in the sun."] * (level + 1))
        rows.append({"id": f"r{i}", "messages": [{"role": "user", "content": f"Tell me about cat {i}."},
                     {"role": "assistant", "content": answer,
                      "attributes": {"helpfulness": 2, "correctness": 2, "coherence": 2, "complexity": 2,
                                     "verbosity": level}}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_vectors_train_is_the_mean_difference_of_the_answers(shared_assets, tmp_path):
    import torch

    from steer.engines.hf import HFEngine
    from steer.train import vectors as train_vectors
    from steer.vectors import load

    model = str(shared_assets / "models/stories260k")
    data = _rated_corpus(tmp_path / "rated.jsonl")
    out = tmp_path / "v.safetensors"
    result = train_vectors.train(model, str(data), str(out), attribute="verbosity", layers="1,-1", batch_size=3)
    assert result["layers"] == [1, 4] and result["contrast"] == "verbosity >= 3 vs <= 1"
    assert (result["positive"], result["negative"]) == (10, 10)  # levels 3, 4 vs 0, 1
    vec = load(out)
    assert vec.meta["levels"] == {"positive": 3.5, "negative": 0.5} and vec.meta["model"] == model
    # by hand: the output of layer 1 averaged over each answer's tokens, high minus low
    engine = HFEngine.load(model)
    records = [json.loads(line) for line in data.read_text().splitlines()]
    from steer.data.encode import IGNORE, encode_many
    from steer.data.loader import load as load_records

    loaded, _ = load_records(str(data), schema=engine.template.schema)
    groups = train_vectors.split(loaded, "verbosity", __import__("steer.attributes").attributes.get_schema("helpsteer"))
    sums = []
    for side in (groups.positive, groups.negative):
        pooled = []
        for enc in encode_many(side, engine.template, engine.tokenizer, reply=True):
            with torch.inference_mode():
                hidden = engine.model(input_ids=torch.tensor([enc.input_ids]), output_hidden_states=True).hidden_states[2]
            mask = torch.tensor([lab != IGNORE for lab in enc.labels])
            pooled.append(hidden[0][mask].mean(0))
        sums.append(torch.stack(pooled).mean(0))
    assert len(records) == 25
    assert torch.allclose(vec.layers[1], sums[0] - sums[1], atol=1e-4)
    unit = train_vectors.train(model, str(data), str(tmp_path / "u.safetensors"), attribute="verbosity", normalize=True,
                               pool="last")
    assert abs(float(load(tmp_path / "u.safetensors").layers[unit["layers"][0]].norm()) - 1) < 1e-5
    with pytest.raises(UsageError, match="no answers rated verbosity >= 5"):
        train_vectors.train(model, str(data), str(tmp_path / "x.safetensors"), attribute="verbosity", high=5, low=0)
    with pytest.raises(UsageError, match="no preference pairs"):
        train_vectors.train(model, str(data), str(tmp_path / "x.safetensors"))
    with pytest.raises(UsageError, match="out of range; this model has 5 layers"):
        train_vectors.train(model, str(data), str(tmp_path / "x.safetensors"), attribute="verbosity", layers="7")


def test_vectors_from_pairs_and_the_commands(shared_assets, tmp_path):
    from steer import vectors

    model = str(shared_assets / "models/stories260k")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"type": "preference", "id": f"p{i}",
                                         "prompt": [{"role": "user", "content": f"Say something {i}."}],
                                         "chosen": "The sun is warm and bright today.", "rejected": "No.",
                                         "axis": "verbosity"}) + "\n" for i in range(6)))
    out = tmp_path / "pairs.safetensors"
    done = invoke_cli("vectors", "train", model, "--data", str(pairs), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["contrast"] == "chosen vs rejected" and json.loads(done.stdout)["positive"] == 6
    shown = invoke_cli("vectors", "show", str(out), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["attribute"] == "preference"
    onto = invoke_cli("vectors", "train", model, "--data", str(pairs), "--out", str(pairs))
    assert onto.returncode == 2 and len(onto.stderr.strip().splitlines()) == 1
    plain = invoke_cli("generate", model, "Once upon a time", "--temperature", "0", "--max-new-tokens", "12", "--json")
    steered = invoke_cli("generate", model, "Once upon a time", "--temperature", "0", "--max-new-tokens", "12", "--json",
                         "--vector", f"{out}:40")
    assert plain.returncode == 0 and steered.returncode == 0, steered.stderr
    assert json.loads(plain.stdout)["token_ids"] != json.loads(steered.stdout)["token_ids"]
    missing = invoke_cli("generate", model, "Hi", "--vector", str(tmp_path / "none.safetensors"))
    assert missing.returncode == 2 and "steering vector not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    batch_in = tmp_path / "in.jsonl"
    batch_in.write_text('{"id": "a", "prompt": "Once upon a time"}\n')
    batch = invoke_cli("batch", model, "-i", str(batch_in), "-o", str(tmp_path / "out.jsonl"), "--temperature", "0",
                       "--max-new-tokens", "12", "--vector", f"{out}:40")
    assert batch.returncode == 0, batch.stderr
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["steering"]["vectors"] == [{"file": f"{out}", "coef": 40.0, "sha256": vectors.digest(out)}]
    assert row["text"] == json.loads(steered.stdout)["text"]
    again = invoke_cli("vectors", "train", model, "--data", str(pairs), "--out", str(out), "--pool", "last")
    assert again.returncode == 0, again.stderr  # the same name, another vector: the batch output is stale now
    rerun = invoke_cli("batch", model, "-i", str(batch_in), "-o", str(tmp_path / "out.jsonl"), "--temperature", "0",
                       "--max-new-tokens", "12", "--vector", f"{out}:40")
    assert rerun.returncode == 2 and "steering" in rerun.stderr, rerun.stderr


def test_chat_vector_command(engine, files):
    from steer.engines.base import Sampling
    from steer.generate.chat import ChatSession
    from steer.steering import Steering

    chat = ChatSession(engine, Steering(), Sampling(temperature=0, max_new_tokens=8))
    assert f"vector: {files['a']}:2" in chat.handle(f"/vector {files['a']}:2").text
    assert chat.handle(f"/vector {files['a']}:-1").text.count("vector:") == 1  # the same file: its new coefficient
    chat.handle(f"/vector {files['b']}")
    assert chat.steering.vectors == [(str(files["a"]), -1.0), (str(files["b"]), 1.0)]
    with pytest.raises(UsageError, match="steering vector not found"):
        chat.handle("/vector /no/such.safetensors")
    assert "vector" not in chat.handle("/vector clear").text and chat.steering.vectors == []


def test_server_vectors_come_from_its_allow_list_only(engine, files):
    from steer.engines.base import Prompt, Sampling
    from steer.serve.app import Server
    from steer.serve.requests import APIError

    server = Server(engine, "tiny", vectors={"a": str(files["a"]), "b": str(files["b"])})
    body = {"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 8}
    prompt, *_ = server.prepare({**body, "steer": {"vectors": {"a": 2, "b": -1}}}, chat=True)
    assert prompt.vectors == ((str(files["a"]), 2.0), (str(files["b"]), -1.0))
    listed, *_ = server.prepare({**body, "steer": {"vectors": ["a", {"name": "b", "coef": 0.5}]}}, chat=True)
    assert listed.vectors == ((str(files["a"]), 1.0), (str(files["b"]), 0.5))
    for vectors, needle in (({"c": 1}, "unknown steering vector 'c'; this server has: a, b"),
                            ({str(files["a"]): 1}, "unknown steering vector"),  # a path is only a name here
                            ({"a": "x"}, "must be a number"), ({"a": float("nan")}, "finite"),
                            (["a", "a"], "each named once"), (7, "must be an object")):
        with pytest.raises(APIError) as err:
            server.prepare({**body, "steer": {"vectors": vectors}}, chat=True)
        assert err.value.status == 400 and needle in str(err.value), (vectors, str(err.value))
    bare = Server(engine, "tiny")
    with pytest.raises(APIError, match="start the server with --vector"):
        bare.prepare({**body, "steer": {"vectors": {"a": 1}}}, chat=True)
    s = Sampling(temperature=0, max_new_tokens=8)
    alone = engine.generate([Prompt(prompt.text, (), prompt.vectors)], s)[0].token_ids
    assert engine.generate([Prompt(prompt.text), prompt], s)[1].token_ids == alone  # batched with a plain one


def test_the_sweep_compares_methods_with_calibration_and_a_grid(engine, files, tmp_path):
    from steer.engines.base import Sampling
    from steer.evaluate import steerability
    from steer.evaluate.judges import make_judge

    judge, _ = make_judge("length,fkgl")
    result = steerability.run(engine, [{"prompt": "Once upon a time"}, {"prompt": "The dog"}], judge,
                              ["verbosity"], Sampling(temperature=0, max_new_tokens=12), methods=("prompt", "vector"),
                              vector_files={"verbosity": str(files["a"]), "complexity": str(files["b"])},
                              scale=2.0, pair=("verbosity", "complexity"), own_scale=["verbosity", "complexity"])
    assert set(result.methods) == {"prompt", "vector"}
    vec = result.methods["vector"]["verbosity"]
    assert 0 <= vec["calibration_error"] <= 4 and 0 <= vec["anti_steerable"] <= 1
    assert [lv["requested"] for lv in vec["levels"]] == [0, 1, 2, 3, 4]
    steered = [r for r in result.requests if r.method == "vector" and r.other is None]
    assert [round(r.steering.vectors[0][1], 3) for r in steered[::2]] == [-2.0, -1.0, 0.0, 1.0, 2.0]  # no levels: the range
    grid = result.grid["methods"]["vector"]
    assert len(grid["cells"]) == 25 and set(grid["interaction"]) == {"verbosity<-complexity", "complexity<-verbosity"}
    assert sum(1 for r in result.requests if r.other is not None) == 2 * 25 * 2
    with pytest.raises(UsageError, match="no vector for verbosity"):
        steerability.run(engine, [{"prompt": "Hi"}], judge, ["verbosity"], Sampling(), methods=("vector",))


def test_calibration_and_anti_steerability_by_hand():
    from steer.attributes import get_schema
    from steer.evaluate.methods import coefficient
    from steer.evaluate.steerability import Request, judge_scales, summarize

    schema = get_schema("helpsteer")
    reqs = [Request("verbosity", lvl, p, {"verbosity": lvl}) for p in range(2) for lvl in range(5)]
    # prompt 0 follows the request exactly; prompt 1 goes the other way
    realised = [{"verbosity": lvl if p == 0 else 4 - lvl, "helpfulness": 3 - (lvl == 4)} for p in range(2) for lvl in range(5)]
    out = summarize(reqs, realised, schema, texts=["a b"] * 10)["verbosity"]
    assert out["anti_steerable"] == 0.5 and out["flat"] == 0.0
    assert out["calibration_error"] == pytest.approx((0 + 12) / 10)  # |l - (4 - l)| summed over levels is 12
    assert out["quality"] == {"by": "helpfulness", "levels": {"0": 3, "1": 3, "2": 3, "3": 3, "4": 2}, "drop": 1}
    # a judge on its own scale (characters) is mapped onto 0-4 by its 5th-95th percentile span first
    chars = [{"verbosity": 100 * lvl} for _ in range(2) for lvl in range(5)]
    scales = judge_scales(chars, ["verbosity"], ["verbosity"])
    assert scales == {"verbosity": (0.0, 400.0)}
    assert summarize(reqs, chars, schema, scales=scales)["verbosity"]["calibration_error"] == 0
    assert coefficient({"levels": {"positive": 3.5, "negative": 0.5}}, 4, schema.get("verbosity"), 2.0) == pytest.approx(
        2 * (4 - 2) / 3)


def test_eval_steerability_methods_from_the_command_line(shared_assets, tmp_path, files):
    model = str(shared_assets / "models/stories260k")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Once upon a time"}\n')
    args = ["eval", "steerability", model, "--prompts", str(prompts), "--judge", "length", "--max-new-tokens", "8"]
    done = invoke_cli(*args, "--method", "prompt,vector", "--vector", f"verbosity={files['a']}", "--json",
                      "--plot", str(tmp_path / "m.png"), "--outputs", str(tmp_path / "o.jsonl"))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["methods"] == ["prompt", "vector"] and set(data["by_method"]) == {"prompt", "vector"}
    assert (tmp_path / "m.png").stat().st_size > 5000
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"prompt", "vector"} and len({r["key"] for r in rows}) == 10
    table = invoke_cli(*args, "--method", "prompt", "--method", "vector", "--vector", f"verbosity={files['a']}")
    assert table.returncode == 0 and "verbosity by method" in table.stdout and "vector" in table.stdout
    for extra, needle in ((["--method", "vibes"], "--method must be among"),
                          (["--method", "vector"], "no vector for verbosity"),
                          (["--vector", f"verbosity={files['a']}"], "--vector needs --method vector"),
                          (["--method", "prompt", "--by", "attributes"], "not both"),
                          (["--method", "prompt", "--grid", "verbosity"], "--grid takes two attributes")):
        bad = invoke_cli(*args, *extra)
        assert bad.returncode == 2 and needle in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


@pytest.mark.slow  # a real server process; the in-process server tests cover the default suite
def test_steer_serve_with_an_allow_list(shared_assets, files, engine):
    import httpx

    from steer.engines.base import Prompt, Sampling
    from steer.steering import Steering, steering_prompt
    from tests.test_serve import _start

    model = str(shared_assets / "models/stories260k")
    bad = invoke_cli("serve", model, "--vector", str(files["wide"]))
    assert bad.returncode == 2 and "hidden size 65" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    proc, base = _start(model, "--vector", f"long={files['a']}", "--max-tokens", "16", template=None)
    try:
        assert httpx.get(base + "/v1/models").json()["data"][0]["steer"]["vectors"] == ["long"]
        body = {"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 12, "temperature": 0}
        got = httpx.post(base + "/v1/chat/completions", json={**body, "steer": {"vectors": {"long": 2}}}, timeout=60)
        assert got.status_code == 200, got.text
        prompt = steering_prompt(engine.template, body["messages"], Steering(vectors=[(str(files["a"]), 2.0)]))
        expected = engine.generate([prompt], Sampling(temperature=0, max_new_tokens=12))[0].text
        assert got.json()["choices"][0]["message"]["content"] == expected
        plain = engine.generate([Prompt(prompt.text)], Sampling(temperature=0, max_new_tokens=12))[0].text
        assert expected != plain
        refused = httpx.post(base + "/v1/chat/completions", json={**body, "steer": {"vectors": {str(files["a"]): 1}}})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "steer.vectors"
    finally:
        proc.terminate()
        proc.wait(30)
