"""`TrainConfig`: every knob of `anyfeedback train`, one flat dataclass.

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

from anyfeedback.errors import InputError

METHODS = ("pmpo", "dpo", "ipo", "kto", "sft", "aihf-dpo", "self-play-aihf", "rloo")
# trained by loops that generate (`anyfeedback self-play`, `anyfeedback aihf`), not by `train`
GENERATING_METHODS = ("self-play-aihf", "rloo")
# β when the user gives none: PMPO-A (α=1) 0, PMPO-R (α=0) 2, PMPO-AR 0.5 (PMPO §3); DPO/KTO 0.1;
# IPO's τ 0.1 (BASELINES). SFT has no β.
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
class TrainConfig:
    """Offline fine-tuning of a causal LM from a feedback file (see `anyfeedback train --help`)."""

    model: str = ""
    """Model name or local directory (Hugging Face format)."""
    data: str = ""
    """Feedback file, directory or dataset id (unpaired, paired or demonstrations)."""
    method: str = "pmpo"
    """Objective: pmpo | dpo | ipo | kto | sft | aihf-dpo (self-play-aihf and rloo are trained by
    `anyfeedback self-play` and `anyfeedback aihf`)."""
    out: str = "runs/train"
    """Run directory: config, metrics, checkpoints, final model, report."""
    data_kind: str | None = None
    """Force the record kind of --data (unpaired | paired | demonstration) instead of inferring it."""
    demo_data: str | None = None
    """Demonstrations for aihf-dpo (a file of {prompt, completion})."""

    alpha: float = 0.5
    """PMPO α: weight of accepted (α) vs rejected (1−α) feedback (PMPO Eq. 10)."""
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
    demo_batch_size: int | None = None
    """Demonstrations per micro-batch for aihf-dpo (default: --batch-size)."""
    demo_max_new_tokens: int = 64
    """Length of the reference samples generated once for --demo-mode contrastive."""

    max_length: int = 512
    """Maximum tokens of prompt + completion; longer completions are truncated (counted)."""
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

    learning_rate: float = 1e-6
    """Peak learning rate of AdamW."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule after warmup: constant | linear | cosine."""
    warmup_steps: int = 0
    """Linear warmup steps."""
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

    ref_update_every: int = 0
    """Refresh π_ref ← π_θ every N optimizer steps (0: keep the initial model)."""
    ref_ema: float = 0.0
    """EMA rate τ of π_ref ← (1−τ)·π_ref + τ·π_θ after every step (0: off)."""

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
    kl_chunk_size: int = 1024
    """Tokens per chunk of the dense KL / log-softmax."""
    log_kl_every: int = 10
    """DPO/IPO/KTO/SFT: compute the dense KL(π_ref‖π_θ) diagnostic every N steps (0: never)."""

    save_steps: int = 500
    """Checkpoint every N optimizer steps (0: only the final model)."""
    save_total_limit: int = 2
    """Checkpoints to keep (oldest deleted first)."""
    resume: bool = False
    """Continue from the latest checkpoint in --out."""
    tensorboard: bool = False
    """Also log metrics to TensorBoard under OUT/tensorboard (needs the tensorboard package)."""
    progress: bool = True
    """Show a progress bar with ETA on the console."""

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> InputError:
            return InputError(problem, source="config", field=name)

        if self.method not in METHODS:
            raise bad("method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.model:
            raise bad("model", "is required (a model name or directory)")
        if not self.data:
            raise bad("data", "is required (a feedback file, directory or dataset id)")
        choices = {
            "pmpo_normalization": ("per_set", "global"),
            "logp_reduction": ("auto", "sum", "mean"),
            "demo_mode": ("nll", "contrastive"),
            "lr_scheduler_type": ("constant", "linear", "cosine"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        positive = ("batch_size", "gradient_accumulation_steps", "max_length", "num_epochs")
        for name in positive + ("bucket_batches", "kl_chunk_size", "demo_max_new_tokens"):
            if getattr(self, name) < 1:
                raise bad(name, f"must be >= 1, got {getattr(self, name)}")
        nonneg = ("learning_rate", "warmup_steps", "weight_decay", "max_grad_norm", "lora_r")
        for name in nonneg + (
            "ref_update_every",
            "save_steps",
            "log_kl_every",
            "demo_weight",
            "pref_weight",
        ):
            if getattr(self, name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise bad("max_steps", f"must be >= 1 or -1 (use epochs), got {self.max_steps}")
        if not 0.0 <= self.ref_ema < 1.0:
            raise bad("ref_ema", f"must be in [0, 1), got {self.ref_ema}")
        if self.ref_ema and self.ref_update_every:
            raise bad("ref_ema", "choose either --ref-ema or --ref-update-every, not both")
        if self.bf16 and self.fp16:
            raise bad("fp16", "choose either --bf16 or --fp16")
        if self.method in ("aihf-dpo", "self-play-aihf") and not (
            self.demo_weight > 0 or self.pref_weight > 0
        ):
            raise bad("pref_weight", "--demo-weight and --pref-weight are both 0: nothing to learn")
        if self.method == "kto" and self.batch_size < 2:
            raise bad("batch_size", "KTO's reference point needs at least 2 records per batch")
        self._resolve_beta()

    def _resolve_beta(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"must be in [0, 1], got {self.alpha}", source="config", field="alpha")
        if self.beta is None:
            if self.method == "pmpo":
                self.beta = _pmpo_default_beta(self.alpha)
            else:
                self.beta = DEFAULT_BETA[self.method]
        if self.beta < 0 or (self.method == "ipo" and self.beta == 0):
            raise InputError(f"must be > 0, got {self.beta}", source="config", field="beta")
        if self.method == "pmpo":
            from anyfeedback.losses import check_pmpo_beta

            check_pmpo_beta(self.alpha, self.beta, stacklevel=4)  # warns if β < 1 − α

    @property
    def average_logps(self) -> bool:
        """Length-normalised ℓ (per-token mean) instead of the sum (BASELINES §IPO pitfall)."""
        if self.logp_reduction == "auto":
            return self.method == "ipo"
        return self.logp_reduction == "mean"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in config_fields()}


def config_fields() -> list[dataclasses.Field]:
    """The user-settable fields, in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if f.init]


def field_docs() -> dict[str, str]:
    """Field name → its one-line docstring."""
    from anyfeedback.configfile import field_docs as docs_of

    return docs_of(TrainConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """`TrainConfig` fields from a YAML or JSON file; unknown keys are an InputError."""
    from anyfeedback.configfile import read_config_file as read

    return read(path, TrainConfig)


def make_config(file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults ← `file` ← `overrides` (None values in overrides mean "not given")."""
    values = read_config_file(file) if file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**values)
    except TypeError as err:
        raise InputError(str(err), source="config") from None
