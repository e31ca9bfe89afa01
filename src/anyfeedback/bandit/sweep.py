"""α × β sweep of PMPO on one function: the analogue of the paper's Fig. 3 (docs/results/bandit.md).

The sweep is about the *paper's* β scale, so it uses a schedule under which the paper's
semantics apply (choice, documented): the gradient solver (Adam on `pmpo_loss`), 2 steps at lr 0.02
per iteration, and a slowly refreshed reference (π_ref ← π_θ every `refresh_every` = 50
iterations). Between refreshes the 4-sample batches are stochastic gradients of the population
objective J(θ; π_ref) of Eq. 10, whose boundedness is what β controls (docs/algorithms.md#pmpo): for
PMPO-R, W = β − 1 < 0 lets Σ grow without bound, and β < 2 (= K/|D_r|) leaves the signed weights
indefinite; PMPO-A's objective is bounded for every β ≥ 0.

Each α runs as one batch (β × seed rows; one engine run per α, kept as a piece by
`bandit sweep --resume`). A cell's value is the median
over seeds of the final f(μ), with a diverged run counted as +inf (heat map: "div").
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from anyfeedback.bandit.config import SweepConfig
from anyfeedback.bandit.engine import Block, EngineConfig, run_engine
from anyfeedback.bandit.functions import check_finite_start, resolve_function
from anyfeedback.bandit.methods import PMPO
from anyfeedback.bandit.pieces import SweepPart
from anyfeedback.losses.pmpo import check_pmpo_beta
from anyfeedback.runs import debug_sigkill


def run_sweep(cfg: SweepConfig, *, show_progress: bool = True, pieces=None) -> dict:
    """Run every (α, β, seed); returns the sweep results dict (final f per cell and seed).
    `pieces` (bandit/pieces.py): each α's finished rows are kept there and not rerun."""
    start = time.perf_counter()
    function = resolve_function(cfg.function, cfg.dim)
    for a in cfg.alphas:
        for b in cfg.betas:
            check_pmpo_beta(a, b, stacklevel=2)  # the CLI shows it as one `warning:` line
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    from anyfeedback.bandit.run import starting_points

    start_pts = [starting_points(function, cfg.dim, s, None) for s in seeds]
    check_finite_start(function, np.stack([x for x, _ in start_pts]))
    k = cfg.samples
    rows = [(a, b, i) for a in cfg.alphas for b in cfg.betas for i in range(len(seeds))]
    ecfg = EngineConfig(
        dim=cfg.dim,
        samples=k,
        iterations=cfg.evals // k,
        steps=cfg.steps,
        lr=cfg.lr,
        refresh_every=cfg.refresh_every,
        diagonal=cfg.covariance == "diag",
    )
    per_alpha = len(cfg.betas) * len(seeds)
    finished = {
        j: pieces.sweep_alpha(j) if pieces is not None else None for j in range(len(cfg.alphas))
    }
    todo = [j for j, done in finished.items() if done is None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _progress(cfg, len(rows), ecfg.iterations * len(todo), show_progress) as tick:
            for n, j in enumerate(todo):
                a_rows = rows[j * per_alpha : (j + 1) * per_alpha]
                finished[j] = _run_alpha(cfg, ecfg, function, a_rows, seeds, start_pts, tick, n)
                if pieces is not None:
                    pieces.save_sweep_alpha(j, finished[j])
                debug_sigkill(j + 1)  # test hook: a kill after α number j + 1 is kept
    finally:
        torch.set_num_threads(threads)
    parts = [finished[j] for j in range(len(cfg.alphas))]
    out = SweepPart(
        np.concatenate([p.initial_f for p in parts]),
        np.concatenate([p.final_f_mean for p in parts]),
        [r for p in parts for r in p.reason],
    )
    return _sweep_results(cfg, rows, seeds, out, time.perf_counter() - start)


def _run_alpha(cfg, ecfg, function, a_rows, seeds, start_pts, tick, n) -> SweepPart:
    """One α's β × seed rows as one batch: one PMPO block with β per row. Rows share nothing but
    the per-seed noise streams, so the α's may run apart (and be resumed apart) with results
    equal to one batch of every row; the price is one engine loop per α (the default 3 × 7 grid,
    d=10, 1000 iterations: 13.4 s CPU against 7.6 s for one batch)."""
    a, k = a_rows[0][0], cfg.samples
    betas = torch.tensor([b for _, b, _ in a_rows], dtype=torch.float64)
    sl = slice(0, len(a_rows))
    method = PMPO(a, betas, sl, k, k // 2, k // 2, normalization=cfg.normalization)
    blocks = [Block(f"alpha={a:g}", method, sl)]
    x0 = np.stack([start_pts[i][0] for _, _, i in a_rows])
    sigma0 = np.array([start_pts[i][1] for _, _, i in a_rows])
    row_seeds = [seeds[i] for _, _, i in a_rows]
    offset = n * ecfg.iterations
    res = run_engine(
        ecfg, blocks, [function] * len(a_rows), row_seeds, x0, sigma0, lambda i: tick(offset + i)
    )
    return SweepPart(res.f_mean[0], res.final_f_mean, list(res.reason))


@contextmanager
def _progress(cfg, n_rows: int, total: int, show: bool):
    """A tick(i) for i iterations done out of `total` (a bar when `show`)."""
    if not show:
        yield lambda i: None
        return
    from anyfeedback.runs import progress

    with progress(f"sweep {cfg.function} ({n_rows} runs)", total) as (bar, t):

        def tick(i: int) -> None:
            if i % 25 == 0 or i == total:
                bar.update(t, completed=i, info=f"{i * cfg.samples} evals")

        yield tick


def _sweep_results(cfg, rows, seeds, out, seconds) -> dict:
    cells = []
    for a in cfg.alphas:
        for b in cfg.betas:
            idx = [i for i, (ra, rb, _) in enumerate(rows) if ra == a and rb == b]
            finals = [float(out.final_f_mean[i]) for i in idx]
            div = [out.reason[i] for i in idx]
            counted = [np.inf if d else f for f, d in zip(finals, div, strict=True)]
            med = float(np.median(counted))
            cells.append(
                {
                    "alpha": a,
                    "beta": b,
                    "final_f_mean": [f if np.isfinite(f) else None for f in finals],
                    "divergence": div,
                    "diverged": sum(d is not None for d in div),
                    "median_final_f_mean": med if np.isfinite(med) else None,
                    "below_bound": a < 1 and b < 1 - a,
                }
            )
    return {
        "schema": "anyfeedback.bandit.sweep/1",
        "config": cfg,
        "seeds": seeds,
        "initial_f_mean": float(np.median(out.initial_f)),  # f(x₀), median over every run
        "cells": cells,
        "seconds": round(seconds, 2),
    }


def plot_heatmap(results: dict, path: str | Path) -> Path:
    """α (rows) × β (columns) heat map of log10 median final f(μ); diverged cells hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anyfeedback.runs import save_figure

    cfg = results["config"]
    alphas, betas = list(cfg.alphas), list(cfg.betas)
    grid = np.full((len(alphas), len(betas)), np.nan)
    labels = [["" for _ in betas] for _ in alphas]
    for c in results["cells"]:
        i, j = alphas.index(c["alpha"]), betas.index(c["beta"])
        med = c["median_final_f_mean"]
        if med is not None:
            grid[i, j] = np.log10(max(med, 1e-300))
        n = len(c["final_f_mean"])
        text = f"diverged\n{c['diverged']}/{n}" if med is None else f"{med:.0e}"
        if c["diverged"] and med is not None:
            text += f"\n{c['diverged']}/{n} div"
        labels[i][j] = text
    fig, ax = plt.subplots(figsize=(1.0 + 1.05 * len(betas), 0.9 + 0.75 * len(alphas)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#b2182b")  # red: diverged (median +inf)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    for i in range(len(alphas)):
        for j in range(len(betas)):
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_xlabel("β")
    ax.set_ylabel("α   (0 = reject-only, 1 = accept-only)")
    ax.set_title(
        f"PMPO on {cfg.function} d={cfg.dim}: median final f(μ) over {cfg.seeds} seeds after "
        f"{cfg.evals} evals (start: {results['initial_f_mean']:.2g})\n(red = diverged; "
        f"π_ref refreshed every {cfg.refresh_every} it., {cfg.steps} Adam steps/it., "
        f"lr {cfg.lr:g})",
        fontsize=8,
    )
    fig.colorbar(im, ax=ax, label="log10 median final f(μ)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
