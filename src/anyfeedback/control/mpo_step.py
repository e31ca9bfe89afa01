"""MPO's policy-improvement pieces for the control learner: the pure functions of the loss core
(`anyfeedback.losses.mpo`) plus the per-dimension Lagrangian below. The Gaussian log-density and
the decoupled views are `anyfeedback.policies.gaussian`'s.

Shapes: `...` leading batch dims (ensemble members E), N sampled actions, B states, D action dims.
  q            [..., N, B]   Q_target(s_i, a_ij), no gradient
  temperature  [...]         η > 0
  kl_*         [..., D]      per-dimension KL, already averaged over states
  dual_*       [..., D]      Lagrange multipliers, > 0
"""

from __future__ import annotations

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
