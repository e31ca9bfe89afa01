"""Paired preference losses on log-ratios: DPO (arXiv 2305.18290), IPO (arXiv 2310.12036),
SPIN (arXiv 2401.01335).

Shapes: B pairs. Every input is [B]: sequence log-probs ℓ under the policy (`policy_*`) and the
frozen reference (`ref_*`), for the preferred (`chosen`) and dispreferred (`rejected`) output.
ρ = ℓ_θ − ℓ_ref and h = ρ(chosen) − ρ(rejected).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class PairDiagnostics(NamedTuple):
    """Implicit rewards β·ρ, their margin and the fraction of pairs ranked correctly."""

    reward_chosen: torch.Tensor
    reward_rejected: torch.Tensor
    margin: torch.Tensor
    accuracy: torch.Tensor


def log_ratio_margin(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
) -> torch.Tensor:
    """h = [ℓ_θ(y_w) − ℓ_ref(y_w)] − [ℓ_θ(y_l) − ℓ_ref(y_l)]. Returns [B]."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def _pair_diagnostics(policy_chosen, policy_rejected, ref_chosen, ref_rejected, scale):
    rc = (scale * (policy_chosen - ref_chosen)).detach()
    rr = (scale * (policy_rejected - ref_rejected)).detach()
    return PairDiagnostics(rc.mean(), rr.mean(), (rc - rr).mean(), (rc > rr).float().mean())


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
) -> tuple[torch.Tensor, PairDiagnostics]:
    """L_DPO = −mean log σ(β·h)   (DPO Eq. 7). Equals log 2 at π_θ = π_ref.

    Pass summed (not averaged) token log-probs; compute ℓ_ref without grad.
    """
    h = log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    loss = -F.logsigmoid(beta * h).mean()
    return loss, _pair_diagnostics(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    tau: float = 0.1,
) -> tuple[torch.Tensor, PairDiagnostics]:
    """L_IPO = mean (h − 1/(2τ))²   (IPO Eq. 17); minimised at margin h = 1/(2τ).

    The scale of τ depends on how ℓ is reduced: the LLM trainer passes per-token *averaged*
    log-probs by default (`sequence_logps(..., average=True)`, docs/algorithms.md#ipo).
    Diagnostics report rewards with scale 1 (the raw log-ratios).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    h = log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    loss = (h - 1.0 / (2.0 * tau)).pow(2).mean()
    return loss, _pair_diagnostics(policy_chosen, policy_rejected, ref_chosen, ref_rejected, 1.0)


def spin_loss(
    policy_demos: torch.Tensor,
    policy_samples: torch.Tensor,
    opponent_demos: torch.Tensor,
    opponent_samples: torch.Tensor,
    *,
    lam: float = 0.1,
) -> tuple[torch.Tensor, PairDiagnostics]:
    """SPIN at iteration t: −mean log σ(λ·[(ℓ_θ(y) − ℓ_t(y)) − (ℓ_θ(y') − ℓ_t(y'))]).

    y is the demonstration, y' ∼ π_t a sample of the frozen opponent π_t, ℓ_t its log-probs. This
    is exactly `dpo_loss` with chosen = demonstration, rejected = self-sample and reference = π_t
    (docs/algorithms.md#spin); both the samples and the reference must move to π_t every iteration.
    """
    return dpo_loss(policy_demos, policy_samples, opponent_demos, opponent_samples, beta=lam)
