"""The OpenAI-compatible HTTP API (FastAPI): ``/v1/chat/completions``, ``/v1/completions``,
``/v1/models`` and ``/health``, streaming with server-sent events.

Steering comes per request in ``chat_template_kwargs`` (the variables the model's chat template
declares, as vLLM forwards them) or in a ``steer`` object (``attributes``, ``preset``, ``values``).
What OpenAI clients assume is there: ``n`` choices (rows of one batch; choice i of a seeded request
seeded ``seed + i``), ``logprobs`` (the log-softmax of the model's raw logits, before temperature and
top-p), ``stream_options.include_usage``, ``response_format`` ``text`` (JSON modes are refused: no
constrained decoding), and ``/v1/models`` describing how the model is steered. Bad input is a 4xx
with an OpenAI-style error body; the server never loads anything a request names.
"""


import asyncio
import json
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any

from steer.engines.base import Prompt, Response, Sampling, TokenLogprob, as_prompt, check_context, text_prompts
from steer.errors import SteerError, UsageError
from steer.serve.batcher import Batcher, ClientGone, QueueFull, ServerClosing, Ticket
from steer.serve.requests import (APIError, Limits, check_response_format, choice_seed, choices_from, include_usage,
                                  logprobs_from, messages_from, request_steering, sampling_from)
from steer.steering import steering_prompt


@dataclass(frozen=True)
class Request:
    """One checked request: the rendered prompt (with the log-probs it asks for), the sampling (with
    the request's seed), whether to stream, the chat messages (None: a completion), how many choices,
    and whether a stream ends with a usage chunk."""

    prompt: Prompt
    sampling: Sampling
    stream: bool
    messages: list[dict] | None
    n: int = 1
    usage: bool = False


class Streamed:
    """A request's streamed choices, queued: iterating gives ``(choice, text piece)`` and each choice's
    final ``(choice, Response)``; :meth:`cancel` stops what is left (when the response ends, however it
    ends: a client that goes away cancels generation, even before the stream started)."""

    def __init__(self, jobs: list[Ticket], pieces: asyncio.Queue) -> None:
        self.jobs, self.pieces = jobs, pieces

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel.set()

    async def __aiter__(self) -> AsyncIterator[tuple[int, str | Response]]:
        left = len(self.jobs)
        try:
            while left:
                i, piece = await self.pieces.get()
                if isinstance(piece, BaseException):
                    raise piece
                left -= isinstance(piece, Response)
                yield i, piece
        finally:
            self.cancel()


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

    def steering(self) -> dict:
        """How requests steer the model (``/v1/models``' ``steer`` field): the template kind, the attribute
        schema (each attribute's name, min, max, default), the presets that fit it, whether value
        statements are accepted, and the steering vectors of the allow-list, by name."""
        from steer.attributes import presets_for
        from steer.templates import STEER_VARIABLES

        template = getattr(self.engine, "template", None)
        schema = getattr(template, "schema", None)
        presets = presets_for(schema) if schema is not None else {}
        return {"template": getattr(template, "kind", None), "schema": schema.to_dict() if schema is not None else None,
                "presets": {name: {"description": about, "values": dict(values)}
                            for name, (about, values) in presets.items()},
                "values": STEER_VARIABLES[1] in getattr(template, "source", ""), "vectors": sorted(self.vectors)}

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
        """The rendered prompt, the sampling, whether to stream and the checked chat messages of
        :meth:`read`."""
        request = self.read(body, chat)
        return request.prompt, request.sampling, request.stream, request.messages

    def read(self, body: Any, chat: bool) -> Request:
        """The checked :class:`Request` (images decoded or fetched once, here), or an :class:`APIError`."""
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        model = body.get("model")
        if model not in (None, self.model_name):
            raise APIError(404, f"model {model!r} is not served here (this server serves {self.model_name!r})",
                           "not_found_error", "model")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise APIError(400, "stream must be true or false", param="stream")
        n, usage, logprobs = self._options(body, chat, stream)
        try:
            messages = messages_from(body, self.limits, getattr(self.engine, "reads_images", False)) if chat else None
            prompt = self._prompt(body, messages)
            if prompt.images and not getattr(self.engine, "reads_images", False):
                text_prompts([prompt])  # refused now, as a 400, not by the worker
            # a prompt with images counts its images' tokens (the engine expands them)
            count = self.engine.count_tokens(prompt if prompt.images else prompt.text)
            context = getattr(self.engine, "context_length", None)
            room = self.limits.max_tokens if context is None else min(self.limits.max_tokens, context - count)
            check_context(count, 1, context)  # no room for even one new token
            sampling = sampling_from(body, self.limits, room)
            check_context(count, sampling.max_new_tokens, context)
        except UsageError as err:
            raise APIError(400, str(err), param=err.field if chat or err.field != "messages" else "prompt") from None
        except SteerError as err:
            raise APIError(400, str(err)) from None
        prompt = prompt if logprobs is None else replace(prompt, logprobs=logprobs)
        return Request(prompt, sampling, stream, messages, n, usage)

    def _options(self, body: Mapping, chat: bool, stream: bool) -> tuple[int, bool, int | None]:
        """The request's ``n``, whether its stream ends with usage, and its log-probs (see
        :mod:`steer.serve.requests`); ``response_format`` checked."""
        n = choices_from(body, self.limits)
        if n > 1 and (self.guard is not None or body.get("best_of") not in (None, 1)):
            raise APIError(400, "n > 1 cannot be combined with best_of or this server's --guard (each releases one "
                           "checked answer)", param="n")
        check_response_format(body)
        return n, include_usage(body, stream), logprobs_from(body, chat)

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
            rendered = (replace(steering_prompt(template, messages, current), logprobs=as_prompt(prompt).logprobs)
                        if chat else prompt)
            jobs = self.submit_all(self.tickets(rendered, sampling, n))  # candidate i seeded seed + i
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
        return self.submit_all([job])[0]

    def submit_all(self, jobs: list[Ticket]) -> list[Ticket]:
        """Queue a request's tickets together, or answer 503 (a full queue) or the shutdown's 503."""
        try:
            return self.batcher.submit_all(jobs)
        except QueueFull:
            raise APIError(503, "the server is busy: the request queue is full, retry later", "server_busy",
                           headers={"Retry-After": str(self.limits.retry_after_s)}) from None
        except ServerClosing:
            raise closing() from None

    def tickets(self, prompt: Prompt | str, sampling: Sampling, n: int = 1,
                sink: Callable[[int], Callable[[Any], None]] | None = None) -> list[Ticket]:
        """A request's ``n`` choices as tickets, each a row of its own seed (choice i of a request seeded
        s: :func:`steer.serve.requests.choice_seed`), so a choice is the same whatever it is batched
        with, and seeded requests batch with any others; ``sink(i)``: where choice i's pieces go (a stream)."""
        shared = sampling if sampling.seed is None else replace(sampling, seed=None)
        rows = [prompt if sampling.seed is None else replace(as_prompt(prompt), seed=choice_seed(sampling.seed, i))
                for i in range(n)]
        return [Ticket(row, shared, on_piece=None if sink is None else sink(i)) for i, row in enumerate(rows)]

    async def complete(self, prompt: Prompt | str, sampling: Sampling, gone: Any = None) -> Response:
        """The response to one request; ``gone`` (an async callable) says whether its client has left,
        in which case the request is dropped before it runs."""
        return (await self.answers(prompt, sampling, 1, gone))[0]

    async def answers(self, prompt: Prompt | str, sampling: Sampling, n: int = 1, gone: Any = None) -> list[Response]:
        """The ``n`` choices of one request (rows of a batch); ``gone`` as for :meth:`complete`."""
        jobs = self.submit_all(self.tickets(prompt, sampling, n))
        futures = [asyncio.wrap_future(job.future) for job in jobs]
        try:
            while gone is not None and not all(f.done() for f in futures) and not jobs[0].cancel.is_set():
                await asyncio.wait(futures, timeout=0.5)
                if not all(f.done() for f in futures) and await gone():
                    for job in jobs:
                        job.cancel.set()  # the batcher drops them (ClientGone), or they are running and finish
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
            return list(results)
        except ServerClosing:
            raise closing() from None
        except ClientGone:
            raise APIError(499, "the client closed the connection before its request ran") from None
        finally:
            for job in jobs:
                if not job.future.done():
                    job.cancel.set()  # cancelled (the client left, or the server's grace ran out): never run it

    def stream(self, prompt: Prompt | str, sampling: Sampling, n: int = 1) -> Streamed:
        """A request's ``n`` choices streamed together (:class:`Streamed`), queued now: a full queue is a
        503 before any byte is sent. Call it on the event loop."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()

        def sink(i: int) -> Callable[[Any], None]:
            return lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, (i, piece))

        return Streamed(self.submit_all(self.tickets(prompt, sampling, n, sink)), pieces)

    def result(self, response: Response | Sequence[Response], chat: bool, rid: str) -> dict:
        """The completion object of one answer, or of a request's choices (in order)."""
        answers = [response] if isinstance(response, Response) else list(response)
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": r.text},
                        "finish_reason": r.finish_reason, "logprobs": choice_logprobs(r, chat)}
                       for i, r in enumerate(answers)]
        else:
            choices = [{"index": i, "text": r.text, "finish_reason": r.finish_reason,
                        "logprobs": choice_logprobs(r, chat)} for i, r in enumerate(answers)]
        return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices, "usage": usage(answers)}

    def chunk(self, rid: str, chat: bool, text: str | None, finish: str | None, first: bool = False,
              extra: Mapping[str, Any] | None = None, index: int = 0, logprobs: dict | None = None) -> str:
        """One server-sent event of choice ``index``: a text piece, or its end (``finish``, with the
        choice's ``logprobs``, all of them: the text is held back for stop strings, so pieces and
        tokens do not line up)."""
        if chat:
            delta: dict = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": logprobs}
        return self._event(rid, chat, [choice], extra)

    def _event(self, rid: str, chat: bool, choices: list[dict], extra: Mapping[str, Any] | None = None) -> str:
        data = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices, **(extra or {})}
        return f"data: {json.dumps(data)}\n\n"

    async def sse_done(self, response: Response, chat: bool, extra: Mapping[str, Any],
                       with_usage: bool = False) -> AsyncIterator[str]:
        """A checked answer (guarded, or the best of N) as a stream: released once chosen, in one piece."""
        rid = new_id(chat)
        tail = {"usage": None} if with_usage else {}
        if chat:
            yield self.chunk(rid, chat, None, None, first=True, extra=tail)
        yield self.chunk(rid, chat, response.text, None, extra=tail)
        yield self.chunk(rid, chat, None, response.finish_reason, extra={**tail, **extra},
                         logprobs=choice_logprobs(response, chat))
        if with_usage:
            yield self._event(rid, chat, [], {"usage": usage([response])})
        yield "data: [DONE]\n\n"

    async def sse(self, pieces: Streamed, chat: bool, with_usage: bool = False) -> AsyncIterator[str]:
        """The server-sent events of a request's streamed choices (:meth:`stream`; each chunk names its
        choice), then a usage chunk (``with_usage``: ``stream_options.include_usage``) and ``[DONE]``."""
        rid, n = new_id(chat), len(pieces.jobs)
        tail = {"usage": None} if with_usage else {}  # as OpenAI: every chunk has usage, null but the last
        if chat:
            for i in range(n):
                yield self.chunk(rid, chat, None, None, first=True, extra=tail, index=i)
        answers: dict[int, Response] = {}
        try:
            async for i, piece in pieces:
                if isinstance(piece, Response):
                    answers[i] = piece
                    yield self.chunk(rid, chat, None, piece.finish_reason, extra=tail, index=i,
                                     logprobs=choice_logprobs(piece, chat))
                elif piece:
                    yield self.chunk(rid, chat, piece, None, extra=tail, index=i)
            if with_usage:
                yield self._event(rid, chat, [], {"usage": usage([answers[i] for i in sorted(answers)])})
        except ServerClosing:  # the stream has started: report in-band
            yield f"data: {json.dumps(closing().body())}\n\n"
        except Exception as err:  # noqa: BLE001 - the stream has started: report in-band
            yield f"data: {json.dumps(APIError(500, f'generation failed: {err}', 'server_error').body())}\n\n"
        yield "data: [DONE]\n\n"


def usage(answers: Sequence[Response]) -> dict:
    """A request's token usage: its prompt counted once, every choice's completion tokens summed."""
    prompt = answers[0].prompt_tokens if answers else 0
    completion = sum(r.completion_tokens for r in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def choice_logprobs(response: Response, chat: bool) -> dict | None:
    """A choice's ``logprobs`` as OpenAI shapes them (None when not asked): chat's ``{content: [{token,
    logprob, bytes, top_logprobs}]}``; completions' ``{tokens, token_logprobs, top_logprobs,
    text_offset}``, whose ``top_logprobs`` hold the k likeliest and the sampled token, as OpenAI's, and
    ``text_offset`` counts characters from the start of the completion."""
    entries = response.logprobs
    if entries is None:
        return None
    if chat:
        return {"content": [{**_token(t), "top_logprobs": [_token(a) for a in t.top]} for t in entries],
                "refusal": None}
    return {"tokens": [t.token for t in entries], "token_logprobs": [_finite(t.logprob) for t in entries],
            "top_logprobs": [{**{a.token: _finite(a.logprob) for a in t.top}, t.token: _finite(t.logprob)}
                             for t in entries],
            "text_offset": list(accumulate((len(t.token) for t in entries[:-1]), initial=0)) if entries else []}


def _token(entry: TokenLogprob) -> dict:
    return {"token": entry.token, "logprob": _finite(entry.logprob), "bytes": list(entry.bytes)}


def _finite(logprob: float) -> float:
    """A log-prob JSON can carry: an impossible token's -inf as OpenAI writes it, -9999.0."""
    return logprob if math.isfinite(logprob) else -9999.0


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
    from starlette.background import BackgroundTask
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
            req = await asyncio.to_thread(server.read, body, chat)
            if server.guard is not None or body.get("best_of") not in (None, 1):
                response, steer = await asyncio.to_thread(server.checked, body, req.prompt, req.sampling, chat,
                                                          req.messages)
                extra = {"steer": steer}
                if req.stream:
                    return StreamingResponse(server.sse_done(response, chat, extra, req.usage),
                                             media_type="text/event-stream")
                return {**server.result(response, chat, new_id(chat)), **extra}
            if req.stream:
                pieces = server.stream(req.prompt, req.sampling, req.n)
                return StreamingResponse(server.sse(pieces, chat, req.usage), media_type="text/event-stream",
                                         background=BackgroundTask(pieces.cancel))
            answers = await server.answers(req.prompt, req.sampling, req.n, gone=request.is_disconnected)
            return server.result(answers, chat, new_id(chat))
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
                                            "owned_by": "steer", "steer": server.steering()}]}

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
