"""Comparison report for online runs: PNG plots per metric across methods and an HTML page.

Input: for each method, its metrics rows (from metrics.jsonl) and its sample table (prompt,
completion before, completion after, rewards). Output: `<out>/reward.png`, `kl.png`,
`winrate.png`, `report.html`, `summary.json`. HTML is self-contained apart from the PNGs beside it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from anyfeedback.runs import atomic_write_json, atomic_write_text, save_figure

PLOTS = {
    "reward.png": ("train/reward_mean", "mean reward of sampled completions (training prompts)"),
    "eval_reward.png": ("eval/reward_mean", "mean reward on held-out prompts"),
    "kl.png": ("train/kl_init", "KL(π_init ‖ π_θ) per completion, on sampled completions"),
    "winrate.png": ("eval/win_rate", "win rate vs the start model on held-out prompts"),
}


def plot_methods(
    runs: dict[str, list[dict[str, Any]]], key: str, path: Path, title: str
) -> Path | None:
    """One line per method of `key` against step; None if no method logged it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    drawn = 0
    for method, rows in runs.items():
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if pts:
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o" if len(pts) < 15 else "",
                ms=3,
                lw=1.5,
                label=method,
            )
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _samples_table(rows: list[dict[str, Any]]) -> str:
    head = "<tr><th>prompt</th><th>start model</th><th>r</th><th>after training</th><th>r</th></tr>"
    body = "".join(
        "<tr><td>{}</td><td>{}</td><td>{:+.2f}</td><td>{}</td><td>{:+.2f}</td></tr>".format(
            html.escape(r["prompt"]),
            html.escape(r["before"]),
            r["reward_before"],
            html.escape(r["after"]),
            r["reward_after"],
        )
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def write_report(
    out: Path,
    runs: dict[str, list[dict[str, Any]]],
    samples: dict[str, list[dict[str, Any]]],
    summary: dict[str, Any],
    *,
    title: str = "anyfeedback online alignment",
    notes: str = "",
) -> Path:
    """Write plots, `summary.json` and `report.html` into `out`; return the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, (key, caption) in PLOTS.items():
        if plot_methods(runs, key, out / name, caption):
            figures.append(
                f'<figure><img src="{name}"><figcaption>{html.escape(caption)}'
                "</figcaption></figure>"
            )
    atomic_write_json(out / "summary.json", summary)
    rows = "".join(
        "<tr><td>{}</td>{}</tr>".format(
            html.escape(m),
            "".join(
                f"<td>{v:.3f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                for v in s.values()
            ),
        )
        for m, s in summary.get("methods", {}).items()
    )
    cols = next(iter(summary.get("methods", {}).values()), {})
    header = "<tr><th>method</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    tables = "".join(f"<h3>{html.escape(m)}</h3>{_samples_table(r)}" for m, r in samples.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ccc;
padding:4px 8px;vertical-align:top}}figure{{display:inline-block;margin:0 1em 1em 0}}
img{{max-width:520px}}figcaption{{font-size:12px;color:#555}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>
<h2>Summary</h2><table>{header}{rows}</table>
<h2>Curves</h2>{"".join(figures)}
<h2>Sample completions (same held-out prompts, start model vs trained)</h2>{tables}
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
