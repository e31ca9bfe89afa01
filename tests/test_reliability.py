"""A user's work is never lost or corrupted: `--out` guard (refuse, --resume, --overwrite that
deletes only what runs recorded), parameter health checks that stop a diverging run with the last
healthy checkpoint intact, checkpoints verified and checksummed (a corrupt newest one falls back),
and resumes that refuse changed settings or reproduce the uninterrupted run exactly."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anyfeedback.cli import main
from anyfeedback.errors import InputError
from anyfeedback.llm.checkpoint import list_checkpoints
from anyfeedback.run_dir import MANIFEST, prepare_output_dir
from conftest_llm import *  # noqa: F403

pytestmark = pytest.mark.usefixtures("one_thread")


def tree_hash(root: Path) -> str:
    """Names and bytes of everything under `root` (missing root: a fixed value)."""
    digest = hashlib.sha256()
    if not root.exists():
        return "absent"
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- the --out guard -------------------------------------------------------------------------


def test_guard_refuses_empty_file_and_user_folders(tmp_path):
    user = tmp_path / "mine"
    (user / "model").mkdir(parents=True)
    (user / "model" / "weights.bin").write_bytes(b"precious")
    before = tree_hash(user)
    for kwargs in ({}, {"overwrite": True}):
        with pytest.raises(InputError, match="not empty|no anyfeedback run"):
            with prepare_output_dir(user, **kwargs):
                pass
    assert tree_hash(user) == before
    with pytest.raises(InputError, match="empty string"):
        with prepare_output_dir(""):
            pass
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        with prepare_output_dir(tmp_path / "a-file"):
            pass
    with pytest.raises(InputError, match="either --resume or --overwrite"):
        with prepare_output_dir(tmp_path / "new", resume=True, overwrite=True):
            pass


def test_guard_overwrite_deletes_only_recorded_entries(tmp_path):
    out = tmp_path / "run"
    with prepare_output_dir(out) as path:
        (path / "config.json").write_text("{}")
        (path / "checkpoints").mkdir()
    assert json.loads((out / MANIFEST).read_text())["created"] == ["checkpoints", "config.json"]
    (out / "notes.txt").write_text("the user's")  # added after the run
    with pytest.raises(InputError, match="not empty"):
        with prepare_output_dir(out):
            pass
    with prepare_output_dir(out, overwrite=True) as path:
        assert sorted(os.listdir(path)) == [MANIFEST, "notes.txt"]
        (path / "metrics.jsonl").write_text("")
    assert (out / "notes.txt").read_text() == "the user's"
    assert json.loads((out / MANIFEST).read_text())["created"] == ["metrics.jsonl"]


def test_guard_leaves_nothing_when_input_checks_fail(tmp_path):
    nested = tmp_path / "a" / "b" / "run"
    with pytest.raises(InputError):
        with prepare_output_dir(nested) as path:
            (path / "config.json").write_text("{}")
            raise InputError("bad data", source="x.jsonl", line=3)
    assert not (tmp_path / "a").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError):
        with prepare_output_dir(empty) as path:
            (path / "metrics.jsonl").write_text("")
            raise InputError("bad")
    assert os.listdir(empty) == []


def _train_args(tiny_model, data, out, *extra):
    return [
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--seed",
        "3",
        "--no-progress",
        *extra,
    ]


def test_train_never_touches_a_user_model_folder(tiny_model, feedback_files, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.json").write_text('{"mine": true}')
    before = tree_hash(out)
    args = _train_args(tiny_model, feedback_files["unpaired"], out, "--max-steps", "1")
    assert main(args) == 2
    assert "not empty" in one_error_line(capsys)
    assert main([*args, "--overwrite"]) == 2
    assert "no anyfeedback run" in one_error_line(capsys)
    assert tree_hash(out) == before


# --- health: divergence stops the run, the last checkpoint stays healthy and resumable --------


@pytest.mark.parametrize("lr", ["1e6"])  # inf and NaN are refused as inputs (exit 2)
def test_divergent_learning_rate_stops_at_step_1_and_writes_no_checkpoint(
    tiny_model, feedback_files, tmp_path, capsys, lr
):
    out = tmp_path / "run"
    args = ["--learning-rate", lr, "--max-steps", "3", "--save-steps", "1"]
    assert main(_train_args(tiny_model, feedback_files["unpaired"], out, *args)) == 1
    line = one_error_line(capsys)
    assert "parameters after step 1" in line and "no checkpoint was written" in line
    assert list_checkpoints(out / "checkpoints") == []


@pytest.mark.parametrize("bad_lr", [float("inf"), 1e6])
def test_divergence_mid_run_keeps_a_finite_resumable_checkpoint(
    tiny_model, feedback_files, tmp_path, capsys, monkeypatch, bad_lr
):
    """The learning rate jumps to `bad_lr` at step 3: the run stops (exit 1) at step 3, the step-2
    checkpoint is finite, and resuming from it finishes the run."""
    from anyfeedback.llm.trainer import Trainer

    real = Trainer.train_step

    def jump(self, batches):
        if self.step == 2:
            for group in self.optimizer.param_groups:  # this step's learning rate
                group["lr"] = bad_lr
        return real(self, batches)

    out = tmp_path / "run"
    args = _train_args(
        tiny_model, feedback_files["unpaired"], out, "--max-steps", "4", "--save-steps", "1"
    )
    monkeypatch.setattr(Trainer, "train_step", jump)
    assert main([*args, "--learning-rate", "1e-3"]) == 1
    line = one_error_line(capsys)
    assert "after step 3" in line and "step-000002" in line
    last = list_checkpoints(out / "checkpoints")[-1]
    assert last.name == "step-000002"
    assert all(
        torch.isfinite(t).all() for t in load_file(str(last / "policy.safetensors")).values()
    )
    monkeypatch.setattr(Trainer, "train_step", real)
    assert main([*args, "--learning-rate", "1e-3", "--resume"]) == 0
    final = load_file(str(out / "model" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in final.values())


# --- resume: fallback, refusal of changed settings, exact extension --------------------------


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_newest_checkpoint_falls_back_with_one_warning(
    tiny_model, feedback_files, tmp_path, capsys
):
    out = tmp_path / "run"
    args = _train_args(
        tiny_model,
        feedback_files["unpaired"],
        out,
        *("--max-steps", "4", "--save-steps", "1", "--learning-rate", "1e-3"),
    )
    assert main(args) == 0
    full = _weights(out)
    newest = list_checkpoints(out / "checkpoints")[-1]
    assert newest.name == "step-000004"
    blob = bytearray((newest / "policy.safetensors").read_bytes())
    blob[-10:] = b"\xff" * 10  # flipped bytes in the tensor data
    (newest / "policy.safetensors").write_bytes(bytes(blob))
    assert main([*args, "--resume"]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and "step-000004 is corrupt" in warnings[0], warnings
    assert _same(_weights(out), full)  # step 4 redone from step 3, identically


def test_resume_with_changed_learning_rate_is_refused(tiny_model, feedback_files, tmp_path, capsys):
    out = tmp_path / "run"
    args = _train_args(tiny_model, feedback_files["unpaired"], out, "--max-steps", "2")
    assert main([*args, "--save-steps", "1", "--learning-rate", "1e-3"]) == 0
    capsys.readouterr()
    before = tree_hash(out)
    assert main([*args, "--save-steps", "1", "--learning-rate", "1e-2", "--resume"]) == 2
    line = one_error_line(capsys)
    assert "learning_rate (0.001 -> 0.01)" in line
    assert tree_hash(out) == before  # config.json kept


def test_extending_steps_reproduces_the_uninterrupted_run(
    tiny_model, feedback_files, tmp_path, capsys
):
    data = feedback_files["unpaired"]
    common = ("--save-steps", "2", "--learning-rate", "1e-3", "--warmup-steps", "1")
    const = ("--lr-scheduler-type", "constant")
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(_train_args(tiny_model, data, full, *common, *const, "--max-steps", "4")) == 0
    assert main(_train_args(tiny_model, data, part, *common, *const, "--max-steps", "2")) == 0
    resumed = _train_args(tiny_model, data, part, *common, *const, "--max-steps", "4", "--resume")
    assert main(resumed) == 0
    lrs = [[r["lr"] for r in map(json.loads, (o / "metrics.jsonl").open())] for o in (full, part)]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 4
    assert _same(_weights(full), _weights(part))
    # a decaying schedule depends on the length: extending it is refused, nothing changes
    lin = tmp_path / "linear"
    linear = ("--lr-scheduler-type", "linear")
    assert main(_train_args(tiny_model, data, lin, *common, *linear, "--max-steps", "2")) == 0
    capsys.readouterr()
    before = tree_hash(lin)
    args = _train_args(tiny_model, data, lin, *common, *linear, "--max-steps", "4", "--resume")
    assert main(args) == 2
    assert "(2 -> 4 steps)" in one_error_line(capsys)
    assert tree_hash(lin) == before


@pytest.mark.parametrize(
    ("flag", "value"), [("--k", "8"), ("--reward", "custom_rewards:length_reward")]
)
def test_online_resume_with_changed_k_or_reward_is_refused(
    tiny_model, tmp_path, capsys, flag, value
):
    from anyfeedback.llm.online.config import OnlineConfig

    out = tmp_path / "online"
    out.mkdir()
    cfg = OnlineConfig(model=str(tiny_model), prompts="demo", out=str(out))
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))
    before = tree_hash(out)
    args = ["online", "--model", str(tiny_model), "--prompts", "demo", "--out", str(out)]
    assert main([*args, "--resume", flag, value, "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert f"{flag[2:]} (" in line
    assert tree_hash(out) == before


# --- nothing loaded executes code, except user code the user names -----------------------------


def test_loading_is_data_only_outside_control():
    """`trust_remote_code` defaults to False everywhere, and every `torch.load` outside
    `control/` (whose checkpoints are another change) passes weights_only=True."""
    import ast
    import dataclasses

    from anyfeedback.llm.config import TrainConfig

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert fields["trust_remote_code"] is False
    src = Path(__file__).resolve().parents[1] / "src" / "anyfeedback"
    for path in src.rglob("*.py"):
        if "control" in path.relative_to(src).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert kw.get("weights_only") == "True", f"{path}:{node.lineno}"
            for k in getattr(node, "keywords", []) if isinstance(node, ast.Call) else []:
                if k.arg == "trust_remote_code" and isinstance(k.value, ast.Constant):
                    assert k.value.value is False, f"{path}:{node.lineno}"


def test_help_states_the_only_user_code(capsys):
    for command in (["online"], ["aihf"], ["bandit"]):
        assert main([*command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.replace("│", " ").split())
        assert "only code this command executes" in text, command


def test_stop_on_collapse_stops_only_when_asked():
    from types import SimpleNamespace

    from anyfeedback.errors import DivergenceError
    from anyfeedback.llm.online.loop import _stop_on_collapse

    low = {"eval/win_rate": 0.05, "train/reward_mean": 0.0}
    warned = {"train/collapse_detected": 1}
    fine = {"eval/win_rate": 0.5}
    off = SimpleNamespace(stop_on_collapse=False, out="o")
    on = SimpleNamespace(stop_on_collapse=True, out="o")
    for row in (low, warned, fine):
        _stop_on_collapse(off, row, 4)  # watched and logged, not stopped
    _stop_on_collapse(on, fine, 4)
    with pytest.raises(DivergenceError, match="step 4: held-out win rate 0.05 < 0.1"):
        _stop_on_collapse(on, low, 4)
    with pytest.raises(DivergenceError, match="collapse warning"):
        _stop_on_collapse(on, warned, 4)


def test_guard_keeps_the_work_of_a_run_that_fails_mid_way(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputError):
        with prepare_output_dir(out) as path:
            (path / "checkpoints" / "step-000002").mkdir(parents=True)
            raise InputError("reward returned nan", field="reward")
    assert (out / "checkpoints" / "step-000002").is_dir()
    assert json.loads((out / MANIFEST).read_text())["created"] == ["checkpoints"]
