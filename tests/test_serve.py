"""`steer serve`: a real server on loopback, talked to with the official openai client and raw HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO, invoke_cli

KEY = "sk-test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model: str, *args: str, template: str | None = "steerlm") -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    chosen = ["--template", template] if template else []
    proc = subprocess.Popen([sys.executable, "-m", "steer.cli", "serve", model, *chosen, "--port", str(port),
                             *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read())
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def server(shared_assets):
    model = str(shared_assets / "models/stories260k")
    proc, base = _start(model, "--api-key", KEY, "--max-tokens", "64", "--name", "tiny")
    yield model, base
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server[1] + "/v1", api_key=KEY, max_retries=0)


def test_chat_steered_equals_steer_generate(server, client):
    model, _ = server
    cli = invoke_cli("generate", model, "Once upon a time", "--template", "steerlm", "--attr", "verbosity=0",
                     "--attr", "complexity=4", "--temperature", "0", "--max-new-tokens", "24", "--seed", "7", "--json")
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)["text"]
    messages = [{"role": "user", "content": "Once upon a time"}]
    kwargs = {"chat_template_kwargs": {"steer_attributes": "verbosity:0,complexity:4"}}
    out = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=24, seed=7,
                                         extra_body=kwargs)
    assert out.choices[0].message.content == expected
    assert out.usage.completion_tokens > 0 and out.choices[0].finish_reason in ("stop", "length")
    via_steer = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=24,
                                               extra_body={"steer": {"attributes": {"verbosity": 0, "complexity": 4}}})
    assert via_steer.choices[0].message.content == expected
    other = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=24,
                                           extra_body={"chat_template_kwargs": {"steer_attributes": "verbosity:4"}})
    assert other.usage.prompt_tokens == out.usage.prompt_tokens  # same prompt length, other attribute values
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=24,
                                                  stream=True, extra_body=kwargs))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_completions_models_and_defaults(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    out = client.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=12)
    assert out.choices[0].text and out.usage.completion_tokens <= 12
    streamed = list(client.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=12,
                                              stream=True))
    assert "".join(c.choices[0].text for c in streamed) == out.choices[0].text
    unsteered = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], temperature=0,
                                               max_tokens=8)  # no steering: the schema defaults
    defaults = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], temperature=0,
                                              max_tokens=8, extra_body={"chat_template_kwargs": {
                                                  "steer_attributes": "helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:2"}})
    assert unsteered.choices[0].message.content == defaults.choices[0].message.content


@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "invalid JSON"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "steer": {"attributes": {"verbosty": 1}}}), 400, "verbosty"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"steer_attributes": "verbosity:9"}}), 400, "verbosity"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"other": 1}}), 400, "chat_template_kwargs"),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 600}]}), 400, "context"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}), 400, "max_tokens"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}), 400, "temperature"),
    (json.dumps({"messages": []}), 400, "messages"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "model": "../../etc/passwd"}), 404, "not served"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 2_000_000}]}), 413, "body"),
])
def test_bad_input_gets_its_status_and_the_server_stays_healthy(server, body, status, needle):
    import httpx

    _, base = server
    r = httpx.post(base + "/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    assert httpx.get(base + "/health").json()["status"] == "ok"


def test_api_key_is_required(server):
    import httpx

    _, base = server
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(base + "/v1/chat/completions", json=body).status_code == 401
    assert httpx.post(base + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(base + "/v1/models").status_code == 401
    assert httpx.post(base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_load_200_requests_16_clients(server, client):
    """Bounded load: every request answered, complete, none failed."""
    def one(i: int) -> str:
        out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"Story {i}:"}],
                                             temperature=0, max_tokens=8,
                                             extra_body={"steer": {"attributes": {"verbosity": i % 5}}})
        assert out.choices[0].finish_reason in ("stop", "length")
        return out.choices[0].message.content

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(200)))
    assert len(answers) == 200


def test_full_queue_answers_503_with_retry_after():
    """A worker busy on one request, a queue of one: the third request is refused, not lost."""
    from steer.engines.base import Response, Sampling
    from steer.serve.app import APIError, Limits, Server
    from steer.serve.batcher import Ticket

    release = threading.Event()

    class Slow:
        template = None

        def generate(self, prompts, sampling, slots=None):
            release.wait(10)
            return [Response("ok", [1], "stop", 1, 1, 0.1) for _ in prompts]

    server = Server(Slow(), "slow", Limits(max_queue=1, retry_after_s=3))
    first = server.submit(Ticket("a", Sampling()))
    time.sleep(0.2)  # the worker has taken the first job and is blocked in generate
    second = server.submit(Ticket("b", Sampling()))
    with pytest.raises(APIError) as err:
        server.submit(Ticket("c", Sampling()))
    assert err.value.status == 503 and err.value.headers == {"Retry-After": "3"}
    release.set()
    assert first.future.result(5).text == "ok" and second.future.result(5).text == "ok"
    server.batcher.close()


def test_sigterm_finishes_in_flight_requests(shared_assets):
    """SIGTERM while an answer streams: the answer completes, new connections are refused, exit 0."""
    import httpx

    proc, base = _start(str(shared_assets / "models/stories260k"), "--max-tokens", "250")
    body = {"messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 250, "temperature": 0,
            "stop": ["NEVER"], "stream": True}
    lines = []
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=120) as r:
        stream = r.iter_lines()
        for line in stream:
            if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                break  # generation is under way
        proc.send_signal(signal.SIGTERM)
        lines = [line for line in stream if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][len("data: "):])
    assert last["choices"][0]["finish_reason"] in ("stop", "length") and len(lines) > 10
    assert proc.wait(60) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/health", timeout=2)


def test_binds_loopback_by_default(server):
    """The server started without --host listens on 127.0.0.1 only (read from the kernel's socket table)."""
    port = int(server[1].rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                listening.append(local.rsplit(":", 1)[0])
    if not listening:
        pytest.skip("no /proc/net/tcp to read the listening address from")
    assert listening == ["0100007F"]  # 127.0.0.1, little-endian hex


def test_vllm_command_construction(tmp_path, shared_assets, monkeypatch):
    from steer.serve.vllm_command import vllm_command

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "steer.json").write_text(json.dumps({"kind": "sft", "method": "lora", "base_model": "meta-llama/Llama-3.1-8B-Instruct",
                                                "template": {"kind": "chat"}}))
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct"}))
    (run / "chat_template.jinja").write_text("{{ steer_attributes }}")
    cmd = vllm_command(str(run), "{{ steer_attributes }}", name="steered", port=9000)
    assert cmd[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert cmd[cmd.index("--chat-template") + 1] == str(run / "chat_template.jinja")
    assert cmd[cmd.index("--lora-modules") + 1] == f"steered={run}" and "--enable-lora" in cmd
    assert cmd[cmd.index("--port") + 1] == "9000" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--api-key" not in cmd  # a key on a command line is visible to every user of the machine
    plain = vllm_command("org/model", "{{ other }}", name="m")
    template = plain[plain.index("--chat-template") + 1]
    assert template.startswith(str(tmp_path / "cache")) and open(template).read() == "{{ other }}"
    assert plain[plain.index("--served-model-name") + 1] == "m" and "--enable-lora" not in plain
    model = str(shared_assets / "models/stories260k")
    out = invoke_cli("serve", model, "--engine", "vllm", "--template", "steerlm", "--print-command", "--port", "8123",
                     env={"XDG_CACHE_HOME": str(tmp_path / "cache2")})
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[0]
    assert line.startswith(f"vllm serve {model} --host 127.0.0.1 --port 8123 --chat-template ")
    assert "--served-model-name stories260k" in line and "<extra_id_1>" in out.stderr


def test_image_parts_through_the_openai_client_are_400s_on_a_text_model(server, client):
    """The official client's image_url parts reach the server's checks: a remote URL is refused as such,
    a good inline image by the text model; the server stays healthy."""
    import httpx
    import openai

    from tests import fixtures

    def ask(url):
        return client.chat.completions.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}]}])

    for url in ("https://example.com/cat.png", fixtures.data_url("red")):  # refused before any decoding
        words = "this model reads text only"
        with pytest.raises(openai.BadRequestError) as err:
            ask(url)
        assert err.value.status_code == 400 and words in str(err.value)
    assert httpx.get(server[1] + "/health").json()["status"] == "ok"
