"""Wall and CPU time of `anyfeedback demo` end to end, each run with an empty model cache (so the
start model is trained too), alone ("quiet") or beside one CPU-bound Python loop ("busy"), one
after another. Records the load average before each run, the command's wall time and CPU time
(its whole process tree), the times `summary.json` records from inside the run, and whether every
run gave the same results.

    python benchmarks/demo_wall.py --runs quiet,busy,quiet --out results/demo/wall.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = [sys.executable, "-c", "while True: pass"]


def timeline(demo_out: Path) -> dict:
    """Seconds from the start of the run (`summary.json`'s time minus its `wall_s`) at which
    each method started and ended, and its mean training and sampling seconds per step."""
    summary_path = demo_out / "summary.json"
    start = summary_path.stat().st_mtime - json.loads(summary_path.read_text())["wall_s"]
    out = {}
    for run in sorted(p for p in demo_out.iterdir() if (p / "metrics.jsonl").exists()):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in rows if "train/step_time_s" in r]
        out[run.name] = {
            "started_s": round((run / "config.json").stat().st_mtime - start, 1),
            "ended_s": round((run / "report.html").stat().st_mtime - start, 1),
            "train_s_per_step": round(sum(r["train/step_time_s"] for r in steps) / len(steps), 3),
            "sampling_s_per_step": round(
                sum(r["gen/new_tokens"] / r["gen/tokens_per_s"] for r in steps) / len(steps), 3
            ),
        }
    out["report_written_s"] = round((demo_out / "report.html").stat().st_mtime - start, 1)
    return out


def one_run(kind: str, demo_out: Path) -> dict:
    cache = tempfile.mkdtemp(prefix="anyfeedback-cache-")
    busy = subprocess.Popen(BUSY) if kind == "busy" else None
    try:
        if busy:
            time.sleep(2)  # the loop is running before the demo starts
        load = os.getloadavg()[0]
        cmd = [
            str(Path(sys.executable).with_name("anyfeedback")),
            "demo",
            "--overwrite",
            "--out",
            str(demo_out),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        env = dict(os.environ, ANYFEEDBACK_CACHE=cache, ANYFEEDBACK_PROGRESS="0")
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the demo only: busy not reaped
    finally:
        if busy:
            busy.kill()
            busy.wait()
        shutil.rmtree(cache, ignore_errors=True)
    summary = json.loads((demo_out / "summary.json").read_text())
    return {
        "kind": kind,
        "load_average_1min_before": round(load, 2),
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
        "summary_wall_s": summary["wall_s"],
        "summary_cpu_s": summary["cpu_s"],
        "methods": summary["methods"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="quiet,busy,quiet", help="comma-separated quiet|busy")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    ap.add_argument("--demo-out", type=Path, default=Path(tempfile.gettempdir()) / "demo-wall")
    ap.add_argument("--pause", type=float, default=20.0, help="seconds between runs")
    ap.add_argument(
        "--timeline-of",
        type=Path,
        help="only add the timeline of this finished demo directory to --out (an existing JSON)",
    )
    args = ap.parse_args()
    if args.timeline_of:
        record = json.loads(args.out.read_text())
        record["timeline_last_run"] = timeline(args.timeline_of)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        return
    kinds = args.runs.split(",")
    if any(k not in ("quiet", "busy") for k in kinds):
        sys.exit(f"--runs: each entry must be quiet or busy, got {args.runs!r}")
    runs = []
    for i, kind in enumerate(kinds):
        if i:
            time.sleep(args.pause)
        runs.append(one_run(kind, args.demo_out))
        r = runs[-1]
        print(
            f"{kind}: wall {r['wall_s']} s, CPU {r['cpu_s']} s, load {r['load_average_1min_before']}"
        )
    same = all(r["methods"] == runs[0]["methods"] for r in runs)
    quiet = sorted(r["wall_s"] for r in runs if r["kind"] == "quiet")
    busy = [r["wall_s"] for r in runs if r["kind"] == "busy"]
    record = {
        "command": "python benchmarks/demo_wall.py " + " ".join(sys.argv[1:]),
        "cores": len(os.sched_getaffinity(0)),
        "same_results_every_run": same,
        "quiet_wall_s": quiet,
        "busy_wall_s": busy,
        "busy_over_median_quiet": (
            round(max(busy) / quiet[len(quiet) // 2], 2) if quiet and busy else None
        ),
        "runs": [{k: v for k, v in r.items() if k != "methods"} for r in runs],
        "timeline_last_run": timeline(args.demo_out),  # each run overwrites the directory
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}))


if __name__ == "__main__":
    main()
