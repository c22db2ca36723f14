"""Judges for steerability: map (prompt row, generated answer) to realised attribute values.

- ``length``: the answer's length in characters, as realised verbosity;
- ``fkgl``: the Flesch-Kincaid grade level, as realised complexity (as the HelpSteer paper measured it);
- ``oracle``: the synthetic corpus's oracles (:func:`steer.synth.judge`), for prompts written by
  ``steer data synth --prompts`` or the quickstart; every helpsteer attribute;
- ``apm:PATH``: a trained attribute prediction model (``steer train apm``): every attribute of its
  schema, raw (unrounded) predictions for the prompt's conversation plus the answer.

A judge rates a batch: ``judge(rows, texts)`` gives one dict of realised values per answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from steer.errors import UsageError

Judge = Callable[[Sequence[Mapping[str, Any]], Sequence[str]], list[dict[str, Any]]]
JUDGES = ("length", "fkgl", "oracle", "apm:PATH")
_VOWELS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """A heuristic syllable count: vowel groups, a silent final 'e' dropped, at least one."""
    w = word.lower()
    n = len(_VOWELS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and n > 1:
        n -= 1
    return max(1, n)


def fkgl(text: str) -> float | None:
    """Flesch-Kincaid grade level: 0.39 words/sentence + 11.8 syllables/word - 15.59 (None without words)."""
    words = re.findall(r"[A-Za-z]+(?:'[a-z]+)?", text)
    if not words:
        return None
    sentences = max(1, len(re.findall(r"[.!?]+(?:\s|$)", text.strip())) or 1)
    return 0.39 * len(words) / sentences + 11.8 * sum(syllables(w) for w in words) / len(words) - 15.59


def _oracle(row: Mapping[str, Any], text: str) -> dict[str, Any]:
    from steer import synth

    if "field" not in row or "subject" not in row:
        raise UsageError("--judge oracle needs prompts from `steer data synth --prompts` (rows with field/subject/facts)")
    q = dict(row)
    if q["field"] == "sum":
        q["subject"] = tuple(q["subject"])  # JSON turned the pair into a list
    q.setdefault("facts", {})
    return synth.judge(q, text)


def _each(one: Callable[[Mapping[str, Any], str], dict[str, Any]]) -> Judge:
    return lambda rows, texts: [one(row, text) for row, text in zip(rows, texts)]


def apm_judge(path: str, batch_size: int = 16) -> tuple[Judge, tuple[str, ...]]:
    """Judge with a trained APM: each prompt row's messages plus the answer, rated in one batch."""
    from steer.apm import APM
    from steer.steering import row_messages

    apm = APM.load(path)

    def judge(rows: Sequence[Mapping[str, Any]], texts: Sequence[str]) -> list[dict[str, Any]]:
        convs = [row_messages(dict(row), f"prompt {k}") + [{"role": "assistant", "content": text}]
                 for k, (row, text) in enumerate(zip(rows, texts))]
        return apm.score(convs, raw=True, batch_size=batch_size)

    return judge, tuple(apm.schema.names)


def make_judge(spec: str) -> tuple[Judge, tuple[str, ...] | None]:
    """The judge for ``spec`` and the attributes it measures (None: every attribute of the schema);
    judges joined by commas (``length,fkgl``) run together, their findings merged."""
    if "," in spec:
        parts = [make_judge(part.strip()) for part in spec.split(",")]
        if any(measured is None for _, measured in parts):
            raise UsageError(f"--judge {spec}: only judges of named attributes combine (length, fkgl, apm:PATH)")
        names = [name for _, measured in parts for name in measured or ()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise UsageError(f"--judge {spec}: more than one judge measures {', '.join(twice)}")

        def joined(rows: Sequence[Mapping[str, Any]], texts: Sequence[str]) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = [{} for _ in texts]
            for judge, _ in parts:
                for into, more in zip(found, judge(rows, texts)):
                    into.update(more)
            return found

        return joined, tuple(names)
    if spec == "length":
        return _each(lambda row, text: {"verbosity": len(text)}), ("verbosity",)
    if spec == "fkgl":
        return _each(lambda row, text: {"complexity": fkgl(text)}), ("complexity",)
    if spec == "oracle":
        return _each(_oracle), None
    if spec.startswith("apm:") and spec[4:]:
        return apm_judge(spec[4:])
    raise UsageError(f"unknown judge {spec!r} (known: {', '.join(JUDGES)})")
