"""Results of a bandit run: the `results.json` schema, summaries, markdown table and curves.

results.json (schema "anyfeedback.bandit/1"):
  config          the resolved BanditConfig
  grid            evaluation counts of the curve points [P] (0, curve_every, …, evals)
  runs[]          function, method, seed, diverged, divergence {reason, evals} | null,
                  final_f_mean, final_f_best, evals_to_target_mean, evals_to_target_best
                  (null if never reached), diagnostics {…}, curve {f_mean [P], f_best [P]}
                  (null after a divergence / before the first sample)
  summary         {function: {method: median / quartiles of final f(mean) (a diverged run
                  counts as +inf), median final best f, diverged count, evals to target}}
  seconds         wall time of the whole run
Curves record f at the policy mean μ (extra evaluations, not counted in the budget) and the best
sampled f, at the last iteration boundary at or before each grid point (4 significant digits).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SCHEMA = "anyfeedback.bandit/1"


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _first_at_most(values: np.ndarray, target: float) -> int | None:
    hit = np.nonzero(np.nan_to_num(values, nan=np.inf) <= target)[0]
    return int(hit[0]) if hit.size else None


def _grid(cfg) -> list[int]:
    grid = list(range(0, cfg.evals + 1, cfg.curve_every))
    return grid if grid[-1] == cfg.evals else grid + [cfg.evals]


def _short(x) -> float | None:
    """4 significant digits: curves are for plotting (final values keep full precision)."""
    x = _num(x)
    return None if x is None else float(f"{x:.4g}")


def _curve(evals_mean: np.ndarray, f_mean: np.ndarray, evals_best: np.ndarray, best, grid):
    """Sample f(μ) and best-so-far at each grid point (the last state with evals <= point)."""
    i_mean = np.searchsorted(evals_mean, grid, side="right") - 1
    i_best = np.searchsorted(evals_best, grid, side="right") - 1
    fm = [_short(f_mean[i]) if i >= 0 else None for i in i_mean]
    fb = [_short(best[i]) if i >= 0 else None for i in i_best]
    return {"f_mean": fm, "f_best": fb}


def _record(cfg, function, method, seed, evals_mean, f_mean, evals_best, best, final, grid):
    t_mean = _first_at_most(f_mean, cfg.target)
    t_best = _first_at_most(best, cfg.target)
    return {
        "function": function,
        "method": method,
        "seed": seed,
        "diverged": False,
        "divergence": None,
        "final_f_mean": _num(final),
        "final_f_best": _num(best[-1]) if len(best) else None,
        "evals_to_target_mean": int(evals_mean[t_mean]) if t_mean is not None else None,
        "evals_to_target_best": int(evals_best[t_best]) if t_best is not None else None,
        "diagnostics": {},
        "curve": _curve(evals_mean, f_mean, evals_best, best, grid),
    }


def assemble_results(cfg, rows, engine_out, cma_runs, seconds: float) -> dict:
    """Merge the torch engine's rows and the CMA-ES runs into the results dict."""
    grid = _grid(cfg)
    runs = []
    if engine_out is not None:
        t = cfg.iterations
        evals_mean = np.arange(t + 1) * cfg.samples
        evals_best = np.arange(1, t + 1) * cfg.samples
        for i, (function, method, seed) in enumerate(rows):
            rec = _record(
                cfg,
                function.name,
                method,
                seed,
                evals_mean,
                engine_out.f_mean[:, i],
                evals_best,
                engine_out.best[:, i],
                engine_out.final_f_mean[i],
                grid,
            )
            if engine_out.diverged_at[i] >= 0:
                rec["diverged"] = True
                at = (int(engine_out.diverged_at[i]) + 1) * cfg.samples  # samples seen
                rec["divergence"] = {"reason": engine_out.reason[i], "evals": at}
            rec["diagnostics"] = {
                k: _num(v[i]) for k, v in engine_out.diagnostics.items() if np.isfinite(v[i])
            }
            runs.append(rec)
    for label, task, out in cma_runs:
        evals = np.asarray(out["evals"])
        rec = _record(
            cfg,
            task.function,
            label,
            task.seed,
            evals,
            np.asarray(out["f_mean"]),
            evals[1:],
            np.asarray(out["best"]),
            out["f_mean"][-1],
            grid,
        )
        rec["diagnostics"] = {"popsize": out["popsize"], "stop": out["stop"]}
        runs.append(rec)
    order = {m: i for i, m in enumerate(cfg.methods)}
    fn_order = {f: i for i, f in enumerate(cfg.functions)}
    runs.sort(key=lambda r: (fn_order.get(r["function"], 0), order[r["method"]], r["seed"]))
    return {
        "schema": SCHEMA,
        "config": cfg,
        "grid": grid,
        "runs": runs,
        "summary": summarize(runs, cfg.target),
        "seconds": round(seconds, 2),
        "engine_seconds": round(engine_out.seconds, 2) if engine_out is not None else None,
    }


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    with np.errstate(invalid="ignore"):  # inf − inf between two diverged seeds
        value = np.quantile(np.asarray(values, dtype=float), q)
    return _num(value)  # None when the quantile is +inf (diverged seeds)


def summarize(runs: list[dict], target: float) -> dict:
    """Per function and method: quartiles of the final f(μ) (diverged = +inf) and more."""
    out: dict = {}
    for rec in runs:
        out.setdefault(rec["function"], {}).setdefault(rec["method"], []).append(rec)
    summary: dict = {}
    for function, methods in out.items():
        summary[function] = {}
        for method, recs in methods.items():
            finals = [
                math.inf if r["diverged"] or r["final_f_mean"] is None else r["final_f_mean"]
                for r in recs
            ]
            bests = [r["final_f_best"] if r["final_f_best"] is not None else math.inf for r in recs]
            hits = [r["evals_to_target_best"] for r in recs if r["evals_to_target_best"]]
            hits_mean = [r["evals_to_target_mean"] for r in recs if r["evals_to_target_mean"]]
            summary[function][method] = {
                "median_final_f_mean": _q(finals, 0.5),
                "q25_final_f_mean": _q(finals, 0.25),
                "q75_final_f_mean": _q(finals, 0.75),
                "median_final_f_best": _q(bests, 0.5),
                "diverged": sum(r["diverged"] for r in recs),
                "seeds": len(recs),
                "reached_target_mean": len(hits_mean),
                "median_evals_to_target_mean": _q(hits_mean, 0.5),
                "reached_target_best": len(hits),
                "median_evals_to_target_best": _q(hits, 0.5),
            }
    return summary


def _fmt(x) -> str:
    if x is None:
        return "∞"
    if x == 0:
        return "0"
    return f"{x:.2g}" if 1e-2 <= abs(x) < 1e3 else f"{x:.1e}"


def markdown_table(results: dict, *, value: str = "median_final_f_mean") -> str:
    """Methods × functions table of the median final f(μ) with diverged counts."""
    summary = results["summary"]
    functions = list(summary)
    methods: list[str] = []
    for fn in functions:
        methods += [m for m in summary[fn] if m not in methods]
    head = "| method | " + " | ".join(functions) + " |"
    lines = [head, "|" + "---|" * (len(functions) + 1)]
    for m in methods:
        cells = []
        for fn in functions:
            s = summary[fn].get(m)
            if s is None:
                cells.append("–")
                continue
            cell = _fmt(s[value])
            if s["diverged"]:
                cell += f" ({s['diverged']}/{s['seeds']} div.)"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_table(results: dict) -> str:
    """Median evaluations until the best sample reaches the target (runs reaching it / seeds)."""
    summary, target = results["summary"], results["config"].target
    functions = list(summary)
    methods: list[str] = []
    for fn in functions:
        methods += [m for m in summary[fn] if m not in methods]
    lines = [
        f"| method (evals to best f ≤ {target:g}) | " + " | ".join(functions) + " |",
        "|" + "---|" * (len(functions) + 1),
    ]
    for m in methods:
        cells = []
        for fn in functions:
            s = summary[fn].get(m)
            if s is None or not s["reached_target_best"]:
                cells.append("–" if s is None else f"never (0/{s['seeds']})")
                continue
            med = s["median_evals_to_target_best"]
            cells.append(f"{med:.0f} ({s['reached_target_best']}/{s['seeds']})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BASE_COLORS = {
    "pmpo-ar": "tab:blue",
    "pmpo-a": "tab:orange",
    "pmpo-r": "tab:green",
    "pmpo": "tab:cyan",
    "dpo": "tab:purple",
    "mpo": "tab:brown",
    "cem": "tab:gray",
    "cma-es": "tab:red",
    "cma-es-default": "darkred",
}
VARIANT_STYLES = ["-", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]


def _line_styles(methods: list[str]) -> dict[str, tuple]:
    """Colour by method family (PMPO-AR blue, …, CMA-ES red, dashed); variants of one family
    (e.g. `pmpo-ar:beta=adaptive`) share its colour with another line style."""
    out: dict[str, tuple] = {}
    seen: dict[str, int] = {}
    for m in dict.fromkeys(methods):
        base = m.split(":")[0]
        i = seen.get(base, 0)
        seen[base] = i + 1
        style = "--" if base.startswith("cma-es") and i == 0 else VARIANT_STYLES[i % 5]
        out[m] = (BASE_COLORS.get(base, "black"), style)
    return out


def plot_curves(results: dict, path: str | Path, *, key: str = "f_mean") -> Path:
    """One log-y panel per function: median over seeds with the interquartile band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anyfeedback.runs import save_figure

    grid = np.asarray(results["grid"], dtype=float)
    by_fn: dict = {}
    for rec in results["runs"]:
        curve = [np.nan if v is None else v for v in rec["curve"][key]]
        by_fn.setdefault(rec["function"], {}).setdefault(rec["method"], []).append(curve)
    n = len(by_fn)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.8 * rows), squeeze=False)
    styles = _line_styles([m for methods in by_fn.values() for m in methods])
    for ax, (fn, methods) in zip(axes.flat, by_fn.items(), strict=False):
        for method, curves in methods.items():
            arr = np.maximum(np.asarray(curves, dtype=float), 1e-300)  # [S, P]
            arr = np.where(np.isnan(arr), np.inf, arr)  # a diverged seed counts as +inf
            with np.errstate(invalid="ignore"):
                med = np.quantile(arr, 0.5, axis=0)
                lo, hi = np.quantile(arr, 0.25, axis=0), np.quantile(arr, 0.75, axis=0)
            color, style = styles[method]
            ax.plot(
                grid, np.where(np.isfinite(med), med, np.nan), ls=style, color=color, label=method
            )
            ax.fill_between(
                grid, lo, np.where(np.isfinite(hi), hi, np.nan), color=color, alpha=0.15
            )
        ax.set_yscale("log")
        ax.set_title(f"{fn} (d={results['config'].dim})", fontsize=10)
        ax.set_xlabel("function evaluations")
        ax.set_ylabel("f(mean)" if key == "f_mean" else "best f so far")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    spare = list(axes.flat)[n:]
    if spare:  # a free panel holds the legend
        spare[0].legend(handles, labels, loc="center", fontsize=8, ncol=1 + len(labels) // 9)
        fig.suptitle("median over seeds, interquartile band", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
    else:
        ncol = min(len(labels), 4)
        legend_rows = math.ceil(len(labels) / ncol)
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8)
        fig.suptitle("median over seeds, interquartile band", fontsize=10)
        fig.tight_layout(rect=(0, 0.12 * legend_rows / rows, 1, 0.97))
    return save_figure(fig, path)
