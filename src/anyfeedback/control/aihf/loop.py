"""`run_aihf_control(cfg)`: AIHF Algorithm 1 in control (docs/algorithms.md#aihf; paper App. A.2.1),
read top to bottom. E = methods × seeds members run as one batched program (stacked parameters): SAC
agents (`control.learner.Learner`) and one reward MLP each (`RewardNet`).

setup: pool → per-member demonstrations and pairs; θ_0 = `reward_warmup_steps` Bradley–Terry
steps on the pairs (members with preferences; ML-IRL starts fresh). Then per phase k:

  policy step  `episodes_per_reward_phase` episodes; each agent step one env step and one SAC
               update on a replay batch whose rewards are *relabelled at sampling time* with the
               current r_θk(s, a), so the reward may change under the replay (1-step TD targets)
  reward step  `reward_updates` Adam steps on, per member (`losses.aihf_reward_loss`):
               w_D·[−(mean r(demo states) − mean r(policy states))]          ML-IRL (irl_linear)
               + w_P·BT(Σ_t r over the chosen segment, Σ_t r over the rejected segment)
               policy states = the last phase's transitions of the member's *stochastic* policy
  evaluate     true env return (deterministic mean action), held-out pair accuracy of r_θ

RLHF = w_D 0 (BT reward from the pairs alone; warm-started, so "BT reward, then RL"), ML-IRL =
w_P 0, AIHF = both. BC (bc.py) is trained apart on the same demonstrations.
Shapes: E members, B states, P pairs, L segment steps, do obs dims, D action dims.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from anyfeedback.control import health
from anyfeedback.control.aihf.config import AIHFControlConfig
from anyfeedback.control.aihf.data import (
    Pool,
    gather_segments,
    held_out_pairs,
    load_pool,
    member_feedback,
)
from anyfeedback.control.aihf.reward import RewardNet
from anyfeedback.control.aihf.setup import control_config, eval_envs, member_specs
from anyfeedback.control.envs import EnvBatch
from anyfeedback.control.learner import Learner
from anyfeedback.control.replay import NStepReplay
from anyfeedback.control.train import evaluate, run_episode
from anyfeedback.losses import aihf_reward_loss, bradley_terry_loss
from anyfeedback.runs import debug_sigkill


class AIHFControl:
    """State of one run; `policy_phase`, `reward_step` and `evaluate` are Algorithm 1's parts.
    `trace` (a list) records the order of events for tests."""

    def __init__(
        self, cfg: AIHFControlConfig, pool: Pool, methods: list[str], trace: list | None = None
    ) -> None:
        self.cfg, self.pool, self.trace = cfg, pool, trace
        seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
        self.members = member_specs(methods, seeds)
        self.ccfg = control_config(cfg, pool)
        self.envs = EnvBatch(
            pool.domain, pool.task, [m.seed for m in self.members], pool.action_repeat
        )
        self.eval_envs = eval_envs(self.ccfg, [m.seed for m in self.members])
        do, d = self.envs.obs_dim, self.envs.act_dim
        self.learner = Learner(self.ccfg, self.members, do, d)
        self.ep_len = self.ccfg.episode_frames // pool.action_repeat
        cap = (math.ceil(cfg.steps / self.ccfg.episode_frames) + 1) * self.ep_len
        self.replay = NStepReplay(
            len(self.members), cap, do, d, n_step=1, gamma=cfg.gamma, seed=cfg.seed
        )
        gens = [torch.Generator().manual_seed(7_919 + m.seed) for m in self.members]
        self.reward = RewardNet(
            do, d, cfg.reward_hidden, gens, use_actions=cfg.reward_actions, clip=cfg.reward_clip
        )
        self.reward_opt = torch.optim.Adam(self.reward.parameters(), lr=cfg.reward_lr)
        fb = member_feedback(
            pool,
            seeds,
            demo_quality=cfg.demo_quality,
            num_demos=cfg.num_demos,
            num_pairs=cfg.num_pairs,
            noise=cfg.pref_noise,
            length=cfg.segment_length,
        )
        rep = len(methods)  # members are method-major: member i uses seed i % num_seeds
        self.demo_obs, self.demo_act = fb.demo_obs.repeat(rep, 1, 1), fb.demo_act.repeat(rep, 1, 1)
        self.pairs = fb.pairs.repeat(rep, 1, 1)  # [E, P, 4]
        self.pool_obs, self.pool_act = torch.from_numpy(pool.obs), torch.from_numpy(pool.act)
        self.held = held_out_pairs(pool, cfg.held_out_pairs, cfg.segment_length, cfg.seed)
        w = [cfg.weights(m) for m in methods for _ in seeds]
        self.w_demo, self.w_pref = [a for a, _ in w], [b for _, b in w]
        self.rng = np.random.default_rng(cfg.seed + 1)  # exploration, reward batches
        self.episode_state = SimpleNamespace(  # what `control.train.run_episode` reads and updates
            envs=self.envs,
            replay=self.replay,
            learner=_Relabelling(self),
            explore=self.rng,
            counters={"frames": 0, "episodes": 0},
        )

    # --- policy step: SAC on relabelled replay -------------------------------------------
    def relabel(
        self, batch: tuple[torch.Tensor, ...]
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Replace the stored env reward by r_θ(s, a) (no grad). Returns (batch, per-member
        Pearson correlation of r_θ with the true reward on it [E])."""
        obs, act, true, disc, next_obs = batch
        with torch.no_grad():
            r = self.reward(obs, act)  # [E, B]
        return (obs, act, r, disc, next_obs), _pearson(r, true)

    def policy_phase(self) -> dict[str, torch.Tensor]:
        """`episodes_per_reward_phase` episodes of the control trainer's own interaction loop
        (`control.train.run_episode`: act, env step, replay, one update per agent step), its
        learner's updates taking relabelled batches (`_Relabelling`)."""
        metrics = []
        for _ in range(self.cfg.episodes_per_reward_phase):
            metrics += run_episode(self.ccfg, self.episode_state, self.members)
        if self.trace is not None:
            self.trace.append(("policy_phase", self.learner.steps, self.replay.ptr))
        if not metrics:
            return {}
        return {k: torch.stack([m[k] for m in metrics]).mean(0) for k in metrics[0]}

    @property
    def frames(self) -> int:
        return self.episode_state.counters["frames"]

    # --- reward step -----------------------------------------------------------------------
    def _pair_returns(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pairs [E, P, 4] -> (R_chosen, R_rejected) [E, P] under the current r_θ."""
        ow, aw, ol, al = gather_segments(
            self.pool_obs, self.pool_act, pairs, self.cfg.segment_length
        )
        return self.reward.segment_returns(ow, aw), self.reward.segment_returns(ol, al)

    def _pair_batch(self) -> torch.Tensor:
        e, p = self.pairs.shape[:2]
        idx = torch.from_numpy(self.rng.integers(0, p, (e, self.cfg.pair_batch_size)))
        return torch.gather(self.pairs, 1, idx.unsqueeze(-1).expand(-1, -1, 4))  # [E, Bp, 4]

    def policy_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """States/actions of the last policy phase (the latest stochastic policy) [E, B, ·]."""
        e, b = len(self.members), self.cfg.reward_batch_size
        window = min(self.replay.size, self.ep_len * self.cfg.episodes_per_reward_phase)
        idx = (self.replay.ptr - 1 - self.rng.integers(0, window, (e, b))) % self.replay.size
        rows = np.arange(e)[:, None]
        return (
            torch.from_numpy(self.replay.obs[rows, idx]),
            torch.from_numpy(self.replay.act[rows, idx]),
        )

    def reward_step(self) -> dict[str, torch.Tensor]:
        cfg, e = self.cfg, len(self.members)
        di = torch.from_numpy(
            self.rng.integers(0, self.demo_obs.shape[1], (e, cfg.reward_batch_size))
        )
        d_obs = torch.gather(
            self.demo_obs, 1, di.unsqueeze(-1).expand(-1, -1, self.demo_obs.shape[-1])
        )
        d_act = torch.gather(
            self.demo_act, 1, di.unsqueeze(-1).expand(-1, -1, self.demo_act.shape[-1])
        )
        s_obs, s_act = self.policy_samples()
        r_demo, r_samp = self.reward(d_obs, d_act), self.reward(s_obs, s_act)  # [E, B]
        r_w, r_l = self._pair_returns(self._pair_batch())  # [E, Bp]
        total, terms = 0.0, []
        for i in range(e):  # per-member weights; parameters are disjoint, so the sum is exact
            wd, wp = self.w_demo[i], self.w_pref[i]
            loss, diag = aihf_reward_loss(
                r_demo[i] if wd > 0 else None,
                r_samp[i] if wd > 0 else None,
                r_w[i] if wp > 0 else None,
                r_l[i] if wp > 0 else None,
                demo_weight=wd,
                pref_weight=wp,
                demo_mode=cfg.demo_mode,
                beta=1.0,
            )
            total = total + loss
            terms.append(diag)
        self.reward_opt.zero_grad(set_to_none=True)
        total.backward()
        self.reward_opt.step()
        if self.trace is not None:
            self.trace.append(("reward_step", self.learner.steps, self.replay.ptr))
        return {
            "demo_minus_sample": (r_demo - r_samp).detach().mean(-1),
            "demo_term": torch.stack([d.demo_term for d in terms]),
            "pref_term": torch.stack([d.pref_term for d in terms]),
        }

    def warm_start(self) -> None:
        """θ_0: Bradley–Terry steps on the pairs for the members with preferences, with an
        optimiser of its own (the loop's Adam starts fresh for every member)."""
        use = [i for i, w in enumerate(self.w_pref) if w > 0]
        if not use or not self.cfg.reward_warmup_steps:
            return
        opt = torch.optim.Adam(self.reward.parameters(), lr=self.cfg.reward_lr)
        for _ in range(self.cfg.reward_warmup_steps):
            r_w, r_l = self._pair_returns(self._pair_batch())
            loss = sum(bradley_terry_loss(r_w[i], r_l[i])[0] for i in use)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    # --- checkpoint ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything the loop carries between phases (at an episode boundary)."""
        return {
            "learner": self.learner.state_dict(),
            "replay": self.replay.state_dict(),
            "env_rng": self.envs.rng_states(),
            "eval_env_rng": self.eval_envs.rng_states(),
            "reward": self.reward.state_dict(),
            "reward_opt": self.reward_opt.state_dict(),
            "rng": self.rng.bit_generator.state,
            "counters": dict(self.episode_state.counters),
        }

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.replay.load_state_dict(state["replay"])
        self.envs.set_rng_states(state["env_rng"])
        self.eval_envs.set_rng_states(state["eval_env_rng"])
        self.reward.load_state_dict(state["reward"])
        self.reward_opt.load_state_dict(state["reward_opt"])
        self.rng.bit_generator.state = state["rng"]
        self.episode_state.counters.update(state["counters"])

    def check_health(self, metrics: dict[str, torch.Tensor]) -> None:
        """Raise `DivergenceError` unless the agents, the reward nets and the phase's losses are
        healthy (`control.health`)."""
        where = f"env step {self.frames}"
        health.check_metrics(metrics, WATCHED, where)
        named = health.named_parameters(
            policy=self.learner.policy,
            critic=self.learner.critic,
            target_critic=self.learner.target_critic,
            log_alpha=self.learner.log_alpha,
            reward=self.reward,
        )
        health.check_parameters(named, where)

    # --- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """True return [E] and the reward's accuracy on the clean held-out pairs [E]."""
        ret = evaluate(self.learner, self.eval_envs, self.ccfg, self.cfg.eval_episodes)
        held = self.held.expand(len(self.members), -1, -1)
        r_w, r_l = self._pair_returns(held)
        return {"eval_return": ret, "rm_accuracy": (r_w > r_l).float().mean(-1).numpy()}


class _Relabelling:
    """The SAC learner as `control.train.run_episode` sees it: `act` as is, `update` on a batch
    relabelled with the current r_θ (`AIHFControl.relabel`), plus r_θ's correlation metric."""

    def __init__(self, run: AIHFControl) -> None:
        self.run = run

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.run.learner.act(obs, deterministic)

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        batch, corr = self.run.relabel(batch)
        return self.run.learner.update(batch) | {"reward_corr": corr}


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson correlation of x, y [E, B] -> [E] (0 where a row is constant)."""
    xc, yc = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    den = (xc.pow(2).sum(-1) * yc.pow(2).sum(-1)).sqrt()
    return torch.where(den > 0, (xc * yc).sum(-1) / den.clamp(min=1e-12), torch.zeros_like(den))


# per-phase metrics that must stay finite (reward_corr is 0 by definition for a constant row)
WATCHED = ("critic_loss", "reward/demo_minus_sample")


def train_reward_learners(
    cfg: AIHFControlConfig,
    pool: Pool,
    methods: list[str],
    log,
    trace: list | None = None,
    *,
    saved: dict | None = None,
    save=None,
) -> AIHFControl:
    """The loop: warm start, then phases of [policy phase → reward steps], evaluations on the
    way. Logs per-member rows (kind train / eval) to `log`. `save(frames, state)` checkpoints
    (every `checkpoint_every` frames and at the end, from a state checked healthy); `saved`, a
    checkpoint's "learners" state, resumes exactly (no warm start: its result is in the state)."""
    from anyfeedback.runs import progress

    run = AIHFControl(cfg, pool, methods, trace)
    if saved is None:
        run.warm_start()
        next_eval, next_ckpt = cfg.eval_every, cfg.checkpoint_every
    else:
        run.load_state_dict(saved)
        next_eval, next_ckpt = saved["next_eval"], saved["next_ckpt"]
    frames_per_phase = run.ccfg.episode_frames * cfg.episodes_per_reward_phase
    phases = math.ceil(cfg.steps / frames_per_phase)
    t0, frames0 = time.perf_counter(), run.frames
    with progress(
        "aihf-control " + ",".join(methods), phases * frames_per_phase, disable=not cfg.progress
    ) as (bar, task):
        for k in range(run.frames // frames_per_phase, phases):
            m = run.policy_phase()  # (a) policy steps first
            for _ in range(cfg.reward_updates):  # (b) then the reward steps
                m |= {f"reward/{key}": v for key, v in run.reward_step().items()}
            run.check_health(m)
            _log_rows(log, run.frames, run.members, "train", m)
            done = k == phases - 1
            if run.frames >= next_eval or done:
                _log_rows(log, run.frames, run.members, "eval", run.evaluate())
                while next_eval <= run.frames:
                    next_eval += cfg.eval_every
            if save is not None and (run.frames >= next_ckpt or done):
                while next_ckpt <= run.frames:
                    next_ckpt += cfg.checkpoint_every
                save(
                    run.frames, run.state_dict() | {"next_eval": next_eval, "next_ckpt": next_ckpt}
                )
            debug_sigkill(k + 1)  # test hook: kill -9 after phase k + 1
            sps = (run.frames - frames0) / (time.perf_counter() - t0)
            bar.update(task, completed=run.frames, info=f"{sps:.0f} env-steps/s")
    return run


def _log_rows(log, frames: int, members, kind: str, metrics: dict) -> None:
    for i, member in enumerate(members):
        row = {k: round(float(v[i]), 4) for k, v in metrics.items()}
        log.log(frames, member=member.name, kind=kind, **row)


def run_aihf_control(cfg: AIHFControlConfig, *, trace: list | None = None) -> dict:
    """Train every method of `cfg.methods` × seeds; write config, metrics, summary, plot and
    report to `cfg.out`. Returns the summary."""
    from anyfeedback.control.aihf.bc import train_bc
    from anyfeedback.control.aihf.report import write_outputs
    from anyfeedback.control.checkpoint import save_checkpoint
    from anyfeedback.control.envs import check_task
    from anyfeedback.control.perf import keep_freed_memory
    from anyfeedback.runs import MetricsLog, atomic_write_json

    pool = load_pool(cfg.data)
    check_task(pool.domain, pool.task)
    out = Path(cfg.out)
    saved = _resume_state(out, cfg) if cfg.resume else {}
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg)
    if not saved:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    methods = cfg.method_list()
    learners = [m for m in methods if m != "bc"]
    with MetricsLog(out / "metrics.jsonl") as log:
        if saved:
            log.truncate_after(saved["frames"])
        bc_done = bool(saved)  # BC runs first and is checkpointed as done (frames 0)
        if "bc" in methods and not bc_done:
            train_bc(cfg, pool, log)
            save_checkpoint(out, 0, {"frames": 0})
        if learners:

            def save(frames: int, state: dict) -> None:
                save_checkpoint(out, frames, {"frames": frames, "learners": state})

            train_reward_learners(
                cfg, pool, learners, log, trace, saved=saved.get("learners"), save=save
            )
    return write_outputs(out, cfg)


# may change on resume (nothing that changes the run: a longer `steps` would change the replay's
# capacity and the final evaluation, so it is refused too)
RESUME_MAY_CHANGE = {"resume", "progress", "out", "threads", "checkpoint_every"}


def _resume_state(out: Path, cfg: AIHFControlConfig) -> dict:
    from anyfeedback.control.checkpoint import load_latest, refuse_changed

    state, _ = load_latest(out)
    refuse_changed(out, cfg, RESUME_MAY_CHANGE)
    return state
