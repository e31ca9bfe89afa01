"""Fig. 3 analogue (AIHF §7b): AIHF-DPO vs DPO (and IPO), Self-Play AIHF vs SPIN, on the same
data (128 demonstrations, 128 pairs) and budget (24 optimizer steps of 16), gold reward vs KL.

    .venv/bin/python experiments/aihf_fig3.py --seeds 3 --out results/aihf

Writes OUT/fig3.json and OUT/fig3.png.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import aihf_common as C

METHODS = "DPO,IPO,AIHF-DPO,AIHF-DPO-contrastive,SPIN,Self-Play AIHF"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--size", default="L")
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--out", default="results/aihf")
    p.add_argument("--work", default="runs/aihf_exp")
    args = p.parse_args()
    C.set_threads(1)
    out, work = Path(args.out), Path(args.work)
    data = C.build_task(work)
    start = C.start_model(args.size)
    per: dict[str, list] = {m: [] for m in args.methods.split(",")}
    for seed in range(args.seeds):
        for m in per:
            per[m].append(C.run_method(m, start, data, work / f"fig3-{args.size}", seed))
            print(m, seed, per[m][-1], flush=True)
    results = {
        "data": data.info,
        "size": args.size,
        "start": C.evaluate(start, start, data),
        "methods": {m: C.aggregate(v) for m, v in per.items()},
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = [("DPO", "IPO", "AIHF-DPO", "AIHF-DPO-contrastive"), ("SPIN", "Self-Play AIHF")]
    titles = ["offline: AIHF-DPO vs DPO / IPO", "self-play: Self-Play AIHF vs SPIN"]
    for ax, group, title in zip(axes, groups, titles, strict=True):
        C.scatter(ax, {m: results["methods"][m] for m in group if m in per}, title)
        ax.axhline(results["start"]["gold"], color="black", lw=0.8, ls="--")
    C.save_figure(fig, out / "fig3.png")
    C.write_results(out, "fig3", results, shlex.join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
