"""The experiment scripts that write committed results record no absolute path: the offline
datasets' manifest (results/offline/datasets.json), the offline table's run commands (in
table.json and command.txt, and through `--dataset` in each run's config.json and summary.json),
and aihf_control's results.json and run commands hold paths relative to the repository root that
lead back to the same files. Every input here lives in the test's directory, outside the
repository, so a path kept absolute would show up."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def experiments_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def _assert_no_absolute_path(obj) -> None:
    for s in _strings(obj):
        assert not os.path.isabs(s), s


def _leads_to(recorded: str, path: Path) -> bool:
    return (ROOT / recorded).resolve() == path.resolve()


def test_repo_relative_inside_and_outside_the_repository(tmp_path, monkeypatch):
    from repo_paths import relative_paths, repo_relative

    assert repo_relative(ROOT / "experiments" / "repo_paths.py") == "experiments/repo_paths.py"
    monkeypatch.chdir(ROOT / "results")
    assert repo_relative("offline/table.json") == "results/offline/table.json"
    outside = repo_relative(tmp_path / "agents" / "x.npz")
    assert not os.path.isabs(outside) and outside.startswith("../")
    assert _leads_to(outside, tmp_path / "agents" / "x.npz")
    assert relative_paths({"a": ROOT / "runs", "n": 3, "s": "/kept/as/text"}) == {
        "a": "runs",
        "n": 3,
        "s": "/kept/as/text",
    }


def test_offline_table_commands_use_repository_relative_paths(tmp_path):
    import offline_table

    args = argparse.Namespace(datasets=str(tmp_path / "datasets"), kl="policy", baseline="policy")
    cmd = offline_table.run_command("cartpole-swingup", args, "-x")
    _assert_no_absolute_path(cmd)
    dataset = cmd[cmd.index("--dataset") + 1]
    assert _leads_to(dataset, tmp_path / "datasets" / "cartpole-swingup.npz")
    assert cmd[cmd.index("--out") + 1] == "results/offline/cartpole-swingup-x"
    for inside in (str(ROOT / "runs" / "agents" / "datasets"), "runs/agents/datasets"):
        args.datasets = inside  # absolute or relative (to the repository root, as the runs' cwd)
        cmd = offline_table.run_command("reacher-easy", args, "")
        assert cmd[cmd.index("--dataset") + 1] == "runs/agents/datasets/reacher-easy.npz"


def test_offline_datasets_manifest_has_no_absolute_path(tmp_path, monkeypatch):
    """`build_dataset` with two tiny behaviours (uniform random and one snapshot) whose rollouts
    are made up: the manifest entry's dataset path and snapshot path are repository-relative."""
    import offline_datasets

    from anyfeedback.control.rollouts import Transitions

    def fake_rollout(policy, *, episodes, seed, noise, domain, task, action_repeat):
        rng = np.random.default_rng(seed)
        t = 2 * episodes
        obs = rng.normal(size=(t + 1, 3)).astype(np.float32)
        return Transitions(
            observations=obs[:-1],
            actions=rng.uniform(-1, 1, size=(t, 1)).astype(np.float32),
            rewards=rng.normal(size=t).astype(np.float32),
            discounts=np.ones(t, np.float32),
            next_observations=obs[1:],
            episode_ids=np.repeat(np.arange(episodes), 2).astype(np.int64),
        )

    agents = tmp_path / "agents"
    snap = agents / "cartpole-swingup" / "sac_10"
    snap.mkdir(parents=True)
    (snap / "summary.json").write_text(json.dumps({"sac-s0": {"final_eval_return": 5.0}}))
    (agents / "datasets").mkdir()
    mix = [("random", None, 0.0, 1), ("poor", 10, 0.5, 1)]
    monkeypatch.setitem(offline_datasets.MIX, ("cartpole", "swingup"), mix)
    monkeypatch.setattr(offline_datasets, "rollout", fake_rollout)
    monkeypatch.setattr(offline_datasets, "load_policy", lambda path: object())
    entry = offline_datasets.build_dataset(agents, "cartpole", "swingup", seed=0)
    _assert_no_absolute_path(entry)
    assert _leads_to(entry["path"], agents / "datasets" / "cartpole-swingup.npz")
    assert entry["sources"][0]["snapshot"] == "uniform random"
    assert _leads_to(entry["sources"][1]["snapshot"], snap)


def test_aihf_control_results_and_commands_have_no_absolute_path(tmp_path, monkeypatch):
    """`--collect-only` over one finished regime writes results.json (with the arguments) and
    command.txt; a regime's run command is repository-relative and names `python`."""
    import aihf_control

    work, out = tmp_path / "work", tmp_path / "out"
    regime = work / "many-clean"
    regime.mkdir(parents=True)
    (work / "pool_returns.json").write_text(json.dumps({"expert": [1.0, 2.0]}))
    (work / "commands.txt").write_text("python -m anyfeedback.cli aihf-control ...\n")
    method = {"mean": 1.0, "std": 0.0, "returns": [1.0]}
    (regime / "summary.json").write_text(json.dumps({"methods": {"aihf": method}}))
    row = {"step": 100, "member": "aihf-s0", "kind": "eval", "eval_return": 1.0}
    (regime / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    argv = ["aihf_control.py", "--agents", str(tmp_path / "agents"), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--work", str(work), "--collect-only"])
    assert aihf_control.main() == 0
    results = json.loads((out / "results.json").read_text())
    _assert_no_absolute_path(results)
    assert _leads_to(results["args"]["agents"], tmp_path / "agents")
    args = argparse.Namespace(seeds=1, steps=10, demos=1, reward_updates=1, warmup=1)
    cmd = aihf_control.regime_command(work, work / "pool.npz", "many-clean", args)
    _assert_no_absolute_path(cmd)
    assert cmd[0] == "python" and _leads_to(cmd[cmd.index("--data") + 1], work / "pool.npz")
