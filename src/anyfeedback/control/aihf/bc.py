"""Behaviour cloning on the AIHF-control demonstrations: the SAC policy network (tanh-Gaussian),
fitted by maximum likelihood, L = −mean log π(a^E|s^E) (`losses.sft_loss`; docs/algorithms.md#sft).

log π(a|s) of a given executed action a = tanh(u): u = atanh(a) (a clipped to ±(1 − 1e-4)),
scored by `control.sac.tanh_gaussian_sample` with the noise ξ = (u − μ)/σ that reproduces it.
Shapes: E members (seeds), B demo states, D action dims.
"""

from __future__ import annotations

import numpy as np
import torch

from anyfeedback.control import health
from anyfeedback.control.aihf.config import AIHFControlConfig
from anyfeedback.control.aihf.data import Pool, member_feedback
from anyfeedback.control.sac import tanh_gaussian_sample
from anyfeedback.losses import sft_loss


def demo_logps(policy, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """log π(a|s) of demonstrated actions. obs [E, B, do], act [E, B, D] in [−1, 1] -> [E, B]."""
    mean, std = policy(obs)
    u = torch.atanh(act.clamp(-1 + 1e-4, 1 - 1e-4))
    return tanh_gaussian_sample(mean, std, (u - mean) / std)[1]


def train_bc(cfg: AIHFControlConfig, pool: Pool, log) -> np.ndarray:
    """Fit one policy per seed on its demonstrations; log train loss and the true return (kind
    eval, at env step 0: BC never interacts). Returns the returns [E]."""
    from anyfeedback.control.aihf.setup import control_config, eval_envs, member_specs
    from anyfeedback.control.learner import Learner
    from anyfeedback.control.train import evaluate

    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    members = member_specs(["bc"], seeds)
    fb = member_feedback(
        pool,
        seeds,
        demo_quality=cfg.demo_quality,
        num_demos=cfg.num_demos,
        num_pairs=1,
        noise=0.0,
        length=cfg.segment_length,
    )
    ccfg = control_config(cfg, pool)
    envs = eval_envs(ccfg, seeds)
    learner = Learner(ccfg, members, envs.obs_dim, envs.act_dim)
    opt = torch.optim.Adam(learner.policy.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed + 2)
    e, n = fb.demo_obs.shape[:2]
    rows = np.arange(e)[:, None]
    for step in range(1, cfg.bc_steps + 1):
        idx = rng.integers(0, n, (e, cfg.batch_size))
        logps = demo_logps(learner.policy, fb.demo_obs[rows, idx], fb.demo_act[rows, idx])
        loss = sum(sft_loss(logps[i])[0] for i in range(e))  # members' parameters are disjoint
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == cfg.bc_steps:  # checked healthy before it is logged
            where = f"BC step {step}"
            health.check_metrics({"bc_loss": loss.detach()}, ["bc_loss"], where)
            health.check_parameters(health.named_parameters(policy=learner.policy), where)
            for i, m in enumerate(members):
                log.log(
                    0,
                    member=m.name,
                    kind="train",
                    bc_step=step,
                    bc_logp=round(float(logps[i].detach().mean()), 4),
                )
    returns = evaluate(learner, envs, ccfg, cfg.eval_episodes)
    for m, ret in zip(members, returns, strict=True):
        log.log(0, member=m.name, kind="eval", eval_return=round(float(ret), 3))
    return returns
