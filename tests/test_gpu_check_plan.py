"""The GPU checks' largest-batch search (benchmarks/gpu_check.py), with the benchmark runs faked:
which sizes it tries after what the speed part found, and what it reports when time runs out.
(The script itself was dry-run on CPU; it needs a GPU to measure anything.)"""

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gpu_check(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "ARGS", argparse.Namespace(largest=[128, 256, 512], profile="gpu"))
    memo = tmp_path / "fits.json"
    monkeypatch.setattr(mod, "_memo", lambda: memo)
    return mod


def fake_runs(capacity: dict[str, int], calls: list):
    """vs_trl stand-in: a run fits when the batch is within its capacity; skipped without time."""

    def vs_trl(batch, runs, steps, out, logs, budget, need):
        calls.append((runs, batch))
        if budget.left() < need:
            return {"exit": None, "timed_out": False, "file": None}
        fits = batch <= capacity[runs]
        r = {"tokens_per_s": 10.0 * batch, "mfu": 0.01 * batch, "peak_gpu_mib": 100.0 * batch}
        out.write_text(json.dumps({"median": {runs: r if fits else {"error": "OutOfMemoryError"}}}))
        return {"exit": 0, "timed_out": False, "file": out.name, "fits": {runs: fits}}

    return vs_trl


def test_doubles_from_128_after_a_fit_at_64_and_halves_after_a_miss(gpu_check, tmp_path):
    fits64 = {"trl-kto": False, "pmpo": True, "trl-kto-liger": True}
    gpu_check._memo().write_text(json.dumps({"sizes": [16, 64], "fits": {"b64": fits64}}))
    calls = []
    gpu_check.vs_trl = fake_runs({"pmpo": 256, "trl-kto": 32, "trl-kto-liger": 128}, calls)
    found = gpu_check.largest_batch(tmp_path, gpu_check.Budget(600), steps=5)
    assert calls == [
        ("trl-kto", 32),
        ("pmpo", 128),
        ("pmpo", 256),
        ("pmpo", 512),
        ("trl-kto-liger", 128),
        ("trl-kto-liger", 256),
    ]
    largest = {name: f["largest_tried_that_fits"] for name, f in found.items()}
    assert largest["pmpo"] == {
        "batch": 256,
        "tokens_per_s": 2560.0,
        "mfu": 2.56,
        "peak_gpu_mib": 25600.0,
    }
    assert largest["trl-kto"]["batch"] == 32 and largest["trl-kto-liger"]["batch"] == 128
    assert found["trl-kto"]["fitted_at_largest_speed_size"] is False


def test_without_time_left_nothing_runs_and_nothing_is_claimed(gpu_check, tmp_path):
    calls = []
    gpu_check.vs_trl = fake_runs({"pmpo": 512, "trl-kto": 512, "trl-kto-liger": 512}, calls)
    found = gpu_check.largest_batch(tmp_path, gpu_check.Budget(0), steps=5)
    assert [f["largest_tried_that_fits"] for f in found.values()] == [None, None, None]
    assert [f["tried"][0]["exit"] for f in found.values()] == [None, None, None]
    assert len(calls) == 3  # one skipped attempt per run, none after it


def test_a_run_out_of_time_is_killed_with_its_children(gpu_check, tmp_path):
    """The budget's end kills the whole process group (a training grandchild holds the GPU)."""
    pid_file = tmp_path / "grandchild.pid"
    grandchild = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
    grandchild += "time.sleep(60)"
    script = "import subprocess, sys, time; "
    script += f"subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    saved = []
    budget = gpu_check.Budget(3.0, save=lambda: saved.append(True))
    start = time.monotonic()
    code = gpu_check.run([sys.executable, "-c", script], tmp_path / "log", budget, need=1)
    assert code == 124 and time.monotonic() - start < 20 and saved == [True]
    assert "time budget ran out" in (tmp_path / "log").read_text()
    pid = int(pid_file.read_text())
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(50):  # gone, or a zombie waiting for whoever reaps orphans
        if not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild outlived the budget")
