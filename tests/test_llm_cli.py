"""`anyfeedback train` / `anyfeedback plot` through `anyfeedback.cli.main`: bad inputs exit 2
with one line before any training; config file + flag overrides; the final model loads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anyfeedback.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _base(tiny_model, data, out) -> list[str]:
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
    ]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("unknown_model", "no such model directory"),
        ("wrong_kind", "dpo needs paired"),
        ("empty", "empty"),
        ("missing_file", "no such file"),
        ("short_max_length", "max-length"),
        ("kto_demos", "kto needs desirable"),
        ("bad_method", "method"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_before_training(
    case,
    expect,
    tiny_model,
    feedback_files,
    tmp_path,
    capsys,
):
    out = tmp_path / "run"
    args = _base(tiny_model, feedback_files["unpaired"], out)
    extra = {
        "unknown_model": ["--model", str(tmp_path / "no-such-model")],
        "wrong_kind": ["--method", "dpo"],
        "empty": ["--data", str(feedback_files["empty"])],
        "missing_file": ["--data", str(tmp_path / "nope.jsonl")],
        "short_max_length": ["--max-length", "4"],
        "kto_demos": ["--method", "kto", "--data", str(feedback_files["demos"])],
        "bad_method": ["--method", "ppo"],
    }[case]
    assert main(args + extra) == 2
    assert expect in _error_line(capsys)
    assert not (out / "metrics.jsonl").exists()  # no training started


def test_config_file_then_flags_override(tiny_model, feedback_files, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("method: dpo\nmax_steps: 5\nlearning-rate: 0.002\nbeta: 0.3\n")
    out = tmp_path / "run"
    args = _base(tiny_model, feedback_files["paired"], out) + ["--config", str(cfg_file)]
    assert main(args) == 0
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["method"] == "dpo" and resolved["beta"] == 0.3
    assert resolved["learning_rate"] == 1e-3 and resolved["max_steps"] == 2  # flags win
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("loss", "margin", "grad_norm", "lr", "tokens_per_s", "samples_per_s"):
        assert key in rows[-1]
    assert rows[-1]["peak_mem_mib"] > 0
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model.config.vocab_size > 0
    assert (out / "report.md").is_file() and (out / "metrics.png").is_file()


def test_config_file_typo_is_an_input_error(tiny_model, feedback_files, tmp_path, capsys):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"learning_rat": 0.1}))
    args = _base(tiny_model, feedback_files["paired"], tmp_path / "r") + ["--config", str(cfg_file)]
    assert main(args) == 2
    assert "learning_rat" in _error_line(capsys)


def test_plot_redraws_a_run(tiny_model, feedback_files, tmp_path):
    out = tmp_path / "run"
    assert main(_base(tiny_model, feedback_files["unpaired"], out)) == 0
    (out / "metrics.png").unlink()
    (out / "report.md").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "metrics.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "pmpo" in report and "logp_accepted" in report and "truncated" in report
    assert main(["plot", str(tmp_path / "not-a-run")]) == 2


def test_beta_below_bound_warns_on_the_console(tiny_model, feedback_files, tmp_path, capsys):
    args = _base(tiny_model, feedback_files["rejected_only"], tmp_path / "r")
    assert main(args + ["--alpha", "0", "--beta", "0.5", "--max-steps", "1"]) == 0
    assert "warning: PMPO beta=0.5 < 1 - alpha=1" in capsys.readouterr().err


def test_tensorboard_flag(tiny_model, feedback_files, tmp_path, capsys):
    import importlib.util

    out = tmp_path / "r"
    code = main(_base(tiny_model, feedback_files["unpaired"], out) + ["--tensorboard"])
    if importlib.util.find_spec("tensorboard") is None:
        assert code == 2 and "tensorboard" in _error_line(capsys)
    else:
        assert code == 0 and any((out / "tensorboard").iterdir())


def test_python_api_matches_the_cli_config(tiny_model, feedback_files):
    from anyfeedback.llm import TrainConfig, make_config

    cfg = make_config(None, model=str(tiny_model), data=str(feedback_files["paired"]), method="ipo")
    assert cfg == TrainConfig(
        model=str(tiny_model), data=str(feedback_files["paired"]), method="ipo"
    )
    assert cfg.beta == 0.1 and cfg.average_logps  # IPO: τ = 0.1, per-token mean ℓ
    pmpo_r = TrainConfig(model="m", data="d", alpha=0.0)
    assert pmpo_r.beta == 2.0  # PMPO-R paper default


def test_accelerate_recipes_are_valid_yaml():
    import yaml

    root = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
    files = sorted(root.glob("*.yaml"))
    assert {f.stem for f in files} >= {"ddp", "fsdp", "deepspeed_zero2"}
    for f in files:
        cfg = yaml.safe_load(f.read_text())
        assert "distributed_type" in cfg and "num_processes" in cfg
