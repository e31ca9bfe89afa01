"""What a TRL user meets on day one: dataset splits, in-memory data, evaluation under TRL's
metric names, trackers read back, model cards, the Hub refusal offline, plain progress lines off a
terminal, the umask, one-sided PMPO defaults, user code from the current directory, `plot`."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest

from anyfeedback.cli import main
from wandb_history import read_wandb_history

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _args(tiny_model, data, out, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--learning-rate",
        "1e-3",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def prefs_dict(feedback_files, tmp_path_factory) -> Path:
    """A saved DatasetDict in UltraFeedback's layout: train_prefs (48 pairs), test_prefs (16)."""
    import datasets

    rows = _rows(feedback_files["paired"])
    path = tmp_path_factory.mktemp("prefs") / "ultrafeedback-like"
    dd = datasets.DatasetDict(
        train_prefs=datasets.Dataset.from_list(rows[:48]),
        test_prefs=datasets.Dataset.from_list(rows[48:]),
    )
    dd.save_to_disk(str(path))
    return path


def test_dpo_on_train_prefs_with_eval_trackers_card_and_umask(
    tiny_model, prefs_dict, tmp_path, monkeypatch, capsys
):
    """DPO on `train_prefs`, evaluated on `test_prefs` every step under TRL's names; TensorBoard,
    W&B (offline) and MLflow (local file store) hold the logged values; LoRA adapter with a model
    card; files 0644 under umask 022; plain progress lines, no bar characters."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("ANYFEEDBACK_PROGRESS", raising=False)
    old_umask = os.umask(0o022)
    out = tmp_path / "run"
    try:
        args = _args(tiny_model, prefs_dict, out, "--method", "dpo", "--split", "train_prefs")
        args += ["--eval-split", "test_prefs", "--eval-steps", "1", "--lora-r", "4"]
        args += ["--report-to", "tensorboard,wandb,mlflow", "--progress", "--logging-steps", "1"]
        assert main(args) == 0
    finally:
        os.umask(old_umask)
    stdout = capsys.readouterr().out
    assert "train dpo 1/2" in stdout and "train dpo 2/2" in stdout
    assert not any(ch in stdout for ch in "━\x1b\r")  # no bar, no cursor movement

    rows = _rows(out / "metrics.jsonl")
    names = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins"]
    names += ["rewards/accuracies", "logps/chosen", "logps/rejected", "kl"]
    for row in rows:
        assert all(f"eval/{n}" in row for n in names)
        assert row["eval/rewards/margins"] == pytest.approx(
            row["eval/rewards/chosen"] - row["eval/rewards/rejected"], abs=1e-5
        )
    last = rows[-1]
    assert json.loads((out / "run_info.json").read_text())["eval_records"] == 16

    tb_dir = next((out / "tensorboard").rglob("events.out.tfevents.*")).parent
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    tb = acc.Scalars("eval/rewards/accuracies")
    assert [e.step for e in tb] == [1, 2]
    assert tb[-1].value == pytest.approx(last["eval/rewards/accuracies"], abs=1e-6)

    history = [h for h in read_wandb_history(tmp_path) if "eval/loss" in h]
    assert [h["_step"] for h in history] == [1, 2]
    assert history[-1]["eval/loss"] == pytest.approx(last["eval/loss"], rel=1e-6)

    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (experiment,) = client.search_experiments(filter_string="name = 'anyfeedback'")
    (run,) = client.search_runs([experiment.experiment_id])
    logged = client.get_metric_history(run.info.run_id, "eval/rewards/margins")
    assert [m.step for m in logged] == [1, 2]
    assert logged[-1].value == pytest.approx(last["eval/rewards/margins"], rel=1e-6)

    card = (out / "model" / "README.md").read_text()
    front = card.split("---")[1]
    assert f'base_model: "{tiny_model}"' in front and "library_name: peft" in front
    assert "- anyfeedback\n- dpo\n- lora" in front
    assert "More Information Needed" not in card  # PEFT's blank template is gone
    for text in ("**dpo**", "- beta: 0.1", f"- source: {prefs_dict}", "- split: train_prefs"):
        assert text in card
    assert "- records: 48" in card and "- eval records: 16" in card
    assert "- optimizer steps: 2" in card and "| eval/rewards/accuracies |" in card
    assert "anyfeedback train --model" in card and "--split train_prefs" in card

    files = ["config.json", "metrics.jsonl", "report.md", "metrics.png"]
    files += ["model/adapter_model.safetensors", "model/README.md"]
    for name in files:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_eval_at_the_reference_is_log2_and_zero_rewards(train_cfg, prefs_dict):
    """π_θ = π_ref before any step: every implicit reward β·(ℓ_θ − ℓ_ref) is 0, so the DPO loss
    is −log σ(0) = log 2, margins 0, and no pair is ranked correctly (accuracy counts r_w > r_l,
    strictly, as TRL does). IPO at π_ref: (0 − 1/(2τ))² = 25 for τ = 0.1."""
    import torch

    from anyfeedback.llm.data import load_train_eval_data
    from anyfeedback.llm.evaluate import evaluate
    from anyfeedback.llm.trainer import Trainer

    for method, loss in (("dpo", math.log(2)), ("ipo", 25.0)):
        cfg = train_cfg(method, data="paired", eval_fraction=0.25, per_device_eval_batch_size=5)
        cfg.data = str(prefs_dict)
        cfg.split = "train_prefs"
        trainer = Trainer(cfg, total_steps=1)
        trainer.policy.train()
        _, _, evals = load_train_eval_data(trainer.tokenizer, cfg)
        assert len(evals.examples) == 12  # 25% of 48, held out before training
        seen = []  # (training, grad enabled) at every policy forward during evaluation
        hook = trainer.policy.register_forward_hook(
            lambda mod, args, out, seen=seen: seen.append((mod.training, torch.is_grad_enabled()))
        )
        m = evaluate(trainer, evals, cfg)
        hook.remove()
        assert len(seen) == 3 and set(seen) == {(False, False)}  # 12 records in batches of 5
        assert m["eval/loss"] == pytest.approx(loss, rel=1e-5)
        for key in ("chosen", "rejected", "margins", "accuracies"):
            assert m[f"eval/rewards/{key}"] == pytest.approx(0.0, abs=1e-5)
        assert trainer.policy.training  # evaluation put the policy back in train mode


def test_pmpo_and_kto_eval_names_and_best_model(train_cfg):
    from anyfeedback.llm import train

    cfg = train_cfg(
        "pmpo",
        max_steps=2,
        eval_fraction=0.25,
        eval_steps=1,
        metric_for_best_model="eval_loss",
        load_best_model_at_end=True,
    )
    result = train(cfg)
    rows = _rows(result.out / "metrics.jsonl")
    for key in ("eval/loss", "eval/logps/accepted", "eval/logps/rejected", "eval/kl"):
        assert all(key in r for r in rows), key
    best = json.loads((result.out / "best_model" / "best.json").read_text())
    assert best["metric"] == "eval/loss"
    assert best["value"] == pytest.approx(min(r["eval/loss"] for r in rows))
    assert (
        "- optimizer steps: {}".format(best["step"]) in (result.model_dir / "README.md").read_text()
    )

    kto = train(train_cfg("kto", max_steps=1, eval_fraction=0.25))
    last = _rows(kto.out / "metrics.jsonl")[-1]
    for key in (
        "eval/loss",
        "eval/rewards/chosen",
        "eval/rewards/rejected",
        "eval/z_ref",
        "eval/kl",
    ):
        assert key in last, key


def test_python_api_takes_datasets_and_lists(train_cfg, feedback_files, prefs_dict):
    import datasets

    from anyfeedback.llm import train

    rows = _rows(feedback_files["unpaired"])
    cfg = train_cfg("pmpo", max_steps=1)
    cfg.data = rows
    result = train(cfg)
    saved = json.loads((result.out / "config.json").read_text())
    assert saved["data"] == "<list: 64 records>"
    assert json.loads((result.out / "run_info.json").read_text())["records"] == 64

    cfg = train_cfg("dpo", data="paired", max_steps=1)
    cfg.data = datasets.load_from_disk(str(prefs_dict))
    cfg.split = "test_prefs"
    result = train(cfg)
    assert json.loads((result.out / "run_info.json").read_text())["records"] == 16


def test_bad_split_names_the_splits(tiny_model, prefs_dict, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(_args(tiny_model, prefs_dict, out, "--method", "dpo", "--split", "train")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "no split 'train' (has: train_prefs, test_prefs)" in err[0]
    assert not out.exists()


def test_a_single_file_has_no_other_split(tiny_model, feedback_files, tmp_path, capsys):
    args = _args(tiny_model, feedback_files["paired"], tmp_path / "r", "--method", "dpo")
    assert main(args + ["--eval-split", "test"]) == 2
    err = capsys.readouterr().err
    assert "--eval-split test: a single file has no splits" in err


def test_split_named_files_in_a_directory(feedback_files, tmp_path):
    from anyfeedback.feedback import load_feedback

    rows = _rows(feedback_files["paired"])
    (tmp_path / "data").mkdir()
    for name, part in (("train-00000-of-00001", rows[:10]), ("test-00000-of-00001", rows[10:13])):
        (tmp_path / "data" / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in part)
        )
    assert len(load_feedback(tmp_path)) == 10
    assert len(load_feedback(tmp_path, split="test")) == 3
    with pytest.raises(Exception, match=r"no split 'validation' \(has: test, train\)"):
        load_feedback(tmp_path, split="validation")


def test_missing_tracker_package_and_offline_hub_refuse_before_training(
    tiny_model, feedback_files, tmp_path, monkeypatch, capsys
):
    from anyfeedback import trackers

    monkeypatch.setitem(trackers.TRACKER_MODULES, "wandb", "no_such_module_for_wandb")
    out = tmp_path / "r"
    assert main(_args(tiny_model, feedback_files["unpaired"], out, "--report-to", "wandb")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'anyfeedback[wandb]'" in err[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = ["--push-to-hub", "--hub-model-id", "me/tiny-pmpo"]
    assert main(_args(tiny_model, feedback_files["unpaired"], out, *hub)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HF_HUB_OFFLINE=1" in err[0] and "--push-to-hub" in err[0]
    assert not out.exists()  # nothing trained, nothing written


def test_one_sided_data_picks_alpha_and_refuses_a_useless_one(
    tiny_model, feedback_files, tmp_path, capsys
):
    for data, alpha, beta in (("accepted_only", 1.0, 0.0), ("rejected_only", 0.0, 2.0)):
        out = tmp_path / data
        assert main(_args(tiny_model, feedback_files[data], out, "--max-steps", "1")) == 0
        saved = json.loads((out / "config.json").read_text())
        assert (saved["alpha"], saved["beta"]) == (alpha, beta)
        assert f"only {data.split('_')[0]} records: using α={alpha:g}, β={beta:g}" in (
            capsys.readouterr().out
        )
    out = tmp_path / "useless"
    assert main(_args(tiny_model, feedback_files["accepted_only"], out, "--alpha", "0")) == 2
    err = capsys.readouterr().err
    assert "--alpha 0 gives the accepted records weight 0" in err and not out.exists()


def test_beta_warning_once_on_one_line(tiny_model, feedback_files, tmp_path, capsys):
    args = _args(tiny_model, feedback_files["rejected_only"], tmp_path / "r", "--max-steps", "1")
    assert main(args + ["--alpha", "0", "--beta", "0.5"]) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if "beta=0.5 < 1 - alpha=1" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: PMPO")
    assert not any(".py:" in line for line in err)  # no raw Python warning with a source path


def test_user_code_from_the_current_directory(tmp_path, monkeypatch):
    import sys

    import numpy as np

    from anyfeedback.bandit.functions import evaluate, resolve_function
    from anyfeedback.rewards import checked_scores, load_reward

    (tmp_path / "my_rewards_eco.py").write_text(
        "def score(prompts, completions):\n    return [float(len(c)) for c in completions]\n"
    )
    (tmp_path / "my_objective_eco.py").write_text(
        "import torch\n\n"
        "def torch_sphere(y: torch.Tensor) -> torch.Tensor:\n    return (y ** 2).sum(dim=1)\n\n"
        "def untyped_torch(y):\n    return torch.sin(y).sum(dim=1)\n\n"
        "def numpy_sphere(y):\n    return (y ** 2).sum(axis=1)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for spec in ("my_rewards_eco:score", "my_rewards_eco.py:score"):
        assert checked_scores(load_reward(spec), ["p", "q"], ["ab", "abcd"]) == [2.0, 4.0]
    y = np.array([[1.0, 2.0], [0.0, -1.0]])
    for spec in ("my_objective_eco:torch_sphere", "my_objective_eco.py:numpy_sphere"):
        assert evaluate(resolve_function(spec, 2), y).tolist() == [5.0, 1.0]
    values = evaluate(resolve_function("my_objective_eco.py:untyped_torch", 2), y)
    assert values == pytest.approx(np.sin(y).sum(axis=1))


def test_plot_an_online_run_and_refuse_a_bandit_run(tiny_model, feedback_files, tmp_path, capsys):
    from anyfeedback.llm.online.config import OnlineConfig
    from anyfeedback.llm.online.loop import run_online

    out = tmp_path / "online"
    cfg = OnlineConfig(
        model=str(tiny_model),
        prompts=str(feedback_files["paired"]),
        out=str(out),
        reward="custom_rewards:toy_sentiment",
        k=4,
        prompts_per_step=2,
        steps=1,
        max_new_tokens=6,
        eval_every=1,
        eval_prompts=2,
        save_steps=0,
        progress=False,
    )
    run_online(cfg)
    card = (out / "model" / "README.md").read_text()
    assert "- anyfeedback\n- pmpo" in card and "- reward: custom_rewards:toy_sentiment" in card
    (out / "metrics.png").unlink(missing_ok=True)
    assert main(["plot", str(out)]) == 0
    assert f"wrote {out / 'report.md'} and {out / 'metrics.png'}" in capsys.readouterr().out
    assert (out / "metrics.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "β=0.5 (default)" in report and f"prompts: `{feedback_files['paired']}`" in report
    assert "None" not in report and "| train/reward_mean |" in report
    bandit = tmp_path / "bandit"
    bandit.mkdir()
    (bandit / "results.json").write_text("{}")
    assert main(["plot", str(bandit)]) == 2
    assert "a bandit run" in capsys.readouterr().err


def test_hub_dataset_config_and_a_missing_hub_split(monkeypatch):
    """No network: `datasets.load_dataset` is stubbed; --dataset-config reaches it as `name`, and
    an unknown split is one line naming the splits the Hub dataset has."""
    import datasets

    from anyfeedback.errors import InputError
    from anyfeedback.feedback import load_feedback

    calls = []

    def fake_load(source, name=None, *, split):
        calls.append((source, name, split))
        if split != "train_prefs":
            raise ValueError(
                f'Unknown split "{split}". Should be one of [train_prefs, test_prefs].'
            )
        return datasets.Dataset.from_list([{"prompt": "p", "chosen": "a", "rejected": "b"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(
        datasets, "get_dataset_split_names", lambda source, name=None: ["train_prefs", "test_prefs"]
    )
    ds = load_feedback("someone/prefs", split="train_prefs", name="default")
    assert len(ds) == 1 and calls == [("someone/prefs", "default", "train_prefs")]
    with pytest.raises(InputError) as err:
        load_feedback("someone/prefs", split="train")
    assert str(err.value) == "someone/prefs: no split 'train' (has: train_prefs, test_prefs)"
