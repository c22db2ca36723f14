"""What an OpenAI client assumes of `steer serve`, in process (FastAPI's test client under the official
``openai`` client): ``n`` choices, log-probs (checked against a forward pass by hand), seeds that hold
when batched, ``stream_options.include_usage``, ``response_format``, and ``/v1/models``' steering
metadata; every bad value a 400 naming its parameter."""

from __future__ import annotations

import asyncio
import threading

import pytest

MESSAGES = [{"role": "user", "content": "Once upon a time"}]


@pytest.fixture(scope="module")
def engine(shared_assets):
    from steer.engines.hf import HFEngine

    return HFEngine.load(str(shared_assets / "models/stories260k"), template="steerlm")


@pytest.fixture(scope="module")
def served(engine):
    """The app over ``engine`` and an openai client talking to it (no socket)."""
    from fastapi.testclient import TestClient
    from openai import OpenAI

    from steer.serve.app import Limits, Server, create_app

    server = Server(engine, "tiny", Limits(max_tokens=64))
    with TestClient(create_app(server)) as http:
        yield server, http, OpenAI(base_url="http://testserver/v1", api_key="x", http_client=http, max_retries=0)


class Gated:
    """``engine`` behind a gate: calls wait until it opens, and the size of each call is recorded."""

    def __init__(self, engine):
        self.engine, self.gate, self.calls = engine, threading.Event(), []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, prompts, sampling, slots=None):
        self.gate.wait(30)
        self.calls.append(("generate", len(prompts)))
        return self.engine.generate(prompts, sampling, slots)

    def stream_rows(self, prompts, sampling, cancel=None):
        self.gate.wait(30)
        self.calls.append(("stream_rows", len(prompts)))
        yield from self.engine.stream_rows(prompts, sampling, cancel)


def _texts(chunks) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks:
        for c in chunk.choices:
            piece = c.delta.content if hasattr(c, "delta") else c.text
            out[c.index] = out.get(c.index, "") + (piece or "")
    return out


def test_n_choices_are_seeded_apart_and_usage_counts_the_prompt_once(served, engine):
    from steer.serve.requests import choice_seed

    _, _, client = served
    ask = dict(model="tiny", messages=MESSAGES, temperature=1.0, max_tokens=12)
    out = client.chat.completions.create(n=3, seed=11, **ask)
    assert [c.index for c in out.choices] == [0, 1, 2]
    texts = [c.message.content for c in out.choices]
    assert len(set(texts)) > 1  # sampled independently
    alone = [client.chat.completions.create(seed=choice_seed(11, i), **ask) for i in range(3)]
    assert texts == [a.choices[0].message.content for a in alone]  # choice i is the request seeded 11 + i
    assert out.usage.prompt_tokens == alone[0].usage.prompt_tokens
    assert out.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    greedy = client.chat.completions.create(n=2, **{**ask, "temperature": 0})
    assert greedy.choices[0].message.content == greedy.choices[1].message.content  # allowed, identical
    done = client.completions.create(model="tiny", prompt="The cat", n=2, temperature=1.0, seed=3, max_tokens=8)
    assert [c.index for c in done.choices] == [0, 1] and done.usage.prompt_tokens == engine.count_tokens("The cat")
    again = client.completions.create(model="tiny", prompt="The cat", temperature=1.0, seed=4, max_tokens=8)
    assert done.choices[1].text == again.choices[0].text


def test_n_streamed_chunks_carry_their_choice_and_equal_the_answers(served):
    _, _, client = served
    ask = dict(model="tiny", messages=MESSAGES, temperature=1.0, max_tokens=12, n=3, seed=5)
    whole = client.chat.completions.create(**ask)
    chunks = list(client.chat.completions.create(stream=True, **ask))
    assert sorted(c.choices[0].index for c in chunks if c.choices[0].delta.role == "assistant") == [0, 1, 2]
    assert _texts(chunks) == {c.index: c.message.content for c in whole.choices}
    finished = {c.choices[0].index: c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason}
    assert finished == {c.index: c.finish_reason for c in whole.choices}
    done = client.completions.create(model="tiny", prompt="The cat", n=2, temperature=1.0, seed=3, max_tokens=8)
    streamed = list(client.completions.create(model="tiny", prompt="The cat", n=2, temperature=1.0, seed=3,
                                              max_tokens=8, stream=True))
    assert _texts(streamed) == {c.index: c.text for c in done.choices}


def test_logprobs_are_the_raw_model_distribution(served, engine):
    """Each token's log-prob is log_softmax(model(prompt + prefix).logits[-1])[token] (float32, by hand),
    not the tempered distribution it was sampled from; top_logprobs are that distribution's k likeliest.
    The tokens' ids come from the engine run with the same seed (the same answer)."""
    import torch

    from steer.engines.base import Prompt, Sampling
    from steer.steering import Steering, steering_prompt

    _, _, client = served
    out = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.7, seed=2, max_tokens=10,
                                         logprobs=True, top_logprobs=5)
    content = out.choices[0].logprobs.content
    text = steering_prompt(engine.template, MESSAGES, Steering()).text
    (mine,) = engine.generate([Prompt(text, seed=2)], Sampling(temperature=1.7, max_new_tokens=10))
    assert mine.text == out.choices[0].message.content and len(content) == len(mine.token_ids) == 10
    prompt = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    tempered = []
    with torch.inference_mode():
        for k, (entry, token) in enumerate(zip(content, mine.token_ids)):
            logits = engine.model(torch.tensor([prompt + mine.token_ids[:k]])).logits[0, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            assert abs(logp[token].item() - entry.logprob) < 1e-4
            assert [t.logprob for t in entry.top_logprobs] == pytest.approx(logp.topk(5).values.tolist(), abs=1e-4)
            assert entry.bytes == list(entry.token.encode()) and entry.top_logprobs[0].bytes is not None
            tempered.append(abs(torch.log_softmax(logits / 1.7, dim=-1)[token].item() - entry.logprob))
    assert max(tempered) > 1e-2  # what temperature 1.7 samples from is not what is reported
    assert "".join(t.token for t in content).startswith(out.choices[0].message.content)  # before a stop is cut
    spaced = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=8, max_tokens=8,
                                            logprobs=True)  # its first token is "▁u": the tokens still join into the text
    assert "".join(t.token for t in spaced.choices[0].logprobs.content) == spaced.choices[0].message.content


def test_logprobs_by_id_match_a_forward_pass_and_rows_that_do_not_ask_are_unchanged(engine):
    """The engine's own entries (token ids): every generated token's log-prob equals the by-hand forward
    pass within 1e-4, sampled or greedy, batched with rows that ask for none (whose tokens do not change)."""
    import torch

    from steer.engines.base import Prompt, Sampling

    s = Sampling(temperature=1.3, max_new_tokens=16)
    plain = [Prompt("The cat sat on the", seed=1), Prompt("Lily went to the park and", seed=2)]
    asked = Prompt("Once upon a time", seed=3, logprobs=3)
    before = engine.generate(plain, s)
    mixed = engine.generate([plain[0], asked, plain[1]], s)
    assert [r.token_ids for r in (mixed[0], mixed[2])] == [r.token_ids for r in before]
    assert mixed[0].logprobs is None and "logprobs" not in mixed[0].to_json()
    greedy = engine.generate([Prompt("Once upon a time", logprobs=0)], Sampling(temperature=0, max_new_tokens=12))[0]
    prompt = engine.tokenizer("Once upon a time", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        for response in (mixed[1], greedy):
            assert [t.id for t in response.logprobs] == response.token_ids
            for k, entry in enumerate(response.logprobs):
                logits = engine.model(torch.tensor([prompt + response.token_ids[:k]])).logits[0, -1].float()
                logp = torch.log_softmax(logits, dim=-1)
                assert abs(logp[entry.id].item() - entry.logprob) < 1e-4
                assert [a.id for a in entry.top] == logp.topk(len(entry.top)).indices.tolist()
    assert all(not t.top for t in greedy.logprobs) and len(mixed[1].logprobs[0].top) == 3
    assert "".join(t.token for t in mixed[1].logprobs) == engine.tokenizer.decode(mixed[1].token_ids)
    assert [t.logprob for t in greedy.logprobs] == pytest.approx(
        [t.logprob for t in list(engine.stream(Prompt("Once upon a time", logprobs=0),
                                               Sampling(temperature=0, max_new_tokens=12)))[-1].logprobs], abs=1e-5)


def test_completions_logprobs_have_openais_shape(served):
    _, _, client = served
    out = client.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=8, logprobs=3)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert "".join(lp.tokens) == out.choices[0].text  # greedy, cut by length: every token shows
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:k]) for k in range(8)]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert top[token] == logprob and 3 <= len(top) <= 4  # the 3 likeliest and the sampled token
        assert logprob == max(top.values())  # greedy: the sampled token is the likeliest
    none = client.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=4)
    assert none.choices[0].logprobs is None
    streamed = list(client.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=8,
                                              logprobs=3, stream=True))
    last = [c for c in streamed if c.choices and c.choices[0].finish_reason][0].choices[0].logprobs
    assert last.tokens == lp.tokens and last.token_logprobs == pytest.approx(lp.token_logprobs, abs=1e-5)
    chat = list(client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=6,
                                               logprobs=True, stream=True))
    ends = [c.choices[0] for c in chat if c.choices[0].finish_reason]
    assert len(ends[0].logprobs.content) == 6 and ends[0].logprobs.content[0].top_logprobs == []


def test_seeds_hold_alone_batched_and_streamed(engine):
    """Same seed, same text: twice, batched with other requests (other seeds, none), and streamed;
    another seed, another text."""
    from steer.engines.base import Sampling
    from steer.serve.app import Server

    gated = Gated(engine)
    server = Server(gated, "tiny")
    sampling = Sampling(temperature=1.0, max_new_tokens=16, seed=21)
    prompt, *_ = server.prepare({"messages": MESSAGES, "max_tokens": 16}, chat=True)

    async def requests():
        alone = [await server.complete(prompt, sampling) for _ in range(2)]
        gated.gate.clear()
        blocker = asyncio.ensure_future(server.complete(prompt, Sampling(temperature=1.0, max_new_tokens=2)))
        await asyncio.sleep(0.2)  # the worker holds the blocker at the gate; the rest queue behind it
        others = [server.complete(prompt, Sampling(temperature=1.0, max_new_tokens=16, seed=s)) for s in (None, 3, 99)]
        batched = asyncio.gather(server.complete(prompt, sampling), *others)
        await asyncio.sleep(0.2)
        gated.gate.set()
        await blocker
        return alone, await batched

    gated.gate.set()
    try:
        alone, batched = asyncio.run(requests())
        streamed = asyncio.run(_stream_text(server, prompt, sampling))
    finally:
        server.batcher.close()
    assert alone[0].text == alone[1].text == batched[0].text == streamed
    assert ("generate", 4) in gated.calls  # the seeded request ran as one row of a batch of four
    assert len({alone[0].text, batched[2].text, batched[3].text}) > 1  # other seeds, other answers


async def _stream_text(server, prompt, sampling) -> str:
    return "".join(piece for _, piece in [p async for p in server.stream(prompt, sampling)] if isinstance(piece, str))


def test_a_large_n_is_rows_in_turn_and_its_tickets_queue_together(engine):
    """A request's n choices are rows: one call holds them (up to max_batch), a request behind them shares
    the call with the remainder instead of waiting for all of them; a request whose n do not all fit
    the queue is a 503 (a stream's too, before it starts) and queues none; streamed choices are rows of
    one stream_rows call."""
    from steer.engines.base import Sampling
    from steer.serve.app import APIError, Limits, Server

    gated = Gated(engine)
    server = Server(gated, "tiny", Limits(max_batch=3, max_queue=8, max_n=8))
    prompt, *_ = server.prepare({"messages": MESSAGES, "max_tokens": 4}, chat=True)
    sampling = Sampling(temperature=1.0, max_new_tokens=4)

    async def requests():
        blocker = asyncio.ensure_future(server.complete(prompt, sampling))
        await asyncio.sleep(0.2)
        many = asyncio.ensure_future(server.answers(prompt, sampling, 5))
        one = asyncio.ensure_future(server.answers(prompt, sampling, 1))
        await asyncio.sleep(0.2)
        with pytest.raises(APIError) as err:
            await server.answers(prompt, sampling, 3)  # 6 waiting, 2 places
        assert err.value.status == 503 and server.batcher.waiting == 6
        with pytest.raises(APIError) as err:
            server.stream(prompt, sampling, 3)  # a stream too: refused before its response starts
        assert err.value.status == 503 and server.batcher.waiting == 6
        gated.gate.set()
        return await blocker, await many, await one

    try:
        _, many, one = asyncio.run(requests())
        streamed = asyncio.run(_stream_text(server, prompt, sampling))
        pieces = asyncio.run(_pieces(server, prompt, sampling, 3))
    finally:
        server.batcher.close()
    assert len(many) == 5 and len(one) == 1 and streamed is not None
    assert gated.calls[:3] == [("generate", 1), ("generate", 3), ("generate", 3)]  # the last: 2 of many, and one
    assert ("stream_rows", 3) in gated.calls and sorted({i for i, _ in pieces}) == [0, 1, 2]


async def _pieces(server, prompt, sampling, n):
    return [p async for p in server.stream(prompt, sampling, n)]


def test_stream_options_include_usage_ends_with_a_usage_chunk(served, engine):
    _, http, client = served
    ask = dict(model="tiny", messages=MESSAGES, temperature=0, max_tokens=8)
    whole = client.chat.completions.create(n=2, **ask)
    chunks = list(client.chat.completions.create(n=2, stream=True, stream_options={"include_usage": True}, **ask))
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(stream=True, **ask))
    assert all(c.usage is None and c.choices for c in plain)
    done = list(client.completions.create(model="tiny", prompt="The cat", max_tokens=4, temperature=0, stream=True,
                                          stream_options={"include_usage": True}))
    assert done[-1].choices == [] and done[-1].usage.completion_tokens == 4
    assert done[-1].usage.prompt_tokens == engine.count_tokens("The cat")
    raw = http.post("/v1/chat/completions", json={**ask, "stream": True, "stream_options": {"include_usage": True}})
    lines = [line for line in raw.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and '"choices": []' in lines[-2]


def test_response_format_text_is_accepted_and_json_modes_are_refused(served):
    import openai

    _, _, client = served
    out = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4,
                                         response_format={"type": "text"})
    assert out.choices[0].message.content is not None
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    for fmt in ({"type": "json_object"}, schema):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, response_format=fmt)
        body = err.value.body
        assert err.value.status_code == 400 and body["param"] == "response_format"
        assert "constrained decoding" in body["message"] and "--engine vllm" in body["message"]


@pytest.mark.parametrize("path, extra, param, needle", [
    ("chat", {"n": 0}, "n", "from 1 to 16"),
    ("chat", {"n": 17}, "n", "from 1 to 16"),
    ("chat", {"n": 2.5}, "n", "integer"),
    ("chat", {"n": "2"}, "n", "integer"),
    ("completions", {"n": -1}, "n", "from 1 to 16"),
    ("chat", {"logprobs": True, "top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
    ("chat", {"logprobs": True, "top_logprobs": -1}, "top_logprobs", "between 0 and 20"),
    ("chat", {"top_logprobs": 3}, "top_logprobs", "needs logprobs: true"),
    ("chat", {"logprobs": False, "top_logprobs": 3}, "top_logprobs", "needs logprobs: true"),
    ("chat", {"logprobs": 5}, "logprobs", "true or false"),
    ("completions", {"logprobs": 6}, "logprobs", "between 0 and 5"),
    ("completions", {"logprobs": True}, "logprobs", "integer"),
    ("chat", {"stream_options": {"include_usage": True}}, "stream_options", "only allowed with stream"),
    ("completions", {"stream_options": {}}, "stream_options", "only allowed with stream"),
    ("chat", {"stream": True, "stream_options": [1]}, "stream_options", "must be an object"),
    ("chat", {"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options", "true or false"),
    ("chat", {"response_format": {"type": "json_object"}}, "response_format", "constrained decoding"),
    ("completions", {"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format",
     "constrained decoding"),
    ("chat", {"response_format": {"type": "xml"}}, "response_format", "{type: text}"),
    ("chat", {"response_format": "json"}, "response_format", "{type: text}"),
    ("chat", {"n": 2, "best_of": 2}, "n", "best_of"),
])
def test_bad_openai_parameters_are_400s_naming_them(served, path, extra, param, needle):
    server, http, _ = served
    served_before = server.batcher.served
    body = {"model": "tiny", "max_tokens": 4, **({"messages": MESSAGES} if path == "chat" else {"prompt": "The cat"}),
            **extra}
    reply = http.post(f"/v1/{'chat/completions' if path == 'chat' else 'completions'}", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and needle in error["message"] and error["type"] == "invalid_request_error"
    assert server.batcher.served == served_before  # refused before anything ran


def test_the_openai_client_sees_the_400s(served):
    import openai

    _, _, client = served
    for kwargs, param in (({"n": 0}, "n"), ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                          ({"stream_options": {"include_usage": True}}, "stream_options")):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, **kwargs)
        assert err.value.body["param"] == param


def test_models_describe_how_the_model_is_steered(served, engine):
    from steer.attributes import presets_for

    _, _, client = served
    (model,) = client.models.list().data
    steer = model.model_extra["steer"]
    schema = engine.template.schema
    assert steer["template"] == "steerlm" and steer["values"] is True and steer["vectors"] == []
    assert [(a["name"], a["min"], a["max"], a["default"]) for a in steer["schema"]["attributes"]] == \
        [(a.name, a.min, a.max, a.default) for a in schema.attributes]
    assert steer["presets"]["concise"] == {"description": "short, to-the-point answers", "values": {"verbosity": 0}}
    assert set(steer["presets"]) == set(presets_for(schema))


def test_the_vllm_engine_maps_its_logprobs_and_row_seeds(shared_assets):
    """vLLM's documented output (per token a dict id -> Logprob(logprob, rank, decoded_token), the sampled
    token and the k likeliest) becomes the same Response.logprobs; a prompt's seed and k reach its
    SamplingParams. A stand-in for vLLM: vLLM itself cannot run here."""
    from types import SimpleNamespace

    import transformers

    from steer.attributes import get_schema
    from steer.engines.base import Prompt, Sampling
    from steer.engines.vllm import VLLMEngine
    from steer.templates import build_template
    from tests.test_generate import FakeVLLM

    class WithLogprobs(FakeVLLM):
        def output(self, params, chars=None):
            out = super().output(params, chars)
            if getattr(params, "logprobs", None) is not None:
                out.outputs[0].logprobs = [
                    {5: SimpleNamespace(logprob=-0.5, rank=2, decoded_token=" a"),
                     7: SimpleNamespace(logprob=-0.1, rank=1, decoded_token=" the")},
                    {6: SimpleNamespace(logprob=-2.0, rank=3, decoded_token="é"),
                     8: SimpleNamespace(logprob=-0.3, rank=1, decoded_token=" b"),
                     9: SimpleNamespace(logprob=-0.9, rank=2, decoded_token=" c")}]
            return out

    tok = transformers.AutoTokenizer.from_pretrained(str(shared_assets / "models/stories260k"))
    fake = WithLogprobs("an answer", [5, 6])
    engine = VLLMEngine(fake, tok, build_template("steerlm", schema=get_schema("helpsteer")), vllm=WithLogprobs)
    asked, plain = engine.generate([Prompt("x", seed=42, logprobs=2), Prompt("y")],
                                   Sampling(temperature=1.0, max_new_tokens=4, seed=7))
    assert [(p.seed, getattr(p, "logprobs", None)) for p in fake.params] == [(42, 2), (8, None)]
    assert plain.logprobs is None
    first, second = asked.logprobs
    assert (first.token, first.logprob, first.id, first.bytes) == (" a", -0.5, 5, tuple(b" a"))
    assert [(a.token, a.logprob) for a in first.top] == [(" the", -0.1), (" a", -0.5)]
    assert second.bytes == tuple("é".encode()) and [a.id for a in second.top] == [8, 9]
