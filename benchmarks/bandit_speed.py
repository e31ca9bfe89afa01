"""Wall time of the whole Fig. 1 grid: 5 functions × 8 methods × 5 seeds × 10,000 evaluations.

    .venv/bin/python benchmarks/bandit_speed.py [--repeat 1] [--json results/bandit/speed.json]

Methods: pmpo-ar, pmpo-a, pmpo-r, dpo, mpo, cem, cma-es (population 4), cma-es-default (10).
The torch methods run as one batched tensor program (150 runs, gradient methods' rows first);
CMA-ES (50 runs through pycma) runs in one worker process beside it. Reports the wall time with
the machine's load average before and after (the machine may be shared), core count and threads.
Not a timed test: run it by hand and read the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

FUNCTIONS = ("sphere", "rosenbrock", "schwefel", "rastrigin", "ackley")


def measure(workers: int) -> dict:
    from anyfeedback.bandit.config import DEFAULT_METHODS, BanditConfig
    from anyfeedback.bandit.run import run_bandit

    cfg = BanditConfig(
        functions=FUNCTIONS, dim=10, methods=DEFAULT_METHODS, seeds=5, evals=10_000, workers=workers
    )
    load_before = os.getloadavg()
    start = time.perf_counter()
    results = run_bandit(cfg, show_progress=False)
    wall = time.perf_counter() - start
    cma = [r for r in results["runs"] if r["method"].startswith("cma-es")]
    return {
        "wall_seconds": round(wall, 1),
        "engine_seconds": results["engine_seconds"],
        "runs": len(results["runs"]),
        "cma_runs": len(cma),
        "workers": workers,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="CMA-ES worker processes")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    import torch

    rows = []
    for i in range(args.repeat):
        row = measure(args.workers)
        rows.append(row)
        print(
            f"run {i + 1}: {row['wall_seconds']} s wall ({row['engine_seconds']} s torch engine), "
            f"load {row['load_average_before']} -> {row['load_average_after']}"
        )
    report = {
        "grid": "5 functions x 8 methods x 5 seeds x 10,000 evaluations (d=10)",
        "runs": rows,
        "best_wall_seconds": min(r["wall_seconds"] for r in rows),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads_in_engine": 1,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
