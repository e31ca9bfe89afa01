"""Gaussian M-steps (bandit/msteps.py): the exact maximiser of PMPO Eq. 10 (docs/algorithms.md#pmpo)
by hand, against gradient descent on the loss core's `pmpo_loss`, its failure modes, and the β
dual."""

import math

import pytest
import torch

from anyfeedback.bandit.msteps import (
    exact_pmpo_mstep,
    exact_pmpo_mstep_decoupled,
    pmpo_sample_weights,
    update_log_beta,
)
from anyfeedback.losses.pmpo import pmpo_loss
from anyfeedback.policies import GaussianPolicy

D64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: threads only add overhead


def _std(d, batch=1, diagonal=False):
    return GaussianPolicy.standard((batch,), d, diagonal=diagonal, dtype=D64)


def test_sample_weights():
    """K = 4 sorted best → worst, 2 accepted, 2 rejected. per-set: α/2, α/2, −(1−α)/2, −(1−α)/2;
    global: α/4 and −(1−α)/4; K = 5 leaves the middle sample unlabelled (weight 0)."""
    assert pmpo_sample_weights(0.5, 4, 2, 2).tolist() == [0.25, 0.25, -0.25, -0.25]
    assert pmpo_sample_weights(1.0, 4, 2, 2, normalization="global").tolist() == [0.25, 0.25, 0, 0]
    assert pmpo_sample_weights(0.0, 5, 2, 2).tolist() == [0, 0, 0, -0.5, -0.5]


def test_exact_mstep_hand_values():
    """d = 1, π_ref = N(0, 1), accepted y = 1 (w = ½), rejected y = −1 (w = −½), β = 2:
    W = ½ − ½ + 2 = 2;  μ* = (½·1 − ½·(−1) + 2·0)/2 = 0.5;
    Σ* = [½(1 − 0.5)² − ½(−1 − 0.5)² + 2(1 + 0.5²)]/2 = (0.125 − 1.125 + 2.5)/2 = 0.75.
    With β = 1 the same data give Σ* = (0.5·0 ... ) = [0 − 2 + 2]/1 = 0 at μ* = 1: not PD."""
    y = torch.tensor([[[1.0], [-1.0]]], dtype=D64)  # [R=1, K=2, D=1]
    w = torch.tensor([0.5, -0.5], dtype=D64)
    for diagonal in (False, True):
        pol, ok = exact_pmpo_mstep(y, w, _std(1, diagonal=diagonal), 2.0)
        assert ok.item() and pol.mean.item() == pytest.approx(0.5)
        assert pol.covariance().item() == pytest.approx(0.75)
        pol, ok = exact_pmpo_mstep(y, w, _std(1, diagonal=diagonal), 1.0)
        assert not ok.item()  # Σ* = 0: reported, π_ref kept
        assert pol.mean.item() == 0.0 and pol.covariance().item() == 1.0


def test_exact_mstep_failures_are_reported():
    """Reject-only with β = 0.5 < 1: W = −1 + 0.5 < 0. Accept-only with β = 0 in d = 3 from
    2 accepted points: Σ* has rank 1 (docs/results/bandit.md). Both come back ok = False."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 4, 3, generator=g, dtype=D64)
    _, ok = exact_pmpo_mstep(y, pmpo_sample_weights(0.0, 4, 2, 2), _std(3, 2), 0.5)
    assert not ok.any()
    _, ok = exact_pmpo_mstep(y, pmpo_sample_weights(1.0, 4, 2, 2), _std(3, 2), 0.0)
    assert not ok.any()
    _, ok = exact_pmpo_mstep(y, pmpo_sample_weights(0.0, 4, 2, 2), _std(3, 2), 50.0)
    assert ok.all()


def test_pmpo_a_exact_is_smoothed_cem():
    """PMPO-A's exact step (per-set) is CEM with a = 1/(1+β):
    μ* = a·ȳ_E + (1−a)μ_r,  Σ* = a·Cov(E) + (1−a)Σ_r + a(1−a)(ȳ_E−μ_r)(ȳ_E−μ_r)ᵀ."""
    g = torch.Generator().manual_seed(1)
    scale = torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=D64))[None]  # [1, 3, 3]
    ref = GaussianPolicy(torch.randn(1, 3, generator=g, dtype=D64), scale)
    y = ref.sample(4, g)
    beta, a = 3.0, 0.25
    pol, ok = exact_pmpo_mstep(y, pmpo_sample_weights(1.0, 4, 2, 2), ref, beta)
    elite = y[0, :2]
    ybar = elite.mean(0)
    cov_e = (elite - ybar).T @ (elite - ybar) / 2
    diff = (ybar - ref.mean[0])[:, None]
    expect = a * cov_e + (1 - a) * ref.covariance()[0] + a * (1 - a) * diff @ diff.T
    assert ok.item()
    assert torch.allclose(pol.mean[0], a * ybar + (1 - a) * ref.mean[0])
    assert torch.allclose(pol.covariance()[0], expect)


def _fit_by_gradient(y, alpha, beta, ref, *, normalization, decoupled=None, steps=200):
    """Adam on pmpo_loss over (mean, log-Cholesky) from π_ref, then L-BFGS (also gradient-based)
    to a tight tolerance."""
    n_a = n_r = 2
    mean = ref.mean.clone().requires_grad_(True)
    raw = ref.raw().clone().requires_grad_(True)

    def loss_fn():
        pol = GaussianPolicy.from_raw(mean, raw)
        if decoupled is None:
            logps, kl, b = pol.log_prob(y), pol.kl_from(ref), beta
        else:
            pi_mu, pi_cov = pol.with_scale_of(ref), pol.with_mean_of(ref)
            logps = pi_mu.log_prob(y) + pi_cov.log_prob(y)
            kl, b = decoupled[0] * pi_mu.kl_from(ref) + decoupled[1] * pi_cov.kl_from(ref), 1.0
        loss, _ = pmpo_loss(
            logps[:, :n_a].reshape(-1),
            logps[:, -n_r:].reshape(-1),
            kl,
            alpha=alpha,
            beta=b,
            normalization=normalization,
            num_samples=y.shape[1],
        )
        return loss

    opt = torch.optim.Adam([mean, raw], lr=0.03)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    lbfgs = torch.optim.LBFGS(
        [mean, raw],
        max_iter=100,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        lbfgs.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    lbfgs.step(closure)
    return GaussianPolicy.from_raw(mean.detach(), raw.detach())


@pytest.mark.parametrize(
    "alpha, beta, normalization, diagonal",
    [(0.5, 2.0, "per_set", False), (0.0, 3.0, "per_set", False), (1.0, 0.5, "global", True)],
)
def test_gradient_descent_on_pmpo_loss_reaches_the_closed_form(
    alpha, beta, normalization, diagonal
):
    """Spec §4 oracle: minimising pmpo_loss (with the closed-form KL(π_ref‖π)) over a Gaussian
    lands on μ* = (Σwᵢyᵢ + βμ_r)/W, Σ* = [Σwᵢ(yᵢ−μ*)(yᵢ−μ*)ᵀ + β(Σ_r + (μ_r−μ*)(μ_r−μ*)ᵀ)]/W."""
    g = torch.Generator().manual_seed(2)
    d = 3
    ref = GaussianPolicy(torch.randn(1, d, generator=g, dtype=D64), None)
    a = torch.randn(d, d, generator=g, dtype=D64)
    chol = torch.linalg.cholesky(a @ a.T / d + 0.5 * torch.eye(d, dtype=D64))[None]
    ref = GaussianPolicy(ref.mean, chol.diagonal(dim1=-2, dim2=-1) if diagonal else chol)
    y = ref.sample(4, g)  # sorted order = labels: 2 accepted, 2 rejected
    w = pmpo_sample_weights(alpha, 4, 2, 2, normalization=normalization)
    exact, ok = exact_pmpo_mstep(y, w, ref, beta)
    assert ok.item()
    fitted = _fit_by_gradient(y, alpha, beta, ref, normalization=normalization)
    assert torch.allclose(fitted.mean, exact.mean, atol=1e-5)
    assert torch.allclose(fitted.covariance(), exact.covariance(), atol=1e-5)


def test_decoupled_closed_form_matches_gradient_descent():
    """Decoupled objective (β_μ on KL(π_r‖N(μ,Σ_r)), β_Σ on KL(π_r‖N(μ_r,Σ))):
    μ* = (Σwy + β_μμ_r)/(Σw + β_μ), Σ* = [Σw(y−μ_r)(y−μ_r)ᵀ + β_ΣΣ_r]/(Σw + β_Σ)."""
    g = torch.Generator().manual_seed(3)
    ref = _std(3)
    y = ref.sample(4, g)
    w = pmpo_sample_weights(0.5, 4, 2, 2)
    exact, ok = exact_pmpo_mstep_decoupled(y, w, ref, 1.5, 4.0)
    assert ok.item()
    # AR: Σw = 0, so μ* = μ_r + Σwᵢyᵢ/β_μ
    assert torch.allclose(exact.mean[0], (w[:, None] * y[0]).sum(0) / 1.5)
    fitted = _fit_by_gradient(y, 0.5, None, ref, normalization="per_set", decoupled=(1.5, 4.0))
    assert torch.allclose(fitted.mean, exact.mean, atol=1e-5)
    assert torch.allclose(fitted.covariance(), exact.covariance(), atol=1e-5)


def test_adaptive_beta_dual_step():
    """ln β ← clip(ln β + lr·ln(KL/ε)): KL = 4ε, lr = ½ → ln β + ln 2 (β doubles);
    KL = ε/4 halves it; clipping at the bounds; a failed step (KL = inf) raises β by lr·ln 1e3."""
    log_beta = torch.log(torch.tensor([10.0, 10.0, 10.0, 10.0], dtype=D64))
    kl = torch.tensor([0.04, 0.0025, 1e6, math.inf], dtype=D64)
    out = update_log_beta(log_beta, kl, epsilon=0.01, lr=0.5, beta_min=1.0, beta_max=100.0)
    assert out.exp().tolist() == pytest.approx([20.0, 5.0, 100.0, 100.0])
    out = update_log_beta(log_beta, kl, epsilon=0.01, lr=0.5, beta_min=1.0, beta_max=1e4)
    assert out.exp()[3].item() == pytest.approx(10.0 * math.sqrt(1e3))
