"""Comparison report for online runs: PNG plots per metric across methods and an HTML page.

Input: for each method, its metrics rows (from metrics.jsonl) and its sample table (prompt,
completion before, completion after, rewards). Output: `<out>/reward.png`, `kl.png`,
`winrate.png`, `reward_kl.png` (held-out reward against the KL to the start model at each
evaluation: methods with different KL budgets compare at equal KL), `report.html`,
`summary.json`. HTML is self-contained apart from the PNGs beside it. `write_run_report` makes
the same report for one `online` run; `summary_row` is one method's summary-table row, with the
degeneration indicators (`degeneration.py`) and their flag.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from anyfeedback.runs import atomic_write_json, atomic_write_text, save_figure

PLOTS = {
    "reward.png": ("train/reward_mean", "mean reward of sampled completions (training prompts)"),
    "eval_reward.png": ("eval/reward_mean", "mean reward on held-out prompts"),
    "kl.png": (
        "train/kl_init",
        "KL(π_init ‖ π_θ) per completion, on the step's samples (before its update)",
    ),
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


def plot_reward_kl(runs: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """Held-out reward against held-out KL(π_start ‖ π_θ) at each evaluation, one line per
    method (points in step order); None if no method logged both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    drawn = 0
    for method, rows in runs.items():
        pts = [
            (r["eval/kl_start"], r["eval/reward_mean"])
            for r in rows
            if isinstance(r.get("eval/kl_start"), (int, float))
            and isinstance(r.get("eval/reward_mean"), (int, float))
        ]
        if pts:
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1.5, label=method
            )
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("KL(π_start ‖ π_θ) per held-out completion (nats)")
    ax.set_ylabel("held-out reward")
    ax.set_title("reward against KL to the start model (each point: one evaluation)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def summary_row(result, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's summary: rewards, win rate, KL (training samples and held-out), the
    degeneration indicators of the final held-out completions against the start model's, and
    their flag (`degeneration.degenerate`)."""
    from anyfeedback.llm.online.degeneration import degenerate

    kl = [r["train/kl_init"] for r in rows if "train/kl_init" in r]
    start, final = result.start.degeneration, result.final.degeneration
    return {
        "start reward": result.start.reward_mean,
        "final reward": result.final.reward_mean,
        "win rate vs start": result.final.win_rate,
        "final KL to start": kl[-1] if kl else float("nan"),
        "held-out KL to start": result.final.kl_start,
        "distinct-2 start": start["distinct2"],
        "distinct-2 final": final["distinct2"],
        "repeat-2 start": start["repeat2"],
        "repeat-2 final": final["repeat2"],
        "degenerate": "yes" if degenerate(final, start) else "no",
        "collapse detected": "yes" if result.collapsed else "no",
    }


def sample_rows(result, n: int = 8) -> list[dict[str, Any]]:
    """The first `n` held-out prompts with the start and final completions and rewards."""
    rows = zip(
        result.eval_prompts,
        result.start.texts,
        result.final.texts,
        result.start.rewards,
        result.final.rewards,
        strict=True,
    )
    return [
        {"prompt": p, "before": b, "after": a, "reward_before": rb, "reward_after": ra}
        for p, b, a, rb, ra in list(rows)[:n]
    ]


def write_run_report(result, cfg) -> Path:
    """`report.html`, PNGs and `summary.json` of one `online` run, in its directory."""
    from anyfeedback.runs import read_metrics

    out = Path(result.out)
    rows = read_metrics(out / "metrics.jsonl")
    name = cfg.method if cfg.method != "pmpo" else f"pmpo α={cfg.alpha:g}"
    summary = {"methods": {name: summary_row(result, rows)}, "steps": result.steps}
    notes = f"{result.steps} steps; held-out evaluation on {len(result.eval_prompts)} prompts."
    return write_report(
        out, {name: rows}, {name: sample_rows(result)}, summary, title=f"online {name}", notes=notes
    )


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
    if plot_reward_kl(runs, out / "reward_kl.png"):
        caption = "held-out reward against KL(π_start ‖ π_θ) on held-out completions"
        figures.append(
            f'<figure><img src="reward_kl.png"><figcaption>{caption}</figcaption></figure>'
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
<p>distinct-2: unique word bigrams / all, over the held-out completions; repeat-2: share of a
completion's word bigrams seen earlier in it. degenerate: distinct-2 below half the start
model's or repeat-2 more than 0.05 above it.</p>
<h2>Curves</h2>{"".join(figures)}
<h2>Sample completions (same held-out prompts, start model vs trained)</h2>{tables}
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
