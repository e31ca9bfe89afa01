"""Two CPU processes (`accelerate launch`, gloo DDP) give the same run as one process
with the same global batch (2 accumulation steps), within float tolerance."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_2_processes() -> list[str]:
    """`accelerate launch` for 2 local processes (gloo when no GPU is visible)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(_free_port()),
    ]


def _args(tiny_model, data, out, accumulation: int) -> list[str]:
    return [
        "-m",
        "anyfeedback.cli",
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--method",
        "pmpo",
        "--alpha",
        "0.5",
        "--beta",
        "1.0",
        "--max-steps",
        "6",
        "--batch-size",
        "4",
        "--gradient-accumulation-steps",
        str(accumulation),
        "--learning-rate",
        "1e-3",
        "--seed",
        "5",
        "--save-steps",
        "0",
        "--no-progress",
        # 13 held-out records in eval batches of 5: rank 0 takes two, rank 1 one (uneven)
        "--eval-fraction",
        "0.2",
        "--eval-steps",
        "3",
        "--per-device-eval-batch-size",
        "5",
    ]


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_process_ddp_matches_single_process(tiny_model, feedback_files, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    env["ANYFEEDBACK_PROGRESS"] = "0"
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU DDP (gloo) even on a GPU machine
    data = feedback_files["unpaired"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(
        [sys.executable, *_args(tiny_model, data, single, 2)],
        env=env,
        check=True,
        capture_output=True,
    )
    # `accelerate launch --multi_gpu` starts the processes through torchrun; with no GPU
    # visible, accelerate picks gloo and the run is CPU DDP (`--cpu` would start only one).
    launcher = launcher_2_processes()
    args = _args(tiny_model, data, ddp, 1)
    proc = subprocess.run(
        launcher + args, env=env, capture_output=True, text=True, timeout=600
    )  # a teardown hang fails here, not at CI's limit
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _rows(single), _rows(ddp)
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        assert a["samples"] == b["samples"] == 8  # same global batch
        assert a["tokens"] == b["tokens"]
        for key in ("loss", "kl", "logp_accepted", "logp_rejected", "grad_norm"):
            assert abs(a[key] - b[key]) <= 1e-4 * (1 + abs(a[key])), (key, a[key], b[key])
        evals = [k for k in a if k.startswith("eval/")]
        assert (len(evals) == 4) == (a["step"] % 3 == 0) and sorted(evals) == sorted(
            k for k in b if k.startswith("eval/")
        )
        for key in evals:  # the same held-out records, reduced over processes
            assert abs(a[key] - b[key]) <= 1e-4 * (1 + abs(a[key])), (key, a[key], b[key])
    wa = load_file(str(single / "model" / "model.safetensors"))
    wb = load_file(str(ddp / "model" / "model.safetensors"))
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-4)
    assert json.loads((ddp / "run_info.json").read_text())["processes"] == 2
