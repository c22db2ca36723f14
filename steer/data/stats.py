"""Dataset statistics: attribute histograms, lengths, attribute-vs-length correlations, and the
"always prefer the longer response" baseline for preference pairs ("A Long Way to Go")."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from steer.data.loader import LoadReport
from steer.data.records import Conversation, PreferencePair, Record
from steer.stats import pearson, spearman, summary


def compute(records: Iterable[Record], report: LoadReport, tokenizer: Any = None) -> dict:
    """Statistics of a loaded dataset as one JSON-able dict (lengths in characters, and tokens with a tokenizer)."""
    attrs: dict[str, list[float]] = defaultdict(list)
    lengths: dict[str, list[float]] = defaultdict(list)  # attribute -> response length of the same turns
    prompt_chars, response_chars, response_tokens = [], [], []
    pairs: list[PreferencePair] = []
    for record in records:
        if isinstance(record, PreferencePair):
            pairs.append(record)
            continue
        assert isinstance(record, Conversation)
        for prev, msg in zip([None, *record.messages], record.messages):
            if msg.role != "assistant":
                continue
            response_chars.append(len(msg.text))
            prompt_chars.append(len(prev.text) if prev else 0)  # text only: image parts are not characters
            if tokenizer is not None:
                response_tokens.append(len(tokenizer(msg.text, add_special_tokens=False)["input_ids"]))
            for name, value in (msg.attributes or {}).items():
                attrs[name].append(value)
                lengths[name].append(response_tokens[-1] if tokenizer is not None else len(msg.text))
    out: dict[str, Any] = {**report.to_json(), "length_unit": "tokens" if tokenizer is not None else "characters"}
    out["attributes"] = {name: {"count": len(v), "mean": sum(v) / len(v),
                                "histogram": {str(k): c for k, c in sorted(Counter(v).items())}}
                         for name, v in attrs.items()}
    out["length_correlation"] = {name: {"pearson": pearson(attrs[name], lengths[name]),
                                        "spearman": spearman(attrs[name], lengths[name])} for name in attrs}
    out["lengths"] = {"prompt_chars": summary(prompt_chars), "response_chars": summary(response_chars)}
    if tokenizer is not None:
        out["lengths"]["response_tokens"] = summary(response_tokens)
    if pairs:
        out["preference"] = preference(pairs, report, tokenizer)
    out["_series"] = {"attributes": dict(attrs), "lengths": dict(lengths)}
    return out


def preference(pairs: list[PreferencePair], report: LoadReport, tokenizer: Any = None) -> dict:
    """Pair counts (per axis, per strength), the ties dropped at load, and how far length alone
    agrees with the labels: the share of unequal-length pairs whose longer side is chosen, and the
    chosen and rejected lengths (tokens with a tokenizer, else characters)."""
    def size(texts: list[str]) -> list[int]:
        if tokenizer is None:
            return [len(t) for t in texts]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    chosen, rejected = size([p.chosen for p in pairs]), size([p.rejected for p in pairs])
    unequal = [(c, r) for c, r in zip(chosen, rejected) if c != r]
    return {"pairs": len(pairs), "axes": dict(Counter(p.axis for p in pairs)),
            "strength": {f"{k:g}": v for k, v in sorted(Counter(p.strength for p in pairs if p.strength is not None).items())},
            "ties_dropped": sum(n for reason, n in report.filtered.items() if "ties" in reason),
            "equal_length": len(pairs) - len(unequal),
            "longer_is_chosen": sum(c > r for c, r in unequal) / len(unequal) if unequal else None,
            "length_unit": "tokens" if tokenizer is not None else "characters",
            "chosen_length": summary(chosen), "rejected_length": summary(rejected)}


def plot(stats: dict, path: str) -> str:
    """A PNG with one histogram per attribute and attribute-vs-length scatter plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats["attributes"])
    cols = max(1, len(names))
    fig, axes = plt.subplots(2, cols, figsize=(max(5.0, 3.2 * cols), 6), squeeze=False)
    for i, name in enumerate(names):
        hist = stats["attributes"][name]["histogram"]
        axes[0][i].bar([float(k) for k in hist], list(hist.values()), color="#4c72b0")
        axes[0][i].set_title(f"{name} (mean {stats['attributes'][name]['mean']:.2f})", fontsize=9)
        xs, ys = stats["_series"]["attributes"][name], stats["_series"]["lengths"][name]
        axes[1][i].scatter(xs, ys, s=6, alpha=0.4, color="#dd8452")
        rho = stats["length_correlation"][name]["spearman"]
        axes[1][i].set_title(f"vs length: spearman {rho:.2f}" if rho is not None else "vs length", fontsize=9)
        axes[1][i].set_xlabel(name)
        axes[1][i].set_ylabel(f"response {stats['length_unit']}")
    if not names:
        axes[0][0].text(0.5, 0.5, "no attributes", ha="center")
    fig.suptitle(f"{Path(stats['source']).name} ({stats['format']}): {stats['examples']} examples", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def describe(source: str, *, format: str = "auto", tokenizer: str | None = None, plot_path: str | None = None,
             schema: str | None = None, **loading: Any) -> dict:
    """``steer data stats``: load ``source`` and compute its statistics (lengths in ``tokenizer``
    tokens too when given; labels checked against ``schema``), writing the plot when asked; one
    JSON-able dict."""
    from steer.attributes import get_schema
    from steer.data.inspect import load_source
    from steer.runs import load_tokenizer

    records, report = load_source(source, format=format, schema=get_schema(schema) if schema else None, **loading)
    result = compute(records, report, load_tokenizer(tokenizer) if tokenizer else None)
    if plot_path:
        result["plot"] = plot(result, plot_path)
    result.pop("_series")
    return result
