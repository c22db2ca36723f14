"""`steer serve` under hostile and careless clients: idle and slow connections, oversized or odd
requests, aborted uploads, and a shutdown under load. Every answer is a 4xx or 503, never a 500, and
no client blocks the others."""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time

import pytest

from tests.test_serve import KEY, _start

TIMEOUT = 2  # the server's --timeout in these tests: seconds for a connection to send its request


@pytest.fixture(scope="module")
def server(shared_assets):
    proc, base = _start(str(shared_assets / "models/stories260k"), "--api-key", KEY, "--max-tokens", "64",
                        "--max-queue", "4", "--timeout", str(TIMEOUT))
    yield proc, base
    proc.terminate()
    proc.wait(30)


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _post(base: str, body, headers: dict | None = None, path: str = "/v1/chat/completions"):
    import httpx

    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(base + path, content=content, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **(headers or {})})


def _closed(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds."""
    ready, _, _ = select.select([sock], [], [], within)
    if not ready:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_idle_connections_never_block_health_or_requests_and_are_closed(server):
    import httpx

    _, base = server
    idle = [socket.create_connection(("127.0.0.1", _port(base))) for _ in range(300)]
    try:
        assert httpx.get(base + "/health", timeout=30).status_code == 200  # not 503: connections are not a limit
        reply = _post(base, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0})
        assert reply.status_code == 200, reply.text
        assert all(_closed(s, TIMEOUT * 15) for s in idle[:20])  # the server hung up on them
    finally:
        for s in idle:
            s.close()


def test_a_kept_alive_connection_that_trickles_its_next_headers_is_closed(server):
    """The header deadline starts again after each response: one quick request does not buy a
    connection the right to trickle the next request's headers forever."""
    _, base = server
    sock = socket.create_connection(("127.0.0.1", _port(base)))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(TIMEOUT * 10)
    answer = b""
    while b"}" not in answer:  # the whole /health reply
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    sock.sendall(b"GET /health HTTP/1.1\r\nHost")  # and never the rest
    try:
        assert _closed(sock, TIMEOUT * 15)
    finally:
        sock.close()


def test_a_body_that_trickles_in_gets_408_and_others_are_served_meanwhile(server):
    import httpx

    _, base = server
    sock = socket.create_connection(("127.0.0.1", _port(base)))
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{".encode())
    assert httpx.get(base + "/health", timeout=30).status_code == 200  # not blocked by the slow one
    sock.settimeout(TIMEOUT * 10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_aborted_uploads_are_dropped_quietly(server):
    _, base = server
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", _port(base)))
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                     "Content-Length: 5000\r\n\r\n{\"messages\": [".encode())
        sock.close()
    time.sleep(0.5)
    assert _post(base, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).status_code == 200


DEEP = '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize("body, status, needle", [
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["x"] * 60_000}, 400, "stop takes at most"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [""]}, 400, "stop takes at most"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["y" * 300]}, 400, "stop takes at most"),
    ({"messages": [{"role": "user", "content": "hi"}] * 300}, 400, "at most 256 messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": 2**70}, 400, "seed"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": -1}, 400, "seed"),
    (DEEP, 400, "nested too deeply"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, 400, "must be a string"),
    ({"messages": [{"role": "user", "content": [{"kind": "text"}]}]}, 400, "a part is"),
    ('{"messages": [{"role": "user", "content": "a \\ud800 b"}]}', 400, "lone surrogate"),
    ('{"messages": ' + "[" * 600 + '"\\ud800"' + "]" * 600 + "}", 400, "lone surrogate"),
    ('{"messages": ' + "[" * 400 + "]" * 400 + "}", 400, "messages"),
    ('{"messages": [{"role": "user", "content": "hi"}], "steer": {"values": ["\\udfff"]}}', 400, "lone surrogate"),
    ('{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, "finite"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 1e309}, 400, "finite"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "text only"),
])
def test_odd_requests_are_4xx_and_the_server_stays_healthy(server, body, status, needle):
    import httpx

    _, base = server
    served = httpx.get(base + "/health", timeout=30).json()["served"]
    reply = _post(base, body)
    assert reply.status_code == status, reply.text
    assert needle in reply.json()["error"]["message"]
    health = httpx.get(base + "/health", timeout=30).json()
    assert health["status"] == "ok" and health["served"] == served  # refused before any generation


def test_the_key_needs_its_bearer_and_the_server_describes_nothing_without_it(server):
    import httpx

    _, base = server
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert _post(base, body, headers={"Authorization": KEY}).status_code == 401  # no "Bearer "
    assert _post(base, body, headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert _post(base, body).status_code == 200
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(base + path, timeout=30).status_code == 404


def test_sigterm_under_load_answers_waiting_requests_503_and_exits_promptly(shared_assets):
    """Requests that never batch together (other temperatures): one runs, the rest wait. SIGTERM answers the
    waiting ones 503 at once, lets the running one finish, and the server exits 0."""
    import httpx

    proc, base = _start(str(shared_assets / "models/stories260k"), "--max-tokens", "250", "--grace", "30")
    results: list[int | str] = []

    def one(seed: int) -> None:
        body = {"messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 250,
                "temperature": 1.0 - seed / 100, "seed": seed, "stop": ["NEVER"]}  # seeds are per row
        try:
            results.append(httpx.post(base + "/v1/chat/completions", json=body, timeout=120).status_code)
        except httpx.HTTPError as err:
            results.append(type(err).__name__)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = httpx.get(base + "/health", timeout=30).json()
        if health["running"] == 1 and health["waiting"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(120)
    assert proc.wait(120) == 0
    assert 500 not in results and results.count(503) >= 3 and 200 in results, results
    log = proc.stdout.read()
    assert "Traceback" not in log, log[-2000:]


def test_the_batcher_drops_requests_whose_client_left_and_drain_refuses_the_waiting():
    """Unit level: a ticket cancelled while it waits is never generated; drain answers the waiting
    ones with ServerClosing at once; Server.complete cancels the ticket of a client that has gone."""
    import asyncio

    from steer.engines.base import Response, Sampling
    from steer.serve.app import APIError, Server
    from steer.serve.batcher import Batcher, ClientGone, ServerClosing, Ticket

    release, seen = threading.Event(), []

    class Slow:
        template = None

        def generate(self, prompts, sampling, slots=None):
            seen.extend(p.text if hasattr(p, "text") else p for p in prompts)
            release.wait(10)
            return [Response("ok", [1], "stop", 1, 1, 0.1) for _ in prompts]

    batcher = Batcher(Slow(), max_queue=8)
    first = batcher.submit(Ticket("first", Sampling(seed=1)))
    time.sleep(0.2)  # the worker runs the first
    gone = batcher.submit(Ticket("gone", Sampling(seed=2)))
    waiting = batcher.submit(Ticket("waiting", Sampling(seed=3)))
    gone.cancel.set()
    assert batcher.drain() == 2 and isinstance(waiting.future.exception(1), ServerClosing)
    with pytest.raises(ServerClosing):
        batcher.submit(Ticket("late", Sampling()))
    release.set()
    assert first.future.result(5).text == "ok" and seen == ["first"]
    batcher.close()

    release.clear()
    server = Server(Slow(), "m")
    server.submit(Ticket("busy", Sampling(seed=4)))
    time.sleep(0.2)

    async def left() -> bool:
        return True

    async def ask():
        return await asyncio.wait_for(server.complete("left", Sampling(seed=5), gone=left), timeout=0.3)

    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        asyncio.run(ask())
    dropped = server.submit(Ticket("dropped", Sampling(seed=6)))
    dropped.cancel.set()
    release.set()
    assert isinstance(dropped.future.exception(5), ClientGone)  # answered, so nothing waits on it
    time.sleep(0.3)
    assert "left" not in seen and "dropped" not in seen  # requests of clients that left never run
    server.drain()
    with pytest.raises(APIError) as err:
        server.submit(Ticket("after", Sampling()))
    assert err.value.status == 503 and err.value.headers == {"Retry-After": "1"}
    server.batcher.close()


def test_the_vllm_command_carries_the_key_in_its_environment_only(tmp_path, shared_assets, monkeypatch):
    from steer.serve.vllm_command import plan

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    p = plan(str(shared_assets / "models/stories260k"), name="m", template="steerlm", api_key="sk-secret")
    assert "sk-secret" not in " ".join(p.command) and "sk-secret" not in p.shell()
    assert p.env == {"VLLM_API_KEY": "sk-secret"} and p.shell().startswith("VLLM_API_KEY=... vllm serve ")
    from tests.conftest import invoke_cli

    shown = invoke_cli(
        "serve", str(shared_assets / "models/stories260k"), "--template", "steerlm", "--engine", "vllm", "--print-command",
        "--api-key", "sk-secret", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert shown.returncode == 0 and "sk-secret" not in shown.stdout + shown.stderr


def test_an_empty_or_unreadable_key_is_refused_not_served_open(tmp_path, shared_assets):
    from tests.conftest import invoke_cli

    model = str(shared_assets / "models/stories260k")
    empty, binary = tmp_path / "empty.key", tmp_path / "binary.key"
    empty.write_text("  \n")
    binary.write_bytes(b"\xff\xfe")
    for args, needle in ((("--api-key-file", str(empty)), "the file is empty"),
                         (("--api-key-file", str(binary)), "not UTF-8"), (("--api-key", " "), "--api-key is empty")):
        result = invoke_cli("serve", model, "--template", "steerlm", "--engine", "vllm", "--print-command", *args,
                            env={"XDG_CACHE_HOME": str(tmp_path)})
        assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_image_parts_only_as_checked_data_urls_within_the_limits():
    """An image part is a base64 data: URL: a remote or file URL, an oversize image, a huge canvas, a
    broken image and too many images are each a 400 naming the part; a good one reaches the engine check
    (a text model refuses it)."""
    import base64
    import io

    from PIL import Image

    from steer.serve.requests import APIError, Limits, messages_from
    from tests import fixtures

    limits = Limits(max_images=2, max_image_bytes=2000, max_image_pixels=64 * 64)

    def body(*urls):
        return {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                                          *({"type": "image_url", "image_url": {"url": u}} for u in urls)]}]}

    good = fixtures.data_url("red")
    [message] = messages_from(body(good), limits)
    assert message["content"][1] == {"type": "image", "image": fixtures.png("red")}
    big = io.BytesIO()
    Image.new("RGB", (100, 100), "red").save(big, format="PNG")
    canvas = "data:image/png;base64," + base64.b64encode(big.getvalue()).decode()
    noise = io.BytesIO()
    Image.effect_noise((60, 60), 90).convert("RGB").save(noise, format="PNG")
    heavy = "data:image/png;base64," + base64.b64encode(noise.getvalue()).decode()
    broken = "data:image/png;base64," + base64.b64encode(fixtures.png("red")[:30]).decode()
    for urls, words in (((" https://example.com/a.png".strip(),), "https image URLs are not fetched"),
                        (("file:///etc/passwd",), "file image URLs are not fetched"),
                        (("/etc/passwd",), "a path image URLs are not fetched"),
                        ((heavy,), "over 2000 bytes"), ((canvas,), "100x100, over 4096 pixels"),
                        ((broken,), "not a readable image"), (("data:image/png;base64,@@@",), "not valid base64"),
                        ((good, good, good), "at most 2 images per request")):
        with pytest.raises(APIError) as err:
            messages_from(body(*urls), limits)
        assert err.value.status == 400 and words in err.value.message, (words, err.value.message)
    with pytest.raises(APIError, match="this model reads text only"):
        messages_from(body(good), limits, images=False)  # a text model: refused before decoding
    eps = "data:image/png;base64," + base64.b64encode(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n").decode()
    with pytest.raises(APIError, match="not a readable image"):
        messages_from(body(eps), limits)  # EPS (Ghostscript) is not among the formats a request's image may be


def test_remote_images_are_fetched_only_when_allowed_and_within_the_limits(tmp_path):
    """``--allow-remote-images``: an http image is fetched (at most max_image_bytes, a failed fetch a 400
    naming the part); without it the URL is refused unfetched."""
    import http.server
    import threading

    from steer.serve.app import APIError
    from steer.serve.requests import Limits, messages_from
    from tests import fixtures

    good = fixtures.png("red")
    (tmp_path / "a.png").write_bytes(good)
    (tmp_path / "big.png").write_bytes(good + b"\0" * 5000)
    hits = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def body(url):
        return {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                          {"type": "image_url", "image_url": {"url": url}}]}]}

    try:
        allowed = Limits(allow_remote_images=True, max_image_bytes=2000, timeout_s=5)
        assert messages_from(body(base + "/a.png"), allowed)[0]["content"][1] == {"type": "image", "image": good}
        for url, words in ((base + "/missing.png", "HTTP 404"), (base + "/big.png", "over 2000 bytes"),
                           ("http://127.0.0.1:9/none.png", "could not fetch"), ("http://a:99x/", "could not fetch")):
            with pytest.raises(APIError, match=words) as err:
                messages_from(body(url), allowed)
            assert err.value.status == 400 and "messages[0].content[1]" in str(err.value)
        seen = len(hits)
        with pytest.raises(APIError, match="not fetched by this server.*--allow-remote-images"):
            messages_from(body(base + "/a.png"), Limits())
        assert len(hits) == seen  # refused without a request
    finally:
        httpd.shutdown()
