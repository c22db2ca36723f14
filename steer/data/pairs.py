"""``steer data pairs``: preference pairs derived from rated answers to shared prompts.

Answers are grouped by what they answer: a ``steer batch`` row's input row and grid point (its
``meta.group``: the same prompt under the same steering), otherwise the system message and every turn
before the last assistant turn (HelpSteer's responses to one prompt, HelpSteer2's consecutive rows,
OASST's sibling replies). Each answer is scored by ``by``, a weighted sum of attributes (one name,
or ``name=weight`` pairs as HelpSteer2's reward weights), read from a judge's findings when one is
given, else the turn's raw ``scores`` where ``steer label --float`` wrote them, else its ``attributes``. Within a
group, ``best-worst`` pairs the best answer with the worst; ``all`` pairs every two answers. A pair
is kept when the better score leads by more than ``min_margin`` (ties are never pairs); its strength
is that lead, so ``dpo.strength: weight|margin`` can use it. A pair from ``steer batch`` rows carries
the steering they were generated under (rendered into both sides by ``steer train dpo``).

An answer is a record's last assistant turn, or an earlier one that carries labels (OASST's sibling
replies deep in a thread). Every answer is counted: scored, unscored (the attribute missing), a
duplicate of an answer already seen in its group (the first is kept; OASST repeats a reply in every
thread through it), alone in its group, or in a group whose answers tie.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from steer.data.records import Conversation, Message, PreferencePair, Record
from steer.errors import UsageError

MODES = ("best-worst", "all")
Judge = Callable[[Sequence[Mapping[str, Any]], Sequence[str]], list[dict[str, Any]]]


def parse_by(spec: str) -> dict[str, float]:
    """``"correctness"`` or ``"helpfulness=0.65,correctness=0.8"`` into weights by attribute."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not name:
            raise UsageError(f"--by {spec!r}: expected NAME or NAME=WEIGHT,...")
        try:
            weight = float(raw) if sep else 1.0
        except ValueError:
            raise UsageError(f"--by {spec!r}: {raw.strip()!r} is not a number") from None
        if name in weights:
            raise UsageError(f"--by {spec!r}: {name!r} given twice")
        weights[name] = weight
    return weights


@dataclass
class PairReport:
    """How the answers of a source became pairs."""

    answers: int = 0
    groups: int = 0
    pairs: int = 0
    dropped: Counter = field(default_factory=Counter)  # answers or groups left out, by reason
    longer_chosen: int = 0  # pairs whose chosen answer is the longer (characters)
    unequal_length: int = 0
    margins: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        mean = sum(self.margins) / len(self.margins) if self.margins else None
        return {"answers": self.answers, "groups": self.groups, "pairs": self.pairs, "dropped": dict(self.dropped),
                "longer_is_chosen": self.longer_chosen / self.unequal_length if self.unequal_length else None,
                "mean_margin": mean}


def group_key(conv: Conversation) -> str:
    """What an answer answers: a ``steer batch`` row's group, else the system message and earlier turns."""
    if "group" in conv.meta:
        return f"batch:{conv.meta['group']}"
    return json.dumps([conv.system, [(m.role, m.to_json()["content"]) for m in conv.messages[:-1]]], ensure_ascii=False)


def score(message: Message, by: Mapping[str, float], judged: Mapping[str, Any] | None = None) -> float | str:
    """The weighted sum of ``message``'s ratings (a judge's findings first), or the name of the first
    attribute it lacks."""
    total = 0.0
    for name, weight in by.items():
        value = next((source[name] for source in (judged, message.scores, message.attributes)
                      if source and source.get(name) is not None), None)
        if value is None:
            return name
        total += weight * float(value)
    return total


def _judged(answers: list[Conversation], judge: Judge | None) -> list[Mapping[str, Any] | None]:
    """The judge's findings for each answer (its prompt row, or its earlier turns, and its text)."""
    if judge is None:
        return [None] * len(answers)
    rows = [c.meta.get("row") or {"messages": [{"role": "system", "content": c.system}] * bool(c.system)
                                  + [{"role": m.role, "content": m.content} for m in c.messages[:-1]]}
            for c in answers]
    return judge(rows, [c.messages[-1].text for c in answers])


def answers(records: Iterable[Record], report: PairReport) -> list[Conversation]:
    """Every answer, each with the turns before it: a record's last assistant turn, and its earlier
    assistant turns that carry labels (OASST's flattened threads repeat a reply in every thread through
    it: each (prompt, answer) is kept once)."""
    found: list[Conversation] = []
    seen: set[tuple[str, str]] = set()
    for record in records:
        if not isinstance(record, Conversation) or not record.messages or record.messages[-1].role != "assistant":
            report.dropped["not an answer (a pair, or no closing assistant turn)"] += 1
            continue
        last = len(record.messages) - 1
        turns = [last] if "group" in record.meta else [  # a steer batch row: its one answer
            k for k, m in enumerate(record.messages) if m.role == "assistant" and (k == last or m.attributes or m.scores)]
        report.answers += len(turns)
        for k in turns:
            conv = record if k == last else Conversation(id=f"{record.id}@{k}", messages=record.messages[: k + 1],
                                                         system=record.system, source=record.source, meta=record.meta)
            key = (group_key(conv), conv.messages[-1].text)
            if key in seen:
                report.dropped["duplicate answer in its group"] += 1
                continue
            seen.add(key)
            found.append(conv)
    return found


def derive(records: Iterable[Record], by: Mapping[str, float], *, mode: str = "best-worst", min_margin: float = 0.0,
           judge: Judge | None = None, axis: str | None = None) -> tuple[list[PreferencePair], PairReport]:
    """Pairs from the scored answers of ``records`` (see the module docstring); ``axis`` names the
    pairs' axis (default: the attribute, or ``weighted``)."""
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    report = PairReport()
    found = answers(records, report)
    groups: dict[str, list[tuple[float, Conversation]]] = defaultdict(list)
    for conv, judged in zip(found, _judged(found, judge)):
        value = score(conv.messages[-1], by, judged)
        if isinstance(value, str):
            report.dropped[f"unscored (no {value})"] += 1
        else:
            groups[group_key(conv)].append((value, conv))
    report.groups = len(groups)
    name = axis or (next(iter(by)) if len(by) == 1 else "weighted")
    pairs = [pair for scored in groups.values() for pair in _group_pairs(scored, mode, min_margin, name, report)]
    report.pairs = len(pairs)
    return pairs, report


def _group_pairs(scored: list[tuple[float, Conversation]], mode: str, min_margin: float, axis: str,
                 report: PairReport) -> list[PreferencePair]:
    ranked = sorted(scored, key=lambda item: -item[0])  # stable: equal scores keep their order
    if len(ranked) < 2:
        report.dropped["alone in its group"] += len(ranked)
        return []
    candidates = ([(ranked[0], ranked[-1])] if mode == "best-worst" else
                  [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1:]])
    kept = [(a, b) for a, b in candidates if a[0] - b[0] > min_margin]
    if not kept:
        report.dropped["groups whose answers tie (within --min-margin)"] += 1
    return [_pair(a, b, axis, report) for a, b in kept]


def _pair(best: tuple[float, Conversation], worst: tuple[float, Conversation], axis: str,
          report: PairReport) -> PreferencePair:
    (hi, chosen), (lo, rejected) = best, worst
    steering = chosen.meta.get("steering") or {}
    c, r = chosen.messages[-1].text, rejected.messages[-1].text
    report.unequal_length += len(c) != len(r)
    report.longer_chosen += len(c) > len(r)
    report.margins.append(hi - lo)
    return PreferencePair(id=f"{chosen.id}>{rejected.id}", prompt=chosen.messages[:-1], chosen=c, rejected=r,
                          axis=axis, system=chosen.system, source=chosen.source,
                          labels={"chosen": hi, "rejected": lo}, strength=hi - lo,
                          attributes=steering.get("attributes") or None, values=steering.get("values") or None,
                          meta={"chosen_id": chosen.id, "rejected_id": rejected.id})


def write(pairs: Sequence[PreferencePair], out: str, *, inputs: Sequence[str] = ()) -> str:
    """Canonical pair JSONL, written atomically (never onto an input or over a file that is not pairs)."""
    from steer.outputs import atomic_output, jsonl_with

    with atomic_output(out, inputs=inputs, owned=lambda p: jsonl_with(p, ("type", "chosen", "rejected")),
                       what="--out") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair.to_json(), ensure_ascii=False) + "\n")
    return out


def run(source: str, out: str, by: str, *, mode: str = "best-worst", min_margin: float = 0.0, judge: Judge | None = None,
        axis: str | None = None, format: str = "auto", **loading: Any) -> tuple[PairReport, Any]:
    """``steer data pairs``: load ``source``, derive its pairs, write them to ``out``;
    ``(report, load report)``. Nothing is written when no pair comes out."""
    from steer.data.inspect import load_source

    weights = parse_by(by)
    records, loaded = load_source(source, format=format, **loading)
    pairs, report = derive(records, weights, mode=mode, min_margin=min_margin, judge=judge, axis=axis)
    if not pairs:
        reasons = "; ".join(f"{reason}: {n}" for reason, n in report.dropped.items()) or "no answers"
        raise UsageError(f"{source}: no pairs ({report.answers} answers in {report.groups} groups; {reasons})")
    write(pairs, out, inputs=(source,))
    return report, loaded
