"""AIHF vs RLHF vs ML-IRL vs BC on one DMC task (docs/results/aihf-control.md): the same
demonstrations and segment preferences, preference regimes of 20 / 500 pairs × 0 / 30% label
noise, the seeds (and methods) of a regime as one batched program.

    (the three batches of USAGE below, run one after the other or side by side)

1. Pool: SAC snapshots of one run (`anyfeedback control --method sac ... --action-repeat 4`,
   snapshots at 10k / 30k / 40k env steps = poor / medium / expert) rolled out with Gaussian
   action noise (`control.rollouts`), EPISODES trajectories each -> WORK/pool.npz (once).
2. `anyfeedback aihf-control` runs in parallel, one per regime of `--regimes` (one per core):
   "many-clean" runs AIHF, RLHF, ML-IRL and BC; the others AIHF and RLHF only.
3. OUT/results.json, over every regime run so far: final true return per member, mean ± std per
   method and regime, held-out pair accuracy of the learned rewards, the pool's returns; with
   OUT/plot.png and OUT/command.txt. Runs (metrics, logs, the pool) stay in WORK.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from repo_paths import ROOT, relative_paths, repo_relative

from anyfeedback.runs import atomic_write_json, atomic_write_text, read_metrics, save_figure

USAGE = """\
A=runs/agents/cartpole-swingup; E="nice -n 10 .venv/bin/python experiments/aihf_control.py"
MUJOCO_GL=disable $E --agents $A --out results/aihf_control  # many-clean, few-noisy
MUJOCO_GL=disable $E --agents $A --out results/aihf_control --regimes few-clean,many-noisy
MUJOCO_GL=disable $E --agents $A --out results/aihf_control \\
    --regimes many-clean-logistic,few-noisy-logistic
"""
QUALITIES = {"poor": "sac_10000", "medium": "sac_30000", "expert": "sac_40000"}
REGIMES = {  # name -> (methods, pairs, label noise, extra flags); ML-IRL, BC use no preferences
    "many-clean": ("aihf,rlhf,ml-irl,bc", 500, 0.0, []),
    "few-noisy": ("aihf,rlhf", 20, 0.3, []),
    "few-clean": ("aihf,rlhf", 20, 0.0, []),
    "many-noisy": ("aihf,rlhf", 500, 0.3, []),
    # AIHF with the bounded demo term −log σ(r(demo) − r(policy)) instead of the linear one
    "many-clean-logistic": ("aihf", 500, 0.0, ["--demo-mode", "irl_logistic"]),
    "few-noisy-logistic": ("aihf", 20, 0.3, ["--demo-mode", "irl_logistic"]),
}


def make_pool(agents: Path, path: Path, episodes: int, noise: float) -> dict:
    from anyfeedback.control.aihf.data import pool_from_rollouts, save_pool
    from anyfeedback.control.rollouts import load_policy, rollout

    parts, returns = {}, {}
    for i, (quality, snap) in enumerate(QUALITIES.items()):
        policy = load_policy(agents / snap)
        parts[quality] = rollout(policy, episodes=episodes, seed=1000 * (i + 1), noise=noise)
        returns[quality] = [round(float(r), 1) for r in parts[quality].episode_returns()]
    pool = pool_from_rollouts(
        parts, domain=policy.domain, task=policy.task, action_repeat=policy.action_repeat
    )
    save_pool(path, pool)
    return returns


def regime_command(out: Path, pool: Path, name: str, args) -> list[str]:
    """The `aihf-control` run of one regime as `python -m ...`, run from the repository root; its
    paths are relative to it."""
    methods, pairs, noise, extra = REGIMES[name]
    return [
        "python",
        "-m",
        "anyfeedback.cli",
        "aihf-control",
        "--data",
        repo_relative(pool),
        "--out",
        repo_relative(out / name),
        "--methods",
        methods,
        "--num-pairs",
        str(pairs),
        "--pref-noise",
        str(noise),
        "--num-seeds",
        str(args.seeds),
        "--steps",
        str(args.steps),
        "--num-demos",
        str(args.demos),
        "--reward-updates",
        str(args.reward_updates),
        "--reward-warmup-steps",
        str(args.warmup),
        "--no-progress",
        *extra,
    ]


def launch(out: Path, pool: Path, name: str, args) -> tuple[subprocess.Popen, list[str]]:
    """Start one regime's run (this interpreter in place of `python`); -> (process, command)."""
    cmd = regime_command(out, pool, name, args)
    log = open(out / f"{name}.log", "w")  # noqa: SIM115
    env = os.environ | {"MUJOCO_GL": "disable"}
    argv = ["nice", "-n", "10", sys.executable, *cmd[1:]]
    return subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=ROOT), cmd


COLOURS = {"aihf": "C0", "rlhf": "C1", "ml-irl": "C2", "bc": "C3"}


def plot(results: dict, path: Path) -> None:
    """Top: final true return per method and regime (bar = mean, dots = seeds, bar = ±std),
    the pool's mean returns as dotted lines. Bottom: mean learning curve per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = results["regimes"]
    fig = plt.figure(figsize=(13, 6.4))
    grid = fig.add_gridspec(2, len(regimes), height_ratios=(1.3, 1))
    top = fig.add_subplot(grid[0, :])
    bars = [(reg, m, v) for reg, r in regimes.items() for m, v in r["methods"].items()]
    for i, (_reg, m, v) in enumerate(bars):
        top.bar(i, v["mean"], yerr=v["std"], color=COLOURS[m], alpha=0.6, capsize=2)
        top.scatter([i] * len(v["returns"]), v["returns"], color="k", s=8, zorder=3)
    top.set_xticks(range(len(bars)), [f"{m}\n{reg}" for reg, m, _ in bars], fontsize=6.5)
    top.set_ylabel("true return, final eval")
    for q, r in results["pool_returns"].items():
        top.axhline(np.mean(r), ls=":", lw=0.8, color="gray")
        top.text(len(bars) - 0.4, np.mean(r), q, fontsize=7, color="gray", va="bottom")
    top.grid(alpha=0.3, axis="y")
    for k, (reg, r) in enumerate(regimes.items()):
        ax = fig.add_subplot(grid[1, k], sharey=None if k == 0 else fig.axes[1])
        for m, curve in r["curves"].items():
            ax.plot(curve["steps"], curve["mean"], color=COLOURS[m], lw=1.2, label=m)
        ax.set_title(reg, fontsize=8)
        ax.set_xlabel("env steps", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.set_ylabel("mean true return", fontsize=7)
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path)


def curves(rows: list[dict]) -> dict:
    """Mean eval return over seeds per method and env step (learners only)."""
    by: dict[str, dict[int, list]] = {}
    for r in rows:
        if r.get("kind") == "eval" and r["step"] > 0:
            by.setdefault(r["member"].rsplit("-s", 1)[0], {}).setdefault(r["step"], []).append(
                r["eval_return"]
            )
    return {
        m: {"steps": sorted(d), "mean": [float(np.mean(d[s])) for s in sorted(d)]}
        for m, d in by.items()
    }


def late_returns(rows: list[dict], n: int = 3) -> dict:
    """Per method: each seed's mean of its last n evaluations (less noisy than the final one of
    3 episodes), then mean and std over seeds. BC has a single evaluation."""
    evals: dict[str, list] = {}
    for r in rows:
        if r.get("kind") == "eval":
            evals.setdefault(r["member"], []).append(r["eval_return"])
    by: dict[str, list] = {}
    for name, v in evals.items():
        by.setdefault(name.rsplit("-s", 1)[0], []).append(float(np.mean(v[-n:])))
    return {
        m: {
            "per_seed": [round(x, 1) for x in v],
            "mean": float(np.mean(v)),
            "std": float(np.std(v)),
        }
        for m, v in by.items()
    }


def reward_corr(rows: list[dict]) -> dict:
    """Per method: mean over seeds of the last phase's Pearson correlation between r_θ and the
    true reward on SAC's replay batches (how well the learned reward tracks the task's)."""
    last: dict[str, float] = {}
    for r in rows:
        if r.get("kind") == "train" and r.get("reward_corr") is not None:
            last[r["member"]] = r["reward_corr"]
    by: dict[str, list] = {}
    for name, v in last.items():
        by.setdefault(name.rsplit("-s", 1)[0], []).append(v)
    return {m: round(float(np.mean(v)), 3) for m, v in by.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("results/aihf_control"))
    ap.add_argument("--work", type=Path, default=Path("runs/aihf_control"))
    ap.add_argument("--episodes", type=int, default=12, help="pool trajectories per quality")
    ap.add_argument("--rollout-noise", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40_000)
    ap.add_argument("--demos", type=int, default=5)
    ap.add_argument("--reward-updates", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--regimes", default="many-clean,few-noisy", help=f"of {', '.join(REGIMES)}")
    ap.add_argument("--collect-only", action="store_true", help="only gather finished runs")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    pool = args.work / "pool.npz"
    t0 = time.time()
    if not args.collect_only:
        if not pool.exists():  # the pool is shared by every regime, made once
            returns = make_pool(args.agents, pool, args.episodes, args.rollout_noise)
            atomic_write_json(args.work / "pool_returns.json", returns)
            print(
                f"pool: { ({q: round(float(np.mean(r)), 1) for q, r in returns.items()}) } "
                f"({time.time() - t0:.0f} s)",
                flush=True,
            )
        procs = {name: launch(args.work, pool, name, args) for name in args.regimes.split(",")}
        codes = {name: p.wait() for name, (p, _) in procs.items()}
        if any(codes.values()):
            print(f"failed: {codes}; see {args.work}/*.log", file=sys.stderr)
            return 1
        with open(args.work / "commands.txt", "a") as fh:  # every batch of regimes run so far
            fh.write("\n".join(" ".join(c) for _, c in procs.values()) + "\n")
    pool_returns = json.loads((args.work / "pool_returns.json").read_text())
    results = {"pool_returns": pool_returns, "regimes": {}, "wall_s": round(time.time() - t0)}
    for name in [r for r in REGIMES if (args.work / r / "summary.json").exists()]:
        summary = json.loads((args.work / name / "summary.json").read_text())
        rows = read_metrics(args.work / name / "metrics.jsonl")
        results["regimes"][name] = {
            "methods": summary["methods"],
            "curves": curves(rows),
            "reward_corr": reward_corr(rows),
            "last3": late_returns(rows),
            "num_pairs": REGIMES[name][1],
            "pref_noise": REGIMES[name][2],
        }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "results.json", results | {"args": relative_paths(vars(args))})
    plot(results, args.out / "plot.png")
    cmds = (args.work / "commands.txt").read_text()
    atomic_write_text(args.out / "command.txt", USAGE + "\n# which ran, per regime:\n" + cmds)
    print(f"done in {time.time() - t0:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
