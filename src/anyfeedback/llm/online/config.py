"""`OnlineConfig`: every knob of `anyfeedback online`, one flat dataclass.

The loop (PMPO §7.4): per step, take `prompts_per_step` prompts, sample `k` completions each from
the current policy (or π_ref, `sample_from`), score them with the reward, label them (top-k /
bottom-k by default), take one optimizer step of the method on the labelled samples, and refresh
π_ref every `ref_update_every` steps. Optimisation fields mean what they mean in `anyfeedback
train`; `train_config()` is the `PolicyStepConfig` (objective + optimisation, no data) the update
step runs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anyfeedback.configfile import check_choice, check_range, nonneg, positive
from anyfeedback.errors import InputError

METHODS = ("pmpo", "dpo", "kto")
LABELLING = ("rank", "threshold", "group-mean")
BACKENDS = ("hf", "vllm", "auto")
SAMPLE_FROM = ("policy", "reference")


@dataclass
class OnlineConfig:
    """Online alignment: sample → score → label → update (see `anyfeedback online --help`)."""

    model: str = ""
    """Start model: name or directory (Hugging Face format)."""
    prompts: str = ""
    """Prompts: a feedback file/dir/Hub id (its prompts), 'lmsys:<file or id>', or 'demo'."""
    reward: str = "sentiment"
    """Reward: 'sentiment' (VADER), 'module:function', or a sequence-classification model."""
    out: str = "runs/online"
    """Run directory: config, metrics, checkpoints, final model, report."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    method: str = "pmpo"
    """Update: pmpo (on accepted/rejected), dpo (best vs worst per prompt), kto (on the labels)."""
    alpha: float = 0.5
    """PMPO α (1: accepted only, 0: rejected only)."""
    beta: float | None = None
    """PMPO β / DPO β / KTO β (default per method and α, as in `anyfeedback train`)."""

    k: int = 4
    """Completions sampled per prompt."""
    labelling: str = "rank"
    """rank (top/bottom k) | threshold | group-mean (sign of reward − the prompt's mean)."""
    k_accept: int | None = None
    """rank: best samples per prompt labelled accepted (default: k // 2)."""
    k_reject: int | None = None
    """rank: worst samples per prompt labelled rejected (default: k // 2)."""
    threshold: float = 0.0
    """threshold: reward above is accepted, below rejected."""
    sample_from: str = "policy"
    """policy | reference: who samples the training completions. PMPO's E-step assumes samples
    from π_ref; the default samples from the current π_θ (on-policy, as the paper's online
    experiment, and π_ref is refreshed to π_θ every --ref-update-every steps, so the two differ
    by at most that many steps); reference follows the derivation exactly (docs/algorithms.md
    #online-loop)."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 24
    """Tokens generated per completion."""
    generation_batch_size: int = 64
    """Rows (prompts × k) per generate call; each such chunk has its own seed, and the chunks
    are shared out among processes."""
    share_prompt: bool = True
    """Update: compute each prompt once for all its samples (DPO: its pair; PMPO: its K samples
    when they come whole), each sample after it under a block-causal mask (checked against
    separate rows at start-up; off if the model's attention ignores it)."""
    generation_backend: str = "hf"
    """hf (transformers generate) | vllm (extra `vllm`, CUDA) | auto (vllm if usable, else hf)."""
    vllm_gpu_memory_utilization: float = 0.3
    """vllm: fraction of GPU memory vLLM may take (the policy and π_ref train beside it)."""

    prompts_per_step: int = 16
    """Prompts per optimizer step (× k samples)."""
    steps: int = 100
    """Optimizer steps."""
    learning_rate: float = 1e-6
    """Peak AdamW learning rate."""
    micro_batch_size: int = 0
    """Split a step's samples into micro-batches of this many records (0: one micro-batch)."""
    ref_update_every: int = 10
    """Refresh π_ref ← π_θ every N steps (0: keep the start model)."""
    ref_ema: float = 0.0
    """EMA rate of π_ref instead of hard refreshes (0: off)."""
    max_length: int = 256
    """Maximum prompt + completion tokens."""
    lora_r: int = 0
    """LoRA rank (0: full fine-tuning)."""
    bf16: bool = False
    """bfloat16 autocast."""

    eval_every: int = 10
    """Held-out evaluation every N steps (and at the start and end)."""
    eval_prompts: int = 64
    """Held-out prompts (taken from the end of the prompt source, never trained on)."""
    seed: int = 0
    """Seed for prompt order, sampling and evaluation."""
    save_steps: int = 50
    """Checkpoint every N steps (0: only the final model)."""
    resume: bool = False
    """Continue from the latest checkpoint in --out (--steps may grow; other settings may not)."""
    stop_on_collapse: bool = False
    """Stop (exit 1, last checkpoint kept) on a collapse warning or a held-out win rate vs the
    start model below 0.1."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> InputError:
            return InputError(problem, source="config", field=name)

        if not self.model:
            raise bad("model", "is required (a model name or directory)")
        if not self.prompts:
            raise bad("prompts", "is required (a prompt source or 'demo')")
        check_choice(self, "method", METHODS)
        check_choice(self, "labelling", LABELLING)
        check_choice(self, "generation_backend", BACKENDS)
        check_choice(self, "sample_from", SAMPLE_FROM)
        if self.sample_from == "reference" and self.generation_backend == "vllm":
            raise bad("sample_from", "reference needs --generation-backend hf (vllm: the policy)")
        check_range(self, "vllm_gpu_memory_utilization", 0, 1, low_open=True)
        positive(self, "k", "prompts_per_step", "steps", "max_new_tokens", "max_length")
        positive(self, "generation_batch_size")
        if self.method == "dpo" and self.k < 2:
            raise bad("k", "DPO needs at least 2 samples per prompt (best vs worst)")
        if self.labelling in ("rank", "group-mean") and self.k < 2:
            raise bad("k", f"--labelling {self.labelling} compares the samples of a prompt: >= 2")
        self.k_accept = self.k // 2 if self.k_accept is None else self.k_accept
        self.k_reject = self.k // 2 if self.k_reject is None else self.k_reject
        nonneg(self, "k_accept", "k_reject", "eval_every", "save_steps", "micro_batch_size")
        if self.labelling == "rank" and not 0 < self.k_accept + self.k_reject <= self.k:
            raise bad("k_accept", f"k_accept + k_reject must be in 1..k={self.k}")
        check_range(self, "temperature", 0, low_open=True)
        check_range(self, "top_p", 0, 1, low_open=True)

    def train_config(self):
        """The `PolicyStepConfig` of the update step (validates α/β and warns if β < 1 − α)."""
        from anyfeedback.llm.config import PolicyStepConfig

        return PolicyStepConfig(
            model=self.model,
            method=self.method,
            out=self.out,
            alpha=self.alpha,
            beta=self.beta,
            learning_rate=self.learning_rate,
            lr_scheduler_type="constant",
            max_steps=self.steps,
            batch_size=max(2, self.k),
            ref_update_every=self.ref_update_every,
            ref_ema=self.ref_ema,
            max_length=self.max_length,
            lora_r=self.lora_r,
            bf16=self.bf16,
            seed=self.seed,
            save_steps=self.save_steps,
            log_kl_every=1,
            progress=False,
        )

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
