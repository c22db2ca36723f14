"""``steer serve --engine vllm``: the ``vllm serve`` command for a steer model, with its steering chat
template and LoRA adapter wired in, so production traffic runs on vLLM's own OpenAI server."""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path

from steer.errors import UsageError
from steer.generate.vllm import model_and_adapter


def template_file(model: str, source: str) -> Path:
    """A file holding the steering chat template: the model's own ``chat_template.jinja`` when it is
    that template, else a copy in steer's cache (``$XDG_CACHE_HOME/steer/templates``)."""
    own = Path(model) / "chat_template.jinja"
    if own.is_file() and own.read_text(encoding="utf-8") == source:
        return own
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steer" / "templates"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{hashlib.sha256(source.encode()).hexdigest()[:16]}.jinja"
    if not path.is_file():
        path.write_text(source, encoding="utf-8")
    return path


def vllm_command(model: str, template_source: str, *, name: str, host: str = "127.0.0.1", port: int = 8000,
                 api_key: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``vllm serve`` argv for ``model`` (a run directory, exported model, HF folder or hub id).

    A LoRA run serves its base model with the adapter as a LoRA module called ``name`` (clients ask
    for ``model=name``); everything else is served under ``name`` directly.
    """
    base, adapter, _ = model_and_adapter(model)
    if Path(model).is_absolute() and not Path(model).exists():
        raise UsageError(f"model not found: {model}")
    cmd = ["vllm", "serve", base, "--host", host, "--port", str(port),
           "--chat-template", str(template_file(adapter or model, template_source))]
    if adapter:
        cmd += ["--tokenizer", adapter, "--enable-lora", "--lora-modules", f"{name}={adapter}"]
    else:
        cmd += ["--served-model-name", name]
    if api_key:
        cmd += ["--api-key", api_key]
    return cmd + list(extra)


def shell(cmd: list[str]) -> str:
    """The command as one line a user can paste."""
    return " ".join(shlex.quote(part) for part in cmd)
