"""The SAC learner and evaluation environments that AIHF-for-control and its BC baseline share."""

from __future__ import annotations

from anyfeedback.control.aihf.config import AIHFControlConfig
from anyfeedback.control.aihf.data import Pool
from anyfeedback.control.config import ControlConfig, MemberSpec
from anyfeedback.control.envs import EnvBatch
from anyfeedback.control.improve import MemberHParams


def control_config(cfg: AIHFControlConfig, pool: Pool) -> ControlConfig:
    """The SAC learner's config: 1-step targets (the reward is relabelled per transition);
    episodes as long as the pool's trajectories."""
    return ControlConfig(
        domain=pool.domain,
        task=pool.task,
        method="sac",
        steps=cfg.steps,
        hidden=cfg.hidden,
        batch_size=cfg.batch_size,
        lr_policy=cfg.lr,
        lr_critic=cfg.lr,
        gamma=cfg.gamma,
        n_step=1,
        init_std=cfg.init_std,
        action_repeat=pool.action_repeat,
        episode_frames=pool.reward.shape[1] * pool.action_repeat,
        learning_starts=cfg.learning_starts,
        eval_every=cfg.eval_every,
        eval_episodes=cfg.eval_episodes,
        threads=cfg.threads,
        progress=False,
    )


def member_specs(methods: list[str], seeds: list[int]) -> list[MemberSpec]:
    return [MemberSpec(f"{m}-s{s}", "sac", s, MemberHParams()) for m in methods for s in seeds]


def eval_envs(ccfg: ControlConfig, seeds: list[int]) -> EnvBatch:
    k = ccfg.eval_episodes
    return EnvBatch(
        ccfg.domain,
        ccfg.task,
        [10_000 + s * k + j for s in seeds for j in range(k)],
        ccfg.action_repeat,
    )
