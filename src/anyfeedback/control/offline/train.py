"""Offline PMPO / BC from a fixed dataset (arXiv 2410.04166 §5.3, Table 1). Reads top to bottom:
load + validate the dataset → fit Q, V of the behaviour data (one per seed) → train the BC
policies (one per seed: the `bc` row, the labels' baseline, with `--kl policy` also π_ref) →
label every transition by the sign of Q − baseline → train the other (method, seed) policies as
one ensemble → evaluate in dm_control → write the run directory (`report.py`).

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

import json
from pathlib import Path

import numpy as np
import torch

from anyfeedback.control import health
from anyfeedback.control.checkpoint import load_latest, refuse_changed, save_checkpoint
from anyfeedback.control.nets import EnsembleGaussianActor
from anyfeedback.control.offline.config import OfflineConfig, Preset
from anyfeedback.control.offline.dataset import load_npz
from anyfeedback.control.offline.labels import advantage_sign_labels, label_stats
from anyfeedback.control.offline.report import save_policies, write_outputs
from anyfeedback.control.offline.value import ValueFit
from anyfeedback.control.rollouts import Transitions
from anyfeedback.errors import InputError
from anyfeedback.losses.pmpo import pmpo_loss
from anyfeedback.policies.gaussian import GaussianPolicy, diagonal_log_prob
from anyfeedback.runs import MetricsLog, atomic_write_json, debug_sigkill, progress


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


class _Run:
    """What the stages share: the metrics log, the progress tick, and the checkpoint of every fit
    added so far (`add` restores a fit from the resumed checkpoint when it holds one)."""

    def __init__(self, out: Path, log: MetricsLog, tick, value_names: list[str], saved: dict):
        self.out, self.log, self.tick, self.value_names, self.saved = (
            out,
            log,
            tick,
            value_names,
            saved,
        )
        self.fits: dict = {}

    def add(self, name: str, fit):
        if name in self.saved:
            fit.load_state_dict(self.saved[name])
        self.fits[name] = fit
        return fit

    def save(self, step: int) -> None:
        state = {"step": step} | {k: f.state_dict() for k, f in self.fits.items()}
        save_checkpoint(self.out, step, state)


class PolicyFit:
    """Adam steps of every member of `mem` on its seed's batches, one `step()` at a time, with
    `state_dict` / `load_state_dict` for exact resume. `ref` (one member per seed) is π_ref of the
    closed-form KL; None: the KL term is the sample BC −ℓ_θ."""

    def __init__(self, cfg, tr: Transitions, mem: Members, labels: tuple, ref) -> None:
        self.seed_of = torch.tensor(mem.seed_index)
        gens = [torch.Generator().manual_seed(mem.seeds[j]) for j in mem.seed_index]
        self.policy = EnsembleGaussianActor(
            tr.observations.shape[1],
            tr.actions.shape[1],
            cfg.hidden,
            gens,
            init_std=cfg.init_std,
            min_std=cfg.min_std,
            tanh_mean=cfg.policy_mean == "tanh",
        )
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr_policy)
        self.obs, self.act = torch.from_numpy(tr.observations), torch.from_numpy(tr.actions)
        self.acc, self.rej = (torch.from_numpy(x)[self.seed_of] for x in labels)  # [M, T]
        self.rngs = [np.random.default_rng(20_000 + s) for s in mem.seeds]
        self.mem, self.ref, self.batch_size, self.n = mem, ref, cfg.batch_size, len(tr)
        self.steps = 0

    def step(self) -> dict[str, torch.Tensor]:
        seed_of, obs, act = self.seed_of, self.obs, self.act
        idx_s = np.stack([r.integers(0, self.n, self.batch_size) for r in self.rngs])
        idx_s = torch.from_numpy(idx_s)
        idx = idx_s[seed_of]  # [S, B] -> [M, B]
        mean, std = self.policy(obs[idx])  # [M, B, D]
        # ℓ_θ [M, B] through a sample axis of length 1 ([M, 1, B, D]): the autograd graph, hence
        # the gradient's rounding, of the offline results
        logps = diagonal_log_prob(act[idx].unsqueeze(1), mean, std, sample_dim=-3).squeeze(1)
        if self.ref is None:
            kl = -logps  # KL(π_data‖π_θ) + const
        else:
            with torch.no_grad():
                ref_mean, ref_std = self.ref(obs[idx_s])  # [S, B, D]
            ref_m = GaussianPolicy(ref_mean[seed_of], ref_std[seed_of])
            kl = GaussianPolicy(mean, std).kl_from(ref_m)  # [M, B]
        acc, rej = self.acc.gather(1, idx), self.rej.gather(1, idx)
        loss, m = policy_losses(logps, acc, rej, kl, self.mem.presets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps += 1
        m["std"] = std.detach().mean((1, 2))
        return m

    def state_dict(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "opt": self.opt.state_dict(),
            "rngs": [r.bit_generator.state for r in self.rngs],
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.opt.load_state_dict(state["opt"])
        for r, st in zip(self.rngs, state["rngs"], strict=True):
            r.bit_generator.state = st
        self.steps = state["steps"]


# metrics that must stay finite (logp_accepted/rejected are NaN by design for an empty set)
WATCHED = ("q_loss", "v_loss", "v", "loss", "kl")


def train_stage(cfg, name: str, fit, steps: int, step0: int, run: _Run) -> None:
    """Run `fit` (ValueFit or PolicyFit) to `steps`, logging every `log_every` steps and
    checkpointing every `checkpoint_every` (and at the end) from a state checked healthy."""
    while fit.steps < steps:
        m = fit.step()
        run.tick()
        k, at = fit.steps, step0 + fit.steps
        log_now, ckpt_now = k % cfg.log_every == 0, k % cfg.checkpoint_every == 0
        if log_now or ckpt_now or k == steps:
            where = f"{name} step {k}"
            health.check_metrics(m, WATCHED, where)
            net = fit.fns if isinstance(fit, ValueFit) else fit.policy
            health.check_parameters(health.named_parameters(**{name: net}), where)
        if log_now or k == steps:
            names = run.value_names if isinstance(fit, ValueFit) else fit.mem.names
            kind = "value" if isinstance(fit, ValueFit) else "train"
            for i, member in enumerate(names):
                row = {key: round(float(v[i]), 5) for key, v in m.items()}
                run.log.log(at, member=member, kind=kind, **row)
        if ckpt_now or k == steps:
            run.save(at)
        debug_sigkill(at)  # test hook: kill -9 after global step `at`


def run(cfg: OfflineConfig) -> dict:
    """Train and evaluate every (method, seed); returns the summary written to summary.json.
    With `cfg.resume`, continue from the newest intact checkpoint (same config) exactly."""
    from anyfeedback.control.envs import check_task

    tr, meta = load_npz(cfg.dataset)  # validates first: nothing is written for a bad file
    domain, task, repeat = _eval_settings(cfg, meta)
    check_task(domain, task)
    out = Path(cfg.out)
    saved = _resume_state(out, cfg) if cfg.resume else {}
    torch.set_num_threads(cfg.threads)
    methods = cfg.method_list()
    bc = Members(cfg, ["bc"])  # trained first: a row, the labels' baseline and the KL's π_ref
    rest = Members(cfg, [m for m in methods if m != "bc"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg)
    if saved:
        _truncate_metrics(out / "metrics.jsonl", saved["step"])
    else:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    log = MetricsLog(out / "metrics.jsonl")
    total = cfg.value_steps + cfg.policy_steps * (1 + bool(rest.names))
    seeds = [cfg.seed + j for j in range(cfg.num_seeds)]
    policies = {}
    with progress(f"offline {domain}-{task}", total, disable=not cfg.progress) as (bar, t):
        bar.update(t, completed=saved.get("step", 0))
        st = _Run(out, log, lambda: bar.advance(t), [f"value-s{s}" for s in seeds], saved)
        # --- value functions, BC policies, labels (one of each per seed) ---
        values = st.add(
            "values",
            ValueFit(
                tr,
                seeds,
                batch_size=cfg.batch_size,
                hidden=cfg.hidden,
                lr=cfg.lr_value,
                gamma=cfg.gamma,
                n_step=cfg.n_step,
                tau=cfg.tau,
            ),
        )
        train_stage(cfg, "values", values, cfg.value_steps, 0, st)
        no_labels = [np.zeros((cfg.num_seeds, len(tr)), bool)] * 2  # BC ignores them
        bc_fit = st.add("bc", PolicyFit(cfg, tr, bc, no_labels, None))
        train_stage(cfg, "bc", bc_fit, cfg.policy_steps, cfg.value_steps, st)
        policies["bc"] = bc_fit.policy.requires_grad_(False)
        labels, stats = _label(cfg, values.fns, policies["bc"], tr, meta)
        # --- every other (method, seed) as one ensemble ---
        if rest.names:
            ref = policies["bc"] if cfg.kl == "policy" else None
            rest_fit = st.add("rest", PolicyFit(cfg, tr, rest, labels, ref))
            step0 = cfg.value_steps + cfg.policy_steps
            train_stage(cfg, "rest", rest_fit, cfg.policy_steps, step0, st)
            policies["rest"] = rest_fit.policy.requires_grad_(False)
        bar.update(t, info="evaluating")
        returns = _evaluate(cfg, policies, {"bc": bc, "rest": rest}, (domain, task, repeat))
    names = [f"{m}-s{s}" for m in methods for s in rest.seeds]
    for name in names:
        log.log(total, member=name, kind="eval", eval_return=round(float(returns[name]), 3))
    log.close()
    save_policies(out / "policy.safetensors", policies)
    return write_outputs(
        out,
        cfg,
        methods,
        names,
        [returns[n] for n in names],
        stats,
        (domain, task, repeat),
        len(tr),
    )


def _evaluate(cfg, policies: dict, members: dict, env: tuple) -> dict:
    """Evaluation return of every member; the same K start states for every member (paired)."""
    from anyfeedback.control.envs import EnvBatch
    from anyfeedback.control.train import evaluate

    domain, task, repeat = env
    returns = {}
    for key, mem in members.items():
        if key in policies:
            k = cfg.eval_episodes
            envs = EnvBatch(domain, task, [30_000 + j for _ in mem.names for j in range(k)], repeat)
            ev = type(
                "EvalCfg", (), {"episode_frames": cfg.episode_frames, "action_repeat": repeat}
            )
            actor = _Actor(policies[key], mem.names)
            returns |= dict(zip(mem.names, evaluate(actor, envs, ev, k), strict=True))
    return returns


RESUME_MAY_CHANGE = {"resume", "progress", "out", "threads", "checkpoint_every"}


def _resume_state(out: Path, cfg: OfflineConfig) -> dict:
    """The newest intact checkpoint, after refusing a changed config (steps included: the labels
    and π_ref come from the earlier stages, so a longer stage is a different run)."""
    state, _ = load_latest(out)
    refuse_changed(out, cfg, RESUME_MAY_CHANGE)
    return state


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the rows after the checkpoint's step, and the evaluation rows (written after the last
    checkpoint, at the final step)."""
    from anyfeedback.runs import atomic_write_text, read_metrics

    rows = read_metrics(path) if path.exists() else []
    kept = [r for r in rows if r.get("step", 0) <= step and r.get("kind") != "eval"]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
