"""PMPO: learning from accepted samples, rejected samples, or both (arXiv 2410.04166, Eq. 10).

Shapes: N_a accepted samples, N_r rejected samples, B contexts (prompts / states; 1 for a bandit).
  logps_accepted [N_a]   ℓ_θ of accepted samples (sequence log-probs or Gaussian log-densities)
  logps_rejected [N_r]   ℓ_θ of rejected samples
  kl             [B]     exact KL(π_ref(·|x) ‖ π_θ(·|x)) per context (closed form or dense)
"""

from __future__ import annotations

import warnings
from typing import Literal, NamedTuple

import torch

Normalization = Literal["per_set", "global"]


class BetaBelowBoundWarning(UserWarning):
    """β < 1 − α: the PMPO objective is unbounded whenever some output is always rejected."""


class PMPODiagnostics(NamedTuple):
    """Detached summaries of one PMPO loss evaluation (NaN where a set is empty)."""

    logp_accepted: torch.Tensor
    logp_rejected: torch.Tensor
    kl: torch.Tensor
    n_accepted: int
    n_rejected: int


def check_pmpo_beta(alpha: float, beta: float, *, stacklevel: int = 2) -> bool:
    """Warn if β < 1 − α (docs/algorithms.md#pmpo): then J is unbounded and the rejected log-probs
    can run to −∞ under either normalisation. Returns True when the configuration is within the
    bound."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if alpha < 1.0 and beta < 1.0 - alpha:
        warnings.warn(
            f"PMPO beta={beta} < 1 - alpha={1 - alpha:g}: the objective is unbounded below this "
            "bound and the rejected samples' log-probs can collapse to -inf "
            "(docs/algorithms.md#pmpo)",
            BetaBelowBoundWarning,
            stacklevel=stacklevel + 1,
        )
        return False
    return True


def pmpo_loss(
    logps_accepted: torch.Tensor,
    logps_rejected: torch.Tensor,
    kl: torch.Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    normalization: Normalization = "per_set",
    num_samples: int | None = None,
    n_accepted: int | None = None,
    n_rejected: int | None = None,
    n_kl: int | None = None,
) -> tuple[torch.Tensor, PMPODiagnostics]:
    """PMPO loss, the negative of Eq. 10:

        L = −α·mean_{D_a} ℓ_θ + (1−α)·mean_{D_r} ℓ_θ + β·mean_x KL(π_ref‖π_θ)(x)

    `normalization="per_set"` (default): each set's mean over its own size; an empty set's term is
    dropped. `"global"`: both sums divided by N = `num_samples` (all samples drawn from π_ref for
    the batch, labelled or not; default N_a + N_r), the unbiased estimate of the derivation's
    E_{π_ref}[p(O|y) log π_θ]. With a balanced split, per-set at β equals 2 × global at β/2
    (docs/algorithms.md#pmpo), so β scales differ by 2. Warns (once per call site) when β < 1 − α.

    Pooled normalisation (docs/algorithms.md#normalisation): when this call sees only part of
    an optimizer step (one micro-batch, one process), `n_accepted`, `n_rejected` and `n_kl` are
    the step's totals; each set's *sum* here is divided by its total, so the parts' losses add
    up to the loss of the whole step whatever the label ratio of each part
    (Σ_parts −α·Σ_a ℓ/N_a = −α·mean_{D_a} ℓ over the step). None: this call's own sizes.
    """
    check_pmpo_beta(alpha, beta)
    if normalization not in ("per_set", "global"):
        raise ValueError(f"normalization must be 'per_set' or 'global', got {normalization!r}")
    n_a, n_r = logps_accepted.numel(), logps_rejected.numel()
    ref = logps_accepted if n_a else logps_rejected
    loss = ref.new_zeros(())
    if normalization == "per_set":
        if n_a:
            loss = loss - alpha * logps_accepted.sum() / (n_accepted or n_a)
        if n_r:
            loss = loss + (1 - alpha) * logps_rejected.sum() / (n_rejected or n_r)
    else:
        n = num_samples if num_samples is not None else n_a + n_r
        if n <= 0:
            raise ValueError("global normalisation needs num_samples > 0")
        loss = loss - (alpha * logps_accepted.sum() - (1 - alpha) * logps_rejected.sum()) / n
    if kl.numel():
        loss = loss + beta * kl.sum() / (n_kl or kl.numel())
    nan = ref.new_tensor(float("nan"))
    diag = PMPODiagnostics(
        logp_accepted=logps_accepted.detach().mean() if n_a else nan,
        logp_rejected=logps_rejected.detach().mean() if n_r else nan,
        kl=kl.detach().mean() if kl.numel() else nan,
        n_accepted=n_a,
        n_rejected=n_r,
    )
    return loss, diag
