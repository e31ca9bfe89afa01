"""Ensemble networks: the batched scoring call equals the plain forward, members are independent."""

import torch

from anyfeedback.control.improve import top_half_labels
from anyfeedback.control.nets import EnsembleGaussianActor, TwinCritic


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
    small, big = (
        EnsembleGaussianActor(5, 2, 16, _gens(1)),
        EnsembleGaussianActor(5, 2, 16, _gens(2)),
    )
    for p_small, p_big in zip(small.parameters(), big.parameters(), strict=True):
        assert torch.equal(p_small[0], p_big[0])
    mean, std = big(torch.randn(2, 3, 5))
    (mean[0].sum() + std[0].sum()).backward()
    assert all(p.grad[1].abs().max() == 0 for p in big.parameters())
    assert torch.allclose(std, torch.full_like(std, 0.5), atol=0.02)  # initial std ≈ init_std


def test_bf16_scoring_is_close_and_keeps_almost_all_labels():
    """bf16 scoring (inputs, weights and the layer's output rounded to 8 mantissa bits) stays within
    1% of fp32 in Q and flips few top/bottom-half labels; bf16x2 (split activations) is closer.
    Synthetic critic (width 256 as trained) with a Q spread across the N actions of a state."""
    g = _gens(1)
    critic = TwinCritic(5, 1, 256, g)
    with torch.no_grad():
        critic.net.weights[0][:, 5:] *= 20  # actions matter: spread of Q across samples
    obs = torch.randn(1, 64, 5, generator=g[0])
    act = torch.rand(1, 20, 64, 1, generator=g[0]) * 2 - 1
    q = critic.score(obs, act, "fp32")
    acc = top_half_labels(q[0])[0]
    errors = {}
    for precision in ("bf16", "bf16x2"):
        q16 = critic.score(obs, act, precision)
        scale = q.abs().max()
        errors[precision] = (q16 - q).abs().max() / scale
        assert errors[precision] < 1e-2
        assert (top_half_labels(q16[0])[0] != acc).float().mean() < 0.05
    assert errors["bf16x2"] < errors["bf16"]


def test_tanh_mean_is_bounded():
    """policy_mean tanh: |μ| < 1 however large the network output (the clipped-sample dead zone)."""
    policy = EnsembleGaussianActor(3, 2, 16, _gens(1), tanh_mean=True)
    with torch.no_grad():
        policy.net.weights[-1].mul_(1e4)
    mean, _ = policy(torch.randn(1, 50, 3))
    assert mean.abs().max() <= 1 and mean.abs().max() > 0.99
