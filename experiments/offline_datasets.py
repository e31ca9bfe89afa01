"""Mixed-quality offline datasets for the Table 1 analogue (docs/results/offline.md), two DMC tasks.

1. Agents: SAC (`anyfeedback control --method sac`, action repeat 4, seed 0) trained in stages;
   after each stage the run directory is copied to AGENTS/<domain>-<task>/sac_<env steps>/ (a run
   directory `control.rollouts.load_policy` reads). Resuming is bit-exact, so the stages equal
   one uninterrupted run. Existing snapshots are kept (delete them to retrain).
2. Datasets: per task, episodes of several behaviours (uniform random; snapshots of increasing
   quality with Gaussian action noise), concatenated into AGENTS/datasets/<domain>-<task>.npz
   (format: src/anyfeedback/control/offline/dataset.py) with `behaviour_ids` naming the source of each row.
   A manifest (sources, their returns, the file's SHA-256; paths relative to the repository root)
   goes to results/offline/datasets.json.

    PYTHONPATH=src python experiments/offline_datasets.py    # agents (if missing) + datasets
    PYTHONPATH=src python experiments/offline_datasets.py --only datasets

Cost on a 2-core CPU machine: ≈ 1.5 min per 10k SAC env steps; ≈ 1 s per rollout episode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("MUJOCO_GL", "disable")

from repo_paths import repo_relative  # noqa: E402

from anyfeedback.control.checkpoint import checkpoint_paths  # noqa: E402
from anyfeedback.control.offline.dataset import save_npz  # noqa: E402
from anyfeedback.control.rollouts import Transitions, load_policy, rollout  # noqa: E402
from anyfeedback.runs import atomic_write_json  # noqa: E402

AGENT_FLAGS = [
    "--method",
    "sac",
    "--seed",
    "0",
    "--action-repeat",
    "4",
    "--init-std",
    "0.5",
    "--eval-every",
    "5000",
    "--eval-episodes",
    "5",
    "--checkpoint-every",
    "100000000",
    "--threads",
    "1",
    "--no-progress",
]
# task -> SAC stages (env steps); each stage's end is one snapshot
STAGES = {
    ("cartpole", "swingup"): [10_000, 20_000, 30_000, 40_000],
    ("reacher", "easy"): [10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 80_000],
}
# task -> behaviours: (name, snapshot env steps or None = uniform random, action noise σ, episodes)
MIX = {
    ("cartpole", "swingup"): [
        ("random", None, 0.0, 20),
        ("poor", 10_000, 0.5, 20),
        ("medium", 30_000, 0.3, 20),
        ("expert-noisy", 40_000, 0.5, 20),
        ("expert", 40_000, 0.1, 20),
    ],
    ("reacher", "easy"): [
        ("random", None, 0.0, 20),
        ("poor", 20_000, 0.5, 20),
        ("medium", 60_000, 0.3, 20),
        ("expert-noisy", 80_000, 0.5, 20),
        ("expert", 80_000, 0.1, 20),
    ],
}
ACTION_REPEAT = 4


def train_agents(agents: Path, domain: str, task: str) -> None:
    run_dir = agents / f"{domain}-{task}" / "sac_run"
    for i, steps in enumerate(STAGES[(domain, task)]):
        snap = agents / f"{domain}-{task}" / f"sac_{steps}"
        if checkpoint_paths(snap):
            continue
        resume = ["--resume"] if i > 0 else []
        cmd = [
            sys.executable,
            "-m",
            "anyfeedback.cli",
            "control",
            "--domain",
            domain,
            "--task",
            task,
            "--steps",
            str(steps),
            "--out",
            str(run_dir),
            *AGENT_FLAGS,
            *resume,
        ]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        snap.mkdir(parents=True, exist_ok=True)
        newest = checkpoint_paths(run_dir)[0]
        for name in (newest.name, "summary.json"):
            shutil.copy(run_dir / name, snap / name)
        cfg = json.loads((run_dir / "config.json").read_text()) | {"steps": steps, "resume": False}
        (snap / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def build_dataset(agents: Path, domain: str, task: str, seed: int) -> dict:
    parts, ids, sources = [], [], []
    for b, (name, steps, noise, episodes) in enumerate(MIX[(domain, task)]):
        snap = agents / f"{domain}-{task}" / f"sac_{steps}" if steps else None
        policy = load_policy(snap) if snap else None
        tr = rollout(
            policy,
            episodes=episodes,
            seed=seed + 1000 * b,
            noise=noise,
            domain=domain,
            task=task,
            action_repeat=ACTION_REPEAT,
        )
        returns = tr.episode_returns()
        eval_return = (
            json.loads((snap / "summary.json").read_text())["sac-s0"]["final_eval_return"]
            if snap
            else None
        )
        sources.append(
            {
                "id": b,
                "name": name,
                "snapshot": repo_relative(snap) if snap else "uniform random",
                "snapshot_eval_return": eval_return,
                "noise": noise,
                "episodes": episodes,
                "return_mean": round(float(returns.mean()), 2),
                "return_std": round(float(returns.std()), 2),
            }
        )
        print(f"{domain}-{task} {name}: return {returns.mean():.1f} ± {returns.std():.1f}")
        parts.append(tr)
        ids.append(np.full(len(tr), b, np.int64))
    data = Transitions.concatenate(parts)
    path = agents / "datasets" / f"{domain}-{task}.npz"
    save_npz(
        path,
        data,
        behaviour_ids=np.concatenate(ids),
        domain=domain,
        task=task,
        action_repeat=ACTION_REPEAT,
    )
    all_returns = data.episode_returns()
    return {
        "path": repo_relative(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "transitions": len(data),
        "episodes": len(all_returns),
        "return_mean": round(float(all_returns.mean()), 2),
        "seed": seed,
        "action_repeat": ACTION_REPEAT,
        "sources": sources,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", default="runs/agents", help="agent snapshots and datasets")
    ap.add_argument("--only", choices=["agents", "datasets"], default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tasks",
        default=",".join(f"{d}-{t}" for d, t in MIX),
        help="comma-separated domain-task names (the manifest keeps the others)",
    )
    ap.add_argument("--manifest", default=str(ROOT / "results/offline/datasets.json"))
    args = ap.parse_args()
    agents = Path(args.agents)
    import torch

    torch.set_num_threads(1)
    path = Path(args.manifest)
    manifest = json.loads(path.read_text()) if path.exists() else {}
    for domain, task in MIX:
        if f"{domain}-{task}" not in args.tasks.split(","):
            continue
        if args.only != "datasets":
            train_agents(agents, domain, task)
        if args.only != "agents":
            manifest[f"{domain}-{task}"] = build_dataset(agents, domain, task, args.seed)
    atomic_write_json(path, manifest)


if __name__ == "__main__":
    main()
