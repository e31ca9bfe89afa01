"""Crash safety of `anyfeedback train` (subprocesses): SIGKILL mid-run then --resume gives the
same final weights and metrics as an uninterrupted run; a non-finite loss stops the run and keeps
the last good checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anyfeedback.llm.checkpoint import list_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    env.update(ANYFEEDBACK_PROGRESS="0", **extra)
    return env


def _train_cmd(tiny_model, data, out, *extra: str) -> list[str]:
    return [
        sys.executable,
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
        "--max-steps",
        "12",
        "--save-steps",
        "4",
        "--batch-size",
        "4",
        "--learning-rate",
        "1e-3",
        "--lr-scheduler-type",
        "linear",
        "--warmup-steps",
        "2",
        "--ref-update-every",
        "3",
        "--seed",
        "3",
        "--no-progress",
        *extra,
    ]


def _losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_model, feedback_files, tmp_path):
    data = feedback_files["unpaired"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_train_cmd(tiny_model, data, full), env=_env(), check=True, capture_output=True)
    proc = subprocess.run(
        _train_cmd(tiny_model, data, killed),
        env=_env(ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP="7"),
        capture_output=True,
    )
    assert proc.returncode == -9  # SIGKILL
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["step-000004"]
    assert not (killed / "model").exists()
    assert (killed / "checkpoints" / "step-000004" / "reference.safetensors").is_file()
    assert _losses(killed)[-1][0] == 7  # logged past the checkpoint, then killed
    subprocess.run(
        _train_cmd(tiny_model, data, killed, "--resume"),
        env=_env(),
        check=True,
        capture_output=True,
    )
    assert _losses(killed) == _losses(full)  # steps 5-7 redone, identically
    a = load_file(str(full / "model" / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(train_cfg, monkeypatch):
    from anyfeedback.llm import fit, objective, trainer
    from anyfeedback.llm.trainer import NonFiniteLossError

    real = objective.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * math.nan if calls["n"] == 6 else loss), metrics

    monkeypatch.setattr(trainer, "compute_loss", poisoned)
    cfg = train_cfg("pmpo", max_steps=10, save_steps=2)
    with pytest.raises(NonFiniteLossError, match="step 6.*step-000004"):
        fit.train(cfg)
    ckpts = list_checkpoints(Path(cfg.out) / "checkpoints")
    assert ckpts[-1].name == "step-000004"
    weights = load_file(str(ckpts[-1] / "policy.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (Path(cfg.out) / "model").exists()


def test_lora_resume_restores_adapter_reference_and_optimizer(train_cfg):
    """LoRA with a refreshed reference adapter: 3 steps + resume to 6 = 6 straight steps."""
    from anyfeedback.llm import train

    kw = dict(lora_r=4, ref_update_every=2, save_steps=3)
    full = train_cfg("dpo", "paired", max_steps=6, **kw)
    part = train_cfg("dpo", "paired", max_steps=3, out=full.out + "-part", **kw)
    train(full)
    train(part)
    assert (Path(part.out) / "checkpoints/step-000003/reference.safetensors").is_file()
    resumed = train_cfg("dpo", "paired", max_steps=6, out=part.out, resume=True, **kw)
    train(resumed)
    assert _losses(Path(resumed.out)) == _losses(Path(full.out))
    a = load_file(str(Path(full.out) / "model" / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed.out) / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
