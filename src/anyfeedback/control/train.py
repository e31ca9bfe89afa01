"""Off-policy actor-critic on the DeepMind Control Suite: PMPO (arXiv 2410.04166 §4, §5.2), MPO
and SAC, with E agents (seeds or configurations) as one batched program. Reads top to bottom:
setup → (resume) → episodes of [act → env step → replay → update] → evaluate → checkpoint.

Shapes: E agents, K evaluation episodes per agent, do observation dims, D action dims.
Checkpoints and evaluations happen at episode ends, so resuming is bit-exact on CPU: the replay
buffer, every RNG (torch noise, replay sampler, each environment's task RNG), the networks, the
optimisers and the duals are restored; metrics.jsonl is truncated to the checkpoint's step.
Checkpoints are safetensors + JSON (`control.checkpoint`: nothing loaded can run code); each
episode's state is checked healthy (`control.health`) before it is logged or checkpointed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from anyfeedback.control import health
from anyfeedback.control.checkpoint import (
    has_checkpoint,
    load_latest,
    read_json,
    refuse_changed,
    save_checkpoint,
)
from anyfeedback.control.config import ControlConfig, MemberSpec
from anyfeedback.control.envs import EnvBatch, check_task
from anyfeedback.control.learner import Learner
from anyfeedback.control.perf import keep_freed_memory
from anyfeedback.control.replay import NStepReplay
from anyfeedback.errors import InputError
from anyfeedback.runs import (
    MetricsLog,
    atomic_write_json,
    debug_sigkill,
    jsonable,
    progress,
    read_metrics,
)

# may change on resume; `steps` only where the longer run equals an uninterrupted one (_resume_state)
RESUME_IGNORED = {"steps", "resume", "progress", "out", "threads"}


def evaluate(learner: Learner, envs: EnvBatch, cfg: ControlConfig, k: int) -> np.ndarray:
    """Mean undiscounted return of K deterministic episodes per agent -> [E]. `envs` holds E·K
    environments, agent-major."""
    e = len(learner.members)
    obs = envs.reset()  # [E·K, do]
    total = np.zeros(e * k)
    for _ in range(cfg.episode_frames // cfg.action_repeat):
        x = torch.from_numpy(obs).view(e, k, -1)
        act = learner.act(x, deterministic=True).reshape(e * k, -1).numpy()
        obs, reward = envs.step(act)
        total += reward
    return total.reshape(e, k).mean(1)


def _checkpoint(out: Path, learner, replay, envs, eval_envs, counters: dict) -> None:
    state = {
        "learner": learner.state_dict(),
        "replay": replay.state_dict(),
        "env_rng": envs.rng_states(),
        "eval_env_rng": eval_envs.rng_states(),
        "counters": counters,
    }
    save_checkpoint(out, counters["frames"], state)


def _resume_state(out: Path, cfg: ControlConfig, members: list[MemberSpec]) -> dict:
    """The newest intact checkpoint of `out`, after checking that the run is the same."""
    state, _ = load_latest(out)
    refuse_changed(out, cfg, RESUME_IGNORED)
    c = state["counters"]
    if c.get("evaluated_off_schedule") and cfg.steps > c["frames"]:
        # that evaluation advanced the evaluation environments' RNGs and logged a row that an
        # uninterrupted longer run would not have: continuing would not reproduce that run
        raise InputError(
            f"cannot extend: the run ended at env step {c['frames']} with an evaluation off the "
            f"--eval-every {cfg.eval_every} schedule; start a new run with the longer --steps",
            field="steps",
        )
    if read_json(out / "members.json") != json.loads(json.dumps(jsonable(members))):
        raise InputError("--resume with different agents (members.json)", source=str(out))
    return state


def _restore(st: _State, state: dict) -> dict:
    st.learner.load_state_dict(state["learner"])
    st.replay.load_state_dict(state["replay"])
    st.envs.set_rng_states(state["env_rng"])
    st.eval_envs.set_rng_states(state["eval_env_rng"])
    st.explore.bit_generator.state = state["counters"]["explore_rng"]
    return state["counters"]


# per-update metrics that must stay finite (the others may be NaN by design, e.g. a metric of
# one method's members in an ensemble that mixes methods)
WATCHED = ("critic_loss", "q")


def check_health(learner: Learner, metrics: list[dict], frames: int) -> None:
    """Raise `DivergenceError` if the learner's parameters or this episode's watched metrics are
    not healthy (`control.health`)."""
    where = f"env step {frames}"
    for m in metrics:
        health.check_metrics(m, WATCHED, where)
    named = health.named_parameters(
        policy=learner.policy,
        critic=learner.critic,
        target_policy=learner.target_policy,
        target_critic=learner.target_critic,
        dual=learner.duals,
        log_alpha=learner.log_alpha,
    )
    health.check_parameters(named, where)


def _log_train(log: MetricsLog, frames: int, members, metrics: list[dict], sps: float) -> None:
    keys = metrics[0].keys()
    mean = {k: torch.stack([m[k] for m in metrics]).mean(0) for k in keys}  # [E]
    for i, member in enumerate(members):
        row = {k: round(float(v[i]), 6) for k, v in mean.items()}
        log.log(frames, member=member.name, kind="train", env_steps_per_s=round(sps, 1), **row)


class _State:
    """Everything a run carries between episodes (what a checkpoint restores)."""

    def __init__(self, cfg: ControlConfig, members: list[MemberSpec]) -> None:
        seeds = [m.seed for m in members]
        k = cfg.eval_episodes
        self.envs = EnvBatch(cfg.domain, cfg.task, seeds, cfg.action_repeat)
        self.eval_envs = EnvBatch(
            cfg.domain,
            cfg.task,
            [10_000 + s * k + j for s in seeds for j in range(k)],
            cfg.action_repeat,
        )
        self.learner = Learner(cfg, members, self.envs.obs_dim, self.envs.act_dim)
        self.replay = NStepReplay(
            len(members),
            cfg.replay_capacity,
            self.envs.obs_dim,
            self.envs.act_dim,
            n_step=cfg.n_step,
            gamma=cfg.gamma,
            seed=seeds[0],
        )
        self.explore = np.random.default_rng(seeds[0] + 1)  # uniform actions before learning
        self.counters = {
            "frames": 0,
            "episodes": 0,
            "next_eval": cfg.eval_every,
            "next_ckpt": cfg.checkpoint_every,
        }


def run_episode(cfg: ControlConfig, st: _State, members) -> list[dict]:
    """One episode of all agents in lockstep: act, env step, replay, update. Returns the
    learner's per-update metrics."""
    metrics, c, e = [], st.counters, len(members)
    obs = st.envs.reset()  # [E, do]
    ep_len = cfg.episode_frames // cfg.action_repeat
    for t in range(ep_len):
        if c["frames"] < cfg.learning_starts:
            act = st.explore.uniform(-1, 1, (e, st.envs.act_dim)).astype(np.float32)
        else:
            x = torch.from_numpy(obs).unsqueeze(1)  # [E, 1, do]
            act = st.learner.act(x, deterministic=False).squeeze(1).numpy()  # [E, D]
        next_obs, reward = st.envs.step(act)
        st.replay.add(obs, act, reward, next_obs, last=t == ep_len - 1)
        obs = next_obs
        c["frames"] += cfg.action_repeat
        if c["frames"] >= cfg.learning_starts and t % cfg.update_every == 0:
            metrics.append(st.learner.update(st.replay.sample(cfg.batch_size)))
    c["episodes"] += 1
    return metrics


def run(cfg: ControlConfig, members: list[MemberSpec] | None = None) -> dict:
    """Train (or resume) and return a summary {member name: final eval return, ...}."""
    members = members or cfg.members()
    check_task(cfg.domain, cfg.task)
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    out = Path(cfg.out)
    if cfg.resume and not has_checkpoint(out):
        raise InputError("--resume but no checkpoint", source=str(out))
    # --- setup (or restore) ---
    saved = _resume_state(out, cfg, members) if cfg.resume else None
    st = _State(cfg, members)
    c = st.counters
    if saved is not None:
        c = st.counters = _restore(st, saved)
    atomic_write_json(out / "config.json", cfg)
    atomic_write_json(out / "members.json", members)
    log = MetricsLog(out / "metrics.jsonl")
    log.truncate_after(c["frames"])
    total_episodes = math.ceil(cfg.steps / cfg.episode_frames)
    t0, frames0 = time.perf_counter(), c["frames"]
    with progress(
        f"{cfg.method} {cfg.domain}-{cfg.task}",
        total_episodes * cfg.episode_frames,
        disable=not cfg.progress,
    ) as (bar, task):
        bar.update(task, completed=c["frames"])
        while c["episodes"] < total_episodes:
            # --- train one episode; one training row per episode (resume-exact) ---
            metrics = run_episode(cfg, st, members)
            check_health(st.learner, metrics, c["frames"])
            sps = (c["frames"] - frames0) / (time.perf_counter() - t0)
            if metrics:
                _log_train(log, c["frames"], members, metrics, sps)
            bar.update(task, completed=c["frames"], info=f"{sps:.0f} env-steps/s")
            done = c["episodes"] == total_episodes
            # --- evaluate, checkpoint (episode boundaries only) ---
            if c["frames"] >= c["next_eval"] or done:
                c["evaluated_off_schedule"] = c["frames"] < c["next_eval"]
                returns = evaluate(st.learner, st.eval_envs, cfg, cfg.eval_episodes)
                for member, ret in zip(members, returns, strict=True):
                    log.log(
                        c["frames"],
                        member=member.name,
                        kind="eval",
                        eval_return=round(float(ret), 3),
                    )
                while c["next_eval"] <= c["frames"]:
                    c["next_eval"] += cfg.eval_every
            if c["frames"] >= c["next_ckpt"] or done:
                while c["next_ckpt"] <= c["frames"]:
                    c["next_ckpt"] += cfg.checkpoint_every
                c["explore_rng"] = st.explore.bit_generator.state
                _checkpoint(out, st.learner, st.replay, st.envs, st.eval_envs, c)
            debug_sigkill(c["episodes"])  # test hook: kill -9 after this episode
    log.close()
    return _finish(out, members, cfg)


def _finish(out: Path, members: list[MemberSpec], cfg: ControlConfig) -> dict:
    from anyfeedback.control.plots import plot_run

    rows = read_metrics(out / "metrics.jsonl")
    summary = {}
    for m in members:
        evals = [r for r in rows if r.get("member") == m.name and r.get("kind") == "eval"]
        summary[m.name] = {
            "final_eval_return": evals[-1]["eval_return"] if evals else None,
            "eval_steps": [r["step"] for r in evals],
            "eval_returns": [r["eval_return"] for r in evals],
        }
    atomic_write_json(out / "summary.json", summary)
    plot_run(rows, members, out / "curves.png", title=f"{cfg.domain}-{cfg.task}")
    return summary
