"""Every rich Console, Table and Progress of steer lives here; library code never prints."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from steer import events

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One red line on stderr."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else (a NaN or infinity, which
    JSON has no word for, is written as null)."""
    sys.stdout.write(json.dumps(_finite(data), ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def show(data: Any, as_json: bool, render: Any) -> None:
    """A command's result: one JSON object with ``--json``, else what ``render`` draws of it."""
    if as_json:
        print_json(data)
    else:
        render(data)


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


def inspection(shown: Any, tokenizer: str | None) -> None:
    """``steer data inspect``: the load summary, the legend, then each example."""
    load_summary(shown.report.to_json())
    inspect_legend(shown.template, shown.schema, tokenizer)
    for index, example in enumerate(shown.examples):
        inspect_example(example, index)


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
    if stats.get("plot"):
        plain(f"plot: {stats['plot']}")


@dataclass
class _Line:
    """One task of :class:`_PlainProgress`."""

    id: int
    description: str
    total: float | None
    completed: float
    info: str
    unit: str = ""
    start: float = field(default_factory=time.monotonic)
    last: float = 0.0  # when its last line was printed
    shown: float = -1.0  # the share done its last line showed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


class _PlainProgress:
    """What a rich ``Progress`` does, as plain lines for output that is not a terminal (a log, CI): a
    line per task when it starts, at each further tenth of its work or 30 s after the last, and at its end."""

    def __init__(self, console: Console) -> None:
        self.console, self.tasks = console, []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task in self.tasks:
            if task.shown != self._share(task):
                self._print(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, info: str = "",
                 unit: str = "", **_: Any) -> int:
        self.tasks.append(_Line(len(self.tasks), description, total, completed, info, unit))
        self._print(self.tasks[-1])
        return len(self.tasks) - 1

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None,
               info: str | None = None) -> None:
        task = self.tasks[task_id]
        task.completed = task.completed if completed is None else completed
        task.total = task.total if total is None else total
        task.info = task.info if info is None else info
        share = self._share(task)
        if share >= 1 > task.shown or share >= task.shown + 0.1 or time.monotonic() - task.last >= 30:
            self._print(task)

    @staticmethod
    def _share(task: _Line) -> float:
        return task.completed / task.total if task.total else 0.0

    def _print(self, task: _Line) -> None:
        task.last, task.shown = time.monotonic(), self._share(task)
        count = f"{task.completed:.0f}" + (f"/{task.total:.0f}" if task.total else "")
        words = [task.description, count, task.unit, task.info, f"{task.elapsed:.0f} s"]
        self.console.print(" ".join(w for w in words if w), markup=False, highlight=False)


def _progress(*columns: Any) -> Any:
    """A rich ``Progress`` on stderr, or plain progress lines when stderr is not a terminal."""
    if not err_console.is_terminal:
        return _PlainProgress(err_console)
    from rich.progress import Progress

    return Progress(*columns, console=err_console, transient=False)


class progress_bar:
    """A rich progress bar; called with :class:`steer.events.Progress` events (library code never prints)."""

    def __init__(self, description: str, unit: str = "rows") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = _progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn(unit), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                   TimeRemainingColumn())
        self._description, self._unit, self._task = description, unit, None

    def __enter__(self) -> progress_bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._progress.stop()

    def __call__(self, event: Any) -> None:
        """Progress so far; with ``tokens`` (generated so far) the bar also shows rows/s and tokens/s.
        The bar appears with the first event, so an input error found before the work starts is shown
        alone."""
        if not isinstance(event, events.Progress):
            return
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=event.total, info="", unit=self._unit)
        info = ""
        elapsed = self._progress.tasks[0].elapsed or 0.0
        if event.tokens is not None and elapsed > 0:
            info = f"{event.done / elapsed:.1f} {self._unit}/s  {event.tokens / elapsed:.0f} tokens/s"
        self._progress.update(self._task, completed=event.done, total=event.total, info=info)


def labelled(report: Any, names: list[str], output: str) -> None:
    """The summary line of ``steer label``."""
    plain(f"{report.written} records labelled, {report.skipped} already done; {report.total} in all "
          f"({', '.join(names)}): {output}")


def batch_done(report: Any, output: str, errors: str) -> None:
    """The summary line of ``steer batch``."""
    bad = f" (see {errors})" if report.errors else ""
    plain(f"{report.written} rows written, {report.skipped} already done, {report.errors} bad rows{bad}; "
          f"{report.total} in all: {output}")


def prepared(result: Any) -> None:
    """Summary of ``steer data prepare`` (a :class:`steer.data.prepare.Prepared`)."""
    for source in result.reports:
        load_summary(source.to_json())
    state = "reused from cache" if result.cached else "written"
    rejected = ", ".join(f"{k}: {v}" for k, v in result.rejected.items()) or "none"
    console.print(f"{result.examples} examples, {result.tokens} tokens ({result.loss} {result.loss_unit}), "
                  f"rejected {rejected}; {state}: [bold]{result.path}[/]")


BAR_UNITS = {"tokenize": "examples", "generate": "answers"}


class TrainDisplay:
    """Live view of a training run, fed by the trainer's events: a bar with loss, lr, tokens/s, ETA
    (and the quickstart's stages and generation progress)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = _progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                                   TimeRemainingColumn())
        self._bars: dict[str, Any] = {}
        self._fields = {"loss": "-", "lr": "-", "tok/s": "-", "eval": "-"}
        self._started = False  # the display starts with the first event (input errors come first, alone)

    def __enter__(self) -> TrainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def _info(self) -> str:
        f = self._fields
        return f"loss {f['loss']}  lr {f['lr']}  {f['tok/s']} tok/s  eval {f['eval']}"

    def __call__(self, event: Any) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        if isinstance(event, events.Progress):
            self._bar(event)
        elif isinstance(event, events.DataReady):
            self._progress.console.print(
                f"data: {event.train} train / {event.eval} eval examples, {event.tokens:,} tokens "
                f"({event.loss:,} {event.loss_unit}){', cached' if event.cached else ''}: {event.path}")
        elif isinstance(event, events.Stage):
            self._progress.console.print(f"[bold]{event.index}/{event.count} {event.title}[/]")
        elif isinstance(event, events.TrainLog):
            self._log(event.values)

    def _bar(self, event: events.Progress) -> None:
        """A bar per stage of work (tokenize, train, generate); the training bar also shows loss, lr,
        tokens/s and the last evaluation loss."""
        if event.stage not in self._bars:
            info = self._info() if event.stage == "train" else BAR_UNITS.get(event.stage, "")
            self._bars[event.stage] = self._progress.add_task(event.stage, total=event.total, completed=event.done, info=info)
        task = self._bars[event.stage]
        if event.stage == "train":
            elapsed = next(t for t in self._progress.tasks if t.id == task).elapsed or 0.0
            if event.tokens is not None and elapsed > 0:
                self._fields["tok/s"] = f"{event.tokens / elapsed:,.0f}"
            self._progress.update(task, completed=event.done, total=event.total, info=self._info())
        else:
            self._progress.update(task, completed=event.done, total=event.total)

    def _log(self, values: Mapping[str, float]) -> None:
        for key, name, fmt in (("loss", "loss", "{:.4f}"), ("learning_rate", "lr", "{:.2e}"), ("eval_loss", "eval", "{:.4f}")):
            if key in values:
                self._fields[name] = fmt.format(values[key])
        if "train" in self._bars:
            self._progress.update(self._bars["train"], info=self._info())


def trained(result: Any) -> None:
    """Summary after ``steer train`` (a :class:`steer.train.loop.RunResult`): loss, the per-attribute
    validation table when the task reports one, the run directory and what to run next."""
    ev = "-" if result.eval_loss is None else f"{result.eval_loss:.4f}"
    tl = "-" if result.train_loss is None else f"{result.train_loss:.4f}"
    console.print(f"trained {result.steps} steps on {result.tokens:,} tokens: loss {tl}, eval loss {ev}")
    if result.table:
        metrics_table(result.table)
    console.print(f"run directory: [bold]{result.run_dir}[/]")
    if result.next_steps:
        console.print("next: " + "   |  ".join(result.next_steps), markup=False)


def metrics_table(table: Mapping[str, Mapping[str, float]]) -> None:
    """Validation MAE, RMSE and Pearson per attribute."""
    out = Table(title="validation")
    for col in ("attribute", "MAE", "RMSE", "Pearson"):
        out.add_column(col, justify="left" if col == "attribute" else "right")
    for name, row in table.items():
        out.add_row(name, *("-" if row.get(m) is None else f"{row[m]:.3f}" for m in ("mae", "rmse", "pearson")))
    console.print(out)


def stream(piece: str) -> None:
    """Write streamed model text as it arrives (no markup interpretation)."""
    console.file.write(piece)
    console.file.flush()


def stream_answer(pieces: Iterable[Any]) -> None:
    """Show a streamed answer as it arrives, then its dim line; on Ctrl-C or an error the line is
    ended and the exception passed on."""
    final = None
    try:
        for piece in pieces:
            if isinstance(piece, str):
                stream(piece)
            else:
                final = piece
    except BaseException:
        stream_end(None)
        raise
    stream_end(final)


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


def serving(name: str, host: str, port: int, schema: Any) -> None:
    """The line ``steer serve`` shows before the server's own log."""
    steering = ", ".join(schema.names) if schema is not None else "values"
    dim(f"serving {name} on http://{host}:{port}/v1 (steering: {steering})")


def vllm_plan(command: str, stop: tuple[str, ...]) -> None:
    """The ``vllm serve`` command and the stop strings requests to it need."""
    plain(command)
    if stop:
        dim(f"this template's stop strings: {list(stop)} (send them as 'stop' in requests to vLLM)")


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
