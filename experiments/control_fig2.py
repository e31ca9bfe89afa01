"""Fig. 2 analogue (PMPO arXiv 2410.04166 §5.2): PMPO-AR, PMPO-A, PMPO-R and MPO on one DMC task,
all agents (methods × seeds) trained side by side as one batched program.

    nice -n 10 .venv/bin/python experiments/control_fig2.py --domain cartpole --task swingup \
        --steps 100000 --seeds 3 --action-repeat 4 --out results/control/fig2_cartpole_swingup

Writes OUT/summary.json (final and per-evaluation returns per agent), OUT/curves.png,
OUT/metrics.jsonl and OUT/config.json; the command is stored in OUT/command.txt.
Methods can be split over processes (one core each), then merged into one table and figure:

    python experiments/control_fig2.py --merge OUT_A OUT_B --out OUT   # OUT/fig2.json, fig2.png

A LABEL=DIR argument renames that run's agents LABEL-s<seed>, to tell apart runs of one method
with different settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anyfeedback.control.config import ControlConfig, MemberSpec
from anyfeedback.control.improve import METHODS, MemberHParams
from anyfeedback.control.train import run
from anyfeedback.runs import atomic_write_json, atomic_write_text, read_metrics

METHOD_NAMES = ("pmpo-ar", "pmpo-a", "pmpo-r", "mpo")


def merge(dirs: list[str], out: Path) -> dict:
    """Per agent: evaluation curve; per method: mean and per-seed returns at each evaluation."""
    from anyfeedback.control.plots import plot_run

    rows = []
    for spec in dirs:  # DIR, or LABEL=DIR: that run's agents are renamed LABEL-s<seed>
        label, _, d = spec.rpartition("=")
        for r in read_metrics(Path(d) / "metrics.jsonl"):
            if label and "member" in r:
                r["member"] = f"{label}-s{r['member'].rsplit('-s', 1)[1]}"
            rows.append(r)
    names = list(dict.fromkeys(r["member"] for r in rows if r.get("kind") == "eval"))
    agents = {
        n: {
            r["step"]: r["eval_return"]
            for r in rows
            if r.get("member") == n and r.get("kind") == "eval"
        }
        for n in names
    }
    methods: dict[str, dict] = {}
    for n, curve in agents.items():
        for step, ret in curve.items():
            methods.setdefault(n.rsplit("-s", 1)[0], {}).setdefault(step, []).append(ret)
    result = {
        "runs": dirs,
        "agents": agents,
        "methods": {
            m: {s: {"mean": round(sum(v) / len(v), 1), "seeds": v} for s, v in sorted(c.items())}
            for m, c in methods.items()
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "fig2.json", result)
    plot_run(rows, names, out / "fig2.png", title=out.name)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", default="cartpole")
    p.add_argument("--task", default="swingup")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--action-repeat", type=int, default=4)
    p.add_argument("--methods", default=",".join(METHOD_NAMES))
    p.add_argument(
        "--target-period",
        type=int,
        default=ControlConfig.target_period,
        help="learner steps per π_ref copy",
    )
    p.add_argument("--squash", default=ControlConfig.squash, help="clip | tanh (PMPO/MPO)")
    p.add_argument("--init-std", type=float, default=ControlConfig.init_std)
    p.add_argument("--action-penalty", type=float, default=ControlConfig.action_penalty)
    p.add_argument(
        "--epsilon-mean",
        type=float,
        default=ControlConfig.epsilon_mean,
        help="MPO's bound on the mean's KL per action dim",
    )
    p.add_argument(
        "--epsilon",
        type=float,
        default=ControlConfig.epsilon,
        help="MPO's E-step bound on KL(q‖uniform); log 2 ≈ 0.69 = top half",
    )
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--out", default="results/control/fig2_cartpole_swingup")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--merge", nargs="+", metavar="[LABEL=]DIR", help="merge finished runs into OUT")
    args = p.parse_args()
    if args.merge:
        for m, curve in merge(args.merge, Path(args.out))["methods"].items():
            print(m, {s: v["mean"] for s, v in curve.items()})
        return
    members = []
    for method in args.methods.split(","):
        m = METHODS[method]
        for seed in range(args.seeds):
            hp = MemberHParams(alpha=m.alpha, beta=m.beta)
            members.append(MemberSpec(f"{method}-s{seed}", method, seed, hp))
    cfg = ControlConfig(
        domain=args.domain,
        task=args.task,
        method="pmpo",
        steps=args.steps,
        action_repeat=args.action_repeat,
        target_period=args.target_period,
        squash=args.squash,
        init_std=args.init_std,
        action_penalty=args.action_penalty,
        epsilon_mean=args.epsilon_mean,
        epsilon=args.epsilon,
        eval_every=args.eval_every,
        out=args.out,
        resume=args.resume,
        progress=False,
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out) / "command.txt", " ".join(["python", *sys.argv]) + "\n")
    summary = run(cfg, members)
    for name, s in summary.items():
        print(f"{name:14s} final eval return {s['final_eval_return']}")


if __name__ == "__main__":
    main()
