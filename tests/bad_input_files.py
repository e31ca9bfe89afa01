"""The inputs of tests/test_bad_inputs.py, built by placeholder name in a test's directory: text,
JSONL and YAML files that are empty, not UTF-8, not JSON/YAML or name an unknown key; a user's
module with a syntax error and bandit functions that misbehave; a model folder with a bogus
config; offline / aihf-control datasets that are truncated or not finite; and run directories to
resume that do not match the command (what a run writes, minus the training)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

BANDIT_PY = """import numpy as np
def raises(y):
    raise RuntimeError("boom")
def strings(y):
    return np.array(["a"] * len(y))
def wrong_shape(y):
    return np.zeros((len(y), 2))
def nan(y):
    return np.full(len(y), np.nan)
"""


# placeholder -> (file name, bytes): the single files of the cases ({file} is plain text, where a
# folder or a dataset is expected; the others are wrong by their content)
FILES = {
    "file": ("plain.txt", b"just text\n"),
    "empty_jsonl": ("empty.jsonl", b""),
    "latin1_jsonl": (
        "latin1.jsonl",
        '{"prompt": "caf\xe9", "completion": "x"}\n'.encode("latin-1"),
    ),
    "broken_jsonl": (
        "broken.jsonl",
        b'{"prompt": "a", "completion": "b", "label": true}\n{"prompt":\n',
    ),
    "syntax_py": ("syntax.py", b"def f(:\n"),
    "bandit_py": ("bandit_fns.py", BANDIT_PY.encode()),
    "cfg_unknown": ("unknown.yaml", b"learning_rte: 0.1\n"),
    "cfg_latin1": ("latin1.yaml", "model: caf\xe9\n".encode("latin-1")),
    "cfg_broken": ("broken.yaml", b"a: [1, 2\n"),
}


def _pool(path, **override):
    rng = np.random.default_rng(0)
    arrays = dict(
        obs=rng.normal(size=(4, 6, 3)).astype(np.float32),
        act=rng.uniform(-1, 1, size=(4, 6, 2)).astype(np.float32),
        reward=rng.normal(size=(4, 6)).astype(np.float32),
        quality=np.array(["expert", "expert", "random", "random"]),
        domain="cartpole",
        task="swingup",
        action_repeat=1,
    )
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def broken_inputs(t: Path, model, feedback_files) -> dict[str, str]:
    """Placeholder name → path: the tiny model, the good feedback files and every input of the
    module docstring, built in `t` (`{tmp}`; `{out}` is a run directory not made yet)."""
    f = {"tmp": str(t), "model": str(model), "out": str(t / "run")}
    f.update({k: str(feedback_files[k]) for k in ("unpaired", "paired", "demos")})
    for key, (name, data) in FILES.items():
        (t / name).write_bytes(data)
        f[key] = str(t / name)
    (t / "mine").mkdir()
    (t / "mine" / "notes.txt").write_text("the user's own")
    f["full"] = str(t / "mine")
    (t / "bogus-model").mkdir()
    (t / "bogus-model" / "config.json").write_text("{not json")
    f["bogus_model"] = str(t / "bogus-model")
    f["pool_npz"] = str(_pool(t / "pool.npz"))
    blob = (t / "pool.npz").read_bytes()
    (t / "truncated.npz").write_bytes(blob[: len(blob) // 2])
    f["truncated_npz"] = str(t / "truncated.npz")
    bad = np.full((4, 6), np.nan, np.float32)
    f["pool_nan_reward"] = str(_pool(t / "nan_reward.npz", reward=bad))
    inf = np.full((4, 6, 3), np.inf, np.float32)
    f["pool_inf_obs"] = str(_pool(t / "inf_obs.npz", obs=inf))
    f.update(_runs(t, f))
    assert zipfile.is_zipfile(f["pool_npz"])
    return f


def _runs(t, f) -> dict[str, str]:
    """Run directories to resume, made by hand (what a run writes, minus the training)."""
    from anyfeedback.llm.config import TrainConfig
    from anyfeedback.llm.online.config import OnlineConfig
    from anyfeedback.llm.reward.config import RewardConfig
    from anyfeedback.run_dir import MANIFEST

    def run_dir(name, config=None, **extra_files):
        d = t / name
        d.mkdir()
        (d / MANIFEST).write_text(json.dumps({"created": ["config.json"]}))
        if config is not None:
            (d / "config.json").write_text(json.dumps(config))
        for fname, data in extra_files.items():
            (d / fname.replace("_", ".")).write_bytes(data)
        return str(d)

    train = dict(model=f["model"], data=f["unpaired"], max_steps=1, progress=False)
    out = {}
    out["run_lr"] = run_dir("run-lr", TrainConfig(**train, learning_rate=0.5).to_dict())
    out["run_bogus_cfg"] = run_dir("run-bogus", None, config_json=b"{oops")
    out["run_latin1_metrics"] = run_dir(
        "run-latin1", None, metrics_jsonl=b'{"step": 1, "x": "\xe9"}\n'
    )
    other = run_dir("run-other")
    _foreign_checkpoint(t / "run-other" / "checkpoints" / "step-000001")
    out["run_other_model"] = other
    online = OnlineConfig(model=f["model"], prompts="demo", steps=1, progress=False)
    online.out = str(t / "online-run")
    out["online_run"] = run_dir("online-run", online.to_dict())
    reward = RewardConfig(model=f["model"], data=f["paired"], max_steps=1, learning_rate=0.5)
    out["reward_run"] = run_dir("reward-run", {**reward.to_dict(), "progress": False})
    return out


def _foreign_checkpoint(path) -> None:
    """A complete, intact checkpoint of another model (one 3×3 weight)."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    save_file({"other.weight": torch.zeros(3, 3)}, str(path / "policy.safetensors"))
    digest = hashlib.sha256((path / "policy.safetensors").read_bytes()).hexdigest()
    (path / "checksums.json").write_text(json.dumps({"policy.safetensors": digest}))
    (path / "trainer_state.json").write_text(json.dumps({"step": 1}))
