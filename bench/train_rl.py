"""Benchmark: online RL step throughput of steer's GRPO vs TRL's GRPOTrainer, same model, prompts and reward.

Like for like: the same from-scratch model (``bench/train_sft.py``'s shapes), the same prompts (steer's
SteerLM rendering of 30-60 word questions; TRL gets the rendered text), ``group_size`` /
``num_generations`` 4, 8 prompts per step (TRL's batch counts completions: 32), answers of at most 48
new tokens sampled at temperature 1, the reward the answer's length in characters (``reward: length``;
the same function for TRL), a KL penalty to a reference (beta 0.05: a frozen copy in both), one
optimisation pass per rollout (TRL's ``num_iterations=1``), AdamW lr 1e-6 constant, float32, every
trainer in its own process. A random-init model samples until the token limit, so every answer has the
same length in both and the step does the same work.

What differs (and stays so): TRL pads prompts on the left and completions to the longest, and computes
its log-probabilities with full logits; steer decodes with its own batched decoder (finished rows leave
the batch) and takes log-probabilities fused with the LM head at the answer positions only. TRL logs no
rollout time, so the split of a step into sampling and optimisation is steer's only.

Reported per trainer after warm-up steps: completion tokens per second of whole steps, seconds per step,
steer's rollout share (``time/rollout_s``) and rollout tokens/s, peak RSS.

    python bench/train_rl.py [--shapes tiny,realistic] [--trainers steer,trl] [--steps 4] [--warmup 1]
        [--out bench/results/train_rl.json]
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
from train_sft import SHAPES, machine, parameters, subprocess_json  # noqa: E402

TRAINERS = ("steer", "trl")
PROMPTS_PER_STEP, GROUP, MAX_NEW, BETA = 8, 4, 48, 0.05


def make_prompts(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for k in range(n):
            handle.write(json.dumps({"id": f"q{k}", "prompt": text(rng, rng.randint(30, 60)) + "?"}) + "\n")


def recipe(shape: str, prompts: Path, out: Path, steps: int) -> dict:
    spec = SHAPES[shape]
    return {"kind": "rl", "model": {"from_scratch": spec["model"], "tokenizer": str(spec["tokenizer"]), "dtype": "float32"},
            "template": {"kind": "steerlm"}, "data": {"sources": [{"path": str(prompts)}], "max_length": 1024},
            "rl": {"algorithm": "grpo", "reward": "length", "group_size": GROUP, "max_new_tokens": MAX_NEW,
                   "temperature": 1.0, "kl_coef": BETA},
            "train": {"method": "full", "max_steps": steps, "batch_size": PROMPTS_PER_STEP, "learning_rate": 1e-6,
                      "lr_scheduler": "constant", "save_steps": 10_000, "logging_steps": 1, "seed": 0,
                      "output_dir": str(out)}}


def step_timer(warmup: int, record: dict):
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                record["t0"] = time.perf_counter()
            if state.global_step > warmup:
                record["t1"], record["steps"] = time.perf_counter(), state.global_step - warmup

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and state.global_step > warmup:
                record.setdefault("logs", []).append(dict(logs))

    return Timer()


def trl_trainer(cfg, prompts: Path, out: Path, steps: int, callbacks: list):
    """TRL's GRPOTrainer on the same model, rendered prompts and reward."""
    import datasets
    import torch
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    from steer.runs import load_tokenizer
    from steer.train.model import load_base
    from steer.train.tasks import rl

    tok = transformers.AutoTokenizer.from_pretrained(cfg.model.tokenizer)
    if tok.eos_token is None:  # the GPT-2 asset is a bare tokenizer.json
        tok.eos_token = "<|endoftext|>"
    tok.pad_token = tok.pad_token or tok.eos_token
    template = rl.TASK.template(cfg, load_tokenizer(cfg.model.tokenizer))
    rows = [json.loads(line) for line in open(prompts)]
    rendered = [template.prompt([{"role": "user", "content": r["prompt"]}]) for r in rows]
    transformers.set_seed(0)
    model = load_base(cfg.model, packing=False)
    model.save_pretrained(out / "init")  # TRL builds its reference from the policy's path
    model.config._name_or_path = str(out / "init")
    args = GRPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=PROMPTS_PER_STEP * GROUP,
                      num_generations=GROUP, max_completion_length=MAX_NEW, temperature=1.0, beta=BETA,
                      learning_rate=1e-6, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                      report_to=[], use_cpu=not torch.cuda.is_available(), seed=0, disable_tqdm=True, bf16=False)
    ds = datasets.Dataset.from_list([{"prompt": p} for p in rendered])
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions],
                          args=args, train_dataset=ds, processing_class=tok, callbacks=callbacks)
    return trainer


def run_one(kind: str, shape: str, workdir: Path, steps: int, warmup: int) -> dict:
    import torch

    from steer.config import validate_recipe

    torch.manual_seed(0)
    record: dict = {}
    prompts = workdir / "prompts.jsonl"
    cfg = validate_recipe(recipe(shape, prompts, workdir / f"{shape}-{kind}", steps), kind="rl")
    timer = step_timer(warmup, record)
    if kind == "steer":
        from steer.train import train

        train(cfg, callbacks=[timer])
    else:
        trl_trainer(cfg, prompts, workdir / f"{shape}-{kind}", steps, [timer]).train()
    seconds = record["t1"] - record["t0"]
    logs = [r for r in record.get("logs", []) if "loss" in r]
    length = "length" if kind == "steer" else "completions/mean_length"
    tokens = sum(r[length] for r in logs) * PROMPTS_PER_STEP * GROUP
    out = {"trainer": kind, "steps_timed": record["steps"], "seconds_per_step": seconds / record["steps"],
           "completion_tokens_per_s": tokens / seconds, "mean_answer_tokens": tokens / max(1, len(logs)) / (PROMPTS_PER_STEP * GROUP),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if kind == "steer":
        rollout = sum(r["time/rollout_s"] for r in logs)
        out.update(rollout_share=rollout / seconds, rollout_tokens_per_s=tokens / rollout,
                   optimisation_tokens_per_s=tokens / (seconds - rollout))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,realistic")
    parser.add_argument("--trainers", default=",".join(TRAINERS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", default=str(ROOT / "bench/results/train_rl.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.shape, Path(args.workdir), args.steps, args.warmup)))
        return

    out: dict = {"shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        make_prompts(Path(tmp) / "prompts.jsonl", args.steps * PROMPTS_PER_STEP, seed=1)
        for shape in args.shapes.split(","):
            common = ["--shape", shape, "--workdir", tmp, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            results = {k: subprocess_json(["--one", k, *common], args.timeout, script=__file__)
                       for k in args.trainers.split(",")}
            rate = {k: r.get("completion_tokens_per_s") for k, r in results.items()}
            ratio = rate["steer"] / rate["trl"] if rate.get("steer") and rate.get("trl") else None
            out["shapes"][shape] = {"parameters": parameters(shape), "results": results, "steer_over_trl": ratio}
            print(f"\n== {shape}: {parameters(shape):,} parameters")
            for k, r in results.items():
                if "error" in r:
                    print(f"{k:8} {r['error']}")
                    continue
                extra = (f"  rollout {100 * r['rollout_share']:.0f}% of the step, {r['rollout_tokens_per_s']:,.0f} tok/s; "
                         f"optimisation {r['optimisation_tokens_per_s']:,.0f} tok/s" if "rollout_share" in r else "")
                print(f"{k:8} {r['completion_tokens_per_s']:>8,.1f} completion tok/s  {r['seconds_per_step']:>6.1f} s/step "
                      f"{r['peak_rss_mb']:>7,.0f} MB{extra}")
            if ratio:
                print(f"steer / trl: {ratio:.2f}x")
    out.update({"prompts_per_step": PROMPTS_PER_STEP, "group": GROUP, "max_new_tokens": MAX_NEW, "beta": BETA,
                "steps": args.steps, "warmup": args.warmup, "date": time.strftime("%Y-%m-%d"),
                "machine": machine()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
