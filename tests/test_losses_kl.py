"""Closed-form Gaussian KL(π_ref‖π_θ): hand values, identities, Monte-Carlo agreement."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from anyfeedback.losses.kl import gaussian_kl, gaussian_kl_diag, gaussian_kl_full


def test_diag_hand_value():
    """KL(N(0,1) ‖ N(1, 2²)) = ln(2/1) + (1 + (0−1)²)/(2·4) − ½ = 0.6931472 + 0.25 − 0.5
    = 0.4431472."""
    kl = gaussian_kl_diag(
        torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([2.0])
    )
    assert kl.item() == pytest.approx(0.4431472, abs=1e-6)


def test_full_hand_value():
    """Σ_r = I₂, Σ = diag(4, 1) via L = diag(2, 1), μ_r = 0, μ = (2, 0):
    tr(Σ⁻¹Σ_r) = 1/4 + 1 = 1.25; Mahalanobis = 2²/4 = 1; ln det Σ − ln det Σ_r = ln 4;
    KL = ½(1.25 + 1 − 2 + 1.3862944) = 0.8181472."""
    kl = gaussian_kl_full(
        torch.zeros(2), torch.eye(2), torch.tensor([2.0, 0.0]), torch.diag(torch.tensor([2.0, 1.0]))
    )
    assert kl.item() == pytest.approx(0.8181472, abs=1e-6)


def test_zero_for_identical_and_dispatch():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    tril = torch.linalg.cholesky(a @ a.mT + 0.5 * torch.eye(4, dtype=torch.float64))
    mean = torch.randn(3, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(
        gaussian_kl(mean, tril, mean, tril), torch.zeros(3, dtype=torch.float64), atol=1e-12
    )
    std = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.1
    assert torch.allclose(gaussian_kl(mean, std, mean, std), torch.zeros(3, dtype=torch.float64))
    # diagonal and full forms agree on diagonal covariances, in every mix of the two
    std2 = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.1
    mean2 = mean + 0.3
    diag = gaussian_kl(mean, std, mean2, std2)
    assert torch.allclose(diag, gaussian_kl(mean, torch.diag_embed(std), mean2, std2))
    assert torch.allclose(diag, gaussian_kl(mean, std, mean2, torch.diag_embed(std2)))
    per_dim = gaussian_kl_diag(mean, std, mean2, std2, per_dim=True)
    assert per_dim.shape == (3, 4) and torch.allclose(per_dim.sum(-1), diag)


def test_full_matches_torch_and_monte_carlo():
    """Against torch.distributions (exact) and a 400k-sample Monte-Carlo estimate of
    E_{π_ref}[log π_ref − log π_θ] (tolerance ≈ 4 standard errors)."""
    g = torch.Generator().manual_seed(1)
    d = 5
    a, b = (torch.randn(d, d, generator=g, dtype=torch.float64) for _ in range(2))
    lr_ = torch.linalg.cholesky(a @ a.T / d + 0.3 * torch.eye(d, dtype=torch.float64))
    lt = torch.linalg.cholesky(b @ b.T / d + 0.3 * torch.eye(d, dtype=torch.float64))
    mr, mt = (torch.randn(d, generator=g, dtype=torch.float64) for _ in range(2))
    ours = gaussian_kl_full(mr, lr_, mt, lt).item()
    ref, pol = MultivariateNormal(mr, scale_tril=lr_), MultivariateNormal(mt, scale_tril=lt)
    assert ours == pytest.approx(kl_divergence(ref, pol).item(), rel=1e-10)
    torch.manual_seed(2)
    y = ref.sample((400_000,))
    diff = ref.log_prob(y) - pol.log_prob(y)
    se = diff.std().item() / math.sqrt(len(diff))
    assert abs(diff.mean().item() - ours) < 4 * se
    s_r, s_t = torch.tensor([0.5, 2.0]), torch.tensor([1.5, 0.7])
    m_r, m_t = torch.tensor([0.0, 1.0]), torch.tensor([0.4, -1.0])
    expected = kl_divergence(Normal(m_r, s_r), Normal(m_t, s_t)).sum()
    assert gaussian_kl(m_r, s_r, m_t, s_t).item() == pytest.approx(expected.item(), rel=1e-6)
