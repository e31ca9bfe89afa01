"""Bandit methods as update rules over a block of batched runs: PMPO (gradient or exact M-step),
DPO, MPO and CEM. CMA-ES runs through pycma (`cmaes.py`). The loop lives in `engine.py`.

Shapes: r runs in a method's block, K samples per iteration, D dims.
  Feedback.z_sorted  [r, K, D]  this iteration's samples in the frame's (whitened) coordinates,
                                sorted best → worst (ties keep the sampling order)
  Feedback.f_sorted  [r, K]     their values, ascending (minimisation)
Two kinds of method:
  gradient methods: `loss(stats, fb) -> scalar` = Σ over the block's runs of the per-run loss,
      from `PolicyStats` (log-densities and KLs computed once per Adam step for all rows, so a
      step costs the same for one method or ten); the engine steps the shared local parameters;
  closed-form methods: `solve(ref, fb) -> (policy, ok)` in absolute coordinates.
Every loss comes from the loss core (`pmpo_loss`, `dpo_loss`, `losses.mpo`); the KL is the
closed form of `GaussianPolicy.kl_from` (docs/algorithms.md#pmpo-kl).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from anyfeedback.bandit.msteps import (
    exact_pmpo_mstep,
    exact_pmpo_mstep_decoupled,
    pmpo_sample_weights,
    update_log_beta,
)
from anyfeedback.losses.mpo import (
    RAW_DUAL_MIN,
    decoupled_kl_lagrangian,
    dual_value,
    estep_weights,
    kl_to_uniform,
    solve_temperature,
    weighted_nll,
)
from anyfeedback.losses.pmpo import pmpo_loss
from anyfeedback.losses.preference import dpo_loss
from anyfeedback.policies import GaussianPolicy


class PolicyStats:
    """Log-densities and closed-form KLs of the local π_θ for all rows, computed on first use.

    logps [R, K] = log π_θ(z_sorted); ref_logps [R, K] = log π_ref(z_sorted) (constant);
    kl [R] = KL(π_ref‖π_θ); decoupled (MPO's split): π_μ = N(μ_θ, Σ_ref), π_Σ = N(μ_ref, Σ_θ),
    logps_mu, logps_cov [R, K], kl_mu, kl_cov [R]. `view(rows)` slices every quantity.
    """

    def __init__(self, local: GaussianPolicy, ref: GaussianPolicy, z_sorted: torch.Tensor):
        self.local, self.ref, self.z = local, ref, z_sorted
        self._cache: dict[str, torch.Tensor] = {}
        self.rows = slice(None)

    def _get(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            self._cache[name] = getattr(self, "_" + name)()
        return self._cache[name]

    def _logps(self):
        return self.local.log_prob(self.z)

    def _ref_logps(self):
        return self.ref.log_prob(self.z).detach()

    def _kl(self):
        return self.local.kl_from(self.ref)

    def _logps_mu(self):
        return self.local.with_scale_of(self.ref).log_prob(self.z)

    def _logps_cov(self):
        return self.local.with_mean_of(self.ref).log_prob(self.z)

    def _kl_mu(self):
        return self.local.with_scale_of(self.ref).kl_from(self.ref)

    def _kl_cov(self):
        return self.local.with_mean_of(self.ref).kl_from(self.ref)

    def view(self, rows: slice) -> StatsView:
        return StatsView(self, rows)


class StatsView:
    """A block's rows of `PolicyStats` (attribute access slices the cached full tensors)."""

    def __init__(self, stats: PolicyStats, rows: slice):
        self._stats, self._rows = stats, rows

    def __getattr__(self, name: str) -> torch.Tensor:
        return self._stats._get(name)[self._rows]


class Feedback(NamedTuple):
    z_sorted: torch.Tensor  # [r, K, D]
    f_sorted: torch.Tensor  # [r, K]

    def rows(self, sl: slice) -> Feedback:
        return Feedback(self.z_sorted[sl], self.f_sorted[sl])


def _standard(like: GaussianPolicy) -> GaussianPolicy:
    return GaussianPolicy.standard(
        tuple(like.mean.shape[:-1]), like.dim, diagonal=like.diagonal, dtype=like.mean.dtype
    )


@dataclass
class PMPO:
    """PMPO (Eq. 10): top `n_accepted` of K accepted, bottom `n_rejected` rejected.

    `beta_mode="adaptive"`: β is a dual variable holding KL(π_ref‖π) near `epsilon` per
    iteration (`update_log_beta`). `decoupled`: separate β_μ = β, β_Σ = `beta_cov` on the mean-
    and covariance-only KLs (MPO's split); adaptive, each holds its own KL near `epsilon` and
    `epsilon_cov`. `solver`: "gradient" (Adam on `pmpo_loss`, run by the
    engine) or "exact" (the closed form of docs/algorithms.md#pmpo, `exact_pmpo_mstep`).
    """

    alpha: float
    beta: float | torch.Tensor  # a float, or [r] per run
    rows: slice
    n_samples: int
    n_accepted: int
    n_rejected: int
    solver: str = "gradient"
    normalization: str = "per_set"
    beta_mode: str = "fixed"
    epsilon: float = 0.01
    beta_lr: float = 0.1
    beta_bounds: tuple[float, float] = (1e-3, 1e5)
    decoupled: bool = False
    beta_cov: float = 50.0
    epsilon_cov: float = 0.001
    lr: float | None = None
    log_beta: torch.Tensor = field(init=False)
    kl_sum: torch.Tensor = field(init=False)
    failures: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        r = self.rows.stop - self.rows.start
        beta = torch.as_tensor(self.beta, dtype=torch.float64).expand(r)  # a float or [r]
        self.log_beta = beta.clamp_min(1e-300).log().clone()
        self.log_beta_cov = torch.full((r,), math.log(self.beta_cov), dtype=torch.float64)
        self.kl_sum = torch.zeros(r, dtype=torch.float64)
        self.failures = torch.zeros(r, dtype=torch.long)
        self.weights = pmpo_sample_weights(
            self.alpha,
            self.n_samples,
            self.n_accepted,
            self.n_rejected,
            normalization=self.normalization,
        )

    @property
    def gradient(self) -> bool:
        return self.solver == "gradient"

    def _beta(self):
        """β as a float, or per run [r] (adaptive, or a sweep over β within one block)."""
        return self.log_beta.exp() if self.beta_mode == "adaptive" else self.beta

    def _beta_cov(self):
        return self.log_beta_cov.exp() if self.beta_mode == "adaptive" else self.beta_cov

    # ---- gradient solver: Adam on the loss core's pmpo_loss ------------------------------
    def loss(self, stats: StatsView, fb: Feedback):
        r, k = fb.f_sorted.shape
        if self.decoupled:  # log π_μ + log π_Σ and β_μ·KL_μ + β_Σ·KL_Σ (folded into the KL term)
            logps = stats.logps_mu + stats.logps_cov  # [r, K]
            kl = self._beta() * stats.kl_mu + self._beta_cov() * stats.kl_cov  # [r]
            beta = 1.0
        else:
            logps, kl = stats.logps, stats.kl  # [r, K], [r]
            beta = self._beta()
            if isinstance(beta, torch.Tensor):  # per-run β: fold it into the KL term
                kl, beta = beta * kl, 1.0
        loss, _ = pmpo_loss(
            logps[:, : self.n_accepted].reshape(-1),  # [r·N_a]
            logps[:, k - self.n_rejected :].reshape(-1),  # [r·N_r]
            kl,
            alpha=self.alpha,
            beta=beta,
            normalization=self.normalization,
            num_samples=k * r,
        )
        return loss * r  # pmpo_loss averages over runs; the runs are independent: sum them

    # ---- exact solver --------------------------------------------------------------------------
    def solve(self, ref: GaussianPolicy, fb: Feedback) -> tuple[GaussianPolicy, torch.Tensor]:
        std = _standard(ref)
        if self.decoupled:
            local, ok = exact_pmpo_mstep_decoupled(
                fb.z_sorted, self.weights, std, self._beta(), self._beta_cov()
            )
        else:
            local, ok = exact_pmpo_mstep(fb.z_sorted, self.weights, std, self._beta())
        self.failures += (~ok).long()
        self.end_iteration(local, std, ok)
        return ref.compose(local), ok

    def end_iteration(self, local: GaussianPolicy, ref_local: GaussianPolicy, ok=None) -> None:
        """Record KL(π_ref‖π) and take the adaptive-β dual step (a failed M-step counts as a
        huge KL, so β grows)."""
        ok = torch.ones(local.mean.shape[0], dtype=torch.bool) if ok is None else ok
        inf = torch.full(ok.shape, float("inf"), dtype=torch.float64)
        kl = torch.where(ok, local.kl_from(ref_local).detach(), inf)
        self.kl_sum += torch.where(torch.isfinite(kl), kl, torch.zeros_like(kl))
        if self.beta_mode != "adaptive":
            return
        lo, hi = self.beta_bounds
        step = dict(lr=self.beta_lr, beta_min=lo, beta_max=hi)
        if self.decoupled:  # β_μ on KL_μ = KL(π_r‖N(μ, Σ_r)), β_Σ on KL_Σ = KL(π_r‖N(μ_r, Σ))
            kl_mu = torch.where(ok, local.with_scale_of(ref_local).kl_from(ref_local), inf)
            kl_cov = torch.where(ok, local.with_mean_of(ref_local).kl_from(ref_local), inf)
            self.log_beta = update_log_beta(self.log_beta, kl_mu, epsilon=self.epsilon, **step)
            self.log_beta_cov = update_log_beta(
                self.log_beta_cov, kl_cov, epsilon=self.epsilon_cov, **step
            )
        else:
            self.log_beta = update_log_beta(self.log_beta, kl, epsilon=self.epsilon, **step)

    def diagnostics(self, iterations: int) -> dict[str, torch.Tensor]:
        out = {"kl_per_iteration": self.kl_sum / max(iterations, 1)}
        if self.beta_mode == "adaptive":
            out["beta_final"] = self.log_beta.exp()
            if self.decoupled:
                out["beta_cov_final"] = self.log_beta_cov.exp()
        if self.solver == "exact":
            out["mstep_failures"] = self.failures.to(torch.float64)
        return out


@dataclass
class DPO:
    """DPO (Eq. 7) on (best, worst) of the K samples, reference = π_ref (refreshed like PMPO's)."""

    beta: float
    rows: slice
    lr: float | None = None  # Adam lr for this block (None: the run's lr)
    gradient: bool = True

    def loss(self, stats: StatsView, fb: Feedback):
        logps, ref_logps = stats.logps, stats.ref_logps  # [r, K], best first
        loss, _ = dpo_loss(
            logps[:, 0], logps[:, -1], ref_logps[:, 0], ref_logps[:, -1], beta=self.beta
        )
        return loss * logps.shape[0]

    def end_iteration(self, local, ref_local, ok=None) -> None:
        pass

    def diagnostics(self, iterations: int) -> dict[str, torch.Tensor]:
        return {}


@dataclass
class MPO:
    """MPO on the bandit (docs/algorithms.md#mpo-estep; choice: no state, Q = −f): E-step
    softmax(Q/η) with η solved exactly per iteration (the dual of Eq. 9 by bisection; Q's scale
    shrinks by orders of magnitude as a run converges), M-step = weighted ML under the decoupled KL
    Lagrangian with persistent duals α_μ, α_Σ (Acme: softplus(raw) + 1e-8, raw init 1 and 10, Adam),
    stepped once per iteration on the realised KLs."""

    epsilon: float
    epsilon_mean: float
    epsilon_cov: float
    rows: slice
    dual_lr: float = 0.3  # Adam on the raw duals, one step per iteration
    lr: float | None = None
    gradient: bool = True

    def __post_init__(self) -> None:
        r = self.rows.stop - self.rows.start
        init = torch.tensor([1.0, 10.0], dtype=torch.float64)
        self.raw_duals = init.repeat(r, 1).requires_grad_(True)  # [r, 2] = (α_μ, α_Σ) raw
        self.dual_opt = torch.optim.Adam([self.raw_duals], lr=self.dual_lr)
        self.weights = None
        self.kl_uniform_sum = torch.zeros(r, dtype=torch.float64)
        self.iterations = 0
        self.kl_mean_ema = torch.ones(r, dtype=torch.float64)
        self.kl_cov_ema = torch.ones(r, dtype=torch.float64)

    def prepare(self, fb: Feedback) -> None:
        q = -fb.f_sorted.unsqueeze(-1)  # Q = −f  [r, K, 1]
        eta = solve_temperature(q, self.epsilon, iters=40)  # [r]
        self.weights = estep_weights(q, eta)  # [r, K, 1]
        self.kl_uniform_sum += kl_to_uniform(self.weights)

    def loss(self, stats: StatsView, fb: Feedback):
        logps = (stats.logps_mu + stats.logps_cov).unsqueeze(-1)  # [r, K, 1]
        nll = weighted_nll(self.weights, logps)  # [r]
        duals = dual_value(self.raw_duals).detach()  # [r, 2]
        penalty, _ = decoupled_kl_lagrangian(
            stats.kl_mu,
            stats.kl_cov,
            duals[:, 0],
            duals[:, 1],
            epsilon_mean=self.epsilon_mean,
            epsilon_std=self.epsilon_cov,
        )
        return (nll + penalty).sum()

    def end_iteration(self, local, ref_local, ok=None) -> None:
        """One dual step per iteration on L_α with the *realised* KL_μ, KL_Σ of the update (the
        KL to the per-iteration reference starts at 0 at every step's origin, so stepping the
        duals inside the iteration would hold the average, not the final, KL at ε)."""
        kl_mu = local.with_scale_of(ref_local).kl_from(ref_local)
        kl_cov = local.with_mean_of(ref_local).kl_from(ref_local)
        rate = 0.02 if self.iterations else 1.0  # EMA of KL/ε: the steady state, not warm-up
        self.kl_mean_ema += rate * (kl_mu / self.epsilon_mean - self.kl_mean_ema)
        self.kl_cov_ema += rate * (kl_cov / self.epsilon_cov - self.kl_cov_ema)
        self.iterations += 1
        with torch.enable_grad():
            duals = dual_value(self.raw_duals)
            _, dual_loss = decoupled_kl_lagrangian(
                kl_mu,
                kl_cov,
                duals[:, 0],
                duals[:, 1],
                epsilon_mean=self.epsilon_mean,
                epsilon_std=self.epsilon_cov,
            )
            dual_loss.sum().backward()
        self.dual_opt.step()
        self.dual_opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.raw_duals.clamp_(min=RAW_DUAL_MIN)

    def diagnostics(self, iterations: int) -> dict[str, torch.Tensor]:
        duals = dual_value(self.raw_duals.detach())
        return {
            "kl_q_uniform": self.kl_uniform_sum / max(iterations, 1),
            "kl_mean_over_eps": self.kl_mean_ema.clone(),
            "kl_cov_over_eps": self.kl_cov_ema.clone(),
            "alpha_mean_final": duals[:, 0],
            "alpha_cov_final": duals[:, 1],
        }


@dataclass
class CEM:
    """Noisy CEM (Szita & Lőrincz 2006), diagonal: elites = best k of K,
    μ ← (1−a)μ + a·mean(E), σ² ← (1−a)σ² + a·Var(E) + ε_n(t),
    with the additive noise floor ε_n(t) = noise·σ₀²·decay^t (decaying, so a run can converge)."""

    smoothing: float
    noise: float
    noise_decay: float
    elites: int
    sigma0: torch.Tensor  # [r]
    rows: slice
    gradient: bool = False
    t: int = 0

    def solve(self, ref: GaussianPolicy, fb: Feedback) -> tuple[GaussianPolicy, torch.Tensor]:
        a = self.smoothing
        std = ref.std  # [r, D] (a full-covariance run is treated through its marginals)
        elite = fb.z_sorted[:, : self.elites]  # [r, k, D] whitened by the (diagonal) ref
        if not ref.diagonal:  # back to absolute offsets, then to per-dimension units
            elite = (elite @ ref.scale.mT) / std[:, None, :]
        mean = ref.mean + std * (a * elite.mean(1))
        var_local = (1 - a) + a * elite.var(1, unbiased=False)  # [r, D]
        floor = self.noise * self.sigma0[:, None] ** 2 * self.noise_decay**self.t
        var = std.pow(2) * var_local + floor
        self.t += 1
        scale = var.sqrt()
        if not ref.diagonal:
            scale = torch.diag_embed(scale)
        ok = torch.ones(mean.shape[0], dtype=torch.bool)
        return GaussianPolicy(mean, scale), ok

    def end_iteration(self, local, ref_local, ok=None) -> None:
        pass

    def diagnostics(self, iterations: int) -> dict[str, torch.Tensor]:
        return {}
