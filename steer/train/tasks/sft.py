"""The SFT task: attribute-conditioned (SteerLM) and system-message (Janus) fine-tuning of a causal LM.

The recipe's template decides what the model is conditioned on; the encoder renders each
conversation and masks everything but the assistant turns (:mod:`steer.data.encode`); the loss is
token-mean cross-entropy computed only where a token carries loss, fused with the LM head in chunks
for a plain linear head (:mod:`steer.train.fused_ce`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steer.data.encode import IGNORE, Encoded, encode_many
from steer.data.prepare import EncodedBatch, Encoder
from steer.train.loop import Recipe, Task


IMAGES = {"images": "string"}  # the column of a vision-language model's examples: their images' references


def _encoder(recipe: Recipe, tokenizer: Any, template: Any, vision: Any = None) -> Encoder:
    def encode(records: list, max_length: int, overlong: str) -> EncodedBatch:
        encoded = encode_many(records, template, tokenizer, max_length=max_length, overlong=overlong, vision=vision)
        kept = [e for e in encoded if isinstance(e, Encoded)]
        columns = {"input_ids": [e.input_ids for e in kept], "labels": [e.labels for e in kept]}
        if vision is not None:
            columns["images"] = [e.images for e in kept]
        return EncodedBatch(columns, [e for e in encoded if not isinstance(e, Encoded)], sum(len(e.input_ids) for e in kept),
                            sum(e.loss_tokens for e in kept))

    columns = {"input_ids": "int32", "labels": "int32", **(IMAGES if vision is not None else {})}
    return Encoder("sft", template, tokenizer, columns, "with loss", encode, schema=template.schema)


def _collator(recipe: Recipe, tokenizer: Any, vision: Any = None) -> Any:
    from steer.train.packing import collator

    return collator(recipe.data.packing, tokenizer.pad_token_id or 0, vision)


def labelled(labels: Any) -> tuple[Any, Any]:
    """``(keep, targets)``: the positions whose next token carries loss (``[rows, length]`` bool) and
    those next tokens (``[kept]``), in row-major order."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep, labels[:, 1:][keep[:, :-1]]


def trainer_class(recipe: Recipe | None = None) -> type:
    """``transformers.Trainer`` whose loss projects only positions that carry loss onto the vocabulary."""
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

            from steer.train.fused_ce import linear_cross_entropy

            labels = inputs.pop("labels")
            keep, targets = labelled(labels)
            outputs, head = self.kept_states(model, inputs, keep, fused=not return_outputs)
            if head is not None:
                loss = linear_cross_entropy(outputs.logits, head.weight, targets)
            else:
                loss = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="sum")
            loss = loss / self._denominator(targets, num_items_in_batch)
            self.loss_is_scaled_for_ga = num_items_in_batch is not None
            return (loss, outputs) if return_outputs else loss

        def kept_states(self, model: Any, inputs: dict, keep: Any, fused: bool = True) -> tuple[Any, Any]:
            """The model's outputs at the ``keep`` positions (``[kept, ...]`` in ``outputs.logits``) and
            its LM head: with a plain linear head (and ``fused``) the forward runs with the head as the
            identity, so ``outputs.logits`` holds hidden states ``[kept, hidden]`` and the head is
            returned to be fused with the loss; otherwise logits ``[kept, vocab]`` and None."""
            head = self._fusable_head(model) if fused else None
            if head is not None:
                head.forward = lambda x: x
                try:
                    outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
                finally:
                    del head.forward
            else:
                outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
            outputs.logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])
            return outputs, head

        def _denominator(self, targets: Any, num_items_in_batch: Any) -> Any:
            """Tokens the summed loss is divided by: this batch's, or (under gradient accumulation)
            the whole step's, times the processes when tokens are averaged across devices."""
            import torch

            if num_items_in_batch is None:
                return max(targets.numel(), 1)
            denom = num_items_in_batch.clamp(min=1) if torch.is_tensor(num_items_in_batch) else max(int(num_items_in_batch), 1)
            return denom / self.accelerator.num_processes if self.args.average_tokens_across_devices else denom

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


def _export(folder: Path, out: Path, info: dict, dtype: str) -> None:
    """A generator: merged weights, the tokenizer (its chat template steers) and the stop strings in
    ``generation_config.stop_strings``."""
    from steer.runs import load_model, load_tokenizer, resolve, torch_dtype
    from steer.vision import image_inputs

    ref = resolve(folder)
    model = load_model(ref, dtype=None if dtype == "auto" else torch_dtype(dtype), merge=True)
    stop = list(info.get("template", {}).get("stop") or [])
    if stop:
        model.generation_config.stop_strings = stop
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    vision = image_inputs(ref.tokenizer, model.config)
    (vision.processor if vision is not None else load_tokenizer(ref)).save_pretrained(str(out))


def _build(recipe: Recipe) -> Any:
    from steer.train.model import build_model

    return build_model(recipe.model, recipe.train, packing=recipe.data.packing)


def _next_steps(recipe: Recipe, run: Path) -> list[str]:
    """What to run next: generate steered the way this model was trained to be, then export it."""
    schema = recipe.template.build_schema()
    if schema is None:
        steer = '--value "I am a busy expert; be terse."'
    else:
        attr = schema.get("verbosity") if "verbosity" in schema.names else schema.attributes[0]
        steer = f"--attr {attr.name}={attr.min + 1 if attr.max > attr.min else attr.min}"
    return [f'steer generate {run} "..." {steer}', f"steer export {run} --out {run}-merged"]


TASK = Task(
    kind="sft", build_model=_build, template=lambda r, tok: r.template.build(tok), encoder=_encoder,
    collator=_collator, trainer_class=trainer_class, export=_export, next_steps=_next_steps, images=True,
)
