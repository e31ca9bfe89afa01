"""How a CPU run degrades when another CPU-bound process shares the cores, per thread setting.

Runs one workload through the CLI, in a fresh process per run, once per thread setting, alone
and beside one busy Python loop (`while True: pass`), alternating settings so that a change of
machine load hits all of them alike, and prints wall and CPU time of each with the slowdown.

Workloads:
  sft     the demo's start-model training (`anyfeedback train --method sft`, the demo's data,
          model size and optimiser settings) for --steps steps: one process, intra-op threads
  online  a short `anyfeedback online` PMPO run on the quick demo model (built and cached
          on first use)

Settings (environment of the run; anything else set in this shell is kept):
  defaults   what `anyfeedback` sets at start (`anyfeedback.runs.thread_defaults`)
  passive    OMP_WAIT_POLICY=PASSIVE (threads sleep at every barrier)
  short-spin GOMP_SPINCOUNT=1000 (spin about 1000 pause instructions, then sleep)
  spin       GOMP_SPINCOUNT=300000 (libgomp's own default: spin ~0.1–1 ms before sleeping)
  one        one intra-op thread

    python benchmarks/threads_shared_cores.py --workload sft --steps 60 --reps 2 \
        --out results/demo/threads_sft.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "defaults": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
    "short-spin": {"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": None},
    "spin": {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": None},
    "one": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
THREAD_VARS = ("OMP_", "MKL_", "KMP_", "GOMP_")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def sft_command(steps: int, work: Path) -> list[str]:
    """The demo's start-model SFT (`llm.demo.pretrain`), from an untrained model built once."""
    from anyfeedback.llm.corpus import review_corpus
    from anyfeedback.llm.demo.pretrain import DemoModelSpec, _sft_records
    from anyfeedback.llm.tiny import build_tiny_model

    spec = DemoModelSpec()
    corpus = review_corpus(spec.reviews, seed=spec.seed)
    base = work / "base"
    if not (base / "config.json").exists():
        build_tiny_model(
            base,
            corpus,
            vocab_size=spec.vocab_size,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            num_heads=spec.num_heads,
            seed=spec.seed,
        )
    data = work / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _sft_records(corpus)))
    cmd = [sys.executable, "-m", "anyfeedback.cli", "train", "--model", str(base)]
    cmd += ["--data", str(data), "--method", "sft", "--learning-rate", str(spec.learning_rate)]
    cmd += ["--lr-scheduler-type", "cosine", "--warmup-steps", "20", "--max-steps", str(steps)]
    cmd += ["--batch-size", str(spec.batch_size), "--max-length", "96", "--save-steps", "0"]
    return cmd + ["--log-kl-every", "0", "--weight-decay", "0.01", "--no-progress"]


def online_command(steps: int) -> list[str]:
    from anyfeedback.llm.demo.pretrain import QUICK, demo_model

    model = demo_model(QUICK)
    cmd = [sys.executable, "-m", "anyfeedback.cli", "online", "--model", str(model)]
    cmd += ["--prompts", "demo", "--reward", "sentiment", "--steps", str(steps)]
    cmd += ["--eval-every", "0", "--eval-prompts", "8", "--learning-rate", "5e-4"]
    return cmd + ["--save-steps", "0", "--no-progress"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("sft", "online"), default="sft")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--settings", default="defaults,passive,one", help="of " + ",".join(SETTINGS))
    ap.add_argument("--out", type=Path, help="results JSON (default: print only)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="threads-bench-"))
    cmd = sft_command(args.steps, work) if args.workload == "sft" else online_command(args.steps)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(THREAD_VARS)}
    base_env["ANYFEEDBACK_PROGRESS"] = "0"
    names = args.settings.split(",")
    runs: dict[str, dict[str, list]] = {n: {"alone": [], "beside one busy loop": []} for n in names}
    loads = []
    for _ in range(args.reps):
        for condition in ("alone", "beside one busy loop"):
            for name in names:
                env = dict(base_env)
                for key, value in SETTINGS[name].items():
                    env.pop(key, None) if value is None else env.__setitem__(key, value)
                spinner = None
                if condition != "alone":
                    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                loads.append(os.getloadavg()[0])
                try:
                    out = work / f"run-{name}-{len(loads)}"
                    wall, cpu = timed(cmd + ["--out", str(out)], env)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                runs[name][condition].append({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
                print(f"{name:9s} {condition:21s} wall {wall:6.1f} s  CPU {cpu:6.1f} s", flush=True)
    summary = {}
    for name, by in runs.items():
        alone = min(r["wall_s"] for r in by["alone"])
        busy = min(r["wall_s"] for r in by["beside one busy loop"])
        summary[name] = {
            "alone_wall_s": alone,
            "busy_wall_s": busy,
            "slowdown": round(busy / alone, 2),
        }
    result = {
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "workload": args.workload,
        "steps": args.steps,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_before_each_run": loads,
        "runs": runs,
        "best_of_reps": summary,
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
