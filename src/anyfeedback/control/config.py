"""The control trainer's one flat config; the CLI is generated from it (field docstrings = help).

Units: `steps`, `eval_every`, `checkpoint_every`, `learning_starts` count *environment steps*
(physics control steps, i.e. frames: with action repeat k one agent step is k env steps).
Runs, evaluations and checkpoints end on whole episodes, so `steps` is rounded up to them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from anyfeedback.configfile import check_choice, check_range, positive
from anyfeedback.errors import InputError

if TYPE_CHECKING:
    from anyfeedback.control.improve import MemberHParams

_KEBAB = {"source": None, "kebab": True}  # errors name the flag: field 'score-precision'


@dataclass(frozen=True)
class MemberSpec:
    """One agent of an ensemble run: its name, method, seed and improvement hyper-parameters."""

    name: str
    method: str
    seed: int
    hp: MemberHParams


@dataclass
class ControlConfig:
    domain: str = "cartpole"
    """dm_control domain, e.g. cartpole, walker, cheetah."""
    task: str = "swingup"
    """dm_control task of the domain, e.g. swingup, walk, run."""
    method: str = "pmpo-ar"
    """policy improvement: pmpo-ar | pmpo-a | pmpo-r | pmpo (α, β from flags) | mpo | sac."""
    steps: int = 100_000
    """environment steps (frames) to train for; a resumed run continues up to this number."""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (weights, environment, sampling)."""
    num_seeds: int = 1
    """agents trained side by side as one batched program (stacked parameters), seeds seed..+n-1."""
    out: str = "runs/control"
    """run directory: config.json, metrics.jsonl, curves.png, checkpoint-<frames>.safetensors."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    resume: bool = False
    """continue from OUT's newest intact checkpoint (bit-exact on CPU)."""
    alpha: float | None = None
    """PMPO α (weight of accepted vs rejected); None = the method's paper default."""
    beta: float | None = None
    """PMPO β on the mean's KL (or the full KL with --cov joint); None = paper default."""
    labels: str = "top_half"
    """PMPO labels: top_half (best N/2 accepted, worst N/2 rejected) | advantage (sign of Q − mean Q)."""
    cov: str = "decoupled"
    """PMPO covariance: decoupled (β_Σ dual, KL_Σ ≤ epsilon_std; the std-collapse fix) | joint (one β)."""
    num_samples: int = 20
    """N actions sampled from the target policy per replay state and scored by the critic."""
    score_precision: str = "bf16"
    """precision of the critic's h×h layers when scoring the N samples: bf16 (≈ 4× faster, a few %
    of near-median labels flip; docs/results/control.md) | bf16x2 | fp32."""
    batch_size: int = 256
    """replay states per learner step."""
    hidden: int = 256
    """width of the two hidden layers of the policy and of each critic head."""
    lr_policy: float = 3e-4
    """Adam learning rate of the policy."""
    lr_critic: float = 3e-4
    """Adam learning rate of the twin critic."""
    lr_dual: float = 1e-2
    """Adam learning rate of MPO's/PMPO's dual variables (SAC's temperature uses 1e-3)."""
    gamma: float = 0.99
    """discount per agent step."""
    n_step: int = 3
    """n-step returns (agent steps) for the critic target."""
    tau: float = 0.005
    """Polyak rate of the target critic."""
    target_period: int = 25
    """learner steps between copies of the policy into the target policy π_ref (Acme: 100)."""
    init_std: float = 0.2
    """initial policy std (pre-clip Gaussian; SAC's is 0.5 pre-tanh, Acme's MPO 0.7; docs/results/control.md)."""
    action_penalty: float = 1e-3
    """κ: PMPO/MPO rank/weight samples by Q − κ·max(spread, 1e-2·(|Q|+1))·‖u − clip(u)‖ (spread =
    max−min of the state's N Q; 0: off). The default 1e-3 is a tie-breaker: samples that clip to
    the same bound tie in Q, and ranking the one nearest the box first stops PMPO's accepted half
    from dragging μ out of the box (docs/results/control.md)."""
    squash: str = "clip"
    """PMPO/MPO action map u -> a: clip (clip(u, −1, 1), Acme) | tanh (a = tanh(u), as SAC; the
    losses and the closed-form KL stay on u — KL is invariant under the bijection — and no two
    samples tie at the bound)."""
    policy_mean: str = "linear"
    """PMPO/MPO policy mean: linear (unbounded, Acme) | tanh (bounded to (−1, 1))."""
    epsilon: float = 0.1
    """MPO E-step bound on KL(q‖uniform); must be < log(num_samples)."""
    epsilon_mean: float = 1e-3
    """MPO bound on the mean's KL per action dim."""
    epsilon_std: float = 1e-6
    """bound on the covariance's KL per action dim (MPO, and PMPO with --cov decoupled)."""
    action_repeat: int = 1
    """env steps per agent step (the action is repeated, rewards summed)."""
    episode_frames: int = 1000
    """env steps per episode (the suite's default time limit)."""
    learning_starts: int = 5000
    """env steps of uniform random actions before learning starts."""
    update_every: int = 1
    """agent steps per learner step (1 = one update per agent step)."""
    replay_capacity: int = 1_000_000
    """replay size in agent steps (capped at the run's length)."""
    eval_every: int = 10_000
    """env steps between evaluations (deterministic mean action)."""
    eval_episodes: int = 5
    """episodes per evaluation and agent."""
    checkpoint_every: int = 10_000
    """env steps between checkpoints (always one at the end)."""
    threads: int = 1
    """torch CPU threads."""
    progress: bool = True
    """show a progress bar with env-steps/s."""

    def __post_init__(self) -> None:
        # torch-backed tables, imported here so that `anyfeedback --help` does not load torch
        from anyfeedback.control.improve import LABELS, METHODS
        from anyfeedback.control.nets import SCORE_PRECISIONS
        from anyfeedback.losses.pmpo import check_pmpo_beta

        if self.method not in METHODS:
            raise InputError(
                f"unknown method '{self.method}'; choose from {', '.join(METHODS)}", field="method"
            )
        positive(self, "steps", **_KEBAB)
        positive(self, "num_seeds", "num_samples", "batch_size", "hidden", "n_step", **_KEBAB)
        positive(self, "target_period", "action_repeat", "episode_frames", "update_every", **_KEBAB)
        positive(
            self, "replay_capacity", "eval_every", "eval_episodes", "checkpoint_every", **_KEBAB
        )
        positive(self, "threads", **_KEBAB)
        check_choice(self, "labels", LABELS, **_KEBAB)
        check_choice(self, "score_precision", SCORE_PRECISIONS, **_KEBAB)
        check_choice(self, "policy_mean", ("tanh", "linear"), **_KEBAB)
        check_choice(self, "squash", ("clip", "tanh"), **_KEBAB)
        check_choice(self, "cov", ("decoupled", "joint"), **_KEBAB)
        check_range(self, "gamma", 0, 1, low_open=True, **_KEBAB)  # a discount
        check_range(self, "tau", 0, 1, low_open=True, **_KEBAB)  # an averaging rate
        import math

        if not 0 < self.epsilon < math.log(self.num_samples):
            raise InputError(
                f"epsilon must be in (0, log N = {math.log(self.num_samples):.3f})", field="epsilon"
            )
        hp = self.member_hparams()
        if not 0 <= hp.alpha <= 1 or hp.beta < 0:
            raise InputError(f"need 0 <= alpha <= 1 and beta >= 0, got {hp.alpha}, {hp.beta}")
        if self.method.startswith("pmpo"):
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                check_pmpo_beta(hp.alpha, hp.beta)

    def member_hparams(self) -> MemberHParams:
        from anyfeedback.control.improve import METHODS, MemberHParams

        m = METHODS[self.method]
        alpha = m.alpha if self.alpha is None else self.alpha
        beta = m.beta if self.beta is None else self.beta
        return MemberHParams(alpha=alpha, beta=beta, labels=self.labels, cov=self.cov)

    def members(self) -> list[MemberSpec]:
        hp = self.member_hparams()
        return [
            MemberSpec(f"{self.method}-s{self.seed + i}", self.method, self.seed + i, hp)
            for i in range(self.num_seeds)
        ]
