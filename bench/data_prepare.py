"""Benchmark: `steer data prepare` vs a plain `datasets.map` tokenization, same rows, same run.

37,000 HelpSteer-shaped rows (prompts and responses of a few hundred words, generated here with a
fixed seed) are rendered with the SteerLM template and tokenized with a real tokenizer (Llama 3's
128k BPE from ../shared/assets by default). The baseline formats the same prompt/response pair and
tokenizes it with `datasets.map(batched=True)`, without templates or loss masks.

    python bench/data_prepare.py [--rows 37000] [--tokenizer DIR] [--num-proc 2] [--out bench/results/data_prepare.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the of and to in is that for it as with was on be by this are from at or an which have not they one "
         "model river system answer value energy light signal market policy network protein theory city history "
         "language data method result effect process structure function number example question reason").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def text(rng: random.Random, words: int) -> str:
    out, count = [], 0
    while count < words:
        k = rng.randint(8, 24)
        out.append(sentence(rng, k))
        count += k
    return " ".join(out)


def make_rows(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for _ in range(rows):
            row = {"prompt": text(rng, rng.randint(80, 300)), "response": text(rng, rng.randint(100, 400))}
            row.update({k: rng.randint(0, 4) for k in ("helpfulness", "correctness", "coherence", "complexity", "verbosity")})
            handle.write(json.dumps(row) + "\n")


def run_steer(data: Path, tokenizer: str, num_proc: int, cache: Path) -> dict:
    from steer.config import validate_recipe
    from steer.train import prepare

    recipe = validate_recipe({"model": {"name_or_path": tokenizer}, "template": {"kind": "steerlm", "schema": "helpsteer"},
                              "data": {"sources": [{"path": str(data), "format": "helpsteer"}], "max_length": 4096,
                                       "num_proc": num_proc, "cache_dir": str(cache)}})
    start = time.perf_counter()
    result = prepare(recipe, force=True)
    return {"seconds": time.perf_counter() - start, "examples": result.examples, "tokens": result.tokens}


def run_baseline(data: Path, tokenizer: str, num_proc: int) -> dict:
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    start = time.perf_counter()  # the tokenizer's loading counts on both sides (steer's prepare loads its own)
    tok = AutoTokenizer.from_pretrained(tokenizer)
    ds = datasets.load_dataset("json", data_files=str(data), split="train", download_mode="force_redownload")
    ds = ds.map(lambda b: tok([f"User: {p}\nAssistant: {r}" for p, r in zip(b["prompt"], b["response"])]),
                batched=True, num_proc=num_proc, remove_columns=ds.column_names, load_from_cache_file=False)
    tokens = sum(len(x) for x in ds["input_ids"])
    return {"seconds": time.perf_counter() - start, "examples": len(ds), "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=37000)
    parser.add_argument("--tokenizer", default=str(ROOT.parent / "shared/assets/tokenizers/llama3"))
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench/results/data_prepare.json"))
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "helpsteer_shaped.jsonl"
        make_rows(data, args.rows)
        steer_runs, base_runs = [], []
        for _ in range(args.repeats):
            base_runs.append(run_baseline(data, args.tokenizer, args.num_proc))
            steer_runs.append(run_steer(data, args.tokenizer, args.num_proc, Path(tmp) / "cache"))
    s = statistics.median(r["seconds"] for r in steer_runs)
    b = statistics.median(r["seconds"] for r in base_runs)
    result = {"rows": args.rows, "tokenizer": Path(args.tokenizer).name, "num_proc": args.num_proc,
              "steer_seconds": s, "steer_rows_per_s": args.rows / s, "steer_tokens": steer_runs[0]["tokens"],
              "baseline_seconds": b, "baseline_rows_per_s": args.rows / b, "baseline_tokens": base_runs[0]["tokens"],
              "steer_over_baseline_time": s / b, "repeats": args.repeats,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}}
    print(f"{'':24}{'seconds':>10}{'rows/s':>10}{'tokens':>14}")
    print(f"{'steer data prepare':24}{s:>10.1f}{args.rows / s:>10.0f}{steer_runs[0]['tokens']:>14,}")
    print(f"{'datasets.map baseline':24}{b:>10.1f}{args.rows / b:>10.0f}{base_runs[0]['tokens']:>14,}")
    print(f"steer time / baseline time: {s / b:.2f}x  (target: <= 1.0x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
