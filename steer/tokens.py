"""Tokenizing many texts at once, with character offsets: what data preparation, ``steer data
inspect`` and the attribute prediction model all read their token ids from."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

_BACKENDS: WeakKeyDictionary = WeakKeyDictionary()


def tokenize(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Token ids and character offsets of each text, without added special tokens.

    A fast tokenizer is run through its Rust backend directly (a copy with truncation and padding
    off, so nothing the tokenizer file configures changes the result): same ids as calling the
    transformers tokenizer, without its per-call Python overhead.
    """
    if not texts:
        return []
    backend = _BACKENDS.get(tokenizer)
    if backend is None and getattr(tokenizer, "is_fast", False) and hasattr(tokenizer, "backend_tokenizer"):
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_truncation()
        backend.no_padding()
        _BACKENDS[tokenizer] = backend
    if backend is not None:
        return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return list(zip(enc["input_ids"], enc["offset_mapping"]))
