"""What autograd keeps for backward in one PMPO micro-batch of our trainer, by tensor shape, on
the CPU workload of `vs_trl.py` (the longest micro-batch of the run; distinct storages only).

    PYTHONPATH=src python benchmarks/saved_activations.py --batch 64 --steps 7
    PYTHONPATH=src python benchmarks/saved_activations.py --batch 64 --steps 7 --plain-blocks

`--plain-blocks`: transformers' own MLP and RMSNorm instead of `llm/fused_blocks.py`.
"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--plain-blocks", action="store_true")
    args = parser.parse_args()

    import torch
    from bench_assets import PROFILES, build_assets, encoded_examples
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.batching import BatchPlan, collate_unpaired
    from anyfeedback.llm.config import TrainConfig
    from anyfeedback.llm.fused_blocks import fuse_blocks
    from anyfeedback.llm.objective import compute_loss
    from anyfeedback.llm.reference import Reference

    torch.set_num_threads(1)
    p = PROFILES["cpu"]
    paths = build_assets(p, args.steps * args.batch)
    tok, examples = encoded_examples(p, paths["model"], paths["unpaired"])
    plan = BatchPlan(
        [e.length for e in examples], batch_size=args.batch, accumulation=1, world_size=1, seed=0
    )
    batches = [
        collate_unpaired([examples[i] for i in plan.micro_batches(s, 0)[0]], tok.pad_token_id)
        for s in range(args.steps)
    ]
    batch = max(batches, key=lambda b: b.seqs.input_ids.numel())
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32).train()
    if not args.plain_blocks:
        fuse_blocks(model)
    ref = Reference(model)
    cfg = TrainConfig(model="-", data="-", method="pmpo", beta=0.5)
    seen: dict[int, int] = {}
    by_shape: collections.Counter = collections.Counter()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen[storage.data_ptr()] = storage.nbytes()
            by_shape[(tuple(t.shape), str(t.dtype).removeprefix("torch."))] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        compute_loss(model, ref, batch, cfg)
    rows, cols = batch.seqs.input_ids.shape
    print(f"micro-batch: {rows} rows x {cols} columns, {batch.seqs.n_tokens} real tokens")
    print(f"saved for backward: {sum(seen.values()) / 2**20:.1f} MiB")
    for (shape, dtype), nbytes in by_shape.most_common(12):
        print(f"  {str(shape):<22} {dtype:<8} {nbytes / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
