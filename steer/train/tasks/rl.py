"""The online RL task (``kind: rl``): a policy (an SFT or DPO run) samples answers to prompt rows, judges
score them (a reward, and a cost under a bound), and the policy is updated to maximise
``E[R] - lambda * (E[C] - d)`` with a KL penalty to the reference, ``lambda >= 0`` learnt by dual ascent
(Safe RLHF's PPO-Lagrangian; the pieces are in :mod:`steer.train.rl_loss`).

Each training step: the batch's prompts (rendered with their steering, as ``steer batch`` renders rows)
are sampled ``group_size`` times through the hf engine on the policy being trained, seeded by the step
(so a resumed run samples what an uninterrupted one would); the answers are scored; the policy's and the
reference's log-probabilities of the sampled tokens are taken in one padded pass each (the LM head fused
with the log-softmax, :func:`steer.train.fused_ce.linear_logprobs`); the loss is the clipped surrogate on
the Lagrangian advantage plus, for ``grpo``, ``kl_coef`` times the k3 KL estimate (``ppo``: the KL is a
per-token reward penalty, and a value head with two outputs, reward and cost, gives GAE advantages).
After every optimiser step lambda moves by ``lambda_lr * (mean cost - d)`` (the step's rollouts, all
processes). Each rollout is optimised once (on-policy), so the ratio is 1 when the gradient is taken and
the clip is inactive, as with TRL's GRPO at its default ``num_iterations=1``.

The reference: with LoRA the base with the adapter disabled, with full weights a frozen copy. lambda and
the value head are saved in every checkpoint (``rl_state.json``, ``value_head.safetensors``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from steer.data.prepare import EncodedBatch, Encoder
from steer.data.records import DataError
from steer.errors import UsageError
from steer.events import DataReady
from steer.train.loop import MetricStore, Recipe, Task
from steer.train.tasks import sft

STATE_FILE = "rl_state.json"
VALUE_FILE = "value_head.safetensors"


def score_function(spec: str, attribute: str | None, what: str) -> tuple[Callable[[Sequence[Mapping], Sequence[str]], list[float]], str]:
    """A judge spec as ``(rows, answers) -> [float]`` and the name of the score it reads: a judge of one
    score is read as is, a judge of several (``oracle``, ``apm:PATH``) needs ``attribute``."""
    from steer.evaluate.judges import make_judge

    judge, measured = make_judge(spec)
    if attribute is None:
        if measured is None or len(measured) != 1:
            found = "every attribute" if measured is None else ", ".join(measured)
            raise UsageError(f"rl.{what}: {spec} measures {found}: say which with rl.{what}_attribute")
        attribute = measured[0]
    elif measured is not None and attribute not in measured:
        raise UsageError(f"rl.{what}_attribute: {spec} measures {', '.join(measured)}, not {attribute}")
    name = attribute

    def score(rows: Sequence[Mapping], texts: Sequence[str]) -> list[float]:
        found = judge(rows, texts)
        values = [f.get(name) for f in found]
        return [float(v) if isinstance(v, (int, float)) else 0.0 for v in values]

    return score, name


def encode_prompts(jobs: Sequence[Any], template: Any, tokenizer: Any, room: int) -> EncodedBatch:
    """Rollout prompts from ``steer batch`` jobs (a row, its messages and steering): the rendered prompt
    (``prompt``), its token count and the row itself (``row``, JSON, for the judges); a prompt that leaves
    fewer than ``room`` tokens of the context for the answer is rejected."""
    from steer.steering import steering_prompt
    from steer.tokens import tokenize

    columns: dict[str, list] = {"prompt": [], "prompt_tokens": [], "row": []}
    errors: list[DataError] = []
    texts = [steering_prompt(template, job.messages, job.steering).text for job in jobs]
    for job, text, (ids, _) in zip(jobs, texts, tokenize(tokenizer, texts)):
        if len(ids) > room:
            errors.append(DataError("too long", f"row {job.row.get('id')}: the prompt has {len(ids)} tokens, over "
                                    f"data.max_length minus rl.max_new_tokens ({room})"))
            continue
        columns["prompt"].append(text)
        columns["prompt_tokens"].append(len(ids))
        columns["row"].append(json.dumps(job.row))
    return EncodedBatch(columns, errors, sum(columns["prompt_tokens"]), len(columns["prompt"]))


def _encoder(recipe: Recipe, tokenizer: Any, template: Any) -> Encoder:
    room = recipe.data.max_length - recipe.rl.max_new_tokens  # type: ignore[attr-defined]
    return Encoder("rl", template, tokenizer, {"prompt_tokens": "int32"}, "prompts",
                   lambda jobs, max_length, overlong: encode_prompts(jobs, template, tokenizer, room))


def datasets(recipe: Recipe, encoder: Encoder, events: Any) -> tuple[Any, None]:
    """The rollout prompts of every source: a JSONL of prompt rows read as ``steer batch`` reads them
    (each with its own steering over ``rl.attributes`` / ``rl.values``), or any dataset the loader reads
    (:func:`record_prompts`); weights and ``max_examples`` as for training data."""
    import datasets as hf

    from steer.generate.batch import BadRow, iter_jobs
    from steer.steering import steering_from

    cfg = recipe.rl  # type: ignore[attr-defined]
    schema = encoder.template.schema
    defaults = steering_from(schema, attributes=cfg.attributes or None, values=cfg.values or None)
    rng = random.Random(recipe.train.seed)
    columns: dict[str, list] = {"prompt": [], "prompt_tokens": [], "row": []}
    tokens = 0
    for source in recipe.data.sources:
        jobs, bad = [], []
        if source.format in ("auto", "prompts") and Path(source.path).suffix == ".jsonl" and Path(source.path).is_file():
            for job in iter_jobs(source.path, schema, {}, defaults):
                (bad if isinstance(job, BadRow) else jobs).append(job)
        else:
            jobs = record_prompts(source, defaults)
        if bad and not recipe.data.skip_invalid:
            raise UsageError(f"{bad[0].reason} (data.skip_invalid: true skips bad rows)")
        jobs = jobs[: source.max_examples] if source.max_examples else jobs
        batch = encoder.encode(jobs, recipe.data.max_length, recipe.data.overlong)
        if batch.errors and not recipe.data.skip_invalid:
            raise UsageError(f"{source.path}: {batch.errors[0].detail} (data.skip_invalid: true skips them)")
        n = len(batch.columns["prompt"])
        whole, frac = int(source.weight), source.weight - int(source.weight)
        picks = list(range(n)) * whole + rng.sample(range(n), round(frac * n))
        for name in columns:
            columns[name] += [batch.columns[name][k] for k in picks]
        tokens += sum(batch.columns["prompt_tokens"][k] for k in picks)
    if not columns["prompt"]:
        raise UsageError("no rollout prompts: data.sources hold no usable prompt rows")
    if events:
        events(DataReady(len(columns["prompt"]), 0, tokens, len(columns["prompt"]), "prompts", False, ""))
    return hf.Dataset.from_dict(columns), None


def record_prompts(source: Any, steering: Any) -> list[Any]:
    """Rollout prompts from any dataset the loader reads (a hub id, parquet, a training format): each
    pair's prompt, each conversation up to its last user turn, once per distinct prompt."""
    from steer.data.loader import load
    from steer.data.records import PreferencePair
    from steer.generate.batch import Job

    records, _ = load(source.path, format=source.format, split=source.split)
    seen: set[str] = set()
    jobs = []
    for record in records:
        if isinstance(record, PreferencePair):
            messages = [m.to_json() for m in record.prompt]
            system = record.system
        else:
            chat = [m.to_json() for m in record.messages]
            users = [k for k, m in enumerate(chat) if m["role"] == "user"]
            if not users:
                continue
            messages, system = chat[: users[-1] + 1], record.system
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        messages = ([{"role": "system", "content": system}] if system else []) + messages
        key = json.dumps(messages)
        if key not in seen:
            seen.add(key)
            jobs.append(Job({"id": record.id, "messages": messages}, messages, steering, {}))
    return jobs


def collate(features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A batch of prompts: their rendered texts and rows (lists: nothing to put on a device yet)."""
    return {"prompts": [f["prompt"] for f in features], "rows": [json.loads(f["row"]) for f in features]}


class ValueHead:
    """PPO's critic: a linear map from the policy's final hidden state to the reward and cost values
    ``[kept, 2]`` (one shared backbone; Safe RLHF trains separate critic models, which costs two more
    models' memory)."""

    @staticmethod
    def build(hidden: int) -> Any:
        import torch

        head = torch.nn.Linear(hidden, 2)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        return head


def trainer_class(recipe: Recipe) -> type:
    """The SFT trainer (its fused LM head) with rollouts, judges, the Lagrangian and the RL losses."""
    import torch
    from transformers import TrainerCallback

    from steer.train import rl_loss
    from steer.train.fused_ce import linear_logprobs

    cfg = recipe.rl  # type: ignore[attr-defined]

    class DualStep(TrainerCallback):
        def __init__(self, trainer: Any) -> None:
            self.trainer = trainer

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.trainer.dual_step()

    class RLTrainer(sft.trainer_class(recipe)):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False
            self.store = MetricStore()
            self.template = recipe.template.build(self.processing_class)
            self.reward, _ = score_function(cfg.reward, cfg.reward_attribute, "reward")
            self.cost = score_function(cfg.cost, cfg.cost_attribute, "cost")[0] if cfg.cost else None
            from steer.evaluate.judges import make_judge

            self.monitors = [make_judge(spec)[0] for spec in cfg.monitor]
            self.lam = float(cfg.lambda_init)
            self.costs: list[float] = []  # this optimiser step's rollout costs (the dual step's estimate)
            self.micro = 0  # rollouts since the last optimiser step: part of each rollout's seed
            self.ref_model = None
            if recipe.train.method == "full":
                import copy

                self.ref_model = copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)
            self.value_head = None
            if cfg.algorithm == "ppo":
                inner = self.accelerator.unwrap_model(self.model)
                hidden = inner.get_output_embeddings().weight.shape[1]
                self.value_head = ValueHead.build(hidden).to(inner.device)
                inner.steer_value_head = self.value_head  # registered: the optimiser and the device follow it
            self.add_callback(DualStep(self))

        # --- rollouts -------------------------------------------------------------------------------
        @torch.no_grad()
        def sample(self, model: Any, prompts: Sequence[str]) -> list[Any]:
            """``group_size`` answers per prompt (contiguous), seeded by the step, the micro-batch and the process."""
            from steer.engines.base import Sampling
            from steer.engines.hf import HFEngine

            inner = self.accelerator.unwrap_model(model)
            seed = (recipe.train.seed * 1_000_003 + self.state.global_step * 1009 + self.micro * 31
                    + self.accelerator.process_index) % (2**31)
            engine = HFEngine(inner, self.processing_class, self.template)
            try:
                sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                    seed=seed)
                return engine.generate([p for p in prompts for _ in range(cfg.group_size)], sampling)
            finally:
                inner.train()

        def sequences(self, prompts: Sequence[str], answers: Sequence[Any]) -> dict[str, Any]:
            """Prompt + answer ids, right-padded ``[N, L]``, and ``keep`` ``[N, L]``: the positions whose next
            token is an answer token (what the policy is scored and trained on)."""
            tok = self.processing_class
            prompt_ids = tok(list(prompts), add_special_tokens=False)["input_ids"]
            rows = [prompt_ids[k // cfg.group_size] + answer_ids(a) for k, a in enumerate(answers)]
            width = max(len(r) for r in rows)
            pad = tok.pad_token_id or 0
            device = self.accelerator.device
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            keep = torch.zeros_like(ids, dtype=torch.bool)
            for k, a in enumerate(answers):
                start = len(prompt_ids[k // cfg.group_size])
                keep[k, start - 1: start - 1 + len(answer_ids(a))] = True
            return {"input_ids": ids, "attention_mask": mask, "keep": keep}

        def token_pass(self, model: Any, batch: Mapping[str, Any], values: bool = False) -> tuple[Any, Any, Any]:
            """Log-probabilities of the answer tokens ``[kept]``, their entropy ``[kept]`` (no gradient) and,
            with ``values``, the value head's ``[kept, 2]``."""
            keep = batch["keep"]
            targets = batch["input_ids"][:, 1:][keep[:, :-1]]
            forward = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            outputs, head = self.kept_states(model, forward, keep)
            states = outputs.logits  # [kept, hidden] with a fusable head, else [kept, vocab] logits
            scaled = states / cfg.temperature  # the distribution sampled from (the head is linear)
            if head is not None:
                logps = linear_logprobs(scaled, head.weight, targets)
                with torch.no_grad():
                    entropy = torch.cat([entropy_of(chunk @ head.weight.T) for chunk in scaled.detach().split(1024)]) \
                        if len(states) else states.new_zeros(0)
            else:
                logps = torch.log_softmax(scaled.float(), -1).gather(1, targets[:, None]).squeeze(1)
                with torch.no_grad():
                    entropy = entropy_of(scaled.detach())
            value = self.value_head(states.float()) if values and self.value_head is not None and head is not None else None
            if values and self.value_head is not None and head is None:
                raise UsageError("rl.algorithm ppo reads the policy's final hidden state: it needs a plain linear "
                                 "LM head (not under FSDP or DeepSpeed here)")
            return logps, entropy, value

        @torch.no_grad()
        def reference_logps(self, model: Any, batch: Mapping[str, Any]) -> Any:
            if self.ref_model is not None:
                return self.token_pass(self.ref_model, batch)[0]
            with self.accelerator.unwrap_model(model).disable_adapter():
                return self.token_pass(model, batch)[0]

        # --- the loss -------------------------------------------------------------------------------
        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            prompts, rows = inputs["prompts"], inputs["rows"]
            started = time.perf_counter()
            answers = self.sample(model, prompts)
            rollout_s = time.perf_counter() - started
            self.micro += 1
            texts = [a.text for a in answers]
            group_rows = [row for row in rows for _ in range(cfg.group_size)]
            device = self.accelerator.device
            reward = torch.tensor(self.reward(group_rows, texts), device=device, dtype=torch.float32)
            cost = (torch.tensor(self.cost(group_rows, texts), device=device, dtype=torch.float32)
                    if self.cost is not None else None)
            batch = self.sequences(prompts, answers)
            ref = self.reference_logps(model, batch)
            logps, entropy, values = self.token_pass(model, batch, values=cfg.algorithm == "ppo")
            seq = batch["keep"].nonzero()[:, 0]  # [kept]: each answer token's sequence
            loss, extra = (self.grpo_loss if cfg.algorithm == "grpo" else self.ppo_loss)(
                logps, ref, seq, reward, cost, values, batch["keep"])
            self.state.num_input_tokens_seen += int(batch["attention_mask"].sum())
            lengths = torch.tensor([float(len(answer_ids(a))) for a in answers])
            metrics = {"reward": reward.mean(), "kl": (logps.detach() - ref).mean() if len(ref) else 0.0,
                       "entropy": entropy.mean() if len(entropy) else 0.0, "length": lengths.mean(),
                       "lambda": self.lam, "stopped": sum(a.finish_reason == "stop" for a in answers) / len(answers),
                       "time/rollout_s": rollout_s, "time/rollout_tokens_per_s": float(lengths.sum()) / max(rollout_s, 1e-9),
                       **extra}
            metrics.update(monitored(self.monitors, group_rows, texts))
            if cost is not None:
                self.costs += cost.tolist()
                metrics.update({"cost": cost.mean(), "over_threshold": (cost > cfg.threshold).float().mean()})
            self.store.add("train", metrics)
            return (loss, {}) if return_outputs else loss

        def grpo_loss(self, logps: Any, ref: Any, seq: Any, reward: Any, cost: Any, values: Any,
                      keep: Any) -> tuple[Any, dict]:
            adv = rl_loss.combine(rl_loss.group_advantages(reward, cfg.group_size, scale=cfg.scale_rewards),
                                  None if cost is None else rl_loss.group_advantages(cost, cfg.group_size,
                                                                                     scale=cfg.scale_rewards), self.lam)
            surrogate, clipped = rl_loss.clipped_objective(logps[None], logps.detach()[None], adv[seq][None], cfg.clip)
            per_token = surrogate[0] + cfg.kl_coef * rl_loss.kl_k3(logps, ref)
            loss = per_token.mean() if len(per_token) else logps.sum() * 0.0
            return loss, {"clip_fraction": clipped.float().mean() if clipped.numel() else 0.0}

        def ppo_loss(self, logps: Any, ref: Any, seq: Any, reward: Any, cost: Any, values: Any,
                     keep: Any) -> tuple[Any, dict]:
            grid, mask = to_grid(keep)
            old_v = values.detach()
            kl = (logps.detach() - ref)
            streams = [(reward, 0, cfg.kl_coef, kl)] + ([(cost, 1, 0.0, None)] if cost is not None else [])
            advantages, value_losses = [], []
            for score, k, coef, penalty in streams:
                rewards = rl_loss.token_rewards(score, mask, None if penalty is None else scatter(penalty, grid, mask),
                                                coef)
                adv, returns = rl_loss.gae(rewards, scatter(old_v[:, k], grid, mask), mask, cfg.gamma, cfg.gae_lambda)
                advantages.append(rl_loss.whiten(adv, mask)[grid[0], grid[1]])
                value_losses.append(rl_loss.value_loss(scatter(values[:, k], grid, mask), scatter(old_v[:, k], grid, mask),
                                                       returns.detach(), mask, cfg.clip))
            adv = rl_loss.combine(advantages[0], advantages[1] if cost is not None else None, self.lam)
            surrogate, clipped = rl_loss.clipped_objective(logps[None], logps.detach()[None], adv[None], cfg.clip)
            policy = surrogate.mean() if surrogate.numel() else logps.sum() * 0.0
            value = sum(value_losses) / len(value_losses)
            return policy + cfg.value_coef * value, {"value_loss": value.detach(),
                                                     "clip_fraction": clipped.float().mean() if clipped.numel() else 0.0}

        # --- lambda, checkpoints ----------------------------------------------------------------------
        def dual_step(self) -> None:
            """After an optimiser step: lambda by dual ascent on the step's mean cost (every process's)."""
            self.micro = 0
            if self.cost is None:
                return
            local = torch.tensor([sum(self.costs), float(len(self.costs))], device=self.accelerator.device)
            total = self.accelerator.reduce(local, reduction="sum") if self.accelerator.num_processes > 1 else local
            self.costs = []
            if total[1] > 0:
                self.lam = rl_loss.dual_ascent(self.lam, float(total[0] / total[1]), cfg.threshold, cfg.lambda_lr,
                                               cfg.lambda_max)

        def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
            self.store.merge(logs)
            super().log(logs, *args, **kwargs)

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            if self.value_head is not None:  # the critic lives in its own file, never in the policy's weights
                state = state_dict if state_dict is not None else self.accelerator.unwrap_model(self.model).state_dict()
                state_dict = {k: v for k, v in state.items() if "steer_value_head" not in k}
            super()._save(output_dir, state_dict)

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if self.args.should_save and folder.is_dir():
                save_state(folder, self.lam, self.value_head)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            self.lam = load_state(Path(resume_from_checkpoint), self.value_head, self.lam)

    return RLTrainer


def answer_ids(answer: Any) -> list[int]:
    """The sampled tokens of an answer, its end-of-sequence token included (stopping is an action too)."""
    return list(answer.token_ids) + ([answer.end_id] if answer.end_id is not None else [])


def monitored(judges: Sequence[Any], rows: Sequence[Mapping], texts: Sequence[str]) -> dict[str, float]:
    """The mean of every number the ``judges`` find in the rollouts, as ``judge/NAME``."""
    sums: dict[str, list[float]] = {}
    for judge in judges:
        for found in judge(rows, texts):
            for name, value in found.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    sums.setdefault(f"judge/{name}", []).append(float(value))
    return {name: sum(v) / len(v) for name, v in sums.items()}


def entropy_of(logits: Any) -> Any:
    """The entropy of each row's softmax ``[rows]`` (float32)."""
    import torch

    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


def to_grid(keep: Any) -> tuple[tuple[Any, Any], Any]:
    """Where each kept token sits in an ``[N, T]`` grid of left-aligned answers (``T`` the longest),
    and that grid's mask."""
    import torch

    seq = keep.nonzero()[:, 0]
    counts = keep.sum(1)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(seq), device=keep.device) - starts[seq]
    width = int(counts.max()) if len(counts) else 0
    mask = torch.zeros(keep.shape[0], max(width, 1), device=keep.device)
    mask[seq, pos] = 1.0
    return (seq, pos), mask


def scatter(values: Any, grid: tuple[Any, Any], mask: Any) -> Any:
    """Kept-token ``values`` ``[kept]`` placed on the ``[N, T]`` grid (0 elsewhere)."""
    out = mask.new_zeros(mask.shape, dtype=values.dtype)
    out = out.index_put((grid[0], grid[1]), values)
    return out


def save_state(folder: Path, lam: float, value_head: Any) -> None:
    """lambda (and the value head) beside a checkpoint's weights."""
    from steer.outputs import write_text_atomic

    write_text_atomic(folder / STATE_FILE, json.dumps({"lambda": lam}))
    if value_head is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in value_head.state_dict().items()}, str(folder / VALUE_FILE))


def load_state(folder: Path, value_head: Any, default: float) -> float:
    """lambda from a checkpoint (and its value head, in place); a checkpoint without them is refused."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise UsageError(f"{folder}: no {STATE_FILE} (not a checkpoint of an RL run)")
    try:
        lam = float(json.loads(path.read_text(encoding="utf-8"))["lambda"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UsageError(f"{path}: not an RL state file (expected {{\"lambda\": number}})") from None
    if value_head is not None:
        if not (folder / VALUE_FILE).is_file():
            raise UsageError(f"{folder}: no {VALUE_FILE}: the checkpoint is not of a ppo run (rl.algorithm)")
        from safetensors.torch import load_file

        try:
            value_head.load_state_dict(load_file(str(folder / VALUE_FILE)))
        except Exception as err:  # noqa: BLE001 - safetensors and torch raise several kinds
            raise UsageError(f"{folder / VALUE_FILE}: cannot load the value head ({type(err).__name__})") from None
    return lam


def _next_steps(recipe: Recipe, run: Path) -> list[str]:
    return [f"steer eval curves {run} --plot {run}/curves.png",
            f"steer eval steerability {run} --prompts PROMPTS.jsonl --judge JUDGE --outputs OUT.jsonl",
            f"steer export {run} --out {run}-merged"]


TASK = Task(
    kind="rl", build_model=sft.TASK.build_model, template=sft.TASK.template, encoder=_encoder, collator=lambda r, tok: collate,
    trainer_class=trainer_class, export=sft.TASK.export, next_steps=_next_steps, datasets=datasets,
    run_file=lambda r: {"rl": {"algorithm": r.rl.algorithm, "reward": r.rl.reward, "cost": r.rl.cost,
                               "threshold": r.rl.threshold}},
    arguments={"label_names": [], "include_num_input_tokens_seen": "no"},
)
