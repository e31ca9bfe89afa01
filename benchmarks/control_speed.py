"""Env steps per second *with learning* of the control learners, SAC as the yardstick.

Each method runs the training loop's inner step (act → env step → replay → one update of batch
256) on the same task in the same process, in interleaved rounds so background load hits all
methods alike; the median over rounds is reported. PMPO and MPO score N=20 sampled actions per
state; SAC (CleanRL-style: twin Q, batch 256, one update per env step) scores one.
A method may carry the critic's scoring precision, `pmpo-ar:fp32` (default: the config's, bf16).

    nice -n 10 .venv/bin/python benchmarks/control_speed.py --rounds 7 --steps 200 --fill 2000 \
        --methods sac,pmpo-ar,mpo,pmpo-ar:fp32 --out results/control/speed.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from anyfeedback.control.config import ControlConfig
from anyfeedback.control.envs import EnvBatch
from anyfeedback.control.learner import Learner
from anyfeedback.control.perf import keep_freed_memory
from anyfeedback.control.replay import NStepReplay
from anyfeedback.runs import atomic_write_json


class Bench:
    """One method's learner on its own environments, pre-filled replay, ready to step."""

    def __init__(self, spec: str, args) -> None:
        method, _, precision = spec.partition(":")
        extra = {"score_precision": precision} if precision else {}
        self.cfg = ControlConfig(
            domain=args.domain,
            task=args.task,
            method=method,
            num_seeds=args.seeds,
            progress=False,
            **extra,
        )
        members = self.cfg.members()
        self.envs = EnvBatch(args.domain, args.task, [m.seed for m in members], 1)
        self.learner = Learner(self.cfg, members, self.envs.obs_dim, self.envs.act_dim)
        self.replay = NStepReplay(
            len(members),
            100_000,
            self.envs.obs_dim,
            self.envs.act_dim,
            n_step=3,
            gamma=0.99,
            seed=0,
        )
        self.obs = self.envs.reset()
        self.t = 0
        rng = np.random.default_rng(0)
        for _ in range(args.fill):
            self.step(rng.uniform(-1, 1, (len(members), self.envs.act_dim)).astype(np.float32))

    def step(self, act=None) -> None:
        if act is None:
            x = torch.from_numpy(self.obs).unsqueeze(1)
            act = self.learner.act(x, deterministic=False).squeeze(1).numpy()
        next_obs, reward = self.envs.step(act)
        self.t += 1
        last = self.t % self.cfg.episode_frames == 0
        self.replay.add(self.obs, act, reward, next_obs, last)
        self.obs = self.envs.reset() if last else next_obs

    def timed(self, n: int) -> float:
        """Env steps/s (per agent) over n steps, each followed by one learner update."""
        t0 = time.perf_counter()
        for _ in range(n):
            self.step()
            self.learner.update(self.replay.sample(self.cfg.batch_size))
        return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", default="cartpole")
    p.add_argument("--task", default="swingup")
    p.add_argument("--methods", default="sac,pmpo-ar,mpo,pmpo-ar:fp32")
    p.add_argument("--seeds", type=int, default=1, help="agents batched in one program")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300, help="env steps per method per round")
    p.add_argument("--fill", type=int, default=2000, help="random steps before timing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    benches = {m: Bench(m, args) for m in args.methods.split(",")}
    for b in benches.values():
        b.timed(20)  # warm-up
    rates = {m: [] for m in benches}
    for _ in range(args.rounds):
        for m, b in benches.items():
            rates[m].append(b.timed(args.steps))
    med = {m: statistics.median(r) for m, r in rates.items()}
    result = {
        "task": f"{args.domain}-{args.task}",
        "batch_size": 256,
        "updates_per_env_step": 1,
        "num_samples_pmpo_mpo": 20,
        "score_precision_default": ControlConfig.score_precision,
        "agents_per_program": args.seeds,
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "env_steps_per_s_per_agent": med,
        "all_rounds": rates,
        "env_steps_per_s_total": {m: v * args.seeds for m, v in med.items()},
        "ratio_to_sac": {m: v / med["sac"] for m, v in med.items()} if "sac" in med else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "torch": torch.__version__,
    }
    for m, v in med.items():
        ratio = f"  ({v / med['sac']:.2f}x SAC)" if "sac" in med else ""
        print(f"{m:8s} {v:7.1f} env steps/s per agent{ratio}")
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
