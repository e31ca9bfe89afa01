"""Table 1 analogue (PMPO arXiv 2410.04166 §5.3): BC, Accept+BC, Accept, Reject+BC,
Accept+Reject+BC on the mixed-quality datasets of `offline_datasets.py`, ≥ 3 seeds, two DMC tasks.

One `anyfeedback offline` run per task (all five rows × seeds as one ensemble; the rows of a seed
share its value function, labels, initial weights and batches), the tasks in parallel, then
results/offline/table.json, table.md, table.png and command.txt. Each run directory
(results/offline/<domain>-<task>[-<tag>]/) keeps config.json, metrics.jsonl, curves.png,
summary.json, report.md (policy.safetensors is not committed).

    PYTHONPATH=src python experiments/offline_table.py               # ≈ 11 min on a 2-core CPU
    PYTHONPATH=src python experiments/offline_table.py --tag sample --kl sample   # ablation
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from repo_paths import repo_relative  # noqa: E402

from anyfeedback.control.offline.config import PRESETS, TABLE_ROWS  # noqa: E402
from anyfeedback.runs import atomic_write_json, atomic_write_text, save_figure  # noqa: E402

TASKS = ("cartpole-swingup", "reacher-easy")
PAPER = {"bc": 24, "accept-bc": 26, "accept": 27, "reject-bc": 77, "accept-reject-bc": 93}
LABEL = {
    "bc": "BC",
    "accept-bc": "Accept+BC",
    "accept": "Accept",
    "reject-bc": "Reject+BC",
    "accept-reject-bc": "Accept+Reject+BC",
}
SETTINGS = [
    "--num-seeds",
    "3",
    "--value-steps",
    "4000",
    "--policy-steps",
    "3000",
    "--hidden",
    "128",
    "--eval-episodes",
    "10",
    "--threads",
    "1",
]


def ordering(means: dict[str, float], tol: float) -> dict[str, bool]:
    """The paper's ordering BC ≲ A ≈ A+BC < R+BC < AR+BC, each relation checked on the means
    (≈ / ≲: within `tol` of the larger one, e.g. one pooled std)."""
    m = means
    return {
        "BC <~ Accept": m["bc"] <= m["accept"] + tol,
        "Accept ~ Accept+BC": abs(m["accept"] - m["accept-bc"]) <= tol,
        "Accept < Reject+BC": m["accept"] < m["reject-bc"],
        "Accept+BC < Reject+BC": m["accept-bc"] < m["reject-bc"],
        "Reject+BC < Accept+Reject+BC": m["reject-bc"] < m["accept-reject-bc"],
    }


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(4.5 * len(table), 3.4), squeeze=False)
    for ax, (task, rows) in zip(axes[0], table.items(), strict=True):
        x = range(len(TABLE_ROWS))
        ax.bar(
            x,
            [rows[r]["mean"] for r in TABLE_ROWS],
            yerr=[rows[r]["std"] for r in TABLE_ROWS],
            color=[f"C{i}" for i in x],
            capsize=3,
        )
        for i, r in enumerate(TABLE_ROWS):
            ax.scatter([i] * len(rows[r]["returns"]), rows[r]["returns"], s=8, c="k", zorder=3)
        ax.axhline(rows["_data_return"], ls="--", c="grey", lw=1, label="dataset mean return")
        ax.set_xticks(list(x), [LABEL[r] for r in TABLE_ROWS], rotation=30, ha="right", fontsize=7)
        ax.set_title(task, fontsize=9)
        ax.set_ylabel("evaluation return", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path)


def run_command(task: str, args: argparse.Namespace, suffix: str) -> list[str]:
    """The `anyfeedback offline` command of one task, run from the repository root; its paths are
    relative to it (the run's config.json and summary.json record the dataset path as given).
    A relative `--datasets` is read from the repository root, as the runs read it."""
    return [
        "anyfeedback",
        "offline",
        "--dataset",
        repo_relative(ROOT / args.datasets / f"{task}.npz"),
        "--methods",
        ",".join(TABLE_ROWS),
        "--kl",
        args.kl,
        "--baseline",
        args.baseline,
        *SETTINGS,
        "--out",
        f"results/offline/{task}{suffix}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="runs/agents/datasets")
    ap.add_argument("--tag", default="", help="suffix of the run dirs and table files")
    ap.add_argument("--kl", default="policy", choices=["policy", "sample"])
    ap.add_argument("--baseline", default="policy", choices=["policy", "value"])
    args = ap.parse_args()
    out = ROOT / "results/offline"
    suffix = f"-{args.tag}" if args.tag else ""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MUJOCO_GL": "disable",
        "ANYFEEDBACK_PROGRESS": "0",
    }
    cmds, procs = {}, {}
    for task in TASKS:
        cmds[task] = run_command(task, args, suffix)
        argv = [sys.executable, "-m", "anyfeedback.cli", *cmds[task][1:]]
        log = open(out / f"{task}{suffix}.log", "w")  # noqa: SIM115
        procs[task] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)
    for task, p in procs.items():
        if p.wait() != 0:
            sys.exit(f"{task} failed: see results/offline/{task}{suffix}.log")
    manifest = json.loads((out / "datasets.json").read_text())
    table = {}
    for task in TASKS:
        s = json.loads((out / f"{task}{suffix}" / "summary.json").read_text())
        table[task] = dict(s["methods"])
        table[task]["_data_return"] = manifest[task]["return_mean"]
        table[task]["_labels"] = {k: v["accepted"] for k, v in s["labels"].items()}
    checks = {}
    for task, rows in table.items():
        tol = max(rows[r]["std"] for r in TABLE_ROWS)
        checks[task] = ordering({r: rows[r]["mean"] for r in TABLE_ROWS}, tol)
    atomic_write_json(
        out / f"table{suffix}.json",
        {
            "rows": table,
            "paper_table1": PAPER,
            "ordering_checks": checks,
            "presets": {r: PRESETS[r]._asdict() for r in TABLE_ROWS},
            "kl": args.kl,
            "baseline": args.baseline,
            "commands": cmds,
        },
    )
    head = "| row | α | β | " + " | ".join(TASKS) + " | paper (RGB stacking) |"
    lines = [
        f"Offline Table 1 analogue (KL: {args.kl}, baseline: {args.baseline}); evaluation "
        "return, mean ± std over 3 seeds (10 episodes each).",
        "",
        head,
        "|" + "---|" * (len(TASKS) + 4),
    ]
    for r in TABLE_ROWS:
        p = PRESETS[r]
        cells = [f"{table[t][r]['mean']:.1f} ± {table[t][r]['std']:.1f}" for t in TASKS]
        alpha = "–" if not p.labelled else f"{p.alpha:g}"
        lines.append(
            f"| {LABEL[r]} | {alpha} | {p.beta:g} | " + " | ".join(cells) + f" | {PAPER[r]} |"
        )
    data = " | ".join(f"{table[t]['_data_return']:.1f}" for t in TASKS)
    lines += [f"| dataset mean episode return | | | {data} | |", ""]
    for task, c in checks.items():
        verdicts = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in c.items())
        lines.append(f"- {task}: {verdicts}")
    atomic_write_text(out / f"table{suffix}.md", "\n".join(lines) + "\n")
    plot(table, out / f"table{suffix}.png")
    atomic_write_text(
        out / f"command{suffix}.txt",
        f"PYTHONPATH=src python experiments/offline_table.py --kl {args.kl} "
        f"--baseline {args.baseline}"
        + (f" --tag {args.tag}" if args.tag else "")
        + "\n# runs, per task:\n"
        + "\n".join(" ".join(c) for c in cmds.values())
        + "\n",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
