"""Batched decoding that drops a row from the batch as soon as it is finished and refills its slot.

``model.generate`` keeps every row of a batch in every step until the last one is done: with answers
of mixed lengths (one stops after 20 tokens, another runs to 200) most of a batch's compute goes
into rows that are already finished. Here a row leaves the batch (its KV cache, mask and position)
the step it emits an end-of-sequence token or completes a stop string, so a step costs what the
unfinished rows cost; as soon as a slot is free, the next waiting prompt is prefilled on its own
and joined to the running batch (the narrower KV cache left-padded and masked, exactly as
left-padded prompts are), so the batch stays full: continuous batching over transformers' cache. The math per row is ``generate``'s (left padding, the same position ids,
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


class _Rows:
    """The rows decoding now: their KV cache, attention mask ``[R, W]``, last position ``[R, 1]``, the
    logits of their next token ``[R, V]`` and which prompt each row is (``index``)."""

    def __init__(self, cache: Any, mask: Any, position: Any, logits: Any, index: list[int], tail: Any) -> None:
        self.cache, self.mask, self.position, self.logits, self.index = cache, mask, position, logits, index
        self.tail = tail  # [R, TAIL] the last tokens of prompt + answer, right-aligned (stop strings)
        self.count = mask.new_zeros(mask.shape[0])  # [R] tokens generated so far

    def keep(self, keep: Any) -> None:
        """Only the rows ``keep`` (indices) stay; columns that are padding for every row left go too."""
        self.cache.batch_select_indices(keep)
        self.mask, self.position, self.logits = self.mask[keep], self.position[keep], self.logits[keep]
        self.tail, self.count = self.tail[keep], self.count[keep]
        self.index = [self.index[i] for i in keep.tolist()]
        lead = int((self.mask.cumsum(dim=1) == 0).all(dim=0).sum())
        if lead and lead < self.mask.shape[1]:
            self.mask = self.mask[:, lead:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., lead:, :], layer.values[..., lead:, :]

    def join(self, other: _Rows) -> None:
        """Add ``other``'s rows: the narrower cache is left-padded (masked), as left-padded prompts are."""
        import torch

        wide = max(self.mask.shape[1], other.mask.shape[1])
        for rows in (self, other):
            extra = wide - rows.mask.shape[1]
            if extra:
                rows.mask = torch.cat([rows.mask.new_zeros((rows.mask.shape[0], extra)), rows.mask], dim=1)
                for layer in rows.cache.layers:
                    pad = layer.keys.new_zeros((*layer.keys.shape[:2], extra, layer.keys.shape[3]))
                    layer.keys, layer.values = torch.cat([pad, layer.keys], 2), torch.cat([pad, layer.values], 2)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys, mine.values = torch.cat([mine.keys, theirs.keys]), torch.cat([mine.values, theirs.values])
        self.mask = torch.cat([self.mask, other.mask])
        self.position = torch.cat([self.position, other.position])
        self.logits = torch.cat([self.logits, other.logits])
        self.tail, self.count = torch.cat([self.tail, other.tail]), torch.cat([self.count, other.count])
        self.index += other.index


TAIL = 64  # tokens of context a stop string is looked for in


def _cache_argument(model: Any) -> str:
    import inspect

    # transformers 5.24 renamed past_key_values to cache (the old name warns until 5.40)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT passes **kwargs on
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _prefill(model: Any, prompts: list[list[int]], index: list[int], pad_id: int, device: Any, name: str) -> _Rows:
    """Run ``prompts`` (left-padded into one batch) through the model into a fresh cache."""
    import torch
    from transformers import DynamicCache

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # transformers before the cache took the model's config
        cache = DynamicCache()
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{name: cache})
    tail = ids[:, -TAIL:] if width >= TAIL else torch.cat([ids.new_full((len(prompts), TAIL - width), pad_id), ids], 1)
    return _Rows(cache, mask, positions[:, -1:], out.logits[:, -1, :].float(), list(index), tail)


def _joinable(cache: Any) -> bool:
    """Whether rows can be added to this cache (plain growing layers, no sliding windows or states)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))


def decode(model: Any, prompts: list[list[int]], *, pad_id: int, max_new_tokens: int, eos: set[int],
           stop: Any = None, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
           slots: int | None = None, on_rows: Any = None) -> list[list[int]]:
    """New token ids for each prompt (token ids), each up to and including its end-of-sequence token or
    the token that completes a stop string (``stop``: a ``StopStringCriteria``), at most
    ``max_new_tokens``. At most ``slots`` rows decode at once (all when None); a finished row leaves
    at once and the next waiting prompt is prefilled into its slot (measured: refilling every free slot
    beats waiting for a quarter of them, since a step's cost on CPU barely falls with fewer rows).
    ``on_rows(indices)`` is called before each forward pass with the prompts it holds, in row order
    (per-prompt steering vectors follow their rows)."""
    import torch

    device, name = model.device, _cache_argument(model)
    slots = slots or len(prompts)
    warpers = _warpers(temperature, top_k, top_p) if temperature > 0 else None
    eos_t = torch.tensor(sorted(eos), device=device) if eos else None
    waiting = list(range(len(prompts)))[::-1]
    results: list[list[int]] = [[] for _ in prompts]
    rows: _Rows | None = None
    refill = True
    while waiting or rows is not None:
        free = slots - (len(rows.index) if rows else 0)
        if waiting and (rows is None or (refill and free >= 1)):
            take = [waiting.pop() for _ in range(min(free, len(waiting)))]
            if on_rows is not None:
                on_rows(take)
            new = _prefill(model, [prompts[i] for i in take], take, pad_id, device, name)
            if rows is None:
                rows, refill = new, _joinable(new.cache)
            else:
                rows.join(new)
        assert rows is not None
        if warpers is None:
            tokens = rows.logits.argmax(dim=-1)
        else:
            scores = warpers(None, rows.logits)
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        done = torch.isin(tokens, eos_t) if eos_t is not None else torch.zeros_like(tokens, dtype=torch.bool)
        for row, token in zip(rows.index, tokens.tolist()):
            results[row].append(token)
        if stop is not None:  # on prompt + answer, as generate does (a stop string may start in the prompt)
            rows.tail = torch.cat([rows.tail[:, 1:], tokens[:, None]], dim=1)
            done |= stop(rows.tail, None).to(device)
        rows.count += 1
        done |= rows.count >= max_new_tokens
        if bool(done.all()):
            rows = None
            continue
        if bool(done.any()):
            rows.keep(torch.nonzero(~done).squeeze(1))
            tokens = tokens[~done]
        rows.mask = torch.cat([rows.mask, rows.mask.new_ones((rows.mask.shape[0], 1))], dim=1)
        rows.position = rows.position + 1
        if on_rows is not None:
            on_rows(rows.index)
        out = model(input_ids=tokens[:, None], attention_mask=rows.mask, position_ids=rows.position, use_cache=True,
                    **{name: rows.cache})
        rows.logits = out.logits[:, -1, :].float()
    return results
