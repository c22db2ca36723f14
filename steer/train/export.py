"""``steer export``: a run directory (LoRA adapter or full weights) to a standalone model.

For a generator the result loads with ``AutoModelForCausalLM.from_pretrained`` and no steer code:
LoRA is merged into the base weights, the tokenizer's chat template is the steering template
(``steer_attributes`` and ``steer_values`` are its variables), and ``generation_config.stop_strings``
holds the template's stop strings (SteerLM's ``<extra_id_1>``). Each kind of run exports as its task
says (:attr:`steer.train.loop.Task.export`). Every export gets a model card (``README.md``,
:mod:`steer.train.card`); :func:`push` uploads the folder to the Hugging Face hub (:mod:`steer.train.hub`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from steer.errors import UsageError
from steer.runs import RECIPE_FILE, run_info, run_path, torch_dtype, write_run_file
from steer.train.card import write_card
from steer.train.hub import Pushed, check, push, target

__all__ = ["Pushed", "check", "export", "push", "target"]


def export(run_dir: str | Path, out: str | Path, *, dtype: str = "auto", repo_id: str | None = None) -> Path:
    """Write the standalone model of a run (or checkpoint) to ``out``, with its ``steer.json``, recipe and
    model card (``repo_id``: the hub repo it is headed for, which the card's examples load)."""
    from steer.train.tasks import TASKS

    folder, info = run_info(run_dir)
    out = Path(out)
    if out.resolve() == folder.resolve():
        raise UsageError("--out must differ from the run directory")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty")
    if dtype != "auto":
        torch_dtype(dtype)  # a bad name fails before anything loads
    kind = str(info.get("kind", "sft"))
    if kind not in TASKS:
        raise UsageError(f"{folder}: cannot export a run of kind {kind!r} (known: {', '.join(TASKS)})")
    TASKS[kind].export(folder, out, info, dtype)
    write_run_file(out, {**info, "method": "merged" if info.get("method") != "full" else "full", "base_model": None,
                         "exported_from": str(folder.resolve())})
    recipe = run_path(folder, RECIPE_FILE)
    if recipe is not None:
        shutil.copy(recipe, out / RECIPE_FILE)
    write_card(out, folder, info, repo_id=repo_id)
    return out
