"""Policy-improvement steps for the control actor-critic: PMPO (arXiv 2410.04166 §4) and MPO.

Both receive the same sampled batch (`Samples`): N actions per replay state drawn from the target
policy π_ref, scored by the critic in one batched call. They differ only in how the scores become
a policy loss; the learner picks one from `METHODS` by name (no string switch in the maths).

Shapes: G members in this method's group, N sampled actions, B states, D action dims.
  actions   [G, N, B, D]  a_ij ~ π_ref(·|s_i), unsquashed
  q         [G, N, B]     Q(s_i, clip(a_ij)), no gradient
  mean, std [G, B, D]     online policy π_θ;  ref_mean, ref_std [G, B, D] target policy π_ref

PMPO's covariance (the std-collapse fix, docs/algorithms.md#pmpo and docs/results/control.md). With
one β on the full-Gaussian KL, the top/bottom-half labels shrink σ at every reference refresh: the
accepted half of N Gaussian samples has less spread than π_ref along ∇_a Q (variance ×(1 − 2/π) ≈
0.36 in 1-D for a linear Q), and the rejected term −(1−α)·ℓ(rejected) pushes density off the tails.
The per-component version of the closed-form M-step (docs/algorithms.md#pmpo) says the same: with μ
fixed at μ_ref, the covariance part of J has maximiser
Σ* = [Σᵢwᵢ(yᵢ−μ_r)(yᵢ−μ_r)ᵀ + β_Σ·Σ_r]/(Σᵢwᵢ + β_Σ), bounded and close to Σ_r only when β_Σ is
large compared with the label weights. So
`cov="decoupled"` (default) splits the objective as MPO does: the mean is fitted with π_μ = N(μ_θ,
Σ_ref) under the paper's β·KL_μ, and the covariance with π_Σ = N(μ_ref, Σ_θ) under a per-dimension
Lagrange multiplier β_Σ (a dual, like MPO's α_Σ) holding KL_Σ ≤ ε_Σ per refresh. `cov="joint"` is
the literal single-β objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from anyfeedback.control import mpo_step
from anyfeedback.losses.pmpo import pmpo_loss
from anyfeedback.policies.gaussian import GaussianPolicy


class Samples(NamedTuple):
    actions: torch.Tensor
    q: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    ref_mean: torch.Tensor
    ref_std: torch.Tensor


@dataclass(frozen=True)
class MemberHParams:
    """Per-member hyper-parameters of a policy-improvement step."""

    alpha: float = 0.5  # PMPO α (weight of accepted vs rejected)
    beta: float = 0.5  # PMPO β on KL_μ (decoupled) or on the full KL (joint)
    labels: str = "top_half"  # "top_half" | "advantage"
    cov: str = "decoupled"  # "decoupled" | "joint"


@dataclass(frozen=True)
class ImproveConfig:
    """Constants shared by every member (MPO's defaults, docs/algorithms.md#mpo-mstep)."""

    epsilon: float = 0.1  # MPO E-step KL(q‖uniform) bound ε (< log N)
    epsilon_mean: float = 1e-3  # KL_μ bound per action dim (MPO)
    epsilon_std: float = 1e-6  # KL_Σ bound per action dim (MPO, and PMPO's decoupled β_Σ)


def top_half_labels(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept the best ⌊N/2⌋ of the N samples of each state, reject the worst ⌊N/2⌋.
    q [..., N, B] -> (accepted, rejected) boolean masks [..., N, B]."""
    n = q.shape[-2]
    k = n // 2
    ranks = q.argsort(dim=-2).argsort(dim=-2)  # 0 = worst
    return ranks >= n - k, ranks < k


def advantage_labels(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept A > 0, reject A < 0, with A_ij = Q_ij − mean_j Q_ij (V(s) ≈ E_{π_ref} Q)."""
    adv = q - q.mean(dim=-2, keepdim=True)
    return adv > 0, adv < 0


def out_of_bounds_penalty(
    q: torch.Tensor, actions: torch.Tensor, clipped: torch.Tensor, kappa: float
) -> torch.Tensor:
    """Q − κ·spread·‖u − clip(u)‖ with spread = max_j Q − min_j Q per state: samples beyond the
    action bounds all score as the bound (ties); this ranks the far ones lower, scale-free (the
    MO-MPO action penalty's role in Acme). Where all N samples clip to the same bound the spread
    is 0; the scale is floored at 1% of the state's mean |Q| (+1) so that such all-tied states are
    still ranked (nearest the box first) — with a small κ this is a pure tie-breaker.
    q [..., N, B], actions/clipped [..., N, B, D]."""
    spread = q.amax(-2, keepdim=True) - q.amin(-2, keepdim=True)  # [..., 1, B]
    floor = 1e-2 * (q.abs().mean(-2, keepdim=True) + 1.0)
    return q - kappa * torch.maximum(spread, floor) * (actions - clipped).norm(dim=-1)


LABELS: dict[str, Callable] = {"top_half": top_half_labels, "advantage": advantage_labels}


class DecoupledViews(NamedTuple):
    """π_θ, π_ref and MPO's decoupled views of π_θ, as diagonal `GaussianPolicy`s [G, B, D]."""

    policy: GaussianPolicy  # π_θ = N(μ_θ, σ_θ)
    ref: GaussianPolicy  # π_ref = N(μ_ref, σ_ref)
    mean_only: GaussianPolicy  # π_μ = N(μ_θ, σ_ref): the mean's fit
    cov_only: GaussianPolicy  # π_Σ = N(μ_ref, σ_θ): the covariance's fit


def decoupled_views(s: Samples) -> DecoupledViews:
    policy, ref = GaussianPolicy(s.mean, s.std), GaussianPolicy(s.ref_mean, s.ref_std)
    return DecoupledViews(policy, ref, policy.with_scale_of(ref), policy.with_mean_of(ref))


def decoupled_kls(v: DecoupledViews) -> tuple[torch.Tensor, torch.Tensor]:
    """KL_μ = KL(π_ref ‖ π_μ), KL_Σ = KL(π_ref ‖ π_Σ), per dim [G, B, D]."""
    return v.mean_only.kl_per_dim_from(v.ref), v.cov_only.kl_per_dim_from(v.ref)


def pmpo_improvement(
    s: Samples, duals: dict[str, torch.Tensor], hps: list[MemberHParams], cfg: ImproveConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """PMPO policy loss (Eq. 10 via `pmpo_loss`) for each member, summed; plus the β_Σ dual loss.
    duals: {"beta_std": [G, D]} = β_Σ (decoupled members use it; joint members ignore it)."""
    v = decoupled_views(s)
    kl_mean, kl_std = decoupled_kls(v)  # [G, B, D]
    logps_mu = v.mean_only.diagonal_log_prob(s.actions, sample_dim=-3)  # π_μ   [G, N, B]
    logps_cov = v.cov_only.diagonal_log_prob(s.actions, sample_dim=-3)  # π_Σ   [G, N, B]
    logps_joint = v.policy.diagonal_log_prob(s.actions, sample_dim=-3)  # π_θ   [G, N, B]
    beta_std = duals["beta_std"]  # [G, D]
    losses, logp_acc, logp_rej = [], [], []
    for e, hp in enumerate(hps):
        acc, rej = LABELS[hp.labels](s.q[e])  # [N, B] masks
        if hp.cov == "joint":
            kl = v.policy.select(e).kl_from(v.ref.select(e))  # [B]
            loss, diag = pmpo_loss(
                logps_joint[e][acc], logps_joint[e][rej], kl, alpha=hp.alpha, beta=hp.beta
            )
        else:
            loss, diag = pmpo_loss(
                logps_mu[e][acc], logps_mu[e][rej], kl_mean[e].sum(-1), alpha=hp.alpha, beta=hp.beta
            )
            # covariance part: β_Σ·KL_Σ enters as the KL term with β = 1 (β_Σ is the dual)
            kl_cov = (beta_std[e].detach() * kl_std[e]).sum(-1)  # [B]
            loss_cov, _ = pmpo_loss(
                logps_cov[e][acc], logps_cov[e][rej], kl_cov, alpha=hp.alpha, beta=1.0
            )
            loss = loss + loss_cov
        losses.append(loss)
        logp_acc.append(diag.logp_accepted)
        logp_rej.append(diag.logp_rejected)
    decoupled = torch.tensor([hp.cov == "decoupled" for hp in hps], dtype=beta_std.dtype)
    kl_std_d = kl_std.mean(1).detach()  # [G, D]
    dual_loss = (decoupled[:, None] * beta_std * (cfg.epsilon_std - kl_std_d)).sum()
    metrics = {
        "logp_accepted": torch.stack(logp_acc),
        "logp_rejected": torch.stack(logp_rej),
        "kl_mean": kl_mean.detach().sum(-1).mean(-1),
        "kl_std": kl_std_d.sum(-1),
        "dual_std": beta_std.detach().mean(-1),
    }
    return torch.stack(losses).sum(), dual_loss, metrics


def mpo_improvement(
    s: Samples, duals: dict[str, torch.Tensor], hps: list[MemberHParams], cfg: ImproveConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """MPO: E-step softmax weights with the temperature dual, M-step with decoupled mean/covariance
    KL constraints (docs/algorithms.md#mpo-estep, #mpo-mstep).
    duals: temperature [G], dual_mean [G, D], dual_std [G, D]."""
    eta = duals["temperature"]
    weights = mpo_step.estep_weights(s.q, eta)  # [G, N, B]
    dual_eta = mpo_step.temperature_dual(s.q, eta, cfg.epsilon)  # [G]
    v = decoupled_views(s)
    logps_mu = v.mean_only.diagonal_log_prob(s.actions, sample_dim=-3)  # [G, N, B]
    logps_cov = v.cov_only.diagonal_log_prob(s.actions, sample_dim=-3)
    nll = mpo_step.weighted_nll(weights, logps_mu) + mpo_step.weighted_nll(weights, logps_cov)
    kl_mean, kl_std = decoupled_kls(v)
    kl_mean, kl_std = kl_mean.mean(1), kl_std.mean(1)  # over states -> [G, D]
    penalty, dual_kl = mpo_step.decoupled_kl_lagrangian(
        kl_mean,
        kl_std,
        duals["dual_mean"],
        duals["dual_std"],
        epsilon_mean=cfg.epsilon_mean,
        epsilon_std=cfg.epsilon_std,
    )
    metrics = {
        "kl_mean": kl_mean.detach().sum(-1),
        "kl_std": kl_std.detach().sum(-1),
        "temperature": eta.detach(),
        "kl_q_rel": mpo_step.kl_to_uniform(weights) / cfg.epsilon,
        "dual_std": duals["dual_std"].detach().mean(-1),
    }
    return (nll + penalty).sum(), (dual_eta + dual_kl).sum(), metrics


class Method(NamedTuple):
    """A CLI method name: its improvement step, family and default hyper-parameters."""

    improve: Callable | None  # None for SAC (its step lives in sac.py, it needs the critic)
    family: str  # "mpo" (target-policy samples, clipped Gaussian) | "sac" (tanh Gaussian)
    alpha: float = 0.5
    beta: float = 0.5
    labels: str = "top_half"


# Paper defaults (docs/algorithms.md#pmpo): AR α=0.5 β=0.5 · A α=1 β=0 · R α=0 β=2.
METHODS: dict[str, Method] = {
    "pmpo-ar": Method(pmpo_improvement, "mpo", 0.5, 0.5),
    "pmpo-a": Method(pmpo_improvement, "mpo", 1.0, 0.0),
    "pmpo-r": Method(pmpo_improvement, "mpo", 0.0, 2.0),
    "pmpo": Method(pmpo_improvement, "mpo", 0.5, 0.5),  # α, β from flags
    "mpo": Method(mpo_improvement, "mpo"),
    "sac": Method(None, "sac"),
}
