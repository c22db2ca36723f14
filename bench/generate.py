"""Benchmark: `steer batch` (hf engine) vs a plain per-prompt `transformers` generate loop, same run.

The same tiny model (../shared/assets/models/stories260k, SteerLM format), 256 steered prompts,
greedy decoding, the same max_new_tokens. Each side runs in its own process (peak RSS per side).
Also times `steer generate` end to end (process start to last token) for one prompt.

    python bench/generate.py [--prompts 256] [--max-new-tokens 64] [--batch-size 64] [--out bench/results/generate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = ROOT.parent / "shared/assets/models/stories260k"
TOPICS = ("a dog", "the sea", "a small robot", "two friends", "a rainy day", "a lost key", "the moon", "a garden")


def write_prompts(path: Path, n: int) -> None:
    with open(path, "w") as handle:
        for i in range(n):
            row = {"id": i, "prompt": f"Tell me a story about {TOPICS[i % len(TOPICS)]}" + " please" * (i % 5),
                   "attributes": {"verbosity": i % 5}}
            handle.write(json.dumps(row) + "\n")


def run_steer(prompts: Path, out: Path, max_new: int, batch: int) -> dict:
    from steer.generate.batch import iter_jobs, run_batch
    from steer.engines.base import Sampling
    from steer.engines.load import load_engine

    engine = load_engine(str(MODEL), template="steerlm")
    start = time.perf_counter()
    run_batch(engine, iter_jobs(prompts, engine.template.schema, {}), out, Sampling(temperature=0, max_new_tokens=max_new),
              batch_size=batch)
    seconds = time.perf_counter() - start
    tokens = sum(json.loads(line)["completion_tokens"] for line in out.read_text().splitlines())
    return {"seconds": seconds, "tokens": tokens}


def run_loop(prompts: Path, max_new: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steer.runs import model_template
    from steer.steering import Steering, steering_prompt

    tok = AutoTokenizer.from_pretrained(str(MODEL))
    model = AutoModelForCausalLM.from_pretrained(str(MODEL)).eval()
    template = model_template(tok, None, kind="steerlm")
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    texts = [steering_prompt(template, [{"role": "user", "content": r["prompt"]}], Steering(r["attributes"])).text for r in rows]
    start = time.perf_counter()
    tokens = 0
    with torch.inference_mode():
        for text in texts:
            enc = tok(text, add_special_tokens=False, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, stop_strings=["<extra_id_1>"],
                                 tokenizer=tok, pad_token_id=tok.eos_token_id)
            tokens += out.shape[1] - enc["input_ids"].shape[1]
    return {"seconds": time.perf_counter() - start, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "bench/results/generate.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        work = Path(args.workdir)
        result = (run_steer(work / "prompts.jsonl", work / "out.jsonl", args.max_new_tokens, args.batch_size)
                  if args.one == "steer" else run_loop(work / "prompts.jsonl", args.max_new_tokens))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    import torch

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_prompts(Path(tmp) / "prompts.jsonl", args.prompts)
        for kind in ("steer", "loop"):
            proc = subprocess.run([sys.executable, __file__, "--one", kind, "--workdir", tmp, "--max-new-tokens",
                                   str(args.max_new_tokens), "--batch-size", str(args.batch_size)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{kind} failed:\n{proc.stderr[-4000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            results[kind] = r
        start = time.perf_counter()
        one = subprocess.run([sys.executable, "-m", "steer", "generate", str(MODEL), "Tell me a story about a dog",
                              "--template", "steerlm", "--temperature", "0", "--max-new-tokens", str(args.max_new_tokens),
                              "--json"], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        end_to_end = time.perf_counter() - start
        if one.returncode != 0:
            sys.exit(f"steer generate failed:\n{one.stderr[-2000:]}")
    ratio = results["steer"]["tokens_per_s"] / results["loop"]["tokens_per_s"]
    out = {"results": results, "steer_over_loop": ratio, "generate_end_to_end_s": end_to_end, "prompts": args.prompts,
           "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}}
    print(f"{'':24}{'output tok/s':>14}{'tokens':>9}{'seconds':>9}{'peak RSS MB':>13}")
    for kind, r in results.items():
        name = "steer batch (hf)" if kind == "steer" else "per-prompt generate loop"
        print(f"{name:24}{r['tokens_per_s']:>14,.0f}{r['tokens']:>9,}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13,.0f}")
    print(f"steer / loop: {ratio:.1f}x (target >= 8x); steer generate end to end: {end_to_end:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
