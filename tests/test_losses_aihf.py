"""AIHF demonstration terms, their special cases and the tabular ML-IRL gradient identity."""

import pytest
import torch

from anyfeedback.losses import (
    aihf_demo_irl_linear,
    aihf_demo_irl_logistic,
    aihf_dpo_loss,
    aihf_reward_loss,
    bradley_terry_loss,
    dpo_loss,
    self_play_aihf_loss,
    sft_loss,
    spin_loss,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def rand(n, seed):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_irl_linear_and_logistic_hand_values():
    """r(y^E) = [1, 3], r(y^A) = [0, 1], β = 2: linear = −mean(1, 2)/2 = −0.75.
    logistic = mean(−log σ(1), −log σ(2)) = (0.3132617 + 0.1269280)/2 = 0.2200948."""
    assert aihf_demo_irl_linear(t(1, 3), t(0, 1), beta=2.0).item() == pytest.approx(-0.75)
    assert aihf_demo_irl_logistic(t(1, 3), t(0, 1)).item() == pytest.approx(0.2200948, abs=1e-7)


def test_reward_loss_weighting_and_special_cases():
    """w_D = 2, w_P = 0.5, linear demo term −0.75 (β=2), BT on r_w=[2,0], r_l=[1,1] = 0.8132617:
    L = 2·(−0.75) + 0.5·0.8132617 = −1.0933691. w_D = 0 → plain BT (RLHF's RM);
    w_P = 0 → plain ML-IRL."""
    args = (t(1, 3), t(0, 1), t(2, 0), t(1, 1))
    loss, diag = aihf_reward_loss(*args, demo_weight=2.0, pref_weight=0.5, beta=2.0)
    assert loss.item() == pytest.approx(-1.0933691, abs=1e-7)
    assert diag.demo_term.item() == pytest.approx(-0.75)
    bt = bradley_terry_loss(t(2, 0), t(1, 1))[0].item()
    assert aihf_reward_loss(*args, demo_weight=0.0)[0].item() == pytest.approx(bt, abs=1e-12)
    irl = aihf_reward_loss(*args, pref_weight=0.0, beta=2.0)[0].item()
    assert irl == pytest.approx(-0.75)
    logistic = aihf_reward_loss(*args, pref_weight=0.0, demo_mode="irl_logistic")[0].item()
    assert logistic == pytest.approx(0.2200948, abs=1e-7)
    with pytest.raises(ValueError):
        aihf_reward_loss(*args, demo_mode="bogus")


def test_tabular_irl_gradient_equals_ml_gradient():
    """π_r(y) = π_ref(y)·exp(r(y)/β)/Z. Autograd of w_D·log π_r(y^E) w.r.t. the table r equals
    (w_D/β)(e_{y^E} − π_r) (docs/algorithms.md#aihf-demo), and the linear demo term with the *exact*
    expectation over agent samples has exactly the negated gradient. To 1e-6 (here 1e-12)."""
    pi_ref, beta, w_d, y_e = t(0.2, 0.5, 0.3), 0.7, 1.3, 2
    r = t(0.1, -0.4, 0.9).requires_grad_()
    log_pi = torch.log_softmax(pi_ref.log() + r / beta, 0)
    (w_d * log_pi[y_e]).backward()
    pi = log_pi.detach().exp()
    expected = (w_d / beta) * (torch.nn.functional.one_hot(torch.tensor(y_e), 3) - pi)
    assert torch.allclose(r.grad, expected, atol=1e-12)
    r2 = r.detach().clone().requires_grad_()
    # E_{y^A∼π}[r(y^A)] with π held fixed = the expectation of the one-sample estimator
    loss = w_d * aihf_demo_irl_linear(r2[y_e].reshape(1), (pi * r2).sum().reshape(1), beta=beta)
    loss.backward()
    assert torch.allclose(-r2.grad, expected, atol=1e-12)


def test_aihf_dpo_demo_weight_zero_is_dpo():
    pc, pr, rc, rr, demos = (rand(4, s) for s in range(5))
    loss, _ = aihf_dpo_loss(pc, pr, rc, rr, policy_demos=demos, demo_weight=0.0, beta=0.2)
    assert loss.item() == pytest.approx(dpo_loss(pc, pr, rc, rr, beta=0.2)[0].item(), abs=1e-12)


def test_aihf_dpo_nll_pref_weight_zero_is_sft_and_sum_otherwise():
    """nll mode: L = w_P·DPO + w_D·SFT; w_P = 0 gives sft_loss exactly."""
    pc, pr, rc, rr, demos = (rand(4, s) for s in range(5))
    loss, _ = aihf_dpo_loss(pc, pr, rc, rr, policy_demos=demos, pref_weight=0.0)
    assert loss.item() == pytest.approx(sft_loss(demos)[0].item(), abs=1e-12)
    both, _ = aihf_dpo_loss(pc, pr, rc, rr, policy_demos=demos, demo_weight=0.5, beta=0.1)
    expected = dpo_loss(pc, pr, rc, rr, beta=0.1)[0] + 0.5 * sft_loss(demos)[0]
    assert both.item() == pytest.approx(expected.item(), abs=1e-12)


def test_aihf_dpo_contrastive_is_dpo_on_demo_vs_reference_sample():
    pc, pr, rc, rr, d, s, rd, rs = (rand(3, k) for k in range(8))
    loss, diag = aihf_dpo_loss(
        pc,
        pr,
        rc,
        rr,
        policy_demos=d,
        demo_mode="contrastive",
        ref_demos=rd,
        policy_ref_samples=s,
        ref_ref_samples=rs,
        beta=0.3,
        demo_weight=2.0,
        pref_weight=1.0,
    )
    demo_part = dpo_loss(d, s, rd, rs, beta=0.3)[0]
    assert diag.demo_term.item() == pytest.approx(demo_part.item(), abs=1e-12)
    expected = dpo_loss(pc, pr, rc, rr, beta=0.3)[0] + 2.0 * demo_part
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
    with pytest.raises(ValueError):
        aihf_dpo_loss(pc, pr, rc, rr, policy_demos=d, demo_mode="contrastive")


def test_self_play_aihf_pref_weight_zero_is_spin():
    d, s, od, os_, pc, pr, rc, rr = (rand(3, k) for k in range(8))
    loss, _ = self_play_aihf_loss(d, s, od, os_, pc, pr, rc, rr, beta=0.1, pref_weight=0.0)
    assert loss.item() == pytest.approx(spin_loss(d, s, od, os_, lam=0.1)[0].item(), abs=1e-12)
    loss2, _ = self_play_aihf_loss(d, s, od, os_, beta=0.1)  # no pairs at all
    assert loss2.item() == pytest.approx(loss.item(), abs=1e-12)
    with pytest.raises(ValueError):
        self_play_aihf_loss(None, None, None, None)


def _closed_form_policy(pi_ref, r, beta):
    """The lower level's exact solution π_r = π_ref·exp(r/β)/Z (AIHF paper, arXiv 2406.06874)."""
    return torch.softmax(pi_ref.log() + r / beta, 0)


def _solve(loss_fn, n, steps=3000, lr=0.05):
    r = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([r], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(r).backward()
        opt.step()
    return r.detach()


def test_tabular_bilevel_pref_weight_zero_recovers_the_demonstration_distribution():
    """w_P = 0: the reward step with the exact expectation E_{π_r}[r] (π_r the closed-form lower
    level, held fixed inside each step as the sampled y^A is) drives π_r to the demonstrations'
    distribution p_E, which a table can represent exactly: ML-IRL (docs/algorithms.md#aihf)."""
    pi_ref, beta = t(0.4, 0.3, 0.2, 0.1), 0.5
    p_demo = t(0.1, 0.2, 0.3, 0.4)

    def loss(r):
        pi = _closed_form_policy(pi_ref, r, beta).detach()
        return aihf_reward_loss(
            (p_demo * r).sum().reshape(1),
            (pi * r).sum().reshape(1),
            None,
            None,
            pref_weight=0.0,
            beta=beta,
        )[0]

    r = _solve(loss, 4)
    assert torch.allclose(_closed_form_policy(pi_ref, r, beta), p_demo, atol=1e-6)


def test_tabular_bilevel_demo_weight_zero_is_the_bt_mle_then_kl_rl_optimum():
    """w_D = 0: with demonstrations present but weighted 0, the reward step is the Bradley–Terry
    MLE on the pairs (the same r as minimising `bradley_terry_loss` alone, up to a constant), and
    the policy is the KL-regularised RL optimum for it: ∇_logits[E_π r − β·KL(π‖π_ref)] = 0."""
    pi_ref, beta = t(0.25, 0.25, 0.5), 0.3
    chosen, rejected = torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([1, 1, 2, 2, 0, 0])
    demo_idx = torch.tensor([2, 2])

    def aihf(r):
        pi = _closed_form_policy(pi_ref, r, beta).detach()
        return aihf_reward_loss(
            r[demo_idx],
            (pi * r).sum().expand(2),
            r[chosen],
            r[rejected],
            demo_weight=0.0,
            beta=beta,
        )[0]

    r_aihf = _solve(aihf, 3)
    r_bt = _solve(lambda r: bradley_terry_loss(r[chosen], r[rejected])[0], 3, lr=0.1)
    assert torch.allclose(r_aihf - r_aihf.mean(), r_bt - r_bt.mean(), atol=1e-6)
    pi = _closed_form_policy(pi_ref, r_aihf, beta)
    logits = pi.log().clone().requires_grad_()
    q = torch.softmax(logits, 0)
    objective = (q * r_aihf).sum() - beta * (q * (q.log() - pi_ref.log())).sum()
    (g,) = torch.autograd.grad(objective, logits)
    assert g.abs().max() < 1e-12
