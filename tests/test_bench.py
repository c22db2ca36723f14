"""The benchmark scripts still run: bench/gpu.py in its tiny CPU mode (every code path it takes on the
GPU machine: building the models, steer and TRL training in their own processes, generation)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_benchmark_runs_in_its_tiny_cpu_mode(tmp_path, shared_assets):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--tiny", "--tokenizer",
                           str(shared_assets / "tokenizers/mistral-v1"), "--rows", "48", "--budget", "1500",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["models"]["tiny"]["parameters"] > 0 and result["matmul_flops"] > 0
    for method in ("full", "lora"):
        run = result["train"][f"steer tiny {method}"]
        assert run["tokens"] > 0 and run["tokens_per_s"] > 0 and 0 < run["mfu"], run
        peer = result["train"][f"trl tiny {method}"]  # measured when TRL is installed, else why not
        assert peer.get("tokens_per_s", 0) > 0 or "trl" in peer.get("error", ""), peer
    gen = result["generate"]["results"]
    assert gen["steer"]["tokens"] > 0 and gen["batched"]["tokens"] > 0
    assert "steer tiny full" in proc.stdout and "generate: steer" in proc.stdout


@pytest.mark.slow
def test_best_of_and_dpo_benchmarks_run_at_a_tiny_size(tmp_path, shared_assets):
    """bench/best_of.py and bench/train_dpo.py (every trainer, TRL's included) at sizes that take seconds."""
    out = tmp_path / "best_of.json"
    proc = subprocess.run([sys.executable, "bench/best_of.py", "--model", str(shared_assets / "models/stories260k"),
                           "--prompts", "2", "--n", "2", "--max-new-tokens", "6", "--repeats", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(r["tokens"] > 0 for r in json.loads(out.read_text())["results"].values())
    out = tmp_path / "dpo.json"
    proc = subprocess.run([sys.executable, "bench/train_dpo.py", "--shapes", "tiny", "--steps", "2", "--warmup", "1",
                           "--pairs-per-step", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["shapes"]["tiny"]["results"]
    assert results["steer"]["tokens_per_s"] > 0, results
    assert all(r.get("tokens_per_s", 0) > 0 or "trl" in r.get("error", "") for r in results.values()), results


@pytest.mark.slow
def test_rl_benchmark_runs_at_a_tiny_size(tmp_path, shared_assets):
    """bench/train_rl.py at two short steps (TRL's GRPO too where TRL is installed)."""
    out = tmp_path / "rl.json"
    proc = subprocess.run([sys.executable, "bench/train_rl.py", "--shapes", "tiny", "--steps", "2", "--warmup", "1",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["shapes"]["tiny"]["results"]
    assert results["steer"]["completion_tokens_per_s"] > 0 and 0 < results["steer"]["rollout_share"] < 1, results
    assert all(r.get("completion_tokens_per_s", 0) > 0 or "trl" in r.get("error", "") for r in results.values()), results
