"""Progress: a bar for one job, the live training display, and plain lines when stderr is not a terminal."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from steer import events
from steer.ui.console import err_console

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
        tokens/s and the last evaluation loss. A stage that starts again after finishing (the real
        quickstart's second sweep) gets a bar, and a clock, of its own."""
        if event.stage in self._bars and event.done == 0 and self._finished(self._bars[event.stage]):
            del self._bars[event.stage]
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

    def _finished(self, task_id: Any) -> bool:
        task = next(t for t in self._progress.tasks if t.id == task_id)
        return bool(task.total) and task.completed >= task.total

    def _log(self, values: Mapping[str, float]) -> None:
        for key, name, fmt in (("loss", "loss", "{:.4f}"), ("learning_rate", "lr", "{:.2e}"), ("eval_loss", "eval", "{:.4f}")):
            if key in values:
                self._fields[name] = fmt.format(values[key])
        if "train" in self._bars:
            self._progress.update(self._bars["train"], info=self._info())


__all__ = ['progress_bar', 'BAR_UNITS', 'TrainDisplay']
