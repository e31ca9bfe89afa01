"""report.md, summary.json and metrics.png of an AIHF / self-play run."""

from __future__ import annotations

from pathlib import Path

from anyfeedback.runs import atomic_write_json, atomic_write_text, plot_metrics, read_metrics

KEYS = [
    "policy/reward",
    "policy/kl_reverse",
    "reward/loss",
    "reward/demo_term",
    "reward/pref_term",
    "loss",
    "eval/gold_reward",
    "eval/kl_to_start",
    "eval/rm_accuracy",
]


def write_outputs(out: Path, title: str, start: dict, final: dict, config: dict) -> None:
    rows = read_metrics(out / "metrics.jsonl")
    plot_metrics(rows, KEYS, out / "metrics.png", title=title)
    atomic_write_json(out / "summary.json", {"start": start, "final": final})
    lines = [f"# {title}", "", "| metric | start | final |", "|---|---|---|"]
    for k in sorted(set(start) | set(final)):
        a, b = start.get(k, float("nan")), final.get(k, float("nan"))
        lines.append(f"| {k} | {a:.4f} | {b:.4f} |")
    settings = ", ".join(
        f"{k}={config[k]}" for k in ("demo_weight", "pref_weight", "beta") if k in config
    )
    lines += [
        "",
        f"Settings: {settings}. Full config: config.json.",
        "",
        "![metrics](metrics.png)",
        "",
    ]
    atomic_write_text(out / "report.md", "\n".join(lines))
