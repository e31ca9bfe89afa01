"""`AIHFConfig` (`anyfeedback aihf`, Algorithm 1) and `SelfPlayConfig` (`anyfeedback
self-play`): flat dataclasses, one flag per field, values checked in `__post_init__`.

Defaults: spec AIHF §4–5 (authors' code: w_D = w_P = 1, the logistic demo term, KL coefficient
0.05; SPIN: β = 0.1, 3 iterations). The learning rates are the paper-scale ones; the small
experiments pass larger ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from anyfeedback.errors import InputError
from anyfeedback.losses.aihf import DEMO_MODES


def _bad(name: str, problem: str) -> InputError:
    return InputError(problem, source="config", field=name)


def _check_common(cfg) -> None:
    if not cfg.model:
        raise _bad("model", "is required (the start policy, e.g. the SFT model)")
    if cfg.demo_weight < 0 or cfg.pref_weight < 0:
        raise _bad("demo_weight", "--demo-weight and --pref-weight must be >= 0")
    if cfg.demo_weight == 0 and cfg.pref_weight == 0:
        raise _bad("pref_weight", "--demo-weight and --pref-weight are both 0: nothing to learn")
    if cfg.demo_weight > 0 and not cfg.demos:
        raise _bad(
            "demos",
            "a file of demonstrations {prompt, completion} is required when --demo-weight > 0",
        )
    if cfg.pref_weight > 0 and not cfg.pairs:
        raise _bad("pairs", "a file of preference pairs is required when --pref-weight > 0")
    if cfg.beta < 0:
        raise _bad("beta", f"must be >= 0, got {cfg.beta}")
    if cfg.temperature <= 0 or not 0 < cfg.top_p <= 1:
        raise _bad("temperature", "temperature must be > 0 and top_p in (0, 1]")
    for name in ("max_new_tokens", "max_length", "eval_size"):
        if getattr(cfg, name) < 1:
            raise _bad(name, f"must be >= 1, got {getattr(cfg, name)}")


@dataclass
class AIHFConfig:
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
    temperature: float = 1.0
    """Sampling temperature (always sampling, never greedy: y^A must be a draw from π_k)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_length: int = 256
    """Maximum prompt + completion tokens (policy and reward model)."""
    gold_reward: str | None = None
    """Reward to evaluate with (e.g. 'sentiment', module:function or a classifier; not trained on)."""
    eval_prompts: str | None = None
    """Held-out prompts for the gold reward and the KL to the start model (a feedback source)."""
    eval_size: int = 64
    """Held-out prompts used from --eval-prompts."""
    eval_pairs: str | None = None
    """Held-out pairs for the reward model's pairwise accuracy."""
    eval_every: int = 5
    """Evaluate every N iterations (and at the start and end; 0: start and end only)."""
    lora_r: int = 0
    """LoRA rank of the policy (0: full fine-tuning)."""
    bf16: bool = False
    """bfloat16 autocast."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    save_steps: int = 0
    """Checkpoint policy and reward model every N iterations (0: only the final models)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        _check_common(self)
        if self.demo_mode not in DEMO_MODES:
            raise _bad(
                "demo_mode", f"must be one of {', '.join(DEMO_MODES)}, got {self.demo_mode!r}"
            )
        if self.k < 2:
            raise _bad("k", f"RLOO needs at least 2 samples per prompt, got {self.k}")
        if self.reward_clip < 0:
            raise _bad("reward_clip", f"must be >= 0, got {self.reward_clip}")
        for name in ("iterations", "policy_steps", "prompts_per_step", "reward_batch_size"):
            if getattr(self, name) < 1:
                raise _bad(name, f"must be >= 1, got {getattr(self, name)}")
        for name in (
            "reward_updates",
            "reward_warmup_steps",
            "eval_every",
            "save_steps",
            "reward_learning_rate",
            "learning_rate",
            "reward_weight_decay",
        ):
            if getattr(self, name) < 0:
                raise _bad(name, f"must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SelfPlayConfig:
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
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_length: int = 256
    """Maximum prompt + completion tokens."""
    gold_reward: str | None = None
    """Reward to evaluate with (not trained on)."""
    eval_prompts: str | None = None
    """Held-out prompts for the gold reward and the KL to the start model."""
    eval_size: int = 64
    """Held-out prompts used from --eval-prompts."""
    lora_r: int = 0
    """LoRA rank (0: full fine-tuning)."""
    bf16: bool = False
    """bfloat16 autocast."""
    seed: int = 0
    """Seed for data order and sampling."""
    save_steps: int = 0
    """Checkpoint every N optimizer steps (0: only the final model)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        _check_common(self)
        for name in ("iterations", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise _bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.learning_rate < 0 or self.save_steps < 0:
            raise _bad("learning_rate", "--learning-rate and --save-steps must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
