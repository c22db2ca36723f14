"""The plots of a steerability sweep: requested against realised, per attribute (one method: every
answer and the mean per level; several: a line per method)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any



def plot(summary: dict[str, dict], requests: Sequence[Any], realised: Sequence[dict[str, Any]], path: str) -> str:
    """A PNG with one panel per swept attribute: every judged answer (jittered) and the mean per level."""
    import random

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    jitter = random.Random(0)
    for ax, name in zip(axes[0], names):
        pts = [(r.level, v[name]) for r, v in zip(requests, realised) if r.attribute == name and v.get(name) is not None]
        ax.scatter([x + jitter.uniform(-0.15, 0.15) for x, _ in pts], [y + jitter.uniform(-0.1, 0.1) for _, y in pts],
                   s=6, alpha=0.25, color="tab:blue")
        levels = [lv for lv in summary[name]["levels"] if lv["realised"] is not None]
        ax.plot([lv["requested"] for lv in levels], [lv["realised"] for lv in levels], "o-", color="tab:red", label="mean")
        lo = min((lv["requested"] for lv in summary[name]["levels"]), default=0)
        hi = max((lv["requested"] for lv in summary[name]["levels"]), default=4)
        ax.plot([lo, hi], [lo, hi], ":", color="grey", label="ideal")
        rho = summary[name]["spearman"]
        ax.set_title(f"{name}\nSpearman {rho:.2f}" if rho is not None else name, fontsize=10)
        ax.set_xlabel("requested")
        ax.set_xticks(range(lo, hi + 1))
    axes[0][0].set_ylabel("realised")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


METHOD_COLOURS = {"attributes": "tab:red", "prompt": "tab:blue", "values": "tab:green", "vector": "tab:purple"}


def plot_methods(result: Any, path: str) -> str:
    """A PNG comparing methods (``result``: a :class:`steer.evaluate.steerability.Sweep`): one panel
    per swept attribute, the mean realised value per requested level, a line per method (one method:
    :func:`plot`)."""
    if len(result.methods) <= 1:
        one = [(r, j) for r, j in zip(result.requests, result.judged) if r.other is None]
        return plot(result.summary, [r for r, _ in one], [j for _, j in one], path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.summary)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for method, summary in result.methods.items():
            levels = [lv for lv in summary[name]["levels"] if lv["realised"] is not None]
            rho = summary[name]["spearman"]
            label = f"{method} ({rho:.2f})" if rho is not None else method
            ax.plot([lv["requested"] for lv in levels], [lv["realised"] for lv in levels], "o-", label=label,
                    color=METHOD_COLOURS.get(method))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("requested")
        ax.legend(fontsize=7, loc="best", title="Spearman", title_fontsize=7)
    axes[0][0].set_ylabel("realised (mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
