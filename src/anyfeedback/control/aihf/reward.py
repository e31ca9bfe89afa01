"""Ensemble reward network r_φ for control: one (64, 64) ReLU MLP per member (App. A.2.1),
stacked like the actor-critic's nets (`control.nets.EnsembleMLP`), output clamped to ±clip
(the authors' MuJoCo code clamps at 10; the linear ML-IRL term is unbounded otherwise).

Shapes: E members, N rows, P pairs, L segment steps, do observation dims, D action dims.
  reward(obs [E, N, do], act [E, N, D])           -> r [E, N]
  segment_returns(obs [E, P, L, do], act [E, P, L, D]) -> R [E, P] = Σ_t r(s_t, a_t)
"""

from __future__ import annotations

import torch
from torch import nn

from anyfeedback.control.nets import EnsembleMLP


class RewardNet(nn.Module):
    """r_φ(s) (`use_actions=False`, the authors' state-only reward) or r_φ(s, a)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int,
        generators: list[torch.Generator],
        *,
        use_actions: bool,
        clip: float,
    ) -> None:
        super().__init__()
        self.use_actions, self.clip, self.members = use_actions, clip, len(generators)
        inp = obs_dim + (act_dim if use_actions else 0)
        self.net = EnsembleMLP([inp, hidden, hidden, 1], generators)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs [E, N, do], act [E, N, D] -> r [E, N]."""
        x = torch.cat([obs, act], -1) if self.use_actions else obs
        r = self.net(x).squeeze(-1)
        return r.clamp(-self.clip, self.clip) if self.clip > 0 else r

    def segment_returns(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs [E, P, L, do], act [E, P, L, D] -> undiscounted segment return [E, P]."""
        e, p, ln, _ = obs.shape
        r = self(obs.reshape(e, p * ln, -1), act.reshape(e, p * ln, -1))  # [E, P·L]
        return r.view(e, p, ln).sum(-1)
