"""End-to-end control runs on dm_control: a short smoke run per method, bit-exact resume, and
one-line errors (exit 2) for bad inputs. Needs the `control` extra (dm_control, mujoco 3.17)."""

import json

import pytest
import torch

pytest.importorskip("dm_control")

from anyfeedback.cli import main  # noqa: E402
from anyfeedback.control.checkpoint import checkpoint_paths, load_latest  # noqa: E402
from anyfeedback.control.config import ControlConfig  # noqa: E402
from anyfeedback.control.train import run  # noqa: E402

TINY = dict(
    domain="cartpole",
    task="swingup",
    episode_frames=100,
    learning_starts=100,
    batch_size=32,
    hidden=32,
    eval_every=200,
    eval_episodes=1,
    checkpoint_every=200,
    target_period=20,
    progress=False,
)


@pytest.mark.parametrize("method", ["pmpo-ar", "pmpo-a", "pmpo-r", "mpo", "sac"])
def test_smoke_run_per_method(tmp_path, method):
    """300 env steps (200 learner steps): files written, evaluation and train metrics finite."""
    summary = run(ControlConfig(method=method, steps=300, out=str(tmp_path), **TINY))
    (name,) = summary
    assert summary[name]["eval_steps"] == [200, 300]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert train and all(r["critic_loss"] < 1e3 and r["std"] > 0 for r in train)
    for f in ("config.json", "summary.json", "curves.png"):
        assert (tmp_path / f).exists()
    assert checkpoint_paths(tmp_path)


def test_pmpo_advantage_labels_and_joint_kl_run(tmp_path):
    """The two non-default PMPO options are wired through the trainer."""
    run(
        ControlConfig(
            method="pmpo",
            alpha=0.5,
            beta=1.0,
            labels="advantage",
            cov="joint",
            steps=200,
            out=str(tmp_path),
            **TINY,
        )
    )
    assert checkpoint_paths(tmp_path)


def _params(path):
    state = load_latest(path)[0]["learner"]
    return {
        f"{net}.{k}": v
        for net in ("policy", "critic", "target_policy", "target_critic")
        for k, v in state[net].items()
    } | {f"dual.{k}": v for k, v in state["duals"].items()}


@pytest.mark.parametrize("method", ["pmpo-ar", "mpo"])
def test_resume_is_bit_exact(tmp_path, method):
    """Stop at 200 env steps, resume to 500: parameters, duals and the metrics rows equal those
    of an uninterrupted 500-step run, bit for bit (CPU, one thread)."""
    cfg = dict(method=method, num_seeds=2, **TINY)
    run(ControlConfig(steps=500, out=str(tmp_path / "full"), **cfg))
    run(ControlConfig(steps=200, out=str(tmp_path / "part"), **cfg))
    run(ControlConfig(steps=500, out=str(tmp_path / "part"), resume=True, **cfg))
    full, part = _params(tmp_path / "full"), _params(tmp_path / "part")
    assert full.keys() == part.keys()
    for key in full:
        assert torch.equal(full[key], part[key]), key

    def rows(d):
        out = [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time", "env_steps_per_s")} for r in out]

    assert rows("full") == rows("part")


def _flags(cfg: dict) -> list[str]:
    """CLI flags for config fields: --name value, --flag / --no-flag for booleans."""
    args = []
    for k, v in cfg.items():
        flag = "--" + k.replace("_", "-")
        args += [flag if v else f"--no-{flag[2:]}"] if isinstance(v, bool) else [flag, str(v)]
    return args


def test_sigkill_then_resume_is_bit_exact(tmp_path):
    """`anyfeedback control` killed (-9) after episode 3 (last checkpoint: episode 2, 200 env
    steps), then `--resume`d to 500: the metrics rows (timings aside) and the final checkpoint's
    parameters and duals equal an uninterrupted run's, bit for bit (CPU, one thread)."""
    import os
    import subprocess
    import sys

    args = ["control", "--steps", "500", *_flags(dict(method="pmpo-ar", **TINY))]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP="3")
    cmd = [sys.executable, "-m", "anyfeedback.cli", *args, "--out", str(tmp_path / "part")]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    newest = checkpoint_paths(tmp_path / "part")[0].name  # killed with its checkpoint at 200
    assert newest == "checkpoint-000000200.safetensors", newest
    assert main([*args, "--out", str(tmp_path / "part"), "--resume"]) == 0
    full, part = _params(tmp_path / "full"), _params(tmp_path / "part")
    assert full.keys() == part.keys()
    assert all(torch.equal(full[key], part[key]) for key in full)

    def rows(d):
        out = [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time", "env_steps_per_s")} for r in out]

    assert rows("full") == rows("part")


@pytest.mark.parametrize(
    "args",
    [
        ["--domain", "nosuch"],
        ["--domain", "walker", "--task", "fly"],
        ["--method", "ppo"],
        ["--steps", "-1"],
        ["--labels", "best"],
        ["--epsilon", "5"],
        ["--score-precision", "fp8"],
        ["--policy-mean", "relu"],
    ],
)
def test_bad_inputs_give_one_line_error_exit_2(tmp_path, capsys, args):
    rc = main(["control", "--out", str(tmp_path / "run"), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and "\n" not in err
    assert not checkpoint_paths(tmp_path / "run")


def test_resume_without_checkpoint_is_an_error(tmp_path, capsys):
    assert main(["control", "--out", str(tmp_path), "--resume", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error:")
