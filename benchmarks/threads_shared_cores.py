"""How a CPU run degrades when another CPU-bound process shares the cores.

Runs a short `anyfeedback online` PMPO run on the quick demo model (built and cached on first
use) through the CLI, alone and beside one busy Python loop (`while True: pass`), and prints the
wall and CPU time of each and the slowdown. With the thread defaults set at CLI start
(`anyfeedback.runs.thread_defaults`: passive OpenMP waiting, threads = cores available) the
slowdown should stay near the fair share (2 cores among 3 busy threads: ~1.5×). Variables set
in the environment are kept, so e.g. `OMP_WAIT_POLICY=ACTIVE` shows spinning threads.

    python benchmarks/threads_shared_cores.py [--steps 4] [--out /tmp/threads-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/threads-bench"))
    args = ap.parse_args()
    from anyfeedback.llm.demo.pretrain import QUICK, demo_model

    model = demo_model(QUICK)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["ANYFEEDBACK_PROGRESS"] = "0"
    cmd = [sys.executable, "-m", "anyfeedback.cli", "online", "--model", str(model)]
    cmd += ["--prompts", "demo", "--reward", "sentiment", "--steps", str(args.steps)]
    cmd += ["--eval-every", "0", "--eval-prompts", "8", "--learning-rate", "5e-4"]
    cmd += ["--save-steps", "0", "--no-progress"]
    results = {}
    for name, busy in (("alone", False), ("beside one busy loop", True)):
        spinner = None
        if busy:
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            wall, cpu = timed(cmd + ["--out", str(args.out / name.replace(" ", "-"))], env)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        results[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        print(f"{name}: wall {wall:.1f} s, CPU {cpu:.1f} s", flush=True)
    ratio = results["beside one busy loop"]["wall_s"] / results["alone"]["wall_s"]
    results["slowdown"] = round(ratio, 2)
    results["load_average"] = os.getloadavg()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
