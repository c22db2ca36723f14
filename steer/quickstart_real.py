"""``steer quickstart --real``: SteerLM on a real instruct model (SmolLM2-135M-Instruct), on a CPU.

Steps: pull the model if needed (:mod:`steer.models`); sweep verbosity and complexity on held-out
prompts by *prompting* the untrained model (an instruction per level as the system message, the
baseline); train LoRA SteerLM SFT on the corpus the model wrote itself (``steer/corpora``, built by
``scripts/make_real_corpus.py``: answers labelled by their length and reading grade); sweep the trained
model by *attributes* on the same prompts. Both sweeps are greedy and judged the same way: verbosity
as characters (``length``), complexity as the Flesch-Kincaid grade (``fkgl``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steer.config import SFTRecipe, validate_recipe
from steer.events import Events, Stage

MODEL = "smollm2-135m-instruct"
CORPUS = Path(__file__).parent / "corpora"
TRAIN_FILE = CORPUS / "smollm2-style.jsonl"
PROMPTS_FILE = CORPUS / "prompts-heldout.jsonl"
JUDGE = "length,fkgl"
NAMES = ("verbosity", "complexity")


@dataclass(frozen=True)
class Settings:
    """How big a real quickstart is: corpus records trained on, epochs, held-out prompts, answer budget."""

    rows: int
    epochs: float
    prompts: int
    max_new_tokens: int
    seed: int = 0


DEFAULT = Settings(rows=480, epochs=3, prompts=8, max_new_tokens=96)
FAST = Settings(rows=48, epochs=1, prompts=2, max_new_tokens=40)

SCHEMA = {"name": "style", "attributes": [
    {"name": "complexity", "default": 2, "description": "reading grade of the answer (0 plain words, 4 expert)"},
    {"name": "verbosity", "default": 2, "description": "length of the answer (0 one short sentence, 4 several paragraphs)"},
]}
RECIPE: dict[str, Any] = {
    "model": {"name_or_path": MODEL, "dtype": "float32"},
    "template": {"kind": "chat", "schema": SCHEMA},
    "data": {"max_length": 320, "packing": True},
    "train": {"method": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
              "learning_rate": 1.0e-3, "lr_scheduler": "cosine", "warmup_ratio": 0.05, "batch_size": 8,
              "save_steps": 100000, "save_total_limit": 1, "logging_steps": 5},
}


def recipe(out: Path, settings: Settings) -> SFTRecipe:
    """The real quickstart's recipe with its data and run directory under ``out``."""
    data = json.loads(json.dumps(RECIPE))
    data["data"]["sources"] = [{"path": str(out / "data" / "train.jsonl"), "format": "steer"}]
    data["data"]["cache_dir"] = str(out / "cache")
    data["train"].update(epochs=settings.epochs, seed=settings.seed, output_dir=str(out / "model"))
    return validate_recipe(data, origin="quickstart --real")  # type: ignore[return-value]


def make_data(out: Path, settings: Settings) -> list[dict]:
    """``settings.rows`` corpus records drawn at random (seeded) into ``out/data/train.jsonl``; returns
    the held-out prompts."""
    from steer.outputs import write_text_atomic

    lines = TRAIN_FILE.read_text(encoding="utf-8").splitlines()
    chosen = random.Random(settings.seed).sample(lines, min(settings.rows, len(lines)))
    write_text_atomic(out / "data" / "train.jsonl", "\n".join(chosen) + "\n")
    prompts = [json.loads(line) for line in PROMPTS_FILE.read_text(encoding="utf-8").splitlines()]
    return prompts[: settings.prompts]


def sweep(model: str, prompts: list[dict], settings: Settings, *, instructed: bool, events: Events | None) -> Any:
    """Verbosity and complexity swept over 0..4 on ``prompts``: by instructions or by attributes."""
    from steer.engines.base import Sampling
    from steer.engines.load import load_engine
    from steer.evaluate import steerability
    from steer.evaluate.instructions import INSTRUCTIONS
    from steer.evaluate.judges import make_judge

    judge, _ = make_judge(JUDGE)
    return steerability.run(load_engine(model, dtype="float32"), prompts, judge, NAMES,
                            Sampling(temperature=0.0, max_new_tokens=settings.max_new_tokens), events=events,
                            batch=len(prompts) * 10, instructions=INSTRUCTIONS if instructed else None)


def samples(result: Any, prompt_index: int = 0) -> dict[str, dict[int, str]]:
    """What the sweep wrote for one prompt, per attribute and level."""
    return {name: {r.level: t for r, t in zip(result.requests, result.texts)
                   if r.attribute == name and r.prompt_index == prompt_index} for name in NAMES}


def run(out: Path, settings: Settings = DEFAULT, events: Events | None = None) -> dict:
    """The whole real quickstart; returns the report (also written to ``out/report.json``)."""
    from steer.models import ensure
    from steer.outputs import write_text_atomic
    from steer.train import train

    emit = events or (lambda event: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    emit(Stage(1, 4, f"the real model ({MODEL})"))
    model_path = str(ensure(MODEL))
    prompts = make_data(out, settings)
    lap("pull_s")
    emit(Stage(2, 4, "prompting baseline: an instruction per level, untrained model"))
    baseline = sweep(MODEL, prompts, settings, instructed=True, events=events)
    lap("baseline_s")
    emit(Stage(3, 4, f"LoRA SteerLM on {settings.rows} answers the model wrote (labelled by length and reading grade)"))
    trained = train(recipe(out, settings), events=events)
    lap("train_s")
    emit(Stage(4, 4, "SteerLM sweep: attributes, trained model"))
    steered = sweep(str(trained.run_dir), prompts, settings, instructed=False, events=events)
    lap("steerlm_s")
    timings["total_s"] = round(sum(timings.values()), 1)
    report = {"model": MODEL, "model_path": model_path, "run": str(trained.run_dir), "judge": JUDGE,
              "settings": asdict(settings), "timings": timings, "train": trained.to_json(),
              "prompts": [p["prompt"] for p in prompts],
              "baseline": baseline.summary, "steerlm": steered.summary,
              "samples": {"prompt": prompts[0]["prompt"], "baseline": samples(baseline), "steerlm": samples(steered)},
              "generations": {name: [{"attribute": r.attribute, "level": r.level, "prompt_index": r.prompt_index,
                                      "instruction": r.instruction, "text": t, "realised": j}
                                     for r, t, j in zip(res.requests, res.texts, res.judged)]
                              for name, res in (("baseline", baseline), ("steerlm", steered))}}
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    return report


def run_and_plot(out: Path, settings: Settings, events: Events | None = None) -> tuple[dict, list[str]]:
    """``steer quickstart --real``: refuse a folder that already holds a run, run, plot both sweeps."""
    from steer.errors import UsageError
    from steer.evaluate.plots import plot
    from steer.evaluate.steerability import Request

    if (out / "model").exists():
        raise UsageError(f"{out} already holds a quickstart run; pass --out NEW_DIR or remove it")
    report = run(out, settings, events)
    pngs = []
    for name in ("baseline", "steerlm"):
        rows = report["generations"][name]
        requests = [Request(g["attribute"], g["level"], g["prompt_index"], {}) for g in rows]
        pngs.append(plot(report[name], requests, [g["realised"] for g in rows], str(out / f"{name}.png")))
    return report, pngs
