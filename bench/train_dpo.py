"""Benchmark: DPO throughput and memory of steer vs TRL's DPOTrainer, at two model shapes, same run.

The shapes of ``bench/train_sft.py`` (``realistic``: 42.1 M parameters, the 32k Mistral v1 tokenizer;
``tiny``: 7.5 M, the 50k GPT-2 tokenizer). The same preference pairs for every trainer: a prompt of
80-300 words and two answers of 100-400 words each (the proportions of HelpSteer2's preference
subset), rendered by steer's SteerLM template; TRL gets the rendered prompt text and the two answer
texts (TRL always tokenizes text itself), so both train on the same text with about the same token
counts. Sigmoid DPO, beta 0.1, the same pairs per step, AdamW lr 1e-6 constant (the loss stays near
log 2: the speed of a step does not depend on it).

Trainers, each in its own process (clean peak memory):

- ``steer``: `steer.train.train` with ``kind: dpo`` (chosen and rejected of a batch in one padding-free
  packed forward with per-example attention, log-probabilities fused with the LM head at the answer
  positions only), the reference log-probabilities precomputed in one pass before training, float32;
- ``steer-bf16``: the same with ``train.mixed_precision: bf16`` (autocast over float32 weights);
- ``trl-default``: `trl.DPOTrainer` as it comes on CPU (a frozen reference copy, bf16 autocast,
  gradient checkpointing, chosen and rejected padded to the batch's longest sequence);
- ``trl-best``: TRL at its best here: ``precompute_ref_log_probs=True`` (no reference copy),
  gradient checkpointing off, bf16 autocast (TRL 1.16's ``padding_free`` is disabled for DPO);
- ``trl-best-fp32``: the same in float32 (like for like with ``steer``).

Useful tokens are non-padding tokens of both sequences of every pair, counted after warm-up steps.
Peak RSS is the process's. The end-to-end time (loading, tokenizing, the reference pass, every
step) is reported beside the step throughput: precomputing is a cost steer and TRL both pay once.

    python bench/train_dpo.py [--shapes realistic,tiny] [--trainers steer,...] [--pairs-per-step 4]
        [--steps 8] [--warmup 2] [--timeout 1800] [--out bench/results/train_dpo.json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from data_prepare import text  # noqa: E402
from train_sft import SHAPES, machine, matmul_flops, parameters, subprocess_json, timing_callback  # noqa: E402

TRAINERS = ("steer", "steer-bf16", "trl-default", "trl-best", "trl-best-fp32")
MAX_LENGTH = 1024
BETA = 0.1


def make_pairs(path: Path, n: int, seed: int = 0) -> None:
    """``n`` canonical preference pairs of HelpSteer2-preference proportions."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for k in range(n):
            pair = {"type": "preference", "id": f"b{k}", "axis": "helpfulness",
                    "prompt": [{"role": "user", "content": text(rng, rng.randint(80, 300))}],
                    "chosen": text(rng, rng.randint(100, 400)), "rejected": text(rng, rng.randint(100, 400))}
            handle.write(json.dumps(pair) + "\n")


def recipe(shape: str, data: Path, cache: Path, out: Path, steps: int, pairs: int, bf16: bool) -> dict:
    spec = SHAPES[shape]
    return {"kind": "dpo", "model": {"from_scratch": spec["model"], "tokenizer": str(spec["tokenizer"]), "dtype": "float32"},
            "template": {"kind": "steerlm", "schema": "helpsteer"},
            "data": {"sources": [{"path": str(data), "format": "steer"}], "max_length": MAX_LENGTH,
                     "cache_dir": str(cache)},
            "dpo": {"loss": "sigmoid", "beta": BETA, "reference": "precompute"},
            "train": {"method": "full", "max_steps": steps, "batch_size": pairs, "learning_rate": 1e-6,
                      "lr_scheduler": "constant", "save_steps": 10_000, "logging_steps": 1, "seed": 0,
                      "output_dir": str(out), **({"mixed_precision": "bf16"} if bf16 else {})}}


def trl_rows(cfg, data: Path) -> list[dict]:
    """The pairs as TRL takes them: steer's rendered prompt text, then each answer's text (with SteerLM's
    end-of-turn marker, which steer's loss covers too)."""
    from steer.data.loader import load
    from steer.runs import load_tokenizer
    from steer.train.tasks import sft

    template = sft.TASK.template(cfg, load_tokenizer(cfg.model.tokenizer))
    rows = []
    for pair in load(data, format="steer")[0]:
        sides = []
        for conv in pair.sides():
            full, spans = template.training(conv.chat())
            sides.append((full[: spans[-1][0]], full[spans[-1][0]: spans[-1][1]]))
        rows.append({"prompt": sides[0][0], "chosen": sides[0][1], "rejected": sides[1][1]})
    return rows


def trl_dpo_trainer(kind: str, cfg, data: Path, out: Path, steps: int, pairs: int, callbacks: list):
    """TRL's DPOTrainer in one of its configurations (see the module docstring)."""
    import datasets
    import torch
    import transformers
    from trl import DPOConfig, DPOTrainer

    from steer.train.model import load_base

    tok = transformers.AutoTokenizer.from_pretrained(cfg.model.tokenizer)
    if tok.eos_token is None:  # the GPT-2 asset is a bare tokenizer.json
        tok.eos_token = "<|endoftext|>"
    tok.pad_token = tok.pad_token or tok.eos_token
    transformers.set_seed(0)
    model = load_base(cfg.model, packing=False)
    if kind == "trl-default":  # TRL loads its reference copy from the policy's path: give it one
        model.save_pretrained(out / "init")
        model.config._name_or_path = str(out / "init")
    settings = ({} if kind == "trl-default" else
                {"precompute_ref_log_probs": True, "gradient_checkpointing": False, "bf16": kind == "trl-best"})
    args = DPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=pairs, learning_rate=1e-6,
                     lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[], beta=BETA,
                     use_cpu=not torch.cuda.is_available(), seed=0, max_length=MAX_LENGTH, disable_tqdm=True,
                     include_num_input_tokens_seen="non_padding", dataset_num_proc=1, **settings)
    ds = datasets.Dataset.from_list(trl_rows(cfg, data))
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=callbacks)
    return trainer, {"reference": "precompute" if args.precompute_ref_log_probs else "model copy",
                     "gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16, "padded": True}


def run_one(kind: str, shape: str, workdir: Path, steps: int, warmup: int, pairs: int) -> dict:
    """Train with one trainer in this process; return throughput, end-to-end time and peak memory."""
    import torch

    from steer.config import validate_recipe

    start = time.perf_counter()
    torch.manual_seed(0)
    record: dict = {}
    cfg = validate_recipe(recipe(shape, workdir / "pairs.jsonl", workdir / f"cache-{shape}-{kind}",
                                 workdir / f"{shape}-{kind}", steps, pairs, bf16=kind == "steer-bf16"), kind="dpo")
    timer = timing_callback(warmup, record)
    settings = {"reference": "precompute", "gradient_checkpointing": False, "bf16": kind == "steer-bf16",
                "padded": False}
    if kind.startswith("steer"):
        from steer.train import train

        train(cfg, callbacks=[timer])
    else:
        trainer, settings = trl_dpo_trainer(kind, cfg, workdir / "pairs.jsonl", workdir / f"{shape}-{kind}", steps,
                                            pairs, [timer])
        trainer.train()
    seconds, tokens = record["t1"] - record["t0"], record["tok1"] - record["tok0"]
    return {"trainer": kind, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "tokens_per_step": tokens / record["steps"], "steps_timed": record["steps"], "settings": settings,
            "end_to_end_s": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def summarise(results: dict, params: int, flops: dict) -> dict:
    """Throughput and memory ratios against the TRL peers, and steer's share of the matmul bound."""
    ok = {k: r for k, r in results.items() if "tokens_per_s" in r}
    rate = lambda k: ok[k]["tokens_per_s"] if k in ok else None  # noqa: E731
    rss = lambda k: ok[k]["peak_rss_mb"] if k in ok else None  # noqa: E731
    div = lambda a, b: a / b if a and b else None  # noqa: E731
    best = lambda prefix: max((k for k in ok if k.startswith(prefix)), key=rate, default=None)  # noqa: E731
    best_trl, best_steer = best("trl"), best("steer")
    bound = flops["float32"] / (6 * params)
    return {"best_trl": best_trl, "best_steer": best_steer,
            "steer_best_over_trl_best": div(rate(best_steer), rate(best_trl)),
            "steer_over_trl_best_fp32": div(rate("steer"), rate("trl-best-fp32")),
            "steer_bf16_over_trl_best": div(rate("steer-bf16"), rate("trl-best")),
            "steer_over_trl_default": div(rate("steer"), rate("trl-default")),
            "rss_steer_best_over_trl_best": div(rss(best_steer), rss(best_trl)),
            "rss_steer_over_trl_best_fp32": div(rss("steer"), rss("trl-best-fp32")),
            "rss_steer_over_trl_default": div(rss("steer"), rss("trl-default")),
            "fp32_bound_tokens_per_s": bound, "steer_fraction_of_fp32_bound": div(rate("steer"), bound)}


def render(shape: str, block: dict) -> None:
    print(f"\n== {shape}: {block['parameters']:,} parameters")
    print(f"{'trainer':15}{'useful tok/s':>14}{'tok/step':>10}{'end-to-end s':>14}{'peak RSS MB':>13}")
    for kind, r in block["results"].items():
        if "error" in r:
            print(f"{kind:15}  {r['error']}")
            continue
        print(f"{kind:15}{r['tokens_per_s']:>14,.0f}{r['tokens_per_step']:>10,.0f}{r['end_to_end_s']:>14,.0f}"
              f"{r['peak_rss_mb']:>13,.0f}")
    for key, value in block["summary"].items():
        if isinstance(value, float):
            print(f"{key}: {value:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="realistic,tiny")
    parser.add_argument("--trainers", default=",".join(TRAINERS))
    parser.add_argument("--pairs-per-step", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per trainer before it counts as not finished")
    parser.add_argument("--out", default=str(ROOT / "bench/results/train_dpo.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.shape, Path(args.workdir), args.steps, args.warmup, args.pairs_per_step)))
        return

    shapes, trainers = args.shapes.split(","), args.trainers.split(",")
    unknown = [s for s in shapes if s not in SHAPES] + [t for t in trainers if t not in TRAINERS]
    if unknown:
        sys.exit(f"unknown shape or trainer: {', '.join(unknown)}")
    flops = {"float32": matmul_flops()}
    out: dict = {"shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # exactly the pairs the run trains on: every trainer's reference pass covers the same data
        make_pairs(Path(tmp) / "pairs.jsonl", args.steps * args.pairs_per_step, seed=1)
        for shape in shapes:
            common = ["--shape", shape, "--workdir", tmp, "--steps", str(args.steps), "--warmup", str(args.warmup),
                      "--pairs-per-step", str(args.pairs_per_step)]
            results = {kind: subprocess_json(["--one", kind, *common], args.timeout, script=__file__)
                       for kind in trainers}
            block = {"results": results, "parameters": parameters(shape), "model": SHAPES[shape]["model"],
                     "tokenizer": SHAPES[shape]["tokenizer"].name}
            block["summary"] = summarise(results, block["parameters"], flops)
            out["shapes"][shape] = block
            render(shape, block)
    flops["float32"] = max(flops["float32"], matmul_flops())  # the higher rate: the conservative fraction
    out.update({"matmul_flops": flops, "pairs_per_step": args.pairs_per_step, "steps": args.steps,
                "warmup": args.warmup, "max_length": MAX_LENGTH, "beta": BETA, "date": time.strftime("%Y-%m-%d"),
                "machine": machine()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
