"""Time of one PMPO forward/backward (fused head, dense KL) on padded, length-bucketed rows vs one
padding-free row, side by side on the same micro-batches: CPU time on CPU; on a GPU wall time
after a synchronize, and peak GPU memory, with bf16 autocast (--profile gpu).

    PYTHONPATH=src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/padding_free.py
    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/padding_free.py --profile gpu --out X.json

Workload: the `cpu` profile of vs_trl.py (6M-parameter Llama, records of 12-104 words), micro-
batches of --batch records, in two orders: random (what an unbucketed plan gives) and sorted by
length within chunks of 64 batches (`BatchPlan`'s length bucketing, the default). The two
layouts alternate step by step, so machine load hits both alike; reports CPU seconds per step,
padding fraction and the ratio padded / flat. The gpu profile is vs_trl.py's (0.49B Llama, 152k
vocabulary, records of 80-600 words, max length 1024). Result: results/bench/padding_free.json
(or --out).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
from bench_assets import OUT, PROFILES, build_assets, encoded_examples


def _clock() -> float:
    """CPU time on CPU; on a GPU, wall time once the queued kernels have finished."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def step(model, ref_model, batch, autocast) -> float:
    start = _clock()
    with autocast:
        _forward_backward(model, ref_model, batch)
    return _clock() - start


def _forward_backward(model, ref_model, batch) -> None:
    from anyfeedback.llm.model import scored_states
    from anyfeedback.losses import pmpo_loss
    from anyfeedback.losses.tokens import fused_token_stats

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


def main() -> None:
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.batching import BatchPlan, collate_unpaired

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--profile", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", default=str(OUT / "padding_free.json"))
    args = parser.parse_args()
    gpu = args.profile == "gpu"
    if not gpu:
        torch.set_num_threads(1)
    p = PROFILES[args.profile]
    paths = build_assets(p, 192)
    tok, ex = encoded_examples(p, paths["model"], paths["unpaired"])
    device = "cuda" if gpu else "cpu"
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32).to(device)
    model.config.use_cache = False
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=p.bf16)
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
        peak = {False: 0.0, True: 0.0}
        pad = []
        for s in range(min(args.steps, plan.steps_per_epoch)):
            items = [ex[i] for i in plan.micro_batches(s, 0)[0]]
            padded = collate_unpaired(items, tok.pad_token_id)
            pad.append(1 - padded.seqs.n_tokens / padded.seqs.input_ids.numel())
            for flat in (False, True):  # alternate: load hits both alike
                batch = collate_unpaired(items, tok.pad_token_id, flat=flat).to(device)
                if gpu:
                    torch.cuda.reset_peak_memory_stats()
                cpu[flat].append(step(model, ref_model, batch, autocast))
                if gpu:
                    peak[flat] = max(peak[flat], torch.cuda.max_memory_allocated() / 2**20)
        padded_s, flat_s = statistics.median(cpu[False][1:]), statistics.median(cpu[True][1:])
        kind = "wall" if gpu else "cpu"  # GPU: wall seconds after a synchronize
        out[order] = {
            "padding_fraction_of_padded_rows": statistics.mean(pad),
            f"{kind}_s_per_step_padded": padded_s,
            f"{kind}_s_per_step_flat": flat_s,
            f"padded_over_flat_{kind}_time": padded_s / flat_s,
            "steps_measured": len(cpu[False]) - 1,
        }
        if gpu:
            out[order] |= {"peak_gpu_mib_padded": peak[False], "peak_gpu_mib_flat": peak[True]}
        print(order, json.dumps(out[order]), flush=True)
    out["conditions"] = {
        "command": "PYTHONPATH=src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python "
        f"benchmarks/padding_free.py --batch {args.batch} --steps {args.steps}"
        + (" --profile gpu" if gpu else ""),
        "model": p.model_desc,
        "records_per_micro_batch": args.batch,
        "max_length": p.max_length,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "timing": "wall seconds after torch.cuda.synchronize" if gpu else "CPU seconds",
        "dtype": "float32 weights, bf16 autocast" if p.bf16 else "float32",
        "torch_threads": None if gpu else 1,
        "attention": model.config._attn_implementation,
        "torch": torch.__version__,
        "load_average_1_5_15_min_at_start": load_start,
        "load_average_1_5_15_min_at_end": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
