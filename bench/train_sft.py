"""Benchmark: SFT throughput of steer vs TRL's SFTTrainer (default, and with its own packing), same run.

One tiny Llama (tied embeddings, GPT-2 tokenizer from ../shared/assets), the same HelpSteer-shaped,
variable-length examples (rendered and tokenized once by `steer data prepare`, so every trainer sees
the same token ids), the same optimiser settings and about the same tokens per step:

- steer: `steer.train.train` (padding-free packing, per-example SDPA);
- trl-default: `trl.SFTTrainer` with its defaults (a batch padded to its longest example);
- trl-packing: `SFTConfig(packing=True)` (best-fit-decreasing packing into max_length rows).

Each trainer runs in its own process (clean peak memory). Useful tokens are non-padding tokens;
throughput is measured after warm-up steps. The matmul bound is 6 x parameters x tokens over the
fp32 matmul FLOP/s measured in the same run.

    python bench/train_sft.py [--rows 400] [--steps 14] [--warmup 4] [--out bench/results/train_sft.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOKENIZER = ROOT.parent / "shared/assets/tokenizers/gpt2"
MODEL = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 50304, "max_position_embeddings": 1024,
         "tie_word_embeddings": True}
MAX_LENGTH = 1024
EXAMPLES_PER_STEP = 8


def recipe(data: Path, cache: Path, out: Path, steps: int) -> dict:
    return {"model": {"from_scratch": MODEL, "tokenizer": str(TOKENIZER)},
            "data": {"sources": [{"path": str(data), "format": "helpsteer"}], "max_length": MAX_LENGTH,
                     "cache_dir": str(cache)},
            "train": {"method": "full", "max_steps": steps, "batch_size": EXAMPLES_PER_STEP, "learning_rate": 1e-3,
                      "lr_scheduler": "constant", "save_steps": 10_000, "logging_steps": 1, "seed": 0,
                      "output_dir": str(out)}}


def timing_callback(warmup: int, record: dict):
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                record["t0"], record["tok0"] = time.perf_counter(), state.num_input_tokens_seen
            if state.global_step > warmup:
                record["t1"], record["tok1"] = time.perf_counter(), state.num_input_tokens_seen
                record["steps"] = state.global_step - warmup

    return Timer()


def run_one(kind: str, workdir: Path, steps: int, warmup: int) -> dict:
    """Train with one trainer in this process; return throughput and peak memory."""
    import torch

    from steer.config import validate_recipe

    torch.manual_seed(0)
    record: dict = {}
    cfg = validate_recipe(recipe(workdir / "data.jsonl", workdir / "cache", workdir / kind, steps))
    if kind == "steer":
        from steer.train import train

        train(cfg, callbacks=[timing_callback(warmup, record)])
    else:
        import datasets
        import transformers
        from trl import SFTConfig, SFTTrainer

        from steer.train import prepare
        from steer.train.model import load_base

        ds = datasets.load_from_disk(str(prepare(cfg).path)).select_columns(["input_ids"])
        tok = transformers.AutoTokenizer.from_pretrained(str(TOKENIZER))
        tok.eos_token = tok.pad_token = "<|endoftext|>"  # the asset has a bare tokenizer.json
        transformers.set_seed(0)
        model = load_base(cfg.model, packing=False)
        packing = kind == "trl-packing"
        # about the same tokens per step: packed rows are max_length long, padded examples ~ the mean length
        mean = statistics.mean(len(x) for x in ds["input_ids"])
        batch = max(1, round(EXAMPLES_PER_STEP * mean / MAX_LENGTH)) if packing else EXAMPLES_PER_STEP
        args = SFTConfig(output_dir=str(workdir / kind), max_steps=steps, per_device_train_batch_size=batch,
                         learning_rate=1e-3, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                         report_to=[], use_cpu=True, seed=0, max_length=MAX_LENGTH, packing=packing,
                         include_num_input_tokens_seen="non_padding", disable_tqdm=True, dataset_num_proc=1)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[timing_callback(warmup, record)])
        trainer.train()
        record["batch"] = batch
    seconds = record["t1"] - record["t0"]
    tokens = record["tok1"] - record["tok0"]
    return {"trainer": kind, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "steps_timed": record["steps"], "batch": record.get("batch", EXAMPLES_PER_STEP),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def matmul_flops(n: int = 1024, repeats: int = 20, rounds: int = 3) -> float:
    """fp32 matmul FLOP/s of an n x n product on this machine: the best of ``rounds`` medians (a
    single reading on this VM has come out 40% low)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return 2 * n**3 / min(medians)


def parameters() -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(MODEL)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec))
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "bench/results/train_sft.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, Path(args.workdir), args.steps, args.warmup)))
        return
    import torch

    from data_prepare import make_rows

    flops_before = matmul_flops()  # measured before and after the runs: the machine drifts, the faster one counts
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_rows(work / "data.jsonl", args.rows, seed=1)
        results = {}
        for kind in ("steer", "trl-default", "trl-packing"):
            proc = subprocess.run([sys.executable, __file__, "--one", kind, "--workdir", tmp, "--steps", str(args.steps),
                                   "--warmup", str(args.warmup)], capture_output=True, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            if proc.returncode != 0:
                sys.exit(f"{kind} failed:\n{proc.stderr[-4000:]}")
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    flops_after = matmul_flops()
    flops = max(flops_before, flops_after)  # the higher bound: the conservative fraction
    params = parameters()
    bound = flops / (6 * params)
    steer = results["steer"]["tokens_per_s"]
    summary = {"steer_over_trl_default": steer / results["trl-default"]["tokens_per_s"],
               "steer_over_trl_packing": steer / results["trl-packing"]["tokens_per_s"],
               "matmul_flops": flops, "matmul_flops_before_after": [flops_before, flops_after], "parameters": params, "bound_tokens_per_s": bound,
               "steer_fraction_of_bound": steer / bound}
    import trl
    import transformers

    out = {"results": results, **summary, "rows": args.rows, "steps": args.steps, "warmup": args.warmup,
           "model": MODEL, "max_length": MAX_LENGTH,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "transformers": transformers.__version__, "trl": trl.__version__}}
    print(f"{'trainer':14}{'useful tok/s':>14}{'batch':>7}{'peak RSS MB':>13}")
    for kind, r in results.items():
        print(f"{kind:14}{r['tokens_per_s']:>14,.0f}{r['batch']:>7}{r['peak_rss_mb']:>13,.0f}")
    print(f"steer / trl-default: {summary['steer_over_trl_default']:.2f}x (target >= 1.3)")
    print(f"steer / trl-packing: {summary['steer_over_trl_packing']:.2f}x (target >= 1.0)")
    print(f"matmul bound: {bound:,.0f} tok/s ({params:,} params, {flops / 1e9:.1f} GFLOP/s fp32, the faster of "
          f"{flops_before / 1e9:.1f} before and {flops_after / 1e9:.1f} after); "
          f"steer at {100 * summary['steer_fraction_of_bound']:.0f}% (target >= 70%)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
