"""CPU time of one PMPO forward/backward (fused head, dense KL) on padded, length-bucketed rows
vs one padding-free row, side by side on the same micro-batches.

    PYTHONPATH=src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/padding_free.py

Workload: the `cpu` profile of vs_trl.py (6M-parameter Llama, records of 12-104 words), micro-
batches of --batch records, in two orders: random (what an unbucketed plan gives) and sorted by
length within chunks of 64 batches (`BatchPlan`'s length bucketing, the default). The two
layouts alternate step by step, so machine load hits both alike; reports CPU seconds per step,
padding fraction and the ratio padded / flat. Result: results/bench/padding_free.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch
from bench_assets import OUT, PROFILES, build_assets, encoded_examples


def step(model, ref_model, batch, cfg) -> float:
    from anyfeedback.llm.model import scored_states
    from anyfeedback.losses import pmpo_loss
    from anyfeedback.losses.tokens import fused_token_stats

    start = time.process_time()
    s = batch.seqs
    _, _, targets, view = s.scored()
    with torch.inference_mode():
        ref_hidden, ref_head = scored_states(ref_model, s)
    hidden, head = scored_states(model, s)
    tok = fused_token_stats(hidden, head, targets, ref_hidden.clone(), ref_head)
    logps = tok.logps.new_zeros(s.n_views).index_add(0, view, tok.logps)
    kl = tok.kl.new_zeros(s.n_views).index_add(0, view, tok.kl)
    loss, _ = pmpo_loss(logps[batch.accepted], logps[~batch.accepted], kl, alpha=0.5, beta=0.5)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.process_time() - start


def main() -> None:
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.batching import BatchPlan, collate_unpaired

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    p = PROFILES["cpu"]
    paths = build_assets(p, 192)
    tok, ex = encoded_examples(p, paths["model"], paths["unpaired"])
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32)
    model.config.use_cache = False
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    load_start = list(os.getloadavg())
    out = {}
    for order in ("random", "bucketed"):
        plan = BatchPlan(
            [e.length for e in ex],
            batch_size=args.batch,
            accumulation=1,
            world_size=1,
            seed=0,
            group_by_length=order == "bucketed",
        )
        cpu = {False: [], True: []}
        pad = []
        for s in range(min(args.steps, plan.steps_per_epoch)):
            items = [ex[i] for i in plan.micro_batches(s, 0)[0]]
            padded = collate_unpaired(items, tok.pad_token_id)
            pad.append(1 - padded.seqs.n_tokens / padded.seqs.input_ids.numel())
            for flat in (False, True):  # alternate: load hits both alike
                batch = collate_unpaired(items, tok.pad_token_id, flat=flat)
                cpu[flat].append(step(model, ref_model, batch, None))
        padded_s, flat_s = statistics.median(cpu[False][1:]), statistics.median(cpu[True][1:])
        out[order] = {
            "padding_fraction_of_padded_rows": statistics.mean(pad),
            "cpu_s_per_step_padded": padded_s,
            "cpu_s_per_step_flat": flat_s,
            "padded_over_flat_cpu_time": padded_s / flat_s,
            "steps_measured": len(cpu[False]) - 1,
        }
        print(order, json.dumps(out[order]), flush=True)
    out["conditions"] = {
        "command": "PYTHONPATH=src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python "
        f"benchmarks/padding_free.py --batch {args.batch} --steps {args.steps}",
        "model": p.model_desc,
        "records_per_micro_batch": args.batch,
        "torch_threads": 1,
        "attention": model.config._attn_implementation,
        "torch": torch.__version__,
        "load_average_1_5_15_min_at_start": load_start,
        "load_average_1_5_15_min_at_end": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
    }
    (OUT / "padding_free.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
