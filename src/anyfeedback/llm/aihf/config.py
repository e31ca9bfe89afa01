"""`AIHFConfig` (`anyfeedback aihf`, Algorithm 1) and `SelfPlayConfig` (`anyfeedback
self-play`): flat dataclasses, one flag per field, values checked in `__post_init__`.

Defaults (docs/algorithms.md#aihf; the authors' code: w_D = w_P = 1, the logistic demo term,
KL coefficient 0.05; SPIN: β = 0.1, 3 iterations). The learning rates are the paper-scale ones; the small
experiments pass larger ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from anyfeedback.configfile import check_choice, check_range, nonneg, positive
from anyfeedback.errors import InputError


def _bad(name: str, problem: str) -> InputError:
    return InputError(problem, source="config", field=name)


def _check_common(cfg) -> None:
    """The checks AIHF and self-play share (the demo/pair weights need their files)."""
    if not cfg.model:
        raise _bad("model", "is required (the start policy, e.g. the SFT model)")
    nonneg(cfg, "demo_weight", "pref_weight")
    if cfg.demo_weight == 0 and cfg.pref_weight == 0:
        raise _bad("pref_weight", "--demo-weight and --pref-weight are both 0: nothing to learn")
    if cfg.demo_weight > 0 and not cfg.demos:
        raise _bad(
            "demos",
            "a file of demonstrations {prompt, completion} is required when --demo-weight > 0",
        )
    if cfg.pref_weight > 0 and not cfg.pairs:
        raise _bad("pairs", "a file of preference pairs is required when --pref-weight > 0")
    nonneg(cfg, "beta")
    check_range(cfg, "temperature", 0, low_open=True)
    check_range(cfg, "top_p", 0, 1, low_open=True)
    positive(cfg, "max_new_tokens", "max_length", "eval_size")


@dataclass
class SamplingEvalConfig:
    """Fields the AIHF and self-play loops share: sampling, held-out evaluation, model setup."""

    temperature: float = 1.0
    """Sampling temperature (always sampling, never greedy: samples must be draws from π)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_length: int = 256
    """Maximum prompt + completion tokens (policy and, for aihf, the reward model)."""
    gold_reward: str | None = None
    """Reward to evaluate with (e.g. 'sentiment', module:function or a classifier; not trained on)."""
    eval_prompts: str | None = None
    """Held-out prompts for the gold reward and the KL to the start model (a feedback source)."""
    eval_size: int = 64
    """Held-out prompts used from --eval-prompts."""
    lora_r: int = 0
    """LoRA rank of the policy (0: full fine-tuning)."""
    bf16: bool = False
    """bfloat16 autocast."""
    progress: bool = True
    """Show a progress bar."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AIHFConfig(SamplingEvalConfig):
    """AIHF Algorithm 1: alternate RLOO policy steps and one joint reward step."""

    model: str = ""
    """Start policy π_0 = π_ref (the SFT model): name or directory."""
    demos: str = ""
    """Demonstrations {prompt, completion} (the demo term; may be empty with --demo-weight 0)."""
    pairs: str = ""
    """Preference pairs {prompt, chosen, rejected} (the BT term; optional with --pref-weight 0)."""
    out: str = "runs/aihf"
    """Run directory: config, metrics, checkpoints, policy (OUT/policy), reward model, report."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    resume: bool = False
    """Continue from the newest iteration whose policy and reward checkpoints are intact
    (--iterations may grow; nothing else)."""
    prompts: str | None = None
    """RL prompts (a feedback source; default: the prompts of --demos and --pairs)."""
    reward_model: str | None = None
    """Initial reward model: a causal LM backbone (fresh head) or a trained one (default --model)."""
    demo_weight: float = 1.0
    """w_D, weight of the demonstration term (0: RLHF with an interleaved BT reward model)."""
    pref_weight: float = 1.0
    """w_P, weight of the Bradley–Terry term (0: ML-IRL on the demonstrations)."""
    demo_mode: str = "irl_logistic"
    """Demo term: irl_linear (−(r(y^E) − r(y^A)), the exact ML-IRL gradient, 1/β folded into w_D)
    or irl_logistic (−log σ(r(y^E) − r(y^A)), the authors' LLM code)."""
    beta: float = 0.05
    """KL coefficient of the RL step, β·KL(π‖π_ref) (trlx/TRL initial value 0.05)."""
    reward_clip: float = 10.0
    """Clamp r to ±this (the linear demo term is unbounded; the authors clamp at 10). 0: off."""
    truncated_penalty: float = 0.0
    """Subtracted from the reward of an RLOO sample that ends without EOS (cut at
    --max-new-tokens). 0 (default, TRL's `missing_eos_penalty=None`): truncated samples are
    scored like finished ones; > 0 discourages running on (docs/algorithms.md#rloo)."""
    reward_learning_rate: float = 1e-5
    """AdamW learning rate of the reward model."""
    reward_weight_decay: float = 0.0
    """AdamW weight decay of the reward model."""
    reward_batch_size: int = 8
    """Demonstrations (each with a fresh agent sample) and pairs per reward step."""
    reward_updates: int = 1
    """Reward steps per iteration (0: a frozen reward, i.e. RLHF with a given reward model)."""
    reward_warmup_steps: int = 0
    """Bradley–Terry steps on the pairs before the loop (θ_0 BT-pretrained; 0: fresh head)."""
    iterations: int = 20
    """Outer iterations K of Algorithm 1."""
    policy_steps: int = 2
    """RLOO policy steps per iteration (the policy tracks the reward on a faster timescale)."""
    prompts_per_step: int = 8
    """Prompts per RLOO step."""
    k: int = 4
    """Samples per prompt in a RLOO step (leave-one-out baseline; >= 2)."""
    learning_rate: float = 1e-6
    """Peak AdamW learning rate of the policy."""
    max_new_tokens: int = 32
    """Tokens generated per completion (RL samples, agent samples, evaluation)."""
    eval_pairs: str | None = None
    """Held-out pairs for the reward model's pairwise accuracy."""
    eval_every: int = 5
    """Evaluate every N iterations (and at the start and end; 0: start and end only)."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    save_steps: int = 0
    """Checkpoint policy and reward model every N iterations (0: only the final models)."""

    def __post_init__(self) -> None:
        _check_common(self)
        from anyfeedback.losses.aihf import DEMO_MODES  # torch: not at import (fast --help)

        check_choice(self, "demo_mode", DEMO_MODES)
        if self.k < 2:
            raise _bad("k", f"RLOO needs at least 2 samples per prompt, got {self.k}")
        nonneg(self, "reward_clip", "truncated_penalty")
        positive(self, "iterations", "policy_steps", "prompts_per_step", "reward_batch_size")
        nonneg(self, "reward_updates", "reward_warmup_steps", "eval_every", "save_steps")
        nonneg(self, "reward_learning_rate", "learning_rate", "reward_weight_decay")


@dataclass
class SelfPlayConfig(SamplingEvalConfig):
    """Self-Play AIHF (SPIN on demonstrations + DPO on pairs, opponent π_t) and SPIN (w_P = 0)."""

    model: str = ""
    """Start policy π_0 (the SFT model): name or directory."""
    demos: str = ""
    """Demonstrations {prompt, completion}: each iteration samples y' ∼ π_t on their prompts."""
    pairs: str = ""
    """Preference pairs (the DPO term; optional with --pref-weight 0, which is SPIN)."""
    out: str = "runs/self-play"
    """Run directory: config, metrics, checkpoints, final model (OUT/model), report."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    resume: bool = False
    """Continue from the latest intact checkpoint in --out (--iterations may grow; nothing else)."""
    demo_weight: float = 1.0
    """w_D, weight of the SPIN term (0: iterated DPO with reference π_t)."""
    pref_weight: float = 1.0
    """w_P, weight of the DPO term on the pairs (0: SPIN)."""
    beta: float = 0.1
    """β (SPIN's λ) of both terms."""
    iterations: int = 3
    """Self-play iterations T (opponent and samples move to π_t at every one)."""
    epochs: int = 2
    """Epochs over the demonstrations per iteration."""
    batch_size: int = 8
    """Demonstrations per micro-batch (plus as many pairs, when there are pairs)."""
    learning_rate: float = 5e-7
    """AdamW learning rate."""
    max_new_tokens: int = 32
    """Tokens generated per opponent sample and per evaluation completion."""
    seed: int = 0
    """Seed for data order and sampling."""
    save_steps: int = 0
    """Checkpoint every N optimizer steps (0: only the final model)."""

    def __post_init__(self) -> None:
        _check_common(self)
        positive(self, "iterations", "epochs", "batch_size")
        nonneg(self, "learning_rate", "save_steps")
