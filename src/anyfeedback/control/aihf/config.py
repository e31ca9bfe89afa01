"""`AIHFControlConfig` (`anyfeedback aihf-control`): one flat dataclass, one flag per field,
values checked in `__post_init__`. Defaults: App. A.2.1 (reward MLP 64×64, Adam 1e-4) and the
authors' MuJoCo code (state-only reward clamped at ±10, w_D = w_P = 1); SAC as in `control`.

Units: `steps`, `learning_starts`, `eval_every` count env steps (frames); one agent step is
`action_repeat` frames (read from the pool). The domain, task and action repeat are the pool's.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyfeedback.configfile import check_choice, check_range, nonneg, positive
from anyfeedback.errors import InputError

_KEBAB = {"source": None, "kebab": True}  # errors name the flag: field 'pref-noise'

# name -> (uses demonstrations, uses preferences); BC is trained apart (bc.py), the rest are
# reward learners with the SAC inner loop (docs/algorithms.md#aihf: w_D = 0 is RLHF, w_P = 0 is
# ML-IRL).
METHODS = {
    "aihf": (True, True),
    "rlhf": (False, True),
    "ml-irl": (True, False),
    "bc": (True, False),
}


@dataclass
class AIHFControlConfig:
    data: str = ""
    """Trajectory pool (.npz from `aihf_control.data.save_pool`): obs, act, reward, quality."""
    out: str = "runs/aihf_control"
    """Run directory: config.json, metrics.jsonl, summary.json, curves.png, report.md,
    checkpoint-<frames>.safetensors."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    methods: str = "aihf,rlhf,ml-irl,bc"
    """Comma-separated: aihf | rlhf (BT reward on the pairs, then RL) | ml-irl | bc."""
    seed: int = 0
    """First seed; member seeds are seed..seed+num_seeds-1 (weights, data draws, envs)."""
    num_seeds: int = 3
    """Seeds per method, all trained side by side as one batched program."""
    demo_quality: str = "expert"
    """Quality label (in the pool) of the demonstration trajectories."""
    num_demos: int = 5
    """Demonstration trajectories per member."""
    num_pairs: int = 100
    """Preference pairs (segment vs segment) per member."""
    pref_noise: float = 0.0
    """Probability that a pair's label is flipped (0 = labels by true segment return)."""
    segment_length: int = 25
    """Agent steps per preference segment."""
    demo_weight: float = 1.0
    """w_D of AIHF (and of ML-IRL); RLHF uses 0."""
    pref_weight: float = 1.0
    """w_P of AIHF (and of RLHF); ML-IRL uses 0."""
    demo_mode: str = "irl_linear"
    """Demo term: irl_linear (mean r(demos) − mean r(policy samples), ML-IRL) | irl_logistic."""
    reward_actions: bool = False
    """r_φ(s, a) instead of the state-only r_φ(s) of the authors' code."""
    reward_hidden: int = 64
    """Width of the reward MLP's two hidden layers (App. A.2.1: 64)."""
    reward_lr: float = 1e-4
    """Adam learning rate of the reward (App. A.2.1: 1e-4)."""
    reward_clip: float = 10.0
    """Clamp r_φ to ±this (authors' code: 10); 0 = off."""
    reward_batch_size: int = 64
    """Demonstration states and policy states per member and reward step."""
    pair_batch_size: int = 32
    """Preference pairs per member and reward step."""
    reward_updates: int = 20
    """Reward steps after each policy phase."""
    reward_warmup_steps: int = 500
    """Bradley–Terry steps on the pairs before the loop (θ_0; methods with preferences only)."""
    episodes_per_reward_phase: int = 1
    """Policy phase: this many episodes of SAC steps (one per agent step) before each reward phase."""
    steps: int = 30_000
    """Env steps (frames) of SAC interaction per member."""
    learning_starts: int = 5000
    """Env steps of uniform random actions before SAC updates start."""
    hidden: int = 128
    """SAC policy/critic width."""
    batch_size: int = 128
    """SAC replay batch (rewards relabelled by r_φ when sampled)."""
    lr: float = 3e-4
    """Adam learning rate of SAC's actor and critic."""
    gamma: float = 0.99
    """Discount per agent step."""
    init_std: float = 0.5
    """Initial pre-tanh policy std."""
    bc_steps: int = 2000
    """Adam steps of behaviour cloning (batch `batch_size`, lr `lr`)."""
    eval_every: int = 5000
    """Env steps between evaluations of the true return (deterministic policy)."""
    eval_episodes: int = 3
    """Episodes per evaluation and member."""
    held_out_pairs: int = 500
    """Clean pairs from held-out trajectories for the reward's pairwise accuracy."""
    threads: int = 1
    """torch CPU threads."""
    checkpoint_every: int = 5000
    """Env steps between checkpoints (at phase ends; always one at the end, and one after BC)."""
    resume: bool = False
    """Continue OUT's run from its newest intact checkpoint, exactly (the config must be unchanged)."""
    progress: bool = True
    """Show a progress bar with ETA."""

    def __post_init__(self) -> None:
        if not self.data:
            raise InputError("is required (a trajectory pool .npz)", field="data")
        names = self.method_list()
        bad = [m for m in names if m not in METHODS]
        if bad or not names:
            raise InputError(
                f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}",
                field="methods",
            )
        check_range(self, "pref_noise", 0, 0.5, **_KEBAB)
        from anyfeedback.losses.aihf import DEMO_MODES  # torch: not at import (fast --help)

        check_choice(self, "demo_mode", DEMO_MODES, **_KEBAB)
        positive(self, "num_seeds", "num_demos", "num_pairs", "segment_length", **_KEBAB)
        positive(self, "reward_hidden", "reward_batch_size", "pair_batch_size", **_KEBAB)
        positive(self, "episodes_per_reward_phase", "hidden", "batch_size", "eval_every", **_KEBAB)
        positive(self, "eval_episodes", "held_out_pairs", "threads", "checkpoint_every", **_KEBAB)
        nonneg(self, "steps", "learning_starts", "reward_updates", "reward_warmup_steps", **_KEBAB)
        nonneg(self, "bc_steps", "reward_clip", "demo_weight", "pref_weight", **_KEBAB)
        check_range(self, "reward_lr", 0, low_open=True, **_KEBAB)
        check_range(self, "lr", 0, low_open=True, **_KEBAB)
        check_range(self, "gamma", 0, 1, low_open=True, high_open=True, **_KEBAB)

    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def weights(self, method: str) -> tuple[float, float]:
        """(w_D, w_P) of a reward-learning method."""
        demos, prefs = METHODS[method]
        return (self.demo_weight if demos else 0.0, self.pref_weight if prefs else 0.0)
