"""Is length doing the work? The analyses of "A Long Way to Go" (Singhal et al., 2023).

- correlation (Pearson, Spearman) of scores with response length;
- for two sets of outputs on the same prompts: the mean score gain and the non-length reward gain
  (NRG): outputs are bucketed into 20-token length bins, the gain is measured inside each bin and
  weighted by the bin's share of outputs, so a gain that only comes from writing longer vanishes;
- for preference pairs: how often "always prefer the longer response" agrees with the label.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from steer.callables import make_callable
from steer.stats import pearson, spearman

BIN_TOKENS = 20


@dataclass(frozen=True)
class Scored:
    """One response: its prompt key, length (tokens or characters) and score."""

    key: str
    length: int
    score: float


def correlation(rows: Sequence[Scored]) -> dict:
    """Pearson and Spearman of score with length, and the number of responses."""
    lengths, scores = [r.length for r in rows], [r.score for r in rows]
    return {"n": len(rows), "pearson": pearson(lengths, scores), "spearman": spearman(lengths, scores)}


def nrg(base: Sequence[Scored], other: Sequence[Scored], bin_tokens: int = BIN_TOKENS) -> dict:
    """Mean score gain of ``other`` over ``base`` and the part of it not explained by length.

    Both sets are bucketed by ``length // bin_tokens``; NRG = sum over bins holding outputs of both
    sets of (share of all outputs in the bin) x (mean score of ``other`` - mean score of ``base``
    in the bin), the shares renormalised over those bins.
    """
    if not base or not other:
        raise ValueError("both sets need scored responses")
    gain = sum(r.score for r in other) / len(other) - sum(r.score for r in base) / len(base)
    bins: dict[int, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in base:
        bins[r.length // bin_tokens][0].append(r.score)
    for r in other:
        bins[r.length // bin_tokens][1].append(r.score)
    shared = {b: v for b, v in bins.items() if v[0] and v[1]}
    weight = sum(len(a) + len(b) for a, b in shared.values())
    value = (sum((len(a) + len(b)) / weight * (sum(b) / len(b) - sum(a) / len(a)) for a, b in shared.values())
             if weight else None)
    mean_len = (sum(r.length for r in base) / len(base), sum(r.length for r in other) / len(other))
    return {"gain": gain, "nrg": value, "nrg_share": value / gain if value is not None and gain else None,
            "bins": len(bins), "shared_bins": len(shared),
            "outputs_in_shared_bins": weight / (len(base) + len(other)),
            "mean_length": {"base": mean_len[0], "other": mean_len[1]}}


def longer_preferred(pairs: Sequence[tuple[int, int]]) -> dict:
    """Accuracy of "always prefer the longer" on (chosen length, rejected length) pairs (ties left out)."""
    decided = [(c, r) for c, r in pairs if c != r]
    return {"pairs": len(pairs), "ties": len(pairs) - len(decided),
            "accuracy": sum(c > r for c, r in decided) / len(decided) if decided else None}


def token_counter(tokenizer: object | None) -> tuple[Callable[[str], int], str]:
    """A length function and its unit: tokens with a tokenizer, else whitespace-separated words."""
    if tokenizer is None:
        return (lambda text: len(text.split())), "words"
    return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])), "tokens"  # type: ignore[operator]


def _field(row: dict, path: str) -> object:
    value: object = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def read_scored(path: str, column: str, length: Callable[[str], int]) -> list[Scored]:
    """Scored responses from a file of outputs (``steer batch`` / ``steer label`` JSONL, or any rows
    with a ``text`` or ``response`` column); ``column`` may be a dotted path. Errors name file, line
    and column."""
    from steer.data.io import read_rows
    from steer.data.records import DataError
    from steer.errors import UsageError

    rows = []
    for n, row in read_rows(path).rows:
        text, score = row.get("text", row.get("response")), _field(row, column)
        if not isinstance(text, str):
            raise DataError("missing text", "no 'text' or 'response' string", where=path, row=n)
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise DataError("bad score", f"column {column!r} is missing or not a number", where=path, row=n)
        key = str(row.get("key", row.get("id", row.get("prompt", n))))
        rows.append(Scored(key, length(text), float(score)))
    if not rows:
        raise UsageError(f"{path}: no rows")
    return rows


def label_scores(records: Sequence[object], length: Callable[[str], int]) -> tuple[dict[str, list[Scored]], list[tuple[int, int]]]:
    """Per attribute, the labelled assistant turns of a dataset as scored responses; and the
    (chosen, rejected) lengths of its preference pairs."""
    from steer.data.records import Conversation, PreferencePair

    scored: dict[str, list[Scored]] = defaultdict(list)
    pairs: list[tuple[int, int]] = []
    for record in records:
        if isinstance(record, PreferencePair):
            pairs.append((length(record.chosen), length(record.rejected)))
            for side in ("chosen", "rejected"):  # per-response scores (``steer label`` / ``--apm``)
                values = record.labels.get(side)
                for name, value in values.items() if isinstance(values, dict) else ():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        scored[name].append(Scored(f"{record.id}:{side}", length(getattr(record, side)), float(value)))
        elif isinstance(record, Conversation):
            for i, msg in enumerate(record.messages):  # raw scores (an APM's) where a turn has them, else labels
                for name, value in (msg.scores or msg.attributes or {}).items() if msg.role == "assistant" else ():
                    scored[name].append(Scored(f"{record.id}:{i}", length(msg.text), float(value)))
    return dict(scored), pairs


def plot(series: dict[str, Sequence[Scored]], unit: str, path: str) -> str:
    """A PNG of score against length, one colour per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in series.items():
        ax.scatter([r.length for r in rows], [r.score for r in rows], s=8, alpha=0.4, label=name)
    ax.set_xlabel(f"response length ({unit})")
    ax.set_ylabel("score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate(data: str, *, fmt: str = "auto", score: str | None = None, apm: str | None = None,
             compare: str | None = None, tokenizer: str | None = None, plot_path: str | None = None) -> dict:
    """``steer eval length-bias``: score-length correlation of a dataset's labels, an APM's predictions
    or a column of a JSONL of outputs; with ``compare`` the gain and NRG between two output sets; for
    preference pairs the longer-preferred accuracy. Lengths in ``tokenizer`` tokens, else words."""
    from steer.errors import UsageError

    if apm and score:
        raise UsageError("give --score or --apm, not both")
    if compare and not score:
        raise UsageError("--compare needs --score (the column both output files are scored by)")
    model = None
    if apm:  # load it first: a bad path fails before the data is read
        from steer.apm import Scorer

        model = Scorer.load(apm, kinds=("apm", "rm", "cost"))  # a reward model's length bias is the classic case
    tok = None
    if tokenizer:
        from steer.runs import load_tokenizer

        tok = load_tokenizer(tokenizer)
    length, unit = token_counter(tok)
    out: dict = {"data": data, "length_unit": unit}
    series = _scored_outputs(out, data, score, compare, length, unit) if score else _scored_labels(out, data, fmt, model, apm, length)
    if plot_path:
        out["plot"] = plot(series, unit, plot_path)
    return out


def _scored_outputs(out: dict, data: str, score: str, compare: str | None, length: Callable[[str], int],
                    unit: str) -> dict[str, list[Scored]]:
    """Correlation of a score column of outputs with length, and the comparison with a second set."""
    from pathlib import Path

    base = read_scored(data, score, length)
    out["correlation"] = {score: correlation(base)}
    series = {Path(data).name: base}
    if compare:
        other = read_scored(compare, score, length)
        series[Path(compare).name] = other
        out["compare"] = {"other": compare, **nrg(base, other), "bin_" + unit: BIN_TOKENS,
                          "correlation_other": correlation(other)}
    return series


def _scored_labels(out: dict, data: str, fmt: str, model: object, apm: str | None,
                   length: Callable[[str], int]) -> dict[str, list[Scored]]:
    """Correlation of each labelled (or APM-predicted) attribute with length, and the preference pairs."""
    from steer.data.loader import load
    from steer.errors import UsageError

    records, _ = load(data, format=fmt)
    if model is not None:
        from steer.label import predicted

        records = predicted(model, records, raw=True)
        out["scores"] = f"{model.kind}:{apm}"  # type: ignore[attr-defined]
    scored, pairs = label_scores(records, length)
    if not scored and not pairs:
        raise UsageError(f"{data}: no labelled assistant turns and no preference pairs to analyse")
    out["correlation"] = {name: correlation(rows) for name, rows in scored.items()}
    if pairs:
        out["longer_preferred"] = longer_preferred(pairs)
    return scored


make_callable(__name__, "steer.evaluate.length_bias:evaluate")  # steer.evaluate.length_bias(...) is this module's evaluate
