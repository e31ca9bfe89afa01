"""Ensemble networks: the batched scoring call equals the plain forward, members are independent."""

import torch

from anyfeedback.control.nets import GaussianPolicy, TwinCritic


def _gens(n):
    return [torch.Generator().manual_seed(i) for i in range(n)]


def test_score_equals_head0_forward():
    """score(obs, N actions) = critic(obs, a_j)[head 0] for every j (split first layer)."""
    critic = TwinCritic(5, 2, 32, _gens(3))
    obs, act = torch.randn(3, 7, 5), torch.randn(3, 4, 7, 2)  # [E, B, do], [E, N, B, D]
    ref = torch.stack([critic(obs, act[:, j])[0] for j in range(4)], 1)  # [E, N, B]
    assert torch.allclose(critic.score(obs, act), ref, atol=1e-6)


def test_member_init_depends_only_on_its_seed_and_members_are_independent():
    """Member e of an ensemble starts with the weights of a one-member run with the same seed,
    and a loss on member 0 gives member 1 no gradient."""
    small, big = GaussianPolicy(5, 2, 16, _gens(1)), GaussianPolicy(5, 2, 16, _gens(2))
    for p_small, p_big in zip(small.parameters(), big.parameters(), strict=True):
        assert torch.equal(p_small[0], p_big[0])
    mean, std = big(torch.randn(2, 3, 5))
    (mean[0].sum() + std[0].sum()).backward()
    assert all(p.grad[1].abs().max() == 0 for p in big.parameters())
    assert torch.allclose(std, torch.full_like(std, 0.5), atol=0.02)  # initial std ≈ init_std
