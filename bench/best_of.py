"""Benchmark: best-of-N sampling, N candidates per prompt in one batched engine call (what
``steer generate --best-of N`` does) vs N sequential calls (what a loop over ``generate`` does), and
``steer batch --best-of N`` (several prompts' candidates decoded together) on the same prompts.

The same model, prompts, sampling (temperature 1, seeded) and max_new_tokens; the judge is ``length``
(a judge costs the same on both sides, so it is left out of the comparison). Reports candidates per
second and output tokens per second, medians over ``--repeats``. ``--model`` takes a folder or an alias:
smollm2-135m-instruct (pulled by scripts/bootstrap.sh) by default, or the tiny stories260k.

    python bench/best_of.py [--model M] [--prompts 8] [--n 4] [--max-new-tokens 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from generate import template_kind, write_prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench/results/best_of.json"))
    args = parser.parse_args()

    import torch

    from steer.engines.base import Sampling
    from steer.engines.load import load_engine
    from steer.generate.api import request
    from steer.generate.batch import iter_jobs, run_batch
    from steer.generate.best_of import BestOf
    from steer.evaluate.judges import make_judge

    torch.set_num_threads(os.cpu_count() or 1)
    engine = load_engine(args.model, template=template_kind(args.model))
    sampling = Sampling(temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    judge, names = make_judge("length")
    best = BestOf(args.n, judge, names[0], spec={"n": args.n, "judge": "length"})
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "p.jsonl"
        write_prompts(prompts, args.prompts, steered=template_kind(args.model) == "steerlm")
        rows = [json.loads(line) for line in prompts.read_text().splitlines()]
        reqs = [request(engine, r["prompt"], sampling=sampling) for r in rows]
        engine.generate([reqs[0].prompt], sampling)  # warm-up

        def batched() -> int:
            return sum(r.completion_tokens for q in reqs for r in engine.generate([q.prompt] * args.n, sampling, slots=args.n))

        def sequential() -> int:
            return sum(engine.generate([q.prompt], sampling)[0].completion_tokens for q in reqs for _ in range(args.n))

        def batch_job() -> int:
            out = Path(tmp) / f"out-{time.perf_counter_ns()}.jsonl"
            jobs = iter_jobs(prompts, engine.template.schema, {})
            run_batch(engine, jobs, out, sampling, batch_size=args.n * 4, best=best)
            return sum(c["completion_tokens"] for line in out.read_text().splitlines()
                       for c in json.loads(line)["best_of"]["candidates"])

        results = {}
        for name, fn in (("one call per prompt (generate --best-of)", batched),
                         ("N sequential calls", sequential), ("steer batch --best-of", batch_job)):
            times, tokens = [], 0
            for _ in range(args.repeats):
                start = time.perf_counter()
                tokens = fn()
                times.append(time.perf_counter() - start)
            sec = statistics.median(times)
            results[name] = {"seconds": sec, "candidates_per_s": args.prompts * args.n / sec, "tokens": tokens,
                             "tokens_per_s": tokens / sec}
    base = results["N sequential calls"]["candidates_per_s"]
    print(f"model {args.model}, {args.prompts} prompts x {args.n} candidates, {args.max_new_tokens} new tokens, "
          f"temperature 1, median of {args.repeats}")
    print(f"{'run':42}{'cand/s':>9}{'tok/s':>9}{'vs sequential':>15}")
    for name, r in results.items():
        print(f"{name:42}{r['candidates_per_s']:>9.2f}{r['tokens_per_s']:>9.0f}{r['candidates_per_s'] / base:>14.2f}x")
    import transformers

    out = {"model": args.model, "prompts": args.prompts, "n": args.n, "max_new_tokens": args.max_new_tokens,
           "repeats": args.repeats, "results": results, "date": time.strftime("%Y-%m-%d"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "transformers": transformers.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
