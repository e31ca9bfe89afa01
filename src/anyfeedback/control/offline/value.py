"""Value functions of the behaviour data: fitted Q- and V-evaluation with n-step TD targets.

The advantage that labels a transition is A(s, a) = Q^β(s, a) − V^β(s) for the behaviour policy β
that produced the data (the mixture of all its sources). Both are regressions on the same target

  y_t = Σ_{k<n'} γ^k (Π_{j<k} d_{t+j}) r_{t+k} + γ^{n'} (Π_{k<n'} d_{t+k}) · V̄(s_{t+n'})   (n-step TD)

with n' = n, or fewer at the episode's end (s_{t+n'} = next_observations[t+n'−1]), d the dataset's
discounts and V̄ a Polyak-averaged copy of V. Q(s, a) ≈ E[y | s, a] and V(s) ≈ E[y | s] =
E_{a~β(·|s)} Q(s, a). V is a separate net (the `TwinCritic` with zero action dims), so the
targets need no next action and the last transition of every episode gets one too. For the
labels the baseline is either that V net or (default, `--baseline policy`) Q averaged over actions
of a BC fit of β: two separately fitted nets differ by their fitting errors, which swamp the
small effect of one action; one Q against itself does not (measured: docs/results/offline.md).
Q and V are the mean of the twin heads (evaluation, not control: no min, nothing to overestimate).

Shapes: E seeds (ensemble members), B batch, T transitions, do observation dims, D action dims.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from anyfeedback.control.nets import TwinCritic, polyak_
from anyfeedback.control.rollouts import Transitions


def nstep_targets(
    rewards: np.ndarray, discounts: np.ndarray, episode_ids: np.ndarray, *, n: int, gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (ret [T], disc [T], boot [T]): y_t = ret_t + disc_t·V(next_observations[boot_t])."""
    t_all = len(rewards)
    t = np.arange(t_all)
    ret = np.zeros(t_all, np.float64)
    disc = np.ones(t_all, np.float64)
    boot = t.copy()
    alive = np.ones(t_all, bool)
    for k in range(n):
        idx = np.minimum(t + k, t_all - 1)
        alive &= (t + k < t_all) & (episode_ids[idx] == episode_ids)
        ret += np.where(alive, disc * rewards[idx], 0.0)
        boot = np.where(alive, idx, boot)
        disc = np.where(alive, disc * gamma * discounts[idx], disc)
    return ret.astype(np.float32), disc.astype(np.float32), boot


class ValueFns(torch.nn.Module):
    """Q [E seeds] and V [E seeds] for the behaviour data; each a twin-head ensemble."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, seeds: list[int]) -> None:
        super().__init__()
        gens = [torch.Generator().manual_seed(10_000 + s) for s in seeds]
        self.q = TwinCritic(obs_dim, act_dim, hidden, gens)
        self.v = TwinCritic(obs_dim, 0, hidden, gens)

    def values(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [E, B, do], act [E, B, D] -> (Q [2, E, B], V [2, E, B])."""
        return self.q(obs, act), self.v(obs, obs[..., :0])

    @torch.no_grad()
    def advantages(
        self,
        tr: Transitions,
        policy=None,
        *,
        num_samples: int = 20,
        seed: int = 0,
        chunk: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """-> (Q [E, T], baseline [E, T]) on every transition (head means, `chunk` rows at a time).
        baseline = V(s) of the V net, or with `policy` (an E-member EnsembleGaussianActor, e.g. the BC
        fit of β) the same Q's mean over N sampled actions, V(s) = mean_j Q(s, clip(a_j)),
        a_j ~ π(·|s): Q's error in s then cancels in Q − V (CRR's "mean" advantage)."""
        e = self.q.members
        gen = torch.Generator().manual_seed(seed)
        qs, vs = [], []
        for i in range(0, len(tr), chunk):
            obs = torch.from_numpy(tr.observations[i : i + chunk]).expand(e, -1, -1)  # [E, c, do]
            act = torch.from_numpy(tr.actions[i : i + chunk]).expand(e, -1, -1)
            q, v = self.values(obs, act)
            qs.append(q.mean(0))
            if policy is None:
                vs.append(v.mean(0))
                continue
            mean, std = policy(obs)  # [E, c, D]
            noise = torch.randn(e, num_samples, *mean.shape[1:], generator=gen)
            a = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1, 1)  # [E, N, c, D]
            c = obs.shape[1]
            obs_n = obs.unsqueeze(1).expand(-1, num_samples, -1, -1).reshape(e, -1, obs.shape[-1])
            q_n = self.q(obs_n, a.reshape(e, num_samples * c, -1)).mean(0)  # [E, N·c]
            vs.append(q_n.view(e, num_samples, c).mean(1))
        return torch.cat(qs, -1).numpy(), torch.cat(vs, -1).numpy()


class ValueFit:
    """The regression of `fit_values`, one `step()` at a time, with `state_dict` /
    `load_state_dict` for exact resume (nets, target V, Adam, each member's batch RNG)."""

    def __init__(
        self,
        tr: Transitions,
        seeds: list[int],
        *,
        batch_size: int,
        hidden: int,
        lr: float,
        gamma: float,
        n_step: int,
        tau: float,
    ) -> None:
        ret, disc, boot = nstep_targets(
            tr.rewards, tr.discounts, tr.episode_ids, n=n_step, gamma=gamma
        )
        self.obs, self.act = torch.from_numpy(tr.observations), torch.from_numpy(tr.actions)
        self.boot_obs = torch.from_numpy(tr.next_observations[boot])  # s_{t+n'}  [T, do]
        self.ret, self.disc = torch.from_numpy(ret), torch.from_numpy(disc)
        self.fns = ValueFns(self.obs.shape[1], self.act.shape[1], hidden, seeds)
        self.v_target = copy.deepcopy(self.fns.v).requires_grad_(False)
        self.opt = torch.optim.Adam(self.fns.parameters(), lr=lr)
        self.rngs = [np.random.default_rng(s) for s in seeds]
        self.batch_size, self.tau, self.n = batch_size, tau, len(tr)
        self.steps = 0

    def step(self) -> dict[str, torch.Tensor]:
        idx = np.stack([r.integers(0, self.n, self.batch_size) for r in self.rngs])  # [E, B]
        idx = torch.from_numpy(idx)
        with torch.no_grad():
            nxt = self.boot_obs[idx]  # [E, B, do]
            y = self.ret[idx] + self.disc[idx] * self.v_target(nxt, nxt[..., :0]).mean(0)  # [E, B]
        q, v = self.fns.values(self.obs[idx], self.act[idx])  # [2, E, B] each
        loss_q = 0.5 * (q - y).pow(2).mean(-1)  # [2, E]
        loss_v = 0.5 * (v - y).pow(2).mean(-1)
        self.opt.zero_grad(set_to_none=True)
        (loss_q + loss_v).sum().backward()
        self.opt.step()
        polyak_(self.v_target, self.fns.v, self.tau)
        self.steps += 1
        return {
            "q_loss": loss_q.detach().mean(0),
            "v_loss": loss_v.detach().mean(0),
            "v": v.detach().mean((0, 2)),
        }

    def state_dict(self) -> dict:
        return {
            "fns": self.fns.state_dict(),
            "v_target": self.v_target.state_dict(),
            "opt": self.opt.state_dict(),
            "rngs": [r.bit_generator.state for r in self.rngs],
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.fns.load_state_dict(state["fns"])
        self.v_target.load_state_dict(state["v_target"])
        self.opt.load_state_dict(state["opt"])
        for r, st in zip(self.rngs, state["rngs"], strict=True):
            r.bit_generator.state = st
        self.steps = state["steps"]


def fit_values(
    tr: Transitions,
    seeds: list[int],
    *,
    steps: int,
    batch_size: int,
    hidden: int,
    lr: float,
    gamma: float,
    n_step: int,
    tau: float,
    on_step: Callable[[int, dict], None] | None = None,
) -> ValueFns:
    """Regress Q and V of E = len(seeds) independent members on the n-step targets above; each
    member draws its own batches (numpy seed = its seed). `on_step(step, metrics)` after each."""
    fit = ValueFit(
        tr, seeds, batch_size=batch_size, hidden=hidden, lr=lr, gamma=gamma, n_step=n_step, tau=tau
    )
    for step in range(1, steps + 1):
        metrics = fit.step()
        if on_step is not None:
            on_step(step, metrics)
    return fit.fns
