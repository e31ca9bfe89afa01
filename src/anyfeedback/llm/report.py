"""Run reporting for `anyfeedback train`: peak memory, plots and `report.md` (trackers:
`anyfeedback.trackers`).

`write_report(run_dir)` works from the files a run leaves (`config.json`, `run_info.json`,
`metrics.jsonl`), so `anyfeedback plot DIR` can redraw any run, finished or killed.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError
from anyfeedback.runs import atomic_write_text, plot_metrics, read_metrics

PLOT_KEYS = [
    "loss",
    "logp_accepted",
    "logp_rejected",
    "logp_chosen",
    "margin",
    "accuracy",
    "kl",
    "z_ref",
    "demo_term",
    "grad_norm",
    "lr",
    "tokens_per_s",
    "samples_per_s",
    "peak_mem_mib",
]


def peak_memory_mib() -> float:
    """Peak memory of this process: CUDA max allocated on GPU, else peak RSS (MiB)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _window_means(rows: list[dict], keys: list[str], n: int = 10) -> dict[str, float]:
    out = {}
    for key in keys:
        vals = [r[key] for r in rows[-n:] if isinstance(r.get(key), (int, float))]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out


def write_report(run_dir: str | Path) -> Path:
    """Draw `metrics.png` and write `report.md` for a run directory; returns the report path."""
    run = Path(run_dir)
    metrics_file = run / "metrics.jsonl"
    if not metrics_file.is_file():
        raise InputError("not a training run (no metrics.jsonl)", source=str(run))
    rows = read_metrics(metrics_file)
    config = _read_json(run / "config.json")
    info = _read_json(run / "run_info.json")
    png = plot_metrics(rows, PLOT_KEYS, run / "metrics.png", title=str(config.get("method", "")))
    keys = [k for k in PLOT_KEYS if any(k in r for r in rows)]
    first, last = _window_means(rows[:10], keys), _window_means(rows, keys)
    lines = [f"# Training run `{run.name}`", ""]
    lines += [
        f"- model: `{config.get('model', '?')}`, method **{config.get('method', '?')}**, "
        f"α={config.get('alpha')}, β={config.get('beta')}",
        f"- data: `{config.get('data', '?')}`",
    ]
    for key, value in info.items():
        lines.append(f"- {key.replace('_', ' ')}: {_fmt(value)}")
    lines.append(f"- steps logged: {len(rows)} (last step {rows[-1]['step'] if rows else '-'})")
    lines += ["", "| metric | first 10 steps | last 10 steps |", "|---|---|---|"]
    for key in keys:
        lines.append(f"| {key} | {_fmt(first.get(key, '-'))} | {_fmt(last.get(key, '-'))} |")
    if png is not None:
        lines += ["", f"![metrics]({png.name})"]
    report = run / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
