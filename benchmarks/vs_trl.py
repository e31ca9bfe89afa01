"""Throughput and peak memory of anyfeedback's trainer vs TRL on one CPU workload.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vs_trl.py            # ~10 min on 2 cores
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vs_trl.py --reps 1 --steps 12   # quick look

Builds (once, cached under results/bench/.work) a fixed ~6M-parameter Llama (a byte-level BPE
of 1850 tokens trained locally, hidden 256, 6 layers) and fixed unpaired and paired datasets (prompts 6-48 words,
completions 6-56 words), then runs, each in its own subprocess so peak RSS is not shared:

  trl-kto   TRL KTOTrainer on the unpaired data        pmpo     our PMPO (α=0.5, β=0.5, dense KL)
  trl-dpo   TRL DPOTrainer on the paired data          dpo      our DPO (β=0.1)
  minimal   a hand-written PyTorch loop: PMPO forward/backward with the dense KL on pre-collated
            batches, no logging or checkpointing (the practical limit of our PMPO step)

Same model, 8 records per step, max length 192, fp32 on CPU, the same number of steps (one epoch
of the data, so every trainer sees every record once); TRL with bf16=False,
gradient_checkpointing=False and ref_model passed explicitly. Runs are interleaved
(rep 1: all five, rep 2: all five, …) because the machine is shared; the reported numbers are
medians over reps and ratios are taken within a rep. s/step is the mean interval between step
ends after 3 warm-up steps, in wall-clock time and in CPU time of the (single-threaded)
process; on a shared machine the CPU-time ratios are the stable ones. tokens/s = non-padding prompt+completion tokens of the training
records per second (the same records for both trainers, tokenised once by our tokenizer setup).
Results: results/bench/vs_trl.json; a Markdown table is printed (and pasted into
README.md, section "Speed" of the trainer).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench"
WORK = OUT / ".work"
BATCH, MAX_LENGTH, WARMUP = 8, 192, 3
# One intra-op thread per run: on a shared 2-core machine, 2 OpenMP threads stall whenever the
# other core is busy (measured 2-7x slower and erratic); 1 thread is steady. Same for all runs.
THREADS = 1
RUNS = ("trl-kto", "pmpo", "minimal", "trl-dpo", "dpo")


def _words(rng: random.Random, n: int, vocab: list[str]) -> str:
    return " ".join(vocab[min(int(rng.paretovariate(1.1)) - 1, len(vocab) - 1)] for _ in range(n))


def build_assets(n_records: int) -> dict[str, Path]:
    """Tokenizer + tiny Llama + unpaired/paired JSONL, deterministic, cached in WORK."""
    from anyfeedback.llm.tiny import build_tiny_model

    WORK.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    syll = [c + v for c in "bcdfgklmnprstvz" for v in "aeiou"]
    vocab = sorted(
        {"".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(6000)}
    )
    rng.shuffle(vocab)
    model_dir = WORK / "model"
    if not (model_dir / "config.json").is_file():
        corpus = [_words(rng, rng.randint(5, 40), vocab) for _ in range(20000)]
        build_tiny_model(
            model_dir, corpus, vocab_size=4096, hidden_size=256, num_layers=6, num_heads=4,
            intermediate_size=768, max_position_embeddings=512, seed=0,
        )  # fmt: skip
    paths = {"model": model_dir}
    for kind in ("unpaired", "paired"):
        path = WORK / f"{kind}-{n_records}.jsonl"
        paths[kind] = path
        if path.is_file():
            continue
        rows = []
        for _ in range(n_records):
            prompt = _words(rng, rng.randint(6, 48), vocab)
            a, b = (" " + _words(rng, rng.randint(6, 56), vocab) for _ in range(2))
            if kind == "paired":
                rows.append({"prompt": prompt, "chosen": a, "rejected": b})
            else:
                rows.append({"prompt": prompt, "completion": a, "label": rng.random() < 0.5})
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def record_tokens(model_dir: Path, data: Path) -> int:
    """Non-padding prompt+completion tokens of all records (a pair counts both sequences)."""
    from anyfeedback.llm.data import encode_records
    from anyfeedback.llm.model import load_tokenizer
    from anyfeedback.llm.records import load_records

    class _C:
        model, trust_remote_code = str(model_dir), False

    tok = load_tokenizer(_C)
    kind, records = load_records(str(data))
    enc = encode_records(tok, records, kind, max_length=MAX_LENGTH)
    return sum(
        len(e.prompt_ids) * len(e.completion_ids) + sum(map(len, e.completion_ids))
        for e in enc.examples
    )


def _stamp() -> tuple[float, float]:
    """(wall clock, CPU time of this process) at a step end."""
    return time.perf_counter(), time.process_time()


def _result(name: str, stamps: list[tuple[float, float]], steps: int, tokens: int) -> dict:
    """Mean wall and CPU seconds per step between step ends, after WARMUP steps."""
    walls = [b[0] - a[0] for a, b in zip(stamps, stamps[1:], strict=False)][WARMUP:]
    cpus = [b[1] - a[1] for a, b in zip(stamps, stamps[1:], strict=False)][WARMUP:]
    s_step, cpu_step = statistics.mean(walls), statistics.mean(cpus)
    return {
        "run": name,
        "steps": steps,
        "s_per_step": s_step,
        "cpu_s_per_step": cpu_step,
        "samples_per_s": BATCH / s_step,
        "samples_per_cpu_s": BATCH / cpu_step,
        "tokens_per_s": tokens / steps / s_step,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_ours(method: str, paths: dict, steps: int, tokens: int) -> dict:
    from anyfeedback.llm import TrainConfig, fit, train

    stamps = []

    class StampedLog(fit.MetricsLog):  # the metrics line is written right after each step
        def log(self, step, **metrics):
            stamps.append(_stamp())
            super().log(step, **metrics)

    fit.MetricsLog = StampedLog
    data = paths["unpaired" if method == "pmpo" else "paired"]
    beta = 0.5 if method == "pmpo" else 0.1
    cfg = TrainConfig(
        model=str(paths["model"]), data=str(data), method=method, out=str(WORK / f"run-{method}"),
        beta=beta, batch_size=BATCH, max_length=MAX_LENGTH, max_steps=steps, learning_rate=1e-5,
        save_steps=0, progress=False, seed=0,
    )  # fmt: skip
    train(cfg)
    return _result(method, stamps, steps, tokens)


def run_trl(kind: str, paths: dict, steps: int, tokens: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    class StepTimer(TrainerCallback):
        ends: list[tuple[float, float]] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(_stamp())

    data = paths["unpaired" if kind == "trl-kto" else "paired"]
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(paths["model"])
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32)
    common = dict(
        output_dir=str(WORK / f"run-{kind}"), per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=1e-5, bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
        max_length=MAX_LENGTH, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )  # fmt: skip
    if kind == "trl-kto":
        from trl import KTOConfig, KTOTrainer

        args, cls = KTOConfig(beta=0.1, **common), KTOTrainer
    else:
        from trl import DPOConfig, DPOTrainer

        args, cls = DPOConfig(beta=0.1, **common), DPOTrainer
    timer = StepTimer()
    trainer = cls(
        model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tok, callbacks=[timer],
    )  # fmt: skip
    trainer.train()
    return _result(kind, timer.ends, steps, tokens)


def run_minimal(paths: dict, steps: int, tokens: int) -> dict:
    """PMPO forward/backward with the dense KL in a bare loop on pre-collated batches."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.batching import BatchPlan, collate_unpaired
    from anyfeedback.llm.data import encode_records
    from anyfeedback.llm.model import completion_logits, load_tokenizer
    from anyfeedback.llm.records import load_records
    from anyfeedback.losses import pmpo_loss, token_logps_and_kl

    class _C:
        model, trust_remote_code = str(paths["model"]), False

    tok = load_tokenizer(_C)
    kind, records = load_records(str(paths["unpaired"]))
    ex = encode_records(tok, records, kind, max_length=MAX_LENGTH).examples
    plan = BatchPlan([e.length for e in ex], batch_size=BATCH, accumulation=1, world_size=1, seed=0)
    batches = [
        collate_unpaired([ex[i] for i in plan.micro_batches(s, 0)[0]], tok.pad_token_id)
        for s in range(steps)
    ]
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    ends = []
    for b in batches:
        s = b.seqs
        with torch.inference_mode():
            ref_logits = completion_logits(ref, s)  # LM head on completion positions only
        logits = completion_logits(model, s)
        logps, kl, _ = token_logps_and_kl(logits, *s.kept(), ref_logits.clone())
        loss, _ = pmpo_loss(logps[b.accepted], logps[~b.accepted], kl, alpha=0.5, beta=0.5)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ends.append(_stamp())
    return _result("minimal", ends, steps, tokens)


def child(name: str, steps: int) -> None:
    import torch

    torch.set_num_threads(THREADS)
    paths = build_assets(steps * BATCH)
    data = paths["unpaired" if name in ("trl-kto", "pmpo", "minimal") else "paired"]
    tokens = record_tokens(paths["model"], data)
    if name.startswith("trl-"):
        res = run_trl(name, paths, steps, tokens)
    elif name == "minimal":
        res = run_minimal(paths, steps, tokens)
    else:
        res = run_ours(name, paths, steps, tokens)
    print("RESULT " + json.dumps(res), flush=True)


def _spawn(name: str, steps: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", ANYFEEDBACK_PROGRESS="0")
    env.update(OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    cmd = [sys.executable, __file__, "--child", name, "--steps", str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _table(summary: dict) -> str:
    rows = [
        "| run | s/step (wall) | s/step (CPU) | samples/s | tokens/s | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for name in RUNS:
        s = summary[name]
        rows.append(
            f"| {name} | {s['s_per_step']:.3f} | {s['cpu_s_per_step']:.3f} | "
            f"{s['samples_per_s']:.1f} | {s['tokens_per_s']:.0f} | {s['peak_rss_mib']:.0f} |"
        )
    return "\n".join(rows)


def _summarise(reps: list[dict], args) -> dict:
    """Medians over reps, ratios within each rep, and the conditions of the run."""
    import platform

    import torch
    import transformers
    import trl

    summary = {
        n: {k: statistics.median(r[n][k] for r in reps) for k in reps[0][n] if k != "run"}
        for n in RUNS
    }
    ratio_defs = {
        "pmpo_vs_trl_kto_samples_per_s": ("pmpo", "trl-kto", "samples_per_s"),
        "pmpo_vs_trl_kto_samples_per_cpu_s": ("pmpo", "trl-kto", "samples_per_cpu_s"),
        "dpo_vs_trl_dpo_samples_per_s": ("dpo", "trl-dpo", "samples_per_s"),
        "dpo_vs_trl_dpo_samples_per_cpu_s": ("dpo", "trl-dpo", "samples_per_cpu_s"),
        "pmpo_step_vs_minimal_loop": ("pmpo", "minimal", "s_per_step"),
        "pmpo_cpu_step_vs_minimal_loop": ("pmpo", "minimal", "cpu_s_per_step"),
        "pmpo_vs_trl_kto_peak_rss": ("pmpo", "trl-kto", "peak_rss_mib"),
        "dpo_vs_trl_dpo_peak_rss": ("dpo", "trl-dpo", "peak_rss_mib"),
    }
    ratios = {k: [r[a][m] / r[b][m] for r in reps] for k, (a, b, m) in ratio_defs.items()}
    conditions = {
        "model": "Llama, hidden 256, 6 layers, 4 heads, MLP 768, BPE vocab 1850 (~6.1M params)",
        "data": f"{args.steps * BATCH} records: prompts 6-48 words, completions 6-56 words",
        "batch_records_per_step": BATCH, "max_length": MAX_LENGTH, "steps": args.steps,
        "warmup_steps_excluded": WARMUP, "dtype": "float32", "device": "cpu",
        "cpu_count": os.cpu_count(), "torch_threads": THREADS, "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "trl": trl.__version__,
    }  # fmt: skip
    return {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vs_trl.py "
        f"--reps {args.reps} --steps {args.steps}",
        "conditions": conditions,
        "median": summary,
        "ratios_per_rep": ratios,
        "ratios_median": {k: statistics.median(v) for k, v in ratios.items()},
        "reps": reps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--child", choices=RUNS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    build_assets(args.steps * BATCH)
    reps = []
    for rep in range(args.reps):
        res = {name: _spawn(name, args.steps) for name in RUNS}
        reps.append(res)
        print(f"rep {rep + 1}: " + ", ".join(f"{n} {r['s_per_step']:.3f}s" for n, r in res.items()))
    result = _summarise(reps, args)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vs_trl.json").write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result["median"]))
    for k, v in result["ratios_median"].items():
        per_rep = ", ".join(f"{x:.2f}" for x in result["ratios_per_rep"][k])
        print(f"{k}: {v:.2f}  (per rep: {per_rep})")


if __name__ == "__main__":
    main()
