"""The cost-model task (``kind: cost``): Safe RLHF's cost model, a scalar head trained so that the less
safe answer of a pair costs more and each answer's cost has the sign of its safety label (C > 0:
unsafe), on PKU-SafeRLHF's harmlessness pairs (``safer_response_id``) or any pair whose labels say
how safe each side is (``chosen_harmlessness`` / ``rejected_harmlessness`` on the ``safety`` schema's
0-3 scale, 3 safe; a side without one gets no sign term).

A pair's chosen side is the *safer* answer. Options (``cost``): the weight of the sign term, and
``severity`` (an unsafe answer's sign term weighted by its severity, 1-3: PKU's levels). The model,
data layout and trainer are the reward model's (:mod:`steer.train.tasks.rm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from steer.attributes import SAFETY_FROM_SEVERITY
from steer.data.records import PreferencePair
from steer.train.loop import Recipe, Task
from steer.train.tasks import apm, rm

SAFE = SAFETY_FROM_SEVERITY[0]  # harmlessness of a safe answer
EXTRA = {"chosen_sign": "float32", "rejected_sign": "float32", "chosen_severity": "float32",
         "rejected_severity": "float32"}


def safety_columns(pair: PreferencePair, categories: Sequence[str] = ()) -> dict[str, list[float]]:
    """Each side's sign (+1 unsafe, -1 safe, 0 unknown) and severity (0 safe or unknown, 1-3), and with
    ``categories`` one flag per category (1 flagged, 0 not, -1 unknown: no loss)."""
    out: dict[str, list[float]] = {}
    for side in ("chosen", "rejected"):
        value = pair.labels.get(f"{side}_harmlessness")
        known = isinstance(value, (int, float)) and not isinstance(value, bool)
        out[f"{side}_sign"] = [0.0 if not known else (-1.0 if value >= SAFE else 1.0)]
        out[f"{side}_severity"] = [float(SAFE - value) if known and value < SAFE else 0.0]
        if categories:
            flagged = pair.labels.get(f"{side}_harm_categories")
            out[f"{side}_categories"] = ([-1.0] * len(categories) if not isinstance(flagged, list)
                                         else [float(c in flagged) for c in categories])
    return out


def _loss(recipe: Recipe) -> Any:
    import torch

    from steer.train.score_loss import cost_loss

    cfg = recipe.cost  # type: ignore[attr-defined]

    def loss(scores: Any, inputs: dict) -> tuple[Any, dict[str, Any]]:
        per_pair, metrics = cost_and_sign(scores, inputs)
        if cfg.categories:
            logits = scores[:, 1:]  # [2B, C]: chosen 2i, rejected 2i + 1
            flags = torch.stack([inputs["chosen_categories"], inputs["rejected_categories"]], 1).reshape(logits.shape)
            known = flags >= 0
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, flags.clamp(min=0), reduction="none")
            per_seq = (bce * known).sum(1) / known.sum(1).clamp(min=1)  # [2B]
            per_pair = per_pair + cfg.category_weight * (per_seq[0::2] + per_seq[1::2]) / 2
            if bool(known.any()):
                metrics["costs/category_accuracy"] = ((logits[known] > 0) == (flags[known] > 0)).float().mean()
        return per_pair, metrics

    def cost_and_sign(scores: Any, inputs: dict) -> tuple[Any, dict[str, Any]]:
        safer, unsafer = scores[0::2, 0], scores[1::2, 0]
        weights = [torch.where(inputs[f"{side}_sign"] > 0, inputs[f"{side}_severity"].clamp(min=1), 1.0)
                   if cfg.severity else None for side in ("chosen", "rejected")]
        per_pair = cost_loss(safer, unsafer, inputs["chosen_sign"], inputs["rejected_sign"], sign_weight=cfg.sign_weight,
                             safer_weight=weights[0], unsafer_weight=weights[1])
        metrics = rm.pair_metrics(unsafer, safer, "costs")  # accuracy: the less safe answer costs more
        signs = torch.cat([inputs["chosen_sign"], inputs["rejected_sign"]])
        costs = torch.cat([safer, unsafer])
        known = signs != 0
        if bool(known.any()):
            metrics["costs/sign_accuracy"] = ((costs[known] > 0) == (signs[known] > 0)).float().mean()
        return per_pair, metrics

    return loss


def outputs(recipe: Recipe) -> list[str]:
    """The head's outputs: the cost, then one per harm category asked for."""
    return ["cost", *recipe.cost.categories]  # type: ignore[attr-defined]


def _encoder(recipe: Recipe, tokenizer: Any, template: Any) -> Any:
    categories = recipe.cost.categories  # type: ignore[attr-defined]
    columns = {**EXTRA, **({"chosen_categories": "float32", "rejected_categories": "float32"} if categories else {})}
    return rm.pair_encoder("cost", tokenizer, template, axes=recipe.cost.axes,  # type: ignore[attr-defined]
                           extra=lambda pair: safety_columns(pair, categories), extra_columns=columns,
                           fingerprint={"categories": list(categories)})


TASK = Task(
    kind="cost", build_model=lambda r: rm.head_model(r, outputs(r)), template=apm.TASK.template,
    encoder=_encoder,
    collator=lambda r, tok: rm.ScoredPairCollator(r.data.packing, tok.pad_token_id or 0),
    trainer_class=lambda r: rm.trainer_class(r, _loss(r)), export=apm.TASK.export, report=rm._metrics_table,
    next_steps=lambda r, run: [f"steer eval pairs {run} --pairs PAIRS.jsonl",
                               f"steer generate MODEL \"...\" --best-of 4 --judge rm:RM --cost cost:{run} --max-cost 0"],
    run_file=lambda r: rm.run_file("cost", outputs(r), r.cost.axes),
    arguments={"label_names": ["strength"], "include_num_input_tokens_seen": "all"},
)
