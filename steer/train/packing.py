"""Batching: padding-free packing (one row, position ids restart per example) or padded batches.

Packing concatenates the examples of a batch into one row and restarts ``position_ids`` at each
example. Attention must not cross examples: with ``flash_attention_2`` transformers derives the
boundaries from the position ids itself; with ``sdpa`` (CPU, or GPUs without flash-attn) steer
registers ``steer_varlen``, an attention function that runs causal SDPA per example, so a packed
row costs what its examples cost alone (no quadratic block-diagonal mask over the whole row).
The first label of every example is ignored, so no token is trained to predict the next example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from steer.data.encode import IGNORE

VARLEN = "steer_varlen"


class PackedCollator:
    """Flatten a batch into one ``[1, total]`` row with restarting ``position_ids`` (no padding)."""

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            n = len(f["input_ids"])
            ids += list(f["input_ids"])
            labels += [IGNORE] + list(f["labels"])[1:]
            positions += range(n)
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions])}


class PaddedCollator:
    """Right-pad a batch to its longest example, with an attention mask (labels padded with -100)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            n = len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * (width - n))
            labels.append(list(f["labels"]) + [IGNORE] * (width - n))
            mask.append([1] * n + [0] * (width - n))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


class ImageCollator:
    """Another collator's batch plus the pixel inputs of its examples' images (each feature's ``images``:
    JSON references, in the order their tokens appear), computed per batch by the processor."""

    def __init__(self, inner: Any, vision: Any) -> None:
        self.inner, self.vision = inner, vision

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from steer import images

        batch = self.inner(features)
        pictures = [images.load(ref) for f in features for ref in f.get("images") or ()]
        batch.update(self.vision.inputs(batch["input_ids"], pictures))
        return batch


def collator(packing: bool, pad_token_id: int, vision: Any = None) -> Any:
    """The collator of token sequences: packed rows, or padded ones (always, for a vision-language model,
    whose ``vision`` adds the pixel inputs)."""
    if vision is not None:
        return ImageCollator(PaddedCollator(pad_token_id), vision)
    return PackedCollator() if packing else PaddedCollator(pad_token_id)


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, end)`` of each example in a packed row: a new one starts where positions do not go up by 1."""
    pos = position_ids.reshape(-1)
    starts = [0] + (torch.nonzero(pos[1:] != pos[:-1] + 1).reshape(-1) + 1).tolist()
    return list(zip(starts, starts[1:] + [pos.numel()]))


def varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal SDPA per packed example; anything else (padding masks, KV cache, windows) is plain ``sdpa``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kwargs.pop("is_causal", None)
    position_ids = kwargs.get("position_ids")
    plain = (attention_mask is not None or position_ids is None or query.shape[0] != 1
             or query.shape[2] != key.shape[2] or kwargs.get("sliding_window") or kwargs.get("position_bias") is not None)
    spans = None if plain else segments(position_ids)
    if plain or len(spans) == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **({} if plain else {"is_causal": True}), **kwargs)
    gqa = query.shape[1] != key.shape[1]
    # split, not slice: a slice's backward zero-fills a whole-row gradient per example (quadratic in
    # examples per row); split's backward is one concatenation
    lengths = [b - a for a, b in spans]
    parts = [torch.nn.functional.scaled_dot_product_attention(
        q, k, v, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
        for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def varlen_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No mask for packed rows (attention follows the position ids); SDPA's mask when there is padding."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_varlen() -> str:
    """Register ``steer_varlen`` with transformers (idempotent) and return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, varlen_mask)
    return VARLEN
