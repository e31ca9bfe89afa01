"""Short end-to-end runs: rollouts from a control run directory, an NPZ written from them, and
`anyfeedback offline` on it (all five Table 1 rows, both KL forms, both baselines)."""

import json

import numpy as np
import pytest

pytest.importorskip("dm_control")

from anyfeedback.cli import main  # noqa: E402
from anyfeedback.control.config import ControlConfig  # noqa: E402
from anyfeedback.control.offline.config import TABLE_ROWS, OfflineConfig  # noqa: E402
from anyfeedback.control.offline.dataset import save_npz  # noqa: E402
from anyfeedback.control.offline.train import run  # noqa: E402
from anyfeedback.control.rollouts import load_policy, rollout, segments  # noqa: E402
from anyfeedback.control.train import run as control_run  # noqa: E402
from anyfeedback.errors import InputError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(
    num_seeds=2,
    value_steps=20,
    policy_steps=20,
    hidden=16,
    batch_size=16,
    eval_episodes=1,
    episode_frames=100,
    log_every=10,
    progress=False,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A 100-step SAC run's policy (noisy) + uniform random episodes, 100 frames each."""
    root = tmp_path_factory.mktemp("offline")
    control_run(
        ControlConfig(
            method="sac",
            steps=100,
            episode_frames=100,
            learning_starts=50,
            batch_size=16,
            hidden=16,
            eval_every=100,
            eval_episodes=1,
            action_repeat=4,
            progress=False,
            out=str(root / "agent"),
        )
    )
    policy = load_policy(root / "agent")
    a = rollout(policy, episodes=2, seed=0, noise=0.3, random_prob=0.2)
    b = rollout(
        None,
        episodes=2,
        seed=5,
        domain="cartpole",
        task="swingup",
        action_repeat=4,
        episode_frames=100,
    )
    assert len(a) == len(b) == 2 * 25 and np.abs(a.actions).max() <= 1
    tr = a.concatenate([a, b])
    assert tr.episode_ids.tolist() == sorted(tr.episode_ids.tolist()) and tr.episode_ids[-1] == 3
    seg = segments(tr, 10)  # 25 steps per episode -> 2 segments each, remainder dropped
    assert seg.observations.shape[:2] == (8, 10)
    np.testing.assert_allclose(seg.returns, seg.rewards.sum(-1))
    np.testing.assert_allclose(seg.returns[:2].sum(), tr.rewards[:20].sum(), rtol=1e-5)
    ids = np.repeat([0, 1], len(a))
    return save_npz(
        root / "data.npz", tr, behaviour_ids=ids, domain="cartpole", task="swingup", action_repeat=4
    )


def test_offline_five_rows(tmp_path, dataset):
    summary = run(
        OfflineConfig(dataset=str(dataset), methods=",".join(TABLE_ROWS), out=str(tmp_path), **TINY)
    )
    assert list(summary["methods"]) == list(TABLE_ROWS)
    for s in summary["methods"].values():
        assert len(s["returns"]) == 2 and all(np.isfinite(s["returns"]))
    assert set(summary["labels"]["s0"]["accepted_by_group"]) == {0, 1}
    for f in (
        "config.json",
        "metrics.jsonl",
        "curves.png",
        "summary.json",
        "report.md",
        "policy.safetensors",
    ):
        assert (tmp_path / f).exists(), f
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"value", "train", "eval"}


def test_offline_sample_kl_value_baseline_cli(tmp_path, dataset, capsys):
    """The non-default options through the CLI: --kl sample --baseline value --policy-mean
    linear, --methods pmpo with --alpha/--beta, explicit --domain/--task."""
    code = main(
        [
            "offline",
            "--dataset",
            str(dataset),
            "--methods",
            "pmpo,bc",
            "--alpha",
            "0.5",
            "--beta",
            "1.5",
            "--kl",
            "sample",
            "--baseline",
            "value",
            "--policy-mean",
            "linear",
            "--min-std",
            "0.01",
            "--domain",
            "cartpole",
            "--task",
            "swingup",
            "--out",
            str(tmp_path),
            "--num-seeds",
            "1",
            "--value-steps",
            "10",
            "--policy-steps",
            "10",
            "--hidden",
            "16",
            "--batch-size",
            "8",
            "--eval-episodes",
            "1",
            "--episode-frames",
            "100",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "pmpo: eval return" in out and "bc: eval return" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["presets"]["pmpo"] == {"alpha": 0.5, "beta": 1.5, "labelled": True}
    assert summary["kl"] == "sample"


def test_bad_flag_values_exit_2(tmp_path, dataset, capsys):
    for flags, field in ((["--methods", "reject"], "methods"), (["--kl", "exact"], "kl")):
        assert (
            main(["offline", "--dataset", str(dataset), "--out", str(tmp_path / "x"), *flags]) == 2
        )
        assert f"field '{field}'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_dataset_without_task_metadata(tmp_path, dataset, capsys):
    """No domain/task in the file and none given: one line, exit 2, no run directory."""
    from anyfeedback.control.offline.dataset import load_npz

    tr, _ = load_npz(dataset)
    save_npz(tmp_path / "bare.npz", tr)
    code = main(["offline", "--dataset", str(tmp_path / "bare.npz"), "--out", str(tmp_path / "r")])
    assert code == 2 and "no domain/task to evaluate on" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --- resume, divergence ---------------------------------------------------------------------

RESUME = dict(TINY, methods="bc,accept-reject-bc", value_steps=20, policy_steps=20)


def _rows(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "policy.safetensors"))


def _flags(cfg: dict) -> list[str]:
    """CLI flags for config fields: --name value, --flag / --no-flag for booleans."""
    args = []
    for k, v in cfg.items():
        flag = "--" + k.replace("_", "-")
        args += [flag if v else f"--no-{flag[2:]}"] if isinstance(v, bool) else [flag, str(v)]
    return args


def test_offline_resume_is_exact(tmp_path, dataset):
    """`anyfeedback offline` killed (-9) at BC step 15 (global step 35; last checkpoint: BC step
    10, global 30), then resumed; and resumed from the checkpoint before the last one: metrics
    rows and final weights equal an uninterrupted run's, bit for bit (CPU, one thread)."""
    import os
    import subprocess
    import sys

    import torch

    from anyfeedback.control.checkpoint import checkpoint_paths

    kw = dict(dataset=str(dataset), checkpoint_every=10, **RESUME)
    run(OfflineConfig(out=str(tmp_path / "full"), **kw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP="35")
    cmd = [sys.executable, "-m", "anyfeedback.cli", "offline", *_flags(kw)]
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "part")], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert checkpoint_paths(tmp_path / "part")[0].name == "checkpoint-000000030.safetensors"
    assert main(["offline", *_flags(kw), "--out", str(tmp_path / "part"), "--resume"]) == 0
    weights, rows = _weights(tmp_path / "full"), _rows(tmp_path / "full")  # uninterrupted
    newest, previous = checkpoint_paths(tmp_path / "full")  # 60 and 50 (mid "rest" stage)
    newest.unlink()
    run(OfflineConfig(out=str(tmp_path / "full"), resume=True, **kw))
    for out in ("part", "full"):  # killed + resumed; resumed from the older checkpoint
        got = _weights(tmp_path / out)
        assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in got)
        assert _rows(tmp_path / out) == rows
    changed = dict(kw, policy_steps=30, lr_policy=1e-3)
    with pytest.raises(InputError, match=r"changed config \(policy_steps, lr_policy\)"):
        run(OfflineConfig(out=str(tmp_path / "part"), resume=True, **changed))


def test_offline_divergence_exits_1(tmp_path, dataset, capsys):
    """--lr-value 1e6: the value fit explodes; one line, exit 1, no policy file."""
    args = ["offline", "--dataset", str(dataset), "--out", str(tmp_path), "--lr-value", "1e6"]
    args += ["--value-steps", "20", "--policy-steps", "5", "--num-seeds", "1", "--hidden", "16"]
    assert main(args + ["--batch-size", "16", "--log-every", "5", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: diverged at values step 5") and err.count("\n") == 1, err
    assert not (tmp_path / "policy.safetensors").exists()
