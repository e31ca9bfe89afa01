"""Files of a bandit run / sweep directory.

run:   config.json (resolved), results.json (schema in `report.py`), curves.png (median f(μ) with
       interquartile band, log-y), curves_best.png (best f so far), report.md (tables, command)
sweep: config.json, sweep.json (final f per (α, β) and seed), heatmap.png, report.md
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from anyfeedback.bandit.config import BanditConfig
from anyfeedback.bandit.report import markdown_table, plot_curves, target_table
from anyfeedback.runs import atomic_write_json, atomic_write_text


def _flags(cfg, skip: tuple[str, ...] = ()) -> str:
    """The CLI flags that reproduce `cfg` (fields differing from the defaults)."""
    parts = []
    for f in dataclasses.fields(cfg):
        if f.name in skip:
            continue
        value, base = getattr(cfg, f.name), f.default
        if base is dataclasses.MISSING:
            base = f.default_factory()  # type: ignore[misc]
        if isinstance(value, tuple):
            same = tuple(value) == tuple(base)
            text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        else:
            same, text = value == base, str(value)
        if same:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        else:
            parts.append(f"{flag} {text}")
    return " ".join(parts)


def run_command(cfg: BanditConfig, out: str | Path) -> str:
    flags = _flags(cfg, skip=("functions", "methods", "seeds", "evals", "dim"))
    head = (
        f"anyfeedback bandit run --function {','.join(cfg.functions)} --dim {cfg.dim} "
        f"--methods {','.join(cfg.methods)} --seeds {cfg.seeds} --evals {cfg.evals}"
    )
    return f"{head} {flags} --out {out}".replace("  ", " ")


def sweep_command(cfg, out: str | Path) -> str:
    return f"anyfeedback bandit sweep {_flags(cfg)} --out {out}".replace("  ", " ")


def write_run_outputs(results: dict, out: str | Path) -> Path:
    """Write every file of a run directory; returns the report path."""
    out = Path(out)
    cfg: BanditConfig = results["config"]
    atomic_write_json(out / "config.json", cfg)
    atomic_write_json(out / "results.json", results)
    plot_curves(results, out / "curves.png", key="f_mean")
    plot_curves(results, out / "curves_best.png", key="f_best")
    diverged = [r for r in results["runs"] if r["diverged"]]
    lines = [
        f"# Bandit run: {', '.join(cfg.functions)} (d={cfg.dim})",
        "",
        "```",
        run_command(cfg, out),
        "```",
        "",
        f"{cfg.seeds} seeds × {cfg.evals} evaluations, {cfg.samples} samples per iteration "
        f"(top {cfg.n_accepted} accepted, bottom {cfg.n_accepted} rejected); PMPO solver "
        f"`{cfg.solver}`; wall time {results['seconds']:.1f} s.",
        "",
        "## Median final f(μ) over seeds (a diverged run counts as +∞)",
        "",
        markdown_table(results),
        "",
        "## Median final best sampled f",
        "",
        markdown_table(results, value="median_final_f_best"),
        "",
        "## Evaluations to reach the target",
        "",
        target_table(results),
        "",
        "![f(mean)](curves.png)",
        "",
        "![best so far](curves_best.png)",
        "",
    ]
    if diverged:
        lines += ["## Diverged runs", ""]
        for r in diverged:
            d = r["divergence"]
            lines.append(
                f"- {r['function']} / {r['method']} / seed {r['seed']}: {d['reason']} "
                f"after {d['evals']} evaluations"
            )
        lines.append("")
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines))
    return report


def write_sweep_outputs(results: dict, out: str | Path) -> Path:
    from anyfeedback.bandit.sweep import plot_heatmap

    out = Path(out)
    cfg = results["config"]
    atomic_write_json(out / "config.json", cfg)
    atomic_write_json(out / "sweep.json", results)
    plot_heatmap(results, out / "heatmap.png")
    betas = list(cfg.betas)
    lines = [
        f"# PMPO α × β sweep on {cfg.function} (d={cfg.dim})",
        "",
        "```",
        sweep_command(cfg, out),
        "```",
        "",
        f"Median final f(μ) over {cfg.seeds} seeds after {cfg.evals} evaluations; gradient "
        f"solver, {cfg.steps} Adam step(s) per iteration at lr {cfg.lr:g}, π_ref refreshed "
        f"every {cfg.refresh_every} iterations; `div` = diverged runs (counted as +∞); "
        f"median starting f(μ) {results['initial_f_mean']:.3g}; "
        f"wall time {results['seconds']:.1f} s.",
        "",
        "| α \\ β | " + " | ".join(f"{b:g}" for b in betas) + " |",
        "|" + "---|" * (len(betas) + 1),
    ]
    for a in cfg.alphas:
        cells = []
        for c in (c for c in results["cells"] if c["alpha"] == a):
            med = c["median_final_f_mean"]
            text = "∞" if med is None else f"{med:.1e}"
            if c["diverged"]:
                text += f" ({c['diverged']} div)"
            cells.append(text)
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    lines += ["", "![heat map](heatmap.png)", ""]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines))
    return report
