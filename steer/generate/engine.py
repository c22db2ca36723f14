"""The engine protocol, typed sampling settings and responses, and loading a model's steering.

Every engine (``hf``, ``vllm``) takes prompts that steer has already rendered with the model's
steering template (:func:`steering_prompt`), so each request can carry its own attributes and
value statements, and returns the same :class:`Response`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from steer.attributes import Schema, get_schema, preset_values
from steer.errors import UsageError
from steer.templates import SteerTemplate, build_template


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
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise UsageError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Response:
    """One generation: text, token ids, why it stopped, token counts and timings (seconds)."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    first_token_seconds: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}


class Engine(Protocol):
    """What ``steer generate``, ``chat``, ``batch`` and ``serve`` need from a backend."""

    template: SteerTemplate
    context_length: int | None

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[Response]:
        """Complete each (already rendered) prompt."""

    def stream(self, prompt: str, sampling: Sampling, cancel: Any = None) -> Iterator[str | Response]:
        """Yield text pieces as they are decoded, then the final :class:`Response` (``cancel``: a
        ``threading.Event`` that stops generation early)."""

    def count_tokens(self, text: str) -> int:
        """Tokens of a rendered prompt (no special tokens added)."""


@dataclass
class Steering:
    """What to steer a request by: attribute values (over a preset), value statements, a system message."""

    attributes: dict[str, int] = field(default_factory=dict)
    preset: str | None = None
    values: list[str] = field(default_factory=list)
    system: str | None = None

    def resolved(self, schema: Schema | None) -> dict[str, int] | None:
        """The full attribute dict for the schema (defaults < preset < explicit values); None without a schema."""
        if schema is None:
            if self.attributes or self.preset:
                raise UsageError("this model has no attribute schema; steer it with --value or --system")
            return None
        return schema.resolve(preset=self.preset, values=self.attributes)


def steering_prompt(template: SteerTemplate, messages: Sequence[Mapping[str, Any]], steering: Steering) -> str:
    """The generation prompt for the next assistant turn, steered (the one rendering path for engines)."""
    msgs = [dict(m) for m in messages]
    if steering.system is not None:
        msgs = [m for m in msgs if m.get("role") != "system"]
        if steering.system:
            msgs.insert(0, {"role": "system", "content": steering.system})
    return template.prompt(msgs, attributes=steering.resolved(template.schema), values=steering.values or None)


def model_template(tokenizer: Any, spec: dict | None, *, kind: str | None = None, schema: str | None = None) -> SteerTemplate:
    """The steering template of a model: the one it was trained with (its tokenizer's chat template and
    ``steer.json``), or ``kind`` built over its own chat template (``--template`` overrides both)."""
    tokens = dict(getattr(tokenizer, "special_tokens_map", {}) or {})
    if spec is not None and kind is None:
        t = spec["template"]
        built = Schema.from_dict(t["schema"]) if t.get("schema") else None
        if schema is not None:
            built = get_schema(schema)
        return SteerTemplate(t["kind"], tokenizer.chat_template, built, tuple(t.get("stop", ())),
                             bool(t.get("merge_system")), tokens)
    base = getattr(tokenizer, "chat_template", None)
    if spec is not None and base:  # a steer model re-steered another way: start from no chat template
        base = None if kind == "steerlm" else base
    chosen = kind or ("chat" if base else "steerlm")
    built = get_schema(schema or "helpsteer") if chosen != "janus" or schema else None
    try:
        return build_template(chosen, schema=built, base=base, special_tokens=tokens)
    except UsageError:
        raise
    except Exception as err:  # TemplateError: a steer-wrapped template asked to wrap again
        raise UsageError(f"--template {chosen}: {err}") from None


def preset_or_error(name: str | None, schema: Schema | None) -> str | None:
    """Validate a preset name early (a one-line error that lists the known ones)."""
    if name is not None and schema is not None:
        preset_values(name, schema)
    return name


ENGINES = ("hf", "vllm")


def load_engine(model: str, *, engine: str = "hf", template: str | None = None, schema: str | None = None,
                dtype: str = "auto") -> Engine:
    """Load ``model`` (run directory, exported model, HF directory or hub id) on the chosen engine."""
    if engine == "hf":
        from steer.generate.hf import HFEngine

        return HFEngine.load(model, template=template, schema=schema, dtype=dtype)
    if engine == "vllm":
        from steer.generate.vllm import VLLMEngine

        return VLLMEngine.load(model, template=template, schema=schema, dtype=dtype)
    raise UsageError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
