"""Supervised fine-tuning / behaviour cloning: negative log-likelihood of demonstrations.

Shapes: logps [B], ℓ_θ per sample, reduced the same way as in `pmpo_loss` so that PMPO-A
(α=1, β=0) ≡ SFT on the accepted set holds exactly (docs/algorithms.md#sft).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class SFTDiagnostics(NamedTuple):
    logp: torch.Tensor


def sft_loss(logps: torch.Tensor) -> tuple[torch.Tensor, SFTDiagnostics]:
    """L_SFT = −mean_b ℓ_θ(x_b, y_b)   (docs/algorithms.md#sft; BC: −mean log π_θ(a|s))."""
    if logps.numel() == 0:
        raise ValueError("sft_loss needs at least one sample")
    return -logps.mean(), SFTDiagnostics(logp=logps.detach().mean())
