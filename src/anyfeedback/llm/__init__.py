"""Fine-tune causal LMs from feedback: PMPO, DPO, IPO, KTO, SFT and AIHF-DPO on plain PyTorch +
accelerate.

    from anyfeedback.llm import TrainConfig, train
    result = train(TrainConfig(model="path/or/name", data="feedback.jsonl", method="pmpo",
                               alpha=0.5, beta=0.5, out="runs/pmpo"))

`data` may also be a Hub id (with `split=`, `dataset_config=`), a saved `DatasetDict`
directory, a `datasets.Dataset`, a `DatasetDict` or a list of dicts; `eval_data` /
`eval_split` / `eval_fraction` add an eval set (docs/ecosystem.md).

Building blocks for other loops (e.g. online sample → label → train):
`Trainer(cfg, total_steps=…, model=…, tokenizer=…).train_step([batch, …])` takes one optimizer
step; batches come from `collate_unpaired` / `collate_pairs` / `collate_demos` over `Example`s
(`unpaired_examples` tokenises in-memory feedback); `compute_loss(policy, ref, batch, cfg)` is
the per-batch loss. Heavy libraries (transformers, peft) load only when used.
"""

from anyfeedback.llm.batching import (
    Batch,
    BatchPlan,
    Packed,
    collate_demos,
    collate_pairs,
    collate_unpaired,
)
from anyfeedback.llm.config import TrainConfig, make_config
from anyfeedback.llm.data import Example, encode_records, unpaired_examples
from anyfeedback.llm.fit import TrainResult, train
from anyfeedback.llm.model import (
    Reference,
    completion_logits,
    load_policy,
    load_tokenizer,
    shared_prompt_supported,
)
from anyfeedback.llm.objective import BATCH_LOSSES, compute_loss, policy_stats
from anyfeedback.llm.trainer import NonFiniteLossError, Trainer

__all__ = [
    "BATCH_LOSSES",
    "Batch",
    "BatchPlan",
    "Example",
    "NonFiniteLossError",
    "Packed",
    "Reference",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "collate_demos",
    "collate_pairs",
    "collate_unpaired",
    "completion_logits",
    "compute_loss",
    "encode_records",
    "load_policy",
    "load_tokenizer",
    "make_config",
    "policy_stats",
    "shared_prompt_supported",
    "train",
    "unpaired_examples",
]
