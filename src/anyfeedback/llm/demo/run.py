"""`anyfeedback demo`: the whole offline story on CPU, in minutes.

1. A tokenizer and a small Llama trained from scratch (SFT) on generated reviews (cached).
2. From that same start model, the online loop (sample 4 → VADER sentiment → top-2 accepted,
   bottom-2 rejected → update) with PMPO-AR, PMPO-A, PMPO-R and DPO (best vs worst of 4),
   the analogue of PMPO's LLM experiment (Figs. 4–5), on the same prompts and seeds.
3. `report.html` + PNGs: reward and KL against steps, win rate against the start model on
   held-out prompts, and real completions of the start and trained models for the same prompts.

The four methods are independent runs, so they run side by side in worker processes, one per
available core (at most four), each with one torch thread: on a model this small, separate
processes use the cores far better than intra-op threads, which wait for each other at every
op. `anyfeedback demo` on Linux forks the workers before it runs any torch op, so they share its
imports (seconds of CPU each); elsewhere they are spawned and import while the start model
trains. Every number is the same whatever the number of workers and however they start: a
method's run depends only on its settings and seed, and each worker computes with one thread.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
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


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers, once joined)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _worker_imports() -> None:
    """What a method's run imports (the online loop, the demo model's Llama classes, matplotlib
    for the report): seconds of CPU, paid once per spawned worker, or once in the parent
    before forking them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401  (the demo model is a Llama)

    import anyfeedback.llm.online.loop  # noqa: F401


def _worker_start() -> None:
    """Each worker: one torch thread, no HF progress bars, and its imports done now (spawned
    workers: while the parent still trains the start model)."""
    import torch
    from transformers.utils import logging as hf_logging

    _worker_imports()
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()


def _run_method(settings: dict) -> tuple[dict, list[dict], dict]:
    """One method's online run (in a worker): its summary row, sample rows and held-out
    rewards."""
    from anyfeedback.llm.online.config import OnlineConfig
    from anyfeedback.llm.online.loop import run_online
    from anyfeedback.llm.online.report import sample_rows, summary_row
    from anyfeedback.runs import read_metrics

    cfg = OnlineConfig(**settings)
    result = run_online(cfg)
    rewards = {
        "start": result.start.reward_mean,
        "final": result.final.reward_mean,
        "win_rate": result.final.win_rate,
    }
    row = summary_row(result, read_metrics(Path(cfg.out) / "metrics.jsonl"))
    return row, sample_rows(result), rewards


def _steps_done(metrics: Path) -> int:
    """Steps a running method has logged (its metrics.jsonl has one row per step after step 0)."""
    try:
        with open(metrics, "rb") as fh:
            return max(0, sum(1 for _ in fh) - 1)
    except FileNotFoundError:
        return 0


def _watch(futures: dict, out: Path, steps: dict[str, int], log) -> None:
    """One progress line for all methods, read from their metrics files, until all finish
    (or one fails: its exception is raised by `.result()` in the caller)."""
    from anyfeedback.runs import progress

    names, reported = list(futures), set()
    with progress("online", sum(steps.values())) as (bar, task):
        shown = 0
        while True:
            done, _ = wait(futures.values(), timeout=0.5, return_when=FIRST_EXCEPTION)
            counts = {n: _steps_done(out / n.lower() / "metrics.jsonl") for n in names}
            info = " · ".join(f"{n} {c}/{steps[n]}" for n, c in counts.items())
            for _ in range(sum(counts.values()) - shown):
                shown += 1
                bar.update(task, advance=1, info=info)
            for name in names:
                fut = futures[name]
                if fut in done and name not in reported and fut.exception() is None:
                    reported.add(name)
                    _, _, r = fut.result()
                    log(
                        f"  {name}: held-out reward {r['start']:+.3f} → {r['final']:+.3f}, "
                        f"win rate vs start {r['win_rate']:.2f}"
                    )
            if len(done) == len(futures) or any(f.exception() for f in done):
                return


def _stop(pool: ProcessPoolExecutor) -> None:
    """After a failure or Ctrl-C: cancel what has not started and end the workers now, rather
    than let the other methods run to completion first. The executor has no public way to end
    running tasks, hence its worker table (absent on other Python versions: then we just wait)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


@contextlib.contextmanager
def worker_pool(workers: int, start_method: str = "spawn"):
    """`workers` processes for `run_methods`, started now. Spawned workers import what they need
    while the caller goes on (the demo: training the start model). "fork" shares the parent's
    imports instead (no import at all in the workers), but only a parent that has not run a
    torch op yet may fork: a forked child of a process whose OpenMP threads have started can
    hang at its first parallel region."""
    import multiprocessing

    ctx = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_start) as pool:
        for _ in range(workers):
            pool.submit(_ready)
        try:
            yield pool
        except BaseException:
            _stop(pool)
            raise


def _ready() -> None:
    """A no-op task: one per worker makes the executor start every worker at once."""


def run_methods(
    pool: ProcessPoolExecutor, model: Path, out: Path, methods: dict[str, dict], log=print
) -> dict[str, tuple[dict, list[dict]]]:
    """Run `anyfeedback online` from `model` once per entry of `methods` (name → OnlineConfig
    fields; out = OUT/<name lowercased>) on `pool` (`worker_pool`), one progress line for all.
    Returns name → (summary row, sample rows). The first failure is raised here (and, through
    `worker_pool`, ends the other runs)."""
    futures = {
        name: pool.submit(
            _run_method,
            {"model": str(model), "out": str(out / name.lower()), "progress": False, **settings},
        )
        for name, settings in methods.items()
    }
    _watch(futures, out, {name: settings["steps"] for name, settings in methods.items()}, log)
    return {name: fut.result()[:2] for name, fut in futures.items()}


def run_demo(
    out: Path, *, quick: bool = False, log=print, workers: int | None = None, fork: bool = False
) -> Path:
    """Run the demo into `out`; return the report path. `summary.json` records each method's
    summary row (`report.summary_row`), and the wall and CPU time of the whole demo (the start
    model's training included when it was not cached; the workers' CPU time included).
    `fork`: fork the workers (`worker_pool`) — only from a process that has run no torch op
    yet (`anyfeedback demo` on Linux); otherwise they are spawned."""
    from transformers.utils import logging as hf_logging

    from anyfeedback.llm.online.report import write_report
    from anyfeedback.runs import read_metrics

    hf_logging.disable_progress_bar()
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    cores = len(os.sched_getaffinity(0))
    workers = workers or max(1, min(cores, len(METHODS)))
    steps, eval_every = STEPS["quick" if quick else "full"]
    methods = {
        name: {**ONLINE, **settings, "steps": steps, "eval_every": eval_every}
        for name, settings in METHODS.items()
    }
    # what training the start model imports, before the workers start: spawned workers' imports
    # then overlap the training instead of slowing ours down; forked ones share ours
    import transformers.models.llama.modeling_llama  # noqa: F401

    import anyfeedback.llm.fit  # noqa: F401

    if fork:
        _worker_imports()
    with worker_pool(workers, "fork" if fork else "spawn") as pool:
        model = demo_model(QUICK if quick else DemoModelSpec(), log=log)
        log(
            f"online: {', '.join(METHODS)}, {steps} steps × {ONLINE['prompts_per_step']} "
            f"prompts × {ONLINE['k']} samples each, {workers} at a time"
        )
        results = run_methods(pool, model, out, methods, log=log)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    runs = {name: read_metrics(out / name.lower() / "metrics.jsonl") for name in METHODS}
    summary = {name: r[0] for name, r in results.items()}
    samples = {name: r[1] for name, r in results.items()}
    notes = (
        f"Start model: {model.name} (trained from scratch on generated reviews). Reward: VADER "
        f"sentiment. {steps} steps of 16 prompts × 4 samples per method; held-out "
        f"evaluation on 64 prompts. Wall time {seconds:.0f} s, CPU time {cpu:.0f} s "
        f"({cores} cores available, {workers} methods at a time)."
    )
    record = {
        "methods": summary,
        "wall_s": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "cores": cores,
        "workers": workers,
        "steps": steps,
        "quick": quick,
        "command": "anyfeedback demo" + (" --quick" if quick else ""),
    }
    return write_report(out, runs, samples, record, notes=notes)
