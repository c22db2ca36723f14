"""The reward-model task (``kind: rm``): a scalar head on a causal LM's backbone, trained with the
Bradley-Terry loss on preference pairs from any source ``steer train dpo`` reads.

A pair becomes its two rated texts (:func:`steer.apm.apm_text`: the conversation ending with the answer,
as the APM reads it; the head reads the last token). A batch of ``B`` pairs is ``2B`` sequences
(chosen ``2i``, rejected ``2i + 1``), packed into one row or padded, as the APM's. The head module and
the run layout are the APM's (:class:`steer.apm.AttributeModel`, one output named ``reward``), so a
reward model loads, exports and judges like an APM. Options (``rm``): the pair's strength as a margin
or a weight (scaled BT), an L2 pull of the scores towards 0, starting the head from an APM run's
attributes (``init_head``), and length balancing (``length_balance: bins``, after "A Long Way to Go":
in each bin of relative length difference, as many pairs where the longer answer wins as where it loses).
The cost model (:mod:`steer.train.tasks.cost`) is this task with another loss.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from steer.apm import HEAD_FILE, AttributeModel, ScoredCollator, apm_text
from steer.data.prepare import IDENTICAL, OTHER_AXIS, EncodedBatch, Encoder
from steer.data.records import DataError, PreferencePair
from steer.errors import SteerError, UsageError
from steer.templates import SteerTemplate
from steer.tokens import tokenize
from steer.train.loop import MetricStore, Recipe, Task
from steer.train.tasks import apm

COLUMNS = {"chosen_ids": "int32", "rejected_ids": "int32", "strength": "float32"}
BINS = (0.0, 0.1, 0.25, 0.5)  # relative length difference |len_c - len_r| / max(len_c, len_r): bin edges
Extra = Callable[[PreferencePair], dict[str, list[float]] | DataError]


def encode_scored_pairs(pairs: Sequence[PreferencePair], template: SteerTemplate, tokenizer: Any, *,
                        axes: Sequence[str] = (), max_length: int | None = None, overlong: str = "truncate",
                        extra: Extra | None = None) -> tuple[dict[str, list], list[DataError], int]:
    """The columns of a batch of pairs (``chosen_ids``, ``rejected_ids``, ``strength``, and what
    ``extra`` adds per pair), the rejected pairs, and the number of tokens. Too long: the *last*
    ``max_length`` tokens are kept (the head reads the end), or the pair is rejected."""
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    errors: list[DataError] = []
    kept: list[tuple[PreferencePair, dict]] = []
    texts: list[str] = []
    for pair in pairs:
        if axes and pair.axis not in axes:
            errors.append(DataError(OTHER_AXIS, f"pair {pair.id}: axis {pair.axis!r} is not in the recipe's axes"))
            continue
        more = extra(pair) if extra else {}
        if isinstance(more, DataError):
            errors.append(more)
            continue
        try:
            texts += [apm_text(template, side.chat()) for side in pair.sides()]
        except SteerError as err:
            errors.append(DataError("template error", f"pair {pair.id}: {err}"))
            continue
        kept.append((pair, more))
    ids = [i for i, _ in tokenize(tokenizer, texts)]
    tokens = 0
    for n, (pair, more) in enumerate(kept):
        chosen, rejected = ids[2 * n], ids[2 * n + 1]
        if chosen == rejected:
            errors.append(DataError(IDENTICAL, f"pair {pair.id}: chosen and rejected are the same text"))
            continue
        if max_length is not None and max(len(chosen), len(rejected)) > max_length:
            if overlong == "reject":
                errors.append(DataError("too long", f"pair {pair.id}: {max(len(chosen), len(rejected))} tokens > "
                                        f"max_length {max_length}"))
                continue
            chosen, rejected = chosen[-max_length:], rejected[-max_length:]
        columns["chosen_ids"].append(list(chosen))
        columns["rejected_ids"].append(list(rejected))
        columns["strength"].append([float(pair.strength) if pair.strength is not None else 1.0])
        for name, value in more.items():
            columns.setdefault(name, []).append(value)
        tokens += len(chosen) + len(rejected)
    return columns, errors, tokens


def pair_encoder(kind: str, tokenizer: Any, template: SteerTemplate, *, axes: Sequence[str],
                 extra: Extra | None = None, extra_columns: Mapping[str, str] | None = None,
                 fingerprint: Mapping[str, Any] | None = None) -> Encoder:
    """The :class:`~steer.data.prepare.Encoder` of a scalar-head pair task (``rm``, ``cost``)."""

    def encode(records: list, max_length: int, overlong: str) -> EncodedBatch:
        columns, errors, tokens = encode_scored_pairs(records, template, tokenizer, axes=axes, max_length=max_length,
                                                      overlong=overlong, extra=extra)
        return EncodedBatch(columns, errors, tokens, len(columns["chosen_ids"]))

    return Encoder(kind, template, tokenizer, {**COLUMNS, **(extra_columns or {})}, "pairs", encode,
                   accepts=(PreferencePair,), fingerprint={"axes": list(axes), **(fingerprint or {})})


class ScoredPairCollator:
    """A batch of ``B`` examples as rated sequences (see :class:`~steer.apm.ScoredCollator`): each
    example's chosen side, then its rejected side unless it has none (a single rated answer, as the cost
    model reads BeaverTails), with ``chosen_index`` / ``rejected_index`` ``[B]`` saying which sequence is
    which (-1: no rejected side); every other per-example column as ``[B]`` (one value) or ``[B, n]``.
    A batch of pairs only is ``2B`` sequences, chosen ``2i`` and rejected ``2i + 1``."""

    def __init__(self, packing: bool, pad_token_id: int = 0) -> None:
        self.inner = ScoredCollator(packing, pad_token_id)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        sequences: list[dict[str, Any]] = []
        index: dict[str, list[int]] = {"chosen": [], "rejected": []}
        for f in features:
            for side in ("chosen", "rejected"):
                present = len(f[f"{side}_ids"]) > 0
                index[side].append(len(sequences) if present else -1)
                if present:
                    sequences.append({"input_ids": f[f"{side}_ids"]})
        batch = self.inner(sequences)
        batch["chosen_index"], batch["rejected_index"] = (torch.tensor(index[s]) for s in ("chosen", "rejected"))
        for name in features[0]:
            if not name.endswith("_ids"):
                values = torch.tensor([list(f[name]) for f in features], dtype=torch.float32)
                batch[name] = values[:, 0] if values.shape[1] == 1 else values
        return batch


def balance_by_length(lengths: Sequence[tuple[int, int]], seed: int = 0) -> tuple[list[int], dict[str, int]]:
    """Indices of pairs to keep so that in each bin of relative length difference (:data:`BINS`) the
    longer answer is chosen as often as the shorter (pairs of equal length are all kept), and counts."""
    rng = random.Random(seed)
    bins: dict[int, dict[bool, list[int]]] = {}
    keep: list[int] = []
    for k, (c, r) in enumerate(lengths):
        if c == r:
            keep.append(k)
            continue
        diff = abs(c - r) / max(c, r)
        b = max(i for i, edge in enumerate(BINS) if diff >= edge)
        bins.setdefault(b, {True: [], False: []})[c > r].append(k)
    for sides in bins.values():
        n = min(len(sides[True]), len(sides[False]))
        for group in sides.values():
            keep += rng.sample(group, n)
    keep.sort()
    return keep, {"pairs": len(lengths), "kept": len(keep), "dropped": len(lengths) - len(keep)}


def head_model(recipe: Recipe, names: Sequence[str]) -> AttributeModel:
    """The backbone of ``recipe.model`` with a fresh head of one output per name (scores start at 0),
    or, with ``init_head``, the first output started from an APM run's head: the weighted sum of its
    attributes' rows (a regression model turned reward model, as HelpSteer2-Preference did)."""
    import torch

    from steer.train.model import build_model

    backbone = build_model(recipe.model, recipe.train, packing=recipe.data.packing, backbone=True)
    model = AttributeModel(backbone, list(names), bias=[0.0] * len(names))
    weights = getattr(recipe, recipe.kind).init_head  # type: ignore[attr-defined]
    if weights:
        from safetensors import safe_open

        folder = Path(recipe.model.name_or_path or "")
        if not (folder / HEAD_FILE).is_file():
            raise UsageError(f"{recipe.kind}.init_head needs model.name_or_path to be an APM run "
                             f"({folder / HEAD_FILE} not found)")
        with safe_open(str(folder / HEAD_FILE), "pt") as f:
            attributes = (f.metadata() or {}).get("attributes", "").split(",")
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
        unknown = sorted(set(weights) - set(attributes))
        if unknown:
            raise UsageError(f"{recipe.kind}.init_head: {', '.join(unknown)} not among the APM's attributes "
                             f"({', '.join(attributes)})")
        with torch.no_grad():
            for name, w in weights.items():
                k = attributes.index(name)
                model.head.weight[0] += w * weight[k]
                model.head.bias[0] += w * bias[k]
    return model


def trainer_class(recipe: Recipe, loss: Callable[[Any, dict], tuple[Any, dict[str, Any]]]) -> type:
    """The APM's trainer (its checkpoint layout) with ``loss(scores [2B, n], inputs)`` -> (per-pair loss
    ``[B]``, metrics), metrics averaged per log step, and length balancing of the training pairs."""
    cfg = getattr(recipe, recipe.kind)

    class PairHeadTrainer(apm.trainer_class(recipe)):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False
            self.store = MetricStore()
            if getattr(cfg, "length_balance", "none") == "bins":
                lengths = [(len(c), len(r)) for c, r in zip(self.train_dataset["chosen_ids"],
                                                             self.train_dataset["rejected_ids"])]
                keep, counts = balance_by_length(lengths, recipe.train.seed)
                if not keep:
                    raise UsageError("rm.length_balance bins left no training pairs")
                self.train_dataset = self.train_dataset.select(keep)
                self.balanced = counts

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            forward = {k: inputs[k] for k in ("input_ids", "index", "position_ids", "attention_mask") if k in inputs}
            scores = model(**forward).predictions
            per_pair, metrics = loss(scores, inputs)
            value = per_pair.mean()
            if cfg.regularization:
                value = value + cfg.regularization * scores[:, 0].pow(2).mean()
            self.store.add("train" if model.training else "eval", metrics)
            return (value, {"predictions": scores}) if return_outputs else value

        def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
            self.store.merge(logs)
            if getattr(self, "balanced", None):
                logs.update({f"length_balance/{k}": v for k, v in self.balanced.items()})
                self.balanced = None
            super().log(logs, *args, **kwargs)

    return PairHeadTrainer


def pair_metrics(chosen: Any, rejected: Any, prefix: str) -> dict[str, Any]:
    """Accuracy, margin and mean scores of one batch of pairs (``chosen`` preferred)."""
    return {f"{prefix}/accuracy": (chosen > rejected).float().mean(), f"{prefix}/margin": (chosen - rejected).mean(),
            f"{prefix}/chosen": chosen.mean(), f"{prefix}/rejected": rejected.mean()}


def _loss(recipe: Recipe) -> Callable[[Any, dict], tuple[Any, dict[str, Any]]]:
    from steer.train.score_loss import bradley_terry

    cfg = recipe.rm  # type: ignore[attr-defined]

    def loss(scores: Any, inputs: dict) -> tuple[Any, dict[str, Any]]:
        chosen, rejected = scores[inputs["chosen_index"], 0], scores[inputs["rejected_index"], 0]
        return bradley_terry(chosen, rejected, inputs["strength"], cfg.strength), pair_metrics(chosen, rejected, "rewards")

    return loss


def _metrics_table(evaluation: dict, label: str = "held-out pairs") -> dict[str, dict[str, float]]:
    """The held-out pairs' accuracy and margin, as one table row."""
    row = {name.partition("/")[2]: value for key, value in evaluation.items()
           for name in [key.removeprefix("eval_")] if key.startswith("eval_") and "/" in name}
    return {label: row} if row else {}


def run_file(kind: str, names: Sequence[str], axes: Sequence[str]) -> dict:
    """``steer.json``'s section of a scalar-head pair model: its head file, outputs and the axes it was trained on."""
    return {kind: {"head": HEAD_FILE, "outputs": list(names), "axes": list(axes)}}


TASK = Task(
    kind="rm", build_model=lambda r: head_model(r, ["reward"]), template=apm.TASK.template,
    encoder=lambda r, tok, t: pair_encoder("rm", tok, t, axes=r.rm.axes),
    collator=lambda r, tok: ScoredPairCollator(r.data.packing, tok.pad_token_id or 0),
    trainer_class=lambda r: trainer_class(r, _loss(r)), export=apm.TASK.export, report=_metrics_table,
    next_steps=lambda r, run: [f"steer eval pairs {run} --pairs PAIRS.jsonl",
                               f"steer generate MODEL \"...\" --best-of 4 --judge rm:{run}"],
    run_file=lambda r: run_file("rm", ["reward"], r.rm.axes),
    arguments={"label_names": ["strength"], "include_num_input_tokens_seen": "all"},
)
