"""Ensemble networks for the control actor-critic: E independent agents as one batched program.

Every weight carries a leading member dimension, so E seeds / configurations (and the two critic
heads) run as one `torch.baddbmm` per layer instead of E·2 small matmuls. Member e of an ensemble
never sees another member's parameters, and Adam is elementwise, so summing the members' losses
trains E independent agents.

Shapes: E members, H = 2 critic heads, B batch states, N sampled actions per state,
`do` observation dims, D action dims, `h` hidden width.
  actor(obs [E, B, do])                  -> mean [E, B, D], std [E, B, D]
  critic(obs [E, B, do], act [E, B, D])  -> q [H, E, B]          (twin Q, fused: M = H·E members)
  critic.score(obs [E, B, do], act [E, N, B, D]) -> q [E, N, B]  (head 0 only; one batched call)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class EnsembleMLP(nn.Module):
    """ReLU MLP with M stacked members: weight i is [M, in, out], bias i is [M, 1, out].
    Member m is initialised from `generators[m]` alone (nn.Linear's default uniform init), so a
    member's initial weights depend on its own seed, not on the ensemble it runs in."""

    def __init__(self, sizes: list[int], generators: list[torch.Generator]) -> None:
        super().__init__()
        layers = list(zip(sizes[:-1], sizes[1:], strict=True))
        draws = []  # per member: [(w, b) per layer]
        for g in generators:
            draws.append(
                [
                    (
                        (torch.rand(i, o, generator=g) * 2 - 1) / math.sqrt(i),
                        (torch.rand(1, o, generator=g) * 2 - 1) / math.sqrt(i),
                    )
                    for i, o in layers
                ]
            )
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([d[k][0] for d in draws])) for k in range(len(layers))
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([d[k][1] for d in draws])) for k in range(len(layers))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, B, in] -> [M, B, out]."""
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                x = F.relu(x)
        return x


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


class EnsembleGaussianActor(nn.Module):
    """The actor network of E ensemble members: an MLP from the state to the mean and std of a
    diagonal Gaussian over actions (the distribution maths is `policies.gaussian`'s). std = softplus(raw + softplus⁻¹(init_std)) + min_std, so the
    initial std is ≈ init_std; the last layer is scaled by 0.01 so the initial mean is ≈ 0.

    The distribution is over the *unsquashed* action u. PMPO/MPO execute clip(u, −1, 1) and score
    log N(u; μ, σ) (Acme's convention); SAC executes tanh(u) with the log-det correction (sac.py).
    `tanh_mean=True` (`--policy-mean tanh`, not the default) bounds the mean, μ = tanh(net), as
    Tonic's MPO does. With an unbounded mean the clipped-action learners drove |μ| to 3–15 on
    cartpole-swingup, where all N samples clip to one action, tie in Q and carry no ranking signal;
    the tanh only moved that dead zone into its flat tail (results/control/diagnosis/NOTES.md).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int,
        generators: list[torch.Generator],
        *,
        init_std: float = 0.5,
        min_std: float = 1e-4,
        tanh_mean: bool = False,
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP([obs_dim, hidden, hidden, 2 * act_dim], generators)
        with torch.no_grad():
            self.net.weights[-1].mul_(0.01)
            self.net.biases[-1].mul_(0.01)
        self.act_dim = act_dim
        self.min_std = min_std
        self.tanh_mean = tanh_mean
        self.std_shift = _softplus_inverse(init_std - min_std)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(obs)  # [E, B, 2D]
        mean, raw = out.split(self.act_dim, dim=-1)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        std = F.softplus(raw + self.std_shift) + self.min_std
        return mean, std


class TwinCritic(nn.Module):
    """Two Q heads for each of E members, fused into one EnsembleMLP of M = 2·E members.
    Member index m = h·E + e (head-major), so head 0 of every member is the slice [:E]."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: int, generators: list[torch.Generator]
    ) -> None:
        super().__init__()
        self.members = len(generators)
        self.obs_dim = obs_dim
        self.net = EnsembleMLP([obs_dim + act_dim, hidden, hidden, 1], generators + generators)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs [E, B, do], act [E, B, D] -> q [2, E, B]."""
        x = torch.cat([obs, act], dim=-1).repeat(2, 1, 1)  # [2E, B, do+D]
        return self.net(x).view(2, self.members, -1)

    @torch.no_grad()
    def score(self, obs: torch.Tensor, act: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """Q of head 0 for N actions per state in one call, no gradient: obs [E, B, do],
        act [E, N, B, D] -> [E, N, B]. The first layer is split, W·[s; a] = W_s·s + W_a·a, so the
        state half is computed once per state instead of N times; activations are in place.

        `precision` of the hidden h×h layers, the bulk of the cost (an [E, N·B, h] × [E, h, h]
        matmul): "fp32"; "bf16" (inputs and weights rounded to bfloat16, products accumulated in
        fp32, output rounded to bf16: ≈ 4× faster on CPUs with AVX512-BF16/AMX, mean |ΔQ| ≈ 1e-3
        relative); "bf16x2" (the activations split into bf16 high + low parts, two matmuls: the
        weights' and the output's rounding remain, ≈ 2× faster than fp32). The first and last layers stay fp32. What the rounding does to the
        labels is measured in docs/results/control.md (a few % of top/bottom-half labels flip, all
        near the median, fewer than between the online and target critics)."""
        e, n, b, d = act.shape
        w0, b0 = self.net.weights[0][:e], self.net.biases[0][:e]  # head 0: [E, do+D, h]
        s_part = torch.baddbmm(b0, obs, w0[:, : self.obs_dim])  # [E, B, h]
        x = torch.bmm(act.reshape(e, n * b, d), w0[:, self.obs_dim :])  # [E, N·B, h]
        x.view(e, n, b, -1).add_(s_part.unsqueeze(1)).relu_()
        last = len(self.net.weights) - 1
        for i in range(1, last + 1):
            w, bias = self.net.weights[i][:e], self.net.biases[i][:e]
            if i < last and precision != "fp32":
                x = _bf16_matmul(x, w, split=precision == "bf16x2").add_(bias)
            else:
                x = torch.baddbmm(bias, x, w)
            if i < last:
                x.relu_()
        return x.view(e, n, b)


SCORE_PRECISIONS = ("fp32", "bf16", "bf16x2")


def _bf16_matmul(x: torch.Tensor, w: torch.Tensor, *, split: bool) -> torch.Tensor:
    """x [M, R, k] @ w [M, k, h] in bfloat16 (fp32 accumulation inside the kernel, the output
    rounded to bf16, returned as fp32); split: x = hi + lo, both bf16, two matmuls."""
    w16 = w.to(torch.bfloat16)
    hi = x.to(torch.bfloat16)
    out = torch.bmm(hi, w16).float()
    if split:
        out += torch.bmm((x - hi.float()).to(torch.bfloat16), w16)
    return out


def polyak_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target ← (1 − τ)·target + τ·online, in place, one fused foreach call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def hard_update_(target: nn.Module, online: nn.Module) -> None:
    with torch.no_grad():
        torch._foreach_copy_(list(target.parameters()), list(online.parameters()))
