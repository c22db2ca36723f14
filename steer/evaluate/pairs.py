"""``steer eval pairs``: how often a reward or cost model ranks a pair as its label does
(RewardBench-style pairwise accuracy), overall and per axis, source and category, against the
"longer wins" baseline on the same pairs; for a cost model also whether each answer's cost has the
sign of its safety label, overall and per severity level.

A pair is ranked right by a reward model when the chosen answer scores higher, by a cost model when
the chosen (safer) answer costs less. Ties count as wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from steer.callables import make_callable
from steer.data.records import PreferencePair
from steer.errors import UsageError


def _rate(hits: Sequence[bool]) -> dict[str, Any]:
    return {"pairs": len(hits), "accuracy": sum(hits) / len(hits) if hits else None}


def category(pair: PreferencePair) -> str | None:
    """A pair's category where its source has one: HelpSteer3's domain, a harm category, SPA-VL's class."""
    for key in ("domain", "category", "class1"):
        value = pair.meta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def accuracy(pairs: Sequence[PreferencePair], chosen: Sequence[float], rejected: Sequence[float], *,
             lower_is_better: bool = False) -> dict[str, Any]:
    """Pairwise accuracy overall and per axis, source and category, the "longer wins" baseline, and how
    often the model's decision agrees with "longer wins" (lengths in characters)."""
    right = [(c < r) if lower_is_better else (c > r) for c, r in zip(chosen, rejected)]
    unequal = [k for k, p in enumerate(pairs) if len(p.chosen) != len(p.rejected)]
    longer_right = [len(pairs[k].chosen) > len(pairs[k].rejected) for k in unequal]
    picks_longer = [right[k] == longer_right[n] for n, k in enumerate(unequal)]
    out: dict[str, Any] = {**_rate(right), "longer_wins": _rate(longer_right),
                           "agrees_with_longer": sum(picks_longer) / len(picks_longer) if picks_longer else None}
    for name, key in (("by_axis", lambda p: p.axis), ("by_source", lambda p: p.source or None), ("by_category", category)):
        groups: dict[str, list[bool]] = defaultdict(list)
        for pair, hit in zip(pairs, right):
            if (value := key(pair)) is not None:
                groups[value].append(hit)
        if len(groups) > 1 or (groups and name == "by_axis"):
            out[name] = {k: _rate(v) for k, v in sorted(groups.items())}
    return out


def sign_rate(items: Sequence[tuple[float, Any]]) -> dict[str, Any] | None:
    """Whether each cost is > 0 exactly when its harmlessness label says unsafe, overall and per
    severity, over ``(cost, harmlessness)`` items (None: no labels)."""
    from steer.attributes import SAFETY_FROM_SEVERITY

    SAFE = SAFETY_FROM_SEVERITY[0]  # noqa: N806  (harmlessness of a safe answer)
    by_level: dict[str, list[bool]] = defaultdict(list)
    for cost, value in items:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            by_level["safe" if value >= SAFE else f"severity {SAFE - value}"].append((cost > 0) == (value < SAFE))
    if not by_level:
        return None
    every = [hit for hits in by_level.values() for hit in hits]
    return {**_rate(every), "by_level": {k: _rate(v) for k, v in sorted(by_level.items())}}


def sign_accuracy(pairs: Sequence[PreferencePair], chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, Any] | None:
    """:func:`sign_rate` over both answers of every pair."""
    return sign_rate([(cost, pair.labels.get(f"{side}_harmlessness")) for pair, costs in zip(pairs, zip(chosen, rejected))
                      for side, cost in zip(("chosen", "rejected"), costs)])


def category_rate(names: Sequence[str], logits: Sequence[Sequence[float]], flagged: Sequence[Any]) -> dict[str, Any] | None:
    """A moderation model's harm categories (flagged when ``logit > 0``) against each answer's flags
    (``flagged``: the list of its categories, None where unknown): per category the accuracy, the recall
    of the flagged answers and the precision of the flags raised, and overall (micro) the same."""
    counts = {name: {"answers": 0, "right": 0, "flagged": 0, "raised": 0, "caught": 0} for name in names}
    for row, flags in zip(logits, flagged):
        if not isinstance(flags, list):
            continue
        for name, logit in zip(names, row):
            c, truth, said = counts[name], name in flags, logit > 0
            c["answers"] += 1
            c["right"] += truth == said
            c["flagged"] += truth
            c["raised"] += said
            c["caught"] += truth and said
    if not any(c["answers"] for c in counts.values()):
        return None

    def rates(c: Mapping[str, int]) -> dict[str, Any]:
        return {"answers": c["answers"], "flagged": c["flagged"], "accuracy": c["right"] / c["answers"],
                "recall": c["caught"] / c["flagged"] if c["flagged"] else None,
                "precision": c["caught"] / c["raised"] if c["raised"] else None}

    total = {k: sum(c[k] for c in counts.values()) for k in ("answers", "right", "flagged", "raised", "caught")}
    return {**rates(total), "by_category": {k: rates(c) for k, c in counts.items() if c["answers"]}}


def single_answers(records: Sequence[Any]) -> list[tuple[list[dict], Any, Any]]:
    """Single rated answers (BeaverTails-style conversations): the conversation up to each answer with a
    harmlessness label, the label, and the record's harm categories for its last answer."""
    from steer.data.records import Conversation

    out = []
    for record in records:
        if isinstance(record, Conversation):
            chat = record.chat()
            for k, m in enumerate(chat):
                if m["role"] == "assistant" and "harmlessness" in (m.get("attributes") or {}):
                    last = k == len(chat) - 1
                    out.append((chat[: k + 1], m["attributes"]["harmlessness"],
                                record.meta.get("harm_categories") if last else None))
    return out


def evaluate(model: str, pairs_source: str, *, fmt: str = "auto", split: str = "train", batch_size: int = 16,
             plot_path: str | None = None, axes: Sequence[str] | None = None) -> dict:
    """``steer eval pairs``: load the model (``steer train rm|cost``) and the pairs on ``axes`` (default:
    the axes it was trained on; every pair when it was trained on all), score both sides. A cost model on
    data without pairs (BeaverTails' single answers) is judged by its signs and categories alone."""
    from steer.apm import Scorer
    from steer.data.loader import load

    scorer = Scorer.load(model, kinds=("rm", "cost"))
    records, report = load(pairs_source, format=fmt, split=split)
    every = [r for r in records if isinstance(r, PreferencePair)]
    wanted = tuple(axes) if axes is not None else scorer.axes
    pairs = [p for p in every if not wanted or p.axis in wanted]
    base = {"model": model, "kind": scorer.kind, "data": pairs_source, "format": report.format}
    if not every and scorer.kind == "cost" and (answers := single_answers(records)):
        return {**base, **_single(scorer, answers, batch_size)}
    if not pairs:
        found = sorted({p.axis for p in every})
        raise UsageError(f"{pairs_source}: no preference pairs" + (f" on {', '.join(wanted)} (axes here: "
                         f"{', '.join(found)}; --axis picks)" if every else f" ({report.examples} records, none of them pairs"
                         + (" or safety-labelled answers)" if scorer.kind == "cost" else ")")))
    convs = [side.chat() for p in pairs for side in p.sides()]
    predicted = scorer.predict(convs, batch_size)
    scores = [row[0] for row in predicted]
    chosen, rejected = scores[0::2], scores[1::2]
    out = {**base, "other_axes": len(every) - len(pairs),
           **accuracy(pairs, chosen, rejected, lower_is_better=scorer.kind == "cost"),
           "mean_chosen": sum(chosen) / len(chosen), "mean_rejected": sum(rejected) / len(rejected)}
    if scorer.kind == "cost":
        out["sign"] = sign_accuracy(pairs, chosen, rejected)
        flagged = [p.labels.get(f"{side}_harm_categories") for p in pairs for side in ("chosen", "rejected")]
        out["categories"] = category_rate(scorer.names[1:], [row[1:] for row in predicted], flagged)
    if plot_path:
        out["plot"] = plot(pairs, chosen, rejected, scorer.kind, plot_path)
    return out


def _single(scorer: Any, answers: Sequence[tuple[list[dict], Any, Any]], batch_size: int) -> dict[str, Any]:
    """A cost model on single rated answers: its signs against the labels, and its categories."""
    predicted = scorer.predict([conv for conv, _, _ in answers], batch_size)
    costs = [row[0] for row in predicted]
    return {"pairs": 0, "answers": len(answers), "mean_cost": sum(costs) / len(costs),
            "sign": sign_rate([(c, value) for c, (_, value, _) in zip(costs, answers)]),
            "categories": category_rate(scorer.names[1:], [row[1:] for row in predicted], [f for _, _, f in answers])}


def plot(pairs: Sequence[PreferencePair], chosen: Sequence[float], rejected: Sequence[float], kind: str, path: str) -> str:
    """A PNG: the score margin of each pair against its length difference (is length doing the work?)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from steer.outputs import atomic_output

    sign = -1 if kind == "cost" else 1
    margins = [sign * (c - r) for c, r in zip(chosen, rejected)]
    lengths = [len(p.chosen) - len(p.rejected) for p in pairs]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(lengths, margins, s=8, alpha=0.6)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("length of chosen - rejected (characters)")
    ax.set_ylabel("score margin (right > 0)")
    fig.tight_layout()
    with atomic_output(path, binary=True, what="--plot") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return path


make_callable(__name__, "steer.evaluate.pairs:evaluate")  # steer.evaluate.pairs(...) is this module's evaluate
