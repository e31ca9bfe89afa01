"""MPO's policy-improvement pieces as pure functions (Abdolmaleki et al. 2018, arXiv 1806.06920;
decoupled constraints arXiv 1812.02256; reference Acme `acme/jax/losses/mpo.py`; BASELINES §MPO).

To be folded into `anyfeedback.losses.mpo` once that module lands (it did not exist when the
control learner was written); nothing here depends on the control code.

Shapes: `...` leading batch dims (ensemble members E), N sampled actions, B states, D action dims.
  q            [..., N, B]   Q_target(s_i, a_ij), no gradient
  temperature  [...]         η > 0
  kl_*         [..., D]      per-dimension KL, already averaged over states
  dual_*       [..., D]      Lagrange multipliers, > 0
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

DUAL_FLOOR = 1e-8  # duals = softplus(raw) + DUAL_FLOOR (Acme)
RAW_DUAL_MIN = -18.0  # raw duals are clamped here after each step (Acme)


def dual_value(raw: torch.Tensor) -> torch.Tensor:
    """Positive dual from its raw parameter: softplus(raw) + 1e-8."""
    return F.softplus(raw) + DUAL_FLOOR


def estep_weights(q: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """E-step: q_ij = softmax_j(Q_ij / η), over the N samples of each state. Returns [..., N, B],
    detached (weights carry no gradient into the policy)."""
    eta = temperature.detach()[..., None, None]
    return torch.softmax(q.detach() / eta, dim=-2)


def temperature_dual(q: torch.Tensor, temperature: torch.Tensor, epsilon: float) -> torch.Tensor:
    """g(η) = η·ε + η·mean_i log((1/N)·Σ_j exp(Q_ij/η)), minimised over η. Returns [...].

    The −log N inside keeps the dual meaningful: KL(q‖uniform) ≤ log N, so ε must be < log N.
    """
    n = q.shape[-2]
    eta = temperature[..., None, None]
    log_mean_exp = torch.logsumexp(q.detach() / eta, dim=-2) - math.log(n)  # [..., B]
    return temperature * epsilon + temperature * log_mean_exp.mean(-1)


def kl_to_uniform(weights: torch.Tensor) -> torch.Tensor:
    """Realised KL(q‖uniform) = mean_i Σ_j q_ij log(N q_ij); ≈ ε once the dual has converged."""
    n = weights.shape[-2]
    return (weights * torch.log(n * weights.clamp_min(1e-30))).sum(-2).mean(-1)


def weighted_nll(weights: torch.Tensor, logps: torch.Tensor) -> torch.Tensor:
    """M-step cross-entropy −mean_i Σ_j q_ij·log π(a_ij|s_i). weights, logps [..., N, B] -> [...]."""
    return -(weights * logps).sum(-2).mean(-1)


def decoupled_kl_lagrangian(
    kl_mean: torch.Tensor,
    kl_std: torch.Tensor,
    dual_mean: torch.Tensor,
    dual_std: torch.Tensor,
    *,
    epsilon_mean: float,
    epsilon_std: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled trust region, per action dimension:

        L_π = sg(α_μ)·KL_μ + sg(α_Σ)·KL_Σ                        (policy's penalty)   [...]
        L_α = α_μ·(ε_μ − sg KL_μ) + α_Σ·(ε_Σ − sg KL_Σ)          (duals' loss)        [...]

    with KL_μ = KL(π_target ‖ N(μ_θ, Σ_target)), KL_Σ = KL(π_target ‖ N(μ_target, Σ_θ)),
    each [..., D], summed over D.
    """
    penalty = (dual_mean.detach() * kl_mean + dual_std.detach() * kl_std).sum(-1)
    dual_loss = dual_mean * (epsilon_mean - kl_mean.detach()) + dual_std * (
        epsilon_std - kl_std.detach()
    )
    return penalty, dual_loss.sum(-1)


def gaussian_logps(actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(a; μ, diag σ²) summed over D. actions [..., N, B, D]; mean, std [..., B, D]
    (broadcast over N) -> [..., N, B]."""
    z = (actions - mean.unsqueeze(-3)) / std.unsqueeze(-3)
    return (-0.5 * z.pow(2) - std.unsqueeze(-3).log() - 0.5 * math.log(2 * math.pi)).sum(-1)
