"""Exact KL(π_ref ‖ π_θ): closed form for Gaussians, dense over the vocabulary for token policies.

PMPO (arXiv 2410.04166) needs the *forward* KL, reference first, and it must be exact: the sample
estimate ℓ_ref − ℓ_θ on the very samples that carry the labels only reweights SFT
(docs/algorithms.md#pmpo-kl).

Shapes: `...` any batch dims, `D` action/point dims.
  Gaussian, full covariance: mean [..., D], scale_tril [..., D, D] (lower Cholesky factor L, Σ = LLᵀ)
  Gaussian, diagonal:        mean [..., D], std [..., D]
The token-level dense KL lives in `anyfeedback.losses.tokens` (chunked, bounded memory) and is
re-exported here as `dense_kl`.
"""

from __future__ import annotations

import torch

from anyfeedback.losses.tokens import dense_kl

__all__ = ["dense_kl", "gaussian_kl", "gaussian_kl_diag", "gaussian_kl_full"]


def gaussian_kl_full(
    ref_mean: torch.Tensor,
    ref_scale_tril: torch.Tensor,
    mean: torch.Tensor,
    scale_tril: torch.Tensor,
) -> torch.Tensor:
    """KL(N(μ_r, Σ_r) ‖ N(μ, Σ)) for full covariances given by Cholesky factors. Returns [...].

    KL = ½[ tr(Σ⁻¹Σ_r) + (μ−μ_r)ᵀΣ⁻¹(μ−μ_r) − D + ln det Σ − ln det Σ_r ]
    (docs/algorithms.md#pmpo-kl)
    with tr(Σ⁻¹Σ_r) = ‖L⁻¹L_r‖²_F and (μ−μ_r)ᵀΣ⁻¹(μ−μ_r) = ‖L⁻¹(μ−μ_r)‖², both by a triangular
    solve against L (no explicit inverse), ln det Σ = 2 Σ ln diag L.
    """
    d = mean.shape[-1]
    ref_scale_tril, scale_tril = torch.broadcast_tensors(ref_scale_tril, scale_tril)
    diff = (mean - ref_mean).unsqueeze(-1)  # [..., D, 1]
    diff = diff.expand(*scale_tril.shape[:-2], d, 1)
    m = torch.linalg.solve_triangular(scale_tril, ref_scale_tril, upper=False)  # L⁻¹L_r [..., D, D]
    z = torch.linalg.solve_triangular(scale_tril, diff, upper=False)  # L⁻¹(μ−μ_r) [..., D, 1]
    trace = m.pow(2).sum((-2, -1))
    maha = z.pow(2).sum((-2, -1))
    logdet = 2 * scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    ref_logdet = 2 * ref_scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + maha - d + logdet - ref_logdet)


def gaussian_kl_diag(
    ref_mean: torch.Tensor,
    ref_std: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    per_dim: bool = False,
) -> torch.Tensor:
    """KL(N(μ_r, diag σ_r²) ‖ N(μ, diag σ²)). Returns [...] or, with `per_dim`, [..., D].

    Per dimension: ln(σ/σ_r) + (σ_r² + (μ_r−μ)²)/(2σ²) − ½; the full KL is the sum over D.
    `per_dim=True` serves MPO's per-dimension constraints (docs/algorithms.md#mpo-mstep).
    """
    var = std.pow(2)
    kl = torch.log(std / ref_std) + (ref_std.pow(2) + (ref_mean - mean).pow(2)) / (2 * var) - 0.5
    return kl if per_dim else kl.sum(-1)


def gaussian_kl(
    ref_mean: torch.Tensor,
    ref_scale: torch.Tensor,
    mean: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """Closed-form KL(π_ref ‖ π_θ) between Gaussians; picks the form from the scale's shape.

    `scale` [..., D] is a diagonal standard deviation; [..., D, D] a lower Cholesky factor.
    """
    if scale.dim() == mean.dim() + 1:
        if ref_scale.dim() == ref_mean.dim():  # diagonal reference vs full policy
            ref_scale = torch.diag_embed(ref_scale)
        return gaussian_kl_full(ref_mean, ref_scale, mean, scale)
    if ref_scale.dim() == ref_mean.dim() + 1:  # full reference vs diagonal policy
        return gaussian_kl_full(ref_mean, ref_scale, mean, torch.diag_embed(scale))
    return gaussian_kl_diag(ref_mean, ref_scale, mean, scale)
