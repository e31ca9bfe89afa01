"""Experiment trackers for `--report-to`: TensorBoard, Weights & Biases, MLflow, trackio.

Each goes through accelerate's trackers (`Accelerator(log_with=…)`, `init_trackers`, `log`), so
only the main process logs, and each is an optional extra (`pip install 'anyfeedback[wandb]'`).
metrics.jsonl is written whatever is chosen. A tracker whose package is missing is one line
naming the extra, before the model loads. Where a tracker keeps its data:

  tensorboard  OUT/tensorboard/<run name>/ (event files)
  wandb        wandb's own settings (WANDB_MODE=offline, WANDB_DIR, WANDB_PROJECT, an API key)
  mlflow       MLFLOW_TRACKING_URI, else a local file store `file:OUT/mlruns` (a file store is
               allowed: MLFLOW_ALLOW_FILE_STORE=true unless set)
  trackio      trackio's local store (TRACKIO_DIR), or a Space it is set up for
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError

# tracker name → the module it needs (the extra of the same name installs it)
TRACKER_MODULES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "trackio": "trackio",
}


def parse_report_to(value: str | list[str] | None) -> list[str]:
    """`none` → [], `all` → every tracker, `wandb,tensorboard` → both; unknown names: InputError."""
    if value is None:
        return []
    names = value if isinstance(value, list) else str(value).split(",")
    names = [n.strip().lower() for n in names if n.strip()]
    if names in ([], ["none"]):
        return []
    if "all" in names:
        return list(TRACKER_MODULES)
    unknown = [n for n in names if n not in TRACKER_MODULES]
    if unknown:
        raise InputError(
            f"unknown tracker(s) {', '.join(unknown)}: use none, {', '.join(TRACKER_MODULES)} "
            "or all (a comma list works too)",
            source="config",
            field="report_to",
        )
    return list(dict.fromkeys(names))


def require_trackers(names: list[str]) -> None:
    """One line naming the extra to install if a tracker's package is missing."""
    for name in names:
        if importlib.util.find_spec(TRACKER_MODULES[name]) is None:
            raise InputError(
                f"--report-to {name} needs the {name} package: pip install 'anyfeedback[{name}]'",
                source="config",
                field="report_to",
            )


def init_kwargs(names: list[str], run_name: str, out: Path) -> dict[str, dict[str, Any]]:
    """Per-tracker arguments of `Accelerator.init_trackers` (run name, where to write)."""
    kwargs: dict[str, dict[str, Any]] = {}
    if "wandb" in names:
        kwargs["wandb"] = {"name": run_name}
    if "mlflow" in names:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri or uri.startswith("file:"):
            # MLflow 3 refuses its file store unless allowed; a local file store needs no server
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if not uri:
            import mlflow

            mlflow.set_tracking_uri((out / "mlruns").resolve().as_uri())
        kwargs["mlflow"] = {"run_name": run_name}
    if "trackio" in names:
        kwargs["trackio"] = {"name": run_name}
    return kwargs


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of `metrics` (trackers reject NaN, strings and None)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class Trackers:
    """The run's trackers on `accelerator` (its `log_with` set by the Trainer): start, log, end."""

    def __init__(
        self,
        accelerator,
        names: list[str],
        *,
        project: str,
        run_name: str,
        out: Path,
        config: dict[str, Any],
    ) -> None:
        self.accelerator, self.active = accelerator, bool(names)
        if not self.active:
            return
        from anyfeedback.runs import jsonable

        flat = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in jsonable(config).items()
            if v is not None
        }
        accelerator.init_trackers(
            project, config=flat, init_kwargs=init_kwargs(names, run_name, out)
        )

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self.active:
            self.accelerator.log(scalars(metrics), step=step)

    def end(self) -> None:
        if self.active:
            self.accelerator.end_training()
            self.active = False
