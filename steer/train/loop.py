"""The one training loop every steer model goes through, and what it writes.

A :class:`Task` says what differs between kinds of models (the model, what a record is encoded
into, the collator, the loss, the metrics, the extra ``steer.json`` fields, how to export it); the
rest is shared: the tokenizer is loaded once, data is prepared (and cached) through the task's
encoder, ``transformers.Trainer`` trains with LoRA or full weights under torchrun for DDP / FSDP /
DeepSpeed, with checkpoints, exact resume, ``metrics.jsonl``, typed progress events and TensorBoard.

The run directory holds the final adapter (or model), the tokenizer whose chat template is the
task's template, ``steer.json`` (how to load and steer it), the resolved ``recipe.yaml``,
``metrics.jsonl`` and the ``checkpoint-N`` folders a run resumes from.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from steer import __version__
from steer.config import SFTRecipe, SourceConfig, write_resolved
from steer.data.prepare import Encoder, Prepared, prepare
from steer.errors import SteerError, UsageError
from steer.events import DataReady, Events, Progress, TrainLog
from steer.outputs import write_text_atomic
from steer.models import local_path
from steer.runs import METRICS_FILE, RECIPE_FILE, ensure_padding, load_tokenizer, write_run_file
from steer.templates import SteerTemplate
from steer.train.tracking import check_trackers, quiet_integrations, tracked_run, tracking_callback

Recipe = SFTRecipe  # every recipe kind extends the SFT recipe's sections


class MetricStore:
    """Per-batch metrics a task's ``compute_loss`` computes, kept until the next log line and averaged
    into it (``eval_``-prefixed in an evaluation's log), as TRL's trainers report theirs."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}

    def add(self, mode: str, metrics: dict[str, Any]) -> None:
        """Keep one batch's ``metrics`` (tensors or numbers) for ``mode`` (train or eval)."""
        for name, value in metrics.items():
            self.stored[mode].setdefault(name, []).append(float(value.detach() if hasattr(value, "detach") else value))

    def merge(self, logs: dict) -> None:
        """Average what was kept into ``logs`` in place (``evaluate()`` returns that dict) and forget it."""
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self.stored[mode].items():
            logs[prefix + name] = sum(values) / len(values)
        self.stored[mode].clear()


@dataclass
class Task:
    """What one kind of model needs from the shared loop (one instance per file in ``train/tasks/``)."""

    kind: str
    build_model: Callable[[Recipe], Any]
    template: Callable[[Recipe, Any], SteerTemplate]  # the template the saved tokenizer renders with
    encoder: Callable[..., Encoder]  # (recipe, tokenizer, template), and the ImageInputs when ``images``
    collator: Callable[..., Any]  # (recipe, tokenizer), and the ImageInputs when ``images``
    trainer_class: Callable[[Recipe], type]
    export: Callable[[Path, Path, dict, str], None]  # (run or checkpoint folder, out, steer.json, dtype)
    next_steps: Callable[[Recipe, Path], list[str]]  # commands to suggest after a run
    run_file: Callable[[Recipe], dict] = lambda recipe: {}  # extra steer.json fields
    report: Callable[[dict], dict[str, dict[str, float]]] = lambda evaluation: {}  # a table of the final evaluation
    arguments: dict = field(default_factory=dict)  # extra TrainingArguments
    metrics: Callable[[Recipe], Callable | None] = lambda recipe: None  # the Trainer's compute_metrics
    # a task whose examples are not prepared records (RL's prompt rows): (recipe, encoder, events) -> (train, eval)
    datasets: Callable[[Recipe, Encoder, Events | None], tuple[Any, Any]] | None = None
    images: bool = False  # trains vision-language models too (its encoder and collator take the ImageInputs)


@dataclass
class RunResult:
    """What a training run produced."""

    run_dir: Path
    kind: str
    steps: int
    train_loss: float | None
    eval_loss: float | None
    tokens: int
    resumed_from: str | None = None
    metrics: list[dict] = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)  # the final validation metrics (eval_*)
    table: dict[str, dict[str, float]] = field(default_factory=dict)  # per-attribute validation metrics
    next_steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"run_dir": str(self.run_dir), "kind": self.kind, "steps": self.steps, "train_loss": self.train_loss,
                "eval_loss": self.eval_loss, "tokens": self.tokens, "resumed_from": self.resumed_from,
                "evaluation": self.evaluation}


def is_main_process() -> bool:
    """True on the process that writes run files and talks to the user (rank 0, or no torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


COMPLETE = "steer-complete"  # written into a checkpoint once everything in it is saved
WEIGHTS = ("*.safetensors", "model.safetensors.index.json", "pytorch_model.bin")  # patterns


def _marks_checkpoints(run_dir: Path) -> bool:
    """Whether steer wrote the checkpoints in ``run_dir`` (one of them carries the mark)."""
    return any((p / COMPLETE).is_file() for p in run_dir.glob("checkpoint-*"))


def checkpoint_problem(folder: Path, marked_run: bool) -> str | None:
    """Why ``folder`` cannot be resumed from (None: it can). steer marks a checkpoint complete once it
    is saved, so in a ``marked_run`` one without the mark is incomplete; in a run of other tools a
    checkpoint must hold a readable trainer state and weights."""
    if (folder / COMPLETE).is_file():
        return None
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no readable trainer_state.json (it was being written when the run stopped)"
    if not any(any(folder.glob(pattern)) for pattern in WEIGHTS):
        return "no model weights"
    return "not marked complete (the run stopped while saving it)" if marked_run else None


def _step(folder: Path) -> int:
    tail = folder.name.removeprefix("checkpoint-")
    return int(tail) if tail.isdigit() else -1


def find_checkpoint(run_dir: Path, resume: str | bool) -> str:
    """The checkpoint to resume from: ``True`` means the newest complete one in ``run_dir``; a path may
    be a checkpoint folder (refused when incomplete) or a run directory (its newest complete one)."""
    target = run_dir if resume is True else Path(str(resume))
    if not target.is_dir():
        raise UsageError(f"--resume: {target} is not a directory")
    if target.name.startswith("checkpoint-") or (target / "trainer_state.json").exists():
        problem = checkpoint_problem(target, _marks_checkpoints(target.parent))
        if problem:
            raise UsageError(f"--resume: {target} cannot be resumed from: {problem}")
        return str(target)
    found = sorted((p for p in target.glob("checkpoint-*") if p.is_dir() and _step(p) >= 0), key=_step, reverse=True)
    if not found:
        raise UsageError(f"--resume: no checkpoint-N folder in {target} (nothing to resume)")
    marked = _marks_checkpoints(target)
    for folder in found:
        if checkpoint_problem(folder, marked) is None:
            return str(folder)
    raise UsageError(f"--resume: no complete checkpoint in {target} ({found[0].name}: {checkpoint_problem(found[0], marked)})")


def trim_metrics(run_dir: Path, step: int) -> None:
    """Drop the rows of ``metrics.jsonl`` logged after ``step`` (a resumed run logs them again)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.strip() and _logged_at(line) <= step]
    write_text_atomic(path, "".join(kept))


def _logged_at(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except (ValueError, AttributeError, TypeError):
        return float("inf")  # a line cut short by the kill, or not a metrics row


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


def _warmup(ratio: float) -> dict:
    """The warm-up as a share of the steps: transformers 5 reads a ``warmup_steps`` below 1 as that
    share (and drops ``warmup_ratio``); transformers 4 needs ``warmup_ratio``."""
    import transformers

    return {"warmup_steps": ratio} if int(transformers.__version__.split(".")[0]) >= 5 else {"warmup_ratio": ratio}


def _strategy(recipe: Recipe) -> dict:
    """The ``TrainingArguments`` of the recipe's distributed strategy."""
    dist = recipe.distributed
    if dist.strategy == "fsdp":
        return {"fsdp": "full_shard auto_wrap", "fsdp_config": dist.config or {"version": 2}}
    if dist.strategy != "deepspeed":
        return {}
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise UsageError("distributed.strategy deepspeed needs DeepSpeed (pip install deepspeed, on a CUDA machine)")
    if not dist.config:
        raise UsageError("distributed.strategy deepspeed needs distributed.config (a DeepSpeed JSON, see recipes/distributed)")
    return {"deepspeed": dist.config}


def _precision(recipe: Recipe, cuda: bool) -> tuple[bool, bool]:
    """``(bf16, fp16)`` autocast for the Trainer: ``train.mixed_precision``, or with ``auto`` the model's
    dtype on a GPU and none on CPU (where bf16 autocast is opt-in: it only pays off with AMX/AVX512-BF16)."""
    mode = recipe.train.mixed_precision
    if mode == "auto":
        mode = {"bfloat16": "bf16", "float16": "fp16"}.get(recipe.model.dtype, "no") if cuda else "no"
    if mode == "fp16" and not cuda:
        raise UsageError("train.mixed_precision fp16 needs a CUDA GPU; use bf16 (or no) on CPU")
    return mode == "bf16", mode == "fp16"


def training_arguments(recipe: Recipe, run_dir: Path, has_eval: bool, **overrides: Any) -> Any:
    """``transformers.TrainingArguments`` for a recipe (the distributed strategy included)."""
    import torch
    from transformers import TrainingArguments

    t = recipe.train
    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    bf16, fp16 = _precision(recipe, cuda)
    eval_steps = t.eval_steps if has_eval else None
    return TrainingArguments(**{**dict(
        output_dir=str(run_dir), per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, num_train_epochs=t.epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, **_warmup(t.warmup_ratio),
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, logging_steps=t.logging_steps,
        logging_first_step=True, report_to=list(t.report_to), run_name=t.run_name or run_dir.name, disable_tqdm=True,
        remove_unused_columns=False, include_num_input_tokens_seen="all" if recipe.data.packing else "non_padding",
        use_cpu=not cuda, bf16=bf16, fp16=fp16,
        ddp_backend="gloo" if world > 1 and not cuda else None, ddp_find_unused_parameters=False, dataloader_num_workers=0,
        prediction_loss_only=True), **_strategy(recipe), **overrides})


def _callbacks(run_dir: Path, events: Events | None, lora: bool, evaluate_at_end: bool = False) -> list:
    from transformers import TrainerCallback

    class RunFiles(TrainerCallback):
        """metrics.jsonl, progress events, and the empty-adapter guard on every checkpoint."""

        def __init__(self) -> None:
            self.tokens0 = 0

        def progress(self, state: Any) -> None:
            """Steps done of all, and tokens trained on since this process started (resumed runs too)."""
            if events and state.is_world_process_zero:
                events(Progress("train", state.global_step, state.max_steps, state.num_input_tokens_seen - self.tokens0))

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.tokens0 = state.num_input_tokens_seen
            self.progress(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.progress(state)
            if evaluate_at_end and state.global_step >= state.max_steps:
                # the final evaluation runs inside training, so that trackers get it before their runs close
                control.should_evaluate = True

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, **logs, "time": time.time()}
            with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            if events:
                events(TrainLog(state.global_step, {k: v for k, v in logs.items() if isinstance(v, (int, float))}))

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            folder = run_dir / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                if lora:
                    check_adapter(folder)
                (folder / COMPLETE).write_text(str(state.global_step), encoding="utf-8")  # saved whole

    return [RunFiles()]


def final_evaluation(trainer: Any) -> dict:
    """The validation metrics at the last step: logged by the evaluation training ends with, else (a run
    resumed at its end, which trains no step) evaluated now."""
    state = trainer.state
    last = [h for h in state.log_history if "eval_loss" in h and h.get("step") == state.global_step]
    if last:
        return {k: v for k, v in last[-1].items() if k.startswith("eval_") or k == "epoch"}
    return trainer.evaluate()


def preflight(recipe: Recipe, tokenizer: Any) -> None:
    """Refuse, before anything is prepared or written, a model that is not there and a tokenizer
    whose tokens do not fit the model's embedding."""
    from steer.train.model import model_config

    cfg = recipe.model
    config = model_config(cfg)
    where = "model.from_scratch.vocab_size" if cfg.from_scratch is not None else f"the model {cfg.name_or_path}"
    vocab = getattr(config.get_text_config(), "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise UsageError(f"the tokenizer has {len(tokenizer):,} tokens but {where} has {vocab:,}: token ids past "
                         f"{vocab - 1} have no embedding; use the model's own tokenizer or a larger vocab_size")


def recipe_encoder(recipe: Recipe, task: Task, tokenizer: Any = None) -> Encoder:
    """The encoder ``task`` prepares ``recipe``'s data with (loading the recipe's tokenizer unless given)."""
    from steer.runs import missing_folder

    if recipe.model.name_or_path and missing_folder(recipe.model.name_or_path):
        raise UsageError(f"model.name_or_path: {recipe.model.name_or_path} is not a model folder (no such directory)")
    source = recipe.model.tokenizer or recipe.model.name_or_path or ""
    vision = recipe_images(recipe, source)
    if vision is None:
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(source)
        return replace(task.encoder(recipe, tokenizer, task.template(recipe, tokenizer)), tokenizer_id=source)
    if not task.images:
        raise UsageError(f"steer train {task.kind} does not train vision-language models yet (sft, dpo and apm do)")
    if recipe.data.packing:
        raise UsageError("data.packing: a vision-language model trains on padded batches (its image features are "
                         "placed by position); set data.packing: false")
    tokenizer = vision.processor.tokenizer  # the processor saves this one, with the steering template
    template = task.template(recipe, tokenizer).with_image_token(vision.placeholder)
    encoder = task.encoder(recipe, tokenizer, template, vision)
    fingerprint = {**encoder.fingerprint, "images": vision.processor.to_json_string()}  # patch size, strategy, ...
    return replace(encoder, tokenizer_id=source, vision=vision, fingerprint=fingerprint)


def recipe_images(recipe: Recipe, source: str) -> Any:
    """The :class:`steer.vision.ImageInputs` of a recipe's model (None: a text model)."""
    from steer.train.model import model_config
    from steer.vision import image_inputs, is_vlm

    try:
        config = model_config(recipe.model)
    except UsageError:  # no readable config (a hub id offline, say): a text model here; training's preflight says why
        return None
    if not is_vlm(config):
        return None
    found = image_inputs(local_path(source) if source else source, config)
    if found is None:
        raise UsageError(f"{source} has no image processor (processor_config.json), which the vision-language "
                         "model needs: point model.tokenizer at the model's processor folder")
    return found


def collator(recipe: Recipe, task: Task, encoder: Encoder) -> Any:
    """The task's collator; with a vision-language model, given the image inputs."""
    if encoder.vision is not None:
        return task.collator(recipe, encoder.tokenizer, encoder.vision)
    return task.collator(recipe, encoder.tokenizer)


def prepare_recipe(recipe: Recipe, task: Task, *, encoder: Encoder | None = None, sources: list[SourceConfig] | None = None,
                   progress: Events | None = None, force: bool = False) -> Prepared:
    """Prepare a recipe's training sources (or ``sources``) with its task's encoder; see :func:`steer.data.prepare.prepare`."""
    if task.datasets is not None:
        raise UsageError(f"a {task.kind} recipe's data is read when it trains (prompt rows, nothing to prepare)")
    encoder = encoder or recipe_encoder(recipe, task)
    return prepare(recipe.data.sources if sources is None else sources, encoder, recipe.data, seed=recipe.train.seed,
                   progress=progress, force=force)


def save_run(trainer: Any, run_dir: Path, recipe: Recipe, task: Task, template: SteerTemplate) -> None:
    """The final weights, the empty-adapter guard, the tokenizer (its chat template is ``template``)
    and ``steer.json``."""
    from steer.train.model import model_ref

    trainer.save_model(str(run_dir))
    if not trainer.is_world_process_zero():
        return
    if recipe.train.method != "full":
        check_adapter(run_dir)
    trainer.processing_class.save_pretrained(str(run_dir))
    write_run_file(run_dir, {"steer_version": __version__, "kind": task.kind, "method": recipe.train.method,
                             "base_model": model_ref(recipe.model.name_or_path) if recipe.train.method != "full" else None,
                             "template": template.spec(), **task.run_file(recipe)})


def _datasets(recipe: Recipe, task: Task, encoder: Encoder, events: Events | None, args: Any) -> tuple[Any, Any]:
    """The prepared training and evaluation datasets (rank 0 prepares, the others read its cache)."""
    import datasets

    if task.datasets is not None:
        return task.datasets(recipe, encoder, events if is_main_process() else None)
    with args.main_process_first(desc="prepare data"):
        prepared = prepare_recipe(recipe, task, encoder=encoder, progress=events if is_main_process() else None)
        val_prepared = (prepare_recipe(recipe, task, encoder=encoder, sources=recipe.data.validation)
                        if recipe.data.validation else None)
    train_ds = datasets.load_from_disk(str(prepared.path))
    eval_ds = None
    if recipe.data.validation_fraction > 0:
        parts = train_ds.train_test_split(test_size=recipe.data.validation_fraction, seed=recipe.train.seed)
        train_ds, eval_ds = parts["train"], parts["test"]
    if val_prepared is not None:
        eval_ds = datasets.load_from_disk(str(val_prepared.path))
    if len(train_ds) == 0:
        raise UsageError("no training examples left after preparation (see steer data prepare for the rejects)")
    if events and is_main_process():
        events(DataReady(len(train_ds), len(eval_ds) if eval_ds is not None else 0, prepared.tokens, prepared.loss,
                         prepared.loss_unit, prepared.cached, str(prepared.path)))
    return train_ds, eval_ds


def train(recipe: Recipe, task: Task, *, resume: str | bool | None = None, events: Events | None = None,
          callbacks: list | None = None) -> RunResult:
    """Train ``recipe`` as ``task``; ``resume`` continues from a checkpoint (``True``: the latest in the run directory)."""
    quiet_integrations()
    import transformers
    from transformers import PrinterCallback

    run_dir = Path(recipe.train.output_dir)
    checkpoint = find_checkpoint(run_dir, resume) if resume else None
    if checkpoint is None and run_dir.is_dir() and any(run_dir.glob("checkpoint-*")):
        raise UsageError(f"{run_dir} already holds checkpoints: pass --resume to continue, "
                         "or --set train.output_dir=... for a new run")
    has_eval = bool(recipe.data.validation) or recipe.data.validation_fraction > 0
    check_trackers(recipe.train.report_to)
    args = training_arguments(recipe, run_dir, has_eval, **task.arguments)
    encoder = recipe_encoder(recipe, task)  # the tokenizer is loaded once, here
    preflight(recipe, encoder.tokenizer)  # before any data is prepared or file written
    if checkpoint and is_main_process():
        trim_metrics(run_dir, _step(Path(checkpoint)))
    tokenizer, template = encoder.tokenizer, encoder.template
    train_ds, eval_ds = _datasets(recipe, task, encoder, events, args)
    tokenizer.chat_template = template.source
    if encoder.vision is not None:
        encoder.vision.processor.chat_template = template.source  # the processor saves it as its own
    ensure_padding(tokenizer)

    transformers.set_seed(recipe.train.seed)
    model = task.build_model(recipe)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_resolved(recipe, run_dir)
    trainer = task.trainer_class(recipe)(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator(recipe, task, encoder),
        processing_class=encoder.vision.processor if encoder.vision is not None else tokenizer,
        compute_metrics=task.metrics(recipe),
        callbacks=[*_callbacks(run_dir, events, recipe.train.method != "full", evaluate_at_end=eval_ds is not None),
                   tracking_callback(recipe.train.report_to, run_dir / RECIPE_FILE, task.kind), *(callbacks or [])])
    trainer.remove_callback(PrinterCallback)  # progress and metrics go through our callback
    with tracked_run(recipe.train.report_to, recipe.train.project, args.run_name, run_dir):
        output = trainer.train(resume_from_checkpoint=checkpoint)
        evaluation = final_evaluation(trainer) if eval_ds is not None else {}
        save_run(trainer, run_dir, recipe, task, template)
    history = [h for h in trainer.state.log_history if "loss" in h]
    return RunResult(run_dir, task.kind, trainer.state.global_step,
                     history[-1]["loss"] if history else output.training_loss, evaluation.get("eval_loss"),
                     trainer.state.num_input_tokens_seen, checkpoint, trainer.state.log_history, evaluation,
                     task.report(evaluation), task.next_steps(recipe, run_dir))
