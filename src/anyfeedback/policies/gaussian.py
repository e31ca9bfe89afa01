"""Gaussian policy N(μ, Σ) with a full (Cholesky) or diagonal covariance, batched over runs.

Used by the black-box bandit (one Gaussian per run, no context) and by the control learners
(one diagonal Gaussian per state, from `control.nets.EnsembleGaussianActor`): the distribution
maths lives here, the networks elsewhere.

Shapes: `...` batch dims (runs, states), N samples, D dims.
  mean   [..., D]
  scale  [..., D, D]  lower Cholesky factor L, Σ = LLᵀ (full)      or
         [..., D]     standard deviations σ, Σ = diag σ²          (diagonal)
  y, z   [..., N, D]  points / standard-normal noise
Parameterisation (`from_raw`): `raw` [..., D, D] lower-triangular with the *log* of the diagonal
(strict upper triangle ignored), or [..., D] log σ. Unconstrained, so Adam can step on it.

Whitened coordinates: `ref.standardize(y) = L_r⁻¹(y − μ_r)` maps π_ref to N(0, I); a policy
`local` fitted in those coordinates maps back by `ref.compose(local)` = N(μ_r + L_r m, L_r T).
The map is affine, so KLs and log-ratios are unchanged and log-densities shift by log det L_r.

Diagonal log-density with a sample axis anywhere (`diagonal_log_prob`): the control learners hold
N actions per state as [..., N, B, D] against a policy [..., B, D], so the sample axis is not the
one before D that `GaussianPolicy.log_prob` assumes. It sums the per-dimension terms
Σ_d (−½ z_d² − ln σ_d − ½ ln 2π), an order of float operations the control results depend on
(bit for bit), where `log_prob` sums the three terms separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from anyfeedback.losses.kl import gaussian_kl, gaussian_kl_diag

__all__ = [
    "GaussianPolicy",
    "diagonal_log_prob",
    "raw_from_scale",
    "scale_from_raw",
    "standard_diagonal_log_prob",
]

LOG_2PI = math.log(2 * math.pi)


def scale_from_raw(raw: torch.Tensor, *, diagonal: bool) -> torch.Tensor:
    """Log-diagonal parameters -> scale. Full: tril(raw) with exp on the diagonal; diag: exp."""
    if diagonal:
        return raw.exp()
    strict = torch.tril(raw, diagonal=-1)
    return strict + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())


def raw_from_scale(scale: torch.Tensor, *, diagonal: bool) -> torch.Tensor:
    """Inverse of `scale_from_raw` (the scale must have a positive diagonal)."""
    if diagonal:
        return scale.log()
    strict = torch.tril(scale, diagonal=-1)
    return strict + torch.diag_embed(scale.diagonal(dim1=-2, dim2=-1).log())


def standard_diagonal_log_prob(z: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(μ + σ⊙z; μ, diag σ²) = Σ_d (−½ z_d² − ln σ_d − ½ ln 2π) from the standardized point z.
    z [..., D], std broadcastable to it -> [...]. Takes z itself where the caller drew it (a
    reparameterised sample), so no (y − μ)/σ round trip changes its rounding."""
    return (-0.5 * z.pow(2) - std.log() - 0.5 * LOG_2PI).sum(-1)


def diagonal_log_prob(
    y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, sample_dim: int | None = None
) -> torch.Tensor:
    """log N(y; μ, diag σ²) summed over D. With `sample_dim`, y has an extra axis there that mean
    and std lack (e.g. y [..., N, B, D], mean [..., B, D], sample_dim=-3 -> [..., N, B]);
    without it y, mean and std broadcast as they are -> [...]."""
    if sample_dim is None:
        return standard_diagonal_log_prob((y - mean) / std, std)
    # std is unsqueezed once per use (two autograd nodes): σ's gradient then accumulates in the
    # order the control results were produced with, bit for bit
    z = (y - mean.unsqueeze(sample_dim)) / std.unsqueeze(sample_dim)
    return standard_diagonal_log_prob(z, std.unsqueeze(sample_dim))


@dataclass(frozen=True)
class GaussianPolicy:
    """N(mean, Σ) with Σ = scale·scaleᵀ (full) or diag(scale²) (diagonal); see module docstring."""

    mean: torch.Tensor
    scale: torch.Tensor

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_raw(cls, mean: torch.Tensor, raw: torch.Tensor) -> GaussianPolicy:
        """From unconstrained parameters: raw [..., D, D] (full) or [..., D] (diagonal)."""
        return cls(mean, scale_from_raw(raw, diagonal=raw.dim() == mean.dim()))

    @classmethod
    def standard(cls, batch: tuple[int, ...], dim: int, *, diagonal: bool = False, **kw):
        """N(0, I) with the given batch shape (`kw`: dtype, device)."""
        mean = torch.zeros(*batch, dim, **kw)
        ones = torch.ones(*batch, dim, **kw)
        return cls(mean, ones if diagonal else torch.diag_embed(ones))

    # ---- properties -----------------------------------------------------------------------
    @property
    def diagonal(self) -> bool:
        return self.scale.dim() == self.mean.dim()

    @property
    def dim(self) -> int:
        return self.mean.shape[-1]

    @property
    def scale_tril(self) -> torch.Tensor:
        """The Cholesky factor [..., D, D] (diag_embed of σ for a diagonal policy)."""
        return torch.diag_embed(self.scale) if self.diagonal else self.scale

    @property
    def std(self) -> torch.Tensor:
        """Marginal standard deviations [..., D]: sqrt(diag Σ) = row norms of L."""
        return self.scale if self.diagonal else self.scale.pow(2).sum(-1).sqrt()

    def covariance(self) -> torch.Tensor:
        """Σ [..., D, D]."""
        lt = self.scale_tril
        return lt @ lt.mT

    def log_det_scale(self) -> torch.Tensor:
        """ln det L = ½ ln det Σ. Returns [...]."""
        diag = self.scale if self.diagonal else self.scale.diagonal(dim1=-2, dim2=-1)
        return diag.log().sum(-1)

    def raw(self) -> torch.Tensor:
        """Unconstrained parameters of the scale (log-diagonal), see `from_raw`."""
        return raw_from_scale(self.scale, diagonal=self.diagonal)

    def detach(self) -> GaussianPolicy:
        return GaussianPolicy(self.mean.detach(), self.scale.detach())

    # ---- affine maps --------------------------------------------------------------------------
    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """y = μ + L z for standard-normal noise z [..., N, D] -> [..., N, D]."""
        if self.diagonal:
            return self.mean.unsqueeze(-2) + z * self.scale.unsqueeze(-2)
        return self.mean.unsqueeze(-2) + z @ self.scale.mT

    def standardize(self, y: torch.Tensor) -> torch.Tensor:
        """z = L⁻¹(y − μ) for y [..., N, D] -> [..., N, D] (a triangular solve, no inverse)."""
        diff = y - self.mean.unsqueeze(-2)
        if self.diagonal:
            return diff / self.scale.unsqueeze(-2)
        return torch.linalg.solve_triangular(self.scale, diff.mT, upper=False).mT

    def compose(self, local: GaussianPolicy) -> GaussianPolicy:
        """Image of `local` (a policy over this policy's standardized coordinates z) under
        y = μ + L z:  N(μ + L m, (L T)(L T)ᵀ). Lower-triangular times lower-triangular with a
        positive diagonal stays a valid Cholesky factor."""
        mean = self.transform(local.mean.unsqueeze(-2)).squeeze(-2)
        if self.diagonal and local.diagonal:
            return GaussianPolicy(mean, self.scale * local.scale)
        return GaussianPolicy(mean, self.scale_tril @ local.scale_tril)

    def relative_to(self, frame: GaussianPolicy) -> GaussianPolicy:
        """This policy in `frame`'s standardized coordinates (the inverse of `frame.compose`):
        N(L_f⁻¹(μ − μ_f), L_f⁻¹ L)."""
        mean = frame.standardize(self.mean.unsqueeze(-2)).squeeze(-2)
        if frame.diagonal and self.diagonal:
            return GaussianPolicy(mean, self.scale / frame.scale)
        lt = torch.linalg.solve_triangular(frame.scale_tril, self.scale_tril, upper=False)
        return GaussianPolicy(mean, lt)

    # ---- densities ----------------------------------------------------------------------------
    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """log N(y; μ, Σ) = −½‖L⁻¹(y−μ)‖² − ln det L − (D/2) ln 2π. y [..., N, D] -> [..., N]."""
        z = self.standardize(y)
        return (
            -0.5 * z.pow(2).sum(-1) - self.log_det_scale().unsqueeze(-1) - 0.5 * self.dim * LOG_2PI
        )

    def diagonal_log_prob(self, y: torch.Tensor, *, sample_dim: int = -2) -> torch.Tensor:
        """`diagonal_log_prob` of a diagonal policy, the sample axis of y at `sample_dim`
        (default: just before D, as in `log_prob`)."""
        if not self.diagonal:
            raise ValueError("diagonal_log_prob needs a diagonal policy")
        return diagonal_log_prob(y, self.mean, self.scale, sample_dim=sample_dim)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws per batch element: [..., n, D] (no gradient through the noise's source)."""
        shape = (*self.mean.shape[:-1], n, self.dim)
        z = torch.randn(shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.transform(z)

    def kl_from(self, ref: GaussianPolicy) -> torch.Tensor:
        """KL(ref ‖ self), the forward KL of PMPO Eq. 10 / MPO, in closed form (`anyfeedback.losses.kl`).
        Returns [...]."""
        return gaussian_kl(ref.mean, ref.scale, self.mean, self.scale)

    def kl_per_dim_from(self, ref: GaussianPolicy) -> torch.Tensor:
        """KL(ref ‖ self) per action dimension [..., D], both diagonal (MPO's per-dimension
        constraints); the sum over D is `kl_from`."""
        if not (self.diagonal and ref.diagonal):
            raise ValueError("kl_per_dim_from needs diagonal policies")
        return gaussian_kl_diag(ref.mean, ref.scale, self.mean, self.scale, per_dim=True)

    def entropy(self) -> torch.Tensor:
        """½ D (1 + ln 2π) + ln det L. Returns [...]."""
        return 0.5 * self.dim * (1.0 + LOG_2PI) + self.log_det_scale()

    # ---- decoupled views (MPO, arXiv 1812.02256) ----------------------------------------------
    def with_scale_of(self, other: GaussianPolicy) -> GaussianPolicy:
        """N(self.μ, other.Σ): the mean-only policy π_μ of decoupled MPO."""
        return GaussianPolicy(self.mean, other.scale)

    def with_mean_of(self, other: GaussianPolicy) -> GaussianPolicy:
        """N(other.μ, self.Σ): the covariance-only policy π_Σ of decoupled MPO."""
        return GaussianPolicy(other.mean, self.scale)

    def select(self, index) -> GaussianPolicy:
        """Rows of the batch (any torch index on the leading dims)."""
        return GaussianPolicy(self.mean[index], self.scale[index])
