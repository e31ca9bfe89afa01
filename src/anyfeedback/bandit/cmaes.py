"""CMA-ES through pycma (`cma` on PyPI, the reference implementation, not reimplemented).

One run = one (function, seed, popsize) on the same x₀, σ₀ and evaluation budget as the torch
methods. pycma seeds from the clock for seed 0/None, so seeds must be ≥ 1. Termination: pycma's
defaults (e.g. tolfun = tolx = 1e-11) plus the budget; after an early stop the curve stays flat.
This module imports numpy and cma only, so a spawned worker process starts quickly.

Output per run: f_mean [T+1] (f at the distribution mean before each iteration, last = final),
best [T] (best sampled f after each iteration), evals [T+1] (evaluations used at each f_mean).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CMATask:
    function: str  # a name or module:callable, resolved in the worker
    dim: int
    x0: tuple[float, ...]
    sigma0: float
    popsize: int | None  # None: pycma's default 4 + ⌊3 ln d⌋
    seed: int
    budget: int


def run_cma(task: CMATask) -> dict:
    """Run one CMA-ES task; returns plain lists (picklable across processes)."""
    import cma

    from anyfeedback.bandit.functions import evaluate, resolve_function

    if task.seed < 1:
        raise ValueError("pycma seeds must be >= 1 (0/None seeds from the clock)")
    start = time.perf_counter()
    function = resolve_function(task.function, task.dim)
    opts = {"seed": task.seed, "maxfevals": task.budget, "verbose": -9}
    if task.popsize is not None:
        opts["popsize"] = task.popsize
    es = cma.CMAEvolutionStrategy(list(task.x0), task.sigma0, opts)
    lam = es.popsize
    f_mean, best, evals = [], [], []
    best_so_far = np.inf
    while es.countevals + lam <= task.budget and not es.stop():
        evals.append(es.countevals)
        f_mean.append(float(evaluate(function, np.asarray(es.mean)[None])[0]))
        x = es.ask()
        values = evaluate(function, np.asarray(x))
        es.tell(x, values.tolist())
        best_so_far = min(best_so_far, float(np.min(values)))
        best.append(best_so_far)
    evals.append(es.countevals)
    f_mean.append(float(evaluate(function, np.asarray(es.mean)[None])[0]))
    return {
        "f_mean": f_mean,
        "best": best,
        "evals": evals,
        "popsize": lam,
        "stop": {k: str(v) for k, v in es.stop().items()},
        "seconds": time.perf_counter() - start,
    }
