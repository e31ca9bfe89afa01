"""AIHF: joint reward and policy learning from demonstrations and preferences (arXiv 2406.06874).

Explicit-reward form (Algorithm 1's reward step, docs/algorithms.md#aihf-demo),
inputs [B_D] / [B_P]:
  reward_demos, reward_samples    r(x, y^E) and r(x, y^A), y^A ∼ π_k(·|x) for the *same* prompt
  reward_chosen, reward_rejected  r on the preference pairs
Implicit-reward (direct) forms (docs/algorithms.md#aihf-demo) take sequence log-probs like
`dpo_loss`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch

from anyfeedback.losses.preference import dpo_loss, spin_loss
from anyfeedback.losses.reward import bradley_terry_loss
from anyfeedback.losses.sft import sft_loss

RewardDemoMode = Literal["irl_linear", "irl_logistic"]
DEMO_MODES: tuple[str, ...] = get_args(RewardDemoMode)
DirectDemoMode = Literal["nll", "contrastive"]


class AIHFDiagnostics(NamedTuple):
    """The two terms before weighting (NaN when a term is absent)."""

    demo_term: torch.Tensor
    pref_term: torch.Tensor


def aihf_demo_irl_linear(
    reward_demos: torch.Tensor, reward_samples: torch.Tensor, *, beta: float = 1.0
) -> torch.Tensor:
    """ML-IRL demo term: −(1/β)·mean(r(x, y^E) − r(x, y^A)). Its gradient is the exact
    ∇ log π_θ(y^E|x) = (1/β)(∇r(y^E) − E_π ∇r) with one sample
    (docs/algorithms.md#aihf-demo). Unbounded in r: bound the reward (clamp / weight decay) when
    using it."""
    return -(reward_demos - reward_samples).mean() / beta


def aihf_demo_irl_logistic(
    reward_demos: torch.Tensor, reward_samples: torch.Tensor
) -> torch.Tensor:
    """Logistic demo term: −mean log σ(r(x, y^E) − r(x, y^A)), i.e. demo ≻ sample as one more
    Bradley–Terry pair (docs/algorithms.md#aihf-demo; the authors' LLM code). Same direction, damped
    by 1 − σ."""
    return bradley_terry_loss(reward_demos, reward_samples)[0]


def _combine(demo: torch.Tensor | None, pref: torch.Tensor | None, w_d: float, w_p: float):
    if demo is None and pref is None:
        raise ValueError("AIHF needs demonstrations, preference pairs, or both")
    parts = [w * t for w, t in ((w_d, demo), (w_p, pref)) if t is not None]
    nan = parts[0].new_tensor(float("nan"))
    diag = AIHFDiagnostics(
        demo_term=demo.detach() if demo is not None else nan,
        pref_term=pref.detach() if pref is not None else nan,
    )
    return sum(parts[1:], parts[0]), diag


def aihf_reward_loss(
    reward_demos: torch.Tensor | None,
    reward_samples: torch.Tensor | None,
    reward_chosen: torch.Tensor | None,
    reward_rejected: torch.Tensor | None,
    *,
    demo_weight: float = 1.0,
    pref_weight: float = 1.0,
    demo_mode: RewardDemoMode = "irl_linear",
    beta: float = 1.0,
) -> tuple[torch.Tensor, AIHFDiagnostics]:
    """Reward step of Algorithm 1 (minimised): w_D·D(r) + w_P·BT(r), with
    D = `aihf_demo_irl_linear` (β folded in) or `aihf_demo_irl_logistic`.
    w_D = 0 → the Bradley–Terry RM of RLHF; w_P = 0 → ML-IRL (docs/algorithms.md#aihf)."""
    demo = None
    if reward_demos is not None and reward_demos.numel():
        if demo_mode == "irl_linear":
            demo = aihf_demo_irl_linear(reward_demos, reward_samples, beta=beta)
        elif demo_mode == "irl_logistic":
            demo = aihf_demo_irl_logistic(reward_demos, reward_samples)
        else:
            raise ValueError(f"demo_mode must be 'irl_linear' or 'irl_logistic', got {demo_mode!r}")
    pref = None
    if reward_chosen is not None and reward_chosen.numel():
        pref = bradley_terry_loss(reward_chosen, reward_rejected)[0]
    return _combine(demo, pref, demo_weight, pref_weight)


def aihf_dpo_loss(
    policy_chosen: torch.Tensor | None,
    policy_rejected: torch.Tensor | None,
    ref_chosen: torch.Tensor | None,
    ref_rejected: torch.Tensor | None,
    *,
    policy_demos: torch.Tensor | None = None,
    demo_mode: DirectDemoMode = "nll",
    ref_demos: torch.Tensor | None = None,
    policy_ref_samples: torch.Tensor | None = None,
    ref_ref_samples: torch.Tensor | None = None,
    beta: float = 0.1,
    demo_weight: float = 1.0,
    pref_weight: float = 1.0,
) -> tuple[torch.Tensor, AIHFDiagnostics]:
    """AIHF-DPO (paper Eq. 10, offline): w_P·L_DPO(pairs) + w_D·D, where D is
    - `nll`:         −mean ℓ_θ(x, y^E)   (= `sft_loss`; the loss is DPO + SFT), or
    - `contrastive`: −mean log σ(β·h(x, y^E, y')), y' ∼ π_ref generated once: DPO on
                     (demonstration ≻ reference sample) pairs; needs `ref_demos`,
                     `policy_ref_samples`, `ref_ref_samples`.
    w_D = 0 ≡ `dpo_loss`; w_P = 0 with `nll` ≡ `sft_loss` (docs/algorithms.md#aihf-demo)."""
    pref = None
    if policy_chosen is not None and policy_chosen.numel():
        pref = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta)[0]
    demo = None
    if policy_demos is not None and policy_demos.numel():
        if demo_mode == "nll":
            demo = sft_loss(policy_demos)[0]
        elif demo_mode == "contrastive":
            if ref_demos is None or policy_ref_samples is None or ref_ref_samples is None:
                raise ValueError("contrastive demo term needs ref_demos and the reference samples")
            demo = dpo_loss(
                policy_demos, policy_ref_samples, ref_demos, ref_ref_samples, beta=beta
            )[0]
        else:
            raise ValueError(f"demo_mode must be 'nll' or 'contrastive', got {demo_mode!r}")
    return _combine(demo, pref, demo_weight, pref_weight)


def self_play_aihf_loss(
    policy_demos: torch.Tensor | None,
    policy_samples: torch.Tensor | None,
    opponent_demos: torch.Tensor | None,
    opponent_samples: torch.Tensor | None,
    policy_chosen: torch.Tensor | None = None,
    policy_rejected: torch.Tensor | None = None,
    ref_chosen: torch.Tensor | None = None,
    ref_rejected: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
    demo_weight: float = 1.0,
    pref_weight: float = 1.0,
) -> tuple[torch.Tensor, AIHFDiagnostics]:
    """Self-Play AIHF (paper Eq. 11): w_D·SPIN(demo vs y' ∼ π_t; reference π_t) + w_P·DPO(pairs).

    The pairs' reference is whatever the caller scored them with; the documented default of the
    trainer is π_t (choice, docs/algorithms.md#aihf-demo). w_P = 0 ≡ `spin_loss`."""
    demo = None
    if policy_demos is not None and policy_demos.numel():
        demo, _ = spin_loss(
            policy_demos, policy_samples, opponent_demos, opponent_samples, lam=beta
        )
    pref = None
    if policy_chosen is not None and policy_chosen.numel():
        pref = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta)[0]
    return _combine(demo, pref, demo_weight, pref_weight)
