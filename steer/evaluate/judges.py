"""Judges for steerability: map (prompt row, generated answer) to realised attribute values.

- ``length``: the answer's length in characters, as realised verbosity;
- ``fkgl``: the Flesch-Kincaid grade level, as realised complexity (as the HelpSteer paper measured it);
- ``oracle``: the synthetic corpus's oracles (:func:`steer.synth.judge`), for prompts written by
  ``steer data synth --prompts`` or the quickstart; every helpsteer attribute (and the visual world's,
  :func:`steer.synth_vision.judge`, for rows of ``world: vision``: visual faithfulness and verbosity);
- ``apm:PATH``: a trained attribute prediction model (``steer train apm``): every attribute of its
  schema, raw (unrounded) predictions for the prompt's conversation plus the answer;
- ``rm:PATH``: a reward model (``steer train rm``, or any one-output ``AutoModelForSequenceClassification``): ``reward``;
- ``cost:PATH``: a cost model (``steer train cost``): ``cost`` (> 0: unsafe).

A judge rates a batch: ``judge(rows, texts)`` gives one dict of realised values per answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from steer.errors import UsageError

Judge = Callable[[Sequence[Mapping[str, Any]], Sequence[str]], list[dict[str, Any]]]
Scorer = Callable[[Sequence[Sequence[Mapping[str, Any]]]], list[float]]  # conversations ending in an answer -> a score each
JUDGES = ("length", "fkgl", "oracle", "apm:PATH", "rm:PATH", "cost:PATH")
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

    if row.get("world") == "vision" and isinstance(row.get("facts"), Mapping):  # steer data synth --vision
        from steer import synth_vision

        return synth_vision.judge(row["facts"], text)
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


def reward_model_scorer(path: str, batch_size: int = 16) -> Scorer:
    """A reward model (``AutoModelForSequenceClassification`` with one output) as a scorer; the conversation
    goes through the model's own chat template."""
    import torch

    from steer.runs import ensure_padding, load_model, load_tokenizer, resolve

    ref = resolve(path)
    tokenizer = ensure_padding(load_tokenizer(ref))
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(f"reward model {path!r} has no chat template to render conversations with")
    model = load_model(ref, head="score").eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.padding_side = "right"

    @torch.no_grad()
    def score(convs: Sequence[Sequence[Mapping[str, Any]]]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(convs), batch_size):
            texts = [tokenizer.apply_chat_template([dict(m) for m in c], tokenize=False) for c in convs[start:start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            out += model(**enc).logits[:, 0].float().tolist()
        return out

    return score


def apm_scorer(path: str, attribute: str | None, batch_size: int = 16) -> tuple[Scorer, str]:
    """An APM as a scorer: its raw prediction of ``attribute`` (default helpfulness, else the first)."""
    from steer.apm import APM

    apm = APM.load(path)
    names = apm.names
    name = attribute or ("helpfulness" if "helpfulness" in names else names[0])
    apm.schema.get(name)  # an unknown name is a one-line error with a suggestion
    return (lambda convs: [s[name] for s in apm.score(convs, raw=True, batch_size=batch_size)]), name


_LOADED: dict[tuple, Any] = {}  # one load per model file, however many judges name it (a server's guard and best_of)


def head_scorer(path: str, kind: str, batch_size: int = 16) -> Scorer:
    """A reward or cost model of steer's (``steer train rm|cost``) as a scorer: its one raw output. A run
    folder already loaded in this process, its head file unchanged since, is not loaded again."""
    from pathlib import Path

    from steer.apm import HEAD_FILE
    from steer.apm import Scorer as HeadModel

    head = Path(path).resolve() / HEAD_FILE
    key = (str(head), kind, head.stat().st_mtime_ns) if head.is_file() else None
    model = _LOADED.get(key) if key else None
    if model is None:
        model = HeadModel.load(path, kinds=(kind,))
        if key:
            _LOADED[key] = model
    return lambda convs: [row[0] for row in model.predict(convs, batch_size)]


def is_run_of(path: str, kind: str) -> bool:
    """Whether ``path`` is a steer run directory (or checkpoint) of ``kind``."""
    from pathlib import Path

    from steer.runs import find_run_file

    info = find_run_file(Path(path)) if Path(path).is_dir() else None
    return bool(info) and info.get("kind") == kind


def make_scorer(spec: str, attribute: str | None = None) -> tuple[Scorer, str]:
    """``apm:PATH`` (an attribute's prediction), ``rm:PATH`` (a reward model: steer's, or any
    ``AutoModelForSequenceClassification`` with one output) or ``cost:PATH`` (steer's cost model),
    and the name of what it scores."""
    kind, _, path = spec.partition(":")
    if kind == "apm" and path:
        return apm_scorer(path, attribute)
    if kind in ("rm", "cost") and path:
        if attribute:
            raise UsageError(f"--score-attr applies to apm: judges; {kind}:PATH has one score")
        name = "reward" if kind == "rm" else "cost"
        if kind == "cost" or is_run_of(path, "rm"):
            return head_scorer(path, kind), name
        if is_run_of(path, "apm") or is_run_of(path, "cost"):
            raise UsageError(f"{path} is not a reward model (train one with `steer train rm`)")
        return reward_model_scorer(path), name
    raise UsageError(f"unknown judge {spec!r} (known: apm:PATH, rm:PATH, cost:PATH)")




def scorer_judge(spec: str) -> tuple[Judge, tuple[str, ...]]:
    """``rm:PATH`` or ``cost:PATH`` as a judge: ``{"reward": x}`` or ``{"cost": x}`` per answer."""
    from steer.steering import row_messages

    scorer, name = make_scorer(spec)

    def judge(rows: Sequence[Mapping[str, Any]], texts: Sequence[str]) -> list[dict[str, Any]]:
        convs = [row_messages(dict(row), f"prompt {k}") + [{"role": "assistant", "content": text}]
                 for k, (row, text) in enumerate(zip(rows, texts))]
        return [{name: value} for value in scorer(convs)]

    return judge, (name,)


OWN_SCALE = {"length": "verbosity", "fkgl": "complexity"}  # judges whose values are not on the attribute's scale


def own_scale(spec: str) -> set[str]:
    """The attributes ``spec``'s judges report on a scale of their own (characters, a grade level),
    which a calibration maps onto the attribute's range first."""
    return {OWN_SCALE[part.strip()] for part in spec.split(",") if part.strip() in OWN_SCALE}


def make_judge(spec: str) -> tuple[Judge, tuple[str, ...] | None]:
    """The judge for ``spec`` and the attributes it measures (None: every attribute of the schema);
    judges joined by commas (``length,fkgl``) run together, their findings merged."""
    if "," in spec:
        parts = [make_judge(part.strip()) for part in spec.split(",")]
        if any(measured is None for _, measured in parts):
            raise UsageError(f"--judge {spec}: only judges of named attributes combine (length, fkgl, apm:PATH, "
                             "rm:PATH, cost:PATH)")
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
    if spec.startswith(("rm:", "cost:")) and spec.partition(":")[2]:
        return scorer_judge(spec)
    raise UsageError(f"unknown judge {spec!r} (known: {', '.join(JUDGES)})")
