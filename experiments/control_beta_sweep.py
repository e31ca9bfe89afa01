"""Fig. 3 analogue (PMPO arXiv 2410.04166 §5.2): β ∈ {0, 0.5, 1, 1.5, 2} × α ∈ {0, 0.5, 1} on one
DMC task, PMPO with the decoupled covariance (β on KL_μ, a β_Σ dual on KL_Σ). Two extra agents use
the literal single-β objective (--cov joint) at the paper's AR (0.5, 0.5) and R (0, 2) settings to
show the std collapse the decoupling fixes. All agents run as one batched program.

    nice -n 10 .venv/bin/python experiments/control_beta_sweep.py --steps 40000 --target-period 25 \
        --out results/control/beta_sweep_cartpole_swingup

Split over two processes (one core each), then merged:

    ... control_beta_sweep.py --alphas 0 --out OUT/a0 &
    ... control_beta_sweep.py --alphas 0.5,1 --no-joint --out OUT/a05_a1
    python experiments/control_beta_sweep.py --merge OUT/a0 OUT/a05_a1 --out OUT

Writes OUT/sweep.json (final return = mean of the last two evaluations, final std, per agent) and
OUT/sweep.png (return and std against β, one line per α), beside the run's metrics.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from anyfeedback.control.config import ControlConfig, MemberSpec
from anyfeedback.control.improve import MemberHParams
from anyfeedback.control.train import run
from anyfeedback.runs import atomic_write_json, atomic_write_text, read_metrics, save_figure

ALPHAS = (0.0, 0.5, 1.0)
BETAS = (0.0, 0.5, 1.0, 1.5, 2.0)
JOINT = ((0.5, 0.5), (0.0, 2.0))


def members(alphas=ALPHAS, joint: bool = True) -> list[MemberSpec]:
    out = [
        MemberSpec(f"a{a:g}-b{b:g}", "pmpo", 0, MemberHParams(alpha=a, beta=b))
        for a in alphas
        for b in BETAS
    ]
    out += [
        MemberSpec(f"a{a:g}-b{b:g}-joint", "pmpo", 0, MemberHParams(alpha=a, beta=b, cov="joint"))
        for a, b in JOINT
        if joint
    ]
    return out


def summarise(out: Path, parts: list[Path]) -> dict:
    """sweep.json over the agents of every run directory in `parts` (one, or the split halves)."""
    rows = [r for d in parts for r in read_metrics(d / "metrics.jsonl")]
    names = {r.get("member") for r in rows}
    result = {}
    for m in [m for m in members() if m.name in names]:
        ev = [r["eval_return"] for r in rows if r.get("member") == m.name and r["kind"] == "eval"]
        tr = [r for r in rows if r.get("member") == m.name and r["kind"] == "train"]
        result[m.name] = {
            "alpha": m.hp.alpha,
            "beta": m.hp.beta,
            "cov": m.hp.cov,
            "final_return": sum(ev[-2:]) / len(ev[-2:]) if ev else None,
            "eval_returns": ev,
            "final_std": tr[-1]["std"] if tr else None,
            "min_std": min(r["std"] for r in tr) if tr else None,
            "final_logp_rejected": tr[-1]["logp_rejected"] if tr else None,
            "final_kl_mean": tr[-1]["kl_mean"] if tr else None,
        }
    atomic_write_json(out / "sweep.json", result)
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for a in ALPHAS:
        pts = [
            (v["beta"], v["final_return"], v["final_std"])
            for v in result.values()
            if v["alpha"] == a and v["cov"] == "decoupled" and v["final_std"]
        ]
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"α={a:g}")
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=f"α={a:g}")
    for v in result.values():
        if v["cov"] == "joint" and v["final_std"]:
            axes[0].scatter([v["beta"]], [v["final_return"]], marker="x", s=60, c="k")
            axes[1].scatter([v["beta"]], [v["final_std"]], marker="x", s=60, c="k")
            axes[1].annotate(f"joint α={v['alpha']:g}", (v["beta"], v["final_std"]), fontsize=7)
    axes[0].set_title("final evaluation return (x: single-β joint KL)", fontsize=9)
    axes[1].set_title("final policy std", fontsize=9)
    if any(v["final_std"] for v in result.values()):
        axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("β")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", default="cartpole")
    p.add_argument("--task", default="swingup")
    p.add_argument("--steps", type=int, default=40_000)
    p.add_argument("--action-repeat", type=int, default=4)
    p.add_argument("--target-period", type=int, default=25, help="learner steps per π_ref copy")
    p.add_argument("--out", default="results/control/beta_sweep_cartpole_swingup")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument(
        "--alphas",
        default=",".join(f"{a:g}" for a in ALPHAS),
        help="run only these α rows (to split the sweep over processes)",
    )
    p.add_argument("--no-joint", action="store_true", help="leave out the single-β joint agents")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="summarise and plot finished (split) runs into OUT",
    )
    args = p.parse_args()
    out = Path(args.out)
    parts = [Path(d) for d in args.merge] if args.merge else [out]
    out.mkdir(parents=True, exist_ok=True)
    if not (args.merge or args.plot_only):
        atomic_write_text(out / "command.txt", " ".join(["python", *sys.argv]) + "\n")
        cfg = ControlConfig(
            domain=args.domain,
            task=args.task,
            method="pmpo",
            steps=args.steps,
            action_repeat=args.action_repeat,
            target_period=args.target_period,
            out=str(out),
            resume=args.resume,
            eval_every=args.eval_every,
            progress=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # β < 1 − α is part of the sweep on purpose
            run(cfg, members(tuple(float(a) for a in args.alphas.split(",")), not args.no_joint))
    result = summarise(out, parts)
    plot(result, out / "sweep.png")
    for name, v in result.items():
        print(f"{name:16s} return {v['final_return']}  std {v['final_std']}")


if __name__ == "__main__":
    main()
