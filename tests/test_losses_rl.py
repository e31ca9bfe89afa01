"""RLOO (docs/algorithms.md#rloo): leave-one-out advantages and the loss, by hand; on a categorical
bandit the expected RLOO gradient is the exact gradient of −E_π r + β·KL(π‖π_ref)."""

import pytest
import torch

from anyfeedback.losses import rloo_advantages, rloo_loss


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_rloo_advantages_by_hand():
    """Group (1, 2, 6): baselines (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5 → A = (−3, −1.5, 4.5);
    a second group (0, 0, 3) → (−1.5, −1.5, 3)."""
    a = rloo_advantages(t(1, 2, 6, 0, 0, 3), 3)
    assert torch.allclose(a, t(-3, -1.5, 4.5, -1.5, -1.5, 3))
    with pytest.raises(ValueError):
        rloo_advantages(t(1.0), 1)


def test_rloo_loss_by_hand():
    """K = 2, r = (1, 0), kl = (2, 0), β = 0.5: R = (0, 0) → A = 0, loss 0; with β = 0:
    R = (1, 0), A = (1, −1), loss = −mean(1·ℓ_1 − 1·ℓ_2) = −(−1 + 3)/2 = −1 for ℓ = (−1, −3)."""
    logps = t(-1, -3).requires_grad_()
    loss, d = rloo_loss(logps, t(1, 0), t(2, 0), k=2, beta=0.5)
    assert loss.item() == 0.0 and d.penalised_reward.item() == 0.0
    loss, d = rloo_loss(logps, t(1, 0), t(2, 0), k=2, beta=0.0)
    assert loss.item() == pytest.approx(-1.0)
    loss.backward()
    assert torch.allclose(logps.grad, t(-0.5, 0.5))  # −A/n


def test_expected_rloo_gradient_is_the_kl_regularised_gradient():
    """Categorical π_θ = softmax(θ) over 3 outputs, K = 2 samples. Enumerating all K-tuples with
    their probabilities gives E[∇L] exactly; it equals ∇_θ[−E_π r + β·KL(π‖π_ref)] (the sampled
    log-ratio log π/π_ref as the per-sample KL, on-policy), to 1e-12."""
    theta = t(0.3, -0.2, 0.5).requires_grad_()
    ref, r, beta, k = t(0.5, 0.3, 0.2), t(1.0, -0.5, 2.0), 0.7, 2
    logp = torch.log_softmax(theta, 0)
    p = logp.exp().detach()
    kl_sample = (logp - ref.log()).detach()
    grad = torch.zeros(3, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            idx = torch.tensor([i, j])
            loss, _ = rloo_loss(logp[idx], r[idx], kl_sample[idx], k=k, beta=beta)
            (g,) = torch.autograd.grad(loss, theta, retain_graph=True)
            grad += p[i] * p[j] * g
    theta2 = theta.detach().clone().requires_grad_()
    pi = torch.softmax(theta2, 0)
    objective = -(pi * r).sum() + beta * (pi * (pi.log() - ref.log())).sum()
    (exact,) = torch.autograd.grad(objective, theta2)
    assert torch.allclose(grad, exact / 1.0, atol=1e-12)
