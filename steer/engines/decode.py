"""Batched decoding that drops a row from the batch as soon as it is finished and refills its slot.

``model.generate`` keeps every row of a batch in every step until the last one is done: with answers
of mixed lengths (one stops after 20 tokens, another runs to 200) most of a batch's compute goes
into rows that are already finished. Here a row leaves the batch (its KV cache, mask and position)
the step it emits an end-of-sequence token or completes a stop string, so a step costs what the
unfinished rows cost; as soon as a slot is free, the next waiting prompt is prefilled on its own
and joined to the running batch (the narrower KV cache left-padded and masked, exactly as
left-padded prompts are), so the batch stays full: continuous batching over transformers' cache. The math per row is ``generate``'s (left padding, the same position ids,
greedy argmax, or temperature -> top-k -> top-p sampling with ``transformers``' own warpers), so
greedy answers are the same tokens. A prompt with its own seed samples from its own generator, as
``generate`` samples a lone prompt after ``torch.manual_seed``: the same answer whatever it is
batched with. A prompt that asks for log-probs gets, per step, its token's log-probability and the
k likeliest tokens under the raw logits, computed for the rows that ask only. :func:`steps`
yields each step (streaming several rows at once); :func:`decode` collects the tokens.

:func:`usable` says when this applies: a decoder-only model whose cache can drop rows and whose
generation config asks for no other logits processing (repetition penalty, n-gram bans, ...);
anything else goes through ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

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


class Step(NamedTuple):
    """One row's token of one decoding step: which prompt, the token, whether the row ends with it, and
    (for a row that asks for log-probs) the token's log-probability and the ``k`` most likely tokens
    ``[(id, logprob)]``, both from the log-softmax of the model's raw logits (before temperature,
    top-k and top-p: what OpenAI reports)."""

    row: int
    token: int
    done: bool
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


def decode(model: Any, prompts: list[list[int]], **kwargs: Any) -> list[list[int]]:
    """New token ids for each prompt (token ids), each up to and including its end-of-sequence token or
    the token that completes a stop string: :func:`steps` (its keyword arguments), collected."""
    results: list[list[int]] = [[] for _ in prompts]
    for step in steps(model, prompts, **kwargs):
        for s in step:
            results[s.row].append(s.token)
    return results


def steps(model: Any, prompts: list[list[int]], *, pad_id: int, max_new_tokens: int, eos: set[int],
          stop: Any = None, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
          slots: int | None = None, on_rows: Any = None, seeds: Sequence[int | None] | None = None,
          logprobs: Sequence[int | None] | None = None,
          cancelled: Callable[[int], bool] | None = None) -> Iterator[list[Step]]:
    """Decode ``prompts`` (token ids), yielding each step's :class:`Step` per running row. A row ends
    on an end-of-sequence token, on the token that completes a stop string (``stop``: a
    ``StopStringCriteria``), after ``max_new_tokens``, or when ``cancelled(prompt index)`` says so.
    At most ``slots`` rows decode at once (all when None); a finished row leaves at once and the next
    waiting prompt is prefilled into its slot (measured: refilling every free slot beats waiting for a
    quarter of them, since a step's cost on CPU barely falls with fewer rows). ``on_rows(indices)`` is
    called before each forward pass with the prompts it holds, in row order (per-prompt steering
    vectors follow their rows). ``seeds[i]``: prompt i samples from its own generator so seeded, the
    same tokens whatever it is batched with; ``logprobs[i]``: k, prompt i's steps carry log-probs and
    its k most likely tokens (computed for those rows only)."""
    import torch

    device, name = model.device, _cache_argument(model)
    slots = slots or len(prompts)
    warpers = _warpers(temperature, top_k, top_p) if temperature > 0 else None
    generators = _generators(seeds, device) if warpers is not None else {}
    asks = list(logprobs) if logprobs is not None and any(k is not None for k in logprobs) else None
    eos_t = torch.tensor(sorted(eos), device=device) if eos else None
    waiting = list(range(len(prompts)))[::-1]
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
        tokens = _choose(rows.logits, rows.index, warpers, generators)
        done = torch.isin(tokens, eos_t) if eos_t is not None else torch.zeros_like(tokens, dtype=torch.bool)
        if stop is not None:  # on prompt + answer, as generate does (a stop string may start in the prompt)
            rows.tail = torch.cat([rows.tail[:, 1:], tokens[:, None]], dim=1)
            done |= stop(rows.tail, None).to(device)
        rows.count += 1
        done |= rows.count >= max_new_tokens
        if cancelled is not None:
            done |= torch.tensor([cancelled(i) for i in rows.index], device=device)
        yield _report(rows, tokens, done, asks)
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


def _generators(seeds: Sequence[int | None] | None, device: Any) -> dict[int, Any]:
    """A ``torch.Generator`` per seeded prompt (prompt index -> generator)."""
    import torch

    return {i: torch.Generator(device=device).manual_seed(s) for i, s in enumerate(seeds or ()) if s is not None}


def _choose(logits: Any, index: list[int], warpers: Any, generators: dict[int, Any]) -> Any:
    """The next token of each row ``[R]`` from its logits ``[R, V]``: argmax, or sampled from the warped
    distribution (a seeded prompt's row from its own generator, the others from torch's global one)."""
    import torch

    if warpers is None:
        return logits.argmax(dim=-1)
    probs = torch.softmax(warpers(None, logits), dim=-1)
    own = [j for j, i in enumerate(index) if i in generators]
    if not own:
        return torch.multinomial(probs, num_samples=1).squeeze(1)
    tokens = (torch.multinomial(probs, num_samples=1).squeeze(1) if len(own) < len(index)
              else torch.empty(len(index), dtype=torch.long, device=logits.device))
    for j in own:  # [1, V] each, as generate samples a lone prompt: the same tokens for the same seed
        tokens[j] = torch.multinomial(probs[j:j + 1], num_samples=1, generator=generators[index[j]])[0, 0]
    return tokens


def _report(rows: _Rows, tokens: Any, done: Any, asks: list[int | None] | None) -> list[Step]:
    """This step's :class:`Step` per row; log-probs only for the rows whose prompt asks (``asks[i]``: k)."""
    scored = _logprobs(rows.logits, tokens, [asks[i] for i in rows.index]) if asks is not None else {}
    return [Step(i, t, d, *scored.get(j, (None, None)))
            for j, (i, t, d) in enumerate(zip(rows.index, tokens.tolist(), done.tolist()))]


def _logprobs(logits: Any, tokens: Any, ks: list[int | None]) -> dict[int, tuple[float, list[tuple[int, float]]]]:
    """Row -> (the chosen token's log-prob, the k most likely ``[(id, logprob)]``) for the rows with a k,
    from the log-softmax of the raw logits ``[R, V]``."""
    import torch

    want = [j for j, k in enumerate(ks) if k is not None]
    if not want:
        return {}
    pick = torch.tensor(want, device=logits.device)
    logp = torch.log_softmax(logits[pick], dim=-1)  # [W, V]
    chosen = logp.gather(1, tokens[pick][:, None]).squeeze(1).tolist()
    most = max(ks[j] for j in want)
    top = logp.topk(most, dim=-1) if most else None
    none = [[] for _ in want]
    ids, values = (top.indices.tolist(), top.values.tolist()) if top is not None else (none, none)
    return {j: (chosen[w], list(zip(ids[w][:ks[j]], values[w][:ks[j]]))) for w, j in enumerate(want)}
