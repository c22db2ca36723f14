"""Best-of-N: sample N answers to one prompt in one batched call, score each with a judge (a reward
model, ``rm:PATH``, or any judge of one attribute), optionally a cost model with a threshold, and keep
the best answer whose cost is within it (none within: the least costly, marked as such).

``steer generate --best-of N`` and ``steer batch --best-of N`` go through :func:`choose`; each
candidate's scores travel with the answer (``--json``, batch rows' ``candidates``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from steer.engines.base import Response, Sampling
from steer.errors import UsageError

Judge = Callable[[Sequence[Mapping[str, Any]], Sequence[str]], list[dict[str, Any]]]


@dataclass
class BestOf:
    """How to choose among N answers: ``n``, the judge and the name of the score it gives, and an
    optional cost judge with its threshold (the answer is kept when its cost is <= ``max_cost``)."""

    n: int
    judge: Judge
    score: str
    cost: Judge | None = None
    max_cost: float | None = None
    spec: Mapping[str, Any] | None = None  # the command-line settings, recorded with batch rows

    def check(self, sampling: Sampling) -> None:
        if self.n < 2:
            raise UsageError(f"--best-of must be >= 2, got {self.n}")
        if sampling.temperature == 0:
            raise UsageError(f"--best-of {self.n} with --temperature 0 samples {self.n} copies of the greedy answer: "
                             "sample with a temperature > 0")


def make(n: int, judge: str | None, cost: str | None = None, max_cost: float | None = None) -> BestOf:
    """A :class:`BestOf` from command-line settings: judges by spec (``rm:PATH``, ``length``, ``apm:PATH``...)."""
    from steer.evaluate.judges import make_judge

    if judge is None:
        raise UsageError("--best-of needs --judge (rm:PATH, or a judge of one attribute such as apm:PATH)")
    if max_cost is not None and cost is None:
        raise UsageError("--max-cost needs --cost cost:PATH (a cost model from `steer train cost`)")
    if cost is not None and not cost.startswith("cost:"):
        raise UsageError(f"--cost {cost}: expected cost:PATH (a cost model from `steer train cost`)")
    scorer, measured = make_judge(judge)
    if measured is None or len(measured) != 1:
        raise UsageError(f"--judge {judge} measures {'every attribute' if measured is None else ', '.join(measured)}: "
                         "best-of-N needs one score (rm:PATH, or a judge of one attribute)")
    cost_judge = make_judge(cost)[0] if cost else None
    return BestOf(n, scorer, measured[0], cost_judge, max_cost,
                  {"n": n, "judge": judge, "cost": cost, "max_cost": max_cost})


def choose(best: BestOf, rows: Sequence[Mapping[str, Any]], answers: Sequence[Sequence[Response]]
           ) -> list[tuple[int, list[dict[str, Any]]]]:
    """For each prompt row and its N answers: the index of the one kept and every candidate's scores."""
    flat_rows = [row for row, group in zip(rows, answers) for _ in group]
    texts = [r.text for group in answers for r in group]
    scores = [found.get(best.score) for found in best.judge(flat_rows, texts)]
    costs = [found.get("cost") for found in best.cost(flat_rows, texts)] if best.cost else [None] * len(texts)
    out = []
    start = 0
    for group in answers:
        cands = [{"text": r.text, best.score: scores[start + k], **({"cost": costs[start + k]} if best.cost else {}),
                  "finish_reason": r.finish_reason, "completion_tokens": r.completion_tokens}
                 for k, r in enumerate(group)]
        start += len(group)
        out.append((_pick(cands, best), cands))
    return out


def _pick(cands: list[dict[str, Any]], best: BestOf) -> int:
    """The highest-scoring candidate within the cost threshold; none within: the least costly."""
    rank = range(len(cands))
    if best.max_cost is not None:
        within = [k for k in rank if cands[k]["cost"] is not None and cands[k]["cost"] <= best.max_cost]
        for k in rank:
            cands[k]["within_cost"] = k in within
        if not within:
            return min(rank, key=lambda k: cands[k]["cost"])
        rank = within  # type: ignore[assignment]
    return max(rank, key=lambda k: float("-inf") if cands[k][best.score] is None else cands[k][best.score])


def generate_best(req: Any, best: BestOf) -> tuple[Response, list[dict[str, Any]], int]:
    """``req`` (a :class:`steer.generate.api.Request`) sampled ``best.n`` times in one engine call:
    the answer kept, every candidate with its scores, and the kept one's index."""
    best.check(req.sampling)
    answers = req.engine.generate([req.prompt] * best.n, req.sampling, slots=best.n)
    ((index, candidates),) = choose(best, [{"messages": req.messages}], [answers])
    return answers[index], candidates, index
