"""RLOO with the dense per-token KL(π_θ‖π_ref) as a differentiable term: by hand, and its
expected gradient on an enumerable two-token policy equals the exact gradient of
−E r + β·E Σ_t KL(π_θ‖π_ref)(s_t)."""

import itertools

import pytest
import torch

from anyfeedback.losses import rloo_dense_kl_loss


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_rloo_dense_kl_loss_by_hand():
    """K = 2, r = (1, 0), KL = (2, 0), β = 0.5: R = r − β·KL = (0, 0) → A = 0, so
    L = 0 + β·mean KL = 0.5·1 = 0.5; ∂L/∂KL_i = β/2 = 0.25, ∂L/∂ℓ_i = −A_i/2 = 0.
    β = 0: R = (1, 0), A = (1, −1), L = −(1·(−1) − 1·(−3))/2 = −1 for ℓ = (−1, −3)."""
    logps, kl = t(-1, -3).requires_grad_(), t(2, 0).requires_grad_()
    loss, d = rloo_dense_kl_loss(logps, t(1, 0), kl, k=2, beta=0.5)
    assert loss.item() == pytest.approx(0.5)
    assert d.penalised_reward.item() == 0.0 and d.kl.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.allclose(kl.grad, t(0.25, 0.25)) and torch.allclose(logps.grad, t(0, 0))
    loss, _ = rloo_dense_kl_loss(logps.detach(), t(1, 0), kl.detach(), k=2, beta=0.0)
    assert loss.item() == pytest.approx(-1.0)


def test_expected_gradient_is_exact_on_a_two_token_policy():
    """Tokens y1, y2 ∈ {0, 1, 2}; π_θ(y1) = softmax(a), π_θ(y2|y1) = softmax(B[y1]); π_ref fixed.
    KL along a sample = KL(π(·)‖ref(·)) + KL(π(·|y1)‖ref(·|y1)): its second term depends on the
    sampled y1, so only the return term (R = r − β·sg KL) carries how y1 changes later KLs.
    Enumerating every K = 2 tuple (81) gives E[∇L], equal to the exact gradient to 1e-12; without
    the KL in the return it is not."""
    g = torch.Generator().manual_seed(0)
    a0 = torch.randn(3, generator=g, dtype=torch.float64)
    b0 = torch.randn(3, 3, generator=g, dtype=torch.float64)
    ref1 = torch.softmax(torch.randn(3, generator=g, dtype=torch.float64), 0)
    ref2 = torch.softmax(torch.randn(3, 3, generator=g, dtype=torch.float64), 1)
    r = torch.randn(3, 3, generator=g, dtype=torch.float64)
    beta, k = 0.7, 2

    def expected_grad(kl_in_return: bool):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        l1, l2 = torch.log_softmax(a, 0), torch.log_softmax(b, 1)
        kl1 = (l1.exp() * (l1 - ref1.log())).sum()
        kl2 = (l2.exp() * (l2 - ref2.log())).sum(1)  # [3] per first token
        p = (l1[:, None] + l2).exp().detach()  # [3, 3] sequence probabilities
        total = 0.0
        for ys in itertools.product(range(3), range(3), repeat=k):
            pairs = list(zip(ys[0::2], ys[1::2], strict=True))
            logps = torch.stack([l1[y1] + l2[y1, y2] for y1, y2 in pairs])
            kl = torch.stack([kl1 + kl2[y1] for y1, _ in pairs])
            rewards = torch.stack([r[y1, y2] for y1, y2 in pairs])
            if not kl_in_return:
                rewards = rewards + beta * kl.detach()  # cancels the KL inside R
            loss, _ = rloo_dense_kl_loss(logps, rewards, kl, k=k, beta=beta)
            weight = torch.stack([p[y1, y2] for y1, y2 in pairs]).prod()
            total = total + weight * loss
        return torch.autograd.grad(total, (a, b))

    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    l1, l2 = torch.log_softmax(a, 0), torch.log_softmax(b, 1)
    p = (l1[:, None] + l2).exp()
    kl1 = (l1.exp() * (l1 - ref1.log())).sum()
    kl2 = (l2.exp() * (l2 - ref2.log())).sum(1)
    objective = -(p * r).sum() + beta * (kl1 + (l1.exp() * kl2).sum())
    exact = torch.autograd.grad(objective, (a, b))
    for got, want in zip(expected_grad(True), exact, strict=True):
        assert torch.allclose(got, want, atol=1e-12)
    assert not torch.allclose(expected_grad(False)[0], exact[0], atol=1e-6)
