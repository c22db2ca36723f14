"""What every engine shares: the protocol, typed prompts, sampling settings and responses, the one
context-length check, and the streaming hold-back that keeps stop strings off the screen.

Engines take prompts steer has already rendered with the model's steering template
(:func:`steer.steering.steering_prompt`), so each request carries its own attributes and value
statements, and they return the same :class:`Response`. Output post-processing is the template's
(:meth:`steer.templates.SteerTemplate.finish`), so one model answers the same on every engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from steer.errors import UsageError
from steer.templates import SteerTemplate


@dataclass(frozen=True)
class Prompt:
    """A rendered, steered prompt: the text the model reads, the images of its messages' image
    parts, in order (none for text; only engines that read images accept them), and the steering
    vectors added to the model's residual stream while it answers (``(file, coefficient)``; the hf
    engine only). What one row asks beyond the call's shared :class:`Sampling`: its own ``seed``
    (over ``Sampling.seed``; the same answer whatever the row is batched with) and ``logprobs``
    (None: none; k: each generated token's log-probability and the k most likely, in
    :attr:`Response.logprobs`)."""

    text: str
    images: tuple[Any, ...] = ()
    vectors: tuple[tuple[str, float], ...] = ()
    seed: int | None = None
    logprobs: int | None = None


def as_prompt(prompt: Prompt | str) -> Prompt:
    """A :class:`Prompt` from a prompt or plain rendered text."""
    return prompt if isinstance(prompt, Prompt) else Prompt(prompt)


def text_prompts(prompts: Sequence[Prompt | str], vectors: bool = False) -> list[str]:
    """The texts of prompts for an engine that reads text only (image parts are refused), and takes
    no steering vectors unless ``vectors``."""
    out = []
    for p in map(as_prompt, prompts):
        if p.images:
            raise UsageError("this model reads text only: the request has image parts", field="messages")
        if p.vectors and not vectors:
            raise UsageError("steering vectors need the hf engine (vLLM has no per-request residual hooks)",
                             field="vectors")
        out.append(p.text)
    return out


@dataclass(frozen=True)
class Sampling:
    """Decoding settings shared by every engine (temperature 0 is greedy)."""

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}", field="temperature")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}", field="top_p")
        if self.top_k < 0:
            raise UsageError(f"top_k must be >= 0, got {self.top_k}", field="top_k")
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}", field="max_tokens")


MAX_LOGPROBS = 20  # the most alternatives per token an engine reports (OpenAI's top_logprobs bound)


@dataclass(frozen=True)
class TokenLogprob:
    """One token's log-probability under the model: the log-softmax of its raw logits (before
    temperature, top-k and top-p, as OpenAI and vLLM report it), the token's text as it reads in the
    answer, its bytes, its id, and (for a generated token) the most likely tokens at its position."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    id: int
    top: tuple[TokenLogprob, ...] = ()


@dataclass
class Response:
    """One generation: text, token ids, why it stopped, token counts and timings (seconds); for a
    prompt that asked, ``logprobs``: one :class:`TokenLogprob` per entry of ``token_ids``."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    first_token_seconds: float | None = None
    end_id: int | None = None  # the end-of-sequence token it stopped on (not in ``token_ids``), if any
    logprobs: list[TokenLogprob] | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        if self.logprobs is None:
            del out["logprobs"]
        return {**out, "tokens_per_s": round(self.tokens_per_s, 2)}


class Engine(Protocol):
    """What ``steer generate``, ``chat``, ``batch`` and ``serve`` need from a backend. An engine may
    also stream several prompts as rows of one batch, ``stream_rows(prompts, sampling, cancel)``
    yielding ``(index, text piece)`` and ``(index, Response)`` (the hf engine; the server streams a
    request's ``n`` choices, and concurrent streams, through it when it is there)."""

    template: SteerTemplate
    context_length: int | None
    reads_images: bool  # False: prompts with image parts are refused (text_prompts)

    def generate(self, prompts: Sequence[Prompt | str], sampling: Sampling, slots: int | None = None) -> list[Response]:
        """Complete each (already rendered) prompt; at most ``slots`` decode at once (None: the
        engine's own choice), a finished one's slot going to the next. A prompt's own ``seed`` and
        ``logprobs`` are honoured per row."""

    def stream(self, prompt: Prompt | str, sampling: Sampling, cancel: Any = None) -> Iterator[str | Response]:
        """Yield text pieces as they are decoded, then the final :class:`Response` (``cancel``: a
        ``threading.Event`` that stops generation early)."""

    def count_tokens(self, text: str) -> int:
        """Tokens of a rendered prompt (no special tokens added)."""


def check_context(prompt_tokens: int, max_new_tokens: int, context_length: int | None) -> None:
    """Refuse a prompt that, with ``max_new_tokens``, would not fit the model's context."""
    if context_length is None:
        return
    if prompt_tokens >= context_length:
        raise UsageError(f"the prompt is {prompt_tokens} tokens; this model's context is {context_length}",
                         field="messages")
    if prompt_tokens + max_new_tokens > context_length:
        raise UsageError(f"the prompt ({prompt_tokens} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                         f"context of {context_length}; ask for fewer new tokens", field="max_tokens")


class StreamText:
    """Cumulative decoded text in, the part that is safe to show out: a tail that could still become
    a stop string, or the format's closing text, is held back until more text shows what it is."""

    def __init__(self, template: SteerTemplate, sampling: Sampling) -> None:
        self.template, self.stops = template, tuple(sampling.stop)
        self.hold = max((len(s) for s in (*template.stop, *self.stops)), default=0) + len(template.closing)
        self.shown = 0

    def push(self, text: str) -> str:
        """The new safe text, given all the text decoded so far."""
        answer, stopped = self.template.finish(text, self.stops)
        safe = len(answer) if stopped else max(self.shown, min(len(answer), len(text) - self.hold))
        piece = answer[self.shown:safe] if safe > self.shown else ""
        self.shown = max(self.shown, safe)
        return piece

    def rest(self, final: str) -> str:
        """What is left to show of the final answer text."""
        piece = final[self.shown:]
        self.shown = len(final)
        return piece
