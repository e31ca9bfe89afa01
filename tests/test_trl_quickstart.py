"""TRL's DPO quickstart configuration, unchanged but for local paths, runs with
`anyfeedback train --method dpo --config quickstart.yaml` on a DatasetDict with UltraFeedback's
`train_prefs`/`test_prefs` splits, and logs held-out `rewards/accuracies`.

The YAML is TRL's documented `trl dpo` configuration (model_name_or_path, dataset_name, the two
split names, learning_rate with the number written as YAML reads it: a string, num_train_epochs or
max_steps, per_device_train_batch_size, gradient_accumulation_steps, logging_steps, eval_strategy,
eval_steps, output_dir, report_to)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anyfeedback.cli import main
from conftest_llm import *  # noqa: F403

pytestmark = pytest.mark.usefixtures("one_thread")

QUICKSTART = """\
model_name_or_path: {model}
dataset_name: {data}
dataset_train_split: train_prefs
dataset_test_split: test_prefs
learning_rate: 5.0e-7
max_steps: 2
per_device_train_batch_size: 8
gradient_accumulation_steps: 1
logging_steps: 1
eval_strategy: steps
eval_steps: 1
output_dir: {out}
report_to: none
"""


def test_trl_dpo_quickstart_yaml_runs_unchanged_and_logs_held_out_accuracies(
    tiny_model, feedback_files, tmp_path, capsys
):
    import datasets

    rows = [json.loads(line) for line in feedback_files["paired"].read_text().splitlines()]
    data = tmp_path / "ultrafeedback-like"
    datasets.DatasetDict(
        train_prefs=datasets.Dataset.from_list(rows[:48]),
        test_prefs=datasets.Dataset.from_list(rows[48:]),
    ).save_to_disk(str(data))
    out = tmp_path / "Qwen2-0.5B-DPO"
    config = tmp_path / "dpo.yaml"
    config.write_text(QUICKSTART.format(model=tiny_model, data=data, out=out), encoding="utf-8")

    assert main(["train", "--method", "dpo", "--config", str(config), "--no-progress"]) == 0

    err = capsys.readouterr().err
    assert "no effect here: eval_strategy" in err  # said once, in one line
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert saved["learning_rate"] == pytest.approx(5e-7)  # "5.0e-7" read as a number
    assert (saved["split"], saved["eval_split"], saved["batch_size"]) == (
        "train_prefs",
        "test_prefs",
        8,
    )
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "eval/rewards/accuracies" in m]
    assert len(evals) == 2  # every step (eval_steps 1)
    for m in evals:
        assert 0.0 <= m["eval/rewards/accuracies"] <= 1.0
    assert json.loads((out / "run_info.json").read_text())["eval_records"] == len(rows) - 48
    assert (Path(out) / "model" / "README.md").is_file()
