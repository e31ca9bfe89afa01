"""Reproduce PMPO's Fig. 1 (black-box functions from 4 samples per iteration) and the α × β sweep
(the analogue of Fig. 3) with one command:

    .venv/bin/python experiments/bandit_fig1.py --out results/bandit

Writes, each with results JSON, PNG plots and report.md (the command that reproduces it inside):
  OUT/fig1/        Sphere, Rosenbrock, Schwefel 1.2, Rastrigin, Ackley at d = 10; 5 seeds ×
                   10,000 evaluations; every method with its default, beside CMA-ES (population 4
                   and pycma's default 10), plus PMPO with the adaptive β (beyond the paper)
  OUT/extras/      Schwefel 2.26 (bounded, multimodal) and the ellipsoid, same methods
  OUT/beta_scale/  PMPO at the paper's β (AR 0.5, A 0, R 2) with both solvers: the mapping to the
                   bandit defaults (β is a per-iteration trust region here)
  OUT/sweep/       α ∈ {0, 0.5, 1} × β ∈ {0, 0.25, 0.5, 1, 1.5, 2, 4} on Sphere (paper's β scale)
  OUT/timings.json wall time of each part
`--quick` runs a tiny version of everything (smoke test, ~1 minute).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

from anyfeedback.bandit.config import DEFAULT_METHODS

FIG1_FUNCTIONS = ("sphere", "rosenbrock", "schwefel", "rastrigin", "ackley")
FIG1_METHODS = (
    *DEFAULT_METHODS,
    "pmpo-ar:beta=adaptive",
    "pmpo-a:beta=adaptive",
    "pmpo-r:beta=adaptive",
)
EXTRA_FUNCTIONS = ("schwefel226", "ellipsoid")
BETA_SCALE_METHODS = (
    "pmpo-ar",
    "pmpo-a",
    "pmpo-r",
    "pmpo-ar:beta=0.5",
    "pmpo-a:beta=0",
    "pmpo-r:beta=2",
    "pmpo-ar:beta=0.5:solver=gradient",
    "pmpo-a:beta=0:solver=gradient",
    "pmpo-r:beta=2:solver=gradient",
    "pmpo-ar:solver=gradient",
    "pmpo-r:solver=gradient",
)


def _run(out: Path, **kw) -> float:
    from anyfeedback.bandit.config import BanditConfig
    from anyfeedback.bandit.outputs import write_run_outputs
    from anyfeedback.bandit.run import run_bandit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # β < 1 − α is intended in beta_scale
        cfg = BanditConfig(**kw)
        results = run_bandit(cfg, show_progress=True)
    write_run_outputs(results, out)
    print(f"{out}: {results['seconds']:.1f} s")
    return results["seconds"]


def _sweep(out: Path, **kw) -> float:
    from anyfeedback.bandit.outputs import write_sweep_outputs
    from anyfeedback.bandit.sweep import SweepConfig, run_sweep

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = SweepConfig(**kw)
        results = run_sweep(cfg, show_progress=True)
    write_sweep_outputs(results, out)
    print(f"{out}: {results['seconds']:.1f} s")
    return results["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/bandit")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--only", default="fig1,extras,beta_scale,sweep")
    args = parser.parse_args()
    out = Path(args.out)
    parts = args.only.split(",")
    seeds, evals, sweep_evals, dim = (2, 400, 800, 4) if args.quick else (5, 10_000, 30_000, 10)
    timings_path = out / "timings.json"  # merged, so `--only` keeps the other parts' times
    timings: dict = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if "fig1" in parts:
        timings["fig1"] = _run(
            out / "fig1",
            functions=FIG1_FUNCTIONS,
            methods=FIG1_METHODS,
            dim=dim,
            seeds=seeds,
            evals=evals,
        )
    if "extras" in parts:
        timings["extras"] = _run(
            out / "extras",
            functions=EXTRA_FUNCTIONS,
            methods=FIG1_METHODS,
            dim=dim,
            seeds=seeds,
            evals=evals,
        )
    if "beta_scale" in parts:
        timings["beta_scale"] = _run(
            out / "beta_scale",
            functions=("sphere", "rosenbrock"),
            methods=BETA_SCALE_METHODS,
            dim=dim,
            seeds=seeds,
            evals=evals,
        )
    if "sweep" in parts:
        timings["sweep"] = _sweep(
            out / "sweep", function="sphere", dim=dim, seeds=seeds, evals=sweep_evals
        )
    timings["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    timings["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    timings_path.write_text(json.dumps(timings, indent=2) + "\n")


if __name__ == "__main__":
    main()
