"""KTO for unpaired desirable / undesirable feedback (Ethayarajh et al., arXiv 2402.01306).

Shapes: B samples, all inputs [B].
  policy_logps, ref_logps          ℓ_θ(x_i, y_i), ℓ_ref(x_i, y_i) of each sample
  desirable                        bool: accepted (True) or rejected (False)
  policy_mismatched_logps, ref_…   ℓ of *mismatched* pairs (x_i, y_{i'}), i' = (i+1) mod B,
                                   see `mismatched_indices`; they build the reference point
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class KTODiagnostics(NamedTuple):
    z_ref: torch.Tensor
    reward_desirable: torch.Tensor
    reward_undesirable: torch.Tensor


def mismatched_indices(batch_size: int, device: torch.device | None = None) -> torch.Tensor:
    """i' = (i + 1) mod m: pair each prompt with another example's completion (needs m ≥ 2)."""
    if batch_size < 2:
        raise ValueError("KTO's reference point needs a micro-batch of at least 2 samples")
    return (torch.arange(batch_size, device=device) + 1) % batch_size


def kto_reference_point(
    policy_mismatched_logps: torch.Tensor,
    ref_mismatched_logps: torch.Tensor,
    *,
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """z_ref = max(0, mean_i [ℓ_θ(x_i, y_i') − ℓ_ref(x_i, y_i')]), detached (KTO paper).

    A batch estimate of KL(π_θ‖π_ref) from mismatched pairs. Under data parallelism pass
    `all_reduce_mean` so the mean is taken over all devices *before* the clamp.
    """
    z = (policy_mismatched_logps - ref_mismatched_logps).detach().mean()
    if all_reduce_mean is not None:
        z = all_reduce_mean(z)
    return z.clamp(min=0)


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    policy_mismatched_logps: torch.Tensor,
    ref_mismatched_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    lambda_d: float = 1.0,
    lambda_u: float = 1.0,
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, KTODiagnostics]:
    """KTO loss, mean over the B samples:

    r = ℓ_θ − ℓ_ref,  z_ref = kto_reference_point(mismatched)
    desirable:    λ_D·(1 − σ(β·(r − z_ref)))
    undesirable:  λ_U·(1 − σ(β·(z_ref − r)))
    """
    desirable = desirable.bool()
    z_ref = kto_reference_point(
        policy_mismatched_logps, ref_mismatched_logps, all_reduce_mean=all_reduce_mean
    )
    r = policy_logps - ref_logps
    per_sample = torch.where(
        desirable,
        lambda_d * (1 - torch.sigmoid(beta * (r - z_ref))),
        lambda_u * (1 - torch.sigmoid(beta * (z_ref - r))),
    )
    rd = r.detach()
    nan = rd.new_tensor(float("nan"))
    diag = KTODiagnostics(
        z_ref=z_ref,
        reward_desirable=(beta * rd[desirable]).mean() if desirable.any() else nan,
        reward_undesirable=(beta * rd[~desirable]).mean() if (~desirable).any() else nan,
    )
    return per_sample.mean(), diag
