"""Facts about the running environment, for ``steer env`` and bug reports."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "tokenizers", "vllm", "deepspeed",
            "flash-attn", "bitsandbytes", "typer", "rich", "pydantic")


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None (reads metadata; imports nothing)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    """Versions, platform and accelerator facts as a flat, JSON-able dict."""
    from steer import __version__

    info: dict = {
        "steer": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    info.update({name: package_version(name) for name in PACKAGES})
    info.update(_device())
    return info


def _device() -> dict:
    try:
        import torch
    except ImportError:
        return {"device": "unknown (torch not installed)", "cuda": None}
    out: dict = {"cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                 "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["device"] = f"cuda ({torch.cuda.device_count()}x {names[0]})"
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out["device"] = "mps"
    else:
        out["device"] = "cpu"
    return out
