"""One-process runs through the committed accelerate configs (DeepSpeed ZeRO-2, FSDP2) against the
plain run on the same data, and an interrupted-and-resumed run against a straight one.

    PYTHONPATH=src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/scale_out_check.py \\
        --engines plain,deepspeed_zero2 --resume deepspeed_zero2      # CPU (needs deepspeed)
    python benchmarks/scale_out_check.py --profile gpu --engines plain,deepspeed_zero2,fsdp \\
        --resume deepspeed_zero2,fsdp --out $OUT/scale_out_gpu.json  # one GPU (gpu_check.sh)

Each engine runs `accelerate launch [--config_file recipes/accelerate/<engine>.yaml]
--num_processes 1 -m anyfeedback.cli train` for --steps PMPO steps (bf16, constant learning rate
so a resume needs no schedule), in its own process. Recorded per engine: exit code, wall seconds,
the distributed type accelerate actually set up (run_info.json: a config the installed accelerate
does not honour on this device shows as NO), and each step's loss, gradient norm, KL and peak
memory. `vs_plain` is the largest relative difference of step 1's loss and gradient norm from the
plain run (same weights and batch, so only the engine's arithmetic differs: bf16 weights under
DeepSpeed). A resume check runs steps/2 with a checkpoint, resumes to --steps, and reports the
largest absolute difference of every step's metrics from the straight run (0 = exact).
Workloads: the profiles of vs_trl.py (benchmarks/bench_assets.py). Result: --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_assets import OUT, PROFILES, ROOT, build_assets, last_error

KEYS = ("loss", "grad_norm", "kl", "peak_mem_mib")


def launch(engine: str, model: Path, data: Path, out: Path, steps: int, args, *extra) -> dict:
    config = [] if engine == "plain" else ["--config_file", f"recipes/accelerate/{engine}.yaml"]
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]  # no PATH lookup
    cmd = [*launcher, *config, "--num_processes", "1", "-m", "anyfeedback.cli"]
    rel = [os.path.relpath(x, ROOT) for x in (model, data, out)]  # runs from the root
    cmd += ["train", "--model", rel[0], "--data", rel[1], "--out", rel[2]]
    cmd += ["--method", "pmpo", "--bf16", "--batch-size", str(args.batch_size)]
    cmd += ["--max-length", str(args.max_length), "--max-steps", str(steps), "--no-progress"]
    cmd += ["--lr-scheduler-type", "constant", "--learning-rate", "1e-5", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    res = {
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "command": " ".join(["python", *cmd[1:]]),
    }
    if proc.returncode != 0:
        res["error"] = last_error(proc.stderr, proc.returncode)
        return res
    info = json.loads((out / "run_info.json").read_text())
    res["distributed_type"] = info.get("distributed_type")
    res["mixed_precision"] = info.get("mixed_precision")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    res["steps"] = [{k: m[k] for k in ("step", *KEYS) if k in m} for m in lines if "loss" in m]
    return res


def _largest_abs_diff(a: list[dict], b: list[dict]) -> float:
    return max(abs(x[k] - y[k]) for x, y in zip(a, b, strict=True) for k in KEYS[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--engines", default="plain,deepspeed_zero2")
    parser.add_argument("--resume", default="deepspeed_zero2", help="engines to resume-check")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    p = PROFILES[args.profile]
    args.batch_size = args.batch_size or p.batch
    args.max_length = args.max_length or p.max_length
    paths = build_assets(p, args.steps * args.batch_size)
    work = p.work / "scale-out"
    shutil.rmtree(work, ignore_errors=True)  # our own scratch directory under results/bench/
    work.mkdir(parents=True)
    engines = [e for e in args.engines.split(",") if e]
    result = {"engines": {}, "resume": {}}
    for engine in engines:
        res = launch(engine, paths["model"], paths["unpaired"], work / engine, args.steps, args)
        result["engines"][engine] = res
        print(engine, {k: v for k, v in res.items() if k != "steps"}, flush=True)
    plain = result["engines"].get("plain", {}).get("steps")
    for engine, res in result["engines"].items():
        if plain and res.get("steps") and engine != "plain":
            first, ref = res["steps"][0], plain[0]
            res["vs_plain_step1_rel_diff"] = {
                k: abs(first[k] - ref[k]) / max(abs(ref[k]), 1e-12) for k in ("loss", "grad_norm")
            }
    for engine in [e for e in args.resume.split(",") if e in engines]:
        straight = result["engines"][engine].get("steps")
        out, half = work / f"{engine}-resumed", args.steps // 2
        first = launch(
            engine, paths["model"], paths["unpaired"], out, half, args, "--save-steps", str(half)
        )
        second = launch(
            engine,
            paths["model"],
            paths["unpaired"],
            out,
            args.steps,
            args,
            "--save-steps",
            str(half),
            "--resume",
        )
        check = {"exits": [first["exit"], second["exit"]]}
        if second.get("steps") and straight:
            check["largest_abs_diff_vs_straight"] = _largest_abs_diff(second["steps"], straight)
        else:
            check["error"] = second.get("error") or first.get("error")
        result["resume"][engine] = check
        print(engine, "resume", check, flush=True)
    import accelerate
    import torch

    versions = {"torch": torch.__version__, "accelerate": accelerate.__version__}
    try:
        import deepspeed

        versions["deepspeed"] = deepspeed.__version__
    except ImportError:
        versions["deepspeed"] = None
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result["conditions"] = {
        "command": "python benchmarks/scale_out_check.py " + " ".join(sys.argv[1:]),
        "model": p.model_desc,
        "records_per_step": args.batch_size,
        "max_length": args.max_length,
        "steps": args.steps,
        "processes": 1,
        "device": device,
        "cpu_count": os.cpu_count(),
        **versions,
    }
    out = args.out or OUT / f"scale_out_{args.profile}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
