"""Experiment trackers for `--report-to`: TensorBoard, Weights & Biases, MLflow, trackio.

Each goes through accelerate's trackers (`Accelerator(log_with=…)`, `init_trackers`, `log`), so
only the main process logs, and each is an optional extra (`pip install 'anyfeedback[wandb]'`).
metrics.jsonl is written whatever is chosen. A tracker whose package is missing is one line
naming the extra, before the model loads. Where a tracker keeps its data:

  tensorboard  OUT/tensorboard/<run name>/ (event files)
  wandb        wandb's own settings (WANDB_MODE=offline, WANDB_DIR, WANDB_PROJECT, an API key)
  mlflow       MLFLOW_TRACKING_URI, else a local file store `file:OUT/mlruns` (a file store is
               allowed: MLFLOW_ALLOW_FILE_STORE=true unless set)
  trackio      trackio's local store (TRACKIO_DIR), or a Space / server it is set up for
               (TRACKIO_SPACE_ID, TRACKIO_SERVER_URL); a local run makes no network call
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
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


def trackio_is_local(names: list[str]) -> bool:
    """trackio is chosen with no Space or server to send to: it writes only to TRACKIO_DIR."""
    remote = os.environ.get("TRACKIO_SPACE_ID") or os.environ.get("TRACKIO_SERVER_URL")
    return "trackio" in names and not remote


@contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub refuses every request inside (it reads its offline switch per request).

    A local trackio run needs nothing from the Hub, but `trackio.init` (0.43) asks huggingface.co
    who the saved token belongs to (`whoami`, for the run's `_Username` config field): a network
    call that sends the token from a run meant to stay on this machine, and that waits with no
    timeout where the network drops packets. Offline it fails and trackio stores no user name.
    """
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


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
        self.accelerator, self.active, self.names = accelerator, bool(names), names
        if not self.active:
            return
        from anyfeedback.runs import jsonable

        flat = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in jsonable(config).items()
            if v is not None
        }
        with hub_offline() if trackio_is_local(names) else nullcontext():
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
            trackio = sys.modules.get("trackio")  # imported only where the trackio run started
            if "trackio" in self.names and trackio is not None:
                # accelerate finishes trackio's Run object but leaves it trackio's current run,
                # so trackio's exit hook finished it again and printed "Run finished. Uploading
                # logs…" after our last line
                trackio.context_vars.current_run.set(None)
