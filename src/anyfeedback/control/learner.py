"""The learner: one update of E ensemble agents = critic step, policy-improvement step, targets.

Shapes: E members, B batch, N sampled actions, D action dims, do observation dims.
  batch: obs [E, B, do], act [E, B, D], ret [E, B], disc [E, B], next_obs [E, B, do]
  critic:   L_Q = ½ mean_B Σ_h (Q_h(s, a) − y)²,  y = ret + disc · V(s')           (n-step TD)
            V(s') = min_h Q̄_h(s', sq(a')), a' ~ π_ref(·|s')       (PMPO/MPO: target policy)
            V(s') = soft value of sac.py                            (SAC: online policy)
  improve:  a_ij ~ π_ref(·|s_i) [E, N, B, D] scored by Q_0(s_i, sq(a_ij)) in one call -> [E, N, B]
            then METHODS[method].improve per group of members (improve.py); SAC: sac.py.
  targets:  Q̄ ← Polyak(τ) every step; π_ref ← π_θ every `target_period` learner steps.
sq = clip or tanh (`--squash`); the losses and KLs act on the unsquashed a.
Members are summed in every loss, so each gets exactly its own gradient (parameters are disjoint).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass

import torch

from anyfeedback.control import mpo_step, sac
from anyfeedback.control.config import ControlConfig, MemberSpec
from anyfeedback.control.improve import METHODS, ImproveConfig, Samples, out_of_bounds_penalty
from anyfeedback.control.nets import EnsembleGaussianActor, TwinCritic, hard_update_, polyak_

# Cap on PMPO's log β_Σ. Uncapped, the dual reached 1e8 within 13k steps on cartpole-swingup: the
# mean's updates move σ through the shared torso, and holding KL_Σ ≤ 1e-6 against that made the
# covariance term swamp the torso's gradient. Near the Lagrangian equilibrium the penalty's
# gradient β_Σ·√KL_Σ should be O(1), i.e. β_Σ ~ 1/√ε_Σ = 1e3.
LOG_BETA_STD_MAX = math.log(1e3)


@dataclass(frozen=True)
class DualParam:
    """How one Lagrange multiplier is stored: a raw parameter, its value = softplus(raw) + 1e-8
    (Acme's MPO duals) or exp(raw) (`log_space`), the raw clamped to [RAW_DUAL_MIN, raw_max]."""

    value_name: str  # the key the improvement functions read
    init_raw: float
    per_dim: bool  # one per action dimension, else one per member
    log_space: bool = False
    raw_max: float = math.inf

    def value(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.exp() if self.log_space else mpo_step.dual_value(raw)


# Raw name (checkpoint key) -> parametrisation. PMPO's β_Σ lives in log space, capped: the
# covariance fit of top/bottom-half labels needs β_Σ in the hundreds to hold KL_Σ ≤ ε_Σ, and a
# softplus raw moving ~lr per step took > 20k steps to get there (σ collapsed 0.2 -> 0.06
# meanwhile); log space gets there in a few hundred. MPO keeps Acme's softplus duals and initial
# raws.
DUALS = {
    "temperature": DualParam("temperature", 1.0, per_dim=False),
    "dual_mean": DualParam("dual_mean", 1.0, per_dim=True),
    "dual_std": DualParam("dual_std", 10.0, per_dim=True),
    "log_beta_std": DualParam(
        "beta_std", math.log(10.0), per_dim=True, log_space=True, raw_max=LOG_BETA_STD_MAX
    ),
}


def _adam(params, lr: float) -> torch.optim.Adam:
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # fused Adam unavailable on this device/build
        return torch.optim.Adam(params, lr=lr, foreach=True)


class Learner:
    def __init__(self, cfg: ControlConfig, members: list[MemberSpec], obs_dim: int, act_dim: int):
        families = {METHODS[m.method].family for m in members}
        if len(families) != 1:
            raise ValueError("an ensemble cannot mix SAC with PMPO/MPO members")
        self.family = families.pop()
        self.cfg, self.members, self.act_dim = cfg, members, act_dim
        gens = [torch.Generator().manual_seed(m.seed) for m in members]
        e = len(members)
        tanh_mean = self.family == "mpo" and cfg.policy_mean == "tanh"  # SAC squashes the sample
        self.policy = EnsembleGaussianActor(
            obs_dim, act_dim, cfg.hidden, gens, init_std=cfg.init_std, tanh_mean=tanh_mean
        )
        self.critic = TwinCritic(obs_dim, act_dim, cfg.hidden, gens)
        self.target_policy = copy.deepcopy(self.policy).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.duals = {
            name: torch.nn.Parameter(torch.full((e, act_dim) if d.per_dim else (e,), d.init_raw))
            for name, d in DUALS.items()
        }
        self.log_alpha = torch.nn.Parameter(torch.zeros(e))  # SAC temperature
        self.policy_opt = _adam(self.policy.parameters(), cfg.lr_policy)
        self.critic_opt = _adam(self.critic.parameters(), cfg.lr_critic)
        self.dual_opt = _adam(
            [{"params": list(self.duals.values())}, {"params": [self.log_alpha], "lr": 1e-3}],
            cfg.lr_dual,
        )
        self.noise = torch.Generator().manual_seed(10_007 * members[0].seed + e)
        self.improve_cfg = ImproveConfig(cfg.epsilon, cfg.epsilon_mean, cfg.epsilon_std)
        self.groups = []  # (improve fn, slice, [MemberHParams]) for consecutive same-method runs
        start = 0
        for fn, run in itertools.groupby(members, key=lambda m: METHODS[m.method].improve):
            run = list(run)
            self.groups.append((fn, slice(start, start + len(run)), [m.hp for m in run]))
            start += len(run)
        self.steps = 0

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.noise)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """obs [E, K, do] -> executed actions [E, K, D] in [−1, 1]."""
        mean, std = self.policy(obs)
        u = mean if deterministic else mean + std * self._randn(*mean.shape)
        return self.squash(u)

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        """Unsquashed Gaussian sample u -> executed action in [−1, 1] (SAC: always tanh)."""
        if self.family == "sac" or self.cfg.squash == "tanh":
            return torch.tanh(u)
        return u.clamp(-1, 1)

    @torch.no_grad()
    def _bootstrap(self, next_obs: torch.Tensor) -> torch.Tensor:
        e, b, _ = next_obs.shape
        noise = self._randn(e, b, self.act_dim)
        if self.family == "sac":
            return sac.sac_bootstrap(
                next_obs, self.policy, self.target_critic, self.log_alpha, noise
            )
        mean, std = self.target_policy(next_obs)
        a = self.squash(mean + std * noise)
        return self.target_critic(next_obs, a).min(0).values  # [E, B]

    def _critic_step(self, obs, act, ret, disc, next_obs) -> torch.Tensor:
        y = ret + disc * self._bootstrap(next_obs)  # [E, B]
        q = self.critic(obs, act)  # [2, E, B]
        loss = 0.5 * (q - y).pow(2).mean(-1)  # [2, E]
        self.critic_opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.critic_opt.step()
        return loss.detach().sum(0)

    def _improve_losses(self, obs: torch.Tensor):
        """PMPO/MPO: sample N actions from π_ref per state, score them in one call, apply each
        group's improvement function. Returns (policy loss, dual loss, metrics)."""
        e, b, _ = obs.shape
        with torch.no_grad():
            ref_mean, ref_std = self.target_policy(obs)  # [E, B, D]
            noise = self._randn(e, self.cfg.num_samples, b, self.act_dim)
            actions = ref_mean.unsqueeze(1) + ref_std.unsqueeze(1) * noise  # [E, N, B, D]
            clipped = self.squash(actions)
            q = self.critic.score(obs, clipped, self.cfg.score_precision)  # [E, N, B]
            if self.cfg.action_penalty > 0 and self.cfg.squash == "clip":
                q = out_of_bounds_penalty(q, actions, clipped, self.cfg.action_penalty)
        mean, std = self.policy(obs)
        duals = {DUALS[k].value_name: DUALS[k].value(raw) for k, raw in self.duals.items()}
        policy_loss, dual_loss, metrics = 0.0, 0.0, {}
        for fn, sl, hps in self.groups:
            s = Samples(actions[sl], q[sl], mean[sl], std[sl], ref_mean[sl], ref_std[sl])
            lp, ld, m = fn(s, {k: v[sl] for k, v in duals.items()}, hps, self.improve_cfg)
            policy_loss, dual_loss = policy_loss + lp, dual_loss + ld
            for key, val in m.items():
                metrics.setdefault(key, torch.full((e,), float("nan")))[sl] = val
        metrics["std"] = std.detach().mean((1, 2))
        metrics["q"] = q.mean((1, 2))
        return policy_loss, dual_loss, metrics

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """One learner step on a replay batch. Returns per-member metrics, each [E]."""
        obs = batch[0]
        critic_loss = self._critic_step(*batch)
        if self.family == "sac":
            e, b, _ = obs.shape
            policy_loss, dual_loss, metrics = sac.sac_improvement(
                obs,
                self.policy,
                self.critic,
                self.log_alpha,
                self._randn(e, b, self.act_dim),
                -float(self.act_dim),
            )
        else:
            policy_loss, dual_loss, metrics = self._improve_losses(obs)
        self.policy_opt.zero_grad(set_to_none=True)
        self.dual_opt.zero_grad(set_to_none=True)
        (policy_loss + dual_loss).backward()
        self.policy_opt.step()
        self.dual_opt.step()
        with torch.no_grad():
            for k, raw in self.duals.items():
                raw.clamp_(min=mpo_step.RAW_DUAL_MIN, max=DUALS[k].raw_max)
        polyak_(self.target_critic, self.critic, self.cfg.tau)
        self.steps += 1
        if self.steps % self.cfg.target_period == 0:
            hard_update_(self.target_policy, self.policy)
        metrics["critic_loss"] = critic_loss
        return metrics

    def state_dict(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "target_policy": self.target_policy.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "duals": {k: v.detach().clone() for k, v in self.duals.items()},
            "log_alpha": self.log_alpha.detach().clone(),
            "policy_opt": self.policy_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "dual_opt": self.dual_opt.state_dict(),
            "noise": self.noise.get_state(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("policy", "critic", "target_policy", "target_critic"):
            getattr(self, key).load_state_dict(state[key])
        with torch.no_grad():
            for k, v in self.duals.items():
                if k in state["duals"]:  # runs from before the log-space β_Σ have no log_beta_std
                    v.copy_(state["duals"][k])
            self.log_alpha.copy_(state["log_alpha"])
        for key in ("policy_opt", "critic_opt", "dual_opt"):
            getattr(self, key).load_state_dict(state[key])
        self.noise.set_state(state["noise"])
        self.steps = state["steps"]
