"""Control checkpoints that cannot run code and survive damage, divergence that stops the run with
the last healthy checkpoint intact, and refused inputs (issue: never lose or corrupt work).

The checkpoint format tests need no dm_control; the runs do (tiny settings, a few seconds each).
"""

import json
import pathlib

import numpy as np
import pytest
import torch

from anyfeedback.control.checkpoint import (
    CorruptCheckpoint,
    checkpoint_paths,
    decode,
    encode,
    load_latest,
    read_checkpoint,
    save_checkpoint,
)
from anyfeedback.control.health import check_parameters
from anyfeedback.errors import DivergenceError


class Payload:
    """Unpickling this touches `path`: the code a crafted pickle checkpoint would run."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def write_payload(path, marker):
    """A torch pickle that creates `marker` when loaded with weights_only=False (checked here,
    so the tests below would fail if the project still unpickled checkpoints)."""
    probe = marker.with_name("payload.pt")  # torch.load reads a *.safetensors name as safetensors
    torch.save({"learner": Payload(marker)}, probe)
    torch.load(probe, weights_only=False)
    assert marker.exists()
    marker.unlink()
    path.write_bytes(probe.read_bytes())
    probe.unlink()


def test_encode_decode_round_trip_of_a_state_tree():
    """Tensors, numpy arrays, tuples, int-keyed dicts and 128-bit RNG ints come back exactly."""
    rng = np.random.default_rng(0)
    tree = {
        "w": torch.randn(2, 3),
        "opt": {
            "state": {0: {"step": torch.tensor(3.0)}},
            "param_groups": [{"betas": (0.9, 0.99)}],
        },
        "replay": np.arange(6, dtype=np.float32).reshape(2, 3),
        "mt": ("MT19937", np.arange(4, dtype=np.uint32), 2, 0, 0.5),
        "pcg": rng.bit_generator.state,
        "n": None,
    }
    tensors, skeleton = encode(tree)
    back = decode(json.loads(json.dumps(skeleton)), tensors)
    assert torch.equal(back["w"], tree["w"]) and back["opt"]["state"][0]["step"].item() == 3.0
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert back["replay"].dtype == np.float32 and (back["replay"] == tree["replay"]).all()
    assert back["mt"][0] == "MT19937" and back["mt"][1].dtype == np.uint32
    assert back["pcg"] == tree["pcg"] and back["n"] is None


def test_save_keeps_two_and_damage_is_detected(tmp_path, capsys):
    """Three saves leave the newest two; a truncated file, a flipped data byte and a pickle under
    a checkpoint's name are all refused; loading falls back past them with one warning line."""
    for frames in (100, 200, 300):
        save_checkpoint(tmp_path, frames, {"w": torch.full((64,), float(frames)), "f": frames})
    assert [p.name for p in checkpoint_paths(tmp_path)] == [
        "checkpoint-000000300.safetensors",
        "checkpoint-000000200.safetensors",
    ]
    newest, older = checkpoint_paths(tmp_path)
    data = newest.read_bytes()
    newest.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit of the last weight
    with pytest.raises(CorruptCheckpoint, match="digest"):
        read_checkpoint(newest)
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpoint):
        read_checkpoint(newest)
    state, path = load_latest(tmp_path)
    assert path == older and state["f"] == 200 and state["w"][0].item() == 200.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "damaged checkpoint" in err
    marker = tmp_path / "marker"
    write_payload(newest, marker)
    with pytest.raises(CorruptCheckpoint):
        read_checkpoint(newest)
    assert not marker.exists()


def test_health_check_names_the_parameter():
    ok = [("a", torch.ones(3)), ("b", torch.ones(2, 2))]
    check_parameters(ok, "step 1")
    with pytest.raises(DivergenceError, match="'b' has norm nan"):
        check_parameters([ok[0], ("b", torch.tensor([1.0, float("nan")]))], "step 1")
    with pytest.raises(DivergenceError, match="'a' has norm 2e"):
        check_parameters([("a", torch.full((4,), 1e6))], "step 1")


# --- runs (dm_control) ------------------------------------------------------------------------

TINY = dict(
    domain="cartpole",
    task="swingup",
    episode_frames=100,
    learning_starts=100,
    batch_size=32,
    hidden=32,
    eval_every=200,
    eval_episodes=1,
    checkpoint_every=100,
    target_period=20,
    progress=False,
)


def _cli(out, **kw):
    args = ["control", "--out", str(out)]
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        args += [flag if v else f"--no-{flag[2:]}"] if isinstance(v, bool) else [flag, str(v)]
    return args


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_pickle_checkpoint_cannot_run_code_on_resume(tmp_path, capsys):
    """An old-format `checkpoint.pt` carrying a pickle payload: `control --resume` refuses it in
    one line (exit 2) and the payload never runs."""
    pytest.importorskip("dm_control")
    from anyfeedback.cli import main

    marker = tmp_path / "marker"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_payload(run_dir / "checkpoint.pt", marker)
    assert main(_cli(run_dir, steps=200, resume=True, **TINY)) == 2
    assert "pickle checkpoint" in _one_line_error(capsys)
    assert not marker.exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]


def test_damaged_newest_checkpoint_falls_back_and_resumes_exactly(tmp_path, capsys):
    """Stop at 200 env steps, replace the newest checkpoint by a pickle payload, resume to 300:
    one warning line, the payload never runs, and the weights equal an uninterrupted 300-step
    run's (resumed from the 100-step checkpoint)."""
    pytest.importorskip("dm_control")
    from anyfeedback.control.config import ControlConfig
    from anyfeedback.control.train import run

    run(ControlConfig(steps=300, out=str(tmp_path / "full"), **TINY))
    run(ControlConfig(steps=200, out=str(tmp_path / "part"), **TINY))
    newest = checkpoint_paths(tmp_path / "part")[0]
    assert newest.name == "checkpoint-000000200.safetensors"
    marker = tmp_path / "marker"
    write_payload(newest, marker)
    capsys.readouterr()
    run(ControlConfig(steps=300, out=str(tmp_path / "part"), resume=True, **TINY))
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "checkpoint-000000200" in err
    assert not marker.exists()
    full, part = (load_latest(tmp_path / d)[0]["learner"] for d in ("full", "part"))
    for net in ("policy", "critic"):
        for k, v in full[net].items():
            assert torch.equal(v, part[net][k]), (net, k)
    # the run ended at 300 with an evaluation off the 200-step schedule: a longer run from here
    # would not equal an uninterrupted one, so extending is refused
    from anyfeedback.errors import InputError

    with pytest.raises(InputError, match="cannot extend: the run ended at env step 300"):
        run(ControlConfig(steps=400, out=str(tmp_path / "part"), resume=True, **TINY))


def test_divergence_stops_with_one_line_and_a_healthy_checkpoint(tmp_path, capsys):
    """`--lr-critic 1e6`: exit 1 with one line at the first learning episode (learning starts at
    its last step); the checkpoint kept is the last healthy one (the first episode's), finite;
    no null in metrics.jsonl."""
    pytest.importorskip("dm_control")
    from anyfeedback.cli import main

    out = tmp_path / "run"
    assert main(_cli(out, steps=400, lr_critic=1e6, **(TINY | {"learning_starts": 200}))) == 1
    err = _one_line_error(capsys)
    assert "diverged at env step 200" in err and "critic" in err
    state, path = load_latest(out)
    assert path.name == "checkpoint-000000100.safetensors"
    assert all(v.isfinite().all() for v in state["learner"]["critic"].values())
    assert "null" not in (out / "metrics.jsonl").read_text()


def test_zero_steps_is_refused_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("dm_control")
    from anyfeedback.cli import main

    out = tmp_path / "run"
    assert main(_cli(out, steps=0, **TINY)) == 2
    assert "field 'steps'" in _one_line_error(capsys)
    assert not out.exists()
