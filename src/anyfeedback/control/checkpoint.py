"""Checkpoints of the control runs (`control`, `offline`, `aihf-control`) as safetensors + JSON:
loading one can never run code (no pickle anywhere), and a damaged one is detected and skipped.

A checkpoint is one file `checkpoint-<frames, 9 digits>.safetensors` in the run directory:
  tensors   every tensor of the state tree (network weights, optimiser moments, duals, replay
            arrays, torch generator states), named by its path, e.g. `learner/policy/net.weights.0`
  metadata  "tree": the rest of the tree as JSON, a tensor replaced by {"$tensor": name}, a numpy
            array by {"$ndarray": name}, a tuple by {"$tuple": [...]}, a dict whose keys are not
            all strings by {"$items": [[key, value], ...]}; "sha256": {name: hex digest}
Numpy RNG states are JSON (PCG64: dicts of ints; dm_control's MT19937: a tuple holding an array).

Writing (`save_checkpoint`): a temporary file is written, re-read and verified (header, every
tensor's digest, the tree), renamed into place, and only then are older checkpoints removed, all
but the newest one before it (the fallback). Reading (`load_latest`): newest first; a checkpoint
that fails verification is skipped with one `warning:` line on stderr.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyfeedback.errors import InputError
from anyfeedback.runs import atomic_path

PATTERN = re.compile(r"checkpoint-(\d{9})\.safetensors")
LEGACY = "checkpoint.pt"  # the pickle checkpoints of earlier versions: never read


class CorruptCheckpoint(Exception):
    """A checkpoint file that fails verification (unreadable, truncated, digest mismatch)."""


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()


def encode(tree: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a state tree into its tensors {path: tensor} and a JSON-safe skeleton."""
    tensors: dict[str, torch.Tensor] = {}

    def join(path: str, key: Any) -> str:
        return f"{path}/{key}" if path else str(key)

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach().cpu().contiguous()
            return {"$tensor": path}
        if isinstance(x, np.ndarray):
            tensors[path] = torch.from_numpy(np.ascontiguousarray(x))
            return {"$ndarray": path}
        if isinstance(x, tuple):
            return {"$tuple": [walk(v, join(path, i)) for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, join(path, i)) for i, v in enumerate(x)]
        if isinstance(x, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in x):
                return {k: walk(v, join(path, k)) for k, v in x.items()}
            return {"$items": [[k, walk(v, join(path, i))] for i, (k, v) in enumerate(x.items())]}
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot checkpoint a {type(x).__name__} at '{path}'")

    return tensors, walk(tree, prefix)


def decode(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `encode`: only dicts, lists, tuples, numbers, strings, tensors, arrays."""
    if isinstance(skeleton, list):
        return [decode(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "$tensor" in skeleton:
            return tensors[skeleton["$tensor"]]
        if "$ndarray" in skeleton:
            return tensors[skeleton["$ndarray"]].numpy()
        if "$tuple" in skeleton:
            return tuple(decode(v, tensors) for v in skeleton["$tuple"])
        if "$items" in skeleton:
            return {k: decode(v, tensors) for k, v in skeleton["$items"]}
        return {k: decode(v, tensors) for k, v in skeleton.items()}
    return skeleton


def checkpoint_paths(out: str | Path) -> list[Path]:
    """The run directory's checkpoints, newest (most frames) first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if PATTERN.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def read_checkpoint(path: str | Path, prefix: str = "") -> dict:
    """Load and verify one checkpoint; with `prefix`, only the tensors under it (and the whole
    tree's JSON). Raises `CorruptCheckpoint` on any damage."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            digests = json.loads(meta["sha256"])
            skeleton = json.loads(meta["tree"])
            names = [k for k in f.keys() if k.startswith(prefix)]
            if set(f.keys()) != set(digests):
                raise CorruptCheckpoint("tensor list does not match its digests")
            tensors = {k: f.get_tensor(k) for k in names}
    except CorruptCheckpoint:
        raise
    except Exception as err:  # safetensors' own errors, JSON, missing metadata, I/O
        raise CorruptCheckpoint(
            str(err).splitlines()[0] if str(err) else type(err).__name__
        ) from None
    for k, t in tensors.items():
        if _digest(t) != digests[k]:
            raise CorruptCheckpoint(f"tensor '{k}' does not match its digest")
    if prefix:
        return _subtree(skeleton, prefix, tensors)
    return decode(skeleton, tensors)


def _subtree(skeleton: dict, prefix: str, tensors: dict) -> Any:
    node = skeleton
    for part in prefix.strip("/").split("/"):
        node = node[part]
    return decode(node, tensors)


def save_checkpoint(out: str | Path, frames: int, state: dict) -> Path:
    """Write `state` as checkpoint `frames` of `out` (see the module docstring for the order of
    writing, verifying and removing)."""
    from safetensors.torch import save_file

    out = Path(out)
    path = out / f"checkpoint-{frames:09d}.safetensors"
    tensors, skeleton = encode(state)
    meta = {
        "tree": json.dumps(skeleton),
        "sha256": json.dumps({k: _digest(t) for k, t in tensors.items()}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        try:
            back = read_checkpoint(tmp)
        except CorruptCheckpoint as err:
            raise OSError(f"{path}: the checkpoint did not read back intact ({err})") from None
        if json.dumps(encode(back)[1]) != meta["tree"]:
            raise OSError(f"{path}: the checkpoint did not read back intact (tree)")
    older = [p for p in checkpoint_paths(out) if p.name < path.name]
    for p in [p for p in checkpoint_paths(out) if p.name > path.name] + older[1:]:
        p.unlink(missing_ok=True)  # superseded: newer ones of an abandoned line, all but one older
    return path


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def load_latest(out: str | Path, prefix: str = "") -> tuple[dict, Path]:
    """The newest intact checkpoint of `out` -> (state, path); corrupt ones are skipped with one
    warning line each. Raises InputError when there is none (naming a legacy pickle file)."""
    out = Path(out)
    paths = checkpoint_paths(out)
    for path in paths:
        try:
            return read_checkpoint(path, prefix), path
        except CorruptCheckpoint as err:
            warn(f"{path}: damaged checkpoint skipped ({err}); trying the previous one")
    if paths:
        raise InputError("no intact checkpoint (all are damaged)", source=str(out))
    if (out / LEGACY).exists():
        raise InputError(
            f"{LEGACY} is a pickle checkpoint of an older version; it is not loaded (unpickling "
            "can run code). Start a new run",
            source=str(out),
        )
    raise InputError("no checkpoint (checkpoint-*.safetensors)", source=str(out))


def read_json(path: Path) -> Any:
    """A run directory's JSON file, or one InputError line naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("missing (is this the run directory?)", source=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"unreadable: {str(err).splitlines()[0]}", source=str(path)) from None


def changed_fields(out: Path, cfg: Any, may_change: set[str]) -> list[str]:
    """Fields of the dataclass `cfg` that differ from the run's saved `config.json`, except
    `may_change` (resume flags, output, threads, and fields documented as extendable)."""
    import dataclasses

    from anyfeedback.runs import jsonable

    saved, now = read_json(out / "config.json"), jsonable(cfg)
    if not isinstance(saved, dict):
        raise InputError("not a JSON object", source=str(out / "config.json"))
    return [
        f.name
        for f in dataclasses.fields(cfg)
        if f.name not in may_change and saved.get(f.name) != now[f.name]
    ]


def refuse_changed(out: Path, cfg: Any, may_change: set[str]) -> None:
    """One InputError line listing the fields a `--resume` would change."""
    changed = changed_fields(out, cfg, may_change)
    if changed:
        raise InputError(
            f"--resume with a changed config ({', '.join(changed)}); resume with the run's "
            "config.json values or start a new run",
            source=str(out),
        )


def has_checkpoint(out: str | Path) -> bool:
    out = Path(out)
    return bool(checkpoint_paths(out)) or (out / LEGACY).exists()
