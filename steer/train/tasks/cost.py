"""The cost-model task (``kind: cost``): Safe RLHF's cost model, a scalar head trained so that the less
safe answer of a pair costs more and each answer's cost has the sign of its safety label (C > 0:
unsafe), on PKU-SafeRLHF's harmlessness pairs (``safer_response_id``) or any pair whose labels say
how safe each side is (``chosen_harmlessness`` / ``rejected_harmlessness`` on the ``safety`` schema's
0-3 scale, 3 safe; a side without one gets no sign term).

A pair's chosen side is the *safer* answer. A source without pairs gives single rated answers (a
BeaverTails row: ``is_safe`` and its ``category`` flags), which carry the sign term and the categories'
loss but no pairwise term; a source with pairs gives only those (PKU-SafeRLHF's conversations are the
answers of its pairs). Options (``cost``): the weight of the sign term, ``severity`` (an unsafe answer's
sign term weighted by its severity, 1-3: PKU's levels) and harm ``categories`` (a moderation model).
The model, data layout and trainer are the reward model's (:mod:`steer.train.tasks.rm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from steer.attributes import SAFETY_FROM_SEVERITY
from steer.data.prepare import EncodedBatch
from steer.data.records import Conversation, DataError, PreferencePair
from steer.errors import SteerError
from steer.train.loop import Recipe, Task
from steer.train.tasks import apm, rm

SAFE = SAFETY_FROM_SEVERITY[0]  # harmlessness of a safe answer
EXTRA = {"chosen_sign": "float32", "rejected_sign": "float32", "chosen_severity": "float32",
         "rejected_severity": "float32"}


def side_columns(side: str, harmlessness: Any, flagged: Any, categories: Sequence[str]) -> dict[str, list[float]]:
    """One answer's sign (+1 unsafe, -1 safe, 0 unknown) and severity (0 safe or unknown, 1-3) from its
    harmlessness label, and with ``categories`` one flag per category (1 flagged, 0 not, -1 unknown: no loss)."""
    known = isinstance(harmlessness, (int, float)) and not isinstance(harmlessness, bool)
    out = {f"{side}_sign": [0.0 if not known else (-1.0 if harmlessness >= SAFE else 1.0)],
           f"{side}_severity": [float(SAFE - harmlessness) if known and harmlessness < SAFE else 0.0]}
    if categories:
        out[f"{side}_categories"] = ([-1.0] * len(categories) if not isinstance(flagged, list)
                                     else [float(c in flagged) for c in categories])
    return out


def safety_columns(pair: PreferencePair, categories: Sequence[str] = ()) -> dict[str, list[float]]:
    """Both sides' :func:`side_columns`, from the pair's labels."""
    out: dict[str, list[float]] = {}
    for side in ("chosen", "rejected"):
        out.update(side_columns(side, pair.labels.get(f"{side}_harmlessness"),
                                pair.labels.get(f"{side}_harm_categories"), categories))
    return out


def select(records: list) -> tuple[list, dict[str, int]]:
    """A source's pairs; a source without pairs: its conversations, each a single rated answer."""
    pairs = [r for r in records if isinstance(r, PreferencePair)]
    if pairs:
        n = len(records) - len(pairs)
        return pairs, ({"conversations (the answers of this source's pairs)": n} if n else {})
    return records, {}


def encode_singles(records: Sequence[Conversation], template: Any, tokenizer: Any, categories: Sequence[str], *,
                   max_length: int, overlong: str) -> tuple[dict[str, list], list[DataError], int]:
    """The columns of single rated answers (each assistant turn with a ``harmlessness`` label; the
    record's ``harm_categories`` go with its last one), in the pair layout with an empty rejected side."""
    from steer.apm import apm_text
    from steer.tokens import tokenize

    rows: list[dict[str, list]] = []
    texts: list[str] = []
    errors: list[DataError] = []
    for record in records:
        turns = [(m, a) for m, a in apm.rated_turns(record) if "harmlessness" in a]
        if not turns:
            errors.append(DataError("no labels", f"example {record.id}: no assistant turn carries harmlessness"))
        whole = len(record.chat())
        for messages, attrs in turns:
            flagged = record.meta.get("harm_categories") if len(messages) == whole else None  # the record's last answer
            try:
                texts.append(apm_text(template, messages))
            except SteerError as err:
                errors.append(DataError("template error", f"example {record.id}: {err}"))
                continue
            rows.append({**side_columns("chosen", attrs["harmlessness"], flagged, categories),
                         **side_columns("rejected", None, None, categories)})
    columns: dict[str, list] = {}
    tokens = 0
    for row, (ids, _) in zip(rows, tokenize(tokenizer, texts)):
        if len(ids) > max_length and overlong == "reject":
            errors.append(DataError("too long", f"{len(ids)} tokens > max_length {max_length}"))
            continue
        for name, value in {"chosen_ids": list(ids[-max_length:]), "rejected_ids": [], "strength": [1.0], **row}.items():
            columns.setdefault(name, []).append(value)
        tokens += min(len(ids), max_length)
    return columns, errors, tokens


def _loss(recipe: Recipe) -> Any:
    import torch

    from steer.train.score_loss import cost_loss

    cfg = recipe.cost  # type: ignore[attr-defined]

    def loss(scores: Any, inputs: dict) -> tuple[Any, dict[str, Any]]:
        """Per example ``[B]``: the cost loss (pairwise where there is a rejected side) and the categories'."""
        per_example, metrics = cost_and_sign(scores, inputs)
        if cfg.categories:
            sides = [(inputs["chosen_index"], inputs["chosen_categories"]),
                     (inputs["rejected_index"], inputs["rejected_categories"])]
            per_side, correct = [], []
            for index, flags in sides:
                logits = scores[index.clamp(min=0), 1:]  # [B, C]
                flags = flags.reshape(logits.shape)  # one category: the collator made the column [B]
                known = (flags >= 0) & (index >= 0)[:, None]
                bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, flags.clamp(min=0), reduction="none")
                per_side.append((bce * known).sum(1) / known.sum(1).clamp(min=1))
                correct.append(((logits > 0) == (flags > 0))[known])
            present = 1 + (inputs["rejected_index"] >= 0).float()
            per_example = per_example + cfg.category_weight * (per_side[0] + per_side[1]) / present
            hits = torch.cat(correct)
            if hits.numel():
                metrics["costs/category_accuracy"] = hits.float().mean()
        return per_example, metrics

    def cost_and_sign(scores: Any, inputs: dict) -> tuple[Any, dict[str, Any]]:
        paired = inputs["rejected_index"] >= 0
        safer, unsafer = scores[inputs["chosen_index"], 0], scores[inputs["rejected_index"].clamp(min=0), 0]
        weights = [torch.where(inputs[f"{side}_sign"] > 0, inputs[f"{side}_severity"].clamp(min=1), 1.0)
                   if cfg.severity else None for side in ("chosen", "rejected")]
        per_example = cost_loss(safer, unsafer, inputs["chosen_sign"], inputs["rejected_sign"] * paired,
                                sign_weight=cfg.sign_weight, safer_weight=weights[0], unsafer_weight=weights[1],
                                paired=paired)
        metrics = rm.pair_metrics(unsafer[paired], safer[paired], "costs") if bool(paired.any()) else {}
        signs = torch.cat([inputs["chosen_sign"], inputs["rejected_sign"][paired]])
        costs = torch.cat([safer, unsafer[paired]])
        known = signs != 0
        if bool(known.any()):
            metrics["costs/sign_accuracy"] = ((costs[known] > 0) == (signs[known] > 0)).float().mean()
        return per_example, metrics

    return loss


def outputs(recipe: Recipe) -> list[str]:
    """The head's outputs: the cost, then one per harm category asked for."""
    return ["cost", *recipe.cost.categories]  # type: ignore[attr-defined]


def _encoder(recipe: Recipe, tokenizer: Any, template: Any) -> Any:
    categories = recipe.cost.categories  # type: ignore[attr-defined]
    columns = {**EXTRA, **({"chosen_categories": "float32", "rejected_categories": "float32"} if categories else {})}
    pairs = rm.pair_encoder("cost", tokenizer, template, axes=recipe.cost.axes,  # type: ignore[attr-defined]
                            extra=lambda pair: safety_columns(pair, categories), extra_columns=columns,
                            fingerprint={"categories": list(categories), "singles": 1})

    def encode(records: list, max_length: int, overlong: str) -> EncodedBatch:
        batch = pairs.encode([r for r in records if isinstance(r, PreferencePair)], max_length, overlong)
        singles = [r for r in records if isinstance(r, Conversation)]
        if not singles:
            return batch
        more, errors, tokens = encode_singles(singles, template, tokenizer, categories, max_length=max_length,
                                              overlong=overlong)
        merged = {name: [*batch.columns.get(name, []), *more.get(name, [])] for name in pairs.columns}
        return EncodedBatch(merged, [*batch.errors, *errors], batch.tokens + tokens, len(merged["chosen_ids"]))

    return replace(pairs, encode=encode, accepts=(PreferencePair, Conversation), select=select, loss_unit="pairs/answers")


TASK = Task(
    kind="cost", build_model=lambda r: rm.head_model(r, outputs(r)), template=apm.TASK.template,
    encoder=_encoder,
    collator=lambda r, tok: rm.ScoredPairCollator(r.data.packing, tok.pad_token_id or 0),
    trainer_class=lambda r: rm.trainer_class(r, _loss(r)), export=apm.TASK.export, report=lambda ev: rm._metrics_table(ev, "held-out"),
    next_steps=lambda r, run: [f"steer eval pairs {run} --pairs PAIRS.jsonl",
                               f"steer generate MODEL \"...\" --best-of 4 --judge rm:RM --cost cost:{run} --max-cost 0"],
    run_file=lambda r: rm.run_file("cost", outputs(r), r.cost.axes),
    arguments={"label_names": ["strength"], "include_num_input_tokens_seen": "all"},
)
