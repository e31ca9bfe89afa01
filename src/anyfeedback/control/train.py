"""Off-policy actor-critic on the DeepMind Control Suite: PMPO (arXiv 2410.04166 §4, §5.2), MPO
and SAC, with E agents (seeds or configurations) as one batched program. Reads top to bottom:
setup → (resume) → episodes of [act → env step → replay → update] → evaluate → checkpoint.

Shapes: E agents, K evaluation episodes per agent, do observation dims, D action dims.
Checkpoints and evaluations happen at episode ends, so resuming is bit-exact on CPU: the replay
buffer, every RNG (torch noise, replay sampler, each environment's task RNG), the networks, the
optimisers and the duals are restored; metrics.jsonl is truncated to the checkpoint's step.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from anyfeedback.control.config import ControlConfig, MemberSpec
from anyfeedback.control.envs import EnvBatch, check_task
from anyfeedback.control.learner import Learner
from anyfeedback.control.perf import keep_freed_memory
from anyfeedback.control.replay import NStepReplay
from anyfeedback.errors import InputError
from anyfeedback.runs import MetricsLog, atomic_path, atomic_write_json, progress, read_metrics

RESUME_IGNORED = {"steps", "resume", "progress", "out", "threads"}  # may change on resume


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


def _checkpoint(path: Path, learner, replay, envs, eval_envs, counters: dict) -> None:
    state = {"learner": learner.state_dict(), "replay": replay.state_dict(),
             "env_rng": envs.rng_states(), "eval_env_rng": eval_envs.rng_states(),
             "counters": counters}  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(out: Path, cfg: ControlConfig, learner, replay, envs, eval_envs) -> dict:
    saved = ControlConfig(**{k: v for k, v in _read_json(out / "config.json").items()})
    diff = [f.name for f in _fields(cfg) if f.name not in RESUME_IGNORED
            and getattr(saved, f.name) != getattr(cfg, f.name)]  # fmt: skip
    if diff:
        raise InputError(f"--resume with a different config ({', '.join(diff)})", source=str(out))
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    learner.load_state_dict(state["learner"])
    replay.load_state_dict(state["replay"])
    envs.set_rng_states(state["env_rng"])
    eval_envs.set_rng_states(state["eval_env_rng"])
    return state["counters"]


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def _fields(cfg):
    import dataclasses

    return dataclasses.fields(cfg)


def _log_train(log: MetricsLog, frames: int, members, metrics: list[dict], sps: float) -> None:
    keys = metrics[0].keys()
    mean = {k: torch.stack([m[k] for m in metrics]).mean(0) for k in keys}  # [E]
    for i, member in enumerate(members):
        row = {k: round(float(v[i]), 6) for k, v in mean.items()}
        log.log(frames, member=member.name, kind="train", env_steps_per_s=round(sps, 1), **row)


def run(cfg: ControlConfig, members: list[MemberSpec] | None = None) -> dict:
    """Train (or resume) and return a summary {member name: final eval return, ...}."""
    members = members or cfg.members()
    check_task(cfg.domain, cfg.task)
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    out = Path(cfg.out)
    ckpt = out / "checkpoint.pt"
    if cfg.resume and not ckpt.exists():
        raise InputError("--resume but no checkpoint.pt", source=str(out))
    # --- setup: environments, learner, replay ---
    seeds = [m.seed for m in members]
    envs = EnvBatch(cfg.domain, cfg.task, seeds, cfg.action_repeat)
    k = cfg.eval_episodes
    eval_envs = EnvBatch(cfg.domain, cfg.task, [10_000 + s * k + j for s in seeds for j in range(k)],
                         cfg.action_repeat)  # fmt: skip
    learner = Learner(cfg, members, envs.obs_dim, envs.act_dim)
    ep_len = cfg.episode_frames // cfg.action_repeat  # agent steps per episode
    total_episodes = max(1, math.ceil(cfg.steps / cfg.episode_frames)) if cfg.steps else 0
    replay = NStepReplay(len(members), cfg.replay_capacity, envs.obs_dim, envs.act_dim,
                         n_step=cfg.n_step, gamma=cfg.gamma, seed=seeds[0])  # fmt: skip
    explore = np.random.default_rng(seeds[0] + 1)  # uniform actions before learning starts
    counters = {"frames": 0, "episodes": 0, "next_eval": cfg.eval_every,
                "next_ckpt": cfg.checkpoint_every, "explore_rng": explore.bit_generator.state}
    if cfg.resume:
        counters = _resume(out, cfg, learner, replay, envs, eval_envs)
        explore.bit_generator.state = counters["explore_rng"]
    atomic_write_json(out / "config.json", cfg)
    log = MetricsLog(out / "metrics.jsonl")
    log.truncate_after(counters["frames"])
    buffer: list[dict] = []
    t0, frames0 = time.perf_counter(), counters["frames"]
    with progress(f"{cfg.method} {cfg.domain}-{cfg.task}", total_episodes * cfg.episode_frames,
                  disable=not cfg.progress) as (bar, task):  # fmt: skip
        bar.update(task, completed=counters["frames"])
        while counters["episodes"] < total_episodes:
            # --- one episode of all agents in lockstep ---
            obs = envs.reset()  # [E, do]
            for t in range(ep_len):
                if counters["frames"] < cfg.learning_starts:
                    act = explore.uniform(-1, 1, (len(members), envs.act_dim)).astype(np.float32)
                else:
                    x = torch.from_numpy(obs).unsqueeze(1)  # [E, 1, do]
                    act = learner.act(x, deterministic=False).squeeze(1).numpy()
                next_obs, reward = envs.step(act)
                replay.add(obs, act, reward, next_obs, last=t == ep_len - 1)
                obs = next_obs
                counters["frames"] += cfg.action_repeat
                if counters["frames"] >= cfg.learning_starts and t % cfg.update_every == 0:
                    buffer.append(learner.update(replay.sample(cfg.batch_size)))
                bar.update(task, completed=counters["frames"])
            counters["episodes"] += 1
            if buffer:  # one training row per episode: resume-exact (checkpoints end episodes)
                sps = (counters["frames"] - frames0) / (time.perf_counter() - t0)
                _log_train(log, counters["frames"], members, buffer, sps)
                buffer = []
                bar.update(task, info=f"{sps:.0f} env-steps/s")
            done = counters["episodes"] == total_episodes
            # --- evaluate, checkpoint (episode boundaries only) ---
            if counters["frames"] >= counters["next_eval"] or done:
                returns = evaluate(learner, eval_envs, cfg, k)
                for member, ret in zip(members, returns, strict=True):
                    log.log(counters["frames"], member=member.name, kind="eval",
                            eval_return=round(float(ret), 3))  # fmt: skip
                while counters["next_eval"] <= counters["frames"]:
                    counters["next_eval"] += cfg.eval_every
            if counters["frames"] >= counters["next_ckpt"] or done:
                counters["explore_rng"] = explore.bit_generator.state
                _checkpoint(ckpt, learner, replay, envs, eval_envs, counters)
                while counters["next_ckpt"] <= counters["frames"]:
                    counters["next_ckpt"] += cfg.checkpoint_every
    log.close()
    return _finish(out, members, cfg)


def _finish(out: Path, members: list[MemberSpec], cfg: ControlConfig) -> dict:
    from anyfeedback.control.plots import plot_run

    rows = read_metrics(out / "metrics.jsonl")
    summary = {}
    for m in members:
        evals = [r for r in rows if r.get("member") == m.name and r.get("kind") == "eval"]
        summary[m.name] = {"final_eval_return": evals[-1]["eval_return"] if evals else None,
                           "eval_steps": [r["step"] for r in evals],
                           "eval_returns": [r["eval_return"] for r in evals]}  # fmt: skip
    atomic_write_json(out / "summary.json", summary)
    plot_run(rows, members, out / "curves.png", title=f"{cfg.domain}-{cfg.task}")
    return summary
