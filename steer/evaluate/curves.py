"""``steer eval curves``: a run's logged metrics per step (an RL run's reward, cost and lambda, a DPO
run's margins, any training loss), side by side for several runs: a table of where each started and
where it ended (the mean of the last ``window`` logged steps) and a PNG of every curve."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steer.callables import make_callable
from steer.errors import UsageError


def series(rows: Sequence[dict], metric: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every logged step that has ``metric`` (a number)."""
    return [(int(r["step"]), float(r[metric])) for r in rows
            if isinstance(r.get(metric), (int, float)) and not isinstance(r.get(metric), bool) and "step" in r]


def evaluate(runs: Sequence[str], metrics: Sequence[str], *, window: int = 10, plot_path: str | None = None) -> dict:
    """Per run and metric: the first logged value, the mean of the last ``window``, the min and max, and
    the series; a metric no run logged is an error naming what they did log."""
    from steer.runs import read_metrics

    if window < 1:
        raise UsageError(f"--window must be >= 1, got {window}")
    runs, metrics = ([x] if isinstance(x, (str, os.PathLike)) else list(x) for x in (runs, metrics))
    logged = {run: read_metrics(run) for run in runs}
    out: dict[str, Any] = {"window": window, "runs": {}}
    for run, rows in logged.items():
        out["runs"][run] = {}
        for metric in metrics:
            points = series(rows, metric)
            if points:
                values = [v for _, v in points]
                tail = values[-window:]
                out["runs"][run][metric] = {"first": values[0], "last": sum(tail) / len(tail), "min": min(values),
                                            "max": max(values), "steps": len(points), "series": points}
    missing = [m for m in metrics if not any(m in found for found in out["runs"].values())]
    if missing:
        names = sorted({k for rows in logged.values() for r in rows for k, v in r.items()
                        if isinstance(v, (int, float)) and k not in ("step", "epoch", "time")})
        raise UsageError(f"no run logged {', '.join(missing)} (logged: {', '.join(names)})")
    if plot_path:
        out["plot"] = plot(out["runs"], metrics, plot_path)
    return out


def plot(found: dict[str, dict[str, Any]], metrics: Sequence[str], path: str) -> str:
    """One panel per metric, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from steer.outputs import atomic_output

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for run, by_metric in found.items():
            if metric in by_metric:
                steps, values = zip(*by_metric[metric]["series"])
                ax.plot(steps, values, label=Path(run).name, lw=1.2)
        ax.set_title(metric)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path, binary=True, what="--plot") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path


make_callable(__name__, "steer.evaluate.curves:evaluate")  # steer.evaluate.curves(...) is this module's evaluate
