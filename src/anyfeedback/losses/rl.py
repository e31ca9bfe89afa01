"""RLOO: REINFORCE with a leave-one-out baseline and a KL penalty to π_ref (Ahmadian et al.
2024, arXiv 2402.14740; docs/algorithms.md#rloo), the policy step of RLHF and of AIHF's Algorithm 1.

Shapes: G prompts × K samples each, flat prompt-major [G·K] (index g·K + j); inputs
  logps      ℓ_θ(x, y) = Σ_t log π_θ(y_t | x, y_<t) of each sample, with grad
  rewards    r_φ(x, y), no grad
  kl         `rloo_loss`: Σ_t [log π_old(y_t|·) − log π_ref(y_t|·)] on the sampled tokens, no grad;
             `rloo_dense_kl_loss`: Σ_t KL(π_θ(·|x,y_<t) ‖ π_ref(·|x,y_<t)), dense over the
             vocabulary along each sample, with grad (docs/algorithms.md#rloo)
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class RLOODiagnostics(NamedTuple):
    reward: torch.Tensor
    kl: torch.Tensor
    penalised_reward: torch.Tensor
    advantage_abs: torch.Tensor


def rloo_advantages(returns: torch.Tensor, k: int) -> torch.Tensor:
    """A_i = R_i − mean_{j≠i} R_j within each group of K = (K/(K−1))·(R_i − mean_group R). [G·K]"""
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {k}")
    grouped = returns.reshape(-1, k)  # [G, K]
    others = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - others).reshape(-1)


def rloo_loss(
    logps: torch.Tensor,
    rewards: torch.Tensor,
    kl: torch.Tensor,
    *,
    k: int,
    beta: float,
) -> tuple[torch.Tensor, RLOODiagnostics]:
    """L = −mean_i A_i·ℓ_θ(x, y_i), with R_i = r_i − β·kl_i and A_i the leave-one-out advantage
    (`rloo_advantages`), A detached. On-policy (π_old = π_θ at sampling), E[∇L] is the exact
    gradient of −E_{y∼π}[r] + β·KL(π‖π_ref): the sampled-token log-ratio is the per-sample
    KL estimate whose score-function gradient is ∇KL (the ratio u_t = 1, so no clipping)."""
    returns = (rewards - beta * kl).detach()
    adv = rloo_advantages(returns, k)
    loss = -(adv * logps).mean()
    return loss, RLOODiagnostics(
        reward=rewards.detach().mean(),
        kl=kl.detach().mean(),
        penalised_reward=returns.mean(),
        advantage_abs=adv.abs().mean(),
    )


def rloo_dense_kl_loss(
    logps: torch.Tensor,
    rewards: torch.Tensor,
    kl: torch.Tensor,
    *,
    k: int,
    beta: float,
) -> tuple[torch.Tensor, RLOODiagnostics]:
    """L = −mean_i A_i·ℓ_θ(x, y_i) + β·mean_i KL_i, R_i = r_i − β·sg(KL_i), A = leave-one-out(R),
    KL_i = Σ_t KL(π_θ(·|s_t) ‖ π_ref(·|s_t)) the exact per-token reverse KL along sample i
    (s_t = (x, y_<t)), differentiable (docs/algorithms.md#rloo).

    Why KL appears twice: ∇_θ E_y[Σ_t KL(s_t)] = E[Σ_t ∇KL(s_t)] (the direct term, β·mean KL_i)
    + E[∇ℓ_θ(y)·Σ_t KL(s_t)] (which states are reached: the score-function term through R).
    On-policy, E[∇L] is the exact gradient of −E_y[r] + β·E_y Σ_t KL(π_θ‖π_ref)(s_t), without
    the variance of the sampled log-ratio (tests/test_losses_rl.py enumerates a two-token case)."""
    returns = (rewards - beta * kl).detach()
    adv = rloo_advantages(returns, k)
    loss = -(adv * logps).mean() + beta * kl.mean()
    return loss, RLOODiagnostics(
        reward=rewards.detach().mean(),
        kl=kl.detach().mean(),
        penalised_reward=returns.mean(),
        advantage_abs=adv.abs().mean(),
    )
