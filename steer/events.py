"""Typed progress events: library code reports long work through a callback taking these, and only
:mod:`steer.ui` renders them (library code never prints)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of one stage of work (``tokenize``, ``train`` steps, ``generate``,
    ``label``); ``tokens``: tokens processed so far in this stage (trained on, or generated), where known."""

    stage: str
    done: int
    total: int
    tokens: int | None = None


@dataclass(frozen=True)
class Stage:
    """Step ``index`` of ``count`` of a multi-step job (the quickstart), and what it does."""

    index: int
    count: int
    title: str


@dataclass(frozen=True)
class DataReady:
    """The training data is prepared: examples per split, tokens, what carries loss, where it is."""

    train: int
    eval: int
    tokens: int
    loss: int
    loss_unit: str
    cached: bool
    path: str


@dataclass(frozen=True)
class TrainLog:
    """What the trainer logged at ``step`` (``loss``, ``learning_rate``, ``eval_loss``, ...)."""

    step: int
    values: Mapping[str, float] = field(default_factory=dict)


Event = Progress | Stage | DataReady | TrainLog
Events = Callable[[Event], None]
