"""AIHF for control: the ML-IRL reward gradient's sign, segment returns, feedback data, BC
log-likelihood, Algorithm 1's ordering, a smoke run of every method, and one-line errors (exit 2).
Needs the `control` extra (dm_control) for the runs."""

import json
import math

import numpy as np
import pytest
import torch

from anyfeedback.control.aihf.bc import demo_logps
from anyfeedback.control.aihf.data import (
    Pool,
    gather_segments,
    held_out_pairs,
    member_feedback,
    save_pool,
)
from anyfeedback.control.aihf.reward import RewardNet
from anyfeedback.losses import aihf_reward_loss


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_ml_irl_gradient_sign_linear_reward_by_hand():
    """r(s) = θ·s, θ = 0. Demo states s^E = (1,0), (3,0); policy states s^A = (0,1), (0,3).
    L = −(mean θ·s^E − mean θ·s^A), so ∇_θ L = −(mean s^E − mean s^A) = −((2,0) − (0,2)) = (−2, 2):
    a descent step raises r on the demonstrations' direction and lowers it on the policy's."""
    theta = torch.zeros(2, requires_grad=True)
    s_e, s_a = t([1, 0], [3, 0]), t([0, 1], [0, 3])
    loss, diag = aihf_reward_loss(s_e @ theta, s_a @ theta, None, None, pref_weight=0.0)
    loss.backward()
    assert theta.grad.tolist() == [-2.0, 2.0]
    assert diag.demo_term.item() == 0.0 and math.isnan(diag.pref_term.item())


def test_ml_irl_step_raises_demo_reward_lowers_policy_reward(one_thread):
    """The same on the (64, 64) reward MLP: one Adam step on the demo term moves r(demo) up and
    r(policy sample) down, for each of 2 ensemble members."""
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    net = RewardNet(3, 1, 64, gens, use_actions=False, clip=10.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    s_e = torch.randn(2, 16, 3, generator=torch.Generator().manual_seed(2)) + 2.0
    s_a = torch.randn(2, 16, 3, generator=torch.Generator().manual_seed(3)) - 2.0
    a = torch.zeros(2, 16, 1)
    before_e, before_a = net(s_e, a).detach().mean(-1), net(s_a, a).detach().mean(-1)
    loss = sum(aihf_reward_loss(net(s_e, a)[i], net(s_a, a)[i], None, None)[0] for i in range(2))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert (net(s_e, a).mean(-1) > before_e).all() and (net(s_a, a).mean(-1) < before_a).all()


def test_reward_net_clamp_actions_and_segment_returns():
    """segment_returns = Σ_t r(s_t, a_t) of the per-step forward; the output is clamped to ±clip;
    with use_actions the action changes r."""
    gens = [torch.Generator().manual_seed(0)]
    net = RewardNet(2, 1, 8, gens, use_actions=True, clip=0.05)
    obs, act = torch.randn(1, 3, 4, 2) * 50, torch.randn(1, 3, 4, 1)
    per_step = net(obs.view(1, 12, 2), act.view(1, 12, 1)).view(1, 3, 4)
    assert per_step.abs().max() <= 0.05
    assert torch.allclose(net.segment_returns(obs, act), per_step.sum(-1))
    small = RewardNet(2, 1, 8, [torch.Generator().manual_seed(0)], use_actions=True, clip=0.0)
    o = torch.zeros(1, 1, 2)
    assert small(o, torch.ones(1, 1, 1)) != small(o, -torch.ones(1, 1, 1))


def test_method_weights_are_the_special_cases():
    """AIHF = (w_D, w_P); RLHF = (0, w_P); ML-IRL = (w_D, 0) (docs/algorithms.md#aihf)."""
    from anyfeedback.control.aihf.config import AIHFControlConfig

    cfg = AIHFControlConfig(data="pool.npz", demo_weight=2.0, pref_weight=0.5)
    assert [cfg.weights(m) for m in ("aihf", "rlhf", "ml-irl")] == [(2, 0.5), (0, 0.5), (2, 0)]


def _toy_pool(m_per_quality=8, t_len=10):
    """Trajectory j of quality q: reward = its index (so segment returns order trajectories)."""
    q = np.array(["expert"] * m_per_quality + ["poor"] * m_per_quality)
    m = len(q)
    reward = np.repeat(np.arange(m, dtype=np.float32)[:, None], t_len, 1)
    obs = np.random.default_rng(0).normal(size=(m, t_len, 3)).astype(np.float32)
    act = np.zeros((m, t_len, 1), np.float32)
    return Pool(obs, act, reward, q, "cartpole", "swingup", 4)


def test_pool_split_holds_out_every_fourth_of_each_quality():
    pool = _toy_pool()
    assert pool.split(held_out=True).tolist() == [3, 7, 11, 15]
    assert len(pool.split(held_out=False)) == 12


def test_pairs_labels_noise_and_gather():
    """noise 0: every chosen segment has the larger true return; noise 0.5: about half flipped;
    demonstrations come from the requested quality; per-seed draws differ."""
    pool = _toy_pool()
    fb = member_feedback(
        pool, [0, 1], demo_quality="expert", num_demos=2, num_pairs=400, noise=0.0, length=4
    )
    assert fb.demo_obs.shape == (2, 20, 3) and fb.pairs.shape == (2, 400, 4)
    assert not torch.equal(fb.pairs[0], fb.pairs[1])
    ow, aw, ol, al = gather_segments(
        torch.from_numpy(pool.obs), torch.from_numpy(pool.act), fb.pairs, 4
    )
    assert ow.shape == (2, 400, 4, 3) and al.shape == (2, 400, 4, 1)
    r_w, r_l = pool.reward[fb.pairs[..., 0]], pool.reward[fb.pairs[..., 2]]
    assert (r_w > r_l).all()
    expert_obs = pool.obs[pool.quality == "expert"].reshape(-1, 3)
    assert all(any(np.allclose(o, e) for e in expert_obs) for o in fb.demo_obs[0, :5].numpy())
    noisy = member_feedback(
        pool, [0], demo_quality="poor", num_demos=1, num_pairs=400, noise=0.5, length=4
    ).pairs[0]
    flipped = (pool.reward[noisy[:, 0]] < pool.reward[noisy[:, 2]]).mean()
    assert 0.4 < flipped < 0.6
    held = held_out_pairs(pool, 50, 4, seed=0)
    assert set(held[:, [0, 2]].flatten().tolist()) <= {3, 7, 11, 15}


def test_bc_logps_by_hand():
    """μ = 0, σ = 1, a = tanh(0.5): log π(a) = log N(0.5; 0, 1) − log(1 − a²)
    = −0.125 − 0.9189385 − log(1 − 0.4621172²) = −1.0439385 + 0.2402278 = −0.8037107."""

    class Fixed(torch.nn.Module):
        def forward(self, obs):
            return torch.zeros(1, 1, 1), torch.ones(1, 1, 1)

    a = torch.tanh(torch.tensor(0.5)).view(1, 1, 1)
    expected = -0.125 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(0.5) ** 2 + 1e-6)
    assert demo_logps(Fixed(), torch.zeros(1, 1, 2), a).item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(-0.8037107, abs=1e-6)


# --- runs (dm_control) ------------------------------------------------------------------------

TINY = dict(
    num_seeds=2,
    num_demos=2,
    num_pairs=10,
    segment_length=10,
    steps=600,
    learning_starts=200,
    eval_every=400,
    eval_episodes=1,
    reward_updates=3,
    reward_warmup_steps=5,
    bc_steps=20,
    hidden=32,
    batch_size=32,
    held_out_pairs=20,
    progress=False,
)


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    pytest.importorskip("dm_control")
    from anyfeedback.control.aihf.data import pool_from_rollouts
    from anyfeedback.control.rollouts import rollout

    kw = dict(domain="cartpole", task="swingup", action_repeat=4, episode_frames=200)
    parts = {
        q: rollout(None, episodes=8, seed=i * 100, **kw) for i, q in enumerate(["expert", "poor"])
    }
    path = tmp_path_factory.mktemp("pool") / "pool.npz"
    save_pool(path, pool_from_rollouts(parts, domain="cartpole", task="swingup", action_repeat=4))
    return path


def test_algorithm1_order_relabel_and_latest_policy_samples(pool_file, one_thread):
    """Each phase: the policy (SAC) steps come first, then `reward_updates` reward steps at the
    same learner step; the policy states of the demo term come from the last phase's episode;
    SAC's replay rewards are r_θ(s, a), not the env's."""
    from anyfeedback.control.aihf.config import AIHFControlConfig
    from anyfeedback.control.aihf.data import load_pool
    from anyfeedback.control.aihf.loop import train_reward_learners
    from anyfeedback.runs import MetricsLog

    cfg = AIHFControlConfig(data=str(pool_file), **TINY)
    trace = []
    with MetricsLog(pool_file.parent / "m.jsonl") as log:
        run = train_reward_learners(cfg, load_pool(pool_file), ["aihf", "rlhf"], log, trace)
    kinds = [e[0] for e in trace]
    assert kinds == (["policy_phase"] + ["reward_step"] * 3) * 3  # 600 frames / 200 per phase
    for i in range(0, len(trace), 4):
        assert {e[1] for e in trace[i : i + 4]} == {trace[i][1]}  # no SAC step in between
    s_obs, _ = run.policy_samples()
    last = run.replay.obs[:, run.replay.ptr - run.ep_len : run.replay.ptr]  # [E, 50, do]
    for e in range(s_obs.shape[0]):
        assert all((np.abs(last[e] - o.numpy()).sum(-1) < 1e-6).any() for o in s_obs[e])
    batch = run.replay.sample(8)
    relabelled, _ = run.relabel(batch)
    assert torch.allclose(relabelled[2], run.reward(batch[0], batch[1]).detach())
    assert not torch.allclose(relabelled[2], batch[2])


def test_smoke_run_every_method_cli(pool_file, tmp_path):
    """`anyfeedback aihf-control` with all four methods, the logistic demo term and r(s, a):
    exit 0, metrics/summary/plot/report written, a finite true return per method and seed."""
    from anyfeedback.cli import main

    args = [
        "aihf-control",
        "--data",
        str(pool_file),
        "--out",
        str(tmp_path),
        "--reward-actions",
        "--demo-mode",
        "irl_logistic",
        "--pref-noise",
        "0.3",
    ]
    for k, v in TINY.items():
        flag = "--" + k.replace("_", "-")
        args += (
            [flag if v is True else f"--no-{flag[2:]}"] if isinstance(v, bool) else [flag, str(v)]
        )
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["methods"]) == {"aihf", "rlhf", "ml-irl", "bc"}
    assert all(
        len(m["returns"]) == 2 and math.isfinite(m["mean"]) for m in summary["methods"].values()
    )
    assert 0 <= summary["methods"]["aihf"]["rm_accuracy_mean"] <= 1
    for f in ("config.json", "metrics.jsonl", "curves.png", "report.md"):
        assert (tmp_path / f).exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--data", "missing.npz"], "trajectory pool not found"),
        (["--methods", "aihf,ppo"], "unknown method(s) ppo"),
        (["--pref-noise", "0.7"], "field 'pref-noise'"),
        (["--num-demos", "99"], "99 demonstrations of quality 'expert'"),
        (["--segment-length", "500"], "field 'segment-length'"),
        (["--demo-mode", "nll"], "field 'demo-mode'"),
    ],
)
def test_bad_inputs_one_line_exit_2(pool_file, tmp_path, capsys, extra, needle):
    from anyfeedback.cli import main

    args = ["aihf-control", "--data", str(pool_file), "--out", str(tmp_path), "--no-progress"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def _bad_pool(tmp_path, case):
    """A pool file broken in one way (`case`); returns (path, expected message fragment)."""
    pool = _toy_pool()
    path = tmp_path / "pool.npz"
    if case == "nan_reward":
        pool.reward[2, 5] = np.nan
        save_pool(path, pool)
        return path, "field 'reward': not finite (nan) in trajectory 3, step 6"
    if case == "inf_obs":
        pool.obs[0, 1, 2] = np.inf
        save_pool(path, pool)
        return path, "field 'obs': not finite (inf) in trajectory 1, step 2"
    if case == "truncated":
        save_pool(path, pool)
        path.write_bytes(path.read_bytes()[:200])
        return path, "not an NPZ file"
    if case == "text":
        path.write_text("obs,act,reward\n1,2,3\n")
        return path, "not an NPZ file"
    if case == "object_array":
        np.savez(path, obs=np.array([{"a": 1}], dtype=object), act=pool.act, reward=pool.reward)
        return path, "field 'obs': object arrays are not allowed"
    if case == "missing":
        np.savez(path, obs=pool.obs, act=pool.act)
        return path, "missing reward, quality, domain, task, action_repeat"
    if case == "action_range":
        pool.act[0, 0, 0] = 2.0
        save_pool(path, pool)
        return path, "field 'act': actions must be in [-1, 1]"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["nan_reward", "inf_obs", "truncated", "text", "object_array", "missing", "action_range"],
)
def test_bad_pool_files_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    """Each broken pool: exit 2, one line naming the file (and the array), no traceback, no
    output directory. Nothing in the file is unpickled."""
    from anyfeedback.cli import main

    path, needle = _bad_pool(tmp_path, case)
    out = tmp_path / "out"
    assert main(["aihf-control", "--data", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and err.count("\n") == 1, err
    assert needle in err and "Traceback" not in err, err
    assert not out.exists()


RESUME = dict(TINY, methods="aihf,bc", num_seeds=1, checkpoint_every=200)


def _flags(cfg: dict) -> list[str]:
    """CLI flags for config fields: --name value, --flag / --no-flag for booleans."""
    args = []
    for k, v in cfg.items():
        flag = "--" + k.replace("_", "-")
        args += [flag if v else f"--no-{flag[2:]}"] if isinstance(v, bool) else [flag, str(v)]
    return args


def test_resume_is_exact(pool_file, tmp_path, one_thread):
    """`anyfeedback aihf-control` killed (-9) after the second phase (last checkpoint: env step
    400), then `--resume`d: the metrics rows, the agents' and the reward nets' weights equal an
    uninterrupted run's; a changed config is refused naming the fields."""
    import os
    import subprocess
    import sys

    from anyfeedback.cli import main
    from anyfeedback.control.aihf import loop
    from anyfeedback.control.aihf.config import AIHFControlConfig
    from anyfeedback.control.checkpoint import checkpoint_paths, load_latest
    from anyfeedback.errors import InputError

    kw = dict(data=str(pool_file), **RESUME)
    loop.run_aihf_control(AIHFControlConfig(out=str(tmp_path / "full"), **kw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYFEEDBACK_DEBUG")}
    env.update(OMP_NUM_THREADS="1", ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP="2")
    cmd = [sys.executable, "-m", "anyfeedback.cli", "aihf-control", *_flags(kw)]
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "part")], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert checkpoint_paths(tmp_path / "part")[0].name == "checkpoint-000000400.safetensors"
    assert not (tmp_path / "part" / "summary.json").exists()
    assert main(["aihf-control", *_flags(kw), "--out", str(tmp_path / "part"), "--resume"]) == 0

    def rows(d):
        lines = (tmp_path / d / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]

    assert rows("full") == rows("part")
    full, part = (load_latest(tmp_path / d)[0]["learners"] for d in ("full", "part"))
    for key in ("reward", "learner/policy", "learner/critic"):
        a, b = full, part
        for k in key.split("/"):
            a, b = a[k], b[k]
        assert all(torch.equal(a[n], b[n]) for n in a), key
    with pytest.raises(InputError, match=r"changed config \(reward_lr, steps\)"):
        loop.run_aihf_control(
            AIHFControlConfig(
                out=str(tmp_path / "part"), resume=True, **(kw | {"steps": 800, "reward_lr": 1e-3})
            )
        )


def test_divergence_exits_1_with_one_line(pool_file, tmp_path, capsys):
    """SAC at lr 1e6 explodes in its first learning phase: exit 1, one line naming it."""
    from anyfeedback.cli import main

    args = ["aihf-control", "--data", str(pool_file), "--out", str(tmp_path), "--methods", "rlhf"]
    args += ["--num-seeds", "1", "--num-demos", "2", "--num-pairs", "10", "--steps", "600"]
    args += ["--learning-starts", "200", "--lr", "1e6", "--hidden", "32", "--batch-size", "32"]
    args += ["--held-out-pairs", "20", "--segment-length", "10", "--no-progress"]
    args += ["--reward-warmup-steps", "5", "--reward-updates", "3", "--eval-episodes", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: diverged at env step 200") and err.count("\n") == 1, err


def test_bc_divergence_exits_1_before_any_checkpoint(pool_file, tmp_path, capsys):
    """BC at lr 1e6: the policy explodes; exit 1, one line, and no checkpoint is written."""
    from anyfeedback.cli import main
    from anyfeedback.control.checkpoint import checkpoint_paths

    args = ["aihf-control", "--data", str(pool_file), "--out", str(tmp_path), "--methods", "bc"]
    args += ["--num-seeds", "1", "--num-demos", "2", "--bc-steps", "20", "--lr", "1e6"]
    assert main(args + ["--hidden", "32", "--batch-size", "32", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: diverged at BC step 20") and err.count("\n") == 1, err
    assert not checkpoint_paths(tmp_path)
