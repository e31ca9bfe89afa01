"""GaussianPolicy: hand values, agreement with torch.distributions, whitened coordinates."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from anyfeedback.losses.kl import gaussian_kl
from anyfeedback.policies import GaussianPolicy, raw_from_scale, scale_from_raw

D64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: threads only add overhead


def _random_policy(g, batch=(3,), d=4, diagonal=False):
    mean = torch.randn(*batch, d, generator=g, dtype=D64)
    if diagonal:
        return GaussianPolicy(mean, torch.rand(*batch, d, generator=g, dtype=D64) + 0.3)
    a = torch.randn(*batch, d, d, generator=g, dtype=D64)
    cov = a @ a.mT / d + 0.3 * torch.eye(d, dtype=D64)
    return GaussianPolicy(mean, torch.linalg.cholesky(cov))


def test_log_prob_hand_value():
    """N(y=(1, 2); μ=0, L=diag(1, 2)): z = (1, 1), ‖z‖² = 2, ln det L = ln 2,
    log p = −1 − ln 2 − ln 2π = −1 − 0.6931472 − 1.8378771 = −3.5310243."""
    p = GaussianPolicy(torch.zeros(2, dtype=D64), torch.diag(torch.tensor([1.0, 2.0], dtype=D64)))
    y = torch.tensor([[1.0, 2.0]], dtype=D64)
    assert p.log_prob(y).item() == pytest.approx(-3.5310243, abs=1e-6)
    diag = GaussianPolicy(torch.zeros(2, dtype=D64), torch.tensor([1.0, 2.0], dtype=D64))
    assert diag.log_prob(y).item() == pytest.approx(-3.5310243, abs=1e-6)


def test_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    p = _random_policy(g)
    y = torch.randn(3, 5, 4, generator=g, dtype=D64)  # [batch, N, D]
    ref = MultivariateNormal(p.mean.unsqueeze(-2), scale_tril=p.scale.unsqueeze(-3)).log_prob(y)
    assert torch.allclose(p.log_prob(y), ref, atol=1e-10)
    assert torch.allclose(p.entropy(), MultivariateNormal(p.mean, scale_tril=p.scale).entropy())


def test_sample_moments_and_generator():
    """100k draws: sample mean and covariance within Monte-Carlo error; a seeded generator
    reproduces the draws."""
    g = torch.Generator().manual_seed(1)
    p = _random_policy(g, batch=(), d=3)
    y = p.sample(100_000, torch.Generator().manual_seed(7))
    assert y.shape == (100_000, 3)
    assert torch.allclose(y.mean(0), p.mean, atol=0.02)
    assert torch.allclose(torch.cov(y.T), p.covariance(), atol=0.03)
    again = p.sample(100_000, torch.Generator().manual_seed(7))
    assert torch.equal(y, again)


def test_kl_from_is_the_loss_core_kl_and_monte_carlo():
    """kl_from(ref) = KL(ref‖self) (reference first, PMPO §5) = gaussian_kl(ref…, self…), and
    ≈ E_ref[log ref − log self] by Monte Carlo."""
    g = torch.Generator().manual_seed(2)
    p, ref = _random_policy(g, batch=()), _random_policy(g, batch=())
    kl = p.kl_from(ref)
    assert kl.item() == pytest.approx(gaussian_kl(ref.mean, ref.scale, p.mean, p.scale).item())
    y = ref.sample(200_000, torch.Generator().manual_seed(3))
    mc = (ref.log_prob(y) - p.log_prob(y)).mean().item()
    assert kl.item() == pytest.approx(mc, abs=0.03)
    assert p.kl_from(p).abs().item() < 1e-12


def test_whitened_coordinates_round_trip():
    """ref.compose(local) maps N(m, TTᵀ) in z = L_r⁻¹(y − μ_r) back to y-space:
    mean μ_r + L_r m, scale L_r T; relative_to is its inverse; KLs are unchanged by the map."""
    g = torch.Generator().manual_seed(4)
    for diagonal in (False, True):
        ref, local, other = (_random_policy(g, diagonal=diagonal) for _ in range(3))
        composed = ref.compose(local)
        back = composed.relative_to(ref)
        assert torch.allclose(back.mean, local.mean, atol=1e-10)
        assert torch.allclose(back.scale_tril, local.scale_tril, atol=1e-10)
        y = ref.transform(torch.randn(3, 6, 4, generator=g, dtype=D64))
        assert torch.allclose(
            ref.standardize(y),
            torch.linalg.solve_triangular(
                ref.scale_tril, (y - ref.mean[:, None]).mT, upper=False
            ).mT,
            atol=1e-10,
        )
        kl_y = ref.compose(other).kl_from(composed)
        assert torch.allclose(kl_y, other.kl_from(local), atol=1e-9)
        # log-densities shift by ln det L_r
        z = ref.standardize(y)
        shift = ref.log_det_scale()[:, None]
        assert torch.allclose(composed.log_prob(y), local.log_prob(z) - shift, atol=1e-9)


def test_raw_parameters_and_decoupled_views():
    """from_raw: strict lower triangle as is, exp on the diagonal (log-diagonal Cholesky)."""
    raw = torch.tensor([[math.log(2.0), 5.0], [0.5, 0.0]], dtype=D64)
    scale = scale_from_raw(raw, diagonal=False)
    assert torch.allclose(scale, torch.tensor([[2.0, 0.0], [0.5, 1.0]], dtype=D64))
    assert torch.allclose(raw_from_scale(scale, diagonal=False), torch.tril(raw))
    p = GaussianPolicy.from_raw(torch.ones(2, dtype=D64), raw)
    q = GaussianPolicy.standard((), 2, dtype=D64)
    assert torch.equal(p.with_scale_of(q).scale, q.scale)
    assert torch.equal(p.with_mean_of(q).mean, q.mean)
    assert p.std.tolist() == pytest.approx([2.0, math.sqrt(0.25 + 1.0)])


def test_diagonal_log_prob_by_hand_and_with_a_sample_axis():
    """y = 1, μ = 0, σ = 2 per dim: −½(½)² − ln 2 − ½ ln 2π = −0.125 − 0.6931472 − 0.9189385
    = −1.7370857; two such dims sum to −3.4741714. With the control layout (samples before the
    states: y [N, B, D] against μ, σ [B, D], sample_dim=−3) it equals `log_prob` on [B, N, D]."""
    from anyfeedback.policies.gaussian import diagonal_log_prob, standard_diagonal_log_prob

    one = diagonal_log_prob(
        torch.ones(2, dtype=D64), torch.zeros(2, dtype=D64), torch.full((2,), 2.0)
    )
    assert one.item() == pytest.approx(2 * -1.7370857, abs=1e-6)
    z = torch.tensor([0.5, -1.0], dtype=D64)
    assert standard_diagonal_log_prob(z, torch.ones(2, dtype=D64)).item() == pytest.approx(
        -0.125 - 0.5 - 2 * 0.9189385, abs=1e-6
    )
    p = _random_policy(torch.Generator().manual_seed(0), (3,), 2, diagonal=True)  # B = 3 states
    y = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(1), dtype=D64)  # [N, B, D]
    lp = p.diagonal_log_prob(y, sample_dim=-3)  # [N, B]
    assert torch.allclose(lp, p.log_prob(y.transpose(0, 1)).T)


def test_kl_per_dim_sums_to_kl_and_decoupled_views():
    """Σ_d KL_d = KL; the mean-only view N(μ, σ_ref) has KL_Σ = 0, the covariance-only view
    N(μ_ref, σ) has KL_μ = 0 (the split of MPO's decoupled M-step)."""
    p = _random_policy(torch.Generator().manual_seed(0), (3,), 2, diagonal=True)
    ref = _random_policy(torch.Generator().manual_seed(5), (3,), 2, diagonal=True)
    assert torch.allclose(p.kl_per_dim_from(ref).sum(-1), p.kl_from(ref))
    mean_only, cov_only = p.with_scale_of(ref), p.with_mean_of(ref)
    kl_mu, kl_cov = mean_only.kl_per_dim_from(ref), cov_only.kl_per_dim_from(ref)
    assert torch.allclose(kl_mu, (p.mean - ref.mean).pow(2) / (2 * ref.scale.pow(2)))
    assert torch.allclose(cov_only.with_scale_of(ref).kl_from(ref), torch.zeros(3, dtype=D64))
    assert (kl_cov >= 0).all()
