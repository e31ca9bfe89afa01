"""`anyfeedback demo`: the whole offline story on CPU, in minutes.

1. A tokenizer and a small Llama trained from scratch (SFT) on generated reviews (cached).
2. From that same start model, the online loop (sample 4 → VADER sentiment → top-2 accepted,
   bottom-2 rejected → update) with PMPO-AR, PMPO-A, PMPO-R and DPO (best vs worst of 4),
   the analogue of PMPO's LLM experiment (Figs. 4–5), on the same prompts and seeds.
3. `report.html` + PNGs: reward and KL against steps, win rate against the start model on
   held-out prompts, and real completions of the start and trained models for the same prompts.
"""

from __future__ import annotations

import time
from pathlib import Path

from anyfeedback.llm.demo.pretrain import QUICK, DemoModelSpec, demo_model

# name → the method's settings; β values are the paper's defaults (PMPO §5; DPO 0.1)
METHODS = {
    "PMPO-AR": {"method": "pmpo", "alpha": 0.5, "beta": 0.5},
    "PMPO-A": {"method": "pmpo", "alpha": 1.0, "beta": 0.0},
    "PMPO-R": {"method": "pmpo", "alpha": 0.0, "beta": 2.0},
    "DPO": {"method": "dpo", "beta": 0.1},
}
ONLINE = {
    "prompts": "demo",
    "reward": "sentiment",
    "k": 4,
    "k_accept": 2,
    "k_reject": 2,
    "prompts_per_step": 16,
    "max_new_tokens": 24,
    "learning_rate": 5e-4,
    "ref_update_every": 10,
    "eval_prompts": 64,
    "save_steps": 0,
    "seed": 0,
}
STEPS = {"full": (30, 5), "quick": (10, 5)}  # (steps, eval_every)


def run_demo(out: Path, *, quick: bool = False, log=print) -> Path:
    """Run the demo into `out`; return the report path. `summary.json` records each method's
    summary row (`report.summary_row`), and the wall and CPU time of the whole demo (the start
    model's training included when it was not cached)."""
    import os

    from transformers.utils import logging as hf_logging

    from anyfeedback.llm.online.config import OnlineConfig
    from anyfeedback.llm.online.loop import run_online
    from anyfeedback.llm.online.report import sample_rows, summary_row, write_report
    from anyfeedback.runs import read_metrics

    hf_logging.disable_progress_bar()
    t0, cpu0 = time.perf_counter(), time.process_time()
    model = demo_model(QUICK if quick else DemoModelSpec(), log=log)
    steps, eval_every = STEPS["quick" if quick else "full"]
    runs, samples, summary = {}, {}, {}
    for name, settings in METHODS.items():
        log(f"online {name}: {steps} steps × {ONLINE['prompts_per_step']} prompts × 4 samples")
        cfg = OnlineConfig(
            model=str(model),
            out=str(out / name.lower()),
            steps=steps,
            eval_every=eval_every,
            **ONLINE,
            **settings,
        )
        result = run_online(cfg)
        runs[name] = read_metrics(out / name.lower() / "metrics.jsonl")
        summary[name] = summary_row(result, runs[name])
        samples[name] = sample_rows(result)
        log(
            f"  held-out reward {result.start.reward_mean:+.3f} → {result.final.reward_mean:+.3f}"
            f", win rate vs start {result.final.win_rate:.2f}"
        )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    notes = (
        f"Start model: {model.name} (trained from scratch on generated reviews). Reward: VADER "
        f"sentiment. {steps} steps of 16 prompts × 4 samples per method; held-out "
        f"evaluation on 64 prompts. Wall time {seconds:.0f} s, CPU time {cpu:.0f} s "
        f"({len(os.sched_getaffinity(0))} cores available)."
    )
    record = {
        "methods": summary,
        "wall_s": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "cores": len(os.sched_getaffinity(0)),
        "steps": steps,
        "quick": quick,
        "command": "anyfeedback demo" + (" --quick" if quick else ""),
    }
    return write_report(out, runs, samples, record, notes=notes)
