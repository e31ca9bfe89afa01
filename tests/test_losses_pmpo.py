"""PMPO loss (Eq. 10) on hand-computed inputs, its identities and the reject-only theorem."""

import math
import warnings

import pytest
import torch

from anyfeedback.losses import BetaBelowBoundWarning, check_pmpo_beta, pmpo_loss, sft_loss


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_pmpo_hand_values_per_set():
    """α=β=0.5, ℓ_a = [−1, −2], ℓ_r = [−3], KL = [0.5]:
    L = −0.5·mean(−1, −2) + 0.5·(−3) + 0.5·0.5 = 0.75 − 1.5 + 0.25 = −0.5."""
    loss, diag = pmpo_loss(t(-1, -2), t(-3), t(0.5), alpha=0.5, beta=0.5)
    assert loss.item() == pytest.approx(-0.5)
    assert diag.logp_accepted.item() == pytest.approx(-1.5)
    assert diag.logp_rejected.item() == pytest.approx(-3.0)
    assert (diag.n_accepted, diag.n_rejected) == (2, 1)


def test_pmpo_reject_only_empty_accepted_set():
    """α=0, β=2, D_a = ∅, ℓ_r = [−1, −3], KL = [0.1, 0.3]:
    L = (1−0)·mean(−1, −3) + 2·mean(0.1, 0.3) = −2 + 0.4 = −1.6; accepted diagnostics are NaN."""
    loss, diag = pmpo_loss(t(), t(-1, -3), t(0.1, 0.3), alpha=0.0, beta=2.0)
    assert loss.item() == pytest.approx(-1.6)
    assert math.isnan(diag.logp_accepted.item())


def test_pmpo_accept_only_is_mean_nll_and_sft():
    """α=1, β=0, D_r = ∅, ℓ_a = [−0.5, −1.5, −4]: L = −mean ℓ_a = 2.0 = sft_loss(ℓ_a)."""
    logps = t(-0.5, -1.5, -4.0)
    loss, _ = pmpo_loss(logps, t(), t(), alpha=1.0, beta=0.0)
    assert loss.item() == pytest.approx(2.0)
    assert loss.item() == pytest.approx(sft_loss(logps)[0].item())
    # rejected samples are ignored entirely at α=1, β=0
    loss_with_r, _ = pmpo_loss(logps, t(-9.0), t(), alpha=1.0, beta=0.0)
    assert loss_with_r.item() == pytest.approx(2.0)


@pytest.mark.filterwarnings("ignore::anyfeedback.losses.pmpo.BetaBelowBoundWarning")
def test_pmpo_global_normalisation_hand_value():
    """global, N=4, α=0.5, β=0.2, ℓ_a=[−1,−2], ℓ_r=[−3,−5], KL=[1]:
    L = −(0.5·(−3) − 0.5·(−8))/4 + 0.2·1 = −2.5/4 + 0.2 = −0.425."""
    loss, _ = pmpo_loss(t(-1, -2), t(-3, -5), t(1.0), alpha=0.5, beta=0.2, normalization="global")
    assert loss.item() == pytest.approx(-0.425)
    # num_samples counts unlabelled draws too: N = 8 halves the data terms
    loss8, _ = pmpo_loss(
        t(-1, -2), t(-3, -5), t(1.0), alpha=0.5, beta=0.2, normalization="global", num_samples=8
    )
    assert loss8.item() == pytest.approx(-2.5 / 8 + 0.2)


def test_per_set_at_beta_is_twice_global_at_half_beta():
    """Balanced split (2 of 4 accepted): per-set L(β) = 2·global L(β/2)
    (docs/algorithms.md#pmpo)."""
    a, r, kl = t(-1.3, -0.2), t(-2.5, -4.0), t(0.7, 0.1)
    per_set, _ = pmpo_loss(a, r, kl, alpha=0.5, beta=1.2)
    glob, _ = pmpo_loss(a, r, kl, alpha=0.5, beta=0.6, normalization="global")
    assert per_set.item() == pytest.approx(2 * glob.item())


def test_pmpo_gradient_signs():
    """∂L/∂ℓ_a = −α/N_a (< 0: descent raises accepted log-probs), ∂L/∂ℓ_r = (1−α)/N_r (> 0:
    descent lowers rejected), ∂L/∂KL_x = β/B."""
    a = t(-1, -2).requires_grad_()
    r = t(-3, -4, -5).requires_grad_()
    kl = t(0.2, 0.4).requires_grad_()
    loss, _ = pmpo_loss(a, r, kl, alpha=0.4, beta=0.9)
    loss.backward()
    assert torch.allclose(a.grad, torch.full((2,), -0.4 / 2, dtype=torch.float64))
    assert torch.allclose(r.grad, torch.full((3,), 0.6 / 3, dtype=torch.float64))
    assert torch.allclose(kl.grad, torch.full((2,), 0.9 / 2, dtype=torch.float64))


def test_beta_bound_warning():
    with pytest.warns(BetaBelowBoundWarning):
        check_pmpo_beta(0.0, 0.5)
    with pytest.warns(BetaBelowBoundWarning):
        pmpo_loss(t(-1), t(-2), t(0.1), alpha=0.5, beta=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_pmpo_beta(0.0, 2.0)
        assert check_pmpo_beta(0.5, 0.5)
        assert check_pmpo_beta(1.0, 0.0)
    with pytest.raises(ValueError):
        check_pmpo_beta(1.5, 1.0)


# ---- the reject-only theorem on a categorical policy, exact expectations ----
# (docs/algorithms.md#pmpo)

PI_REF = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
P0 = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)  # p(O=0 | y): how often y is rejected


def _population_loss(theta, alpha, beta):
    """Exact population PMPO loss for π_θ = softmax(θ): the 'set means' are the exact
    expectations E_{q0}[log π_θ] with q0 = π_ref·p0/Z0 (one 'sample' carrying the expectation),
    and the KL is the exact categorical KL(π_ref‖π_θ)."""
    log_pi = torch.log_softmax(theta, 0)
    q0 = PI_REF * P0 / (PI_REF * P0).sum()
    q1 = PI_REF * (1 - P0) / (PI_REF * (1 - P0)).sum()
    kl = (PI_REF * (PI_REF.log() - log_pi)).sum()
    return pmpo_loss(
        (q1 * log_pi).sum().reshape(1) if alpha > 0 else log_pi[:0],
        (q0 * log_pi).sum().reshape(1),
        kl.reshape(1),
        alpha=alpha,
        beta=beta,
    )[0]


def _minimise(alpha, beta, steps, lr=0.05):
    theta = PI_REF.log().clone().requires_grad_()
    opt = torch.optim.Adam([theta], lr=lr)
    trace = []
    for _ in range(steps):
        opt.zero_grad()
        _population_loss(theta, alpha, beta).backward()
        opt.step()
        trace.append(torch.log_softmax(theta.detach(), 0))
    return torch.softmax(theta.detach(), 0), trace


def test_reject_only_converges_to_theorem_optimum_above_bound():
    """Z0 = 0.5·0.9 + 0.3·0.5 + 0.2·0.1 = 0.62, p0/Z0 = [1.4516, 0.8065, 0.1613]; bound
    β ≥ 1.4516. At β = 2: c = β − p0/Z0 = [0.5484, 1.1935, 1.8387],
    π* ∝ π_ref·c = [0.27419, 0.35806, 0.36774] (sum = β − 1 = 1, already normalised)."""
    z0 = (PI_REF * P0).sum().item()
    assert z0 == pytest.approx(0.62)
    expected = torch.tensor([0.27419355, 0.35806452, 0.36774194], dtype=torch.float64)
    assert torch.allclose(PI_REF * (2.0 - P0 / z0), expected, atol=1e-7)
    pi, _ = _minimise(alpha=0.0, beta=2.0, steps=3000)
    assert torch.allclose(pi, expected, atol=1e-4)


def test_reject_only_below_bound_log_prob_runs_to_minus_infinity():
    """β = 1.2 < max p0/Z0 = 1.4516 (yet ≥ 1 − α = 1, so no config warning: the per-set bound is
    stricter). c(y0) = 1.2 − 1.4516 < 0, so J → +∞ as π(y0) → 0: log π(y0) falls without limit,
    at a steady rate (the gradient tends to π_ref(y0)·c(y0) ≠ 0)."""
    _, trace = _minimise(alpha=0.0, beta=1.2, steps=3000, lr=0.05)
    worst = torch.stack([lp[0] for lp in trace])
    assert worst[-1] < -50  # π(y0) < e^-50 and still going
    assert (worst[-500:].diff() < 0).all()  # strictly decreasing at the end
    # the other outcomes keep finite probabilities
    assert trace[-1][1:].exp().sum().item() == pytest.approx(1.0, abs=1e-6)
