"""Run outputs of `anyfeedback offline`, written once every member is evaluated:
policy.safetensors (the trained ensembles), summary.json (per method: mean and std of the
evaluation return over seeds; the label statistics), curves.png and report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anyfeedback.runs import atomic_path, atomic_write_json, atomic_write_text, read_metrics


def save_policies(path: Path, policies: dict) -> None:
    """The trained ensembles' weights as safetensors, `<bc|rest>/<parameter>` (no pickle)."""
    from safetensors.torch import save_file

    tensors = {
        f"{k}/{n}": v.contiguous() for k, p in policies.items() for n, v in p.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def summarise(names: list[str], methods: list[str], returns) -> dict:
    """Per method: mean and sample std over its seeds' evaluation returns."""
    by_method = {}
    for method in methods:
        r = np.array(
            [ret for n, ret in zip(names, returns, strict=True) if n.rsplit("-s", 1)[0] == method]
        )
        by_method[method] = {
            "mean": round(float(r.mean()), 2),
            "std": round(float(r.std(ddof=1)) if len(r) > 1 else 0.0, 2),
            "returns": [round(float(x), 2) for x in r],
        }
    return by_method


def write_outputs(out: Path, cfg, methods, names, returns, stats, env, n_transitions: int) -> dict:
    """summary.json, curves.png (from metrics.jsonl) and report.md; returns the summary."""
    from anyfeedback.control.plots import plot_run

    domain, task, repeat = env
    summary = {
        "dataset": cfg.dataset,
        "transitions": n_transitions,
        "env": {"domain": domain, "task": task, "action_repeat": repeat},
        "kl": cfg.kl,
        "methods": summarise(names, methods, returns),
        "presets": {m: cfg.preset(m)._asdict() for m in methods},
        "labels": stats,
    }
    atomic_write_json(out / "summary.json", summary)
    plot_run(
        read_metrics(out / "metrics.jsonl"),
        names,
        out / "curves.png",
        title=f"offline {domain}-{task}",
    )
    lines = [
        f"# Offline {domain}-{task}",
        "",
        f"dataset `{cfg.dataset}` ({n_transitions} "
        f"transitions); {cfg.num_seeds} seeds; {cfg.eval_episodes} evaluation episodes each; "
        f"KL term: {cfg.kl}.",
        "",
        "| method | α | β | return (mean ± std over seeds) |",
        "|---|---|---|---|",
    ]
    for m, s in summary["methods"].items():
        p = cfg.preset(m)
        lines.append(f"| {m} | {p.alpha:g} | {p.beta:g} | {s['mean']:.1f} ± {s['std']:.1f} |")
    acc = [v["accepted"] for v in stats.values()]
    lines += ["", f"accepted fraction per seed: {', '.join(f'{a:.3f}' for a in acc)}", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return summary
