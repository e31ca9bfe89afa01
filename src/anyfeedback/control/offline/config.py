"""The offline trainer's flat config (CLI generated from it) and the Table 1 method presets.

Offline PMPO (arXiv 2410.04166 §5.3; docs/algorithms.md#offline), π_ref = the behaviour data:
  L = −α·mean_{D_a} ℓ_θ + (1−α)·mean_{D_r} ℓ_θ + β·mean_s KL(π_ref(·|s) ‖ π_θ(·|s))   (Eq. 10)
(per-set means) with ℓ_θ = log N(a; μ_θ(s), σ_θ(s)) of a dataset action. The KL, two ways (`--kl`):
  sample  KL(π_data‖π_θ) = −E_data ℓ_θ + const: BC on the batch. Then every transition's net
          weight is accepted α/|D_a| + β/N, rejected −(1−α)/|D_r| + β/N: signed-weight BC. A
          negative net weight makes L unbounded below (ℓ_θ of that action → −∞); a positive one
          only reweights BC, so rejected actions are never pushed *away*
          (docs/algorithms.md#pmpo-kl).
  policy  (default) the closed-form KL(π_bc(·|s) ‖ π_θ(·|s)) to a Gaussian BC policy fitted first
          (the `bc` row, one per seed): exact per state (docs/algorithms.md#pmpo-kl), so a rejected
          action can be pushed away from while the KL to the whole behaviour distribution holds π_θ.
Bound (derived as in docs/algorithms.md#offline, per state, balanced labels |D_r| ≈ N/2): the
rejected term pulls μ_θ away with weight (1−α)/|D_r| ≈ 2(1−α)/N, the KL back with β/N, so L is
bounded iff β > 2(1−α). The paper's defaults sit on it (PMPO-R: α = 0, β = 2) or below it
(PMPO-AR: α = β = ½; it diverged here within 300 steps), so the labelled presets with a rejected
term use 1.5 × the bound:

  preset             α     β     terms
  bc                 –     1     the KL/BC term only (no labels): ML on all data
  accept             1     0     ML on accepted transitions only (PMPO-A's default)
  accept-bc          1     1     accepted + KL to the data
  reject-bc          0     3     rejected pushed down + KL to the data (1.5 × bound 2)
  accept-reject-bc   ½     1.5   both + KL to the data (1.5 × bound 1)
  pmpo               α, β from --alpha/--beta

There is no pure "reject" row: −mean_{D_r} ℓ_θ alone has no maximiser (move μ_θ(s) away from
the rejected action, or shrink σ_θ around any other action, and L → −∞); the β·KL is what makes
the negative-only EM estimator bounded (docs/algorithms.md#pmpo). The policy's mean is tanh-bounded
and its std floored (`--policy-mean`, `--min-std`), so even below the bound ℓ_θ stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from anyfeedback.configfile import check_choice, nonneg, positive
from anyfeedback.errors import InputError

_KEBAB = {"source": None, "kebab": True}  # errors name the flag: field 'min-std'


class Preset(NamedTuple):
    alpha: float
    beta: float
    labelled: bool  # False: the accepted/rejected sets are empty (plain BC)


PRESETS: dict[str, Preset] = {
    "bc": Preset(1.0, 1.0, False),
    "accept": Preset(1.0, 0.0, True),
    "accept-bc": Preset(1.0, 1.0, True),
    "reject-bc": Preset(0.0, 3.0, True),
    "accept-reject-bc": Preset(0.5, 1.5, True),
    "pmpo": Preset(0.5, 0.5, True),
}
TABLE_ROWS = ("bc", "accept-bc", "accept", "reject-bc", "accept-reject-bc")  # Table 1's order


@dataclass
class OfflineConfig:
    dataset: str = ""
    """NPZ dataset of transitions (format: anyfeedback/control/offline/dataset.py; docs/results/offline.md)."""
    methods: str = "accept-reject-bc"
    """comma-separated presets: bc, accept, accept-bc, reject-bc, accept-reject-bc, pmpo."""
    alpha: float | None = None
    """α of the `pmpo` preset (others keep theirs)."""
    beta: float | None = None
    """β of the `pmpo` preset (others keep theirs)."""
    kl: str = "policy"
    """KL to the behaviour data: policy (closed form to a BC policy fitted first) | sample (−ℓ_θ,
    i.e. BC on the batch: signed-weight BC)."""
    baseline: str = "policy"
    """labels' V(s): policy (mean of Q over num_samples actions of the BC policy) | value (the
    separately fitted V net)."""
    num_samples: int = 20
    """actions sampled per state for the policy baseline."""
    seed: int = 0
    """first seed; seed i of num_seeds = seed + i (value fit, policy init, batches, evaluation)."""
    num_seeds: int = 3
    """seeds; every method of one seed shares its value function, labels, init and batches."""
    out: str = "runs/offline"
    """run directory: config.json, metrics.jsonl, curves.png, summary.json, report.md,
    policy.safetensors, checkpoint-<step>.safetensors."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    domain: str | None = None
    """dm_control domain to evaluate on (default: the dataset's `domain`)."""
    task: str | None = None
    """dm_control task (default: the dataset's `task`)."""
    action_repeat: int | None = None
    """env steps per action at evaluation (default: the dataset's, else 1)."""
    episode_frames: int = 1000
    """env steps per evaluation episode."""
    value_steps: int = 5000
    """gradient steps of the Q/V fit."""
    policy_steps: int = 5000
    """gradient steps of the policy."""
    batch_size: int = 256
    """transitions per gradient step (value and policy)."""
    hidden: int = 256
    """width of the two hidden layers of every net."""
    lr_value: float = 3e-4
    """Adam learning rate of Q and V."""
    lr_policy: float = 3e-4
    """Adam learning rate of the policy."""
    gamma: float = 0.99
    """discount per dataset step."""
    n_step: int = 3
    """n of the n-step TD targets of Q and V."""
    tau: float = 0.005
    """Polyak rate of the target V."""
    init_std: float = 0.5
    """initial policy std (a Gaussian over the executed action; evaluation runs clip(μ, −1, 1))."""
    policy_mean: str = "tanh"
    """policy mean: tanh (bounded to (−1, 1), so a rejected action's log-prob is bounded below) |
    linear (unbounded: any net negative weight on a rejected action can drive ℓ_θ → −∞)."""
    min_std: float = 0.05
    """floor of the policy std; with a tanh mean, ℓ_θ ≥ −D·(2²/(2·min_std²) + ...) (bounded)."""
    eval_episodes: int = 10
    """evaluation episodes per (method, seed), deterministic mean action."""
    log_every: int = 250
    """gradient steps between metrics rows."""
    threads: int = 1
    """torch CPU threads."""
    checkpoint_every: int = 1000
    """gradient steps between checkpoints within each stage (value fit, BC, the other policies;
    always one at a stage's end)."""
    resume: bool = False
    """continue OUT's run from its newest intact checkpoint, exactly (the config must be unchanged)."""
    progress: bool = True
    """show a progress bar with ETA."""

    def __post_init__(self) -> None:
        if not self.dataset:
            raise InputError("a dataset is required (--dataset FILE.npz)", field="dataset")
        for name in self.method_list():
            if name not in PRESETS:
                raise InputError(
                    f"unknown method '{name}'; choose from {', '.join(PRESETS)}", field="methods"
                )
        nonneg(self, "value_steps", "policy_steps", **_KEBAB)
        positive(self, "num_seeds", "batch_size", "hidden", "n_step", "eval_episodes", **_KEBAB)
        positive(self, "num_samples", "log_every", "threads", "episode_frames", **_KEBAB)
        positive(self, "checkpoint_every", **_KEBAB)
        check_choice(self, "kl", ("policy", "sample"), **_KEBAB)
        check_choice(self, "baseline", ("policy", "value"), **_KEBAB)
        check_choice(self, "policy_mean", ("tanh", "linear"), **_KEBAB)
        if not 0 < self.min_std < self.init_std:
            raise InputError(f"need 0 < min-std < init-std, got {self.min_std}", field="min-std")
        a, b = self.preset("pmpo")[:2]
        if not 0 <= a <= 1 or b < 0:
            raise InputError(f"need 0 <= alpha <= 1 and beta >= 0, got {a}, {b}", field="alpha")

    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def preset(self, name: str) -> Preset:
        p = PRESETS[name]
        if name == "pmpo":
            p = Preset(
                p.alpha if self.alpha is None else self.alpha,
                p.beta if self.beta is None else self.beta,
                True,
            )
        return p
