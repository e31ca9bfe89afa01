"""Bradley–Terry reward-model loss (docs/algorithms.md#aihf-bt; AIHF's preference term).

Shapes: B pairs; reward_chosen, reward_rejected, weights all [B] (scalar rewards r_φ(x, y)).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class RewardDiagnostics(NamedTuple):
    accuracy: torch.Tensor
    margin: torch.Tensor


def bradley_terry_loss(
    reward_chosen: torch.Tensor,
    reward_rejected: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, RewardDiagnostics]:
    """L_RM = −Σ_b w_b log σ(r(x_b, y_w) − r(x_b, y_l)) / Σ_b w_b   (plain mean when w is None).

    Per-pair weights serve AIHF's pooled pairs (demonstration ≻ sample weighted w_D, preference
    pairs weighted w_P). Diagnostics: fraction of pairs with r_w > r_l, and the mean margin.
    """
    delta = reward_chosen - reward_rejected
    nll = -F.logsigmoid(delta)
    if weights is None:
        loss = nll.mean()
    else:
        loss = (weights * nll).sum() / weights.sum().clamp(min=1e-12)
    d = delta.detach()
    return loss, RewardDiagnostics(accuracy=(d > 0).float().mean(), margin=d.mean())
