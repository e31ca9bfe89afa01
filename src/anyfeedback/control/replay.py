"""Replay buffer with n-step returns for E agents stepping in lockstep.

Shapes: E members, C capacity (agent steps), `do` observation dims, D action dims, B batch.
  stored: obs [E, C, do], act [E, C, D], ret [E, C], disc [E, C], next_obs [E, C, do]
  ret_t  = Σ_{k<n'} γ^k r_{t+k}      disc_t = γ^{n'}      n' = n, or fewer at an episode's end
  target y_t = ret_t + disc_t · V(next_obs_t)   (DMC episodes end by time limit: always bootstrap)
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch


class NStepReplay:
    def __init__(
        self,
        members: int,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        *,
        n_step: int,
        gamma: float,
        seed: int,
    ) -> None:
        self.n_step, self.gamma, self.capacity = n_step, gamma, capacity
        n = min(capacity, 4096)  # storage grows by doubling up to `capacity`
        self.obs = np.zeros((members, n, obs_dim), np.float32)
        self.act = np.zeros((members, n, act_dim), np.float32)
        self.ret = np.zeros((members, n), np.float32)
        self.disc = np.zeros((members, n), np.float32)
        self.next_obs = np.zeros((members, n, obs_dim), np.float32)
        self.ptr = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)
        self.pending: deque = deque()  # (obs [E, do], act [E, D], reward [E]) not yet written

    def add(self, obs, act, reward, next_obs, last: bool) -> None:
        """One lockstep transition of all members; `last` ends the episode (flushes pending)."""
        self.pending.append((obs, act, reward))
        if len(self.pending) == self.n_step:
            self._write(next_obs)
        if last:
            while self.pending:
                self._write(next_obs)

    def _grow(self, n: int) -> None:
        for key in ("obs", "act", "ret", "disc", "next_obs"):
            old = getattr(self, key)
            new = np.zeros((old.shape[0], n, *old.shape[2:]), np.float32)
            new[:, : old.shape[1]] = old
            setattr(self, key, new)

    def _write(self, next_obs: np.ndarray) -> None:
        if self.ptr == self.obs.shape[1] and self.ptr < self.capacity:
            self._grow(min(2 * self.ptr, self.capacity))
        obs, act, _ = self.pending[0]
        ret = np.zeros_like(self.pending[0][2], dtype=np.float32)
        for k, (_, _, r) in enumerate(self.pending):
            ret += (self.gamma**k) * r
        i = self.ptr
        self.obs[:, i], self.act[:, i], self.ret[:, i] = obs, act, ret
        self.disc[:, i] = self.gamma ** len(self.pending)
        self.next_obs[:, i] = next_obs
        self.pending.popleft()
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Uniform indices per member -> obs [E, B, do], act [E, B, D], ret [E, B], disc [E, B],
        next_obs [E, B, do] as torch tensors."""
        e = self.obs.shape[0]
        idx = self.rng.integers(0, self.size, size=(e, batch))
        rows = np.arange(e)[:, None]
        out = (
            self.obs[rows, idx],
            self.act[rows, idx],
            self.ret[rows, idx],
            self.disc[rows, idx],
            self.next_obs[rows, idx],
        )
        return tuple(torch.from_numpy(x) for x in out)

    def state_dict(self) -> dict:
        assert not self.pending, "checkpoint only at episode boundaries"
        n = self.size
        return {
            "obs": self.obs[:, :n].copy(),
            "act": self.act[:, :n].copy(),
            "ret": self.ret[:, :n].copy(),
            "disc": self.disc[:, :n].copy(),
            "next_obs": self.next_obs[:, :n].copy(),
            "ptr": self.ptr,
            "size": n,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        n = state["size"]
        if n > self.obs.shape[1]:
            self._grow(n)
        for key in ("obs", "act", "ret", "disc", "next_obs"):
            getattr(self, key)[:, :n] = state[key]
        self.ptr, self.size = state["ptr"], n
        self.rng.bit_generator.state = state["rng"]
        self.pending.clear()
