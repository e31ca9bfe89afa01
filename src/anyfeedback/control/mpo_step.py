"""MPO's policy-improvement pieces for the control learner: the pure functions of the loss core
(`anyfeedback.losses.mpo`) plus the two control-shaped helpers below.

Shapes: `...` leading batch dims (ensemble members E), N sampled actions, B states, D action dims.
  q            [..., N, B]   Q_target(s_i, a_ij), no gradient
  temperature  [...]         η > 0
  kl_*         [..., D]      per-dimension KL, already averaged over states
  dual_*       [..., D]      Lagrange multipliers, > 0
"""

from __future__ import annotations

import math

import torch

from anyfeedback.losses import mpo as core
from anyfeedback.losses.mpo import (  # noqa: F401  (re-exported for the control learner)
    DUAL_FLOOR,
    RAW_DUAL_MIN,
    dual_value,
    estep_weights,
    kl_to_uniform,
    temperature_dual,
    weighted_nll,
)


def decoupled_kl_lagrangian(
    kl_mean: torch.Tensor,
    kl_std: torch.Tensor,
    dual_mean: torch.Tensor,
    dual_std: torch.Tensor,
    *,
    epsilon_mean: float,
    epsilon_std: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`losses.mpo.decoupled_kl_lagrangian` with per-dimension constraints [..., D], each summed
    over D: returns (policy penalty [...], duals' loss [...])."""
    penalty, dual_loss = core.decoupled_kl_lagrangian(
        kl_mean, kl_std, dual_mean, dual_std, epsilon_mean=epsilon_mean, epsilon_std=epsilon_std
    )
    return penalty.sum(-1), dual_loss.sum(-1)


def gaussian_logps(actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(a; μ, diag σ²) summed over D. actions [..., N, B, D]; mean, std [..., B, D]
    (broadcast over N) -> [..., N, B]."""
    z = (actions - mean.unsqueeze(-3)) / std.unsqueeze(-3)
    return (-0.5 * z.pow(2) - std.unsqueeze(-3).log() - 0.5 * math.log(2 * math.pi)).sum(-1)
