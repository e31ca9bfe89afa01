"""MPO pieces (losses/mpo.py): hand values, the temperature dual, decoupled KL constraints, and
MPO on the 4-sample bandit (docs/algorithms.md#mpo-estep, docs/results/bandit.md)."""

import math

import pytest
import torch

from anyfeedback.cli import main
from anyfeedback.losses.mpo import (
    check_mpo_epsilon,
    decoupled_kl_lagrangian,
    dual_value,
    estep_weights,
    kl_to_uniform,
    solve_temperature,
    temperature_dual,
    weighted_nll,
)

D64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: threads only add overhead


def test_estep_hand_values():
    """Q = (0, 1), η = 1/ln 2: Q/η = (0, ln 2), softmax = (1/3, 2/3);
    KL(q‖uniform) = ⅓ ln(2/3) + ⅔ ln(4/3) = −0.1351550 + 0.1917880 = 0.0566330;
    g'(η) = ε − KL = 0.1 − 0.0566330 = 0.0433670 for ε = 0.1."""
    q = torch.tensor([[0.0], [1.0]], dtype=D64)  # [N=2, B=1]
    eta = torch.tensor(1 / math.log(2), dtype=D64, requires_grad=True)
    w = estep_weights(q, eta)
    assert w[:, 0].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert kl_to_uniform(w).item() == pytest.approx(0.0566330, abs=1e-6)
    temperature_dual(q, eta, 0.1).backward()
    assert eta.grad.item() == pytest.approx(0.0433670, abs=1e-6)
    # weighted NLL: −Σ q log π with log π = (−1, −2): ⅓ + ⁴⁄₃ = 5/3
    logps = torch.tensor([[-1.0], [-2.0]], dtype=D64)
    assert weighted_nll(w, logps).item() == pytest.approx(5 / 3)


def test_dual_converges_to_kl_equal_epsilon():
    """Adam on g(η) (η = softplus(raw) + 1e-8, Acme) drives mean_i KL(q_i‖uniform) to ε; the
    exact bisection solve agrees and is scale-free (Q × 1e-10 gives η × 1e-10)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 8, generator=g, dtype=D64) * 3  # [N=4, B=8]
    eps = 0.3
    raw = torch.tensor(1.0, dtype=D64, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.05)
    for _ in range(2000):
        opt.zero_grad()
        temperature_dual(q, dual_value(raw), eps).backward()
        opt.step()
    kl = kl_to_uniform(estep_weights(q, dual_value(raw))).item()
    assert kl == pytest.approx(eps, rel=0.02)
    eta = solve_temperature(q, eps)
    assert kl_to_uniform(estep_weights(q, eta)).item() == pytest.approx(eps, rel=1e-6)
    assert dual_value(raw).item() == pytest.approx(eta.item(), rel=0.05)
    tiny = solve_temperature(q * 1e-10, eps)
    assert tiny.item() == pytest.approx(eta.item() * 1e-10, rel=1e-6)


def test_decoupled_lagrangian_hand_values():
    """KL_μ = 0.2, KL_Σ = 0.1, α_μ = 2, α_Σ = 3, ε_μ = 0.1, ε_Σ = 0.05:
    L_π = 2·0.2 + 3·0.1 = 0.7; L_α = 2(0.1 − 0.2) + 3(0.05 − 0.1) = −0.35;
    ∂L_α/∂α_μ = ε_μ − KL_μ = −0.1 < 0, so descent raises α_μ while the constraint is violated."""
    kl_mu = torch.tensor(0.2, requires_grad=True)
    a_mu = torch.tensor(2.0, requires_grad=True)
    penalty, dual = decoupled_kl_lagrangian(
        kl_mu, torch.tensor(0.1), a_mu, torch.tensor(3.0), epsilon_mean=0.1, epsilon_std=0.05
    )
    assert penalty.item() == pytest.approx(0.7)
    assert dual.item() == pytest.approx(-0.35)
    (penalty + dual).backward()
    assert a_mu.grad.item() == pytest.approx(-0.1)  # only through L_α
    assert kl_mu.grad.item() == pytest.approx(2.0)  # only through L_π (α detached)


def test_epsilon_at_or_above_log_n_is_rejected(capsys):
    """KL(q‖uniform) ≤ log N, so ε ≥ log N never binds: rejected by the loss core, and by the
    CLI as a one-line error with exit code 2 (log 4 = 1.386 for the 4-sample bandit)."""
    check_mpo_epsilon(1.38, 4)
    for eps in (math.log(4), 1.5, 0.0):
        with pytest.raises(ValueError, match="log N"):
            check_mpo_epsilon(eps, 4)
    with pytest.raises(ValueError):
        solve_temperature(torch.zeros(4, 1), 2.0)
    code = main(
        [
            "bandit",
            "run",
            "--function",
            "sphere",
            "--methods",
            "mpo:epsilon=1.5",
            "--seeds",
            "1",
            "--evals",
            "40",
            "--out",
            "unused",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "log N" in err[0]


def test_mpo_with_four_samples_improves_sphere_and_holds_its_kls():
    """MPO on the bandit (N = 4, Q = −f, Sphere d = 5, 2 seeds, 2,000 evaluations):
    f(μ) drops by > 100×; the E-step hits KL(q‖uniform) = ε = 0.5 (exact dual solve); after the
    duals settle, the realised decoupled KLs per iteration sit near ε_μ = 0.02 and ε_Σ = 0.01
    (EMA of KL/ε within [0.7, 1.4])."""
    from anyfeedback.bandit.config import BanditConfig
    from anyfeedback.bandit.run import run_bandit

    cfg = BanditConfig(
        functions=("sphere",), dim=5, methods=("mpo",), seeds=2, evals=2000, workers=0
    )
    res = run_bandit(cfg, show_progress=False)
    for run in res["runs"]:
        diag = run["diagnostics"]
        assert not run["diverged"]
        assert run["final_f_mean"] < run["curve"]["f_mean"][0] / 100
        assert diag["kl_q_uniform"] == pytest.approx(0.5, rel=1e-3)
        assert 0.7 < diag["kl_mean_over_eps"] < 1.4
        assert 0.7 < diag["kl_cov_over_eps"] < 1.4
