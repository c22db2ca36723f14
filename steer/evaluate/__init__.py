"""Measurements: does steering work (steerability), and is length doing the work.

Each evaluation module is callable as its ``evaluate`` (``steer.evaluate.steerability(model, prompts, ...)``,
``.values``, ``.length_bias``, ``.pairs``, ``.curves``), imported on first use."""

from __future__ import annotations

from typing import Any

EVALUATIONS = ("steerability", "values", "length_bias", "pairs", "curves")


def __getattr__(name: str) -> Any:
    if name in EVALUATIONS:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
