"""The GPU checks of docs/results/llm-speed.md in parts that each fit one short device call; run
through benchmarks/gpu_check.sh (which installs the carried wheels first).

  speed  vs_trl.py --profile gpu (0.49B Llama, 152k vocabulary, max length 1024, bf16) at 16
         records per step: trl-kto, pmpo, trl-kto-liger; at 64: the same three. A run that does
         not fit is recorded as failed with its error line.
  scale  scale_out_check.py (plain, DeepSpeed ZeRO-2 and FSDP2 through the committed accelerate
         configs, one process; the resume checks ran on CPU); padding_free.py --profile gpu; then,
         with the time left, the largest records per step that fits (from what `speed` found at
         64: doubling from 128, or 32 if 64 did not fit), tokens/s and MFU there.
  extra  vs_trl.py at 16 records per step: kto, trl-dpo, dpo, trl-dpo-liger, minimal.

Each part stops starting runs when its --budget seconds are spent. After every run it rewrites
$OUT/gpu_<part>.json (the summary: device, versions, every run's result file, exit status and
whether time ran out) and $OUT/logs_<part>.tar.gz, so a call cut off by the device's limit still
returns what finished; vs_trl.py also rewrites its JSON after each of its runs. At most 6 files
come back per part (a device call brings back 8).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEED = "trl-kto,pmpo,trl-kto-liger"
EXTRA = "kto,trl-dpo,dpo,trl-dpo-liger,minimal"
ARGS = argparse.Namespace()  # the command line (main)


class Budget:
    """The part's deadline, and the summary it rewrites after every run."""

    def __init__(self, seconds: float, save=lambda: None):
        self.start, self.end, self.save = time.monotonic(), time.monotonic() + seconds, save

    def left(self) -> float:
        return self.end - time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.start


def run(cmd: list[str], log: Path, budget: Budget, need: float) -> int | None:
    """Run `cmd` if `need` seconds are left, its output to `log`; None if skipped, 124 if time
    ran out (its whole process group is killed: training grandchildren hold the GPU)."""
    if budget.left() < need:
        log.write_text(f"skipped: {budget.left():.0f} s left, needs ~{need:.0f} s\n")
        return None
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=max(1.0, budget.left()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            fh.write("\nstopped: the part's time budget ran out\n")
            code = 124
    budget.save()
    return code


def vs_trl(batch: int, runs: str, steps: int, out: Path, logs: Path, budget, need) -> dict:
    cmd = [sys.executable, str(HERE / "vs_trl.py"), "--profile", ARGS.profile, "--reps", "1"]
    cmd += ["--steps", str(steps), "--batch", str(batch), "--runs", runs, "--keep-going"]
    code = run([*cmd, "--out", str(out)], logs / f"{out.stem}.log", budget, need)
    res = {"exit": code, "timed_out": code == 124, "file": out.name if out.is_file() else None}
    if out.is_file():
        median = json.loads(out.read_text())["median"]
        res["fits"] = {name: "error" not in r for name, r in median.items()}
    return res


def _memo() -> Path:
    """Which runs fitted in `speed`, kept where the next call on the same (warm) machine finds
    it: each call starts with an empty OUT, but the built model and data stay (ignored files)."""
    from bench_assets import PROFILES

    return PROFILES[ARGS.profile].work / "gpu_check_fits.json"


def speed(out: Path, logs: Path, budget: Budget, steps: int, res: dict) -> None:
    for b in ARGS.sizes:  # three runs per call: ~40-50 s each with start-up, load and save
        res[f"b{b}"] = vs_trl(b, SPEED, steps, out / f"vs_trl_gpu_b{b}.json", logs, budget, 150)
        fits = {k: r.get("fits", {}) for k, r in res.items()}
        _memo().write_text(json.dumps({"sizes": ARGS.sizes, "fits": fits}) + "\n")


def largest_batch(logs: Path, budget: Budget, steps: int, found: dict | None = None) -> dict:
    """Per run: from the largest size that `speed` ran (if it fitted there: double from the next
    --largest size until a run fails; if not: halve), until a run fails or time runs out."""
    found = {} if found is None else found
    memo = json.loads(_memo().read_text()) if _memo().is_file() else None
    top = f"b{memo['sizes'][-1]}" if memo else None
    for name in SPEED.split(","):
        fitted_top = memo["fits"].get(top, {}).get(name) if memo else None
        if fitted_top is False:  # did not fit at the largest speed size: try half of it
            sizes = [memo["sizes"][-1] // 2]
        else:
            sizes = ARGS.largest
        entry = found[name] = {
            "fitted_at_largest_speed_size": fitted_top,
            "largest_tried_that_fits": None,
            "tried": [],
        }
        for batch in sizes:
            path = logs / f"fit_{name}_b{batch}.json"
            res = vs_trl(batch, name, steps, path, logs, budget, 60)
            attempt = {"batch": batch, "exit": res["exit"], "timed_out": res["timed_out"]}
            entry["tried"].append({**attempt, "fits": res.get("fits", {})})
            if not res.get("fits", {}).get(name):
                break
            r = json.loads(path.read_text())["median"][name]
            keys = ("tokens_per_s", "mfu", "peak_gpu_mib", "peak_rss_mib")  # GPU / CPU
            entry["largest_tried_that_fits"] = {"batch": batch, **{k: r[k] for k in keys if k in r}}
    return found


def scale(out: Path, logs: Path, budget: Budget, steps: int, res: dict) -> None:
    """The acceptance checks first (ZeRO-2/FSDP, padding-free), then the largest batch with what
    time is left."""
    so = out / "scale_out_gpu.json"
    cmd = [sys.executable, str(HERE / "scale_out_check.py"), "--profile", ARGS.profile]
    cmd += ["--steps", "4", "--engines", "plain,deepspeed_zero2,fsdp", "--resume", ""]
    res["scale_out"] = {"exit": run([*cmd, "--out", str(so)], logs / "scale_out.log", budget, 120)}
    pf = out / "padding_free_gpu.json"
    cmd = [sys.executable, str(HERE / "padding_free.py"), "--profile", ARGS.profile, "--steps", "8"]
    res["padding_free"] = {"exit": run([*cmd, "--out", str(pf)], logs / "pf.log", budget, 40)}
    res["largest_batch"] = {}
    largest_batch(logs, budget, steps, res["largest_batch"])


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # what is missing on the machine is itself a finding
        return "not installed"


def environment() -> dict:
    import torch

    env = {"python": sys.version.split()[0], "torch": torch.__version__}
    for dist in ("transformers", "accelerate", "trl", "datasets", "peft", "liger-kernel"):
        env[dist] = _version(dist)
    for dist in ("deepspeed", "triton", "numpy", "pyarrow", "idna"):  # the last three: the image's
        env[dist] = _version(dist)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["device"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("speed", "scale", "extra"))
    parser.add_argument("--budget", type=float, default=290, help="seconds for this part")
    parser.add_argument("--steps", type=int, default=8, help="steps per run (3 are warm-up)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")))
    # for a dry run of this script on CPU: vs_trl.py's cpu profile and smaller sizes
    parser.add_argument("--profile", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--sizes", default="16,64", help="records per step of the speed part")
    parser.add_argument("--largest", default="128,256,512", help="sizes the scale part doubles to")
    args = parser.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.largest = [int(x) for x in args.largest.split(",")]
    global ARGS
    ARGS = args
    # logs outside OUT: a device call brings back at most 8 files, so they travel as one archive
    out, logs = args.out, Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check_logs_{args.part}"
    shutil.rmtree(logs, ignore_errors=True)  # this script's own scratch directory
    logs.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict = {}
    summary = {"part": args.part, "environment": environment(), "budget_s": args.budget}
    summary["runs"] = runs

    def save() -> None:  # after every run: a call cut off later keeps what finished
        summary["seconds_used"] = round(budget.used(), 1)
        (out / f"gpu_{args.part}.json").write_text(json.dumps(summary, indent=2) + "\n")
        with tarfile.open(out / f"logs_{args.part}.tar.gz", "w:gz") as tar:
            tar.add(logs, arcname=logs.name)

    budget = Budget(args.budget, save)
    # a polite stop (SIGTERM) still writes the summary through `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.part == "speed":
            speed(out, logs, budget, args.steps, runs)
        elif args.part == "scale":
            scale(out, logs, budget, max(5, args.steps - 2), runs)
        else:
            path = out / "vs_trl_gpu_b16_extra.json"
            runs["b16"] = vs_trl(16, EXTRA, args.steps, path, logs, budget, 150)
    finally:  # whatever ran is written, also when a part breaks
        save()
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
