"""``steer quickstart``: train a steerable tiny Llama from scratch on the synthetic corpus, then
measure that steering works.

Steps: write the corpus (:mod:`steer.synth`), train a BPE tokenizer on it, train with the same
path as ``steer train sft`` (:func:`steer.train.train`), then sweep every attribute over
0..4 on prompts drawn apart from the training rows, generate greedily, and judge each answer with
the corpus's oracles. Nothing is downloaded; the numbers come from generated text.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steer import synth
from steer.config import SFTRecipe, validate_recipe
from steer.evaluate.steerability import Request, Sweep
from steer.events import Events, Stage


@dataclass(frozen=True)
class Settings:
    """How big a quickstart is: corpus rows, training epochs, evaluation prompts per level."""

    rows: int
    epochs: float
    prompts: int
    seed: int = 0
    max_new_tokens: int = 96


DEFAULT = Settings(rows=6000, epochs=6, prompts=40)
FAST = Settings(rows=6000, epochs=3, prompts=20)
VOCAB = 1024

# The embedded recipe (recipes/tiny/synth-steerlm.yaml is the same recipe with paths for the CLI).
RECIPE: dict[str, Any] = {
    "model": {"from_scratch": {
        "model_type": "llama", "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": VOCAB, "max_position_embeddings": 512,
        "tie_word_embeddings": True}},
    "template": {"kind": "steerlm", "schema": "helpsteer", "default_system": synth.SYSTEM},
    "data": {"max_length": 256, "packing": True},
    "train": {"method": "full", "learning_rate": 3.0e-3, "lr_scheduler": "cosine", "warmup_ratio": 0.05,
              "batch_size": 16, "save_steps": 100000, "save_total_limit": 1, "logging_steps": 10},
}


def recipe(out: Path, settings: Settings) -> SFTRecipe:
    """The quickstart recipe with its data, tokenizer and run directory under ``out``."""
    data = json.loads(json.dumps(RECIPE))
    data["model"]["tokenizer"] = str(out / "data" / "tokenizer")
    data["data"]["sources"] = [{"path": str(out / "data" / "train.jsonl"), "format": "steer"}]
    data["data"]["validation"] = [{"path": str(out / "data" / "valid.jsonl"), "format": "steer"}]
    data["data"]["cache_dir"] = str(out / "cache")
    data["train"].update(epochs=settings.epochs, seed=settings.seed, output_dir=str(out / "model"),
                         eval_steps=100000)
    return validate_recipe(data, origin="quickstart")  # type: ignore[return-value]


def make_data(out: Path, settings: Settings) -> dict[str, Path]:
    """The corpus (train and validation rows), a tokenizer trained on it and the held-out prompts
    (``prompts.jsonl``, for ``steer eval steerability --judge oracle``), under ``out/data``."""
    return synth.write_all(out / "data", settings.rows, seed=settings.seed, valid=max(50, settings.rows // 50),
                           vocab_size=VOCAB, prompts=settings.prompts)


def evaluate(model_dir: Path, settings: Settings, events: Events | None = None) -> dict:
    """Sweep every attribute over its range on held-out prompts; judge each answer with the oracles."""
    from steer.engines.base import Sampling
    from steer.engines.load import load_engine
    from steer.evaluate import steerability
    from steer.evaluate.judges import make_judge

    questions = synth.prompts(settings.prompts, settings.seed)
    oracle, _ = make_judge("oracle")
    result = steerability.run(load_engine(str(model_dir)), questions, oracle, synth.SCHEMA.names,
                              Sampling(temperature=0.0, max_new_tokens=settings.max_new_tokens), events=events, batch=100)
    return report(result, questions)


def report(result: Sweep, questions: list[dict]) -> dict:
    """Steerability per attribute, the share of right answers per correctness level, and samples."""
    requests, texts, judged = result.requests, result.texts, result.judged
    right = {}
    for level in range(5):
        hits = [j["answer_right"] for r, j in zip(requests, judged) if r.attribute == "correctness" and r.level == level]
        right[level] = sum(hits) / len(hits) if hits else None
    samples: dict[str, dict[int, str]] = {}
    for name in ("verbosity", "correctness", "complexity"):
        samples[name] = {r.level: t for r, t in zip(requests, texts) if r.attribute == name and r.prompt_index == 0}
    return {"attributes": result.summary, "correct_answer_rate": right, "sample_prompt": questions[0]["prompt"],
            "samples": samples,
            "generations": [{"attribute": r.attribute, "level": r.level, "prompt": questions[r.prompt_index]["prompt"],
                             "text": t, "realised": j} for r, t, j in zip(requests, texts, judged)]}


def run(out: Path, settings: Settings = DEFAULT, events: Events | None = None) -> dict:
    """The whole quickstart; returns the report (also written to ``out/report.json``)."""
    from steer.train import train

    emit = events or (lambda event: None)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    emit(Stage(1, 3, "synthetic corpus and tokenizer"))
    make_data(out, settings)
    timings["data_s"] = time.perf_counter() - start
    emit(Stage(2, 3, "training a tiny Llama from scratch"))
    result = train(recipe(out, settings), events=events)
    timings["train_s"] = time.perf_counter() - start - timings["data_s"]
    emit(Stage(3, 3, "steering sweep"))
    rep = evaluate(result.run_dir, settings, events)
    timings["evaluate_s"] = time.perf_counter() - start - timings["data_s"] - timings["train_s"]
    timings["total_s"] = time.perf_counter() - start
    rep.update(model=str(result.run_dir), settings=asdict(settings), timings=timings, train=result.to_json())
    (out / "report.json").write_text(json.dumps(rep, indent=2), encoding="utf-8")
    return rep


def sweep_records(report: dict) -> tuple[list[Request], list[dict]]:
    """The sweep's requests and judged values back from a report (for plotting a saved report)."""
    requests = [Request(g["attribute"], g["level"], i, {}) for i, g in enumerate(report["generations"])]
    return requests, [g["realised"] for g in report["generations"]]


def run_and_plot(out: Path, settings: Settings, events: Events | None = None) -> tuple[dict, str]:
    """``steer quickstart``: refuse a folder that already holds a run, run, and plot the sweep."""
    from steer.errors import UsageError
    from steer.evaluate.plots import plot

    if (out / "model").exists():
        raise UsageError(f"{out} already holds a quickstart run; pass --out NEW_DIR or remove it")
    rep = run(out, settings, events)
    return rep, plot(rep["attributes"], *sweep_records(rep), str(out / "steerability.png"))
