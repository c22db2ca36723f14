"""The OpenAI-compatible HTTP API (FastAPI): ``/v1/chat/completions``, ``/v1/completions``,
``/v1/models`` and ``/health``, streaming with server-sent events.

Steering comes per request in ``chat_template_kwargs`` (the variables the model's chat template
declares, as vLLM forwards them) or in a ``steer`` object (``attributes``, ``preset``, ``values``).
Bad input is a 4xx with an OpenAI-style error body; the server never loads anything a request names.
"""


import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from steer.attributes import preset_values, require_schema
from steer.engines.base import Prompt, Response, Sampling, check_context, text_prompts
from steer.errors import SteerError, UsageError
from steer.serve.batcher import Batcher, QueueFull, Ticket
from steer.steering import Steering, blame, parse_attributes, parse_values, steering_from, steering_prompt
from steer.templates import STEER_VARIABLES


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much may wait."""

    max_tokens: int = 512
    max_body_bytes: int = 1_000_000
    max_queue: int = 64
    max_batch: int = 16
    retry_after_s: int = 1


class APIError(Exception):
    """An error answered to the client: HTTP status, message, OpenAI error type, offending parameter."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, dict(headers or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


def _number(body: Mapping, key: str, kind: type, default: Any, low: float | None = None, high: float | None = None) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise APIError(400, f"{key} must be a {'integer' if kind is int else 'number'}, got {value!r}", param=key)
    if (low is not None and value < low) or (high is not None and value > high):
        raise APIError(400, f"{key} must be between {low} and {high}, got {value}", param=key)
    return kind(value)


def sampling_from(body: Mapping, limits: Limits, max_tokens_default: int) -> Sampling:
    """Sampling settings from an OpenAI request body (``max_tokens`` checked against the server limit)."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", int, max_tokens_default, 1)
    if max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens}", param="max_tokens")
    if _number(body, "n", int, 1, 1) != 1:
        raise APIError(400, "only n=1 is supported", param="n")
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
        raise APIError(400, "stop must be a string or a list of strings", param="stop")
    return Sampling(temperature=_number(body, "temperature", float, 1.0, 0, 2), top_p=_number(body, "top_p", float, 1.0, 0, 1),
                    top_k=max(0, _number(body, "top_k", int, 0, -1)), max_new_tokens=max_tokens,
                    seed=_number(body, "seed", int, None), stop=tuple(stop))


def request_steering(body: Mapping, schema: Any) -> Steering:
    """Steering from ``chat_template_kwargs`` and/or the ``steer`` object: their attributes merge (the
    ``steer`` object's win), their value statements add up."""
    kwargs = body.get("chat_template_kwargs") or {}
    steer = body.get("steer") or {}
    for name, value in (("chat_template_kwargs", kwargs), ("steer", steer)):
        if not isinstance(value, dict):
            raise APIError(400, f"{name} must be an object", param=name)
    unknown = sorted(set(kwargs) - set(STEER_VARIABLES))
    if unknown:
        raise APIError(400, f"unknown chat_template_kwargs {unknown} (this model's template declares "
                       f"{', '.join(STEER_VARIABLES)})", param="chat_template_kwargs")
    unknown = sorted(set(steer) - {"attributes", "preset", "values"})
    if unknown:
        raise APIError(400, f"unknown steer keys {unknown} (known: attributes, preset, values)", param="steer")
    attributes = {**parse_attributes(kwargs.get("steer_attributes"), schema, field="steer_attributes"),
                  **parse_attributes(steer.get("attributes"), schema, field="steer.attributes")}
    values = [*parse_values(kwargs.get("steer_values"), field="steer_values"),
              *parse_values(steer.get("values"), field="steer.values")]
    preset = steer.get("preset")
    if preset is not None:  # checked here so that an error names the request's parameter
        with blame("steer.preset"):
            if not isinstance(preset, str):
                raise UsageError("steer.preset must be a string")
            preset_values(preset, require_schema(schema, "steer.preset"))
    return steering_from(schema, attributes=attributes, preset=preset, values=values)


def messages_from(body: Mapping) -> list[dict]:
    """Chat messages: a role and content, a string or a list of parts (text, image) as OpenAI sends them."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise APIError(400, f"messages[{i}]: role must be system, user or assistant", param="messages")
        content = m.get("content")
        if not isinstance(content, (str, list)):
            raise APIError(400, f"messages[{i}]: content must be a string or a list of parts", param="messages")
        out.append({"role": m["role"], "content": content})
    return out


class Server:
    """The request handling behind the routes (kept apart from FastAPI so it stays testable)."""

    def __init__(self, engine: Any, model_name: str, limits: Limits = Limits(), api_key: str | None = None) -> None:
        self.engine, self.model_name, self.limits, self.api_key = engine, model_name, limits, api_key
        self.batcher = Batcher(engine, limits.max_queue, limits.max_batch)
        self.created = int(time.time())

    def check_key(self, header: str | None) -> None:
        if self.api_key is None:
            return
        token = (header or "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(token.encode(), self.api_key.encode()):
            raise APIError(401, "invalid or missing API key (Authorization: Bearer KEY)", "authentication_error")

    def prepare(self, body: Any, chat: bool) -> tuple[Prompt, Sampling, bool]:
        """The rendered prompt, the sampling and whether to stream, or an :class:`APIError`."""
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        model = body.get("model")
        if model not in (None, self.model_name):
            raise APIError(404, f"model {model!r} is not served here (this server serves {self.model_name!r})",
                           "not_found_error", "model")
        try:
            prompt = self._prompt(body, chat)
            if prompt.images and not getattr(self.engine, "reads_images", False):
                text_prompts([prompt])  # refused now, as a 400, not by the worker
            n = self.engine.count_tokens(prompt.text)
            context = getattr(self.engine, "context_length", None)
            room = self.limits.max_tokens if context is None else min(self.limits.max_tokens, context - n)
            check_context(n, 1, context)  # no room for even one new token
            sampling = sampling_from(body, self.limits, room)
            check_context(n, sampling.max_new_tokens, context)
        except UsageError as err:
            raise APIError(400, str(err), param=err.field if chat or err.field != "messages" else "prompt") from None
        except SteerError as err:
            raise APIError(400, str(err)) from None
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise APIError(400, "stream must be true or false", param="stream")
        return prompt, sampling, stream

    def _prompt(self, body: Mapping, chat: bool) -> Prompt:
        """The steered chat prompt, or the raw completion prompt."""
        template = self.engine.template
        if chat:
            return steering_prompt(template, messages_from(body), request_steering(body, template.schema))
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise APIError(400, "prompt must be a non-empty string", param="prompt")
        return Prompt(prompt)

    def submit(self, job: Ticket) -> Ticket:
        try:
            return self.batcher.submit(job)
        except QueueFull:
            raise APIError(503, "the server is busy: the request queue is full, retry later", "server_busy",
                           headers={"Retry-After": str(self.limits.retry_after_s)}) from None

    async def complete(self, prompt: Prompt, sampling: Sampling) -> Response:
        job = self.submit(Ticket(prompt, sampling))
        return await asyncio.wrap_future(job.future)

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncIterator[str | Response]:
        """Pieces of text, then the final :class:`Response`; a client that goes away cancels generation."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        job = self.submit(Ticket(prompt, sampling, on_piece=lambda p: loop.call_soon_threadsafe(pieces.put_nowait, p)))
        try:
            while True:
                piece = await pieces.get()
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
                if isinstance(piece, Response):
                    return
        finally:
            job.cancel.set()

    def result(self, response: Response, chat: bool, rid: str) -> dict:
        usage = {"prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens,
                 "total_tokens": response.prompt_tokens + response.completion_tokens}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": response.text},
                      "finish_reason": response.finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": response.text, "finish_reason": response.finish_reason, "logprobs": None}
        return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": [choice], "usage": usage}

    def chunk(self, rid: str, chat: bool, text: str | None, finish: str | None, first: bool = False) -> str:
        if chat:
            delta: dict = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        data = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": [choice]}
        return f"data: {json.dumps(data)}\n\n"

    async def sse(self, prompt: Prompt, sampling: Sampling, chat: bool) -> AsyncIterator[str]:
        rid = new_id(chat)
        if chat:
            yield self.chunk(rid, chat, None, None, first=True)
        try:
            async for piece in self.stream(prompt, sampling):
                if isinstance(piece, Response):
                    yield self.chunk(rid, chat, None, piece.finish_reason)
                elif piece:
                    yield self.chunk(rid, chat, piece, None)
        except Exception as err:  # noqa: BLE001 - the stream has started: report in-band
            yield f"data: {json.dumps(APIError(500, f'generation failed: {err}', 'server_error').body())}\n\n"
        yield "data: [DONE]\n\n"


def new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def create_app(server: Server) -> Any:
    """The FastAPI application over ``server``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        server.batcher.close()  # after uvicorn has drained the in-flight requests

    app = FastAPI(title="steer", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)

    def error(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    async def read_json(request: Request) -> Any:
        server.check_key(request.headers.get("authorization"))
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > server.limits.max_body_bytes:
            raise APIError(413, f"request body over {server.limits.max_body_bytes} bytes")
        raw = b""
        async for part in request.stream():
            raw += part
            if len(raw) > server.limits.max_body_bytes:
                raise APIError(413, f"request body over {server.limits.max_body_bytes} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise APIError(400, f"invalid JSON body: {err}") from None

    async def completion(request: Request, chat: bool) -> Any:
        try:
            prompt, sampling, stream = server.prepare(await read_json(request), chat)
            if stream:
                return StreamingResponse(server.sse(prompt, sampling, chat), media_type="text/event-stream")
            response = await server.complete(prompt, sampling)
            return server.result(response, chat, new_id(chat))
        except APIError as err:
            return error(err)
        except SteerError as err:
            return error(APIError(400, str(err)))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await completion(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await completion(request, chat=False)

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        try:
            server.check_key(request.headers.get("authorization"))
        except APIError as err:
            return error(err)
        return {"object": "list", "data": [{"id": server.model_name, "object": "model", "created": server.created,
                                            "owned_by": "steer"}]}

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", "model": server.model_name, "waiting": server.batcher.waiting,
                "served": server.batcher.served}

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Any:
        return error(APIError(404, f"no route {request.method} {request.url.path}", "not_found_error"))

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc: Exception) -> Any:
        return error(APIError(405, f"{request.method} is not allowed on {request.url.path}"))

    return app


def serve(engine: Any, model_name: str, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          limits: Limits = Limits(), grace_s: int = 30, log_level: str = "info") -> None:
    """Run the server until SIGINT/SIGTERM: stop accepting, finish in-flight requests (up to
    ``grace_s`` seconds), then return."""
    import signal

    import uvicorn

    # uvicorn re-raises the signal after its graceful shutdown; a no-op SIGTERM handler underneath
    # makes a requested stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    app = create_app(Server(engine, model_name, limits, api_key))
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=grace_s,
                            limit_concurrency=limits.max_queue * 4, access_log=False)
    uvicorn.Server(config).run()
