"""Roll out a trained control policy in dm_control: transitions for offline datasets, and
trajectory segments with their true returns (for preference / AIHF experiments).

A *run directory* is what `anyfeedback control --out DIR` writes: `config.json` (the resolved
`ControlConfig`) and `checkpoint-*.safetensors` (`control.checkpoint`; `learner.state_dict()`
under "learner"). Only the policy's tensors of the newest intact checkpoint are read; nothing in
a checkpoint can run code.

Behaviour action (executed, in [−1, 1]) at state s:
    a = clip(sq(μ(s)) + σ_noise·ξ, −1, 1),  ξ ~ N(0, I)        with probability 1 − p_random
    a ~ U(−1, 1)^D                                             with probability p_random
sq = tanh for SAC (and `--squash tanh`), clip otherwise (the policy's own execution map).

Shapes: K parallel episodes, T = K·L transitions, L agent steps per episode, do observation dims,
D action dims; segments: S segments of `length` steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anyfeedback.control.checkpoint import load_latest
from anyfeedback.control.nets import EnsembleGaussianActor
from anyfeedback.errors import InputError


@dataclass
class LoadedPolicy:
    """One member's policy from a control run, plus what is needed to execute it."""

    policy: EnsembleGaussianActor  # a 1-member ensemble
    domain: str
    task: str
    action_repeat: int
    episode_frames: int
    tanh_squash: bool  # executed action = tanh(μ) (SAC, --squash tanh) or clip(μ, −1, 1)
    source: str  # the run directory

    @torch.no_grad()
    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        """obs [K, do] -> deterministic executed action [K, D] in [−1, 1]."""
        mean, _ = self.policy(torch.from_numpy(obs).float().unsqueeze(0))  # [1, K, D]
        mean = mean.squeeze(0)
        return (torch.tanh(mean) if self.tanh_squash else mean.clamp(-1, 1)).numpy()


def load_policy(run_dir: str | Path, *, member: int = 0) -> LoadedPolicy:
    """The policy of ensemble member `member` of the control run in `run_dir`."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise InputError("not a control run directory (no config.json)", source=str(run_dir))
    cfg = json.loads((run_dir / "config.json").read_text())
    params, _ = load_latest(run_dir, prefix="learner/policy/")
    w_in, w_out = params["net.weights.0"], params["net.weights.2"]  # [E, do, h], [E, h, 2D]
    if not 0 <= member < w_in.shape[0]:
        raise InputError(f"member {member} not in 0..{w_in.shape[0] - 1}", source=str(run_dir))
    sac = cfg["method"] == "sac"
    policy = EnsembleGaussianActor(
        int(w_in.shape[1]),
        int(w_out.shape[2]) // 2,
        int(w_in.shape[2]),
        [torch.Generator().manual_seed(0)],
        init_std=cfg["init_std"],
        tanh_mean=not sac and cfg.get("policy_mean") == "tanh",
    )
    policy.load_state_dict({k: v[member : member + 1] for k, v in params.items()})
    return LoadedPolicy(
        policy.requires_grad_(False),
        cfg["domain"],
        cfg["task"],
        cfg["action_repeat"],
        cfg["episode_frames"],
        sac or cfg.get("squash") == "tanh",
        str(run_dir),
    )


@dataclass
class Transitions:
    """Flat transitions, episodes stored contiguously in time order (the offline NPZ arrays)."""

    observations: np.ndarray  # [T, do] float32
    actions: np.ndarray  # [T, D] float32, executed, in [−1, 1]
    rewards: np.ndarray  # [T] float32, summed over the action repeat
    discounts: np.ndarray  # [T] float32, environment discount: 1 (DMC ends by time limit only)
    next_observations: np.ndarray  # [T, do] float32
    episode_ids: np.ndarray  # [T] int64, non-decreasing

    def __len__(self) -> int:
        return len(self.rewards)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode -> [number of episodes]."""
        _, inverse = np.unique(self.episode_ids, return_inverse=True)
        return np.bincount(inverse, weights=self.rewards.astype(np.float64))

    @staticmethod
    def concatenate(parts: list[Transitions]) -> Transitions:
        """Join datasets; episode ids are renumbered so they stay unique and non-decreasing."""
        ids, offset = [], 0
        for p in parts:
            _, inv = np.unique(p.episode_ids, return_inverse=True)
            ids.append(inv + offset)
            offset += int(inv.max()) + 1 if len(inv) else 0
        cat = {
            k: np.concatenate([getattr(p, k) for p in parts])
            for k in ("observations", "actions", "rewards", "discounts", "next_observations")
        }
        return Transitions(**cat, episode_ids=np.concatenate(ids).astype(np.int64))


def rollout(
    policy: LoadedPolicy | None,
    *,
    episodes: int,
    seed: int,
    noise: float = 0.0,
    random_prob: float = 0.0,
    domain: str | None = None,
    task: str | None = None,
    action_repeat: int | None = None,
    episode_frames: int | None = None,
) -> Transitions:
    """`episodes` episodes of the behaviour policy above (K = episodes environments in lockstep,
    env seeds seed..seed+K−1, action noise from numpy seed `seed`). `policy=None` is the uniform
    random policy (then domain/task/action_repeat must be given). Task settings default to the
    policy's run."""
    from anyfeedback.control.envs import EnvBatch

    domain = domain or policy.domain
    task = task or policy.task
    repeat = action_repeat or (policy.action_repeat if policy else 1)
    frames = episode_frames or (policy.episode_frames if policy else 1000)
    envs = EnvBatch(domain, task, [seed + k for k in range(episodes)], repeat)
    rng = np.random.default_rng(seed)
    obs = envs.reset()  # [K, do]
    steps = frames // repeat
    o, a, r, o2 = [], [], [], []
    for _ in range(steps):
        if policy is None:
            act = rng.uniform(-1, 1, (episodes, envs.act_dim))
        else:
            act = policy.mean_action(obs) + noise * rng.standard_normal((episodes, envs.act_dim))
            uniform = rng.random(episodes) < random_prob
            act[uniform] = rng.uniform(-1, 1, (int(uniform.sum()), envs.act_dim))
        act = np.clip(act, -1, 1).astype(np.float32)
        nxt, rew = envs.step(act)
        o.append(obs), a.append(act), r.append(rew), o2.append(nxt)
        obs = nxt

    def flat(x: list) -> np.ndarray:  # L × [K, ...] -> [K·L, ...], episode-major
        return np.stack(x, axis=1).reshape(episodes * steps, *x[0].shape[1:])

    return Transitions(
        flat(o),
        flat(a),
        flat(r).astype(np.float32),
        np.ones(episodes * steps, np.float32),
        flat(o2),
        np.repeat(np.arange(episodes, dtype=np.int64), steps),
    )


@dataclass
class Segments:
    """Non-overlapping trajectory segments with their true (undiscounted) returns."""

    observations: np.ndarray  # [S, length, do]
    actions: np.ndarray  # [S, length, D]
    rewards: np.ndarray  # [S, length]
    returns: np.ndarray  # [S] sum of the segment's rewards
    episode_ids: np.ndarray  # [S] the episode each segment comes from


def segments(tr: Transitions, length: int) -> Segments:
    """Cut every episode into ⌊L/length⌋ consecutive segments of `length` steps (a trailing
    remainder is dropped; segments never cross an episode boundary)."""
    if length < 1:
        raise ValueError(f"segment length must be >= 1, got {length}")
    o, a, r, ids = [], [], [], []
    for ep in np.unique(tr.episode_ids):
        idx = np.flatnonzero(tr.episode_ids == ep)
        n = len(idx) // length
        if n == 0:
            continue
        idx = idx[: n * length].reshape(n, length)  # [n, length]
        o.append(tr.observations[idx]), a.append(tr.actions[idx]), r.append(tr.rewards[idx])
        ids.append(np.full(n, ep))
    rewards = np.concatenate(r)
    return Segments(
        np.concatenate(o), np.concatenate(a), rewards, rewards.sum(-1), np.concatenate(ids)
    )
