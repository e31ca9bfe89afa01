"""M-step solvers for a Gaussian policy on labelled samples: PMPO's exact closed form
(docs/algorithms.md#pmpo), its decoupled (mean / covariance) form, and the adaptive-β dual. Pure
functions of tensors.

Shapes: R runs (batched), K samples per run and iteration, D dims.
  y        [R, K, D]  samples (any coordinates; the bandit passes whitened ones, π_ref = N(0, I))
  weights  [R, K] or [K]   signed sample weights wᵢ (`pmpo_sample_weights`)
  beta     [R] or float
  ref      GaussianPolicy with batch [R]

PMPO's objective (Eq. 10) on one batch, as a function of a Gaussian N(μ, Σ)
(docs/algorithms.md#pmpo):
  J = Σᵢ wᵢ log N(yᵢ; μ, Σ) − β·KL(N_ref ‖ N(μ, Σ)),
  wᵢ = α/|D_a| (accepted) or −(1−α)/|D_r| (rejected)   (per-set means; "global": α/N, −(1−α)/N).
Its maximiser, with W = Σwᵢ + β:
  μ* = (Σwᵢyᵢ + βμ_r)/W
  Σ* = [Σwᵢ(yᵢ−μ*)(yᵢ−μ*)ᵀ + β(Σ_r + (μ_r−μ*)(μ_r−μ*)ᵀ)]/W,   valid iff W > 0 and Σ* ≻ 0.
For a diagonal policy J separates per dimension, so σ*² = diag Σ*.
"""

from __future__ import annotations

import math

import torch

from anyfeedback.policies import GaussianPolicy

__all__ = [
    "exact_pmpo_mstep",
    "exact_pmpo_mstep_decoupled",
    "pmpo_sample_weights",
    "update_log_beta",
]


def pmpo_sample_weights(
    alpha: float,
    num_samples: int,
    num_accepted: int,
    num_rejected: int,
    *,
    normalization: str = "per_set",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Weights wᵢ [K] for samples sorted best → worst: the first `num_accepted` are D_a, the last
    `num_rejected` are D_r, any in between are unlabelled (weight 0)."""
    if num_accepted + num_rejected > num_samples:
        raise ValueError("more labels than samples")
    w = torch.zeros(num_samples, dtype=dtype)
    if normalization == "per_set":
        acc = alpha / num_accepted if num_accepted else 0.0
        rej = -(1.0 - alpha) / num_rejected if num_rejected else 0.0
    elif normalization == "global":
        acc, rej = alpha / num_samples, -(1.0 - alpha) / num_samples
    else:
        raise ValueError(f"normalization must be 'per_set' or 'global', got {normalization!r}")
    w[:num_accepted] = acc
    if num_rejected:
        w[num_samples - num_rejected :] = rej
    return w


def _as_batch(value, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype).expand(like.shape[0])


def _finish(
    ref: GaussianPolicy, mean, cov, ok, diagonal: bool
) -> tuple[GaussianPolicy, torch.Tensor]:
    """Factor Σ*, flag failures (W ≤ 0, Σ* not PD, non-finite) and keep π_ref on failed rows."""
    if diagonal:
        ok = ok & (cov > 0).all(-1) & torch.isfinite(cov).all(-1)
        scale = torch.where(ok[:, None], cov.clamp_min(1e-300).sqrt(), ref.scale)
    else:
        finite = torch.isfinite(cov).all(-1).all(-1)
        safe = torch.where((ok & finite)[:, None, None], cov, ref.covariance())
        chol, info = torch.linalg.cholesky_ex(safe)
        ok = ok & finite & (info == 0)
        scale = torch.where(ok[:, None, None], chol, ref.scale)
    ok = ok & torch.isfinite(mean).all(-1)
    mean = torch.where(ok[:, None], mean, ref.mean)
    return GaussianPolicy(mean, scale), ok


def exact_pmpo_mstep(
    y: torch.Tensor, weights: torch.Tensor, ref: GaussianPolicy, beta
) -> tuple[GaussianPolicy, torch.Tensor]:
    """The closed-form maximiser of PMPO Eq. 10 over Gaussians (docs/algorithms.md#pmpo). Returns
    the policy and `ok` [R] (False where W ≤ 0 or Σ* is not positive definite; those rows keep
    π_ref)."""
    w = weights.expand(y.shape[:-1]).to(y.dtype)  # [R, K]
    beta = _as_batch(beta, y)  # [R]
    big_w = w.sum(-1) + beta  # W = Σwᵢ + β
    mean = (torch.einsum("rk,rkd->rd", w, y) + beta[:, None] * ref.mean) / big_w[:, None]  # μ*
    dy = y - mean[:, None, :]  # yᵢ − μ*
    dr = ref.mean - mean  # μ_r − μ*
    if ref.diagonal:
        scatter = torch.einsum("rk,rkd->rd", w, dy * dy)
        cov = (scatter + beta[:, None] * (ref.scale.pow(2) + dr * dr)) / big_w[:, None]
    else:
        scatter = torch.einsum("rk,rki,rkj->rij", w, dy, dy)
        outer = dr[:, :, None] * dr[:, None, :]
        cov = (scatter + beta[:, None, None] * (ref.covariance() + outer)) / big_w[:, None, None]
    return _finish(ref, mean, cov, big_w > 0, ref.diagonal)


def exact_pmpo_mstep_decoupled(
    y: torch.Tensor, weights: torch.Tensor, ref: GaussianPolicy, beta_mean, beta_cov
) -> tuple[GaussianPolicy, torch.Tensor]:
    """Maximiser of the decoupled objective (MPO's split, arXiv 1812.02256, applied to Eq. 10):

      Σwᵢ[log N(yᵢ; μ, Σ_r) + log N(yᵢ; μ_r, Σ)] − β_μ KL(N_r‖N(μ, Σ_r)) − β_Σ KL(N_r‖N(μ_r, Σ))
      μ* = (Σwᵢyᵢ + β_μ μ_r)/(Σwᵢ + β_μ)
      Σ* = [Σwᵢ(yᵢ−μ_r)(yᵢ−μ_r)ᵀ + β_Σ Σ_r]/(Σwᵢ + β_Σ)

    i.e. a rank-μ ES update with learning rates Σw/(Σw+β_μ) for the mean and Σw/(Σw+β_Σ) for Σ
    (for AR, Σw = 0: μ* = μ_r + Σwᵢ(yᵢ−μ_r)/β_μ, an NES-like step). Valid iff both
    denominators are > 0 and Σ* ≻ 0."""
    w = weights.expand(y.shape[:-1]).to(y.dtype)
    beta_mean, beta_cov = _as_batch(beta_mean, y), _as_batch(beta_cov, y)
    sw = w.sum(-1)
    mean = (torch.einsum("rk,rkd->rd", w, y) + beta_mean[:, None] * ref.mean) / (sw + beta_mean)[
        :, None
    ]
    dy = y - ref.mean[:, None, :]  # yᵢ − μ_r
    if ref.diagonal:
        scatter = torch.einsum("rk,rkd->rd", w, dy * dy)
        cov = (scatter + beta_cov[:, None] * ref.scale.pow(2)) / (sw + beta_cov)[:, None]
    else:
        scatter = torch.einsum("rk,rki,rkj->rij", w, dy, dy)
        cov = (scatter + beta_cov[:, None, None] * ref.covariance()) / (sw + beta_cov)[
            :, None, None
        ]
    ok = (sw + beta_mean > 0) & (sw + beta_cov > 0)
    return _finish(ref, mean, cov, ok, ref.diagonal)


def update_log_beta(
    log_beta: torch.Tensor,
    kl: torch.Tensor,
    *,
    epsilon: float,
    lr: float,
    beta_min: float,
    beta_max: float,
) -> torch.Tensor:
    """Adaptive β, a dual variable on KL(π_ref‖π) ≤ ε (beyond the paper; docs/algorithms.md#pmpo),
    one step per iteration in log space:  ln β ← clip(ln β + lr·ln(KL/ε), ln β_min, ln β_max).

    The gradient of the Lagrangian β(ε − KL) in ln β, rescaled by 1/KL so that the step does not
    depend on the KL's scale; with KL ∝ β⁻² (small steps) lr = ½ would jump to the fixed point.
    """
    ratio = (kl.clamp_min(1e-12) / epsilon).log()
    ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, math.log(1e3)))
    return (log_beta + lr * ratio).clamp(math.log(beta_min), math.log(beta_max))
