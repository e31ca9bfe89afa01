"""The online loop under `accelerate launch` (2 CPU processes, gloo DDP) against one process:
the sharding rules by hand, then a 3-step run — 2 steps on 2 processes, resumed to 3 — that must
match 3 steps on one process within float tolerance (same samples, rewards, losses, weights),
with metrics, checkpoints and the model written once."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import anyfeedback
from anyfeedback.llm.online.shard import Dist, chunk_plan, chunk_seed, my_share, split_micro_batches
from conftest_llm import *  # noqa: F403
from test_llm_ddp import launcher_2_processes


def test_chunk_plan_and_shares():
    """16 prompts × k=4 in calls of 16 rows: 4 chunks of 4 prompts whatever the world size; 2
    processes take chunks 0–1 and 2–3. 4 prompts in calls of 64 rows is one chunk: with 2
    processes it shrinks to 2 chunks of 2 so both sample. Seeds: chunk 0 keeps the base."""
    assert (
        chunk_plan(16, 4, 16, 1)
        == chunk_plan(16, 4, 16, 2)
        == [range(a, a + 4) for a in (0, 4, 8, 12)]
    )
    assert chunk_plan(4, 4, 64, 1) == [range(0, 4)]
    assert chunk_plan(4, 4, 64, 2) == [range(0, 2), range(2, 4)]
    assert chunk_plan(3, 4, 64, 4) == [range(0, 1), range(1, 2), range(2, 3)]  # one process idle
    assert [my_share(4, Dist(r, 2)) for r in (0, 1)] == [range(0, 2), range(2, 4)]
    assert my_share(3, Dist(0, 4)) == range(0, 0) and my_share(3, Dist(3, 4)) == range(2, 3)
    assert chunk_seed(7, 0) == 7 and chunk_seed(7, 1) == 7 + 2**32


def test_split_micro_batches():
    """14 records in micro-batches of ≤ 8: 2 slices of 7 (one process, or one each on two); of
    ≤ 4 on 2 processes: ceil(14/4) = 4 slices; size 0 is one per process; KTO (≥ 2 records per
    micro-batch) with 3 records on 2 processes cannot be split: []."""
    assert split_micro_batches(14, 8, 1) == [range(0, 7), range(7, 14)]
    assert split_micro_batches(14, 8, 2) == [range(0, 7), range(7, 14)]
    assert split_micro_batches(14, 4, 2) == [range(0, 3), range(3, 7), range(7, 10), range(10, 14)]
    assert split_micro_batches(14, 0, 1) == [range(0, 14)]
    assert split_micro_batches(5, 0, 2) == [range(0, 2), range(2, 5)]
    assert split_micro_batches(3, 0, 2, min_items=2) == []
    assert split_micro_batches(1, 8, 2) == []


def _args(tiny_model, prompts, out, steps: int, *extra: str) -> list[str]:
    return [
        "-m",
        "anyfeedback.cli",
        "online",
        "--model",
        str(tiny_model),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--reward",
        "custom_rewards:toy_sentiment_tiebroken",
        "--method",
        "pmpo",
        "--alpha",
        "0.5",
        "--beta",
        "0.5",
        "--k",
        "4",
        "--prompts-per-step",
        "4",
        "--generation-batch-size",
        "4",
        "--micro-batch-size",
        "8",
        "--steps",
        str(steps),
        "--max-new-tokens",
        "10",
        "--learning-rate",
        "1e-3",
        "--eval-every",
        "2",
        "--eval-prompts",
        "8",
        "--save-steps",
        "1",
        "--ref-update-every",
        "2",
        "--seed",
        "3",
        "--no-progress",
        *extra,
    ]


def _run(cmd: list[str], env: dict) -> str:
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600
    )  # a teardown hang fails here, not at CI's limit
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * (1 + abs(a))


def test_two_process_online_matches_one_process_and_resumes(
    tiny_model, feedback_files, tmp_path, one_thread
):
    """One process, 3 steps (in this process, one thread) == two processes, 2 steps, then
    `--resume` to 3."""
    from anyfeedback.cli import main

    here = Path(__file__).parent
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    env.update(ANYFEEDBACK_PROGRESS="0", CUDA_VISIBLE_DEVICES="")  # CPU DDP (gloo)
    src = Path(anyfeedback.__file__).parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(here), env.get("PYTHONPATH", "")])
    prompts, one, two = feedback_files["paired"], tmp_path / "one", tmp_path / "two"
    assert main(_args(tiny_model, prompts, one, 3)[2:]) == 0
    first = _run(launcher_2_processes() + _args(tiny_model, prompts, two, 2), env)
    resumed = _run(launcher_2_processes() + _args(tiny_model, prompts, two, 3, "--resume"), env)
    assert first.count("done: 2 steps") == 1 and resumed.count("done: 3 steps") == 1  # rank 0
    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3]  # written once
    assert a[0]["processes"] == 1 and b[0]["processes"] == 2
    for ra, rb in zip(a[1:], b[1:], strict=True):
        assert ra["train/n_accepted"] + ra["train/n_rejected"] == 16  # no ties: 2 + 2 per prompt
        assert ra["train/samples"] == rb["train/samples"] == 16  # the whole step, both processes
        assert ra["gen/new_tokens"] == rb["gen/new_tokens"]  # the same completions...
        assert ra["train/reward_mean"] == rb["train/reward_mean"]  # ...and rewards
        for key in (
            "train/loss",
            "train/kl",
            "train/logp_accepted",
            "train/logp_rejected",
            "train/grad_norm",
            "train/kl_init",
            "train/reward_accepted",
        ):
            assert _close(ra[key], rb[key]), (key, ra[key], rb[key])
    for ra, rb in zip(a, b, strict=True):
        if "eval/reward_mean" in ra:  # sharded held-out evaluation: same samples, same reward
            assert _close(ra["eval/reward_mean"], rb["eval/reward_mean"], 1e-6)
    assert all(v == v for r in b for v in r.values() if isinstance(v, float))  # finite
    ckpts = sorted(p.name for p in (two / "checkpoints").iterdir())
    assert ckpts[-1] == "step-000003"
    wa = load_file(str(one / "model" / "model.safetensors"))
    wb = load_file(str(two / "model" / "model.safetensors"))
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-4)


class _RankZeroOfTwo(Dist):
    """Rank 0 of 2 whose gather returns rank 1's payload `other` (no processes needed)."""

    other: dict = {}

    def gather(self, obj):
        return [obj, self.other]


def test_an_error_on_another_process_stops_this_one():
    """Rank 1 failed while scoring: rank 0, whose own chunks were fine, raises rank 1's reward
    error (one line, the same on every process) or, for any other error, names the process."""
    from anyfeedback.llm.generate import Generations
    from anyfeedback.llm.online.shard import sample_and_score
    from anyfeedback.rewards import RewardError

    def sample(ids, *, seed):
        return Generations([[1]] * len(ids), ["a"] * len(ids), 1, len(ids), 0.1, ids)

    def run(other):
        _RankZeroOfTwo.other = other
        return sample_and_score(
            sample,
            [[5], [6]],
            ["p", "q"],
            lambda p, c: [0.0] * len(c),
            k=1,
            seed=0,
            rows=1,
            dist=_RankZeroOfTwo(0, 2),
        )

    with pytest.raises(RewardError, match="prompt index 1"):
        run({"error": RewardError("reward returned NaN (prompt index 1: 'q')")})
    with pytest.raises(RuntimeError, match="process 1 failed .* CUDA out of memory"):
        run({"error": "OutOfMemoryError: CUDA out of memory"})
    ok = {"comp": [[2]], "texts": ["b"], "scores": [1.0], "labels": [], "tokens": 1, "seconds": 0.3}
    got = run(ok)
    assert got.completion_ids == [[1], [2]] and got.scores == [0.0, 1.0]
    assert got.new_tokens == 2 and got.seconds == 0.3  # tokens summed, the slowest process's time
