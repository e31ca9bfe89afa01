"""`RewardConfig`: every knob of `anyfeedback reward`, one flat dataclass (fields → flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from anyfeedback.configfile import check_range, nonneg, positive
from anyfeedback.errors import InputError


@dataclass
class RewardConfig:
    """Bradley–Terry reward model on a causal-LM backbone, from preference pairs."""

    model: str = ""
    """Backbone (a causal LM name or directory; a fresh scalar head is added) or a reward model."""
    data: str = ""
    """Preference pairs {prompt, chosen, rejected} (file, directory or dataset id)."""
    eval_data: str | None = None
    """Held-out pairs for pairwise accuracy (default: the last --eval-fraction of --data)."""
    eval_fraction: float = 0.1
    """Fraction of --data held out when --eval-data is not given."""
    out: str = "runs/reward"
    """Run directory: config, metrics, checkpoints, the saved reward model (OUT/model), report."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
    resume: bool = False
    """Continue from the latest intact checkpoint in --out (--max-steps may grow; nothing else)."""
    learning_rate: float = 1e-5
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 8
    """Pairs per optimizer step."""
    num_epochs: int = 1
    """Epochs over the training pairs when --max-steps is -1 (about 1 is usual for reward models)."""
    max_steps: int = -1
    """Optimizer steps (-1: --num-epochs over the pairs)."""
    max_length: int = 512
    """Maximum tokens of prompt + completion (truncated from the left; the last token is scored)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0: none)."""
    eval_every: int = 50
    """Held-out accuracy every N steps (and at the start and end)."""
    seed: int = 42
    """Seed for the head initialisation and the data order."""
    save_steps: int = 0
    """Checkpoint every N steps (0: only the final model)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> InputError:
            return InputError(problem, source="config", field=name)

        if not self.model:
            raise bad("model", "is required (a causal LM or reward model name or directory)")
        if not self.data:
            raise bad("data", "is required (a file of preference pairs)")
        check_range(self, "eval_fraction", 0, 1, low_open=True, high_open=True)
        positive(self, "batch_size", "num_epochs", "max_length")
        nonneg(self, "learning_rate", "weight_decay", "max_grad_norm", "eval_every", "save_steps")
        if self.max_steps == 0 or self.max_steps < -1:
            raise bad("max_steps", f"must be >= 1 or -1 (use epochs), got {self.max_steps}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
