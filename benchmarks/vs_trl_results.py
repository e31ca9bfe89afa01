"""The summary of `benchmarks/vs_trl.py`: medians over repetitions, the ratios between runs,
the conditions of the measurement, the merge of single-run invocations into one result, the
JSON under results/bench/ and the printed Markdown table."""

from __future__ import annotations

import json
import os
import statistics

from bench_assets import OUT, Profile

WARMUP = 3  # steps left out of every timing
RUNS = ("trl-kto", "pmpo", "kto", "minimal", "trl-dpo", "dpo")
# optional runs (not in the default set): our PMPO under --torch-compile / --gradient-checkpointing,
# and on a GPU TRL with use_liger_kernel=True (Liger's RMSNorm/SwiGLU/RoPE kernels beside TRL's own
# chunked LM head: TRL's leanest path, the second anchor)
EXTRA = ("pmpo-compile", "pmpo-checkpointing", "trl-kto-liger", "trl-dpo-liger")


def _table(summary: dict, runs: tuple[str, ...]) -> str:
    gpu = "peak_gpu_mib" in summary[runs[0]]
    mem = "peak GPU (MiB)" if gpu else "peak RSS (MiB)"
    head = f"| run | s/step (wall) | s/step (CPU) | samples/s | tokens/s | {mem} |"
    rows = [head + (" MFU |" if gpu else ""), "|---|---|---|---|---|---|" + ("---|" if gpu else "")]
    for name in runs:
        s = summary[name]
        if "error" in s:  # e.g. out of GPU memory: the run's last error line
            rows.append(f"| {name} | failed: {s['error'][:80]} |" + " |" * (5 if gpu else 4))
            continue
        row = (
            f"| {name} | {s['s_per_step']:.3f} | {s['cpu_s_per_step']:.3f} | "
            f"{s['samples_per_s']:.1f} | {s['tokens_per_s']:.0f} | "
            f"{s['peak_gpu_mib' if gpu else 'peak_rss_mib']:.0f} |"
        )
        rows.append(row + (f" {100 * s['mfu']:.1f} % |" if gpu else ""))
    return "\n".join(rows)


def summarise(p: Profile, reps: list[dict], args, runs: tuple[str, ...]) -> dict:
    """Medians over reps, ratios within each rep, and the conditions of the run."""
    import platform

    import torch
    import transformers
    import trl

    failed = {
        n: next(r[n]["error"] for r in reps if "error" in r[n])
        for n in runs
        if any("error" in r[n] for r in reps)
    }
    summary = {
        n: {"error": failed[n]}
        if n in failed
        else {k: statistics.median(r[n][k] for r in reps) for k in reps[0][n] if k != "run"}
        for n in runs
    }
    mem = "peak_gpu_mib" if torch.cuda.is_available() else "peak_rss_mib"
    ratio_defs = {
        "pmpo_vs_trl_kto_samples_per_s": ("pmpo", "trl-kto", "samples_per_s"),
        "pmpo_vs_trl_kto_samples_per_cpu_s": ("pmpo", "trl-kto", "samples_per_cpu_s"),
        "kto_vs_trl_kto_samples_per_s": ("kto", "trl-kto", "samples_per_s"),
        "kto_vs_trl_kto_samples_per_cpu_s": ("kto", "trl-kto", "samples_per_cpu_s"),
        "dpo_vs_trl_dpo_samples_per_s": ("dpo", "trl-dpo", "samples_per_s"),
        "dpo_vs_trl_dpo_samples_per_cpu_s": ("dpo", "trl-dpo", "samples_per_cpu_s"),
        "pmpo_step_vs_minimal_loop": ("pmpo", "minimal", "s_per_step"),
        "pmpo_compile_cpu_step_vs_pmpo": ("pmpo-compile", "pmpo", "cpu_s_per_step"),
        "pmpo_checkpointing_cpu_step_vs_pmpo": ("pmpo-checkpointing", "pmpo", "cpu_s_per_step"),
        "pmpo_cpu_step_vs_minimal_loop": ("pmpo", "minimal", "cpu_s_per_step"),
        f"pmpo_vs_trl_kto_{mem}": ("pmpo", "trl-kto", mem),
        f"kto_vs_trl_kto_{mem}": ("kto", "trl-kto", mem),
        f"dpo_vs_trl_dpo_{mem}": ("dpo", "trl-dpo", mem),
        "pmpo_vs_trl_kto_tokens_per_s": ("pmpo", "trl-kto", "tokens_per_s"),
        "pmpo_vs_trl_kto_liger_tokens_per_s": ("pmpo", "trl-kto-liger", "tokens_per_s"),
        f"pmpo_vs_trl_kto_liger_{mem}": ("pmpo", "trl-kto-liger", mem),
        f"dpo_vs_trl_dpo_liger_{mem}": ("dpo", "trl-dpo-liger", mem),
    }
    ratios = {
        k: [r[a][m] / r[b][m] for r in reps]
        for k, (a, b, m) in ratio_defs.items()
        if a in runs and b in runs and a not in failed and b not in failed
    }
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    conditions = {
        "model": p.model_desc,
        "data": f"{args.steps * p.batch} records: prompts {p.prompt_words[0]}-"
        f"{p.prompt_words[1]} words, completions {p.completion_words[0]}-"
        f"{p.completion_words[1]} words",
        "batch_records_per_step": p.batch,
        "max_length": p.max_length,
        "steps": args.steps,
        "warmup_steps_excluded": WARMUP,
        "dtype": "float32 weights, bf16 autocast" if p.bf16 else "float32",
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": p.threads,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "load_average_1_5_15_min_at_start": args.load_at_start,
        "load_average_1_5_15_min_at_end": list(os.getloadavg()),
    }
    return {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vs_trl.py "
        f"--profile {args.profile} --reps {args.reps} --steps {args.steps}"
        + (f" --batch {args.batch}" if args.batch else "")
        + ("" if args.runs == ",".join(RUNS) else f" --runs {args.runs}")
        + (" --keep-going" if getattr(args, "keep_going", False) else "")
        + (f" --out {args.out}" if args.out else ""),
        "conditions": conditions,
        "median": summary,
        "ratios_per_rep": ratios,
        "ratios_median": {k: statistics.median(v) for k, v in ratios.items()},
        "reps": reps,
        # the runs this JSON holds: fewer than --runs asked for in a file rewritten while the
        # invocation still ran (then cut off)
        "runs_finished": list(runs),
    }


def merge(p: Profile, args) -> None:
    """One rep from several single-run results, as if one invocation had run them in turn."""
    parts = [json.loads(f.read_text()) for f in args.merge]
    rep = {name: r for part in parts for name, r in part["reps"][0].items()}
    runs = tuple(r for r in RUNS + EXTRA if r in rep)
    args.reps, args.runs = 1, ",".join(runs)
    args.load_at_start = parts[0]["conditions"]["load_average_1_5_15_min_at_start"]
    result = summarise(p, [rep], args, runs)
    result["conditions"]["load_average_1_5_15_min_at_end"] = max(
        (part["conditions"]["load_average_1_5_15_min_at_end"] for part in parts), key=lambda x: x[0]
    )
    result["conditions"]["load_average_per_run_start_end"] = {
        name: [part["conditions"][f"load_average_1_5_15_min_at_{w}"] for w in ("start", "end")]
        for part in parts
        for name in part["reps"][0]
    }
    result["command"] = (
        ("one after another" if args.one_after_another else "side by side")
        + ", one process each: "
        + "; ".join(part["command"] for part in parts)
        + "; then benchmarks/vs_trl.py --merge "
        + " ".join(map(str, args.merge))
        + (" --one-after-another" if args.one_after_another else "")
    )
    write(p, result, args, runs)


def write(p: Profile, result: dict, args, runs: tuple[str, ...]) -> None:
    out = args.out or OUT / ("vs_trl.json" if p.name == "cpu" else f"vs_trl_{p.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result["median"], runs))
    for k, v in result["ratios_median"].items():
        per_rep = ", ".join(f"{x:.2f}" for x in result["ratios_per_rep"][k])
        print(f"{k}: {v:.2f}  (per rep: {per_rep})")
