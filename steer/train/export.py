"""``steer export``: a run directory (LoRA adapter or full weights) to a plain Hugging Face model.

The result loads with ``AutoModelForCausalLM.from_pretrained`` and no steer code: LoRA is merged into
the base weights, the tokenizer's chat template is the steering template (``steer_attributes`` and
``steer_values`` are its variables), and ``generation_config.stop_strings`` holds the template's stop
strings (SteerLM's ``<extra_id_1>``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from steer.errors import UsageError

RUN_FILE = "steer.json"


def find_run_file(folder: Path) -> dict | None:
    """``steer.json`` of a run directory or of the run a checkpoint folder belongs to (None: not a run)."""
    for candidate in (folder, folder.parent):
        info = candidate / RUN_FILE
        if info.is_file():
            try:
                return json.loads(info.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise UsageError(f"{info}: not valid JSON ({err.msg})") from None
    return None


def run_info(path: str | Path) -> tuple[Path, dict]:
    """``(weights folder, steer.json)`` of a run directory or one of its checkpoints."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"not a directory: {folder}")
    info = find_run_file(folder)
    if info is None:
        raise UsageError(f"{folder} is not a steer run directory (no {RUN_FILE} here or in its parent)")
    return folder, info


def load_trained(path: str | Path, *, dtype: Any = None, merge: bool = False, backbone: bool = False) -> tuple[Any, dict]:
    """The trained causal LM of a run (base + adapter; merged when ``merge``) and its ``steer.json``;
    ``backbone``: the transformer without its LM head (``AutoModel``, what an APM's head reads)."""
    import transformers

    auto = transformers.AutoModel if backbone else transformers.AutoModelForCausalLM
    folder, info = run_info(path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        adapter = json.loads((folder / "adapter_config.json").read_text())
        base_id = info.get("base_model") or adapter.get("base_model_name_or_path")
        try:
            base = auto.from_pretrained(base_id, **kwargs)
        except OSError as err:
            raise UsageError(f"cannot load the base model {base_id!r} of {folder}: {str(err).splitlines()[0]}") from None
        model = PeftModel.from_pretrained(base, str(folder))
        return (model.merge_and_unload() if merge else model), info
    if not (folder / "config.json").is_file():
        raise UsageError(f"{folder} holds neither a LoRA adapter nor model weights")
    return auto.from_pretrained(str(folder), **kwargs), info


def export(run_dir: str | Path, out: str | Path, *, dtype: str = "auto") -> Path:
    """Write the merged model, tokenizer (steering chat template) and generation config to ``out``."""
    import torch
    from transformers import AutoTokenizer

    folder, info = run_info(run_dir)
    out = Path(out)
    if out.resolve() == folder.resolve():
        raise UsageError("--out must differ from the run directory")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty")
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype, None)
    if dtype != "auto" and torch_dtype is None:
        raise UsageError(f"--dtype {dtype!r}: use float32, bfloat16, float16 or auto")
    if info.get("kind") == "apm":
        return _export_apm(folder, out, info, dtype)
    model, info = load_trained(folder, dtype=torch_dtype, merge=True)
    tok_dir = folder if (folder / "tokenizer_config.json").is_file() else folder.parent
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    stop = list(info.get("template", {}).get("stop") or [])
    if stop:
        model.generation_config.stop_strings = stop
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _finish(folder, out, info)
    return out


def _finish(folder: Path, out: Path, info: dict) -> None:
    """``steer.json`` (now a standalone model) and the resolved recipe, next to the exported weights."""
    exported = {**info, "method": "merged" if info.get("method") != "full" else "full", "base_model": None,
                "exported_from": str(folder.resolve())}
    (out / RUN_FILE).write_text(json.dumps(exported, indent=2), encoding="utf-8")
    for extra in ("recipe.yaml",):
        src = folder / extra if (folder / extra).is_file() else folder.parent / extra
        if src.is_file():
            shutil.copy(src, out / extra)


def _export_apm(folder: Path, out: Path, info: dict, dtype: str) -> Path:
    """An attribute prediction model: the merged backbone (plain ``AutoModel`` weights) and its head file."""
    from steer.train.apm import APM, save_apm

    apm = APM.load(folder, dtype=dtype, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    save_apm(apm.model, out)
    apm.tokenizer.save_pretrained(str(out))
    _finish(folder, out, info)
    return out
