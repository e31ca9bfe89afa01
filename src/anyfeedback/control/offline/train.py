"""Offline PMPO / BC from a fixed dataset (arXiv 2410.04166 §5.3, Table 1). Reads top to bottom:
load + validate the dataset → fit Q, V of the behaviour data (one per seed) → train the BC
policies (one per seed: the `bc` row, the labels' baseline, with `--kl policy` also π_ref) →
label every transition by the sign of Q − baseline → train the other (method, seed) policies as
one ensemble → evaluate in dm_control → write the run directory.

Shapes: M members (method-major: member m = method i, seed j), S seeds, B batch, T transitions,
do observation dims, D action dims.
  policy(obs [M, B, do]) -> mean, std [M, B, D];  ℓ_θ = log N(a; μ, σ) summed over D -> [M, B]
  kl [M, B]:  --kl sample:  −ℓ_θ (KL(π_data‖π_θ) up to the data's entropy: BC on the batch)
              --kl policy:  KL(π_bc(·|s) ‖ π_θ(·|s)) in closed form, π_bc the seed's BC policy
  loss_m = pmpo_loss(ℓ[acc_m], ℓ[rej_m], kl_m, α_m, β_m)                    (Eq. 10, config.py)
Members are summed, so each gets its own gradient (disjoint parameters, elementwise Adam); the
methods of one seed share that seed's value function, labels, initial weights and batches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from anyfeedback.control.nets import EnsembleGaussianActor
from anyfeedback.control.offline.config import OfflineConfig, Preset
from anyfeedback.control.offline.dataset import load_npz
from anyfeedback.control.offline.labels import advantage_sign_labels, label_stats
from anyfeedback.control.offline.value import fit_values
from anyfeedback.control.rollouts import Transitions
from anyfeedback.errors import InputError
from anyfeedback.losses.pmpo import pmpo_loss
from anyfeedback.policies.gaussian import GaussianPolicy, diagonal_log_prob
from anyfeedback.runs import MetricsLog, atomic_path, atomic_write_json, progress


class Members:
    """A (method, seed) grid, method-major: names, presets and each member's seed index."""

    def __init__(self, cfg: OfflineConfig, methods: list[str]) -> None:
        self.seeds = [cfg.seed + j for j in range(cfg.num_seeds)]
        self.methods = methods
        self.names = [f"{m}-s{s}" for m in methods for s in self.seeds]
        self.presets: list[Preset] = [cfg.preset(m) for m in methods for _ in self.seeds]
        self.seed_index = [j for _ in methods for j in range(len(self.seeds))]


def policy_losses(
    logps: torch.Tensor,
    accepted: torch.Tensor,
    rejected: torch.Tensor,
    kl: torch.Tensor,
    presets: list[Preset],
) -> tuple[torch.Tensor, dict]:
    """Sum over members of the PMPO loss. logps [M, B] = ℓ_θ of the batch's dataset actions;
    accepted, rejected [M, B] masks; kl [M, B] the KL term per state. -> (loss, metrics [M])."""
    losses, acc_lp, rej_lp = [], [], []
    empty = logps.new_zeros(0)
    for m, p in enumerate(presets):
        lp = logps[m]
        la, lr = (lp[accepted[m]], lp[rejected[m]]) if p.labelled else (empty, empty)
        loss, diag = pmpo_loss(la, lr, kl[m], alpha=p.alpha, beta=p.beta)  # Eq. 10
        losses.append(loss)
        acc_lp.append(diag.logp_accepted), rej_lp.append(diag.logp_rejected)
    metrics = {
        "loss": torch.stack(losses).detach(),
        "logp_accepted": torch.stack(acc_lp),
        "logp_rejected": torch.stack(rej_lp),
        "bc_nll": -logps.detach().mean(-1),
        "kl": kl.detach().mean(-1),
    }
    return torch.stack(losses).sum(), metrics


class _Actor:
    """The policy ensemble as `control.train.evaluate` expects it: executes clip(μ(s), −1, 1)."""

    def __init__(self, policy: EnsembleGaussianActor, names: list[str]) -> None:
        self.policy, self.members = policy, names

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy(obs)[0].clamp(-1, 1)


def _eval_settings(cfg: OfflineConfig, meta: dict) -> tuple[str, str, int]:
    domain, task = cfg.domain or meta.get("domain"), cfg.task or meta.get("task")
    if not domain or not task:
        raise InputError(
            "no domain/task to evaluate on: the dataset has no 'domain'/'task' "
            "metadata; pass --domain and --task",
            source=cfg.dataset,
        )
    return domain, task, int(cfg.action_repeat or meta.get("action_repeat", 1))


def _fit_values(cfg, tr: Transitions, log: MetricsLog, tick):
    """Q and V of the behaviour data, one member per seed."""
    seeds = [cfg.seed + j for j in range(cfg.num_seeds)]

    def on_step(step, m):
        tick()
        if step % cfg.log_every == 0 or step == cfg.value_steps:
            for j, s in enumerate(seeds):
                log.log(
                    step,
                    member=f"value-s{s}",
                    kind="value",
                    **{k: round(float(v[j]), 5) for k, v in m.items()},
                )

    return fit_values(
        tr,
        seeds,
        steps=cfg.value_steps,
        batch_size=cfg.batch_size,
        hidden=cfg.hidden,
        lr=cfg.lr_value,
        gamma=cfg.gamma,
        n_step=cfg.n_step,
        tau=cfg.tau,
        on_step=on_step,
    )


def _label(cfg, fns, bc_policy, tr: Transitions, meta: dict) -> tuple:
    """Label every transition by the sign of Q − baseline. -> (accepted, rejected) [S, T], stats."""
    ref = bc_policy if cfg.baseline == "policy" else None
    q, v = fns.advantages(tr, ref, num_samples=cfg.num_samples, seed=cfg.seed)  # [S, T]
    accepted, rejected = advantage_sign_labels(q, v)
    groups = meta.get("behaviour_ids")
    stats = {
        f"s{cfg.seed + j}": label_stats(accepted[j], rejected[j], groups)
        for j in range(cfg.num_seeds)
    }
    return (accepted, rejected), stats


def train_policies(
    cfg: OfflineConfig,
    tr: Transitions,
    mem: Members,
    labels: tuple,
    ref: EnsembleGaussianActor | None,
    log: MetricsLog,
    step0: int,
    tick: Callable[[], None],
) -> EnsembleGaussianActor:
    """`cfg.policy_steps` Adam steps of every member of `mem` on its seed's batches. `ref` (one
    member per seed) is π_ref of the closed-form KL; None: the KL term is the sample BC −ℓ_θ."""
    seed_of = torch.tensor(mem.seed_index)
    gens = [torch.Generator().manual_seed(mem.seeds[j]) for j in mem.seed_index]
    policy = EnsembleGaussianActor(
        tr.observations.shape[1],
        tr.actions.shape[1],
        cfg.hidden,
        gens,
        init_std=cfg.init_std,
        min_std=cfg.min_std,
        tanh_mean=cfg.policy_mean == "tanh",
    )
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr_policy)
    obs, act = torch.from_numpy(tr.observations), torch.from_numpy(tr.actions)
    acc, rej = (torch.from_numpy(x)[seed_of] for x in labels)  # [M, T]
    rngs = [np.random.default_rng(20_000 + s) for s in mem.seeds]
    for step in range(1, cfg.policy_steps + 1):
        idx_s = torch.from_numpy(np.stack([r.integers(0, len(tr), cfg.batch_size) for r in rngs]))
        idx = idx_s[seed_of]  # [S, B] -> [M, B]
        mean, std = policy(obs[idx])  # [M, B, D]
        logps = diagonal_log_prob(act[idx], mean, std)  # ℓ_θ [M, B]
        if ref is None:
            kl = -logps  # KL(π_data‖π_θ) + const
        else:
            with torch.no_grad():
                ref_mean, ref_std = ref(obs[idx_s])  # [S, B, D]
            ref_m = GaussianPolicy(ref_mean[seed_of], ref_std[seed_of])
            kl = GaussianPolicy(mean, std).kl_from(ref_m)  # [M, B]
        loss, m = policy_losses(logps, acc.gather(1, idx), rej.gather(1, idx), kl, mem.presets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tick()
        if step % cfg.log_every == 0 or step == cfg.policy_steps:
            m["std"] = std.detach().mean((1, 2))
            for i, name in enumerate(mem.names):
                log.log(
                    step0 + step,
                    member=name,
                    kind="train",
                    **{k: round(float(v[i]), 5) for k, v in m.items()},
                )
    return policy.requires_grad_(False)


def run(cfg: OfflineConfig) -> dict:
    """Train and evaluate every (method, seed); returns the summary written to summary.json."""
    from anyfeedback.control.envs import EnvBatch, check_task
    from anyfeedback.control.train import evaluate

    tr, meta = load_npz(cfg.dataset)  # validates first: nothing is written for a bad file
    domain, task, repeat = _eval_settings(cfg, meta)
    check_task(domain, task)
    torch.set_num_threads(cfg.threads)
    methods = cfg.method_list()
    bc = Members(cfg, ["bc"])  # trained first: a row, the labels' baseline and the KL's π_ref
    rest = Members(cfg, [m for m in methods if m != "bc"])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    log = MetricsLog(out / "metrics.jsonl")
    total = cfg.value_steps + cfg.policy_steps * (1 + bool(rest.names))
    policies, returns = {}, {}
    with progress(f"offline {domain}-{task}", total, disable=not cfg.progress) as (bar, t):
        tick = lambda: bar.advance(t)  # noqa: E731
        # --- value functions, BC policies, labels (one of each per seed) ---
        fns = _fit_values(cfg, tr, log, tick)
        no_labels = [np.zeros((cfg.num_seeds, len(tr)), bool)] * 2  # BC ignores them
        policies["bc"] = train_policies(cfg, tr, bc, no_labels, None, log, cfg.value_steps, tick)
        labels, stats = _label(cfg, fns, policies["bc"], tr, meta)
        # --- every other (method, seed) as one ensemble ---
        if rest.names:
            ref = policies["bc"] if cfg.kl == "policy" else None
            step0 = cfg.value_steps + cfg.policy_steps
            policies["rest"] = train_policies(cfg, tr, rest, labels, ref, log, step0, tick)
        bar.update(t, info="evaluating")
        for key, mem in (("bc", bc), ("rest", rest)):
            if key in policies:
                # the same K start states for every member (paired comparison)
                k = cfg.eval_episodes
                envs = EnvBatch(
                    domain, task, [30_000 + j for _ in mem.names for j in range(k)], repeat
                )
                ev = type(
                    "EvalCfg", (), {"episode_frames": cfg.episode_frames, "action_repeat": repeat}
                )
                returns |= dict(
                    zip(
                        mem.names,
                        evaluate(_Actor(policies[key], mem.names), envs, ev, k),
                        strict=True,
                    )
                )
    names = [f"{m}-s{s}" for m in methods for s in rest.seeds]
    for name in names:
        log.log(total, member=name, kind="eval", eval_return=round(float(returns[name]), 3))
    log.close()
    with atomic_path(out / "policy.pt") as tmp:
        torch.save({k: p.state_dict() for k, p in policies.items()}, tmp)
    return _finish(
        out,
        cfg,
        methods,
        names,
        [returns[n] for n in names],
        stats,
        (domain, task, repeat),
        len(tr),
    )


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


def _finish(out: Path, cfg, methods, names, returns, stats, env, n_transitions: int) -> dict:
    from anyfeedback.control.plots import plot_run
    from anyfeedback.runs import atomic_write_text, read_metrics

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
