"""Tokenizing many texts at once, with character offsets: what data preparation, ``steer data
inspect`` and the attribute prediction model all read their token ids from; and a generated token's
text and bytes (the log-probs an engine reports)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
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


def token_texts(tokenizer: Any, context: list[int], candidates: Sequence[int]) -> list[str]:
    """The text each candidate token adds after ``context`` (the few tokens before it): a word's
    leading space shows as it reads in running text, where decoding a token alone can differ."""
    texts = tokenizer.batch_decode([context, *([*context, c] for c in candidates)], skip_special_tokens=False)
    head = texts[0]
    return [t.removeprefix(head) for t in texts[1:]]


_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_BYTE_LEVEL: WeakKeyDictionary = WeakKeyDictionary()


def token_bytes(tokenizer: Any, token: int, text: str) -> tuple[int, ...]:
    """The bytes ``token`` stands for (``text``: what it reads as): a byte-fallback piece (``<0xE2>``)
    its byte, a byte-level BPE piece its bytes (part of a character, for some), else ``text`` in UTF-8."""
    piece = tokenizer.convert_ids_to_tokens(token)
    if isinstance(piece, str):
        byte = _BYTE_PIECE.fullmatch(piece)
        if byte:
            return (int(byte.group(1), 16),)
        if _byte_level(tokenizer) and all(c in _UNICODE_TO_BYTE for c in piece):
            return tuple(_UNICODE_TO_BYTE[c] for c in piece)
    return tuple(text.encode("utf-8"))


def _byte_level(tokenizer: Any) -> bool:
    """Whether a fast tokenizer decodes with byte-level BPE (GPT-2's byte-to-character map)."""
    if tokenizer not in _BYTE_LEVEL:
        decoder = None
        if getattr(tokenizer, "is_fast", False) and hasattr(tokenizer, "backend_tokenizer"):
            decoder = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder")
        _BYTE_LEVEL[tokenizer] = "ByteLevel" in json.dumps(decoder)
    return _BYTE_LEVEL[tokenizer]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 bytes to printable characters (what byte-level BPE pieces are written in)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(extra)}}


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}
