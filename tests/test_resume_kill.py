"""kill -9 and --resume, for every LLM and bandit command that has --resume (train's is in
test_llm_resume.py): a run killed mid-way (ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP, a SIGKILL the
process sends itself after that step) and resumed ends with the same weights and metrics as an
uninterrupted run (bit-identical on CPU; timings aside)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anyfeedback.cli import main
from anyfeedback.llm.checkpoint import list_checkpoints
from conftest_llm import *  # noqa: F403
from conftest_llm import write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- reward: kill -9 and resume is bit-identical ---------------------------------------------


def _reward_args(tiny_model, pairs, out) -> list[str]:
    return [
        "reward",
        "--model",
        str(tiny_model),
        "--data",
        str(pairs),
        "--out",
        str(out),
        *("--max-steps", "4", "--batch-size", "4", "--learning-rate", "3e-3"),
        *("--eval-fraction", "0.25", "--eval-every", "2", "--save-steps", "2", "--no-progress"),
    ]


def test_reward_sigkill_then_resume_is_bit_identical(tiny_model, tmp_path):
    from anyfeedback.llm.tiny import toy_feedback

    pairs = write_jsonl(tmp_path / "pairs.jsonl", toy_feedback(16, seed=3)["paired"])
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(_reward_args(tiny_model, pairs, full)) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_PROGRESS="0")
    env["ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP"] = "3"
    cmd = [sys.executable, "-m", "anyfeedback.cli", *_reward_args(tiny_model, pairs, killed)]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert [p.name for p in list_checkpoints(killed / "checkpoints")][-1] == "step-000002"
    assert main([*_reward_args(tiny_model, pairs, killed), "--resume"]) == 0

    def rows(out):
        return [
            {k: v for k, v in r.items() if k not in ("time", "step_time_s")}
            for r in map(json.loads, (out / "metrics.jsonl").open())
        ]

    assert rows(killed) == rows(full)
    assert _same(_weights(full), _weights(killed))


# --- bandit: kill -9 and resume gives the uninterrupted results ---------------------------------


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_bandit_sigkill_then_resume_gives_the_same_results(tmp_path, capsys):
    args = ["bandit", "run", "--function", "sphere", "--dim", "2", "--evals", "80"]
    args += ["--methods", "pmpo-ar,cma-es", "--seeds", "3", "--workers", "0", "--quiet"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main([*args, "--out", str(full)]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP="3")  # engine + 2 CMA
    cmd = [sys.executable, "-m", "anyfeedback.cli", *args, "--out", str(killed)]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert sorted(p.name for p in (killed / "pieces").iterdir()) == [
        "cma-0.json",
        "cma-1.json",
        "config.json",
        "engine.json",
        "engine.npz",
    ]
    assert not (killed / "results.json").exists()
    assert main([*args, "--out", str(killed), "--seeds", "4", "--resume"]) == 2
    assert "seeds (3 -> 4)" in capsys.readouterr().err
    assert main([*args, "--out", str(killed), "--resume"]) == 0
    a, b = (json.loads((o / "results.json").read_text()) for o in (full, killed))
    assert _without_timings(a) == _without_timings(b)


def test_bandit_sweep_sigkill_then_resume_gives_the_same_sweep(tmp_path, capsys):
    args = ["bandit", "sweep", "--function", "sphere", "--dim", "2", "--evals", "80"]
    args += ["--alphas", "0.5,1", "--betas", "0.5,2", "--seeds", "2", "--quiet"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main([*args, "--out", str(full)]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP="1")  # after alpha 0.5
    cmd = [sys.executable, "-m", "anyfeedback.cli", *args, "--out", str(killed)]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert sorted(p.name for p in (killed / "pieces").iterdir()) == ["alpha-0.npz", "config.json"]
    assert not (killed / "sweep.json").exists()
    assert main([*args, "--out", str(killed), "--lr", "0.05", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "lr (0.02 -> 0.05)" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--out", str(killed), "--resume"]) == 0
    a, b = (json.loads((o / "sweep.json").read_text()) for o in (full, killed))
    assert _without_timings(a) == _without_timings(b)


# --- self-play: kill -9 inside an iteration, resume: the uninterrupted run ----------------------


def test_self_play_sigkill_mid_iteration_then_resume_is_bit_identical(
    tiny_model, feedback_files, tmp_path
):
    from anyfeedback.llm.tiny import toy_feedback

    demos = write_jsonl(tmp_path / "demos.jsonl", toy_feedback(8, seed=5)["demos"])
    args = ["self-play", "--model", str(tiny_model), "--demos", str(demos)]
    args += ["--pairs", str(feedback_files["paired"]), "--learning-rate", "1e-3"]
    args += ["--max-new-tokens", "4", "--iterations", "2", "--epochs", "1", "--batch-size", "4"]
    args += ["--save-steps", "1", "--no-progress"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main([*args, "--out", str(full)]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_PROGRESS="0")
    env["ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP"] = "3"  # 2 steps per iteration: inside the 2nd
    cmd = [sys.executable, "-m", "anyfeedback.cli", *args, "--out", str(killed)]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert main([*args, "--out", str(killed), "--resume"]) == 0

    def losses(out):
        return [(r["step"], r.get("loss")) for r in map(json.loads, (out / "metrics.jsonl").open())]

    assert losses(killed) == losses(full) and len(losses(full)) == 5
    assert _same(_weights(full), _weights(killed))


def test_aihf_sigkill_then_resume_is_bit_identical(tiny_model, feedback_files, tmp_path):
    """Policy and reward model both restored: 3 iterations, killed after the 2nd, resumed."""
    args = ["aihf", "--model", str(tiny_model), "--demos", str(feedback_files["demos"])]
    args += ["--pairs", str(feedback_files["paired"]), "--learning-rate", "1e-3"]
    args += ["--max-new-tokens", "4", "--iterations", "3", "--policy-steps", "1"]
    args += ["--prompts-per-step", "2", "--k", "2", "--reward-batch-size", "4"]
    args += ["--save-steps", "1", "--no-progress"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main([*args, "--out", str(full)]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_PROGRESS="0")
    env["ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP"] = "2"
    cmd = [sys.executable, "-m", "anyfeedback.cli", *args, "--out", str(killed)]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert main([*args, "--out", str(killed), "--resume"]) == 0

    def rows(out):
        drop = ("time", "time_s", "policy/step_time_s", "policy/tokens_per_s")
        return [
            {k: v for k, v in r.items() if k not in drop and "per_s" not in k and "time" not in k}
            for r in map(json.loads, (out / "metrics.jsonl").open())
        ]

    assert rows(killed) == rows(full)
    for name in ("policy", "reward_model"):
        a = load_file(str(full / name / "model.safetensors"))
        b = load_file(str(killed / name / "model.safetensors"))
        assert _same(a, b), name


def test_online_sigkill_then_resume_is_bit_identical(tiny_model, feedback_files, tmp_path):
    args = ["online", "--model", str(tiny_model), "--prompts", str(feedback_files["paired"])]
    args += ["--reward", "custom_rewards:toy_sentiment", "--k", "4", "--prompts-per-step", "3"]
    args += ["--steps", "3", "--max-new-tokens", "6", "--learning-rate", "1e-3"]
    args += ["--eval-every", "2", "--eval-prompts", "4", "--save-steps", "1", "--no-progress"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    tests_dir = str(Path(__file__).parent)
    sys.path.insert(0, tests_dir)  # custom_rewards, in-process
    try:
        assert main([*args, "--out", str(full)]) == 0
    finally:
        sys.path.remove(tests_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(
        OMP_NUM_THREADS="1", ANYFEEDBACK_PROGRESS="0", ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP="2"
    )
    env["PYTHONPATH"] = os.pathsep.join([tests_dir, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "anyfeedback.cli", *args, "--out", str(killed)]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    env.pop("ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP")
    subprocess.run([*cmd, "--resume"], env=env, check=True, capture_output=True)
    assert _same(_weights(full), _weights(killed))
    steps = [r["step"] for r in map(json.loads, (killed / "metrics.jsonl").open())]
    assert steps == [0, 1, 2, 3]
