"""``steer train sft``: attribute-conditioned (SteerLM) and system-message (Janus) fine-tuning.

One path for both: the recipe's template decides what the model is conditioned on, the data
pipeline (:mod:`steer.data.prepare`) renders and masks, and ``transformers.Trainer`` trains, with
LoRA (PEFT) or full weights, under torchrun for DDP / FSDP / DeepSpeed.

The run directory holds the final adapter (or model), the tokenizer whose chat template is the
steering template, ``steer.json`` (how to load and steer it), the resolved ``recipe.yaml``,
``metrics.jsonl`` and the ``checkpoint-N`` folders a run resumes from.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer import __version__
from steer.config import SFTRecipe, write_resolved
from steer.errors import SteerError, UsageError
from steer.train.export import RUN_FILE
from steer.train.model import model_ref

Events = Callable[[dict], None]
METRICS_FILE = "metrics.jsonl"


@dataclass
class RunResult:
    """What a training run produced."""

    run_dir: Path
    steps: int
    train_loss: float | None
    eval_loss: float | None
    tokens: int
    resumed_from: str | None = None
    metrics: list[dict] = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)  # the final validation metrics (eval_*)

    def to_json(self) -> dict:
        return {"run_dir": str(self.run_dir), "steps": self.steps, "train_loss": self.train_loss,
                "eval_loss": self.eval_loss, "tokens": self.tokens, "resumed_from": self.resumed_from,
                "evaluation": self.evaluation}


def is_main_process() -> bool:
    """True on the process that writes run files and talks to the user (rank 0, or no torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def find_checkpoint(run_dir: Path, resume: str | bool) -> str:
    """The checkpoint to resume from: ``True`` means the latest one in ``run_dir``; a path may be a
    checkpoint folder or a run directory (its latest checkpoint)."""
    from transformers.trainer_utils import get_last_checkpoint

    target = run_dir if resume is True else Path(str(resume))
    if not target.is_dir():
        raise UsageError(f"--resume: {target} is not a directory")
    if (target / "trainer_state.json").is_file():
        return str(target)
    last = get_last_checkpoint(str(target))
    if last is None:
        raise UsageError(f"--resume: no checkpoint-N folder in {target} (nothing to resume)")
    return last


def check_adapter(folder: Path) -> None:
    """Refuse an empty LoRA adapter (the known LoRA + ZeRO-3 failure saves zero-size tensors)."""
    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        return
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        sizes = [f.get_slice(k).get_shape() for k in f.keys()]
    if not sizes or any(0 in shape or not shape for shape in sizes):
        raise SteerError(f"{path}: the saved LoRA adapter is empty ({len(sizes)} tensors, some of size 0); "
                         "under DeepSpeed ZeRO-3 set stage3_gather_16bit_weights_on_model_save: true")


def _split_validation(train: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    if fraction <= 0:
        return train, None
    parts = train.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def training_arguments(recipe: SFTRecipe, run_dir: Path, has_eval: bool, **overrides: Any) -> Any:
    """``transformers.TrainingArguments`` for a recipe (the distributed strategy included)."""
    import torch
    from transformers import TrainingArguments

    t, dist = recipe.train, recipe.distributed
    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dtype = recipe.model.dtype
    extra: dict[str, Any] = {}
    if dist.strategy == "fsdp":
        extra["fsdp"] = "full_shard auto_wrap"
        extra["fsdp_config"] = dist.config or {"version": 2}
    elif dist.strategy == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise UsageError("distributed.strategy deepspeed needs DeepSpeed (pip install deepspeed, on a CUDA machine)")
        if not dist.config:
            raise UsageError("distributed.strategy deepspeed needs distributed.config (a DeepSpeed JSON, see recipes/distributed)")
        extra["deepspeed"] = dist.config
    eval_steps = t.eval_steps if has_eval else None
    return TrainingArguments(**{**dict(
        output_dir=str(run_dir), per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, num_train_epochs=t.epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, logging_steps=t.logging_steps,
        logging_first_step=True, report_to=["tensorboard"] if t.tensorboard else [], disable_tqdm=True,
        remove_unused_columns=False, include_num_input_tokens_seen="all" if recipe.data.packing else "non_padding",
        use_cpu=not cuda, bf16=cuda and dtype == "bfloat16", fp16=cuda and dtype == "float16",
        ddp_backend="gloo" if world > 1 and not cuda else None, ddp_find_unused_parameters=False, dataloader_num_workers=0,
        prediction_loss_only=True), **extra, **overrides})


def _callbacks(run_dir: Path, events: Events | None, lora: bool) -> list:
    from transformers import TrainerCallback

    class RunFiles(TrainerCallback):
        """metrics.jsonl, progress events, and the empty-adapter guard on every checkpoint."""

        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.tokens0 = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.start, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen
            if events and state.is_world_process_zero:
                events({"event": "start", "step": state.global_step, "max_steps": state.max_steps})

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if events and state.is_world_process_zero:
                elapsed = time.perf_counter() - self.start
                events({"event": "step", "step": state.global_step, "max_steps": state.max_steps,
                        "tokens_per_s": (state.num_input_tokens_seen - self.tokens0) / max(elapsed, 1e-9)})

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, **logs, "time": time.time()}
            with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            if events:
                events({"event": "log", **row})

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if lora and state.is_world_process_zero:
                check_adapter(run_dir / f"checkpoint-{state.global_step}")

    return [RunFiles()]


def _trainer_class() -> type:
    from transformers import Trainer

    class SteerTrainer(Trainer):
        """``Trainer`` whose loss projects only positions that carry loss onto the vocabulary.

        The LM head runs on the hidden states whose next token is labelled (``logits_to_keep`` as a
        boolean mask), so system, user and padding positions cost no vocabulary matmul and no
        logits memory; for a plain linear head it runs chunk by chunk fused with the loss
        (:mod:`steer.train.fused_ce`), so no full logits tensor exists at all. The loss is the same
        token-mean cross-entropy the model would compute.
        """

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            import torch

            from steer.data.encode import IGNORE
            from steer.train.fused_ce import linear_cross_entropy

            labels = inputs.pop("labels")
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != IGNORE
            targets = labels[:, 1:][keep[:, :-1]]
            head = self._fusable_head(model)
            if head is not None and not return_outputs:
                # the model's forward with its LM head as the identity yields the kept hidden states
                head.forward = lambda x: x
                try:
                    outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
                finally:
                    del head.forward
                hidden = outputs.logits.reshape(-1, outputs.logits.shape[-1])
                loss = linear_cross_entropy(hidden, head.weight, targets)
            else:
                outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
                logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])
                loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
            scaled = num_items_in_batch is not None
            if not scaled:
                denom: Any = max(targets.numel(), 1)
            elif torch.is_tensor(num_items_in_batch):
                denom = num_items_in_batch.clamp(min=1)
            else:
                denom = max(int(num_items_in_batch), 1)
            loss = loss / denom
            if scaled and self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
            self.loss_is_scaled_for_ga = scaled
            return (loss, outputs) if return_outputs else loss

        def _fusable_head(self, model: Any) -> Any:
            """The plain linear LM head, when the chunked fused loss applies (not under FSDP or
            DeepSpeed, whose sharded weights only exist inside the forward; no logit soft-capping)."""
            import torch

            if self.is_fsdp_enabled or self.is_deepspeed_enabled:
                return None
            inner = self.accelerator.unwrap_model(model)
            getter = getattr(inner, "get_output_embeddings", None)
            head = getter() if getter else None
            config = getattr(inner, "config", None)
            if type(head) is not torch.nn.Linear or head.bias is not None or getattr(config, "final_logit_softcapping", None):
                return None
            return head

    return SteerTrainer


@dataclass
class Task:
    """What differs between fine-tuning a generator (SFT) and an attribute prediction model (APM):
    everything else (data, arguments, callbacks, checkpoints, resume, torchrun) is one path."""

    build_model: Callable[[SFTRecipe], Any]
    collator: Callable[[SFTRecipe, Any], Any]
    trainer_class: Callable[[], type]
    run_file: Callable[[SFTRecipe], dict]  # extra steer.json fields
    template: Callable[[SFTRecipe, Any], Any]  # the template the saved tokenizer renders with
    arguments: dict = field(default_factory=dict)  # extra TrainingArguments
    compute_metrics: Callable | None = None


def _sft_collator(recipe: SFTRecipe, tokenizer: Any) -> Any:
    from steer.train.packing import PackedCollator, PaddedCollator

    return PackedCollator() if recipe.data.packing else PaddedCollator(tokenizer.pad_token_id or 0)


def save_run(trainer: Any, run_dir: Path, recipe: SFTRecipe, template: Any, **extra: Any) -> None:
    """The final weights, the empty-adapter guard, the tokenizer (its chat template is ``template``)
    and ``steer.json`` (with ``extra`` fields)."""
    trainer.save_model(str(run_dir))
    if trainer.is_world_process_zero():
        if recipe.train.method != "full":
            check_adapter(run_dir)
        trainer.processing_class.save_pretrained(str(run_dir))
        write_run_file(run_dir, recipe, template.spec(), **extra)


def _sft_task() -> Task:
    from steer.data.encode import recipe_template
    from steer.train.model import build_model

    return Task(build_model=lambda r: build_model(r.model, r.train, packing=r.data.packing), collator=_sft_collator,
                trainer_class=_trainer_class, run_file=lambda r: {}, template=lambda r, tok: recipe_template(r.template, tok))


def train_sft(recipe: SFTRecipe, *, resume: str | bool | None = None, events: Events | None = None,
              callbacks: list | None = None) -> RunResult:
    """Train a recipe; ``resume`` continues from a checkpoint (``True``: the latest in the run directory)."""
    return train(recipe, _sft_task(), resume=resume, events=events, callbacks=callbacks)


def train(recipe: SFTRecipe, task: Task, *, resume: str | bool | None = None, events: Events | None = None,
          callbacks: list | None = None) -> RunResult:
    """The training loop every steer model goes through (see :class:`Task`)."""
    import datasets
    import transformers
    from transformers import PrinterCallback

    from steer.data.encode import load_tokenizer
    from steer.data.prepare import prepare

    run_dir = Path(recipe.train.output_dir)
    checkpoint = find_checkpoint(run_dir, resume) if resume else None
    if checkpoint is None and run_dir.is_dir() and any(run_dir.glob("checkpoint-*")):
        raise UsageError(f"{run_dir} already holds checkpoints: pass --resume to continue, "
                         "or --set train.output_dir=... for a new run")
    has_eval = bool(recipe.data.validation) or recipe.data.validation_fraction > 0
    args = training_arguments(recipe, run_dir, has_eval, **task.arguments)
    with args.main_process_first(desc="prepare data"):  # rank 0 tokenizes, the others read its cache
        prepared = prepare(recipe, progress=(lambda d, t: events({"event": "prepare", "done": d, "total": t}))
                           if events and is_main_process() else None)
        val_prepared = prepare(recipe, sources=recipe.data.validation) if recipe.data.validation else None
    train_ds = datasets.load_from_disk(str(prepared.path))
    train_ds, eval_ds = _split_validation(train_ds, recipe.data.validation_fraction, recipe.train.seed)
    if val_prepared is not None:
        eval_ds = datasets.load_from_disk(str(val_prepared.path))
    if len(train_ds) == 0:
        raise UsageError("no training examples left after preparation (see steer data prepare for the rejects)")
    if events and is_main_process():
        events({"event": "data", "train": len(train_ds), "eval": len(eval_ds) if eval_ds is not None else 0,
                "prepared": prepared.to_json()})

    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.name_or_path)
    template = task.template(recipe, tokenizer)
    tokenizer.chat_template = template.source
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

    transformers.set_seed(recipe.train.seed)
    model = task.build_model(recipe)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_resolved(recipe, run_dir)
    trainer = task.trainer_class()(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=task.collator(recipe, tokenizer),
        processing_class=tokenizer, compute_metrics=task.compute_metrics,
        callbacks=_callbacks(run_dir, events, recipe.train.method != "full") + list(callbacks or []))
    trainer.remove_callback(PrinterCallback)  # progress and metrics go through our callback
    output = trainer.train(resume_from_checkpoint=checkpoint)
    evaluation = trainer.evaluate() if eval_ds is not None else {}
    save_run(trainer, run_dir, recipe, template, **task.run_file(recipe))
    history = [h for h in trainer.state.log_history if "loss" in h]
    return RunResult(run_dir, trainer.state.global_step, history[-1]["loss"] if history else output.training_loss,
                     evaluation.get("eval_loss"), trainer.state.num_input_tokens_seen, checkpoint,
                     trainer.state.log_history, evaluation)


def write_run_file(run_dir: Path, recipe: SFTRecipe, template_spec: dict, **extra: Any) -> Path:
    """``steer.json``: what a run directory holds and how steer loads and steers (or scores) with it."""
    info = {"steer_version": __version__, "kind": recipe.kind, "method": recipe.train.method,
            "base_model": model_ref(recipe.model.name_or_path) if recipe.train.method != "full" else None,
            "template": template_spec, **extra}
    path = run_dir / RUN_FILE
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return path

