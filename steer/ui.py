"""Every rich Console, Table and Progress of steer lives here; library code never prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One red line on stderr."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def warn(message: str) -> None:
    """One yellow line on stderr."""
    from rich.markup import escape

    err_console.print(f"[yellow]warning:[/] {escape(message)}")


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def key_values(data: Mapping[str, Any], title: str | None = None) -> None:
    """A two-column table (plain enough to paste into a bug report)."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        table.add_row(str(key), "-" if value is None else str(value))
    console.print(table)


def schema_table(schema: Any, presets: Mapping[str, tuple[str, Mapping[str, int]]]) -> None:
    """Attributes of a schema and the presets that apply to it."""
    table = Table(title=f"schema {schema.name}: {schema.description}", title_justify="left")
    for col in ("attribute", "range", "default", "description"):
        table.add_column(col)
    for a in schema.attributes:
        table.add_row(a.name, f"{a.min}-{a.max}", str(a.default), a.description)
    console.print(table)
    if presets:
        ptable = Table(title="presets", title_justify="left")
        for col in ("preset", "sets", "description"):
            ptable.add_column(col)
        for name, (desc, values) in presets.items():
            ptable.add_row(name, ",".join(f"{k}:{v}" for k, v in values.items()) or "(defaults)", desc)
        console.print(ptable)


def plain(text: str) -> None:
    """Text to stdout without markup interpretation."""
    console.print(text, markup=False, highlight=False)


def inspect_example(example: dict, index: int) -> None:
    """One rendered training example: text carrying loss in green, the rest dimmed."""
    from rich.rule import Rule
    from rich.text import Text

    if example["tokens"] is None:
        counts = f"{example['chars']} chars, {example['loss_chars']} with loss"
    else:
        counts = f"{example['tokens']} tokens, {example['loss_tokens']} with loss" + (
            ", truncated" if example.get("truncated") else "") + (f"; {example['note']}" if example.get("note") else "")
    console.print(Rule(f"[bold]#{index}[/] {example['id']}  ({counts})", align="left"))
    text = Text()
    per_token = example["tokens"] is not None
    for n, (piece, loss) in enumerate(example["segments"]):
        shown = piece.replace("\n", "\\n\n")
        style = "bold green" if loss else "dim"
        if per_token:
            style += " underline" if n % 2 else ""
        text.append(shown, style=style)
    console.print(text)


def inspect_legend(template_kind: str, schema: str | None, tokenizer: str | None) -> None:
    console.print(f"template [bold]{template_kind}[/], schema [bold]{schema or 'none'}[/], "
                  f"tokenizer [bold]{tokenizer or 'none (characters)'}[/]   "
                  "[bold green]green[/]: carries loss   [dim]dim[/]: masked (-100)"
                  + ("   alternate tokens underlined" if tokenizer else ""))


def load_summary(report: dict) -> None:
    """Rows read, examples produced, rejected and filtered per reason."""
    rejected = ", ".join(f"{k}: {v}" for k, v in report["rejected"].items()) or "none"
    filtered = ", ".join(f"{k}: {v}" for k, v in report["filtered"].items()) or "none"
    console.print(f"[bold]{report['source']}[/] ({report['format']}): {report['rows']} rows read, "
                  f"{report['examples']} examples, rejected {rejected}, filtered {filtered}")


def data_stats(stats: dict) -> None:
    """Tables for ``steer data stats``."""
    load_summary(stats)
    if stats["attributes"]:
        table = Table(title=f"attributes (length in {stats['length_unit']})", title_justify="left")
        for col in ("attribute", "count", "mean", "histogram", "pearson vs length", "spearman vs length"):
            table.add_column(col, justify="left" if col in ("attribute", "histogram") else "right")
        for name, info in stats["attributes"].items():
            corr = stats["length_correlation"][name]
            fmt = lambda v: "-" if v is None else f"{v:+.3f}"  # noqa: E731
            hist = " ".join(f"{k}:{v}" for k, v in info["histogram"].items())
            table.add_row(name, str(info["count"]), f"{info['mean']:.2f}", hist, fmt(corr["pearson"]), fmt(corr["spearman"]))
        console.print(table)
    lengths = Table(title="lengths", title_justify="left")
    for col in ("series", "count", "mean", "median", "p90", "max"):
        lengths.add_column(col, justify="left" if col == "series" else "right")
    for name, s in stats["lengths"].items():
        if s.get("count"):
            lengths.add_row(name, str(s["count"]), f"{s['mean']:.1f}", str(s["median"]), str(s["p90"]), str(s["max"]))
    console.print(lengths)
    if "preference" in stats:
        p = stats["preference"]
        acc = "-" if p["longer_is_chosen"] is None else f"{100 * p['longer_is_chosen']:.1f}%"
        console.print(f"preference pairs: {p['pairs']} ({p['ties']} ties); "
                      f"'always prefer the longer response' agrees with the label on {acc}")


class progress_bar:
    """A rich progress bar driven by ``update(done, total)`` callbacks (library code never prints)."""

    def __init__(self, description: str, unit: str = "rows") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn(unit), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=err_console, transient=False)
        self._task = self._progress.add_task(description, total=None, info="")
        self._unit = unit

    def __enter__(self) -> progress_bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, done: int, total: int, tokens: int | None = None) -> None:
        """Progress so far; with ``tokens`` (generated so far) the bar also shows rows/s and tokens/s."""
        info = ""
        elapsed = self._progress.tasks[0].elapsed or 0.0
        if tokens is not None and elapsed > 0:
            info = f"{done / elapsed:.1f} {self._unit}/s  {tokens / elapsed:.0f} tokens/s"
        self._progress.update(self._task, completed=done, total=total, info=info)


def prepared(result: dict) -> None:
    """Summary of ``steer data prepare``."""
    for source in result["sources"]:
        load_summary(source)
    state = "reused from cache" if result["cached"] else "written"
    rejected = ", ".join(f"{k}: {v}" for k, v in result["rejected"].items()) or "none"
    loss = "" if result.get("kind") == "apm" else f" ({result['loss_tokens']} with loss)"
    console.print(f"{result['examples']} examples, {result['tokens']} tokens{loss}, "
                  f"rejected {rejected}; {state}: [bold]{result['path']}[/]")


STAGES = {"data": "1/3 synthetic corpus and tokenizer", "train": "2/3 training a tiny Llama from scratch",
          "evaluate": "3/3 steering sweep"}


class TrainDisplay:
    """Live view of a training run, fed by the trainer's events: a bar with loss, lr, tokens/s, ETA
    (and the quickstart's stages and generation progress)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                                  TimeRemainingColumn(), console=err_console)
        self._prepare = None
        self._train = None
        self._generate = None
        self._fields = {"loss": "-", "lr": "-", "tok/s": "-", "eval": "-"}

    def __enter__(self) -> TrainDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _info(self) -> str:
        f = self._fields
        return f"loss {f['loss']}  lr {f['lr']}  {f['tok/s']} tok/s  eval {f['eval']}"

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "prepare":
            if self._prepare is None:
                self._prepare = self._progress.add_task("tokenize", total=event["total"], info="examples")
            self._progress.update(self._prepare, completed=event["done"], total=event["total"])
        elif kind == "data":
            p = event["prepared"]
            loss = " (rated assistant turns)" if p.get("kind") == "apm" else f" ({p['loss_tokens']:,} with loss)"
            self._progress.console.print(
                f"data: {event['train']} train / {event['eval']} eval examples, {p['tokens']:,} tokens"
                f"{loss}{', cached' if p['cached'] else ''}: {p['path']}")
        elif kind == "start":
            self._train = self._progress.add_task("train", total=event["max_steps"], completed=event["step"],
                                                  info=self._info())
        elif kind == "step" and self._train is not None:
            self._fields["tok/s"] = f"{event['tokens_per_s']:,.0f}"
            self._progress.update(self._train, completed=event["step"], info=self._info())
        elif kind == "stage":
            self._progress.console.print(f"[bold]{STAGES.get(event['stage'], event['stage'])}[/]")
        elif kind == "generate":
            if self._generate is None:
                self._generate = self._progress.add_task("generate", total=event["total"], info="answers")
            self._progress.update(self._generate, completed=event["done"], total=event["total"])
        elif kind == "log":
            if "loss" in event:
                self._fields["loss"] = f"{event['loss']:.4f}"
            if "learning_rate" in event:
                self._fields["lr"] = f"{event['learning_rate']:.2e}"
            if "eval_loss" in event:
                self._fields["eval"] = f"{event['eval_loss']:.4f}"
            if self._train is not None:
                self._progress.update(self._train, info=self._info())


def trained(result: dict, kind: str = "sft") -> None:
    """Summary after ``steer train sft|apm`` (an APM also gets its per-attribute validation table)."""
    ev = "-" if result["eval_loss"] is None else f"{result['eval_loss']:.4f}"
    tl = "-" if result["train_loss"] is None else f"{result['train_loss']:.4f}"
    console.print(f"trained {result['steps']} steps on {result['tokens']:,} tokens: loss {tl}, eval loss {ev}")
    if kind == "apm" and result.get("evaluation"):
        apm_metrics(result["evaluation"])
    console.print(f"run directory: [bold]{result['run_dir']}[/]")
    run = result["run_dir"]
    if kind == "apm":
        console.print(f"next: steer label {run} --input DATA --output labelled.jsonl   "
                      f"|  steer eval steerability MODEL --prompts P.jsonl --judge apm:{run}")
    else:
        console.print(f"next: steer generate {run} \"...\" --attr verbosity=1   |  steer export {run} --out {run}-merged")


def apm_metrics(evaluation: dict) -> None:
    """Validation MAE, RMSE and Pearson per attribute (keys ``eval_{name}_{metric}``)."""
    names = list(dict.fromkeys(k.removeprefix("eval_").rsplit("_", 1)[0] for k in evaluation
                               if k.endswith(("_mae", "_rmse", "_pearson"))))
    table = Table(title="validation")
    for col in ("attribute", "MAE", "RMSE", "Pearson"):
        table.add_column(col, justify="left" if col == "attribute" else "right")
    for name in names:
        cells = [evaluation.get(f"eval_{name}_{m}") for m in ("mae", "rmse", "pearson")]
        table.add_row(name, *("-" if c is None else f"{c:.3f}" for c in cells))
    console.print(table)


def stream(piece: str) -> None:
    """Write streamed model text as it arrives (no markup interpretation)."""
    console.file.write(piece)
    console.file.flush()


def stream_end(response: Any) -> None:
    """Finish a streamed answer with a dim line: tokens, seconds, tokens/s, why it stopped."""
    console.file.write("\n")
    if response is not None:
        err_console.print(f"[dim]{response.completion_tokens} tokens, {response.seconds:.2f} s, "
                          f"{response.tokens_per_s:.1f} tokens/s, {response.finish_reason}[/]")


def ask(prompt: str) -> str:
    """Read one line from the user (``input`` so pipes and terminals both work)."""
    return input(prompt)


def dim(message: str) -> None:
    err_console.print(f"[dim]{message}[/]", highlight=False)


def chat_banner(model: str, steering: str) -> None:
    err_console.print(f"[bold]steer chat[/] {model}\n[dim]steering: {steering}\n"
                      "/help for commands, Ctrl-C stops an answer, /quit or Ctrl-D leaves[/]", highlight=False)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def steerability(summary: Mapping[str, Mapping], extra: Mapping[str, Mapping[int, str]] | None = None) -> None:
    """One small table per swept attribute (requested level, mean realised level, answers judged),
    with its Spearman correlation; ``extra`` adds a column per attribute (name -> level -> text)."""
    from rich.columns import Columns

    tables = []
    for name, result in summary.items():
        rho = result["spearman"]
        ok = "green" if rho is not None and rho >= 0.8 else "yellow"
        t = Table(title=f"[bold]{name}[/]  Spearman [{ok}]{_num(rho)}[/]", title_justify="left")
        t.add_column("requested", justify="right")
        t.add_column("realised", justify="right")
        t.add_column("n", justify="right", style="dim")
        column = (extra or {}).get(name)
        if column:
            t.add_column(column["title"], justify="right")  # type: ignore[call-overload]
        for level in result["levels"]:
            row = [str(level["requested"]), _num(level["realised"]), str(level["judged"])]
            if column:
                row.append(column["values"].get(level["requested"], "-"))  # type: ignore[union-attr]
            t.add_row(*row)
        tables.append(t)
    console.print(Columns(tables, padding=(0, 3)))


def side_effects(summary: Mapping[str, Mapping]) -> None:
    """Per swept attribute: monotonicity violations and how far the other attributes moved."""
    for name, result in summary.items():
        moved = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["side_effects"].items(), key=lambda kv: -kv[1])) or "-"
        console.print(f"{name}: {result['monotonicity_violations']} monotonicity violations; others moved: {moved}")


def length_bias(result: Mapping[str, Any]) -> None:
    """Correlations with length, the non-length reward gain of a comparison, longer-preferred accuracy."""
    unit = result["length_unit"]
    t = Table(title=f"[bold]score vs response length ({unit})[/]", title_justify="left")
    for col in ("score", "n", "pearson", "spearman"):
        t.add_column(col, justify="left" if col == "score" else "right")
    for name, c in result["correlation"].items():
        t.add_row(name, str(c["n"]), _num(c["pearson"]), _num(c["spearman"]))
    console.print(t)
    if "compare" in result:
        c = result["compare"]
        share = "-" if c["nrg_share"] is None else f"{100 * c['nrg_share']:.0f}%"
        console.print(f"vs {c['other']}: mean score gain {_num(c['gain'], 3)}, non-length gain (NRG, {c['bin_' + unit]}-{unit} "
                      f"bins) {_num(c['nrg'], 3)} = {share} of the gain; mean length {c['mean_length']['base']:.1f} -> "
                      f"{c['mean_length']['other']:.1f} {unit}; {100 * c['outputs_in_shared_bins']:.0f}% of outputs in "
                      f"bins both sets reach")
    if "longer_preferred" in result:
        p = result["longer_preferred"]
        acc = "-" if p["accuracy"] is None else f"{100 * p['accuracy']:.1f}%"
        console.print(f"preference pairs: {p['pairs']} ({p['ties']} ties); 'always prefer the longer' agrees on {acc}")
    if result.get("plot"):
        console.print(f"plot: {result['plot']}")


def samples(prompt: str, rows: Mapping[str, Mapping[int, str]], levels: tuple[int, int] = (0, 4)) -> None:
    """Side-by-side answers to one prompt at a low and a high level of each attribute."""
    t = Table(title=f"[bold]{prompt}[/]", title_justify="left", show_lines=True)
    t.add_column("attribute")
    for level in levels:
        t.add_column(f"= {level}", ratio=1)
    for name, texts in rows.items():
        t.add_row(name, *[texts.get(level, "-") for level in levels])
    console.print(t)


def quickstart(report: Mapping[str, Any], out: str, plot: str | None) -> None:
    """The quickstart's results: steerability tables, sample answers, files, and what to run next."""
    s = report["settings"]
    console.print(f"\n[bold]Steering sweep[/]: each attribute 0..4, the others at their defaults, on {s['prompts']} "
                  "held-out prompts (greedy); 'realised' is what the corpus oracles measure in the generated text.")
    rate = {"title": "right answers", "values": {int(k): f"{100 * v:.0f}%" for k, v in report["correct_answer_rate"].items()
                                                 if v is not None}}
    steerability(report["attributes"], {"correctness": rate})
    samples(report["sample_prompt"], {k: {int(lv): t for lv, t in v.items()} for k, v in report["samples"].items()})
    t = report["timings"]
    console.print(f"time: data {t['data_s']:.0f} s, training {t['train_s']:.0f} s, evaluation {t['evaluate_s']:.0f} s, "
                  f"total {t['total_s']:.0f} s")
    console.print(f"report: [bold]{out}/report.json[/]" + (f"   plot: [bold]{plot}[/]" if plot else ""))
    model, prompt = report["model"], report["sample_prompt"]
    console.print("\n[bold]Next[/]:")
    console.print(f"  steer generate {model} \"{prompt}\" --attr verbosity=0")
    console.print(f"  steer generate {model} \"{prompt}\" --attr correctness=0 --attr complexity=4")
    console.print(f"  steer chat {model}")


def value_matching(result: dict) -> None:
    """``steer eval values``: matched vs mismatched statements, overall and per statement."""
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    console.print(f"{result['prompts']} prompts x {result['values']} value statements, judged by {result['judge']} "
                  f"({result['scored_by']}): {result['comparisons']} comparisons")
    console.print(f"answer scores higher under its own statement: [bold]{pct(result['matched_win_rate'])}[/] "
                  f"(chance 50%); beats every other statement: {pct(result['best_match_rate'])}")
    console.print(f"mean score matched {result['mean_matched']:.3f}, mismatched {result['mean_mismatched']:.3f}")
    table = Table(title="per value statement")
    table.add_column("value statement")
    table.add_column("win rate", justify="right")
    for row in result["per_value"]:
        text = row["value"] if len(row["value"]) <= 70 else row["value"][:67] + "..."
        table.add_row(text, pct(row["win_rate"]))
    console.print(table)
