"""Soft actor-critic's policy-improvement step (Haarnoja et al. 2018, arXiv 1812.05905), on the
same ensemble actor-critic as PMPO/MPO: a reusable entropy-regularised inner loop.

Shapes: E members, B states, D action dims; q [2, E, B] from `TwinCritic`.
  policy: u = μ + σ·ξ, a = tanh(u);  log π(a|s) = Σ_d [log N(u_d; μ_d, σ_d) − log(1 − a_d² + 1e-6)]
  actor:        L_π = mean_B( sg(α_ent)·log π(a|s) − min_h Q_h(s, a) )          (SAC Eq. 12)
  temperature:  L_α = −mean_B( log α_ent · sg(log π(a|s) + H_target) ),  H_target = −D (Eq. 18)
  bootstrap:    V(s') = min_h Q̄_h(s', a') − α_ent·log π(a'|s'),  a' ~ π_θ(·|s')       (Eq. 3)
"""

from __future__ import annotations

import torch

from anyfeedback.policies.gaussian import standard_diagonal_log_prob


def tanh_gaussian_sample(
    mean: torch.Tensor, std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised tanh-Gaussian sample. mean, std, noise [E, B, D] -> (a [E, B, D], logp [E, B])."""
    u = mean + std * noise
    a = torch.tanh(u)
    logp_u = standard_diagonal_log_prob(noise, std)  # log N(u; μ, σ), z = noise
    return a, logp_u - torch.log(1 - a.pow(2) + 1e-6).sum(-1)


def sac_actor_loss(logp: torch.Tensor, q: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """L_π per member: logp [E, B], q [E, B] (min over heads), log_alpha [E] -> [E]."""
    return (log_alpha.detach().exp()[:, None] * logp - q).mean(-1)


def sac_temperature_loss(
    logp: torch.Tensor, log_alpha: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """L_α per member: −log α · sg(log π + H_target), averaged over states. -> [E]."""
    return -(log_alpha[:, None] * (logp.detach() + target_entropy)).mean(-1)


def sac_improvement(obs, policy, critic, log_alpha, noise, target_entropy):
    """One SAC policy step's losses. obs [E, B, do], noise [E, B, D]. The critic's parameters are
    frozen for this call so only the actor (through the action) receives gradients.
    Returns (actor loss summed over members, temperature loss summed, metrics)."""
    mean, std = policy(obs)
    a, logp = tanh_gaussian_sample(mean, std, noise)
    params = list(critic.parameters())
    for p in params:
        p.requires_grad_(False)
    try:
        q = critic(obs, a).min(0).values  # [E, B]
    finally:
        for p in params:
            p.requires_grad_(True)
    actor = sac_actor_loss(logp, q, log_alpha)
    temp = sac_temperature_loss(logp, log_alpha, target_entropy)
    metrics = {
        "std": std.detach().mean((1, 2)),
        "entropy_alpha": log_alpha.detach().exp(),
        "logp": logp.detach().mean(-1),
    }
    return actor.sum(), temp.sum(), metrics


@torch.no_grad()
def sac_bootstrap(next_obs, policy, target_critic, log_alpha, noise) -> torch.Tensor:
    """V(s') = min_h Q̄_h(s', a') − α_ent·log π(a'|s'), a' ~ π_θ. next_obs [E, B, do] -> [E, B]."""
    mean, std = policy(next_obs)
    a, logp = tanh_gaussian_sample(mean, std, noise)
    return target_critic(next_obs, a).min(0).values - log_alpha.exp()[:, None] * logp
