"""`run_bandit(cfg)`: every (function, method, seed) of a config, batched, plus CMA-ES in worker
processes; returns the results dict written to `results.json` (schema in `report.py`).

Setup (choice, documented in the config): seed s draws u ~ U[0, 1]^d (numpy, seed s) and starts
every method at x₀ = low + u·(high − low) in the function's box with σ₀ = ¼ of the box width,
so all methods and CMA-ES share x₀, σ₀ and the budget. The torch methods share the noise too.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from collections.abc import Callable

import numpy as np
import torch

from anyfeedback.bandit.cmaes import CMATask, run_cma
from anyfeedback.bandit.config import BanditConfig, MethodSpec
from anyfeedback.bandit.engine import Block, EngineConfig, run_engine
from anyfeedback.bandit.functions import Function, check_finite_start, resolve_function
from anyfeedback.bandit.methods import CEM, DPO, MPO, PMPO
from anyfeedback.bandit.pieces import Pieces
from anyfeedback.bandit.report import assemble_results
from anyfeedback.runs import debug_sigkill


def starting_points(function: Function, dim: int, seed: int, sigma0: float | None):
    """x₀ [d] and σ₀ for one seed (see module docstring)."""
    u = np.random.default_rng(seed).uniform(size=dim)
    x0 = function.low + u * (function.high - function.low)
    return x0, (sigma0 if sigma0 is not None else function.sigma0)


def build_method(spec: MethodSpec, cfg: BanditConfig, rows: slice, sigma0: np.ndarray):
    """The method object for a block of rows (the dict from names to objects lives here)."""
    o = spec.options
    if spec.kind == "pmpo":
        return PMPO(
            alpha=o["alpha"],
            beta=o["beta"],
            rows=rows,
            n_samples=cfg.samples,
            n_accepted=cfg.n_accepted,
            n_rejected=cfg.n_accepted,
            solver=o["solver"],
            normalization=cfg.normalization,
            beta_mode="adaptive" if o["adaptive"] else "fixed",
            epsilon=o["epsilon"],
            beta_lr=o["beta_lr"],
            decoupled=o["decoupled"],
            beta_cov=o["beta_cov"],
            epsilon_cov=o["epsilon_cov"],
            lr=o["lr"],
        )
    if spec.kind == "dpo":
        return DPO(beta=o["beta"], rows=rows, lr=o["lr"])
    if spec.kind == "mpo":
        return MPO(o["epsilon"], o["epsilon_mean"], o["epsilon_cov"], rows=rows, lr=o["lr"])
    if spec.kind == "cem":
        s0 = torch.as_tensor(sigma0[rows], dtype=torch.float64)
        return CEM(o["smoothing"], o["noise"], o["decay"], o["elites"], s0, rows=rows)
    raise ValueError(f"{spec.kind} does not run in the torch engine")


def _is_gradient(spec: MethodSpec) -> bool:
    return spec.kind in ("dpo", "mpo") or (
        spec.kind == "pmpo" and spec.options["solver"] == "gradient"
    )


def engine_config(cfg: BanditConfig) -> EngineConfig:
    return EngineConfig(
        dim=cfg.dim,
        samples=cfg.samples,
        iterations=cfg.iterations,
        steps=cfg.steps,
        lr=cfg.lr or 0.01,  # every gradient block sets its own lr; this is only a fallback
        param=cfg.param,
        refresh_every=cfg.refresh_every,
        ema=cfg.ema,
        diagonal=cfg.covariance == "diag",
    )


def run_bandit(
    cfg: BanditConfig,
    *,
    show_progress: bool = True,
    on_iteration: Callable[[int], None] | None = None,
    pieces: Pieces | None = None,
) -> dict:
    """Run the whole grid of `cfg`; returns the results dict (see `report.assemble_results`).
    With `pieces`, finished pieces are kept there and those already there are not rerun."""
    start = time.perf_counter()
    pieces = pieces or Pieces(None, cfg, resume=False)
    functions = [resolve_function(name, cfg.dim) for name in cfg.functions]
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    starts = {
        (f.name, s): starting_points(f, cfg.dim, s, cfg.sigma0) for f in functions for s in seeds
    }
    for f in functions:  # a broken objective is an input error, caught before any work
        check_finite_start(f, np.stack([starts[(f.name, s)][0] for s in seeds]))

    rows, blocks, cma_tasks = [], [], []
    torch_specs = [m for m in cfg.resolved if m.kind != "cma-es"]
    torch_specs.sort(key=lambda m: not _is_gradient(m))  # the engine wants gradient rows first
    for spec in torch_specs:
        first = len(rows)
        rows += [(f, spec.label, s) for f in functions for s in seeds]
        blocks.append((spec, slice(first, len(rows))))
    for spec in (m for m in cfg.resolved if m.kind == "cma-es"):
        for f in functions:
            for s in seeds:
                x0, s0 = starts[(f.name, s)]
                task = CMATask(
                    f.name, cfg.dim, tuple(x0), s0, spec.options["popsize"], s, cfg.evals
                )
                cma_tasks.append((spec.label, task))

    cma_done = {i: pieces.cma(i) for i in range(len(cma_tasks))}
    todo = [i for i, out in cma_done.items() if out is None]
    pool, futures = None, []
    if todo and cfg.workers > 0:
        # fork: the worker runs numpy + pycma only; spawn would re-import an unguarded __main__
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = cf.ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx)
        futures = {i: pool.submit(run_cma, cma_tasks[i][1]) for i in todo}

    engine_out = pieces.engine()
    if rows and engine_out is None:
        x0 = np.stack([starts[(f.name, s)][0] for f, _, s in rows])
        sigma0 = np.array([starts[(f.name, s)][1] for f, _, s in rows])
        engine_blocks = [
            Block(spec.label, build_method(spec, cfg, sl, sigma0), sl) for spec, sl in blocks
        ]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny batched ops: intra-op threads only add overhead
        try:
            engine_out = _run_with_progress(
                cfg, engine_blocks, rows, x0, sigma0, show_progress, on_iteration
            )
        finally:
            torch.set_num_threads(threads)
        pieces.save_engine(engine_out)
        debug_sigkill(1)  # test hook: a kill after the first piece

    try:
        for n, i in enumerate(todo, start=2):
            cma_done[i] = futures[i].result() if pool is not None else run_cma(cma_tasks[i][1])
            pieces.save_cma(i, cma_done[i])
            debug_sigkill(n)
    finally:
        if pool is not None:
            pool.shutdown()
    cma_out = [cma_done[i] for i in range(len(cma_tasks))]
    cma_runs = [(label, task, out) for (label, task), out in zip(cma_tasks, cma_out, strict=True)]
    return assemble_results(cfg, rows, engine_out, cma_runs, time.perf_counter() - start)


def _run_with_progress(cfg, engine_blocks, rows, x0, sigma0, show_progress, on_iteration):
    functions = [f for f, _, _ in rows]
    seeds = [s for _, _, s in rows]
    ecfg = engine_config(cfg)
    if not show_progress:
        return run_engine(ecfg, engine_blocks, functions, seeds, x0, sigma0, on_iteration)
    from anyfeedback.runs import progress

    label = f"bandit {','.join(cfg.functions)} d={cfg.dim} ({len(rows)} runs)"
    with progress(label, cfg.iterations) as (bar, task):

        def tick(t: int) -> None:
            if t % 25 == 0 or t == cfg.iterations:
                bar.update(task, completed=t, info=f"{t * cfg.samples} evals")
            if on_iteration is not None:
                on_iteration(t)

        return run_engine(ecfg, engine_blocks, functions, seeds, x0, sigma0, tick)
