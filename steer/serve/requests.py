"""What one request to the OpenAI-compatible API may ask for, read and checked: limits, sampling,
steering, messages. Everything a client sends is validated here; a problem is an :class:`APIError`
(a 4xx with an OpenAI-style body), never a 500.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steer.attributes import preset_values, require_schema
from steer.engines.base import Sampling
from steer.errors import UsageError
from steer.steering import Steering, blame, parse_attributes, parse_values, parse_vectors, steering_from
from steer.templates import STEER_VARIABLES

SEED_MAX = 2**63 - 1  # what torch's and vLLM's generators take


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much may wait."""

    max_tokens: int = 512
    max_best_of: int = 8  # the most answers one best_of request may have sampled
    max_n: int = 16  # the most choices (n) one request may ask for: each is a row of a batch, a place in the queue
    max_body_bytes: int = 1_000_000
    max_queue: int = 64
    max_batch: int = 16
    retry_after_s: int = 1
    max_messages: int = 256
    max_stop: int = 16  # stop strings per request
    max_stop_chars: int = 256  # characters per stop string
    max_images: int = 4  # image parts per request
    max_image_bytes: int = 4_000_000  # one image, decoded from its base64 data URL
    max_image_pixels: int = 4096 * 4096  # width x height of one image
    allow_remote_images: bool = False  # fetch http(s) image URLs (a trusted network only: the server makes the request)
    timeout_s: float = 10.0  # for a connection to send its request headers, and for a body to arrive


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
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (kind is int and not float(value).is_integer())):
        raise APIError(400, f"{key} must be a finite {'integer' if kind is int else 'number'}, got {value!r}", param=key)
    if (low is not None and value < low) or (high is not None and value > high):
        raise APIError(400, f"{key} must be between {low} and {high}, got {value}", param=key)
    return kind(value)


def sampling_from(body: Mapping, limits: Limits, max_tokens_default: int) -> Sampling:
    """Sampling settings from an OpenAI request body (``max_tokens`` checked against the server limit)."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", int, max_tokens_default, 1)
    if max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens}", param="max_tokens")
    return Sampling(temperature=_number(body, "temperature", float, 1.0, 0, 2), top_p=_number(body, "top_p", float, 1.0, 0, 1),
                    top_k=max(0, _number(body, "top_k", int, 0, -1, 1_000_000)), max_new_tokens=max_tokens,
                    seed=_number(body, "seed", int, None, 0, SEED_MAX), stop=_stop(body, limits))


def choices_from(body: Mapping, limits: Limits) -> int:
    """The request's ``n``: how many choices, 1 to ``max_n`` (and no more than the queue holds)."""
    cap = min(limits.max_n, limits.max_queue)
    n = _number(body, "n", int, 1)
    if not 1 <= n <= cap:
        raise APIError(400, f"n must be an integer from 1 to {cap} (this server's limit), got {n}", param="n")
    return n


def choice_seed(seed: int, i: int) -> int:
    """The seed of choice ``i`` of a request seeded ``seed``: ``seed + i`` (mod 2**63), so each choice
    is reproducible on its own and the choices differ."""
    return (seed + i) % (SEED_MAX + 1)


MAX_TOP_LOGPROBS = {True: 20, False: 5}  # chat's top_logprobs, completions' logprobs: OpenAI's bounds


def logprobs_from(body: Mapping, chat: bool) -> int | None:
    """How many likeliest tokens per position a request asks for beside each token's log-prob: chat's
    ``logprobs: true`` with ``top_logprobs`` (0 to 20), completions' ``logprobs`` (0 to 5); None: no
    log-probs."""
    if not chat:
        return _number(body, "logprobs", int, None, 0, MAX_TOP_LOGPROBS[False])
    wanted = body.get("logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise APIError(400, f"logprobs must be true or false, got a {type(wanted).__name__} (top_logprobs says how "
                       "many)", param="logprobs")
    top = _number(body, "top_logprobs", int, None, 0, MAX_TOP_LOGPROBS[True])
    if top is not None and not wanted:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    return (top or 0) if wanted else None


def include_usage(body: Mapping, stream: bool) -> bool:
    """``stream_options.include_usage``: whether a stream ends with a chunk of its token usage
    (``stream_options`` is for streams only)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise APIError(400, "stream_options must be an object", param="stream_options")
    if not stream:
        raise APIError(400, "stream_options is only allowed with stream: true", param="stream_options")
    usage = options.get("include_usage", False)
    if not isinstance(usage, bool):
        raise APIError(400, "stream_options.include_usage must be true or false", param="stream_options")
    return usage


def check_response_format(body: Mapping) -> None:
    """Accept ``response_format`` ``{type: text}`` (or none); refuse JSON modes, which need constrained
    decoding this server does not have (``steer serve --engine vllm`` hands over to vLLM's own server,
    which has it)."""
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind in ("json_object", "json_schema"):
        raise APIError(400, f"response_format {kind} needs constrained decoding, which steer's server does not have: "
                       "serve the model with --engine vllm (vLLM's own server takes response_format), or ask for "
                       "JSON in the prompt", param="response_format")
    got = f"type {str(kind)[:40]!r}" if isinstance(fmt, dict) else f"a {type(fmt).__name__}"
    raise APIError(400, f"response_format must be {{type: text}}, got {got} (json_object and json_schema need "
                   "--engine vllm)", param="response_format")


def _stop(body: Mapping, limits: Limits) -> tuple[str, ...]:
    """Stop strings: a string or a list of them, none empty, at most ``max_stop`` of ``max_stop_chars`` each."""
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
        raise APIError(400, "stop must be a string or a list of strings", param="stop")
    if len(stop) > limits.max_stop or any(not s or len(s) > limits.max_stop_chars for s in stop):
        raise APIError(400, f"stop takes at most {limits.max_stop} strings of 1 to {limits.max_stop_chars} characters",
                       param="stop")
    return tuple(stop)


MAX_VECTORS = 16  # steering vectors one request may combine
MAX_COEF = 1000.0  # the largest coefficient (finite: a JSON body may carry NaN)


def request_steering(body: Mapping, schema: Any, vector_files: Mapping[str, str] | None = None) -> Steering:
    """Steering from ``chat_template_kwargs`` and/or the ``steer`` object: their attributes merge (the
    ``steer`` object's win), their value statements add up; ``steer.vectors`` names vectors of the
    server's allow-list ``vector_files`` (name -> file), never a path."""
    kwargs = body.get("chat_template_kwargs") or {}
    steer = body.get("steer") or {}
    for name, value in (("chat_template_kwargs", kwargs), ("steer", steer)):
        if not isinstance(value, dict):
            raise APIError(400, f"{name} must be an object", param=name)
    unknown = sorted(set(kwargs) - set(STEER_VARIABLES))
    if unknown:
        raise APIError(400, f"unknown chat_template_kwargs {unknown} (this model's template declares "
                       f"{', '.join(STEER_VARIABLES)})", param="chat_template_kwargs")
    unknown = sorted(set(steer) - {"attributes", "preset", "values", "vectors"})
    if unknown:
        raise APIError(400, f"unknown steer keys {unknown} (known: attributes, preset, values, vectors)", param="steer")
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
    vectors = parse_vectors(steer.get("vectors"), vector_files or {}, field="steer.vectors")
    if len(vectors) > MAX_VECTORS or len({f for f, _ in vectors}) < len(vectors):
        raise APIError(400, f"steer.vectors: at most {MAX_VECTORS} vectors, each named once", param="steer.vectors")
    if any(not math.isfinite(c) or abs(c) > MAX_COEF for _, c in vectors):
        raise APIError(400, f"steer.vectors: a coefficient is a finite number within +-{MAX_COEF:g}",
                       param="steer.vectors")
    return steering_from(schema, attributes=attributes, preset=preset, values=values, vectors=vectors)


REQUEST_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # what a client's image may be
PART_TYPES = {"text": "text", "image": "image", "image_url": "image_url"}  # part type -> the key holding it


def messages_from(body: Mapping, limits: Limits, images: bool = True) -> list[dict]:
    """Chat messages: a role and content, a string or a list of parts (text, image) as OpenAI sends them;
    ``images``: whether the model reads them (if not, an image part is refused before it is decoded)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list", param="messages")
    if len(messages) > limits.max_messages:
        raise APIError(400, f"at most {limits.max_messages} messages per request", param="messages")
    count = sum(1 for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
                for p in m["content"] if isinstance(p, dict) and p.get("type") in ("image", "image_url"))
    if count and not images:
        raise APIError(400, "this model reads text only: the request has image parts", param="messages")
    if count > limits.max_images:  # counted before any is decoded
        raise APIError(400, f"at most {limits.max_images} images per request, got {count}", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise APIError(400, f"messages[{i}]: role must be system, user or assistant", param="messages")
        content = m.get("content")
        if isinstance(content, list):
            content = _check_parts(content, i, limits)
        elif not isinstance(content, str):
            raise APIError(400, f"messages[{i}]: content must be a string or a list of parts", param="messages")
        out.append({"role": m["role"], "content": content})
    return out


def _check_parts(parts: list, i: int, limits: Limits) -> list[dict]:
    """The parts with every image decoded from its data URL and checked: ``{"type": "image", "image": bytes}``."""
    out = []
    for k, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES or part.get(PART_TYPES[kind]) is None:
            raise APIError(400, f"messages[{i}].content[{k}]: a part is {{type: text, text: ...}} or an image part",
                           param="messages")
        if kind == "text":
            if not isinstance(part["text"], str):
                raise APIError(400, f"messages[{i}].content[{k}].text must be a string", param="messages")
            out.append({"type": "text", "text": part["text"]})
            continue
        out.append({"type": "image", "image": _image(part[PART_TYPES[kind]], f"messages[{i}].content[{k}]", limits)})
    return out


def _image(value: Any, where: str, limits: Limits) -> bytes:
    """An image part's bytes: only a base64 ``data:`` URL (the server fetches nothing and opens no file a
    request names), within the size limits, and an image PIL can decode."""
    from steer.images import DATA_URL, decode_data_url, open_image
    from steer.data.records import DataError

    url = value.get("url") if isinstance(value, Mapping) else value
    if not isinstance(url, str):
        raise APIError(400, f"{where}: an image is {{image_url: {{url: 'data:image/...;base64,...'}}}}", param="messages")
    remote = limits.allow_remote_images and url.startswith(("http://", "https://"))
    if not url.startswith(DATA_URL) and not remote:
        scheme = url.split(":", 1)[0] if ":" in url[:12] else "a path"
        hint = " (or start the server with --allow-remote-images)" if scheme in ("http", "https") else ""
        raise APIError(400, f"{where}: {scheme} image URLs are not fetched by this server: send the image inline as "
                       f"a base64 data: URL{hint}", param="messages")
    if not remote and len(url) > limits.max_image_bytes * 4 // 3 + 64:  # before decoding: base64 is 4/3 of the bytes
        raise APIError(400, f"{where}: the image is over {limits.max_image_bytes} bytes", param="messages")
    try:
        data = _fetch(url, where, limits) if remote else decode_data_url(url, where)
        if len(data) > limits.max_image_bytes:
            raise APIError(400, f"{where}: the image is over {limits.max_image_bytes} bytes", param="messages")
        _check_pixels(data, where, limits)
        open_image(data, where, formats=REQUEST_FORMATS)
    except DataError as err:
        raise APIError(400, f"{where}: {err.detail}", param="messages") from None
    return data


def _fetch(url: str, where: str, limits: Limits) -> bytes:
    """The bytes of a remote image (``--allow-remote-images``): at most ``max_image_bytes`` read, within
    the request timeout, no more than three redirects; every failure a 400 naming the part."""
    import time

    import httpx  # steer serve --allow-remote-images checks it is installed before serving

    deadline = time.monotonic() + limits.timeout_s  # the whole fetch, not each read: a trickle is cut off
    try:
        with httpx.Client(timeout=limits.timeout_s, follow_redirects=True, max_redirects=3) as client, \
                client.stream("GET", url, headers={"Accept": "image/*"}) as got:
            if got.status_code != 200:
                raise APIError(400, f"{where}: fetching the image gave HTTP {got.status_code}", param="messages")
            data = bytearray()
            for chunk in got.iter_bytes():
                data += chunk
                if len(data) > limits.max_image_bytes:
                    raise APIError(400, f"{where}: the image is over {limits.max_image_bytes} bytes", param="messages")
                if time.monotonic() > deadline:
                    raise APIError(400, f"{where}: fetching the image took over {limits.timeout_s:g} s", param="messages")
            return bytes(data)
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        raise APIError(400, f"{where}: could not fetch the image ({type(err).__name__})", param="messages") from None


def _check_pixels(data: bytes, where: str, limits: Limits) -> None:
    """Refuse an image whose header claims more pixels than allowed, before decoding it (a small file
    can declare a huge canvas)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=REQUEST_FORMATS) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 - not an image: open_image names it
        return
    if width * height > limits.max_image_pixels:
        raise APIError(400, f"{where}: the image is {width}x{height}, over {limits.max_image_pixels} pixels",
                       param="messages")
