"""Value-statement matching (Janus): does an answer fit the value statement it was written under
better than the other statements?

For every prompt, the model answers once under each value statement. A judge then scores every
answer under every statement (the statement as the system message of the judged conversation):
``scores[p][i][j]`` is answer ``i`` (written under statement ``i``) judged under statement ``j``.
An answer *matches* when it scores higher under its own statement than under another one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from steer.callables import make_callable
from steer.errors import UsageError

from steer.evaluate.judges import Scorer, make_scorer


def read_values(path: str) -> list[str]:
    """Value statements, one per JSONL row (``value``, ``system`` or ``text``); errors name file and line."""
    from pathlib import Path

    from steer.data.io import read_rows

    if not Path(path).is_file():
        raise UsageError(f"--values: no such file {path}")
    values = []
    for n, row in read_rows(path).rows:
        text = next((row[k] for k in ("value", "system", "text") if isinstance(row.get(k), str)), None)
        if not text or not text.strip():
            raise UsageError(f"{path}:{n}: needs a non-empty 'value' (or 'system' / 'text')")
        values.append(text)
    if len(values) < 2:
        raise UsageError(f"--values: {path} needs at least two statements to compare (got {len(values)})")
    return values


def judged(messages: Sequence[Mapping[str, Any]], value: str, answer: str) -> list[dict]:
    """The conversation a judge reads: the statement as system message, the prompt, the answer."""
    turns = [dict(m) for m in messages if m.get("role") != "system"]
    return [{"role": "system", "content": value}, *turns, {"role": "assistant", "content": answer}]


def score_matrix(prompts: Sequence[list[dict]], values: Sequence[str], answers: Sequence[Sequence[str]],
                 scorer: Scorer) -> list[list[list[float]]]:
    """``scores[p][i][j]``: the answer to prompt ``p`` written under value ``i``, judged under value ``j``."""
    k = len(values)
    convs = [judged(prompts[p], values[j], answers[p][i]) for p in range(len(prompts)) for i in range(k) for j in range(k)]
    flat = scorer(convs)
    return [[flat[(p * k + i) * k:(p * k + i + 1) * k] for i in range(k)] for p in range(len(prompts))]


def matching(scores: Sequence[Sequence[Sequence[float]]], values: Sequence[str]) -> dict:
    """Matched vs mismatched: the share of (answer, other statement) comparisons the own statement wins
    (ties count half), the share of answers that beat every other statement, mean scores, per statement."""
    k = len(values)
    wins = comparisons = best = 0.0
    matched, mismatched = [], []
    per_value = [{"wins": 0.0, "comparisons": 0} for _ in range(k)]
    for prompt in scores:
        for i, row in enumerate(prompt):
            own = row[i]
            others = [row[j] for j in range(k) if j != i]
            won = sum(1.0 if own > o else 0.5 if own == o else 0.0 for o in others)
            wins += won
            comparisons += len(others)
            best += all(own > o for o in others)
            per_value[i]["wins"] += won
            per_value[i]["comparisons"] += len(others)
            matched.append(own)
            mismatched += others
    answers = len(scores) * k
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "prompts": len(scores), "values": k, "answers": answers, "comparisons": int(comparisons),
        "matched_win_rate": wins / comparisons if comparisons else None,
        "best_match_rate": best / answers if answers else None,
        "chance": 0.5, "mean_matched": mean(matched), "mean_mismatched": mean(mismatched),
        "per_value": [{"value": v, "win_rate": pv["wins"] / pv["comparisons"] if pv["comparisons"] else None}
                      for v, pv in zip(values, per_value)],
    }


def evaluate(model: str, prompts: str, values: str, *, judge: str, score_attr: str | None = None,
             temperature: float = 0.0, max_new_tokens: int = 256, batch_size: int = 32, engine: str = "hf",
             template: str | None = None, events: Any = None) -> dict:
    """``steer eval values``: answer every prompt under each value statement, judge every answer under
    every statement, and report matched against mismatched."""
    from steer.engines.base import Sampling
    from steer.engines.load import load_engine
    from steer.evaluate.steerability import answer, read_prompts
    from steer.steering import row_messages, steering_from

    statements = read_values(values)
    rows = read_prompts(prompts)
    scorer, scored_by = make_scorer(judge, score_attr)
    loaded = load_engine(model, engine=engine, template=template)
    messages = [row_messages(dict(r), f"{prompts}:{n}") for n, r in enumerate(rows, start=1)]
    jobs = [(m, steering_from(loaded.template.schema, values=[v])) for m in messages for v in statements]
    texts = answer(loaded, jobs, Sampling(temperature=temperature, max_new_tokens=max_new_tokens, seed=0), events, batch_size)
    k = len(statements)
    answers = [texts[p * k:(p + 1) * k] for p in range(len(rows))]
    return {"model": model, "judge": judge, "scored_by": scored_by,
            **matching(score_matrix(messages, statements, answers, scorer), statements)}


make_callable(__name__, "steer.evaluate.values:evaluate")  # steer.evaluate.values(...) is this module's evaluate
