"""Benchmark: SFT throughput of steer vs TRL's SFTTrainer, at several model shapes, same run.

Shapes (Llama, tied embeddings, from config; the same HelpSteer-shaped, variable-length examples,
rendered and tokenized once by `steer data prepare`, so every trainer sees the same token ids):

- ``realistic``: hidden 512, 8 layers, 8 heads, intermediate 1408, the 32k Mistral v1 tokenizer from
  ../shared/assets (42.1 M parameters; the LM head is 39% of them, as in small real models);
- ``tiny``: hidden 128, 4 layers, the 50k GPT-2 tokenizer (7.5 M parameters, 85% of them the LM
  head: the shape where a fused head flatters most).

Trainers, each in its own process (clean peak memory), about the same tokens per step:

- ``steer``: `steer.train.train` (padding-free packing, per-example SDPA, chunked fused LM head +
  loss on the positions that carry loss), float32;
- ``steer-bf16``: the same with ``train.mixed_precision: bf16`` (autocast over float32 weights);
- ``trl-default``: `trl.SFTTrainer` as it comes on CPU (bf16 autocast, gradient checkpointing, a
  batch padded to its longest example);
- ``trl-best``: TRL at its best here: ``packing=True`` (best-fit decreasing, which turns on
  ``padding_free``), gradient checkpointing off, bf16 autocast;
- ``trl-best-fp32``: the same in float32 (like for like with ``steer``).

TRL 1.16 computes its entropy and token-accuracy metrics inside its fused LM head (no switch turns
them off); Liger kernels need Triton (GPU only). Useful tokens are non-padding tokens, counted after
warm-up steps. The matmul bound is 6 x parameters per token at the fp32 (and bf16) matmul rate
measured in the same run, the best of three medians before and after the trainers. A profile of
steer's step at each shape (``bench/sft_profile.py``) says where the time and the memory go.

    python bench/train_sft.py [--shapes realistic,tiny] [--trainers steer,steer-bf16,...] [--rows 400]
        [--steps 8] [--warmup 2] [--timeout 1800] [--out bench/results/train_sft.json]
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

ASSETS = ROOT.parent / "shared/assets/tokenizers"
SHAPES = {
    "realistic": {"tokenizer": ASSETS / "mistral-v1", "model": {
        "model_type": "llama", "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8,
        "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 1024,
        "tie_word_embeddings": True}},
    "tiny": {"tokenizer": ASSETS / "gpt2", "model": {
        "model_type": "llama", "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 50304, "max_position_embeddings": 1024,
        "tie_word_embeddings": True}},
}
TRAINERS = ("steer", "steer-bf16", "trl-default", "trl-best", "trl-best-fp32")
MAX_LENGTH = 1024
EXAMPLES_PER_STEP = 8


def make_recipe(model: dict | str, tokenizer: str, data: Path, cache: Path, out: Path, steps: int, *,
                method: str = "full", bf16: bool = False, dtype: str = "auto", max_length: int = MAX_LENGTH) -> dict:
    """The benchmark's SFT recipe: ``model`` a from-scratch config dict or a model folder."""
    source = {"from_scratch": model} if isinstance(model, dict) else {"name_or_path": model}
    return {"model": {**source, "tokenizer": tokenizer, "dtype": dtype},
            "data": {"sources": [{"path": str(data), "format": "helpsteer"}], "max_length": max_length,
                     "cache_dir": str(cache)},
            "train": {"method": method, "max_steps": steps, "batch_size": EXAMPLES_PER_STEP, "learning_rate": 1e-3,
                      "lr_scheduler": "constant", "save_steps": 10_000, "logging_steps": 1, "seed": 0,
                      "output_dir": str(out), **({"mixed_precision": "bf16"} if bf16 else {})}}


def recipe(shape: str, data: Path, cache: Path, out: Path, steps: int, bf16: bool = False) -> dict:
    spec = SHAPES[shape]
    return make_recipe(spec["model"], str(spec["tokenizer"]), data, cache, out, steps,
                       bf16=bf16, dtype="float32")


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


def trl_sft_trainer(kind: str, cfg, tokenizer: str, out: Path, steps: int, callbacks: list, *, lora: bool = False):
    """TRL's SFTTrainer in one of its configurations (see the module docstring), on steer's prepared ids;
    ``lora``: with the recipe's LoRA settings as its ``peft_config``."""
    import datasets
    import torch
    import transformers
    from trl import SFTConfig, SFTTrainer

    from steer.train import prepare
    from steer.train.model import load_base

    ds = datasets.load_from_disk(str(prepare(cfg).path)).select_columns(["input_ids"])
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer)
    if tok.eos_token is None:  # the GPT-2 asset is a bare tokenizer.json
        tok.eos_token = "<|endoftext|>"
    tok.pad_token = tok.pad_token or tok.eos_token
    transformers.set_seed(0)
    model = load_base(cfg.model, packing=False)
    packing = kind != "trl-default"
    max_length = cfg.data.max_length
    # about the same tokens per step: packed rows are max_length long, padded examples ~ the mean length
    mean = statistics.mean(len(x) for x in ds["input_ids"])
    batch = max(1, round(EXAMPLES_PER_STEP * mean / max_length)) if packing else EXAMPLES_PER_STEP
    settings = {} if kind == "trl-default" else {"packing": True, "gradient_checkpointing": False,
                                                 "bf16": kind == "trl-best"}
    peft = None
    if lora:
        from peft import LoraConfig

        lc = cfg.train.lora
        peft = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
                          task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch,
                     learning_rate=1e-3, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                     report_to=[], use_cpu=not torch.cuda.is_available(), seed=0, max_length=max_length,
                     include_num_input_tokens_seen="non_padding", disable_tqdm=True, dataset_num_proc=1, **settings)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=callbacks,
                         peft_config=peft)
    return trainer, batch, {"packing": args.packing, "padding_free": trainer.padding_free,
                            "gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16}


def run_one(kind: str, shape: str, workdir: Path, steps: int, warmup: int) -> dict:
    """Train with one trainer in this process; return throughput and peak memory."""
    import torch

    from steer.config import validate_recipe

    torch.manual_seed(0)
    record: dict = {}
    cfg = validate_recipe(recipe(shape, workdir / "data.jsonl", workdir / f"cache-{shape}",
                                 workdir / f"{shape}-{kind}", steps, bf16=kind == "steer-bf16"))
    timer = timing_callback(warmup, record)
    settings: dict = {"packing": True, "padding_free": True, "gradient_checkpointing": False,
                      "bf16": kind == "steer-bf16"}
    batch = EXAMPLES_PER_STEP
    if kind.startswith("steer"):
        from steer.train import train

        train(cfg, callbacks=[timer])
    else:
        trainer, batch, settings = trl_sft_trainer(kind, cfg, str(SHAPES[shape]["tokenizer"]),
                                                   workdir / f"{shape}-{kind}", steps, [timer])
        trainer.train()
    seconds = record["t1"] - record["t0"]
    tokens = record["tok1"] - record["tok0"]
    return {"trainer": kind, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "steps_timed": record["steps"], "batch": batch, "settings": settings,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_profile(shape: str, workdir: Path) -> dict:
    """steer's step at ``shape``, in float32 and in bf16 autocast: time per part and memory (bench/sft_profile.py)."""
    import datasets
    import torch

    import sft_profile
    from steer.config import validate_recipe
    from steer.train import prepare
    from steer.train.model import load_base
    from steer.train.packing import PackedCollator

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = validate_recipe(recipe(shape, workdir / "data.jsonl", workdir / f"cache-{shape}", workdir / "p", 1))
    ds = datasets.load_from_disk(str(prepare(cfg).path))
    batch = PackedCollator()([ds[i] for i in range(EXAMPLES_PER_STEP)])
    torch.manual_seed(0)
    model = load_base(cfg.model, packing=True)
    out = {"memory": sft_profile.memory(model, batch, baseline_rss_mb=baseline)}
    out["float32"] = sft_profile.profile_step(model, batch)
    out["bf16"] = sft_profile.profile_step(model, batch, bf16=True)
    return out


def matmul_flops(n: int = 1024, repeats: int = 20, rounds: int = 3, dtype: str = "float32") -> float:
    """Matmul FLOP/s of an n x n product on this machine: the best of ``rounds`` medians (a single
    reading on this VM has come out 40% low)."""
    import torch

    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
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


def parameters(shape: str) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(SHAPES[shape]["model"])
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec))
    return sum(p.numel() for p in model.parameters())


def machine() -> dict:
    """The machine and the library versions a training benchmark ran with (``trl`` None when it is not
    installed: TRL is a bench extra, and without it its trainers report why)."""
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl_version}


def subprocess_json(args: list[str], timeout: float, script: str = __file__) -> dict:
    """``script`` (this one by default) with ``args`` in a fresh process: its last stdout line as JSON
    (``{}`` when that is not JSON), or an error record."""
    if timeout < 5:
        return {"error": "skipped: the time budget was spent"}
    try:
        proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {}


def summarise(results: dict, params: int, flops: dict) -> dict:
    """Ratios against the TRL peers and fractions of the matmul bound."""
    rate = {k: r.get("tokens_per_s") for k, r in results.items()}
    ratio = lambda a, b: rate[a] / rate[b] if rate.get(a) and rate.get(b) else None  # noqa: E731
    best_trl = max((k for k in results if k.startswith("trl") and rate.get(k)), key=lambda k: rate[k], default=None)
    best_steer = max((k for k in results if k.startswith("steer") and rate.get(k)), key=lambda k: rate[k], default=None)
    bound = {dtype: f / (6 * params) for dtype, f in flops.items()}
    return {"best_trl": best_trl, "best_steer": best_steer,
            "steer_best_over_trl_best": ratio(best_steer, best_trl) if best_trl and best_steer else None,
            "steer_over_trl_best_fp32": ratio("steer", "trl-best-fp32"),
            "steer_bf16_over_trl_best": ratio("steer-bf16", "trl-best"),
            "steer_over_trl_default": ratio("steer", "trl-default"),
            "bound_tokens_per_s": bound,
            "steer_fraction_of_fp32_bound": rate["steer"] / bound["float32"] if rate.get("steer") else None,
            "steer_bf16_fraction_of_bf16_bound": rate["steer-bf16"] / bound["bfloat16"] if rate.get("steer-bf16") else None}


def render(shape: str, block: dict) -> None:
    print(f"\n== {shape}: {block['parameters']:,} parameters")
    print(f"{'trainer':15}{'useful tok/s':>14}{'batch':>7}{'peak RSS MB':>13}")
    for kind, r in block["results"].items():
        if "error" in r:
            print(f"{kind:15}  {r['error']}")
            continue
        print(f"{kind:15}{r['tokens_per_s']:>14,.0f}{r['batch']:>7}{r['peak_rss_mb']:>13,.0f}")
    s = block["summary"]
    for key, value in s.items():
        if isinstance(value, float):
            print(f"{key}: {value:.2f}")
    print("bound tok/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in s["bound_tokens_per_s"].items()))
    prof = block.get("profile", {})
    for dtype in ("float32", "bf16"):
        if dtype in prof:
            p = prof[dtype]
            shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["shares"].items())
            print(f"profile {dtype}: step {p['step_s']:.2f} s for {p['tokens']} tokens: {shares}")
    if "memory" in prof:
        print("memory MB: " + ", ".join(f"{k[:-3]} {v:,.0f}" for k, v in prof["memory"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="realistic,tiny")
    parser.add_argument("--trainers", default=",".join(TRAINERS))
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per trainer before it counts as not finished")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/results/train_sft.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        work = Path(args.workdir)
        result = (run_profile(args.shape, work) if args.one == "profile"
                  else run_one(args.one, args.shape, work, args.steps, args.warmup))
        print(json.dumps(result))
        return

    from data_prepare import make_rows

    shapes, trainers = args.shapes.split(","), args.trainers.split(",")
    unknown = [s for s in shapes if s not in SHAPES] + [t for t in trainers if t not in TRAINERS]
    if unknown:
        sys.exit(f"unknown shape or trainer: {', '.join(unknown)}")
    before = {d: matmul_flops(dtype=d) for d in ("float32", "bfloat16")}
    out: dict = {"shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_rows(work / "data.jsonl", args.rows, seed=1)
        for shape in shapes:
            common = ["--shape", shape, "--workdir", tmp, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            results = {kind: subprocess_json(["--one", kind, *common], args.timeout) for kind in trainers}
            block = {"results": results, "parameters": parameters(shape), "model": SHAPES[shape]["model"],
                     "tokenizer": SHAPES[shape]["tokenizer"].name}
            if not args.no_profile:
                block["profile"] = subprocess_json(["--one", "profile", *common], args.timeout)
            out["shapes"][shape] = block
    after = {d: matmul_flops(dtype=d) for d in ("float32", "bfloat16")}
    flops = {d: max(before[d], after[d]) for d in before}  # the higher bound: the conservative fraction
    for shape, block in out["shapes"].items():
        block["summary"] = summarise(block["results"], block["parameters"], flops)
        render(shape, block)
    out.update({"matmul_flops": flops, "matmul_flops_before_after": [before, after], "rows": args.rows,
                "steps": args.steps, "warmup": args.warmup, "max_length": MAX_LENGTH, "date": time.strftime("%Y-%m-%d"),
                "machine": machine()})
    print("matmul GFLOP/s: " + ", ".join(f"{d} {f / 1e9:.0f} (before {before[d] / 1e9:.0f}, after {after[d] / 1e9:.0f})"
                                          for d, f in flops.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
