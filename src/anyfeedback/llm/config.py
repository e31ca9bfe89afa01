"""`TrainConfig`: every knob of `anyfeedback train`, flat, grouped by concern.

`ObjectiveConfig` (the loss: method, α, β, reductions, method weights, π_ref refresh) and
`OptimConfig` (the optimisation: AdamW and its schedule, batches, LoRA, precision, checkpoints,
seed) are what a `Trainer` needs, with `model`/`out`/`max_length` in `PolicyStepConfig`. Loops
that make their own samples (`anyfeedback online`, `aihf`, `self-play`) build a `PolicyStepConfig`;
`TrainConfig` adds the feedback data and its batching. The flags and the keys of the saved
`config.json` are the flat field names, whatever class declares them.

Each field has a one-line docstring (the CLI help) and is a flag (`learning_rate` →
`--learning-rate`); `--config FILE` (YAML or JSON of the same fields) sets them too, and flags
override the file. Values are checked in `__post_init__`; the resolved config is saved with the run.
Defaults follow the papers (PMPO arXiv 2410.04166 §5; DPO arXiv 2305.18290; KTO arXiv 2402.01306)
and TRL's flag names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyfeedback.configfile import (
    build_config,
    check_choice,
    check_range,
    init_fields,
    nonneg,
    positive,
)
from anyfeedback.errors import InputError

METHODS = ("pmpo", "dpo", "ipo", "kto", "sft", "aihf-dpo", "self-play-aihf", "rloo")
# trained by loops that generate (`anyfeedback self-play`, `anyfeedback aihf`), not by `train`
GENERATING_METHODS = ("self-play-aihf", "rloo")
# β when the user gives none: PMPO-A (α=1) 0, PMPO-R (α=0) 2, PMPO-AR 0.5 (PMPO §3); DPO/KTO 0.1;
# IPO's τ 0.1 (docs/algorithms.md#ipo). SFT has no β.
DEFAULT_BETA = {
    "dpo": 0.1,
    "ipo": 0.1,
    "kto": 0.1,
    "sft": 0.0,
    "aihf-dpo": 0.1,
    "self-play-aihf": 0.1,
    "rloo": 0.05,
}


def _pmpo_default_beta(alpha: float) -> float:
    return 0.0 if alpha >= 1.0 else 2.0 if alpha <= 0.0 else 0.5


@dataclass
class ObjectiveConfig:
    """The loss of a policy step: method, α/β, reductions, method weights, π_ref refresh."""

    method: str = "pmpo"
    """Objective: pmpo | dpo | ipo | kto | sft | aihf-dpo (self-play-aihf and rloo are trained by
    `anyfeedback self-play` and `anyfeedback aihf`)."""
    alpha: float | None = None
    """PMPO α: weight of accepted (α) vs rejected (1−α) feedback (PMPO Eq. 10); default 0.5,
    or 1 on accepted-only and 0 on rejected-only data."""
    beta: float | None = None
    """β: PMPO KL weight, DPO/KTO inverse temperature, IPO τ (default per method and α)."""
    pmpo_normalization: str = "per_set"
    """PMPO means: per_set (mean over each set) or global (both sums over all samples)."""
    logp_reduction: str = "auto"
    """Sequence log-prob: sum | mean (per token) | auto (mean for IPO, sum otherwise)."""
    desirable_weight: float = 1.0
    """KTO λ_D, the weight of desirable (accepted) samples."""
    undesirable_weight: float = 1.0
    """KTO λ_U, the weight of undesirable (rejected) samples."""
    demo_weight: float = 1.0
    """AIHF-DPO w_D, the weight of the demonstration term (0 reproduces DPO exactly)."""
    pref_weight: float = 1.0
    """AIHF-DPO w_P, the weight of the DPO term on the pairs (0 with --demo-mode nll is SFT)."""
    demo_mode: str = "nll"
    """AIHF-DPO demo term: nll (DPO + SFT) or contrastive (demo ≻ one π_ref sample, made once)."""
    ref_update_every: int = 0
    """Refresh π_ref ← π_θ every N optimizer steps (0: keep the initial model)."""
    ref_ema: float = 0.0
    """EMA rate τ of π_ref ← (1−τ)·π_ref + τ·π_θ after every step (0: off)."""
    kl_chunk_size: int = 1024
    """Tokens per chunk of the dense KL / log-softmax."""
    log_kl_every: int = 10
    """DPO/IPO/KTO/SFT: compute the dense KL(π_ref‖π_θ) diagnostic every N steps (0: never)."""

    # whether the user set α / β (one-sided data picks them otherwise; `fit.one_sided_defaults`)
    alpha_given: bool = dataclasses.field(default=False, init=False, repr=False)
    beta_given: bool = dataclasses.field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        check_choice(self, "method", METHODS)
        check_choice(self, "pmpo_normalization", ("per_set", "global"))
        check_choice(self, "logp_reduction", ("auto", "sum", "mean"))
        check_choice(self, "demo_mode", ("nll", "contrastive"))
        positive(self, "kl_chunk_size")
        nonneg(self, "ref_update_every", "log_kl_every", "demo_weight", "pref_weight")
        nonneg(self, "desirable_weight", "undesirable_weight")
        check_range(self, "ref_ema", 0.0, 1.0, high_open=True)
        if self.ref_ema and self.ref_update_every:
            raise _bad("ref_ema", "choose either --ref-ema or --ref-update-every, not both")
        if self.method in ("aihf-dpo", "self-play-aihf") and not (
            self.demo_weight > 0 or self.pref_weight > 0
        ):
            raise _bad(
                "pref_weight", "--demo-weight and --pref-weight are both 0: nothing to learn"
            )
        self._resolve_beta()

    def _resolve_beta(self) -> None:
        self.alpha_given = self.alpha is not None or self.alpha_given
        self.beta_given = self.beta is not None or self.beta_given
        if self.alpha is None:
            self.alpha = 0.5
        check_range(self, "alpha", 0.0, 1.0)
        if self.beta is None:
            if self.method == "pmpo":
                self.beta = _pmpo_default_beta(self.alpha)
            else:
                self.beta = DEFAULT_BETA[self.method]
        if self.beta < 0 or (self.method == "ipo" and self.beta == 0):
            raise _bad("beta", f"must be > 0, got {self.beta}")
        if self.method == "pmpo":
            from anyfeedback.losses import check_pmpo_beta

            check_pmpo_beta(self.alpha, self.beta, stacklevel=5)  # warns if β < 1 − α

    @property
    def average_logps(self) -> bool:
        """Length-normalised ℓ (per-token mean) instead of the sum (docs/algorithms.md#ipo)."""
        if self.logp_reduction == "auto":
            return self.method == "ipo"
        return self.logp_reduction == "mean"


@dataclass
class OptimConfig:
    """The optimisation of a policy step: AdamW, schedule, batches, LoRA, precision, checkpoints."""

    learning_rate: float = 1e-6
    """Peak learning rate of AdamW."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule after warmup: constant | linear | cosine."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    warmup_ratio: float = 0.0
    """Linear warmup as a fraction of the run's steps, used when --warmup-steps is 0 (transformers'
    rule: ceil(ratio × steps))."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 = no clipping; the norm is still logged)."""
    max_steps: int = -1
    """Optimizer steps to run (-1: --num-epochs over the data)."""
    num_epochs: int = 1
    """Epochs over the data when --max-steps is -1."""
    batch_size: int = 8
    """Records per micro-batch per device (a pair counts as one record)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step; global batch = batch × accumulation × processes."""
    seed: int = 42
    """Seed for data order, initialisation of LoRA, and sampling."""
    lora_r: int = 0
    """LoRA rank (0: full fine-tuning). With LoRA, π_ref is the base with the adapter disabled."""
    lora_alpha: float = 16.0
    """LoRA scaling α."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch."""
    lora_target_modules: str = "all-linear"
    """Comma-separated module names for LoRA, or all-linear."""
    merge_lora: bool = False
    """Merge the adapter into the base weights when saving the final model."""
    bf16: bool = False
    """bfloat16 autocast (GPU, or recent CPUs)."""
    fp16: bool = False
    """float16 autocast with loss scaling (GPU only)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    torch_compile: bool = False
    """Compile the policy with torch.compile (dynamic shapes)."""
    torch_compile_backend: str = "inductor"
    """torch.compile backend."""
    attn_implementation: str | None = None
    """Attention kernel passed to from_pretrained (sdpa, eager, flash_attention_2)."""
    trust_remote_code: bool = False
    """Allow model code from the model repository (off unless asked for)."""
    disable_dropout: bool = True
    """Zero all dropout in the policy, so π_θ = π_ref gives KL 0 and ρ = 0."""
    save_steps: int = 500
    """Checkpoint every N optimizer steps (0: only the final model)."""
    save_total_limit: int = 2
    """Checkpoints to keep (oldest deleted first)."""
    resume: bool = False
    """Continue from the latest checkpoint in --out."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    tensorboard: bool = False
    """Same as --report-to tensorboard (kept for old commands): OUT/tensorboard."""
    progress: bool = True
    """Show a progress bar with ETA on the console (a plain line every --logging-steps when
    stdout is not a terminal)."""

    # --- trackers and the Hub (names as in transformers/TRL) ---
    report_to: str = "none"
    """Trackers: none | tensorboard | wandb | mlflow | trackio | all, or a comma list."""
    run_name: str | None = None
    """Run name shown by the trackers (default: the name of --out)."""
    push_to_hub: bool = False
    """Upload the final model directory to the Hugging Face Hub (needs --hub-model-id, a token)."""
    hub_model_id: str | None = None
    """Hub repository (owner/name) for --push-to-hub."""
    logging_steps: int = 10
    """Print a plain progress line every N steps when stdout is not a terminal."""

    def __post_init__(self) -> None:
        check_choice(self, "lr_scheduler_type", ("constant", "linear", "cosine"))
        check_range(self, "warmup_ratio", 0.0, 1.0)
        positive(self, "batch_size", "gradient_accumulation_steps", "num_epochs")
        nonneg(self, "learning_rate", "warmup_steps", "weight_decay", "max_grad_norm", "lora_r")
        nonneg(self, "save_steps")
        if self.max_steps == 0 or self.max_steps < -1:
            raise _bad("max_steps", f"must be >= 1 or -1 (use epochs), got {self.max_steps}")
        if self.bf16 and self.fp16:
            raise _bad("fp16", "choose either --bf16 or --fp16")
        positive(self, "logging_steps")
        from anyfeedback.trackers import parse_report_to

        parse_report_to(self.report_to)
        if self.push_to_hub and not self.hub_model_id:
            raise _bad("hub_model_id", "--push-to-hub needs --hub-model-id owner/name")


@dataclass
class PolicyStepConfig(ObjectiveConfig, OptimConfig):
    """What a `Trainer` needs: the model, the run directory, the objective and the optimisation
    (no data: `train` adds it; the online, AIHF and self-play loops make their own samples)."""

    model: str = ""
    """Model name or local directory (Hugging Face format)."""
    out: str = "runs/train"
    """Run directory: config, metrics, checkpoints, final model, report."""
    max_length: int = 512
    """Maximum tokens of prompt + completion; longer completions are truncated (counted)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise _bad("model", "is required (a model name or directory)")
        positive(self, "max_length")
        OptimConfig.__post_init__(self)
        ObjectiveConfig.__post_init__(self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in init_fields(type(self))}


@dataclass
class TrainConfig(PolicyStepConfig):
    """Offline fine-tuning of a causal LM from a feedback file (see `anyfeedback train --help`)."""

    data: str = ""
    """Feedback file, directory or dataset id (unpaired, paired or demonstrations)."""
    data_kind: str | None = None
    """Force the record kind of --data (unpaired | paired | demonstration) instead of inferring it."""
    demo_data: str | None = None
    """Demonstrations for aihf-dpo (a file of {prompt, completion})."""
    demo_batch_size: int | None = None
    """Demonstrations per micro-batch for aihf-dpo (default: --batch-size)."""
    demo_max_new_tokens: int = 64
    """Length of the reference samples generated once for --demo-mode contrastive."""
    max_prompt_length: int | None = None
    """Keep only the last N tokens of each prompt (TRL's keep_end truncation; default: no limit,
    prompts that leave no room under --max-length are an error)."""
    add_eos: bool = True
    """Append EOS to completions that do not already end with it."""
    share_prompt: bool = True
    """Pairs: compute each prompt once, chosen and rejected after it under a block-causal mask
    (checked against separate rows at start-up; off if the model's attention ignores it)."""
    group_by_length: bool = True
    """Length-bucketed batches: sort within chunks of --bucket-batches batches to cut padding."""
    bucket_batches: int = 64
    """Batches per length-sorting chunk (bigger sorts better, shuffles less)."""
    padding_free: bool = False
    """Each micro-batch as one row without padding, positions restarting per sequence (block-
    diagonal attention); same numbers as padded rows. Off by default: slower on CPU with sdpa
    (docs/results/llm-speed.md); meant for flash-attention varlen on GPU."""
    # dataset splits and evaluation (names as in transformers/TRL)
    dataset_config: str | None = None
    """Configuration (subset) name of a Hub dataset, as `datasets.load_dataset(id, name)`."""
    split: str = "train"
    """Split of --data to train on (Hub ids, saved DatasetDicts, split-named local files)."""
    eval_data: str | None = None
    """Held-out feedback to evaluate on (default: --data itself with --eval-split)."""
    eval_split: str | None = None
    """Split of --eval-data (or of --data) to evaluate on, e.g. test_prefs."""
    eval_fraction: float = 0.0
    """Hold out this fraction of --data for evaluation (0: none; seeded by --seed)."""
    eval_steps: int = 0
    """Evaluate every N optimizer steps (0: only at the end, when there is an eval set)."""
    per_device_eval_batch_size: int = 8
    """Records per evaluation batch per device."""
    metric_for_best_model: str | None = None
    """Eval metric that picks the best checkpoint, e.g. eval/loss or eval/rewards/accuracies."""
    load_best_model_at_end: bool = False
    """Save the best evaluated weights (by --metric-for-best-model) as the final model."""

    def __post_init__(self) -> None:
        check_choice(self, "method", METHODS)
        if not self.model:
            raise _bad("model", "is required (a model name or directory)")
        if not self.data:
            raise _bad("data", "is required (a feedback file, directory or dataset id)")
        positive(self, "bucket_batches", "demo_max_new_tokens", "max_prompt_length")
        PolicyStepConfig.__post_init__(self)
        if self.method == "kto" and self.batch_size < 2:
            raise _bad("batch_size", "KTO's reference point needs at least 2 records per batch")
        self._check_eval_fields()

    def _check_eval_fields(self) -> None:
        check_range(self, "eval_fraction", 0.0, 1.0, high_open=True)
        if self.eval_fraction and (self.eval_data or self.eval_split):
            raise _bad("eval_fraction", "choose --eval-fraction or --eval-data/--eval-split")
        positive(self, "per_device_eval_batch_size")
        nonneg(self, "eval_steps")
        has_eval = bool(self.eval_data or self.eval_split or self.eval_fraction)
        if (self.metric_for_best_model or self.load_best_model_at_end) and not has_eval:
            raise _bad(
                "metric_for_best_model",
                "needs an eval set (--eval-data, --eval-split or --eval-fraction)",
            )
        if self.load_best_model_at_end and not self.metric_for_best_model:
            self.metric_for_best_model = "eval/loss"  # transformers' default

    def to_dict(self) -> dict[str, Any]:
        from anyfeedback.feedback.loaders import source_name

        values = super().to_dict()
        for name in ("data", "eval_data"):  # in-memory data (Python API) is saved as a name
            if values[name] is not None:
                values[name] = source_name(values[name])
        return values


def _bad(name: str, problem: str) -> InputError:
    return InputError(problem, source="config", field=name)


def config_fields() -> list[dataclasses.Field]:
    """The user-settable fields of `TrainConfig`, in declaration order."""
    return init_fields(TrainConfig)


def make_config(file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults ← `file` ← `overrides` (None values in overrides mean "not given")."""
    return build_config(TrainConfig, file, overrides)
