"""`anyfeedback reward`: a Bradley–Terry reward model on the tiny Llama learns the toy task
(good endings ≻ bad) well above chance on held-out pairs, saves in HF format and loads back as
the online loop's reward with the same scores; bad pairs are one-line errors, exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from anyfeedback.cli import main
from conftest_llm import *  # noqa: F403
from conftest_llm import write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reward_cli_learns_saves_and_serves_as_online_reward(tmp_path, tiny_model):
    from anyfeedback.llm.tiny import toy_feedback
    from anyfeedback.rewards import load_reward

    pairs = write_jsonl(tmp_path / "pairs.jsonl", toy_feedback(96, seed=3)["paired"])
    out = tmp_path / "rm"
    code = main(
        [
            "reward",
            "--model",
            str(tiny_model),
            "--data",
            str(pairs),
            "--out",
            str(out),
            "--max-steps",
            "25",
            "--batch-size",
            "8",
            "--learning-rate",
            "3e-3",
            "--eval-fraction",
            "0.25",
            "--eval-every",
            "25",
            "--save-steps",
            "20",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_pairs"] == 24
    assert summary["eval_accuracy"] >= 0.9  # chance is 0.5
    for name in ("config.json", "metrics.jsonl", "metrics.png", "report.md"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "step-000020" / "policy.safetensors").is_file()
    reward = load_reward(str(out / "model"))  # HF sequence-classification model
    good, bad = reward(
        ["the cat saw a red box,"] * 2, [" it was good and kind.", " it was bad and rude."]
    )
    assert good > bad
    from anyfeedback.llm.reward.model import load_reward_model, score

    model, tokenizer = load_reward_model(str(out / "model"))
    with torch.no_grad():  # the training-time scorer agrees with the served reward
        same = score(
            model.eval(), tokenizer, ["the cat saw a red box,"], [" it was good and kind."]
        )
    assert float(same[0]) == pytest.approx(good, abs=1e-5)


@pytest.mark.parametrize(
    ("rows", "expect"),
    [
        ([{"prompt": "p", "chosen": "a", "rejected": "a"}], "chosen and rejected are identical"),
        ([{"prompt": "p", "completion": "a"}], "needs preference pairs"),
    ],
)
def test_reward_bad_pairs_exit_2(tmp_path, tiny_model, capsys, rows, expect):
    data = write_jsonl(tmp_path / "bad.jsonl", rows * 4)
    code = main(
        [
            "reward",
            "--model",
            str(tiny_model),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and expect in err[0], err
