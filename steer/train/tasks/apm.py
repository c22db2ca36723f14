"""The APM task: train the SteerLM attribute prediction model (a regression head per attribute).

Each labelled assistant turn is one example: the conversation up to and including it, rendered
without steering (:func:`steer.apm.apm_text`), with one target per attribute of the recipe's
schema (``-100`` where the turn has no label, masked out of the MSE). It trains through the shared
loop (LoRA or full weights, packing, checkpoints, resume, metrics, torchrun); validation reports
MAE, RMSE and Pearson per attribute. The model and loading it to score are in :mod:`steer.apm`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer.apm import HEAD_FILE, MISSING, AttributeModel, Scorer, ScoredCollator, apm_text, load_apm_weights, save_apm
from steer.attributes import Schema
from steer.data.prepare import EncodedBatch, Encoder
from steer.data.records import Conversation, DataError
from steer.errors import SteerError
from steer.templates import SteerTemplate
from steer.tokens import tokenize
from steer.train.loop import Recipe, Task


@dataclass
class RatedTurn:
    """Token ids of one rated assistant turn (its conversation up to and including it) and its targets."""

    input_ids: list[int]
    targets: list[float]
    text: str
    truncated: bool = False
    images: list[str] = field(default_factory=list)  # a vision-language backbone's images (JSON references)


def rated_turns(record: Conversation) -> list[tuple[list[dict], dict]]:
    """``(messages up to and including the turn, its attributes)`` for each labelled assistant turn."""
    chat = record.chat()
    return [(chat[: k + 1], m["attributes"]) for k, m in enumerate(chat)
            if m["role"] == "assistant" and m.get("attributes")]


def encode_rated(records: list[Conversation], template: SteerTemplate, schema: Schema, tokenizer: Any, *,
                 max_length: int | None = None, overlong: str = "truncate", vision: Any = None) -> list[RatedTurn | DataError]:
    """APM examples of a batch of conversations (one per labelled assistant turn).

    Too long: ``truncate`` keeps the *last* ``max_length`` tokens, since the head reads the end (and
    rejects the turn when that would cut an image). ``vision``: a vision-language backbone's
    ImageInputs (its image tokens expanded; without it a record with images is a counted reject).
    """
    from steer.data.encode import IMAGE_PARTS
    from steer.steering import content_images, image_ref

    texts, targets, refs, out = [], [], [], []
    for record in records:
        if vision is None and any(m.images for m in record.messages):
            out.append(DataError(IMAGE_PARTS, f"example {record.id}: it has image parts, and a text model's "
                                 "template renders text only"))
            continue
        try:
            turns = rated_turns(record)
            if not turns:
                out.append(DataError("no labels", f"example {record.id}: no assistant turn carries attributes"))
            for messages, attrs in turns:
                texts.append(apm_text(template, messages))
                targets.append([float(attrs[n]) if attrs.get(n) is not None else MISSING for n in schema.names])
                refs.append((record.id, [image_ref(p) for m in messages for p in content_images(m["content"])]))
        except SteerError as err:
            out.append(DataError("template error", f"example {record.id}: {err}"))
    for text, target, (ids, _), (rid, images) in zip(texts, targets, tokenize(tokenizer, texts), refs):
        if images:
            from steer.vision import with_images

            try:
                ids, _ = with_images(vision, ids, images, f"example {rid}")
            except SteerError as err:
                out.append(DataError("bad image", str(err)))
                continue
        truncated = max_length is not None and len(ids) > max_length
        if truncated and (overlong == "reject" or (images and vision.token_id in ids[:-max_length])):
            out.append(DataError("too long", f"{len(ids)} tokens > max_length {max_length}"
                                 + (" (and the cut would fall in an image)" if overlong != "reject" else "")))
            continue
        turn = RatedTurn(list(ids[-max_length:] if truncated else ids), target, text, truncated)
        turn.images = list(images)  # JSON references (the record's chat turns bytes into data URLs)
        out.append(turn)
    return out


def _encoder(recipe: Recipe, tokenizer: Any, template: SteerTemplate, vision: Any = None) -> Encoder:
    schema = recipe.template.build_schema()

    def encode(records: list, max_length: int, overlong: str) -> EncodedBatch:
        encoded = encode_rated(records, template, schema, tokenizer, max_length=max_length, overlong=overlong,
                               vision=vision)
        kept = [e for e in encoded if isinstance(e, RatedTurn)]
        columns = {"input_ids": [e.input_ids for e in kept], "targets": [e.targets for e in kept]}
        if vision is not None:
            columns["images"] = [e.images for e in kept]
        return EncodedBatch(columns, [e for e in encoded if isinstance(e, DataError)], sum(len(e.input_ids) for e in kept),
                            len(kept))

    columns = {"input_ids": "int32", "targets": "float32", **({"images": "string"} if vision is not None else {})}
    return Encoder("apm", template, tokenizer, columns, "rated assistant turns", encode, schema=schema)


def _collator(recipe: Recipe, tokenizer: Any, vision: Any = None) -> Any:
    """Scored batches; with a vision-language backbone, padded and with the pixel inputs."""
    if vision is None:
        return ScoredCollator(recipe.data.packing, tokenizer.pad_token_id or 0)
    from steer.train.packing import ImageCollator

    return ImageCollator(ScoredCollator(False, tokenizer.pad_token_id or 0), vision)


def regression_metrics(predictions: Any, targets: Any, names: Sequence[str]) -> dict[str, float]:
    """Per attribute over the labelled examples: ``{name}_mae``, ``{name}_rmse``, ``{name}_pearson``
    (Pearson left out when either side is constant)."""
    import numpy as np

    preds, gold = np.asarray(predictions, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    out: dict[str, float] = {}
    for k, name in enumerate(names):
        known = gold[:, k] != MISSING
        p, g = preds[known, k], gold[known, k]
        if not len(g):
            continue
        out[f"{name}_mae"] = float(np.abs(p - g).mean())
        out[f"{name}_rmse"] = float(np.sqrt(((p - g) ** 2).mean()))
        if len(g) > 1 and p.std() > 0 and g.std() > 0:
            out[f"{name}_pearson"] = float(np.corrcoef(p, g)[0, 1])
    return out


METRICS = ("mae", "rmse", "pearson")


def metrics_table(evaluation: dict) -> dict[str, dict[str, float]]:
    """``{attribute: {mae, rmse, pearson}}`` from the final evaluation's ``eval_{name}_{metric}`` keys."""
    table: dict[str, dict[str, float]] = {}
    for key, value in evaluation.items():
        name, _, metric = key.removeprefix("eval_").rpartition("_")
        if key.startswith("eval_") and metric in METRICS and name:
            table.setdefault(name, {})[metric] = value
    return table


def trainer_class(recipe: Recipe | None = None) -> type:
    """``Trainer`` that checkpoints in the APM run layout (every checkpoint-N is a loadable APM) and resumes from it."""
    import torch
    from transformers import Trainer
    from transformers.trainer import TRAINING_ARGS_NAME

    class APMTrainer(Trainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            folder = Path(output_dir or self.args.output_dir)
            if not self.args.should_save:
                return
            save_apm(self.accelerator.unwrap_model(self.model), folder, state_dict)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(str(folder))
            torch.save(self.args, os.path.join(folder, TRAINING_ARGS_NAME))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            load_apm_weights(model or self.model, Path(resume_from_checkpoint))

    return APMTrainer


def _metrics(recipe: Recipe) -> Any:
    """The evaluation metrics over ``recipe``'s attributes."""
    names = recipe.template.build_schema().names
    return lambda p: regression_metrics(p.predictions, p.label_ids, names)


def _build(recipe: Recipe) -> AttributeModel:
    from steer.train.model import build_model

    backbone = build_model(recipe.model, recipe.train, packing=recipe.data.packing, backbone=True)
    return AttributeModel.for_schema(backbone, recipe.template.build_schema())


def _export(folder: Path, out: Path, info: dict, dtype: str) -> None:
    """A standalone APM (or reward or cost model): the merged backbone (plain ``AutoModel`` weights), its
    head file and tokenizer."""
    apm = Scorer.load(folder, kinds=(info.get("kind", "apm"),), dtype=dtype, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    save_apm(apm.model, out)
    (apm.vision.processor if apm.vision is not None else apm.tokenizer).save_pretrained(str(out))


TASK = Task(
    kind="apm", build_model=_build, template=lambda r, tok: r.template.build(tok, schema=False), encoder=_encoder,
    collator=_collator, trainer_class=trainer_class, images=True,
    export=_export, report=metrics_table, metrics=_metrics,
    next_steps=lambda r, run: [f"steer label {run} --input DATA --output labelled.jsonl",
                            f"steer eval steerability MODEL --prompts P.jsonl --judge apm:{run}"],
    run_file=lambda r: {"apm": {"head": HEAD_FILE, "schema": r.template.build_schema().to_dict()}},
    arguments={"prediction_loss_only": False, "label_names": ["targets"], "include_num_input_tokens_seen": "all"},
)
