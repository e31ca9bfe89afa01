"""MPO's policy-improvement pieces as pure functions (Abdolmaleki et al. 2018, arXiv 1806.06920;
decoupled constraints arXiv 1812.02256; reference Acme `acme/jax/losses/mpo.py`;
docs/algorithms.md#mpo-estep, #mpo-mstep).

Shared by the black-box bandit and continuous control. Imports torch only.

Shapes: `...` leading batch dims (runs, ensemble members), N sampled actions, B states
(B = 1 for a bandit), D action dims.
  q            [..., N, B]   Q_target(s_i, a_ij) (for a bandit Q = −f), no gradient
  temperature  [...]         η > 0
  weights      [..., N, B]   E-step q_ij, no gradient
  logps        [..., N, B]   log π_θ(a_ij|s_i)
  kl_*         [..., D] or [...]   KL(π_target‖π_μ), KL(π_target‖π_Σ), averaged over states
  dual_*       same shape as kl_*  Lagrange multipliers α_μ, α_Σ > 0

E-step     q_ij = softmax_j(Q_ij / η)                                                  (Eq. 7)
dual       g(η) = η·ε + η·mean_i log((1/N)·Σ_j exp(Q_ij/η))     minimised over η > 0     (Eq. 9)
           g'(η) = ε − mean_i KL(q_i‖uniform), so at the optimum KL(q‖uniform) = ε.
M-step     min  −mean_i Σ_j q_ij·[log π_μ(a_ij) + log π_Σ(a_ij)]
                + sg(α_μ)·KL_μ + sg(α_Σ)·KL_Σ                                 (decoupled, Eq. 11)
duals      min  α_μ·(ε_μ − sg KL_μ) + α_Σ·(ε_Σ − sg KL_Σ)
Since Σ_j q_ij log(N q_ij) ≤ log N, ε must be < log N or the constraint never binds (η → 0).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = [
    "DUAL_FLOOR",
    "RAW_DUAL_MIN",
    "check_mpo_epsilon",
    "decoupled_kl_lagrangian",
    "dual_value",
    "estep_weights",
    "kl_to_uniform",
    "solve_temperature",
    "temperature_dual",
    "weighted_nll",
]

DUAL_FLOOR = 1e-8  # duals = softplus(raw) + DUAL_FLOOR (Acme)
RAW_DUAL_MIN = -18.0  # raw duals are clamped here after each step (Acme)


def check_mpo_epsilon(epsilon: float, num_samples: int) -> None:
    """Reject ε outside (0, log N): KL(q‖uniform) ≤ log N, so ε ≥ log N never binds (η → 0)."""
    if num_samples < 2:
        raise ValueError(f"MPO needs at least 2 samples per state, got N={num_samples}")
    bound = math.log(num_samples)
    if not 0.0 < epsilon < bound:
        raise ValueError(
            f"MPO epsilon={epsilon:g} must be in (0, log N = {bound:.4f}) for N={num_samples} "
            "samples: KL(q||uniform) <= log N, so the temperature constraint would never bind"
        )


def dual_value(raw: torch.Tensor) -> torch.Tensor:
    """Positive dual from its raw parameter: softplus(raw) + 1e-8 (Acme)."""
    return F.softplus(raw) + DUAL_FLOOR


def estep_weights(q: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """E-step: q_ij = softmax_j(Q_ij / η) over the N samples of each state. Returns [..., N, B],
    detached (the weights carry no gradient into the policy)."""
    eta = temperature.detach()[..., None, None]
    return torch.softmax(q.detach() / eta, dim=-2)


def temperature_dual(q: torch.Tensor, temperature: torch.Tensor, epsilon: float) -> torch.Tensor:
    """g(η) = η·ε + η·mean_i [logsumexp_j(Q_ij/η) − log N]  (MPO Eq. 9). Returns [...].

    Minimise over η (gradient flows into `temperature` only). Keep the −log N: it makes the
    constraint read KL(q‖uniform) ≤ ε.
    """
    n = q.shape[-2]
    eta = temperature[..., None, None]
    log_mean_exp = torch.logsumexp(q.detach() / eta, dim=-2) - math.log(n)  # [..., B]
    return temperature * epsilon + temperature * log_mean_exp.mean(-1)


def kl_to_uniform(weights: torch.Tensor) -> torch.Tensor:
    """Realised KL(q‖uniform) = mean_i Σ_j q_ij log(N q_ij). Returns [...]; ≈ ε at the dual's
    optimum (log it: the ratio to ε should be ≈ 1)."""
    n = weights.shape[-2]
    tiny = torch.finfo(weights.dtype).tiny  # 1e-300 would underflow to 0 in float32
    return (weights * torch.log(n * weights.clamp_min(tiny))).sum(-2).mean(-1)


def solve_temperature(q: torch.Tensor, epsilon: float, *, iters: int = 60) -> torch.Tensor:
    """The exact minimiser of g(η): bisection on ln η for mean_i KL(q_η‖uniform) = ε, which is
    decreasing in η (η → ∞: uniform, KL → 0; η → 0: one-hot, KL → log N). Returns η [...].

    Scale-free: η is searched in [1e-8, 1e8] × the spread of Q, so Q ranging from 1e2 to 1e-12
    (a bandit converging) needs no retuning. States with constant Q get the upper end.
    """
    q = q.detach()
    n = q.shape[-2]
    check_mpo_epsilon(epsilon, n)
    spread = (q.amax(-2) - q.amin(-2)).mean(-1)  # [...]
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    lo = (spread * 1e-8).log()
    hi = (spread * 1e8).log()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        kl = kl_to_uniform(torch.softmax(q / mid.exp()[..., None, None], dim=-2))
        too_peaked = kl > epsilon  # η too small
        lo = torch.where(too_peaked, mid, lo)
        hi = torch.where(too_peaked, hi, mid)
    return (0.5 * (lo + hi)).exp()


def weighted_nll(weights: torch.Tensor, logps: torch.Tensor) -> torch.Tensor:
    """M-step cross-entropy −mean_i Σ_j q_ij·log π(a_ij|s_i). weights, logps [..., N, B] -> [...]."""
    return -(weights.detach() * logps).sum(-2).mean(-1)


def decoupled_kl_lagrangian(
    kl_mean: torch.Tensor,
    kl_std: torch.Tensor,
    dual_mean: torch.Tensor,
    dual_std: torch.Tensor,
    *,
    epsilon_mean: float,
    epsilon_std: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled trust region (arXiv 1812.02256):

        L_π = sg(α_μ)·KL_μ + sg(α_Σ)·KL_Σ                      (the policy's penalty)
        L_α = α_μ·(ε_μ − sg KL_μ) + α_Σ·(ε_Σ − sg KL_Σ)        (the duals' loss)

    with KL_μ = KL(π_target ‖ N(μ_θ, Σ_target)), KL_Σ = KL(π_target ‖ N(μ_target, Σ_θ)).
    Elementwise: inputs [..., D] (per-dimension constraints) or [...] (one constraint each);
    returns (L_π, L_α) of the broadcast shape. Sum over D at the call site.
    """
    penalty = dual_mean.detach() * kl_mean + dual_std.detach() * kl_std
    dual_loss = dual_mean * (epsilon_mean - kl_mean.detach()) + dual_std * (
        epsilon_std - kl_std.detach()
    )
    return penalty, dual_loss
