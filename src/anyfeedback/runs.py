"""Run output shared by every trainer: metrics JSONL, atomic files, progress bar, report.

A run directory holds `config.json` (resolved config), `metrics.jsonl` (one JSON object per
logged step), plots (`*.png`) and `report.md`. Files that must never be seen half-written
(configs, results, checkpoints) go through `atomic_write_*`: write to a temp file in the same
directory, fsync, then `os.replace`.

Every command opens its run directory with `run_dir.prepare_output_dir` (what may be written into
`--out`, and what a resume may change).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError

MAX_THREADS = 8  # intra-op threads beyond this gain little on the small models we train on CPU


def thread_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Thread settings for torch's OpenMP/MKL pools, for variables the user has not set.

    At every barrier libgomp's threads spin for GOMP_SPINCOUNT iterations before they sleep
    (300,000 by default: up to about a millisecond). When another CPU-bound process shares the
    cores, a spinning thread takes the time slice of the thread it waits for, and a 2-thread op
    runs several times slower than its fair share; sleeping at once (OMP_WAIT_POLICY=PASSIVE)
    avoids that but pays a wake-up at every op, which on small models makes 2 threads slower
    than 1 even on an idle machine. A short spin (1,000 iterations, tens of microseconds) keeps
    the threads awake between the back-to-back ops of a training step and gives the core back
    soon after (measured in docs/results/demo.md#threads). Intel's OpenMP (KMP_BLOCKTIME, in
    ms) sleeps at once. The intra-op thread count is the number of cores this process may run
    on (its CPU affinity, e.g. a container's cpuset), capped at `MAX_THREADS`, instead of every
    core of the machine. A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT keeps both ours unset."""
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    threads = str(max(1, min(cores, MAX_THREADS)))
    wanted = {
        "GOMP_SPINCOUNT": "1000",  # GNU OpenMP (torch's CPU wheels): a short spin, then sleep
        "KMP_BLOCKTIME": "0",  # Intel OpenMP (and MKL on it): sleep at once
        "MKL_DYNAMIC": "TRUE",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    if "OMP_WAIT_POLICY" in environ:  # the user chose a wait policy: no spin count of ours
        del wanted["GOMP_SPINCOUNT"]
    return {k: v for k, v in wanted.items() if k not in environ}


def configure_threads() -> dict[str, str]:
    """Apply `thread_defaults` to this process's environment. Call before torch is imported:
    the pools read these variables once, when they start. Returns what was set."""
    values = thread_defaults()
    os.environ.update(values)
    return values


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    return value


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs follow the umask
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def current_umask() -> int:
    """The process umask (reading it means setting it; it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(directory: str | os.PathLike) -> None:
    """Give the files under `directory` the modes the umask grants (0644 under 022): some
    writers (safetensors, mkstemp) create files 0600, so teammates could not read the weights."""
    mode = 0o666 & ~current_umask()
    for root, _, files in os.walk(directory):
        for name in files:
            os.chmod(os.path.join(root, name), mode)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


class MetricsLog:
    """Append-only JSONL of per-step metrics; each line is flushed so a killed run keeps it.

    On resume, `truncate_after(step)` drops lines logged after the checkpoint being resumed, so
    the file matches an uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def log(self, step: int, **metrics: Any) -> None:
        row = {"step": step, "time": round(time.time(), 3), **jsonable(metrics)}
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()

    def truncate_after(self, step: int) -> None:
        self._fh.close()
        rows = read_metrics(self.path)
        kept = "".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= step)
        atomic_write_text(self.path, kept)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a metrics JSONL file (a truncated last line from a killed run is skipped)."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for number, raw in enumerate(p.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:  # the runs write ASCII JSON: this is not a metrics file
            raise InputError("is not UTF-8 text", source=str(p), line=number) from None
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def debug_sigkill(step: int) -> None:
    """Test hook: ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP=k makes the process SIGKILL itself after
    step k (no cleanup, like an external kill), so resume tests need no timing races."""
    import signal

    if os.environ.get("ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


class _PlainProgress:
    """`rich.progress.Progress`'s `update` for logs: one plain line every `every` steps (and the
    last), no bar characters or cursor movement, so piped output stays readable."""

    def __init__(self, description: str, total: int | None, every: int) -> None:
        self.description, self.total, self.every = description, total, max(1, every)
        self.done, self.start, self._printed, self._first = 0, time.monotonic(), -1, 0

    def update(
        self, task: int, *, completed: int | None = None, advance: int = 0, info: str = "", **_: Any
    ) -> None:
        if completed is not None:
            self.done, self._printed = completed, completed  # a resumed start: no line yet
            self.start = time.monotonic()
            self._first = completed
            return
        self.done += advance
        if self.done % self.every == 0 or self.done == self.total:
            self._line(info)

    def advance(self, task: int, advance: int = 1) -> None:
        self.update(task, advance=advance)

    def _line(self, info: str) -> None:
        if self.done == self._printed:
            return
        self._printed = self.done
        elapsed = time.monotonic() - self.start
        ran = self.done - self._first
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and ran > 0:
            eta = f" eta {_clock(elapsed / ran * (self.total - self.done))}"
        text = f"{self.description} {self.done}{of} {info}".rstrip()
        print(f"{text} {_clock(elapsed)}{eta}", flush=True)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress(
    description: str, total: int | None, *, disable: bool | None = None, every: int | None = None
):
    """Progress of a loop: `with progress(..) as (bar, task): bar.update(task, advance=1,
    info=...)`. On a terminal a rich bar with rate and ETA; when stdout is not a terminal (a
    log file, a pipe) a plain line every `every` steps instead (default: every 5% of `total`,
    so a 100k-step control run prints 20 lines, not 10k). ANYFEEDBACK_PROGRESS=0 turns
    both off, =1 forces the bar; `disable=True` (e.g. --no-progress) turns both off."""
    import sys

    env = os.environ.get("ANYFEEDBACK_PROGRESS", "")
    off = bool(disable) or env == "0"
    rich_bar = not off and (env == "1" or sys.stdout.isatty())
    if not off and not rich_bar:
        if every is None:
            every = max(1, total // 20) if total else 10
        plain = _PlainProgress(description, total, every)

        @contextlib.contextmanager
        def _plain_ctx():
            yield plain, 0

        return _plain_ctx()

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=off,
        transient=False,
    )

    @contextlib.contextmanager
    def _ctx():
        with bar:
            task = bar.add_task(description, total=total, info="")
            yield bar, task

    return _ctx()


_COMMAND_LINE: list[str] | None = None


def set_command_line(argv: list[str]) -> None:
    """Remember the command line of this process (`anyfeedback …`) for model cards."""
    global _COMMAND_LINE
    _COMMAND_LINE = ["anyfeedback", *argv]


def command_line() -> str:
    """The command that made this run, shell-quoted (the Python API: the script's argv)."""
    import shlex
    import sys

    argv = _COMMAND_LINE if _COMMAND_LINE is not None else ["python", *sys.argv]
    return " ".join(shlex.quote(str(a)) for a in argv)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each warning once, as one line `warning: …` on stderr (no source path; a message
    already shown, e.g. the β bound checked at config time and again by the loss, is not
    repeated)."""
    import sys
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def plot_metrics(
    rows: list[dict[str, Any]],
    keys: list[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    x: str = "step",
) -> Path | None:
    """One small panel per metric key against `x`; saved atomically as PNG. Keys with no numeric
    values are skipped; returns None if nothing could be plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []
    for key in keys:
        pts = [(r[x], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and x in r]
        if pts:
            series.append((key, pts))
    if not series:
        return None
    cols = min(3, len(series))
    nrows = math.ceil(len(series) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, (key, pts) in zip(axes.flat, series, strict=False):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure to `path` as PNG, atomically (a reader never sees half a file),
    and close it (figures left open pile up in long sweeps)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path
