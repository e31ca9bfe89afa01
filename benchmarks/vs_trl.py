"""Throughput and peak memory of anyfeedback's trainer vs TRL, on CPU or on one GPU.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vs_trl.py            # CPU, ~10 min on 2 cores
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vs_trl.py --reps 1 --steps 12   # quick look
    HF_HUB_OFFLINE=1 python benchmarks/vs_trl.py --profile gpu --reps 2 --steps 30   # one GPU

Profiles (same code path, different sizes):
  cpu  a fixed ~6M-parameter Llama (byte-level BPE of 1850 tokens trained locally, hidden 256,
       6 layers), prompts 6-48 words, completions 6-56 words, 8 records per step, max length
       192, fp32, one thread per run.
  gpu  a random-init 0.49B Llama with Qwen2.5-0.5B's shapes (hidden 896, 24 layers, 14 query /
       2 key-value heads, MLP 4864, tied embeddings, vocabulary 151,936 — the LM head and the
       full-vocabulary KL cost what a real model's do; the locally trained tokenizer only uses
       the first 4096 ids), prompts and completions 40-300 words, 16 records per step, max
       length 1024, float32 weights with bf16 autocast on both sides (our --bf16, TRL bf16=True).
       Also reports MFU (below).

Runs, each in its own subprocess so peak memory is not shared:

  trl-kto   TRL KTOTrainer on the unpaired data        pmpo     our PMPO (α=0.5, β=0.5, dense KL)
                                                       kto      our KTO (β=0.1, same algorithm)
  trl-dpo   TRL DPOTrainer on the paired data          dpo      our DPO (β=0.1)
  trl-kto-liger, trl-dpo-liger (optional, GPU): the same with use_liger_kernel=True

  minimal   a hand-written PyTorch loop: PMPO forward/backward with the dense KL (the fused LM
            head) on pre-collated batches, no logging or checkpointing (the practical limit of
            our PMPO step)

Same model, batch, max length and number of steps (one epoch of the data, so every trainer sees
every record once); TRL with gradient_checkpointing=False and ref_model passed explicitly. Runs
are interleaved (rep 1: all five, rep 2: all five, …) because the machine is shared; the reported
numbers are medians over reps and ratios are taken within a rep. s/step is the mean interval
between step ends after 3 warm-up steps (on a GPU, after a synchronize), in wall-clock time and in
CPU time of the process; on a shared CPU machine the CPU-time ratios are the stable ones.
tokens/s = non-padding prompt+completion tokens of the training records per second (the same
records for both trainers, tokenised once by our tokenizer setup; a pair counts both sequences).
Peak memory: RSS on CPU, torch.cuda.max_memory_allocated on GPU.

MFU (GPU) counts the FLOPs the task needs, the same for every run: per sequence of n tokens with
c completion tokens, a forward is 2·N·n (N = non-embedding parameters) + 2·L·d·n² (causal
attention scores and values) + 2·d·V·c (the LM head on the scored positions); a training step is
3 forwards of the policy (forward + backward) + 1 of π_ref. Work a trainer does beyond that (an
LM head over prompt positions, KTO's mismatched pairs) earns no credit. MFU = FLOPs/s ÷ the
GPU's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s).
Workloads (profiles, assets, FLOP totals): benchmarks/bench_assets.py.
Results: results/bench/vs_trl.json (cpu) or vs_trl_gpu.json (or --out); a Markdown table is
printed (docs/results/llm-speed.md shows them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_assets import (
    PROFILES,
    Profile,
    build_assets,
    encoded_examples,
    last_error,
    record_stats,
)
from vs_trl_results import EXTRA, RUNS, WARMUP, merge, summarise, write

UNPAIRED = (
    "trl-kto",
    "trl-kto-liger",
    "pmpo",
    "kto",
    "minimal",
    "pmpo-compile",
    "pmpo-checkpointing",
)
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def _stamp() -> tuple[float, float]:
    """(wall clock, CPU time of this process) at a step end, after the GPU has finished."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def _peak_flops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def _result(p: Profile, name: str, stamps: list, steps: int, stats: dict) -> dict:
    """Mean wall and CPU seconds per step between step ends, after WARMUP steps."""
    import torch

    walls = [b[0] - a[0] for a, b in zip(stamps, stamps[1:], strict=False)][WARMUP:]
    cpus = [b[1] - a[1] for a, b in zip(stamps, stamps[1:], strict=False)][WARMUP:]
    s_step, cpu_step = statistics.mean(walls), statistics.mean(cpus)
    out = {
        "run": name,
        "steps": steps,
        "s_per_step": s_step,
        "cpu_s_per_step": cpu_step,
        "samples_per_s": p.batch / s_step,
        "samples_per_cpu_s": p.batch / cpu_step,
        "tokens_per_s": stats["tokens"] / steps / s_step,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sequence_tokens_mean": stats["mean_len"],
        "sequence_tokens_max": stats["max_len"],
    }
    if torch.cuda.is_available():
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        peak = _peak_flops()
        out["tflops_per_s"] = stats["flops"] / steps / s_step / 1e12
        out["mfu"] = stats["flops"] / steps / s_step / peak if peak else float("nan")
    return out


def run_ours(p: Profile, method: str, paths: dict, steps: int, stats: dict) -> dict:
    from anyfeedback.llm import TrainConfig, fit, train

    stamps = []

    class StampedLog(fit.MetricsLog):  # the metrics line is written right after each step
        def log(self, step, **metrics):
            stamps.append(_stamp())
            super().log(step, **metrics)

    fit.MetricsLog = StampedLog
    data = paths["unpaired" if method in UNPAIRED else "paired"]
    name, method = method, method.partition("-")[0]
    beta = 0.5 if method == "pmpo" else 0.1
    cfg = TrainConfig(
        model=str(paths["model"]),
        data=str(data),
        method=method,
        torch_compile=name == "pmpo-compile",
        gradient_checkpointing=name == "pmpo-checkpointing",
        out=str(p.work / f"run-{name}"),
        beta=beta,
        batch_size=p.batch,
        max_length=p.max_length,
        max_steps=steps,
        learning_rate=1e-5,
        save_steps=0,
        progress=False,
        seed=0,
        bf16=p.bf16,
    )
    train(cfg)
    return _result(p, name, stamps, steps, stats)


def run_trl(p: Profile, kind: str, paths: dict, steps: int, stats: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    class StepTimer(TrainerCallback):
        ends: list[tuple[float, float]] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(_stamp())

    data = paths["unpaired" if kind in UNPAIRED else "paired"]
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(paths["model"])
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32)
    common = dict(
        output_dir=str(p.work / f"run-{kind}"),
        per_device_train_batch_size=p.batch,
        max_steps=steps,
        learning_rate=1e-5,
        bf16=p.bf16,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        max_length=p.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_liger_kernel=kind.endswith("-liger"),
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    if kind.startswith("trl-kto"):
        from trl import KTOConfig, KTOTrainer

        args, cls = KTOConfig(beta=0.1, **common), KTOTrainer
    else:
        from trl import DPOConfig, DPOTrainer

        args, cls = DPOConfig(beta=0.1, **common), DPOTrainer
    timer = StepTimer()
    trainer = cls(
        model=model,
        ref_model=ref,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[timer],
    )
    trainer.train()
    return _result(p, kind, timer.ends, steps, stats)


def run_minimal(p: Profile, paths: dict, steps: int, stats: dict) -> dict:
    """PMPO forward/backward with the dense KL in a bare loop on pre-collated batches."""
    import contextlib
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.batching import BatchPlan, collate_unpaired
    from anyfeedback.llm.model import scored_states
    from anyfeedback.losses import pmpo_loss
    from anyfeedback.losses.tokens import fused_token_stats

    tok, ex = encoded_examples(p, paths["model"], paths["unpaired"])
    plan = BatchPlan(
        [e.length for e in ex], batch_size=p.batch, accumulation=1, world_size=1, seed=0
    )
    batches = [
        collate_unpaired([ex[i] for i in plan.micro_batches(s, 0)[0]], tok.pad_token_id)
        for s in range(steps)
    ]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32).to(device)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if p.bf16 else contextlib.nullcontext()
    model.train()
    ends = []
    for b in batches:
        b = b.to(device)
        s = b.seqs
        _, _, targets, view = s.scored()
        with autocast:
            with torch.inference_mode():
                ref_hidden, ref_head = scored_states(ref, s)  # [N, H]: no logits
            hidden, head = scored_states(model, s)
            tok = fused_token_stats(hidden, head, targets, ref_hidden.clone(), ref_head)
        logps = tok.logps.new_zeros(s.n_views).index_add(0, view, tok.logps)
        kl = tok.kl.new_zeros(s.n_views).index_add(0, view, tok.kl)
        loss, _ = pmpo_loss(logps[b.accepted], logps[~b.accepted], kl, alpha=0.5, beta=0.5)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ends.append(_stamp())
    return _result(p, "minimal", ends, steps, stats)


def child(p: Profile, name: str, steps: int) -> None:
    import torch

    if p.threads:
        torch.set_num_threads(p.threads)
    paths = build_assets(p, steps * p.batch)
    data = paths["unpaired" if name in UNPAIRED else "paired"]
    stats = record_stats(p, paths["model"], data)
    if name.startswith("trl-"):
        res = run_trl(p, name, paths, steps, stats)
    elif name == "minimal":
        res = run_minimal(p, paths, steps, stats)
    else:
        res = run_ours(p, name, paths, steps, stats)
    print("RESULT " + json.dumps(res), flush=True)


def _spawn(p: Profile, name: str, steps: int, keep_going: bool = False) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", ANYFEEDBACK_PROGRESS="0")
    if p.threads:
        env.update(OMP_NUM_THREADS=str(p.threads), MKL_NUM_THREADS=str(p.threads))
    base, _, batch = p.name.partition("-b")
    cmd = [sys.executable, __file__, "--child", name, "--steps", str(steps), "--profile", base]
    cmd += ["--batch", batch] if batch else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        if not keep_going:
            raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
        # a run that does not fit (out of GPU memory) is a result: its last error line
        error = last_error(proc.stderr, proc.returncode)
        print(f"{name} failed: {error}", flush=True)
        return {"run": name, "error": error}
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--child", choices=RUNS + EXTRA)
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument("--batch", type=int, help="records per step (default: the profile's)")
    parser.add_argument(
        "--runs", default=",".join(RUNS), help="subset of " + ",".join(RUNS + EXTRA)
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="record a run that fails (e.g. out of GPU memory) as failed and go on",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="combine the JSONs of single-run invocations started side by side (one rep each) "
        "into one result at --out, ratios across them",
    )
    parser.add_argument(
        "--one-after-another",
        action="store_true",
        help="with --merge: the single runs ran one after another, not side by side",
    )
    args = parser.parse_args()
    p = PROFILES[args.profile]
    if args.batch:
        p = dataclasses.replace(p, name=f"{p.name}-b{args.batch}", batch=args.batch)
        PROFILES[p.name] = p
    runs = tuple(r for r in RUNS + EXTRA if r in args.runs.split(","))
    if args.child:
        child(p, args.child, args.steps)
        return
    if args.merge:
        merge(p, args)
        return
    build_assets(p, args.steps * p.batch)
    args.load_at_start = list(os.getloadavg())  # other work on the machine shows here
    reps = []
    for rep in range(args.reps):
        res = {}
        for name in runs:
            res[name] = _spawn(p, name, args.steps, args.keep_going)
            if args.reps == 1 and len(res) < len(runs):  # a cut-off call keeps what finished
                write(p, summarise(p, [res], args, tuple(res)), args, tuple(res))
        reps.append(res)
        times = (f"{n} {r['s_per_step']:.3f}s" for n, r in res.items() if "error" not in r)
        print(f"rep {rep + 1}: " + ", ".join(times), flush=True)
    write(p, summarise(p, reps, args, runs), args, runs)


if __name__ == "__main__":
    main()
