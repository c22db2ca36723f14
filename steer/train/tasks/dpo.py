"""The DPO task: preference optimisation on pairs (the DPO family, :mod:`steer.train.dpo_loss`).

A pair becomes two conversations rendered by the same template as SFT (the prompt, its steering,
then the chosen or the rejected reply) and tokenized with the same loss masks. A batch of ``B``
pairs is one packed row of ``2B`` sequences (chosen ``2i``, rejected ``2i + 1``; per-example
attention as in SFT) or ``2B`` padded rows. Log-probabilities are taken only at labelled positions,
chunked and fused with a linear LM head (:func:`steer.train.fused_ce.linear_logprobs`): no
``[tokens, vocab]`` tensor exists.

The reference policy (``dpo.reference``): with LoRA, the base model with the adapter disabled (no
second copy); with full weights, its log-probabilities computed in one pass before training
(``precompute``, cached beside the prepared data) or a frozen copy (``model``); the reference-free
losses (SimPO, ORPO) need none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steer.config import REFERENCE_FREE, DPOConfig
from steer.data.encode import Encoded, encode_many
from steer.data.prepare import IDENTICAL, OTHER_AXIS, EncodedBatch, Encoder
from steer.data.records import DataError, PreferencePair
from steer.train.loop import MetricStore, Recipe, Task
from steer.train.tasks import sft
from steer.vision import PIXEL_INPUTS

COLUMNS = {"chosen_ids": "int32", "chosen_labels": "int32", "rejected_ids": "int32", "rejected_labels": "int32",
           "strength": "float32"}



def pair_values(pair: PreferencePair, cfg: DPOConfig) -> list[str] | None:
    """The value statements both sides are rendered with: the pair's own, then its axis's ``dpo.condition``."""
    found = list(pair.values or []) + ([cfg.condition[pair.axis]] if pair.axis in cfg.condition else [])
    return found or None


def encode_pairs(pairs: Sequence[PreferencePair], template: Any, tokenizer: Any, cfg: DPOConfig, *,
                 max_length: int | None = None, overlong: str = "truncate",
                 vision: Any = None) -> list[tuple[Encoded, Encoded, float] | DataError]:
    """``(chosen, rejected, strength)`` per pair (strength 1 when the pair has none), or why it is rejected."""
    wanted = [p for p in pairs if not cfg.axes or p.axis in cfg.axes]
    convs = [c for p in wanted for c in p.sides()]
    values = [v for p in wanted for v in [pair_values(p, cfg)] * 2]
    encoded = encode_many(convs, template, tokenizer, max_length=max_length, overlong=overlong, values=values,
                          reply=True, vision=vision)
    out: list[tuple[Encoded, Encoded, float] | DataError] = [
        DataError(OTHER_AXIS, f"pair {p.id}: axis {p.axis!r} is not in dpo.axes") for p in pairs
        if cfg.axes and p.axis not in cfg.axes]
    for n, pair in enumerate(wanted):
        chosen, rejected = encoded[2 * n], encoded[2 * n + 1]
        bad = next((e for e in (chosen, rejected) if isinstance(e, DataError)), None)
        if bad is not None:
            out.append(DataError(bad.reason, f"pair {pair.id}: {bad.detail}"))
        elif chosen.input_ids == rejected.input_ids:
            out.append(DataError(IDENTICAL, f"pair {pair.id}: chosen and rejected are the same text"))
        else:
            out.append((chosen, rejected, pair.strength if pair.strength is not None else 1.0))  # type: ignore[arg-type]
    return out


def _encoder(recipe: Recipe, tokenizer: Any, template: Any, vision: Any = None) -> Encoder:
    cfg: DPOConfig = recipe.dpo  # type: ignore[attr-defined]

    def encode(records: list, max_length: int, overlong: str) -> EncodedBatch:
        encoded = encode_pairs(records, template, tokenizer, cfg, max_length=max_length, overlong=overlong,
                               vision=vision)
        kept = [e for e in encoded if not isinstance(e, DataError)]
        columns = {"chosen_ids": [c.input_ids for c, _, _ in kept], "chosen_labels": [c.labels for c, _, _ in kept],
                   "rejected_ids": [r.input_ids for _, r, _ in kept], "rejected_labels": [r.labels for _, r, _ in kept],
                   "strength": [[s] for _, _, s in kept]}
        if vision is not None:  # both sides share the prompt, and so its images
            columns["images"] = [c.images for c, _, _ in kept]
        return EncodedBatch(columns, [e for e in encoded if isinstance(e, DataError)],
                            sum(len(c.input_ids) + len(r.input_ids) for c, r, _ in kept), len(kept))

    return Encoder("dpo", template, tokenizer, {**COLUMNS, **(sft.IMAGES if vision is not None else {})}, "pairs",
                   encode, accepts=(PreferencePair,), schema=template.schema,
                   fingerprint={"axes": cfg.axes, "condition": cfg.condition})


class PairCollator:
    """A batch of pairs as the SFT collators lay out ``2B`` sequences (chosen ``2i``, rejected ``2i + 1``),
    plus ``strength`` and, when precomputed, ``ref_chosen`` / ``ref_rejected``, each ``[B]``; with a
    vision-language model each side carries the pair's images."""

    def __init__(self, packing: bool, pad_token_id: int, vision: Any = None) -> None:
        from steer.train.packing import collator

        self.inner = collator(packing, pad_token_id, vision)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        flat = [{"input_ids": f[f"{side}_ids"], "labels": f[f"{side}_labels"], "images": f.get("images")}
                for f in features for side in ("chosen", "rejected")]
        batch = self.inner(flat)
        batch["strength"] = torch.tensor([float(f["strength"][0]) for f in features])
        for name in ("ref_chosen", "ref_rejected"):
            if name in features[0]:
                batch[name] = torch.tensor([float(f[name]) for f in features], dtype=torch.float64)
        return batch


def example_index(labels: Any, keep: Any, position_ids: Any = None) -> Any:
    """The sequence each kept position belongs to (``[kept]``): its row, or in a packed row its
    example (position ids restart at 0 for each)."""
    import torch

    if position_ids is not None and labels.shape[0] == 1:
        grid = torch.cumsum(position_ids == 0, dim=1) - 1
    else:
        grid = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)
    return grid[keep]


def resolve_reference(cfg: DPOConfig, method: str) -> str:
    """What ``dpo.reference: auto`` means for this recipe: none, adapter (LoRA) or precompute."""
    if cfg.loss in REFERENCE_FREE:
        return "none"
    if cfg.reference != "auto":
        return cfg.reference
    return "precompute" if method == "full" else "adapter"


def trainer_class(recipe: Recipe) -> type:
    """The SFT trainer (its fused head) with the preference loss, the reference and the pair metrics."""
    import torch

    from steer.train.dpo_loss import PairLogps, pair_loss, sequence_logps
    from steer.train.fused_ce import linear_logprobs

    cfg: DPOConfig = recipe.dpo  # type: ignore[attr-defined]
    reference = resolve_reference(cfg, recipe.train.method)

    class DPOTrainer(sft.trainer_class(recipe)):  # type: ignore[misc]
        """``compute_loss`` is the pair loss; metrics are averaged per log step (``rewards/*``, ``logps/*``, ``length/*``)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # a mean over pairs: the Trainer scales it for accumulation
            self.store = MetricStore()
            self.ref_model = None
            if reference == "model":
                import copy

                self.ref_model = copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)
            elif reference == "precompute":
                self.train_dataset = self.with_reference(self.train_dataset)
                if self.eval_dataset is not None:
                    self.eval_dataset = self.with_reference(self.eval_dataset)

        def token_logps(self, model: Any, inputs: dict) -> tuple[Any, Any, int]:
            """Log-probabilities of the labelled tokens ``[kept]``, the sequence of each ``[kept]`` and the number of sequences."""
            labels = inputs["labels"]
            keep, targets = sft.labelled(labels)
            forward = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids", *PIXEL_INPUTS) if k in inputs}
            outputs, head = self.kept_states(model, forward, keep)
            if head is not None:
                logps = linear_logprobs(outputs.logits, head.weight, targets)
            else:
                logps = torch.log_softmax(outputs.logits.float(), -1).gather(1, targets[:, None]).squeeze(1)
            example = example_index(labels, keep, inputs.get("position_ids"))
            return logps, example, int(example.max()) + 1 if example.numel() else 0

        def sums(self, model: Any, inputs: dict) -> tuple[Any, Any, Any]:
            """``(LD-weighted sums, plain sums, token counts)`` per sequence, each ``[2B]``."""
            logps, example, n = self.token_logps(model, inputs)
            return sequence_logps(logps, example, n, cfg.ld_alpha)

        @torch.no_grad()
        def reference_sums(self, model: Any, inputs: dict) -> Any:
            """The reference's LD-weighted sums ``[2B]``: the base without its adapter, or the frozen copy."""
            if self.ref_model is not None:
                return self.sums(self.ref_model, inputs)[0]
            with self.accelerator.unwrap_model(model).disable_adapter():
                return self.sums(model, inputs)[0]

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            weighted, plain, counts = self.sums(model, inputs)
            if reference in ("adapter", "model"):
                ref = self.reference_sums(model, inputs)
                ref_c, ref_r = ref[0::2], ref[1::2]
            elif reference == "precompute":
                ref_c, ref_r = inputs["ref_chosen"].to(weighted.dtype), inputs["ref_rejected"].to(weighted.dtype)
            else:
                ref_c = ref_r = None
            logps = PairLogps(weighted[0::2], weighted[1::2], counts[0::2], counts[1::2],
                              -plain[0::2] / counts[0::2].clamp(min=1), ref_c, ref_r, inputs["strength"].to(weighted.dtype))
            result = pair_loss(cfg, logps)
            loss = result.loss.mean()
            self.remember(logps, result, "train" if model.training else "eval")
            self.loss_is_scaled_for_ga = False
            return (loss, {}) if return_outputs else loss

        def remember(self, logps: Any, result: Any, mode: str) -> None:
            """Keep this batch's pair metrics until the next log line."""
            c, r = result.chosen_reward, result.rejected_reward
            self.store.add(mode, {"rewards/chosen": c.mean(), "rewards/rejected": r.mean(),
                                  "rewards/margins": (c - r).mean(), "rewards/accuracies": (c > r).float().mean(),
                                  "logps/chosen": logps.chosen.mean(), "logps/rejected": logps.rejected.mean(),
                                  "nll/chosen": logps.chosen_nll.mean(), "length/chosen": logps.chosen_tokens.mean(),
                                  "length/rejected": logps.rejected_tokens.mean()})

        def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
            self.store.merge(logs)
            super().log(logs, *args, **kwargs)

        def with_reference(self, dataset: Any) -> Any:
            """``dataset`` with ``ref_chosen`` / ``ref_rejected`` columns: the reference (the model before
            training) scored once, cached by the data's fingerprint and the model's identity."""
            path = reference_cache(recipe, dataset)
            if path.is_file():
                cached = json.loads(path.read_text(encoding="utf-8"))
                if len(cached["chosen"]) == len(dataset):
                    return dataset.add_column("ref_chosen", cached["chosen"]).add_column("ref_rejected", cached["rejected"])
            chosen, rejected = self.score_reference(dataset)
            from steer.outputs import write_text_atomic

            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps({"chosen": chosen, "rejected": rejected}))
            return dataset.add_column("ref_chosen", chosen).add_column("ref_rejected", rejected)

        @torch.no_grad()
        def score_reference(self, dataset: Any) -> tuple[list[float], list[float]]:
            """The model's LD-weighted sums for every pair of ``dataset``, in order, in eval mode."""
            model = self.model
            was_training = model.training
            model.eval()
            chosen: list[float] = []
            rejected: list[float] = []
            size = self.args.per_device_eval_batch_size
            try:
                for start in range(0, len(dataset), size):
                    batch = self.data_collator([dataset[i] for i in range(start, min(start + size, len(dataset)))])
                    batch = self._prepare_inputs(batch)
                    with self.compute_loss_context_manager():
                        weighted = self.sums(model, batch)[0].double()
                    chosen += weighted[0::2].tolist()
                    rejected += weighted[1::2].tolist()
            finally:
                model.train(was_training)
            return chosen, rejected

    return DPOTrainer


def reference_cache(recipe: Recipe, dataset: Any) -> Path:
    """Where the precomputed reference log-probabilities of ``dataset`` are kept: named by a hash of the
    data's fingerprint, the model (its config, or its weight files' names, sizes and times) and every
    setting that changes the sums."""
    from steer import __version__
    from steer.data.prepare import cache_root
    from steer.train.model import model_ref

    m = recipe.model
    h = hashlib.sha256(json.dumps({
        "version": __version__, "data": getattr(dataset, "_fingerprint", None), "rows": len(dataset),
        "model": model_ref(m.name_or_path), "from_scratch": m.from_scratch, "seed": recipe.train.seed, "dtype": m.dtype,
        "precision": recipe.train.mixed_precision, "ld_alpha": recipe.dpo.ld_alpha,  # type: ignore[attr-defined]
        "attention": m.attn_implementation, "packing": recipe.data.packing,
    }, sort_keys=True, default=str).encode())
    ref = model_ref(m.name_or_path)
    if ref and Path(ref).is_dir():
        for f in sorted(Path(ref).rglob("*")):
            if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"):
                st = f.stat()
                h.update(f"{f.relative_to(ref)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_root(recipe.data) / "reference" / f"{h.hexdigest()[:16]}.json"


def _metrics_table(evaluation: dict) -> dict[str, dict[str, float]]:
    """The held-out pairs' accuracy, margin and lengths, as one table row."""
    keys = {"accuracy": "eval_rewards/accuracies", "margin": "eval_rewards/margins",
            "chosen tokens": "eval_length/chosen", "rejected tokens": "eval_length/rejected"}
    row = {name: evaluation[key] for name, key in keys.items() if key in evaluation}
    return {"held-out pairs": row} if row else {}


def _next_steps(recipe: Recipe, run: Path) -> list[str]:
    return [*sft._next_steps(recipe, run)[:1],
            f"steer eval steerability {run} --prompts PROMPTS.jsonl --judge JUDGE",
            f"steer export {run} --out {run}-merged"]


TASK = Task(
    kind="dpo", build_model=sft.TASK.build_model, template=sft.TASK.template, encoder=_encoder,
    collator=lambda r, tok, vision=None: PairCollator(r.data.packing, tok.pad_token_id or 0, vision),
    trainer_class=trainer_class, images=True,
    export=sft.TASK.export, next_steps=_next_steps, report=_metrics_table,
    run_file=lambda r: {"dpo": {"loss": r.dpo.loss, "beta": r.dpo.beta, "reference": resolve_reference(r.dpo, r.train.method)}},
    arguments={"label_names": ["labels"], "include_num_input_tokens_seen": "all"},
)
