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
from typing import Any

from steer.engines.base import Prompt, Response, Sampling, check_context, text_prompts
from steer.errors import SteerError, UsageError
from steer.serve.batcher import Batcher, ClientGone, QueueFull, ServerClosing, Ticket
from steer.serve.requests import APIError, Limits, messages_from, request_steering, sampling_from
from steer.steering import steering_prompt


class Server:
    """The request handling behind the routes (kept apart from FastAPI so it stays testable)."""

    def __init__(self, engine: Any, model_name: str, limits: Limits = Limits(), api_key: str | None = None,
                 guard: Any = None, judge: Any = None, vectors: Mapping[str, str] | None = None) -> None:
        self.engine, self.model_name, self.limits, self.api_key = engine, model_name, limits, api_key
        self.vectors = dict(vectors or {})  # the allow-list: name -> steering-vector file (requests name them)
        self.guard = guard  # a steer.generate.guard.Guard: answers are scored and regenerated before release
        self.judge = judge  # a steer.generate.best_of.BestOf: what a request's best_of ranks by
        self.batcher = Batcher(engine, limits.max_queue, limits.max_batch)
        self.created = int(time.time())
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the app starts

    def check_key(self, header: str | None) -> None:
        if self.api_key is None:
            return
        scheme, _, token = (header or "").partition(" ")
        if scheme != "Bearer" or not secrets.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise APIError(401, "invalid or missing API key (Authorization: Bearer KEY)", "authentication_error")

    def drain(self) -> None:
        """Shutting down: no new requests, and every waiting one is answered 503 now."""
        self.batcher.drain()

    def prepare(self, body: Any, chat: bool) -> tuple[Prompt, Sampling, bool, list[dict] | None]:
        """The rendered prompt, the sampling, whether to stream and the checked chat messages (images
        decoded or fetched once, here), or an :class:`APIError`."""
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        model = body.get("model")
        if model not in (None, self.model_name):
            raise APIError(404, f"model {model!r} is not served here (this server serves {self.model_name!r})",
                           "not_found_error", "model")
        try:
            messages = messages_from(body, self.limits, getattr(self.engine, "reads_images", False)) if chat else None
            prompt = self._prompt(body, messages)
            if prompt.images and not getattr(self.engine, "reads_images", False):
                text_prompts([prompt])  # refused now, as a 400, not by the worker
            # a prompt with images counts its images' tokens (the engine expands them)
            n = self.engine.count_tokens(prompt if prompt.images else prompt.text)
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
        return prompt, sampling, stream, messages

    def _prompt(self, body: Mapping, messages: list[dict] | None) -> Prompt:
        """The steered chat prompt (``messages``: the request's, checked), or the raw completion prompt."""
        template = self.engine.template
        if messages is not None:
            return steering_prompt(template, messages, request_steering(body, template.schema, self.vectors))
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise APIError(400, "prompt must be a non-empty string", param="prompt")
        return Prompt(prompt)

    def checked(self, body: Mapping, prompt: Prompt, sampling: Sampling, chat: bool,
                messages: list[dict] | None = None) -> tuple[Response, dict]:
        """A request's answer through best-of-N (``best_of`` in the body, with the server's ``--judge``)
        and the guard (the server's ``--guard``), blocking: run it off the event loop. Each generation is
        queued like any request (a best-of's N together); the chosen answer and the ``steer`` field."""
        template = self.engine.template
        if chat:
            if messages is None:  # a caller without prepare's (already checked) messages
                messages = messages_from(body, self.limits, getattr(self.engine, "reads_images", False))
            steering = request_steering(body, template.schema, self.vectors)
        else:
            messages, steering = [{"role": "user", "content": prompt.text}], None
        n = self._best_of(body, sampling)
        extra: dict[str, Any] = {}

        def generate(current: Any) -> Response:
            rendered = steering_prompt(template, messages, current) if chat else prompt
            jobs = [self.submit(Ticket(rendered, sampling)) for _ in range(n)]
            try:
                answers = [job.future.result() for job in jobs]
            except ServerClosing:
                raise closing() from None
            if n == 1:
                return answers[0]
            from steer.generate.best_of import choose

            ((index, candidates),) = choose(self.judge, [{"messages": messages}], [answers])
            extra["best_of"] = {"chosen": index, "score": self.judge.score, "candidates": candidates}
            return answers[index]

        if self.guard is None:
            return generate(steering), extra
        guarded = self.guard.run(messages, steering, template.schema, generate, steer=chat,
                                 prompt_tokens=self.engine.count_tokens(prompt.text))
        return guarded.response, {**extra, "guard": guarded.to_json()}

    def _best_of(self, body: Mapping, sampling: Sampling) -> int:
        """The request's ``best_of`` (1 without it), checked against this server's judge and limit."""
        n = body.get("best_of", 1)
        if n in (None, 1):
            return 1
        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= self.limits.max_best_of:
            raise APIError(400, f"best_of must be an integer from 1 to {self.limits.max_best_of}", param="best_of")
        if self.judge is None:
            raise APIError(400, "best_of needs a judge: this server was started without --judge", param="best_of")
        if sampling.temperature == 0:
            raise APIError(400, f"best_of {n} with temperature 0 gives {n} copies of one answer", param="best_of")
        return n

    def submit(self, job: Ticket) -> Ticket:
        try:
            return self.batcher.submit(job)
        except QueueFull:
            raise APIError(503, "the server is busy: the request queue is full, retry later", "server_busy",
                           headers={"Retry-After": str(self.limits.retry_after_s)}) from None
        except ServerClosing:
            raise closing() from None

    async def complete(self, prompt: Prompt, sampling: Sampling, gone: Any = None) -> Response:
        """The response to one request; ``gone`` (an async callable) says whether its client has left,
        in which case the request is dropped before it runs."""
        job = self.submit(Ticket(prompt, sampling))
        future = asyncio.wrap_future(job.future)
        try:
            while gone is not None and not future.done() and not job.cancel.is_set():
                await asyncio.wait({future}, timeout=0.5)
                if not future.done() and await gone():
                    job.cancel.set()  # the batcher drops it (ClientGone), or it is running and finishes
            return await future
        except ServerClosing:
            raise closing() from None
        except ClientGone:
            raise APIError(499, "the client closed the connection before its request ran") from None
        finally:
            if not job.future.done():
                job.cancel.set()  # cancelled (the client left, or the server's grace ran out): never run it

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

    def chunk(self, rid: str, chat: bool, text: str | None, finish: str | None, first: bool = False,
              extra: Mapping[str, Any] | None = None) -> str:
        if chat:
            delta: dict = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        data = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": [choice], **(extra or {})}
        return f"data: {json.dumps(data)}\n\n"

    async def sse_done(self, response: Response, chat: bool, extra: Mapping[str, Any]) -> AsyncIterator[str]:
        """A checked answer (guarded, or the best of N) as a stream: released once chosen, in one piece."""
        rid = new_id(chat)
        if chat:
            yield self.chunk(rid, chat, None, None, first=True)
        yield self.chunk(rid, chat, response.text, None)
        yield self.chunk(rid, chat, None, response.finish_reason, extra=extra)
        yield "data: [DONE]\n\n"

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
        except ServerClosing:  # the stream has started: report in-band
            yield f"data: {json.dumps(closing().body())}\n\n"
        except Exception as err:  # noqa: BLE001 - the stream has started: report in-band
            yield f"data: {json.dumps(APIError(500, f'generation failed: {err}', 'server_error').body())}\n\n"
        yield "data: [DONE]\n\n"


def closing() -> APIError:
    return APIError(503, "the server is shutting down: retry with another instance", "server_busy",
                    headers={"Retry-After": "1"})


def new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def create_app(server: Server) -> Any:
    """The FastAPI application over ``server``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.requests import ClientDisconnect

    from steer.data.io import decode_json
    from steer.data.records import DataError

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        server.loop = asyncio.get_running_loop()  # where a signal schedules the drain
        yield
        server.batcher.close(timeout=5)  # after uvicorn has finished (or cancelled) the in-flight requests

    # no /docs, /redoc or /openapi.json: the server describes nothing to clients without a key
    app = FastAPI(title="steer", version="1", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def error(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > server.limits.max_body_bytes:
            raise APIError(413, f"request body over {server.limits.max_body_bytes} bytes")
        raw = bytearray()
        async for part in request.stream():
            raw += part
            if len(raw) > server.limits.max_body_bytes:
                raise APIError(413, f"request body over {server.limits.max_body_bytes} bytes")
        return bytes(raw)

    async def read_json(request: Request) -> Any:
        server.check_key(request.headers.get("authorization"))
        try:  # a body that trickles in is not waited for past the timeout
            raw = await asyncio.wait_for(body(request), timeout=server.limits.timeout_s)
        except asyncio.TimeoutError:
            raise APIError(408, f"the request body did not arrive within {server.limits.timeout_s:g} s") from None
        try:
            data = decode_json(raw.decode("utf-8"), "request body", None)
        except UnicodeDecodeError:
            raise APIError(400, "invalid JSON body: not UTF-8") from None
        except DataError as err:
            raise APIError(400, f"invalid JSON body: {err.detail}") from None
        return data

    async def completion(request: Request, chat: bool) -> Any:
        try:
            body = await read_json(request)
            # off the event loop: a remote image (--allow-remote-images) is fetched here, and no client waits on another's
            prompt, sampling, stream, messages = await asyncio.to_thread(server.prepare, body, chat)
            if server.guard is not None or body.get("best_of") not in (None, 1):
                response, steer = await asyncio.to_thread(server.checked, body, prompt, sampling, chat, messages)
                extra = {"steer": steer}
                if stream:
                    return StreamingResponse(server.sse_done(response, chat, extra), media_type="text/event-stream")
                return {**server.result(response, chat, new_id(chat)), **extra}
            if stream:
                return StreamingResponse(server.sse(prompt, sampling, chat), media_type="text/event-stream")
            response = await server.complete(prompt, sampling, gone=request.is_disconnected)
            return server.result(response, chat, new_id(chat))
        except APIError as err:
            return error(err)
        except SteerError as err:
            return error(APIError(400, str(err)))
        except ClientDisconnect:  # the client left mid-upload: nobody to answer, nothing to log
            return Response(status_code=400)

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
                                            "owned_by": "steer", "steer": {"vectors": sorted(server.vectors)}}]}

    @app.get("/health")
    async def health() -> Any:
        return {"status": "closing" if server.batcher.closing else "ok", "model": server.model_name,
                "waiting": server.batcher.waiting, "running": server.batcher.running, "served": server.batcher.served}

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Any:
        return error(APIError(404, f"no route {request.method} {request.url.path}", "not_found_error"))

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc: Exception) -> Any:
        return error(APIError(405, f"{request.method} is not allowed on {request.url.path}"))

    return app


def serve(engine: Any, model_name: str, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          limits: Limits = Limits(), grace_s: int = 30, log_level: str = "info", guard: Any = None,
          judge: Any = None, vectors: Mapping[str, str] | None = None) -> None:
    """Run the server until SIGINT/SIGTERM: stop accepting, answer waiting requests 503, finish the
    running ones (up to ``grace_s`` seconds), then return (see :mod:`steer.serve.http`)."""
    from steer.serve.http import run

    server = Server(engine, model_name, limits, api_key, guard, judge, vectors)
    run(create_app(server), server, host=host, port=port, grace_s=grace_s, timeout_s=limits.timeout_s,
        log_level=log_level)
