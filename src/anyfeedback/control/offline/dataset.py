"""The offline dataset format (NPZ) and its validating loader.

A dataset is one `.npz` file (`numpy.savez`; loaded with `allow_pickle=False`, so object arrays are
refused) of T transitions, episodes stored contiguously in time order:

  array               shape     dtype    meaning
  observations        [T, do]   float    flat observation s_t
  actions             [T, D]    float    executed action a_t, in [−1, 1]
  rewards             [T]       float    r_t (summed over the action repeat)
  discounts           [T]       float    environment discount in [0, 1] of s_t → s_{t+1}
                                         (0 at a true terminal; DMC ends by time limit: 1)
  next_observations   [T, do]   float    s_{t+1}
  episode_ids         [T]       int      optional; non-decreasing. Default: a new episode starts
                                         where next_observations[t−1] ≠ observations[t]
  behaviour_ids       [T]       int      optional: which behaviour policy produced the row
  domain, task        []        str      optional 0-d metadata: the dm_control task to evaluate on
  action_repeat       []        int      optional 0-d metadata (default 1)

Every array must be finite; a malformed file raises one `InputError` line naming the file, the
record (row) and the array, e.g. `data.npz:record 17: field 'rewards': not finite (nan)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anyfeedback.control.npz import read_npz
from anyfeedback.control.rollouts import Transitions
from anyfeedback.errors import InputError
from anyfeedback.runs import atomic_path

REQUIRED = ("observations", "actions", "rewards", "discounts", "next_observations")
NDIM = {
    "observations": 2,
    "actions": 2,
    "rewards": 1,
    "discounts": 1,
    "next_observations": 2,
    "episode_ids": 1,
    "behaviour_ids": 1,
}
META = ("domain", "task", "action_repeat")


def save_npz(path: str | Path, tr: Transitions, *, behaviour_ids=None, **meta) -> Path:
    """Write `tr` (+ optional behaviour ids and 0-d metadata) atomically as an NPZ dataset."""
    arrays = {k: getattr(tr, k) for k in (*REQUIRED, "episode_ids")}
    if behaviour_ids is not None:
        arrays["behaviour_ids"] = np.asarray(behaviour_ids, np.int64)
    arrays |= {k: np.asarray(v) for k, v in meta.items()}
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _check_array(path: Path, name: str, x: np.ndarray, length: int | None) -> None:
    src = str(path)
    if x.dtype.kind not in "fiub":
        raise InputError(f"must be numeric, got dtype {x.dtype}", source=src, field=name)
    if x.ndim != NDIM[name]:
        raise InputError(
            f"must have {NDIM[name]} dims, got shape {x.shape}", source=src, field=name
        )
    if length is not None and len(x) != length:
        raise InputError(f"has {len(x)} rows but observations has {length}", source=src, field=name)
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x).reshape(len(x), -1).all(-1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = x[i].ravel()[~np.isfinite(x[i].ravel())][0]
            raise InputError(f"not finite ({value})", source=src, record=i + 1, field=name)


def _check_range(path: Path, name: str, x: np.ndarray, lo: float, hi: float) -> None:
    bad = ((x < lo) | (x > hi)).reshape(len(x), -1).any(-1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"must be in [{lo:g}, {hi:g}], got {x[i].ravel().tolist()}",
            source=str(path),
            record=i + 1,  # 1-based, as every line and record number the CLI prints
            field=name,
        )


def _episode_ids(path: Path, arrays: dict) -> np.ndarray:
    if "episode_ids" in arrays:
        ids = arrays["episode_ids"]
        if ids.dtype.kind not in "iu":
            raise InputError(
                f"must be integers, got dtype {ids.dtype}", source=str(path), field="episode_ids"
            )
        drops = np.flatnonzero(np.diff(ids) < 0)
        if len(drops):
            raise InputError(
                "must be non-decreasing (episodes stored contiguously)",
                source=str(path),
                record=int(drops[0]) + 2,  # 1-based number of the record that goes back
                field="episode_ids",
            )
        return ids.astype(np.int64)
    obs, nxt = arrays["observations"], arrays["next_observations"]
    starts = np.r_[True, ~np.all(nxt[:-1] == obs[1:], axis=-1)]
    return np.cumsum(starts).astype(np.int64) - 1


def load_npz(path: str | Path) -> tuple[Transitions, dict]:
    """Validate and load a dataset -> (transitions as float32, metadata {domain, task,
    action_repeat, behaviour_ids} for what the file holds). Raises a one-line InputError."""
    path = Path(path)
    arrays = read_npz(path)
    for name in REQUIRED:
        if name not in arrays:
            raise InputError(
                f"missing array (need {', '.join(REQUIRED)})", source=str(path), field=name
            )
    length = len(arrays["observations"]) if arrays["observations"].ndim else 0
    if length == 0:
        raise InputError("no transitions", source=str(path), field="observations")
    for name in NDIM:
        if name in arrays:
            _check_array(path, name, arrays[name], None if name == "observations" else length)
    obs, nxt = arrays["observations"], arrays["next_observations"]
    if nxt.shape[1] != obs.shape[1]:
        raise InputError(
            f"has {nxt.shape[1]} dims but observations has {obs.shape[1]}",
            source=str(path),
            field="next_observations",
        )
    _check_range(path, "actions", arrays["actions"], -1.0, 1.0)
    _check_range(path, "discounts", arrays["discounts"], 0.0, 1.0)
    ids = _episode_ids(path, arrays)
    f32 = {k: arrays[k].astype(np.float32) for k in REQUIRED}
    meta = {k: arrays[k].item() for k in META if k in arrays and arrays[k].ndim == 0}
    if "behaviour_ids" in arrays:
        meta["behaviour_ids"] = arrays["behaviour_ids"].astype(np.int64)
    return Transitions(**f32, episode_ids=ids), meta
