"""The batched bandit loop: every (function, method, seed) run is a row of one tensor program.

Shapes: R runs (rows), K samples per iteration, D dims, T iterations.
  ref          GaussianPolicy [R]        π_ref, in absolute coordinates
  frame        GaussianPolicy [R]        the coordinates the local parameters live in:
                                         π_ref itself ("whitened", re-set at every refresh)
                                         or N(x₀, σ₀²I) for ever ("absolute", the naive choice)
  delta, raw   [G, D], [G, D, D] / [G, D]  local parameters of π_θ = frame.compose(local) for the
                                         G rows of gradient methods (a prefix of the batch)
  z            [R, K, D]                 standard-normal noise; common random numbers: every run
                                         with the same seed draws the same z at iteration t
Per iteration: y = π_ref(z) → f (one vectorised call per function) → sort best → worst →
closed-form methods solve; gradient methods take `steps` Adam steps on the sum of their losses
→ adaptive duals → refresh π_ref (every `refresh_every` iterations, or an EMA) → divergence check.
Divergence (reported per run, never raised): non-finite parameters or f(μ) ("nan"), a non-finite
sample value ("nonfinite_f"), max σ > 1e4·σ₀ ("covariance_exploded"), f(μ) > 1e3·f(μ₀) for 20
iterations in a row ("f_increased"; a single excursion, e.g. into Schwefel 2.26's penalty, is not), 50 failed exact M-steps in a row ("mstep_failed", W ≤ 0 or Σ* not PD; a single
failure keeps π_ref and is counted). A diverged run is frozen at its last finite policy.
Whitened coordinates make the per-iteration problem scale-free (π_ref = N(0, I)), so one
learning rate serves f ≈ 1e2 and f ≈ 1e-12 alike; Adam moments are reset whenever they change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from anyfeedback.bandit.functions import Function, evaluate
from anyfeedback.bandit.methods import Feedback, PolicyStats
from anyfeedback.policies import GaussianPolicy

DTYPE = torch.float64
REASONS = ("nan", "nonfinite_f", "covariance_exploded", "f_increased", "mstep_failed")


@dataclass(frozen=True)
class EngineConfig:
    """Loop settings shared by every torch-side method (one budget, one schedule)."""

    dim: int
    samples: int = 4  # K samples per iteration
    iterations: int = 2500
    steps: int = 10  # Adam steps per iteration (gradient methods)
    lr: float = 0.02  # Adam learning rate on the local (whitened) parameters
    param: str = "whitened"  # "whitened" | "absolute"
    refresh_every: int = 1  # π_ref ← π_θ every N iterations (ignored when ema > 0)
    ema: float = 0.0  # > 0: π_ref ← EMA(π_ref, π_θ) with this rate, every iteration
    diagonal: bool = False
    explode_factor: float = 1e4  # max σ > this × σ₀ → "covariance_exploded"
    increase_factor: float = 1e3  # f(μ) > this × max(f(μ₀), 1e-12) …
    increase_patience: int = 20  # … for this many iterations in a row → "f_increased"
    fail_streak: int = 50  # this many failed closed-form M-steps in a row → "mstep_failed"


@dataclass
class Block:
    """One method over a contiguous slice of rows."""

    label: str
    method: object
    rows: slice


@dataclass
class EngineResult:
    f_mean: np.ndarray  # [T+1, R] f(μ_θ) before iteration t (row T: final); NaN after divergence
    best: np.ndarray  # [T, R] best sampled f after iteration t
    diverged_at: np.ndarray  # [R] iteration of divergence, −1 if none
    reason: list[str | None]
    final_f_mean: np.ndarray  # [R] f of the final (or frozen) mean
    diagnostics: dict[str, np.ndarray]  # per-row extras, NaN where not applicable
    seconds: float


class RowAdam:
    """Adam (Kingma & Ba 2015, arXiv 1412.6980) with one learning rate per row (run), so each
    method keeps its own step size inside the shared batch:
        m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  p ← p − lr_r·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)
    `reset()` zeroes the moments (done whenever the whitened coordinates change)."""

    def __init__(self, params, lr_rows: torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr_rows, self.betas, self.eps = list(params), lr_rows, betas, eps
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            g = p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            lr = self.lr_rows.reshape(-1, *([1] * (p.dim() - 1)))  # [R, 1, ...]
            p.sub_(lr * (m / c1) / ((v / c2).sqrt() + self.eps))
            p.grad = None


def _policy(mean: torch.Tensor, std: torch.Tensor, diagonal: bool) -> GaussianPolicy:
    return GaussianPolicy(mean, std if diagonal else torch.diag_embed(std))


def _evaluate(groups, y: np.ndarray) -> np.ndarray:
    """Values [R, M] of points y [R, M, D], one call per function on its rows."""
    out = np.empty(y.shape[:2])
    for function, idx in groups:
        pts = y[idx].reshape(-1, y.shape[-1])  # [r·M, D]
        with np.errstate(all="ignore"):
            out[idx] = evaluate(function, pts).reshape(len(idx), y.shape[1])
    return out


def _ema(a: GaussianPolicy, b: GaussianPolicy, rate: float) -> GaussianPolicy:
    """Interpolate mean and log-Cholesky parameters: (1 − rate)·a + rate·b."""
    return GaussianPolicy.from_raw(
        (1 - rate) * a.mean + rate * b.mean, (1 - rate) * a.raw() + rate * b.raw()
    )


def _merge(base: GaussianPolicy, new: GaussianPolicy, mask: torch.Tensor) -> GaussianPolicy:
    m = mask[:, None]
    s = m if base.diagonal else mask[:, None, None]
    return GaussianPolicy(
        torch.where(m, new.mean, base.mean), torch.where(s, new.scale, base.scale)
    )


def run_engine(
    cfg: EngineConfig,
    blocks: Sequence[Block],
    functions: Sequence[Function],
    seeds: Sequence[int],
    x0: np.ndarray,
    sigma0: np.ndarray,
    on_iteration: Callable[[int], None] | None = None,
) -> EngineResult:
    """Run all rows for `cfg.iterations` iterations. `functions`, `seeds`: per row; x0 [R, D],
    sigma0 [R]. Rows of diverged runs are frozen at their last finite policy."""
    t_start = time.perf_counter()
    r, d, k, big_t = len(functions), cfg.dim, cfg.samples, cfg.iterations
    by_name: dict[str, list[int]] = {}
    for i, fn in enumerate(functions):
        by_name.setdefault(fn.name, []).append(i)
    groups = [(functions[idx[0]], np.array(idx)) for idx in by_name.values()]
    distinct = sorted(set(seeds))
    seed_index = torch.tensor([distinct.index(s) for s in seeds])
    generators = [torch.Generator().manual_seed(int(s)) for s in distinct]

    sig0 = torch.as_tensor(sigma0, dtype=DTYPE)
    ref = _policy(
        torch.as_tensor(x0, dtype=DTYPE), sig0[:, None].expand(r, d).clone(), cfg.diagonal
    )
    frame = ref
    grad_blocks = [b for b in blocks if b.method.gradient]
    closed_blocks = [b for b in blocks if not b.method.gradient]
    g = max((b.rows.stop for b in grad_blocks), default=0)  # gradient rows: the prefix [0, g)
    if sum(b.rows.stop - b.rows.start for b in grad_blocks) != g:
        raise ValueError("gradient blocks must come first and cover rows [0, g)")
    head = slice(0, g)
    std_local = GaussianPolicy.standard((g,), d, diagonal=cfg.diagonal, dtype=DTYPE)
    delta = torch.zeros(g, d, dtype=DTYPE, requires_grad=True)
    raw = std_local.raw().clone().requires_grad_(True)
    lr_rows = torch.full((g,), cfg.lr, dtype=DTYPE)
    for b in grad_blocks:
        if getattr(b.method, "lr", None) is not None:
            lr_rows[b.rows] = b.method.lr
    opt = RowAdam([delta, raw], lr_rows)

    f_mean = np.full((big_t + 1, r), np.nan)
    best_hist = np.full((big_t, r), np.nan)
    best = np.full(r, np.inf)
    monitor = DivergenceMonitor(cfg, sig0)
    alive = monitor.alive
    since_refresh = 0
    streak = torch.zeros(r, dtype=torch.long)  # consecutive failed closed-form M-steps

    for t in range(big_t):
        z = torch.stack([torch.randn(k, d, generator=g, dtype=DTYPE) for g in generators])
        z = z[seed_index]  # [R, K, D]
        with torch.no_grad():
            theta = _theta(ref, frame, delta, raw, head)
            y = ref.transform(z)  # [R, K, D]
        pts = torch.cat([y, theta.mean[:, None, :]], dim=1).numpy()  # [R, K+1, D]
        fvals = _evaluate(groups, pts)  # [R, K+1]
        f_now = fvals[:, k]
        f_mean[t] = np.where(alive.numpy(), f_now, np.nan)
        fs = fvals[:, :k]
        finite_f = np.isfinite(fs).all(1)
        best = np.where(alive.numpy() & finite_f, np.minimum(best, fs.min(1)), best)
        best_hist[t] = best

        ft = torch.as_tensor(np.where(np.isfinite(fs), fs, np.inf))
        order = torch.argsort(ft, dim=1, stable=True)  # [R, K] best → worst
        idx = order[:, :, None].expand(r, k, d)
        fb_ref = Feedback(torch.gather(z, 1, idx), torch.gather(ft, 1, order))  # whitened by π_ref
        if cfg.param == "whitened":
            fb_local, ref_local = fb_ref.rows(head), std_local
        else:  # the fixed frame's coordinates
            zl = frame.select(head).standardize(y[head])
            fb_local = Feedback(torch.gather(zl, 1, idx[head]), fb_ref.f_sorted[head])
            ref_local = ref.select(head).relative_to(frame.select(head))

        new_ref, refreshed = ref, False
        for b in closed_blocks:  # closed forms refresh π_ref every iteration
            sol, ok = b.method.solve(ref.select(b.rows), fb_ref.rows(b.rows))
            new_ref = _splice(new_ref, sol, b.rows)
            streak[b.rows] = torch.where(ok, 0, streak[b.rows] + 1)
        if grad_blocks:
            local = _gradient_steps(cfg, grad_blocks, delta, raw, opt, ref_local, fb_local)
            since_refresh += 1
            refreshed = cfg.ema > 0 or since_refresh >= cfg.refresh_every
            if refreshed:
                since_refresh = 0
                with torch.no_grad():
                    target = local if cfg.ema <= 0 else _ema(ref_local, local, cfg.ema)
                    target = frame.select(head).compose(target)
                for b in grad_blocks:
                    new_ref = _splice(new_ref, target.select(b.rows), b.rows)

        alive = monitor.update(t, new_ref, f_now, finite_f, streak)  # frozen from here on
        with torch.no_grad():
            ref = _merge(ref, new_ref, alive)
            if cfg.param == "whitened":
                if refreshed:  # π_θ in the new frame: N(0, I), or the EMA's remaining offset
                    theta = _theta(ref, frame, delta, raw, head).select(head)
                    rel = theta.relative_to(ref.select(head)) if cfg.ema > 0 else std_local
                    delta.copy_(rel.mean)
                    raw.copy_(rel.raw())
                    opt.reset()
                frame = ref
            sync = ~alive[head]  # frozen runs: π_θ is simply π_ref
            if sync.any():
                back = ref.select(head).relative_to(frame.select(head))
                delta[sync] = back.mean[sync]
                raw[sync] = back.raw()[sync]
        if on_iteration is not None:
            on_iteration(t + 1)

    with torch.no_grad():
        theta = _theta(ref, frame, delta, raw, head)
    final = _evaluate(groups, theta.mean[:, None, :].numpy())[:, 0]
    f_mean[big_t] = np.where(alive.numpy(), final, np.nan)
    final = np.where(alive.numpy(), final, _last_finite(f_mean))
    diagnostics = _collect_diagnostics(blocks, r, big_t)
    return EngineResult(
        f_mean,
        best_hist,
        monitor.diverged_at,
        monitor.reason,
        final,
        diagnostics,
        time.perf_counter() - t_start,
    )


class DivergenceMonitor:
    """Per-run divergence detection (see the module docstring); a run, once flagged, stays
    frozen. `update` returns the mask of runs still alive."""

    def __init__(self, cfg: EngineConfig, sigma0: torch.Tensor) -> None:
        r = sigma0.shape[0]
        self.cfg, self.sigma0 = cfg, sigma0
        self.alive = torch.ones(r, dtype=torch.bool)
        self.reason: list[str | None] = [None] * r
        self.diverged_at = np.full(r, -1)
        self.above = torch.zeros(r, dtype=torch.long)  # iterations in a row with f(μ) ≫ f(μ₀)
        self.f0: np.ndarray | None = None

    def update(self, t, new_ref: GaussianPolicy, f_now, finite_f, streak) -> torch.Tensor:
        cfg = self.cfg
        if self.f0 is None:
            self.f0 = np.maximum(np.abs(f_now), 1e-12)
        high = torch.as_tensor(f_now > cfg.increase_factor * self.f0)
        self.above = torch.where(high, self.above + 1, 0)
        bad = {
            "nan": ~(torch.isfinite(new_ref.mean).all(-1) & _finite_scale(new_ref))
            | torch.as_tensor(~np.isfinite(f_now)),
            "nonfinite_f": torch.as_tensor(~finite_f),
            "covariance_exploded": new_ref.std.amax(-1) > cfg.explode_factor * self.sigma0,
            "f_increased": self.above >= cfg.increase_patience,
            "mstep_failed": streak >= cfg.fail_streak,
        }
        for name in REASONS:
            newly = bad[name] & self.alive
            for i in torch.nonzero(newly).flatten().tolist():
                self.reason[i], self.diverged_at[i] = name, t
            self.alive = self.alive & ~newly
        return self.alive


def _theta(ref, frame, delta, raw, head: slice) -> GaussianPolicy:
    """π_θ for every row: frame.compose(local) on the gradient rows, π_ref elsewhere."""
    if head.stop == 0:
        return ref
    local = GaussianPolicy.from_raw(delta, raw).detach()
    return _splice(ref, frame.select(head).compose(local), head)


def _gradient_steps(cfg, grad_blocks, delta, raw, opt, ref_local, fb) -> GaussianPolicy:
    """`cfg.steps` Adam steps on Σ_blocks loss(π_θ | π_ref, feedback); returns the local π_θ."""
    for b in grad_blocks:
        if hasattr(b.method, "prepare"):
            b.method.prepare(fb.rows(b.rows))
    for _ in range(cfg.steps):
        stats = PolicyStats(GaussianPolicy.from_raw(delta, raw), ref_local, fb.z_sorted)
        total = sum(b.method.loss(stats.view(b.rows), fb.rows(b.rows)) for b in grad_blocks)
        total.backward()
        opt.step()
        for b in grad_blocks:
            if hasattr(b.method, "after_backward"):
                b.method.after_backward()
    with torch.no_grad():
        local = GaussianPolicy.from_raw(delta, raw).detach()
        for b in grad_blocks:
            b.method.end_iteration(local.select(b.rows), ref_local.select(b.rows))
    return local


def _last_finite(f_mean: np.ndarray) -> np.ndarray:
    """Per row, the last finite f(μ) recorded (the value at divergence for a frozen run)."""
    out = np.full(f_mean.shape[1], np.nan)
    for t in range(f_mean.shape[0]):
        out = np.where(np.isfinite(f_mean[t]), f_mean[t], out)
    return out


def _finite_scale(p: GaussianPolicy) -> torch.Tensor:
    flat = p.scale.reshape(p.scale.shape[0], -1)
    return torch.isfinite(flat).all(-1) & (p.std > 0).all(-1)


def _splice(base: GaussianPolicy, part: GaussianPolicy, rows: slice) -> GaussianPolicy:
    mean, scale = base.mean.clone(), base.scale.clone()
    mean[rows], scale[rows] = part.mean, part.scale
    return GaussianPolicy(mean, scale)


def _collect_diagnostics(blocks, r: int, iterations: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for b in blocks:
        for key, value in b.method.diagnostics(iterations).items():
            arr = out.setdefault(key, np.full(r, math.nan))
            arr[b.rows] = value.detach().numpy()
    return out
