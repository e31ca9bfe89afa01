"""Fig. 2 analogue (AIHF arXiv 2406.06874 §7a): AIHF vs RLHF vs SFT at two model sizes, same
data (128 demonstrations, 128 preference pairs) and budget, gold reward vs KL over seeds.

    .venv/bin/python experiments/aihf_fig2.py --seeds 3 --out results/aihf

Writes OUT/fig2.json (per size and method: gold reward and KL, mean/std/values; reward-model
held-out accuracies) and OUT/fig2.png. Runs go to --work (not committed).
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
    p.add_argument("--sizes", default="S,L")
    p.add_argument("--methods", default="SFT,RLHF,AIHF")
    p.add_argument("--out", default="results/aihf")
    p.add_argument("--work", default="runs/aihf_exp")
    args = p.parse_args()
    C.set_threads(1)
    out, work = Path(args.out), Path(args.work)
    data = C.build_task(work)
    results: dict = {"data": data.info, "sizes": {}}
    for size in args.sizes.split(","):
        start = C.start_model(size)
        per: dict[str, list] = {m: [] for m in args.methods.split(",")}
        start_eval = C.evaluate(start, start, data)
        for seed in range(args.seeds):
            rm = C.run_reward_model(start, data, work / f"fig2-{size}" / f"rm-s{seed}", seed)
            for m in per:
                per[m].append(C.run_method(m, start, data, work / f"fig2-{size}", seed, rm))
                print(size, m, seed, per[m][-1], flush=True)
        results["sizes"][size] = {
            "start": start_eval,
            "spec": C.SIZES[size].__dict__,
            "methods": {m: C.aggregate(v) for m, v in per.items()},
        }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["sizes"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        r = results["sizes"][size]
        spec = C.SIZES[size]
        C.scatter(
            ax,
            r["methods"],
            f"size {size}: hidden {spec.hidden_size}, "
            f"{spec.num_layers} layers (start gold {r['start']['gold']:+.3f})",
        )
        ax.axhline(r["start"]["gold"], color="black", lw=0.8, ls="--")
    C.save_figure(fig, out / "fig2.png")
    C.write_results(out, "fig2", results, shlex.join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
