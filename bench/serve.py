"""Benchmark: `steer serve` (hf engine) under load vs the same requests one at a time in process, same run.

A real server on loopback with ../shared/assets/models/stories260k (SteerLM format); N requests from C
concurrent clients through the official `openai` client, each steered (verbosity cycles 0-4), greedy,
max_tokens fixed. Reports failures, requests/s, p50/p95 latency, and the ratio of throughput to the
peer: the same requests through `HFEngine.generate` one at a time (no HTTP, no batching).

    python bench/serve.py [--requests 200] [--clients 16] [--max-tokens 32] [--out bench/results/serve.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = ROOT.parent / "shared/assets/models/stories260k"
TOPICS = ("a dog", "the sea", "a small robot", "two friends", "a rainy day", "a lost key", "the moon", "a garden")


def prompts(n: int) -> list[tuple[str, int]]:
    return [(f"Tell me a story about {TOPICS[i % len(TOPICS)]}", i % 5) for i in range(n)]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def run_server(items: list[tuple[str, int]], clients: int, max_tokens: int) -> dict:
    from openai import OpenAI

    from tests.test_serve import _start

    proc, base = _start(str(MODEL), "--max-tokens", str(max_tokens), "--max-queue", str(max(64, clients * 2)))
    client = OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
    failures: list[str] = []

    def one(item: tuple[str, int]) -> tuple[float, int]:
        start = time.perf_counter()
        try:
            out = client.chat.completions.create(model="stories260k", messages=[{"role": "user", "content": item[0]}],
                                                 temperature=0, max_tokens=max_tokens,
                                                 extra_body={"steer": {"attributes": {"verbosity": item[1]}}})
            if out.choices[0].finish_reason not in ("stop", "length"):
                failures.append("incomplete")
            return time.perf_counter() - start, out.usage.completion_tokens
        except Exception as err:  # noqa: BLE001 - counted, reported
            failures.append(type(err).__name__)
            return time.perf_counter() - start, 0

    try:
        one(items[0])  # warm-up
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, items))
        seconds = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(60)
    latencies = [r[0] for r in results]
    return {"seconds": seconds, "requests_per_s": len(items) / seconds, "failures": len(failures),
            "p50_s": statistics.median(latencies), "p95_s": pct(latencies, 0.95),
            "completion_tokens": sum(r[1] for r in results), "tokens_per_s": sum(r[1] for r in results) / seconds}


def run_sequential(items: list[tuple[str, int]], max_tokens: int) -> dict:
    from steer.engines.base import Sampling
    from steer.engines.load import load_engine
    from steer.steering import Steering, steering_prompt

    engine = load_engine(str(MODEL), template="steerlm")
    sampling = Sampling(temperature=0, max_new_tokens=max_tokens)
    texts = [steering_prompt(engine.template, [{"role": "user", "content": p}], Steering({"verbosity": v})) for p, v in items]
    engine.generate(texts[:1], sampling)
    latencies, tokens = [], 0
    start = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        tokens += engine.generate([text], sampling)[0].completion_tokens
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "requests_per_s": len(items) / seconds, "p50_s": statistics.median(latencies),
            "p95_s": pct(latencies, 0.95), "completion_tokens": tokens, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "bench/results/serve.json"))
    args = parser.parse_args()
    if not MODEL.is_dir():
        sys.exit(f"missing {MODEL} (the shared assets)")
    items = prompts(args.requests)
    server = run_server(items, args.clients, args.max_tokens)
    sequential = run_sequential(items, args.max_tokens)
    import torch

    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
              "requests": args.requests, "clients": args.clients, "max_tokens": args.max_tokens,
              "server": server, "sequential_in_process": sequential,
              "throughput_ratio": server["requests_per_s"] / sequential["requests_per_s"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'':28}{'req/s':>8}{'p50 s':>8}{'p95 s':>8}{'tok/s':>8}{'failed':>8}")
    for name, r in (("steer serve (16 clients)", server), ("sequential, in process", sequential)):
        print(f"{name:28}{r['requests_per_s']:8.1f}{r['p50_s']:8.3f}{r['p95_s']:8.3f}{r['tokens_per_s']:8.0f}"
              f"{r.get('failures', 0):8d}")
    print(f"throughput ratio (server / sequential): {result['throughput_ratio']:.2f}x  -> {args.out}")


if __name__ == "__main__":
    main()
