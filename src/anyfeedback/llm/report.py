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


SKIP_KEYS = {"step", "time", "epoch"}
DATA_KEYS = ("data", "prompts", "pairs", "demos")


def plot_keys(rows: list[dict]) -> list[str]:
    """What to draw: the trainer's keys when the run logged them (`anyfeedback train`), else
    every numeric metric in the order first logged (online, aihf, self-play, reward runs)."""
    keys = [k for k in PLOT_KEYS if any(k in r for r in rows)]
    if keys:
        return keys
    seen: dict[str, None] = {}
    for row in rows:
        for k, v in row.items():
            if k not in SKIP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool):
                seen.setdefault(k, None)
    return list(seen)


def _settings(config: dict[str, Any]) -> str:
    """`method **m**, α=…, β=…` with β resolved as the run resolved it (None = the default)."""
    from anyfeedback.llm.config import DEFAULT_BETA, _pmpo_default_beta

    method = config.get("method", "?")
    parts = [f"method **{method}**"]
    alpha, beta = config.get("alpha"), config.get("beta")
    if method == "pmpo":
        alpha = 0.5 if alpha is None else alpha
        parts.append(f"α={alpha}")
    if beta is None and method == "pmpo":
        beta = f"{_pmpo_default_beta(alpha)} (default)"
    elif beta is None and method in DEFAULT_BETA:
        beta = f"{DEFAULT_BETA[method]} (default)"
    if beta is not None:
        parts.append(f"β={beta}")
    return ", ".join(parts)


def write_report(run_dir: str | Path) -> Path:
    """Draw `metrics.png` and write `report.md` for a run directory; returns the report path."""
    run = Path(run_dir)
    metrics_file = run / "metrics.jsonl"
    if not metrics_file.is_file():
        raise InputError("not a training run (no metrics.jsonl)", source=str(run))
    rows = read_metrics(metrics_file)
    config = _read_json(run / "config.json")
    info = _read_json(run / "run_info.json")
    keys = plot_keys(rows)
    png = plot_metrics(rows, keys, run / "metrics.png", title=str(config.get("method", "")))
    first, last = _window_means(rows[:10], keys), _window_means(rows, keys)
    lines = [f"# Training run `{run.name}`", ""]
    lines.append(f"- model: `{config.get('model', '?')}`, {_settings(config)}")
    for key in DATA_KEYS:
        if config.get(key):
            split = f" (split {config['split']})" if key == "data" and config.get("split") else ""
            lines.append(f"- {key}: `{config[key]}`{split}")
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
