"""dm_control environments for E lockstep agents: validation, flat observations, action repeat.

dm_control is imported here only (heavy, optional extra `anyfeedback[control]`).
Episodes are cut by us at `episode_frames` (the suite's own time limit is disabled), so every
member's episode has the same length and the members can step in lockstep.
Shapes: E environments, `do` flat observation dims, D action dims (actions in [−1, 1]).
"""

from __future__ import annotations

import os

import numpy as np

from anyfeedback.errors import InputError


def _suite():
    os.environ.setdefault("MUJOCO_GL", "disable")  # no rendering; avoids the GLFW/X11 probe
    try:
        from dm_control import suite
    except ImportError as err:  # pragma: no cover - depends on the install
        raise InputError(
            "dm_control is not installed; pip install 'anyfeedback[control]' "
            "(dm_control mujoco==3.17.0)"
        ) from err
    return suite


def check_task(domain: str, task: str) -> None:
    """Raise a one-line InputError for an unknown domain or task."""
    suite = _suite()
    tasks = sorted(suite.ALL_TASKS)
    domains = sorted({d for d, _ in tasks})
    if domain not in domains:
        raise InputError(
            f"unknown dm_control domain '{domain}'; choose from {', '.join(domains)}",
            field="domain",
        )
    if (domain, task) not in tasks:
        known = ", ".join(t for d, t in tasks if d == domain)
        raise InputError(
            f"unknown task '{task}' for domain '{domain}'; choose from {known}", field="task"
        )


def flat_obs(obs: dict) -> np.ndarray:
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in obs.values()])


class EnvBatch:
    """E independent dm_control environments, seeded seed_e, stepped together."""

    def __init__(self, domain: str, task: str, seeds: list[int], action_repeat: int) -> None:
        check_task(domain, task)
        suite = _suite()
        self.envs = [
            suite.load(domain, task, task_kwargs={"random": s, "time_limit": float("inf")})
            for s in seeds
        ]
        self.action_repeat = action_repeat
        spec = self.envs[0].action_spec()
        if not (np.allclose(spec.minimum, -1) and np.allclose(spec.maximum, 1)):
            raise InputError(f"{domain}-{task}: actions are not in [-1, 1]")
        self.act_dim = int(spec.shape[0])
        self.obs_dim = int(sum(np.prod(v.shape) for v in self.envs[0].observation_spec().values()))

    def reset(self) -> np.ndarray:
        return np.stack([flat_obs(env.reset().observation) for env in self.envs])  # [E, do]

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """actions [E, D] -> next obs [E, do], reward summed over the repeats [E]."""
        obs, rewards = [], np.zeros(len(self.envs), np.float32)
        for i, env in enumerate(self.envs):
            for _ in range(self.action_repeat):
                ts = env.step(actions[i])
                rewards[i] += ts.reward or 0.0
            obs.append(flat_obs(ts.observation))
        return np.stack(obs), rewards

    def rng_states(self) -> list:
        return [env.task.random.get_state() for env in self.envs]

    def set_rng_states(self, states: list) -> None:
        for env, state in zip(self.envs, states, strict=True):
            env.task.random.set_state(state)
