"""Finished pieces of a bandit run kept in `OUT/pieces/`, so `bandit run --resume` redoes only
what a killed run had not finished: `engine.npz` + `engine.json` (every torch method, one batched
piece) and `cma-<i>.json` (CMA-ES run i); for `bandit sweep --resume`, `alpha-<j>.npz` (the
j-th α's β × seed rows). Each piece is written atomically once complete; the
run's config is saved beside them and a resume with different settings is refused. Pieces are
pure functions of the config and seeds, so a resumed run's results equal an uninterrupted one's
(timings aside)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from anyfeedback.bandit.engine import EngineResult
from anyfeedback.errors import InputError
from anyfeedback.run_dir import check_resume_config
from anyfeedback.runs import atomic_path, atomic_write_json, jsonable

# settings that do not change a result: worker processes only schedule CMA-ES runs
RESUME_FREE = ("workers",)


class SweepPart(NamedTuple):
    """What the sweep keeps of one engine run (one α, every β and seed; one batch of rows)."""

    initial_f: np.ndarray  # [R] f(x₀)
    final_f_mean: np.ndarray  # [R] f of the final (or frozen) mean
    reason: list  # [R] divergence reason or None


class Pieces:
    """The `pieces/` directory of one run (None: keep nothing, e.g. the Python API)."""

    def __init__(self, root: Path | None, cfg, *, resume: bool) -> None:
        self.root, self.cfg = root, cfg
        if root is not None and resume:
            check_resume_config(root / "config.json", jsonable(cfg), ignore=RESUME_FREE)

    def _start(self) -> None:
        """Save the config with the first piece (a run rejected before it leaves nothing)."""
        if not (self.root / "config.json").is_file():
            atomic_write_json(self.root / "config.json", self.cfg)

    def engine(self) -> EngineResult | None:
        if self.root is None or not (self.root / "engine.json").is_file():
            return None
        meta = self._json(self.root / "engine.json")
        try:
            with np.load(self.root / "engine.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile):
            return None  # not finished: recomputed
        diagnostics = {k[5:]: v for k, v in arrays.items() if k.startswith("diag/")}
        return EngineResult(
            arrays["f_mean"],
            arrays["best"],
            arrays["diverged_at"],
            meta["reason"],
            arrays["final_f_mean"],
            diagnostics,
            meta["seconds"],
        )

    def save_engine(self, out: EngineResult) -> None:
        if self.root is None:
            return
        self._start()
        arrays = dict(f_mean=out.f_mean, best=out.best, diverged_at=out.diverged_at)
        arrays.update(final_f_mean=out.final_f_mean)
        arrays.update({f"diag/{k}": v for k, v in out.diagnostics.items()})
        with atomic_path(self.root / "engine.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        atomic_write_json(self.root / "engine.json", {"reason": out.reason, "seconds": out.seconds})

    def cma(self, i: int) -> dict | None:
        path = None if self.root is None else self.root / f"cma-{i}.json"
        return self._json(path) if path is not None and path.is_file() else None

    def save_cma(self, i: int, out: dict) -> None:
        if self.root is not None:
            self._start()
            atomic_write_json(self.root / f"cma-{i}.json", out)

    def sweep_alpha(self, j: int):
        """The kept rows of the sweep's j-th α (a `sweep.SweepPart`), or None: not finished."""
        path = None if self.root is None else self.root / f"alpha-{j}.npz"
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                reason = [str(r) or None for r in z["reason"]]  # "" stands for None
                return SweepPart(z["initial_f"], z["final_f_mean"], reason)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None  # not finished: recomputed

    def save_sweep_alpha(self, j: int, part) -> None:
        if self.root is None:
            return
        self._start()
        reason = np.array([r or "" for r in part.reason], dtype=str)
        with atomic_path(self.root / f"alpha-{j}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, initial_f=part.initial_f, final_f_mean=part.final_f_mean, reason=reason)

    @staticmethod
    def _json(path: Path):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise InputError("is not a piece of a bandit run", source=str(path)) from None
