"""Fig. 4 analogue (AIHF §7c): AIHF vs RLHF as the preferences get fewer (128 demonstrations
with 16 / 64 / 256 pairs) or noisier (128 pairs, labels flipped with probability 0 / 0.2 / 0.4).

    .venv/bin/python experiments/aihf_fig4.py --seeds 3 --out results/aihf

Writes OUT/fig4.json and OUT/fig4.png (gold reward per setting, mean ± std over seeds, and the
held-out accuracy of each method's reward model).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import aihf_common as C


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--size", default="L")
    p.add_argument("--pairs", default="16,64,256")
    p.add_argument("--noise", default="0,0.2,0.4")
    p.add_argument("--out", default="results/aihf")
    p.add_argument("--work", default="runs/aihf_exp")
    args = p.parse_args()
    C.set_threads(1)
    out, work = Path(args.out), Path(args.work)
    start = C.start_model(args.size)
    settings = [("pairs", int(n), 0.0) for n in args.pairs.split(",")]
    settings += [("noise", 128, float(e)) for e in args.noise.split(",")]
    results: dict = {"size": args.size, "sweeps": {"pairs": {}, "noise": {}}}
    for sweep, n_pairs, noise in settings:
        data = C.build_task(work, n_pairs=n_pairs, noise=noise)
        per: dict[str, list] = {"RLHF": [], "AIHF": []}
        tag = f"fig4-p{n_pairs}-n{noise:g}"
        for seed in range(args.seeds):
            rm = C.run_reward_model(start, data, work / tag / f"rm-s{seed}", seed)
            for m in per:
                per[m].append(C.run_method(m, start, data, work / tag, seed, rm))
                print(tag, m, seed, per[m][-1], flush=True)
        key = str(n_pairs) if sweep == "pairs" else f"{noise:g}"
        results["sweeps"][sweep][key] = {
            "data": data.info,
            "methods": {m: C.aggregate(v) for m, v in per.items()},
        }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    labels = {"pairs": "preference pairs (128 demonstrations)", "noise": "label-flip probability"}
    for col, sweep in enumerate(("pairs", "noise")):
        xs = list(results["sweeps"][sweep])
        for row, metric in enumerate(("gold", "rm_accuracy")):
            ax = axes[row][col]
            for m in ("RLHF", "AIHF"):
                s = [results["sweeps"][sweep][x]["methods"][m][metric] for x in xs]
                ax.errorbar(
                    range(len(xs)),
                    [v["mean"] for v in s],
                    yerr=[v["std"] for v in s],
                    marker="o",
                    capsize=3,
                    label=m,
                    color=C.COLORS[m],
                )
            ax.set_xticks(range(len(xs)), xs)
            ax.set_xlabel(labels[sweep])
            ax.set_ylabel("gold reward" if metric == "gold" else "RM held-out pair accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    C.save_figure(fig, out / "fig4.png")
    C.write_results(out, "fig4", results, shlex.join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
