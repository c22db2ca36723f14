"""``steer serve --engine vllm``: the ``vllm serve`` command for a steer model, with its steering chat
template and LoRA adapter wired in, so production traffic runs on vLLM's own OpenAI server."""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from steer.models import cache_home
from steer.runs import TEMPLATE_FILE, ModelRef, load_tokenizer, model_template, resolve


def template_file(model: str, source: str) -> Path:
    """A file holding the steering chat template: the model's own (``chat_template.jinja``) when it is
    that template, else a copy in steer's cache (``models.cache_home()/templates``)."""
    own = Path(model) / TEMPLATE_FILE
    if own.is_file() and own.read_text(encoding="utf-8") == source:
        return own
    cache = cache_home() / "templates"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{hashlib.sha256(source.encode()).hexdigest()[:16]}.jinja"
    if not path.is_file():
        path.write_text(source, encoding="utf-8")
    return path


def vllm_command(model: str | ModelRef, template_source: str, *, name: str, host: str = "127.0.0.1", port: int = 8000,
                 extra: tuple[str, ...] = ()) -> list[str]:
    """The ``vllm serve`` argv for ``model`` (a run directory, exported model, HF folder or hub id).

    A LoRA run serves its base model with the adapter as a LoRA module called ``name`` (clients ask
    for ``model=name``); everything else is served under ``name`` directly. An API key is never in
    the argv (which every user of the machine can read): it goes in ``VLLM_API_KEY`` (see :func:`plan`).
    """
    ref = model if isinstance(model, ModelRef) else resolve(model)
    cmd = ["vllm", "serve", ref.weights, "--host", host, "--port", str(port),
           "--chat-template", str(template_file(ref.adapter or ref.weights, template_source))]
    if ref.tokenizer != ref.weights:
        cmd += ["--tokenizer", ref.tokenizer]
    if ref.adapter:
        cmd += ["--enable-lora", "--lora-modules", f"{name}={ref.adapter}"]
    else:
        cmd += ["--served-model-name", name]
    return cmd + list(extra)


@dataclass(frozen=True)
class Plan:
    """The ``vllm serve`` command for a model, its environment (the API key, if any) and the stop
    strings its template needs per request."""

    command: list[str]
    stop: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        """The command as one line a user can paste (an API key is named, never shown)."""
        prefix = "VLLM_API_KEY=... " if "VLLM_API_KEY" in self.env else ""
        return prefix + " ".join(shlex.quote(part) for part in self.command)


def plan(model: str, *, name: str, template: str | None = None, schema: str | None = None, host: str = "127.0.0.1",
         port: int = 8000, api_key: str | None = None) -> Plan:
    """How vLLM serves ``model`` steered as steer would (its tokenizer is read; no weights are loaded)."""
    ref = resolve(model)
    steering = model_template(load_tokenizer(ref), ref.spec, kind=template, schema=schema)
    return Plan(vllm_command(ref, steering.source, name=name, host=host, port=port), steering.stop,
                {"VLLM_API_KEY": api_key} if api_key else {})
