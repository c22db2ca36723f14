"""Batched decoding that drops a row from the batch as soon as it is finished.

``model.generate`` keeps every row of a batch in every step until the last one is done: with answers
of mixed lengths (one stops after 20 tokens, another runs to 200) most of a batch's compute goes
into rows that are already finished. Here a row leaves the batch (its KV cache, mask and position)
the step it emits an end-of-sequence token or completes a stop string, so a step costs what the
unfinished rows cost. The math per row is ``generate``'s (left padding, the same position ids,
greedy argmax, or temperature -> top-k -> top-p sampling with ``transformers``' own warpers), so
greedy answers are the same tokens.

:func:`usable` says when this applies: a decoder-only model whose cache can drop rows and whose
generation config asks for no other logits processing (repetition penalty, n-gram bans, ...);
anything else goes through ``model.generate``.
"""

from __future__ import annotations

from typing import Any

# generation-config fields that add logits processing here would not reproduce (their neutral value)
_NEUTRAL = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": None,
            "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
            "forced_eos_token_id": None, "sequence_bias": None, "encoder_repetition_penalty": 1.0,
            "exponential_decay_length_penalty": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "min_p": None,
            "typical_p": 1.0, "num_beams": 1, "num_return_sequences": 1, "renormalize_logits": False}


def usable(model: Any) -> bool:
    """Whether :func:`decode` reproduces ``model.generate`` for this model."""
    import inspect

    config = getattr(model, "generation_config", None)
    if getattr(model.config, "is_encoder_decoder", False) or config is None:
        return False
    params = inspect.signature(model.forward).parameters
    if "logits_to_keep" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return False
    for name, neutral in _NEUTRAL.items():
        value = getattr(config, name, neutral)
        if value not in (neutral, None) and not (neutral is None and not value):
            return False
    return True


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the generation config's (one or a list)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    extra = getattr(model.generation_config, "eos_token_id", None)
    ids |= set(extra if isinstance(extra, (list, tuple)) else [extra] if extra is not None else [])
    return ids


def _warpers(temperature: float, top_k: int, top_p: float) -> Any:
    from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)

    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


def decode(model: Any, input_ids: Any, attention_mask: Any, *, max_new_tokens: int, eos: set[int],
           stop: Any = None, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0) -> list[list[int]]:
    """New token ids per row of a left-padded batch ``input_ids`` ``[B, L]`` (``attention_mask`` the same
    shape), each up to and including its end-of-sequence token or the token that completes a stop
    string (``stop``: a ``StopStringCriteria``), at most ``max_new_tokens``."""
    import inspect

    import torch
    from transformers import DynamicCache

    device = input_ids.device
    warpers = _warpers(temperature, top_k, top_p) if temperature > 0 else None
    eos_t = torch.tensor(sorted(eos), device=device) if eos else None
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # transformers before the cache took the model's config
        cache = DynamicCache()
    mask = attention_mask
    positions = (mask.long().cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    # transformers 5.24 renamed past_key_values to cache (the old name warns until 5.40)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{name: cache})
    alive = torch.arange(input_ids.shape[0], device=device)  # the original row of each row still decoding
    generated = input_ids.new_empty((input_ids.shape[0], 0))
    results: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    for step in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        if warpers is None:
            tokens = logits.argmax(dim=-1)
        else:
            scores = warpers(generated, logits)
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        done = torch.isin(tokens, eos_t) if eos_t is not None else torch.zeros_like(tokens, dtype=torch.bool)
        if stop is not None:
            done |= stop(generated, None).to(device)
        if step == max_new_tokens - 1:
            done[:] = True
        for row, ids in zip(alive[done].tolist(), generated[done].tolist()):
            results[row] = ids
        if bool(done.all()):
            break
        if bool(done.any()):  # drop the finished rows: the next steps cost only what is left
            keep = torch.nonzero(~done).squeeze(1)
            cache.batch_select_indices(keep)
            alive, generated, mask, tokens = alive[keep], generated[keep], mask[keep], tokens[keep]
            positions = positions[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        positions = positions[:, -1:] + 1
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions, use_cache=True,
                    **{name: cache})
    return results
