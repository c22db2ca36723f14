"""``steer quickstart --vision``: train a steerable tiny vision-language model (a Llava: a CLIP vision
tower and a Llama) from scratch on the visual synthetic world, then measure that steering works.

Steps: draw the images and write the rows (:mod:`steer.synth_vision`), train a BPE tokenizer on the
answers and give it the processor's ``<image>`` token, train with the same path as
``steer train sft`` (:func:`steer.train.train`, padded batches, image tokens without loss), then
sweep ``visual_faithfulness`` and ``verbosity`` over 0..4 on held-out images, generate greedily and
judge each answer against the image's facts. Nothing is downloaded; the numbers come from generated text.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from steer import synth_vision
from steer.config import SFTRecipe, validate_recipe
from steer.events import Events, Stage
from steer.quickstart import Settings


# How big a visual quickstart is: training rows, epochs, evaluation images per level (the text
# quickstart's settings; answers here are at most five short sentences).
DEFAULT = Settings(rows=4000, epochs=12, prompts=40, max_new_tokens=64)
FAST = Settings(rows=4000, epochs=8, prompts=24, max_new_tokens=64)
VOCAB = 384
MODEL = {"hidden": 128, "layers": 3, "heads": 4, "image_size": synth_vision.SIZE, "patch_size": 8}

RECIPE: dict[str, Any] = {
    "template": {"kind": "steerlm", "schema": "vision", "default_system": "Describe the picture."},
    "data": {"max_length": 256, "packing": False},
    "train": {"method": "full", "learning_rate": 2.0e-3, "lr_scheduler": "cosine", "warmup_ratio": 0.05,
              "batch_size": 32, "save_steps": 100000, "save_total_limit": 1, "logging_steps": 10},
}


def make_data(out: Path, settings: Settings) -> dict[str, Path]:
    """The rows and images (``train.jsonl``, ``valid.jsonl``), the held-out prompts (``prompts.jsonl``,
    for ``steer eval steerability --judge oracle``) and a processor folder (a tokenizer trained on the
    answers, plus ``<image>``, and the image processor) under ``out/data``."""
    from transformers import AutoTokenizer

    from steer.synth import train_tokenizer
    from steer.vision import make_processor

    data = out / "data"
    train = synth_vision.write(data, settings.rows, seed=settings.seed)
    valid = synth_vision.write(data, max(50, settings.rows // 50), seed=settings.seed + 1, name="valid.jsonl")
    prompts = synth_vision.write_prompts(data, settings.prompts, seed=settings.seed + 2)
    texts = [json.loads(line)["messages"][1]["content"] for line in train.read_text(encoding="utf-8").splitlines()]
    texts += list(synth_vision.QUESTIONS.values())
    words = [w for v in (*synth_vision.COLOURS, *synth_vision.SHAPES, *synth_vision.SIDES,
                         *synth_vision.NUMBERS.values()) for w in (v, " " + v)]
    tokenizer_dir = train_tokenizer(texts, data / "tokenizer", vocab_size=VOCAB, words=words)
    make_processor(AutoTokenizer.from_pretrained(str(tokenizer_dir)), data / "processor",
                   image_size=MODEL["image_size"], patch_size=MODEL["patch_size"])
    return {"train": train, "valid": valid, "prompts": prompts, "processor": data / "processor"}


def recipe(out: Path, settings: Settings) -> SFTRecipe:
    """The visual quickstart recipe: a from-scratch Llava over the processor in ``out/data/processor``."""
    from transformers import AutoProcessor

    from steer.vision import scratch_spec

    processor = AutoProcessor.from_pretrained(str(out / "data" / "processor"))
    data = json.loads(json.dumps(RECIPE))
    data["model"] = {"from_scratch": scratch_spec("llava", processor, **MODEL), "tokenizer": str(out / "data" / "processor")}
    data["data"]["sources"] = [{"path": str(out / "data" / "train.jsonl"), "format": "steer"}]
    data["data"]["validation"] = [{"path": str(out / "data" / "valid.jsonl"), "format": "steer"}]
    data["data"]["cache_dir"] = str(out / "cache")
    data["train"].update(epochs=settings.epochs, seed=settings.seed, output_dir=str(out / "model"), eval_steps=100000)
    return validate_recipe(data, origin="quickstart --vision")  # type: ignore[return-value]


def evaluate(model_dir: Path, prompts: Path, settings: Settings, events: Events | None = None) -> dict:
    """Sweep both attributes over 0..4 on the held-out images; judge each answer against its image's facts."""
    from steer.engines.base import Sampling
    from steer.engines.load import load_engine
    from steer.evaluate import steerability
    from steer.evaluate.judges import make_judge

    rows = steerability.read_prompts(str(prompts))
    oracle, _ = make_judge("oracle")
    result = steerability.run(load_engine(str(model_dir)), rows, oracle, synth_vision.SCHEMA.names,
                              Sampling(temperature=0.0, max_new_tokens=settings.max_new_tokens), events=events, batch=64)
    samples: dict[str, dict[int, str]] = {}
    for name in synth_vision.SCHEMA.names:
        samples[name] = {r.level: t for r, t in zip(result.requests, result.texts) if r.attribute == name and r.prompt_index == 0}
    return {"attributes": result.summary, "sample_facts": rows[0]["facts"], "sample_question": rows[0]["question"],
            "samples": samples,
            "generations": [{"attribute": r.attribute, "level": r.level, "facts": rows[r.prompt_index]["facts"],
                             "text": t, "realised": j} for r, t, j in zip(result.requests, result.texts, result.judged)]}


def run(out: Path, settings: Settings = DEFAULT, events: Events | None = None) -> dict:
    """The whole visual quickstart; returns the report (also written to ``out/report.json``)."""
    from steer.train import train

    emit = events or (lambda event: None)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    emit(Stage(1, 3, "visual synthetic world, tokenizer and processor"))
    paths = make_data(out, settings)
    timings["data_s"] = time.perf_counter() - start
    emit(Stage(2, 3, "training a tiny Llava from scratch"))
    result = train(recipe(out, settings), events=events)
    timings["train_s"] = time.perf_counter() - start - timings["data_s"]
    emit(Stage(3, 3, "steering sweep"))
    rep = evaluate(result.run_dir, paths["prompts"], settings, events)
    timings["evaluate_s"] = time.perf_counter() - start - timings["data_s"] - timings["train_s"]
    timings["total_s"] = time.perf_counter() - start
    rep.update(model=str(result.run_dir), settings=asdict(settings), timings=timings, train=result.to_json())
    (out / "report.json").write_text(json.dumps(rep, indent=2), encoding="utf-8")
    return rep


def run_and_plot(out: Path, settings: Settings, events: Events | None = None) -> tuple[dict, str]:
    """``steer quickstart --vision``: refuse a folder that already holds a run, run, and plot the sweep."""
    from steer.errors import UsageError
    from steer.evaluate.plots import plot
    from steer.quickstart import sweep_records

    if (out / "model").exists():
        raise UsageError(f"{out} already holds a quickstart run; pass --out NEW_DIR or remove it")
    rep = run(out, settings, events)
    return rep, plot(rep["attributes"], *sweep_records(rep), str(out / "steerability.png"))
