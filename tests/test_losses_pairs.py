"""DPO, IPO, SPIN, KTO and Bradley–Terry on hand-computed inputs and their identities."""

import math

import pytest
import torch

from anyfeedback.losses import (
    bradley_terry_loss,
    dpo_loss,
    ipo_loss,
    kto_loss,
    kto_reference_point,
    mismatched_indices,
    spin_loss,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_dpo_is_log2_at_reference():
    """π_θ = π_ref ⇒ h = 0 ⇒ L = −log σ(0) = log 2, whatever β."""
    lp = t(-3.0, -7.5)
    for beta in (0.1, 1.0, 5.0):
        loss, diag = dpo_loss(lp, lp - 1, lp, lp - 1, beta=beta)
        assert loss.item() == pytest.approx(math.log(2))
        assert diag.margin.item() == pytest.approx(0.0)


def test_dpo_hand_values():
    """ℓ_θ(w)=−1, ℓ_θ(l)=−2, ℓ_ref(w)=ℓ_ref(l)=−1.5 ⇒ h = 0.5 − (−0.5) = 1.
    β=1:   L = log(1 + e^−1)   = 0.3132617;   β=0.1: L = log(1 + e^−0.1) = 0.6443967.
    Implicit rewards: β·ρ = (0.05, −0.05) at β=0.1, accuracy 1."""
    args = (t(-1.0), t(-2.0), t(-1.5), t(-1.5))
    assert dpo_loss(*args, beta=1.0)[0].item() == pytest.approx(0.3132617, abs=1e-7)
    loss, diag = dpo_loss(*args, beta=0.1)
    assert loss.item() == pytest.approx(0.6443967, abs=1e-7)
    assert diag.reward_chosen.item() == pytest.approx(0.05)
    assert diag.reward_rejected.item() == pytest.approx(-0.05)
    assert diag.accuracy.item() == 1.0


def test_dpo_gradient_matches_closed_form():
    """∂L/∂ℓ_θ(w) = −β·σ(−β·h), ∂L/∂ℓ_θ(l) = +β·σ(−β·h); with h = 1, β = 0.5:
    σ(−0.5) = 0.3775407 ⇒ ∓0.1887703."""
    pc, pr = t(-1.0).requires_grad_(), t(-2.0).requires_grad_()
    dpo_loss(pc, pr, t(-1.5), t(-1.5), beta=0.5)[0].backward()
    assert pc.grad.item() == pytest.approx(-0.1887703, abs=1e-7)
    assert pr.grad.item() == pytest.approx(0.1887703, abs=1e-7)


def test_ipo_hand_value_and_optimum_margin():
    """h = 1, τ = 0.1: L = (1 − 1/(2·0.1))² = (1 − 5)² = 16. Minimising over ℓ_θ(w) drives the
    margin to exactly 1/(2τ) = 5 (the loss's unique minimiser), where L = 0."""
    args = (t(-1.0), t(-2.0), t(-1.5), t(-1.5))
    assert ipo_loss(*args, tau=0.1)[0].item() == pytest.approx(16.0)
    for tau in (0.1, 0.5, 2.0):
        x = t(-1.0).requires_grad_()
        opt = torch.optim.SGD([x], lr=0.1)
        for _ in range(300):
            opt.zero_grad()
            ipo_loss(x, t(-2.0), t(-1.5), t(-1.5), tau=tau)[0].backward()
            opt.step()
        margin = (x.detach() + 1.5) - (-2.0 + 1.5)
        assert margin.item() == pytest.approx(1 / (2 * tau), abs=1e-6)
    with pytest.raises(ValueError):
        ipo_loss(*args, tau=0.0)


def test_spin_is_dpo_with_opponent_reference():
    """SPIN(ℓ_θ(y), ℓ_θ(y'), ℓ_t(y), ℓ_t(y'); λ) ≡ DPO(chosen=y, rejected=y', ref=π_t; β=λ)."""
    g = torch.Generator().manual_seed(0)
    a, b, c, d = (torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4))
    assert spin_loss(a, b, c, d, lam=0.3)[0].item() == pytest.approx(
        dpo_loss(a, b, c, d, beta=0.3)[0].item(), abs=1e-12
    )


KTO_POLICY, KTO_REF, KTO_DESIRABLE = t(-1.0, -2.0), t(-1.5, -1.5), torch.tensor([True, False])


def test_kto_hand_value_reference_point_clamped_to_zero():
    """Mismatched ℓ_θ = [−3, −4], ℓ_ref = [−3.5, −3] ⇒ z = mean(0.5, −1) = −0.25 → clamp 0.
    r = [0.5, −0.5], β = 1: desirable 1 − σ(0.5) = 0.3775407, undesirable 1 − σ(0 + 0.5) =
    0.3775407; mean 0.3775407."""
    loss, diag = kto_loss(KTO_POLICY, KTO_REF, KTO_DESIRABLE, t(-3, -4), t(-3.5, -3), beta=1.0)
    assert diag.z_ref.item() == 0.0
    assert loss.item() == pytest.approx(0.3775407, abs=1e-7)


def test_kto_hand_value_positive_reference_point():
    """Mismatched ℓ_θ = [−3, −3], ℓ_ref = [−3.5, −4] ⇒ z = mean(0.5, 1.0) = 0.75.
    desirable: 1 − σ(0.5 − 0.75) = 1 − σ(−0.25) = 0.5621765;
    undesirable: 1 − σ(0.75 − (−0.5)) = 1 − σ(1.25) = 0.2227001; mean = 0.3924383.
    λ_D = 2: (2·0.5621765 + 0.2227001)/2 = 0.6735266."""
    args = (KTO_POLICY, KTO_REF, KTO_DESIRABLE, t(-3, -3), t(-3.5, -4))
    loss, diag = kto_loss(*args, beta=1.0)
    assert diag.z_ref.item() == pytest.approx(0.75)
    assert loss.item() == pytest.approx(0.3924383, abs=1e-7)
    assert kto_loss(*args, beta=1.0, lambda_d=2.0)[0].item() == pytest.approx(0.6735266, abs=1e-7)


def test_kto_reference_point_uses_mismatched_pairs_detached():
    """z_ref depends on the mismatched inputs only, carries no gradient, and differs from the
    matched-pair shortcut (batch mean of r), which would be a different method."""
    pm = t(-3.0, -3.0).requires_grad_()
    policy = KTO_POLICY.clone().requires_grad_()
    loss, diag = kto_loss(policy, KTO_REF, KTO_DESIRABLE, pm, t(-3.5, -4), beta=1.0)
    loss.backward()
    assert pm.grad is None or torch.all(pm.grad == 0)
    matched = kto_reference_point(KTO_POLICY, KTO_REF)  # mean(r) = 0
    assert matched.item() != pytest.approx(diag.z_ref.item())
    assert mismatched_indices(3).tolist() == [1, 2, 0]
    with pytest.raises(ValueError):
        mismatched_indices(1)
    # a data-parallel mean hook is applied before the clamp
    z = kto_reference_point(t(-3.0), t(-2.0), all_reduce_mean=lambda x: x + 2.0)
    assert z.item() == pytest.approx(1.0)


def test_bradley_terry_hand_values():
    """r_w = [2, 0], r_l = [1, 1]: −log σ(1) = 0.3132617, −log σ(−1) = 1.3132617, mean 0.8132617,
    accuracy 0.5. Weights [3, 1]: (3·0.3132617 + 1.3132617)/4 = 0.5632617."""
    loss, diag = bradley_terry_loss(t(2, 0), t(1, 1))
    assert loss.item() == pytest.approx(0.8132617, abs=1e-7)
    assert diag.accuracy.item() == 0.5
    weighted, _ = bradley_terry_loss(t(2, 0), t(1, 1), weights=t(3, 1))
    assert weighted.item() == pytest.approx(0.5632617, abs=1e-7)
