"""Learning-curve figures for control runs (matplotlib is imported inside, lazily)."""

from __future__ import annotations

from pathlib import Path

from anyfeedback.runs import save_figure


def plot_run(rows: list[dict], members, path: str | Path, *, title: str = "") -> Path | None:
    """Two panels: evaluation return and mean policy std against env steps, one line per agent;
    the seeds of one method (names `<method>-s<seed>`) share a colour and one legend entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    plotted = any_std = False
    colours: dict[str, str] = {}
    for m in members:
        name = m if isinstance(m, str) else m.name
        group = name.rsplit("-s", 1)[0] if name.rsplit("-s", 1)[-1].isdigit() else name
        first = group not in colours
        colour = colours.setdefault(group, f"C{len(colours) % 10}")
        style = {"color": colour, "label": group if first else None}
        ev = [
            (r["step"], r["eval_return"])
            for r in rows
            if r.get("member") == name and r.get("kind") == "eval"
        ]
        tr = [
            (r["step"], r["std"])
            for r in rows
            if r.get("member") == name and r.get("kind") == "train" and r.get("std") is not None
        ]
        if ev:
            axes[0].plot(*zip(*ev, strict=True), marker="o", ms=3, lw=1.2, **style)
            plotted = True
        if tr:
            axes[1].plot(*zip(*tr, strict=True), lw=1.0, **style)
            any_std = True
    if not plotted:
        plt.close(fig)
        return None
    axes[0].set_title("evaluation return", fontsize=9)
    axes[1].set_title("policy std (mean over dims and states)", fontsize=9)
    if any_std:
        axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("env steps", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
