"""Benchmark on one GPU, in one call: SFT (bf16, full weights and LoRA) steer vs TRL at Llama 1B and 8B
shapes, and generation (steer batch vs batched model.generate), with MFU against the bf16 matmul rate
measured in the same call.

Models are built from config with random weights (no download), saved once in bf16 with the Llama 3
tokenizer, and then loaded by every trainer, each in its own process (clean GPU memory); the data
are the HelpSteer-shaped rows of ``bench/data_prepare.py``, rendered and tokenized by steer, so both
trainers see the same ids. steer trains padding-free with SDPA per example (flash-attn when
installed) and its fused LM-head loss; TRL runs as at its best in ``bench/train_sft.py`` (packing with
padding_free, gradient checkpointing off). MFU counts 6 x parameters per token for full weights and 4 x
for LoRA (a frozen base needs no weight gradients), over the measured bf16 matmul FLOP/s.

Every run has a deadline inside ``--budget`` seconds and results are written after each run, so a
call that is cut short still leaves what it measured. ``--tiny`` runs the same code on CPU with a
tiny shape in a minute or two (the test suite does, so the script does not rot).

On the GPU machine (torch, transformers, peft and accelerate there; no datasets, pydantic or TRL, and
no package index), prepare here with ``bash bench/gpu_prepare.sh`` (wheels into .whl, the tokenizer
into .gpu), then run it in one call:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
    python3 bench/gpu.py --tokenizer .gpu/llama3 --out $OUT/gpu.json

    python bench/gpu.py [--tiny] [--tokenizer DIR] [--budget 450] [--out bench/results/gpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LLAMA3 = {"model_type": "llama", "vocab_size": 128256, "num_key_value_heads": 8, "rope_theta": 500000.0,
          "max_position_embeddings": 8192, "bos_token_id": 128000, "eos_token_id": 128001}
SHAPES = {
    "llama-1b": {**LLAMA3, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                 "num_attention_heads": 32, "tie_word_embeddings": True},
    "llama-8b": {**LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "tie_word_embeddings": False},
    "tiny": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
             "tie_word_embeddings": True},
}
GPU_RUNS = [("llama-1b", "full"), ("llama-1b", "lora"), ("llama-8b", "lora")]
TINY_RUNS = [("tiny", "full"), ("tiny", "lora")]


def matmul_flops(device: str, n: int, dtype: str) -> float:
    """Matmul FLOP/s of an n x n product: the median of 10 after 3 warm-ups."""
    import statistics

    import torch

    a = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    b = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    times = []
    for i in range(13):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def build_model(shape: str, tokenizer: str, folder: Path, dtype: str) -> dict:
    """A random-weight model of ``shape`` saved in ``folder`` with the tokenizer; its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    spec = dict(SHAPES[shape])
    spec.setdefault("vocab_size", len(tok))
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialised where it is made: an 8B model on CPU takes minutes
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return {"parameters": sum(p.numel() for p in model.parameters())}


def train_one(trainer: str, shape: str, method: str, work: Path, steps: int, warmup: int, dtype: str) -> dict:
    """One SFT run in this process: useful tokens/s after ``warmup`` steps, and peak memory."""
    import torch

    from steer.config import validate_recipe
    from train_sft import make_recipe, timing_callback, trl_sft_trainer

    record: dict = {}
    folder = work / "models" / shape
    out = work / f"{trainer}-{shape}-{method}"
    cfg = validate_recipe(make_recipe(str(folder), str(folder), work / "data.jsonl", work / "cache", out, steps,
                                      method=method, dtype=dtype, max_length=2048))
    timer = timing_callback(warmup, record)
    if trainer == "steer":
        from steer.train import train

        train(cfg, callbacks=[timer])
    else:
        trl, _, _ = trl_sft_trainer("trl-best", cfg, str(folder), out, steps, [timer], lora=method == "lora")
        trl.train()
    tokens, seconds = record["tok1"] - record["tok0"], record["t1"] - record["t0"]
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "steps_timed": record["steps"],
            "peak_gpu_mb": gpu, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class Deadline:
    """Seconds left of the call's budget; each child gets what is left (and at most ``cap``)."""

    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self, cap: float) -> float:
        return max(0.0, min(cap, self.end - time.monotonic()))


def mfu(result: dict, params: int, method: str, flops: float) -> float | None:
    per_token = (6 if method == "full" else 4) * params
    return result["tokens_per_s"] * per_token / flops if "tokens_per_s" in result else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the same code on CPU at a tiny shape (the test suite)")
    parser.add_argument("--tokenizer", default=str(ROOT.parent / "shared/assets/tokenizers/llama3"))
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--budget", type=float, default=450, help="seconds for the whole call")
    parser.add_argument("--out", default=str(ROOT / "bench/results/gpu.json"))
    parser.add_argument("--one", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        verb, *rest = args.one
        work = Path(rest[-1])
        result = (build_model(rest[0], args.tokenizer, work / "models" / rest[0], rest[1]) if verb == "build"
                  else train_one(verb, rest[0], rest[1], work, int(rest[2]), int(rest[3]), rest[4]))
        print(json.dumps(result))
        return
    import torch

    from data_prepare import make_rows
    from functools import partial

    from train_sft import subprocess_json

    child = partial(subprocess_json, script=__file__)  # a fresh process per run: its JSON, or an error

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        sys.exit("no CUDA GPU here: run with --tiny for the CPU check, or on the GPU machine (see the docstring)")
    deadline = Deadline(args.budget)
    device, dtype = ("cuda", "bfloat16") if cuda else ("cpu", "float32")
    runs = TINY_RUNS if args.tiny else GPU_RUNS
    steps, warmup = (3, 1) if args.tiny else (12, 4)
    flops = matmul_flops(device, 8192 if cuda else 512, dtype)
    out: dict = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu", "dtype": dtype,
                 "matmul_flops": flops, "date": time.strftime("%Y-%m-%d"), "models": {}, "train": {}, "generate": {},
                 "machine": {"torch": torch.__version__, "cuda": torch.version.cuda, "platform": platform.platform()}}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save = lambda: path.write_text(json.dumps(out, indent=2))  # noqa: E731  after every run: a cut call keeps its figures
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_rows(work / "data.jsonl", args.rows, seed=1)
        common = ["--tokenizer", args.tokenizer]
        for shape in dict.fromkeys(s for s, _ in runs):
            out["models"][shape] = child([*common, "--one", "build", shape, dtype, tmp], deadline.left(180))
            save()
        for shape, method in runs:
            params = out["models"][shape].get("parameters", 0)
            for trainer in ("steer", "trl"):
                result = child([*common, "--one", trainer, shape, method, str(steps), str(warmup), dtype, tmp],
                               deadline.left(240))
                result["mfu"] = mfu(result, params, method, flops)
                out["train"][f"{trainer} {shape} {method}"] = result
                save()
        gen_shape = runs[0][0]
        gen = ["--model", str(work / "models" / gen_shape), "--dtype", dtype, "--peers", "batched",
               "--prompts", "64" if args.tiny else "256", "--batch-size", "16" if args.tiny else "64",
               "--max-new-tokens", "16" if args.tiny else "128", "--out", str(work / "generate.json")]
        done = child(gen, deadline.left(240), script=str(ROOT / "bench/generate.py"))
        out["generate"] = (json.loads((work / "generate.json").read_text()) if "error" not in done
                           and (work / "generate.json").exists() else done)
        save()
    for name, r in out["train"].items():
        shown = (f"{r['tokens_per_s']:,.0f} tok/s, MFU {100 * r['mfu']:.1f}%" if "tokens_per_s" in r else r["error"])
        print(f"{name:28} {shown}")
    g = out["generate"]
    if "results" in g:
        print(f"generate: steer {g['results']['steer']['tokens_per_s']:,.0f} tok/s, batched generate "
              f"{g['results']['batched']['tokens_per_s']:,.0f} tok/s ({g['steer_over_batched']:.2f}x)")
    print(f"matmul {dtype}: {flops / 1e12:.1f} TFLOP/s on {out['device']}")


if __name__ == "__main__":
    main()
