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

from importlib import import_module

# name → module: imported on first use, so `anyfeedback.llm.config` (and `anyfeedback --help`)
# does not load torch
_EXPORTS = {
    "Batch": "batching",
    "BatchPlan": "batching",
    "Packed": "batching",
    "collate_demos": "batching",
    "collate_pairs": "batching",
    "collate_unpaired": "batching",
    "TrainConfig": "config",
    "make_config": "config",
    "Example": "data",
    "encode_records": "data",
    "unpaired_examples": "data",
    "TrainResult": "fit",
    "train": "fit",
    "Reference": "model",
    "completion_logits": "model",
    "load_policy": "model",
    "load_tokenizer": "model",
    "shared_prompt_supported": "model",
    "BATCH_LOSSES": "objective",
    "compute_loss": "objective",
    "policy_stats": "sequence_stats",
    "NonFiniteLossError": "trainer",
    "Trainer": "trainer",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"anyfeedback.llm.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'anyfeedback.llm' has no attribute {name!r}")


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
