"""Benchmark: `steer batch` (hf engine) vs the peers a user would write with plain `transformers`:
batched `model.generate` (same batch size, left padding) and a per-prompt generate loop, same run.

The same model, the same steered prompts (of mixed lengths), greedy decoding, the same max_new_tokens.
Each side runs in its own process (peak RSS per side). Also times `steer generate` end to end
(process start to last token) for one prompt. ``--model`` takes a folder or an alias: the tiny
../shared/assets/models/stories260k (SteerLM format) by default, or smollm2-135m-instruct (its own
chat template); ``--peers`` picks the peers (the loop is slow on a real model).

    python bench/generate.py [--model M] [--prompts 256] [--max-new-tokens 64] [--batch-size 64] [--peers batched,loop]
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


# for a chat model: everyday questions asked for answers of very different lengths (mixed output lengths)
QUESTIONS = ROOT / "steer/corpora/prompts-heldout.jsonl"
STYLES = ("Answer in one word: {q}", "{q} Answer in one short sentence.", "{q}", "Explain in detail: {q}")


def write_prompts(path: Path, n: int, steered: bool) -> None:
    """Prompts of mixed lengths; with ``steered`` each asks for a verbosity level (the SteerLM model),
    else everyday questions, each asked for a one-word, one-sentence, plain or detailed answer."""
    questions = [json.loads(line)["prompt"] for line in QUESTIONS.read_text().splitlines()]
    with open(path, "w") as handle:
        for i in range(n):
            if steered:
                row = {"id": i, "prompt": f"Tell me a story about {TOPICS[i % len(TOPICS)]}" + " please" * (i % 5),
                       "attributes": {"verbosity": i % 5}}
            else:
                row = {"id": i, "prompt": STYLES[i % len(STYLES)].format(q=questions[(i // len(STYLES)) % len(questions)])}
            handle.write(json.dumps(row) + "\n")


def template_kind(model: str) -> str | None:
    """steerlm for the tiny model (no chat template), else the model's own (None)."""
    return "steerlm" if model == str(MODEL) else None


def run_steer(model: str, prompts: Path, out: Path, max_new: int, batch: int, dtype: str = "float32") -> dict:
    from steer.generate.batch import iter_jobs, run_batch
    from steer.engines.base import Sampling
    from steer.engines.load import load_engine

    engine = load_engine(model, template=template_kind(model), dtype=dtype)
    greedy = Sampling(temperature=0, max_new_tokens=max_new)
    start = time.perf_counter()
    run_batch(engine, iter_jobs(prompts, engine.template.schema, {}), out, greedy, batch_size=batch)
    seconds = time.perf_counter() - start
    lengths = [json.loads(line)["completion_tokens"] for line in out.read_text().splitlines()]
    # what `steer chat` shows first: the streamed answer to one prompt (time to first token)
    first = [r for r in engine.stream(engine.template.prompt([{"role": "user", "content": "Tell me a story"}]), greedy)
             if not isinstance(r, str)][0]
    return {"seconds": seconds, "tokens": sum(lengths), "lengths": length_stats(lengths),
            "chat_first_token_s": first.first_token_seconds}


def length_stats(lengths: list[int]) -> dict:
    """Output lengths: min, median, max (mixed lengths are where dropping finished rows pays)."""
    ordered = sorted(lengths)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]} if ordered else {}


def run_peer(model: str, prompts: Path, max_new: int, batch: int, dtype: str = "float32") -> dict:
    """Plain transformers: ``model.generate`` on ``batch`` prompts at a time (left padding), or one at a
    time when ``batch`` is 1; the prompts rendered by steer's template, as the user would."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steer.runs import model_template, resolve
    from steer.steering import Steering, steering_prompt

    folder = resolve(model).weights
    tok = AutoTokenizer.from_pretrained(folder, padding_side="left")
    tok.pad_token = tok.pad_token or tok.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    template = model_template(tok, None, kind=template_kind(model))
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    texts = [steering_prompt(template, [{"role": "user", "content": r["prompt"]}], Steering(r.get("attributes", {}))).text
             for r in rows]
    stops = list(template.stop) or None
    start = time.perf_counter()
    lengths = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], add_special_tokens=False, return_tensors="pt", padding=True).to(device)
            out = lm.generate(**enc, max_new_tokens=max_new, do_sample=False, stop_strings=stops,
                              tokenizer=tok, pad_token_id=tok.pad_token_id)
            for row in out[:, enc["input_ids"].shape[1]:].tolist():
                ends = [n for n, t in enumerate(row) if t in (tok.eos_token_id, tok.pad_token_id)]
                lengths.append(ends[0] if ends else len(row))  # as steer counts: the EOS is not output
    return {"seconds": time.perf_counter() - start, "tokens": sum(lengths), "lengths": length_stats(lengths)}


NAMES = {"steer": "steer batch (hf)", "batched": "batched model.generate", "loop": "per-prompt generate loop"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--peers", default="batched,loop")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--out", default=None, help="JSON results (default bench/results/generate[-MODEL].json)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        work = Path(args.workdir)
        if args.one == "steer":
            result = run_steer(args.model, work / "prompts.jsonl", work / "out.jsonl", args.max_new_tokens, args.batch_size,
                               args.dtype)
        else:
            result = run_peer(args.model, work / "prompts.jsonl", args.max_new_tokens,
                              args.batch_size if args.one == "batched" else 1, args.dtype)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    import torch

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_prompts(Path(tmp) / "prompts.jsonl", args.prompts, steered=template_kind(args.model) is not None)
        for kind in ("steer", *[p for p in args.peers.split(",") if p]):
            proc = subprocess.run([sys.executable, __file__, "--one", kind, "--workdir", tmp, "--model", args.model,
                                   "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
                                   "--dtype", args.dtype],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{kind} failed:\n{proc.stderr[-4000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            results[kind] = r
        start = time.perf_counter()
        chosen = ["--template", template_kind(args.model)] if template_kind(args.model) else []
        one = subprocess.run([sys.executable, "-m", "steer", "generate", args.model, "Tell me a story about a dog", *chosen,
                              "--temperature", "0", "--max-new-tokens", str(args.max_new_tokens), "--json"],
                             capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        end_to_end = time.perf_counter() - start
        if one.returncode != 0:
            sys.exit(f"steer generate failed:\n{one.stderr[-2000:]}")
    ratios = {f"steer_over_{k}": results["steer"]["tokens_per_s"] / r["tokens_per_s"] for k, r in results.items() if k != "steer"}
    out = {"model": args.model, "results": results, **ratios, "generate_end_to_end_s": end_to_end, "prompts": args.prompts,
           "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "date": time.strftime("%Y-%m-%d"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}}
    print(f"{'':26}{'output tok/s':>14}{'tokens':>9}{'seconds':>9}{'peak RSS MB':>13}")
    for kind, r in results.items():
        print(f"{NAMES[kind]:26}{r['tokens_per_s']:>14,.0f}{r['tokens']:>9,}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13,.0f}")
    print("  ".join(f"{k.replace('_over_', ' / ')}: {v:.2f}x" for k, v in ratios.items())
          + f"; steer generate end to end: {end_to_end:.1f} s; chat time to first token: "
          f"{results['steer']['chat_first_token_s']:.3f} s; output lengths {results['steer']['lengths']}")
    name = "generate" if args.model == str(MODEL) else f"generate-{Path(args.model).name}"
    path = Path(args.out or ROOT / "bench/results" / f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
