"""Run outputs of `aihf-control`: summary.json (per member and per method: final true return,
held-out pair accuracy of the reward), curves.png and report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anyfeedback.runs import atomic_write_json, atomic_write_text, read_metrics, save_figure


def summarise(rows: list[dict]) -> dict:
    """Last eval row per member; per method (member name minus `-s<seed>`) mean and std over
    seeds (population std)."""
    last: dict[str, dict] = {}
    for r in rows:
        if r.get("kind") == "eval":
            last[r["member"]] = r
    methods: dict[str, dict] = {}
    for name, r in last.items():
        m = methods.setdefault(name.rsplit("-s", 1)[0], {"returns": [], "rm_accuracy": []})
        m["returns"].append(r["eval_return"])
        if r.get("rm_accuracy") is not None:
            m["rm_accuracy"].append(r["rm_accuracy"])
    for m in methods.values():
        m["mean"], m["std"] = float(np.mean(m["returns"])), float(np.std(m["returns"]))
        if m["rm_accuracy"]:
            m["rm_accuracy_mean"] = float(np.mean(m["rm_accuracy"]))
    return {"members": {k: v["eval_return"] for k, v in last.items()}, "methods": methods}


def plot_curves(rows: list[dict], path: Path, title: str) -> None:
    """True return against env steps, one colour per method; BC (no env steps) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    colours: dict[str, str] = {}
    members = sorted({r["member"] for r in rows if r.get("kind") == "eval"})
    for name in members:
        group = name.rsplit("-s", 1)[0]
        first = group not in colours
        c = colours.setdefault(group, f"C{len(colours)}")
        pts = [
            (r["step"], r["eval_return"])
            for r in rows
            if r.get("member") == name and r.get("kind") == "eval"
        ]
        label = group if first else None
        if len(pts) == 1 and pts[0][0] == 0:
            ax.axhline(pts[0][1], color=c, ls="--", lw=1, label=label)
        else:
            ax.plot(*zip(*pts, strict=True), color=c, marker="o", ms=3, lw=1, label=label)
    ax.set_xlabel("env steps")
    ax.set_ylabel("true return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def write_outputs(out: Path, cfg) -> dict:
    rows = read_metrics(out / "metrics.jsonl")
    summary = summarise(rows)
    atomic_write_json(out / "summary.json", summary)
    title = (
        f"{cfg.num_pairs} pairs, noise {cfg.pref_noise}, {cfg.num_demos} {cfg.demo_quality} demos"
    )
    plot_curves(rows, out / "curves.png", title)
    lines = [
        f"# aihf-control: {title}",
        "",
        "| method | true return (mean ± std) | seeds | held-out pair accuracy |",
        "|---|---|---|---|",
    ]
    for name, m in summary["methods"].items():
        acc = f"{m['rm_accuracy_mean']:.3f}" if "rm_accuracy_mean" in m else "—"
        lines.append(
            f"| {name} | {m['mean']:.1f} ± {m['std']:.1f} | "
            f"{', '.join(f'{r:.0f}' for r in m['returns'])} | {acc} |"
        )
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return summary
