"""Benchmark: what a steering vector costs at generation time. The same model, prompts and greedy
decoding, batched (16 prompts, one engine call): steer's hf engine without a vector, with one vector
for every row, and with a different vector and coefficient per row (what a server batch mixes); and
the peer a user writes by hand today (the steering-vectors / repeng recipe): one forward hook adding
the vector at every position, around batched ``model.generate`` with left padding (one vector for the
whole batch: it cannot mix them). Vectors are tiny (norm 1e-3), so every side decodes the same tokens
and output tokens per second compare like with like. Medians over ``--repeats``.

    python bench/vectors.py [--model smollm2-135m-instruct] [--prompts 16] [--max-new-tokens 48] [--repeats 3]
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

PROMPTS = ["Explain how a bicycle stays upright.", "Write a short poem about the sea.", "What is photosynthesis?",
           "Give three tips for learning a language.", "Why is the sky blue?", "Describe a cat to a child.",
           "How do vaccines work?", "Summarise the plot of Cinderella."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench/results/vectors.json"))
    args = parser.parse_args()

    import torch

    from steer import vectors
    from steer.engines.base import Prompt, Sampling
    from steer.engines.load import load_engine
    from steer.steering import Steering, steering_prompt

    torch.set_num_threads(os.cpu_count() or 1)
    engine = load_engine(args.model)
    model, tok = engine.model, engine.tokenizer
    hidden, n_layers = model.config.hidden_size, model.config.num_hidden_layers
    g = torch.Generator().manual_seed(0)
    texts = [steering_prompt(engine.template, [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], Steering()).text
             for i in range(args.prompts)]
    sampling = Sampling(temperature=0.0, max_new_tokens=args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k in range(2):
            v = torch.randn(hidden, generator=g)
            files.append(str(vectors.save(vectors.SteeringVector({n_layers // 2: 1e-3 * v / v.norm()}),
                                          Path(tmp) / f"v{k}.safetensors")))
        one = [Prompt(t, (), ((files[0], 1.0),)) for t in texts]
        mixed = [Prompt(t, (), ((files[i % 2], 0.5 + i),)) for i, t in enumerate(texts)]

        def steer_side(prompts: list) -> tuple[float, int]:
            start = time.perf_counter()
            out = engine.generate(prompts, sampling)
            return time.perf_counter() - start, sum(r.completion_tokens for r in out)

        delta = vectors.load(files[0]).layers[n_layers // 2]
        layer = vectors.decoder_layers(model)[n_layers // 2]

        def peer() -> tuple[float, int]:  # a hand-written hook at every position around model.generate
            def add(module, args, output):  # noqa: ANN001, ANN202
                hidden_states = output[0] if isinstance(output, tuple) else output
                hidden_states = hidden_states + delta.to(hidden_states.dtype)
                return (hidden_states, *output[1:]) if isinstance(output, tuple) else hidden_states

            handle = layer.register_forward_hook(add)
            tok.padding_side = "left"
            try:
                start = time.perf_counter()
                enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                with torch.inference_mode():
                    gen = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False,
                                         pad_token_id=tok.pad_token_id)
                seconds = time.perf_counter() - start
            finally:
                handle.remove()
            new = gen[:, enc["input_ids"].shape[1]:]
            ends = {tok.eos_token_id, tok.pad_token_id} - {None}
            tokens = sum(next((k for k, t in enumerate(row.tolist()) if t in ends), len(row)) for row in new)
            return seconds, tokens

        sides = {"steer, no vector": lambda: steer_side(texts), "steer, one vector": lambda: steer_side(one),
                 "steer, a vector per row": lambda: steer_side(mixed), "hand-written hook + generate": peer}
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in sides}
        steer_side(texts[:2])  # warm-up
        for _ in range(args.repeats):
            for name, fn in sides.items():
                runs[name].append(fn())
    rows = {}
    for name, got in runs.items():
        rate = statistics.median(t / s for s, t in got)
        rows[name] = {"tokens_per_s": round(rate, 1), "seconds": round(statistics.median(s for s, _ in got), 3),
                      "tokens": got[0][1]}
    base = rows["steer, no vector"]["tokens_per_s"]
    for row in rows.values():
        row["vs_no_vector"] = round(row["tokens_per_s"] / base, 3)
    result = {"model": args.model, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
              "layer": n_layers // 2, "repeats": args.repeats, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform()},
              "date": time.strftime("%Y-%m-%d")}
    print(f"{'side':32} {'tokens/s':>9} {'tokens':>7} {'vs no vector':>13}")
    for name, row in rows.items():
        print(f"{name:32} {row['tokens_per_s']:9.1f} {row['tokens']:7d} {row['vs_no_vector']:13.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
