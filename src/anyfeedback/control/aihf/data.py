"""Feedback for AIHF-control: a pool of trajectories from policies of different quality, and per
member the demonstrations and preference pairs drawn from it (the data knobs of the experiment).

Pool file (`.npz`, written by `save_pool`): obs [M, T, do], act [M, T, D] (executed actions in
[−1, 1]), reward [M, T] (true env reward per agent step), quality [M] (e.g. expert / medium /
poor), domain, task, action_repeat. M trajectories of T agent steps.
Within each quality every 4th trajectory is held out: held-out pairs (clean labels) measure the
reward's pairwise accuracy; members draw demonstrations and pairs from the other 3/4.

Pairs are rows (traj_w, start_w, traj_l, start_l) of segments of L agent steps, the chosen one
having the larger true return; with probability `noise` a label is flipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anyfeedback.errors import InputError


@dataclass
class Pool:
    obs: np.ndarray  # [M, T, do]
    act: np.ndarray  # [M, T, D]
    reward: np.ndarray  # [M, T]
    quality: np.ndarray  # [M] str
    domain: str
    task: str
    action_repeat: int

    def split(self, held_out: bool) -> np.ndarray:
        """Trajectory ids of the train (or held-out) split: every 4th of each quality is held out."""
        rank = np.zeros(len(self.quality), int)
        for q in np.unique(self.quality):
            ids = np.flatnonzero(self.quality == q)
            rank[ids] = np.arange(len(ids))
        return np.flatnonzero((rank % 4 == 3) == held_out)


def save_pool(path: str | Path, pool: Pool) -> None:
    np.savez_compressed(
        path,
        obs=pool.obs.astype(np.float32),
        act=pool.act.astype(np.float32),
        reward=pool.reward.astype(np.float32),
        quality=pool.quality.astype(str),
        domain=pool.domain,
        task=pool.task,
        action_repeat=pool.action_repeat,
    )


def pool_from_rollouts(parts: dict, *, domain: str, task: str, action_repeat: int) -> Pool:
    """{quality: `control.rollouts.Transitions`} (equal-length episodes) -> a Pool."""
    obs, act, rew, qual = [], [], [], []
    for quality, tr in parts.items():
        k = len(np.unique(tr.episode_ids))
        obs.append(tr.observations.reshape(k, -1, tr.observations.shape[-1]))  # [K, T, do]
        act.append(tr.actions.reshape(k, -1, tr.actions.shape[-1]))
        rew.append(tr.rewards.reshape(k, -1))
        qual += [quality] * k
    return Pool(
        np.concatenate(obs),
        np.concatenate(act),
        np.concatenate(rew),
        np.asarray(qual),
        domain,
        task,
        action_repeat,
    )


def load_pool(path: str | Path) -> Pool:
    """A pool saved by `save_pool`; anything else (not an NPZ, truncated, missing or non-numeric
    arrays, wrong shapes, NaN/inf values) is one InputError line naming the file and array."""
    import zipfile

    p = Path(path)
    if not p.is_file():
        raise InputError("trajectory pool not found (make one with save_pool)", source=str(p))
    if not zipfile.is_zipfile(p):
        raise InputError("not an NPZ file (numpy.savez archive)", source=str(p))
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("obs", "act", "reward", "quality")}
            meta = (str(z["domain"]), str(z["task"]), int(z["action_repeat"]))
    except Exception as err:  # a missing member, a truncated or corrupt archive, pickled data
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise InputError(f"not a trajectory pool: {first}", source=str(p)) from None
    for name, ndim in (("obs", 3), ("act", 3), ("reward", 2)):
        x = arrays[name]
        if x.dtype.kind not in "fiu" or x.ndim != ndim:
            raise InputError(f"must be a numeric {ndim}-d array", source=str(p), field=name)
        if not np.isfinite(x).all():
            raise InputError("has NaN or infinite values", source=str(p), field=name)
    pool = Pool(
        **{k: arrays[k] for k in ("obs", "act", "reward")},
        quality=arrays["quality"].astype(str),
        domain=meta[0],
        task=meta[1],
        action_repeat=meta[2],
    )
    m, t = pool.reward.shape
    if pool.obs.shape[:2] != (m, t) or pool.act.shape[:2] != (m, t) or pool.quality.shape != (m,):
        raise InputError("obs/act/reward/quality disagree in trajectories or length", source=str(p))
    if m == 0 or t == 0:
        raise InputError("holds no trajectories", source=str(p), field="reward")
    if meta[2] < 1:
        raise InputError("must be >= 1", source=str(p), field="action_repeat")
    return pool


def _segment_pairs(
    pool: Pool, trajs: np.ndarray, n: int, length: int, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """n pairs of random segments of `trajs`, chosen first by true return, flipped w.p. noise."""
    t = pool.reward.shape[1]
    rows = []
    while len(rows) < n:
        a, b = rng.choice(trajs, 2)
        sa, sb = rng.integers(0, t - length + 1, 2)
        ra, rb = pool.reward[a, sa : sa + length].sum(), pool.reward[b, sb : sb + length].sum()
        if ra == rb:  # no preference
            continue
        w, lo = ((a, sa), (b, sb)) if ra > rb else ((b, sb), (a, sa))
        if rng.random() < noise:
            w, lo = lo, w
        rows.append((*w, *lo))
    return np.asarray(rows, np.int64).reshape(n, 4)


@dataclass
class Feedback:
    """Stacked per-member data. demo_obs [E, Nd, do], demo_act [E, Nd, D], pairs [E, P, 4]."""

    demo_obs: torch.Tensor
    demo_act: torch.Tensor
    pairs: torch.Tensor


def member_feedback(
    pool: Pool,
    seeds: list[int],
    *,
    demo_quality: str,
    num_demos: int,
    num_pairs: int,
    noise: float,
    length: int,
) -> Feedback:
    """Each seed draws its own `num_demos` demonstration trajectories of `demo_quality` and its
    own `num_pairs` pairs (label noise `noise`) from the train split."""
    if not 1 <= length <= pool.reward.shape[1]:
        raise InputError(
            f"must be in 1..{pool.reward.shape[1]} (the pool's trajectory length)",
            field="segment-length",
        )
    train = pool.split(held_out=False)
    demo_pool = train[pool.quality[train] == demo_quality]
    if len(demo_pool) < num_demos:
        raise InputError(
            f"{num_demos} demonstrations of quality '{demo_quality}' requested, the "
            f"pool's train split has {len(demo_pool)}",
            field="num-demos",
        )
    obs, act, pairs = [], [], []
    for s in seeds:
        rng = np.random.default_rng(s)
        ids = rng.choice(demo_pool, num_demos, replace=False)
        obs.append(pool.obs[ids].reshape(-1, pool.obs.shape[-1]))
        act.append(pool.act[ids].reshape(-1, pool.act.shape[-1]))
        pairs.append(_segment_pairs(pool, train, num_pairs, length, noise, rng))
    return Feedback(
        torch.from_numpy(np.stack(obs)),
        torch.from_numpy(np.stack(act)),
        torch.from_numpy(np.stack(pairs)),
    )


def held_out_pairs(pool: Pool, n: int, length: int, seed: int) -> torch.Tensor:
    """Clean pairs from the held-out trajectories, one set for every member -> [P, 4]."""
    rng = np.random.default_rng(10_000 + seed)
    return torch.from_numpy(_segment_pairs(pool, pool.split(held_out=True), n, length, 0.0, rng))


def gather_segments(
    pool_obs: torch.Tensor, pool_act: torch.Tensor, pairs: torch.Tensor, length: int
) -> tuple[torch.Tensor, ...]:
    """pairs [..., 4] -> (obs_w, act_w, obs_l, act_l), each [..., L, do or D]."""
    steps = torch.arange(length)
    out = []
    for traj, start in ((pairs[..., 0], pairs[..., 1]), (pairs[..., 2], pairs[..., 3])):
        t, s = traj.unsqueeze(-1), start.unsqueeze(-1) + steps  # [..., L]
        out += [pool_obs[t, s], pool_act[t, s]]
    return tuple(out)
