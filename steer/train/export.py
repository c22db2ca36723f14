"""``steer export``: a run directory (LoRA adapter or full weights) to a standalone model.

For a generator the result loads with ``AutoModelForCausalLM.from_pretrained`` and no steer code:
LoRA is merged into the base weights, the tokenizer's chat template is the steering template
(``steer_attributes`` and ``steer_values`` are its variables), and ``generation_config.stop_strings``
holds the template's stop strings (SteerLM's ``<extra_id_1>``). Each kind of run exports as its task
says (:attr:`steer.train.loop.Task.export`). Every export gets a model card (``README.md``,
:mod:`steer.train.card`); :func:`push` uploads the folder to the Hugging Face hub (:mod:`steer.train.hub`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

from steer.errors import UsageError
from steer.runs import RECIPE_FILE, run_info, run_path, torch_dtype, write_run_file
from steer.train.card import card_recipe, write_card
from steer.train.hub import Pushed, check, push, target

__all__ = ["Pushed", "check", "export", "push", "target"]


def export(run_dir: str | Path, out: str | Path, *, dtype: str = "auto", repo_id: str | None = None) -> Path:
    """Write the standalone model of a run (or checkpoint) to ``out``, with its ``steer.json``, recipe and
    model card (``repo_id``: the hub repo it is headed for, which the card's examples load).

    Everything is written into a hidden sibling folder first and renamed to ``out`` at the end, so a
    failed export (a recipe the card cannot read, an interrupted save) leaves no half-written ``out``."""
    from steer.train.tasks import TASKS

    folder, info = run_info(run_dir)
    out = Path(out)
    if out.resolve() == folder.resolve():
        raise UsageError("--out must differ from the run directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not empty")
    if dtype != "auto":
        torch_dtype(dtype)  # a bad name fails before anything loads
    kind = str(info.get("kind", "sft"))
    if kind not in TASKS:
        raise UsageError(f"{folder}: cannot export a run of kind {kind!r} (known: {', '.join(TASKS)})")
    card_recipe(folder)  # a recipe.yaml the card cannot read fails before the (long) export, not after it
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
    partial.mkdir()
    try:
        TASKS[kind].export(folder, partial, info, dtype)
        write_run_file(partial, {**info, "method": "merged" if info.get("method") != "full" else "full",
                                 "base_model": None, "exported_from": exported_from(folder)})
        recipe = run_path(folder, RECIPE_FILE)
        if recipe is not None:
            shutil.copy(recipe, partial / RECIPE_FILE)
        write_card(partial, folder, info, repo_id=repo_id, name=out.name)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def exported_from(folder: Path) -> str:
    """What an export records of its run: the run folder's name (with the checkpoint's, for one), never a
    local path (the folder is pushed to the hub)."""
    where = folder.resolve()
    if re.fullmatch(r"checkpoint-\d+", where.name) and where.parent.name:
        return f"{where.parent.name}/{where.name}"
    return where.name

