"""The one config → CLI generator: `--config` and visible defaults on every command, TRL names as
flags and file keys, typed config values (one line naming the field, exit 2), docs/cli.md current.

No training runs here: the command's run function is replaced by one that records the config.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anyfeedback.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    ["train"],
    ["online"],
    ["reward"],
    ["aihf"],
    ["self-play"],
    ["demo"],
    ["control"],
    ["offline"],
    ["aihf-control"],
    ["bandit", "run"],
    ["bandit", "sweep"],
]


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_config_and_shows_defaults(command, wide, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config" in out
    assert out.count("[default:") >= 2, out  # rich markup must not eat them


def test_a_known_default_is_visible_in_train_help(wide, capsys):
    assert main(["train", "--help"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "--learning-rate" in x)
    assert "[default: (1e-06)]" in line


def test_help_loads_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "from anyfeedback.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help']); main(['train', '--help']); main(['bandit', 'run', '--help'])\n"
        "print([m for m in ('torch', 'transformers', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_docs_cli_md_is_current():
    from anyfeedback.commands.docs import main as docs_main

    assert docs_main(["--check", "--root", str(ROOT)]) == 0, (
        "run python -m anyfeedback.commands.docs"
    )


# --- train: the config that reaches the trainer ------------------------------------------------


@pytest.fixture
def captured(monkeypatch):
    """Replace training by recording the config; returns the list of configs."""
    import anyfeedback.llm.fit as fit

    configs = []

    def fake_train(cfg):
        configs.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(fit, "train", fake_train)
    return configs


def _train(args, captured) -> object:
    with pytest.raises(SystemExit):
        main(["train", "--model", "m", "--data", "d", *args])
    return captured[-1]


# (TRL name, value, our field, expected value)
ALIAS_CASES = [
    ("model_name_or_path", "my-model", "model", "my-model"),
    ("dataset_name", "my-data", "data", "my-data"),
    ("output_dir", "runs/x", "out", "runs/x"),
    ("per_device_train_batch_size", 3, "batch_size", 3),
    ("num_train_epochs", 2, "num_epochs", 2),
    ("learning_rate", 2e-5, "learning_rate", 2e-5),
    ("lr_scheduler_type", "cosine", "lr_scheduler_type", "cosine"),
    ("warmup_ratio", 0.25, "warmup_ratio", 0.25),
    ("warmup_steps", 7, "warmup_steps", 7),
    ("weight_decay", 0.01, "weight_decay", 0.01),
    ("max_grad_norm", 0.5, "max_grad_norm", 0.5),
    ("gradient_accumulation_steps", 4, "gradient_accumulation_steps", 4),
    ("max_steps", 9, "max_steps", 9),
    ("save_steps", 11, "save_steps", 11),
    ("seed", 5, "seed", 5),
    ("lora_r", 8, "lora_r", 8),
    ("lora_alpha", 32.0, "lora_alpha", 32.0),
    ("lora_dropout", 0.1, "lora_dropout", 0.1),
    ("lora_target_modules", "q_proj,v_proj", "lora_target_modules", "q_proj,v_proj"),
    ("max_length", 99, "max_length", 99),
    ("max_prompt_length", 17, "max_prompt_length", 17),
    ("beta", 0.25, "beta", 0.25),
    ("loss_type", "ipo", "method", "ipo"),
    ("dataset_config", "default", "dataset_config", "default"),
    ("dataset_train_split", "train_prefs", "split", "train_prefs"),
    ("dataset_test_split", "test_prefs", "eval_split", "test_prefs"),
    ("per_device_eval_batch_size", 4, "per_device_eval_batch_size", 4),
    ("eval_steps", 3, "eval_steps", 3),
    ("logging_steps", 2, "logging_steps", 2),
    ("report_to", "tensorboard", "report_to", "tensorboard"),
    ("run_name", "r1", "run_name", "r1"),
    ("hub_model_id", "me/model", "hub_model_id", "me/model"),
]


@pytest.mark.parametrize(("alias", "value", "field", "expect"), ALIAS_CASES)
@pytest.mark.parametrize("spelling", ["snake", "kebab"])
def test_trl_name_as_flag(alias, value, field, expect, spelling, captured):
    flag = "--" + (alias if spelling == "snake" else alias.replace("_", "-"))
    args = [flag, str(value)]
    if field in ("model", "data"):  # replace, do not conflict with _train's own --model/--data
        with pytest.raises(SystemExit):
            main(["train", *(["--data", "d"] if field == "model" else ["--model", "m"]), *args])
        cfg = captured[-1]
    else:
        cfg = _train(args, captured)
    assert getattr(cfg, field) == expect


@pytest.mark.parametrize(("alias", "value", "field", "expect"), ALIAS_CASES)
def test_trl_name_as_yaml_key(alias, value, field, expect, tmp_path, captured):
    cfg_file = tmp_path / "trl.yaml"
    cfg_file.write_text(f"{alias}: {value}\n" + ("" if field == "method" else ""))
    with pytest.raises(SystemExit):
        base = {"model": ["--data", "d"], "data": ["--model", "m"]}.get(
            field, ["--model", "m", "--data", "d"]
        )
        main(["train", *base, "--config", str(cfg_file)])
    assert getattr(captured[-1], field) == expect


def test_boolean_trl_names_as_flags_and_keys(tmp_path, captured):
    cfg = _train(["--gradient_checkpointing", "--use_peft"], captured)
    assert cfg.gradient_checkpointing and cfg.lora_r == 16
    cfg = _train(["--use-peft", "--lora-r", "4"], captured)
    assert cfg.lora_r == 4  # an explicit rank wins over use_peft's 16
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("use_peft: true\nbf16: true\nloss_type: sigmoid\n")
    cfg = _train(["--config", str(cfg_file)], captured)
    assert cfg.lora_r == 16 and cfg.bf16 and cfg.method == "dpo"


def test_trl_quickstart_yaml_with_string_numbers(tmp_path, captured):
    cfg_file = tmp_path / "dpo.yaml"
    cfg_file.write_text(
        "model_name_or_path: my-model\ndataset_name: my-data\noutput_dir: runs/q\n"
        "per_device_train_batch_size: 2\nlearning_rate: 5.0e-7\nnum_train_epochs: 1\n"
        "max_steps: '3'\nlogging_first_step: true\nweight_decay: 1e-2\n"
    )
    with pytest.raises(SystemExit):
        main(["train", "--method", "dpo", "--config", str(cfg_file)])
    cfg = captured[-1]
    assert (cfg.model, cfg.data, cfg.out, cfg.batch_size) == ("my-model", "my-data", "runs/q", 2)
    assert cfg.learning_rate == 5e-7 and cfg.max_steps == 3 and cfg.weight_decay == 0.01


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.mark.parametrize(
    ("text", "suffix", "needle"),
    [
        ("max_steps: 2.5\n", ".yaml", "field 'max_steps': must be an integer, got 2.5"),
        ('{"add_eos": "no"}', ".json", "field 'add_eos': must be true or false"),
        ("learning_rate: abc\n", ".yaml", "field 'learning_rate': must be a number"),
        ("learning_rate: .nan\n", ".yaml", "field 'learning_rate': must be a finite number"),
        ("beta: .inf\n", ".yaml", "field 'beta': must be a finite number"),
        ("batch_size: true\n", ".yaml", "field 'batch_size': must be an integer"),
        ("model: 3\n", ".yaml", "field 'model': must be a string"),
        ("report_to: comet\n", ".yaml", "field 'report_to': unknown tracker(s) comet"),
        ("optim: adamw_torch\n", ".yaml", "TRL option(s) not supported here: optim"),
        ("loss_type: hinge\n", ".yaml", "loss_type 'hinge' is not supported"),
        ("output_dir: a\nout: b\n", ".yaml", "field 'output_dir': conflicts with out='b'"),
    ],
)
def test_bad_config_values_name_the_field(text, suffix, needle, tmp_path, capsys, captured):
    cfg_file = tmp_path / f"c{suffix}"
    cfg_file.write_text(text)
    assert main(["train", "--model", "m", "--data", "d", "--config", str(cfg_file)]) == 2
    line = _error_line(capsys)
    assert needle in line and (str(cfg_file) in line or "TRL" not in needle), line
    assert not captured


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--learning-rate", "inf"], "field 'learning_rate': must be a finite number"),
        (["--beta", "nan"], "field 'beta': must be a finite number"),
        (["--report-to", "comet"], "field 'report_to': unknown tracker(s) comet"),
        (["--loss_type", "hinge"], "loss_type 'hinge' is not supported"),
    ],
)
def test_bad_flag_values_name_the_field(args, needle, capsys, captured):
    assert main(["train", "--model", "m", "--data", "d", *args]) == 2
    assert needle in _error_line(capsys)
    assert not captured


def test_non_utf8_config_is_one_line_naming_the_file(tmp_path, capsys):
    cfg_file = tmp_path / "latin1.yaml"
    cfg_file.write_bytes("model: caf\xe9\n".encode("latin-1"))
    assert main(["train", "--config", str(cfg_file)]) == 2
    line = _error_line(capsys)
    assert str(cfg_file) in line and "not UTF-8" in line


def test_no_effect_trl_key_is_a_note(tmp_path, capsys, captured):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("dataloader_num_workers: 4\nremove_unused_columns: false\n")
    _train(["--config", str(cfg_file)], captured)
    err = capsys.readouterr().err
    assert "note: TRL option(s) with no effect here: dataloader_num_workers" in err


def test_alias_without_a_field_on_another_command(tmp_path, capsys):
    # online has no max_prompt_length: the TRL name is refused, not ignored
    assert main(["online", "--model", "m", "--prompts", "demo", "--max_prompt_length", "8"]) == 2
    assert "field 'max_prompt_length': not supported yet" in _error_line(capsys)


# --- the other commands read --config too ------------------------------------------------------


def test_control_config_file(tmp_path, capsys):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("num_samples: 2.5\n")
    assert main(["control", "--config", str(cfg_file), "--out", str(tmp_path / "r")]) == 2
    assert "field 'num_samples': must be an integer" in _error_line(capsys)
    cfg_file.write_text("score-precision: fp8\n")
    assert main(["control", "--config", str(cfg_file), "--out", str(tmp_path / "r")]) == 2
    assert "field 'score-precision'" in _error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_demo_config_file(tmp_path, capsys, monkeypatch):
    import anyfeedback.llm.demo.run as demo_run

    calls = []
    monkeypatch.setattr(
        demo_run, "run_demo", lambda out, quick, log, fork: calls.append((out, quick))
    )
    cfg_file = tmp_path / "d.json"
    cfg_file.write_text(json.dumps({"quick": "yes"}))
    assert main(["demo", "--config", str(cfg_file)]) == 2
    assert "field 'quick': must be true or false" in _error_line(capsys)
    cfg_file.write_text(json.dumps({"quick": True, "out": str(tmp_path / "demo")}))
    with pytest.raises(AttributeError):  # the fake returns None; the command calls .resolve()
        main(["demo", "--config", str(cfg_file)])
    assert calls == [(tmp_path / "demo", True)]


def test_bandit_config_file_and_flags_override(tmp_path, capsys):
    cfg_file = tmp_path / "b.yaml"
    cfg_file.write_text("function: sphere\ndim: 2\nmethods: pmpo-ar,cem\nseeds: 1\nevals: 40\n")
    out = tmp_path / "run"
    args = ["bandit", "run", "--config", str(cfg_file), "--evals", "20", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["functions"] == ["sphere"] and results["config"]["evals"] == 20
    assert results["config"]["methods"] == ["pmpo-ar", "cem"]
    cfg_file.write_text("alphas: 0,abc\n")
    assert main(["bandit", "sweep", "--config", str(cfg_file), "--out", str(tmp_path / "s")]) == 2
    assert "field 'alphas': must be a number" in _error_line(capsys)


def test_field_docs_read_inherited_fields():
    from anyfeedback.configfile import field_docs
    from anyfeedback.llm.config import TrainConfig

    docs = field_docs(TrainConfig)
    assert docs["learning_rate"] == "Peak learning rate of AdamW."  # OptimConfig
    assert docs["alpha"].startswith("PMPO α")  # ObjectiveConfig
    assert docs["data"].startswith("Feedback file")  # TrainConfig itself


def test_step_config_needs_no_data():
    from anyfeedback.llm.config import PolicyStepConfig, TrainConfig

    step = PolicyStepConfig(model="m", method="rloo", beta=0.05)
    assert not hasattr(step, "data") and step.beta == 0.05
    keys = set(TrainConfig(model="m", data="d").to_dict())
    assert keys >= {"model", "data", "learning_rate", "alpha", "beta", "lora_r", "save_steps"}


@pytest.mark.parametrize(
    ("command", "text", "needle"),
    [
        (
            ["reward"],
            "model_name_or_path: m\ndataset_name: d\nper_device_train_batch_size: 0\n",
            "field 'batch_size': must be >= 1",
        ),
        (
            ["online"],
            "model_name_or_path: m\ndataset_name: d\n",
            "field 'dataset_name': not supported yet",
        ),
        (
            ["aihf"],
            "model_name_or_path: m\ndemos: d\npairs: p\nlearning_rate: '-1e-5'\n",
            "field 'learning_rate': must be >= 0",
        ),
        (
            ["self-play"],
            "model_name_or_path: m\ndemos: d\npairs: p\nnum_train_epochs: 1\n",
            "field 'num_train_epochs': not supported yet",
        ),
    ],
)
def test_other_llm_commands_read_trl_keys(command, text, needle, tmp_path, capsys):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(text)
    assert main([*command, "--config", str(cfg_file)]) == 2
    assert needle in _error_line(capsys)


def test_warmup_ratio_is_transformers_rule(train_cfg, one_thread):
    """warmup_ratio 0.5 of 4 steps = ceil(2.0) = 2 warmup steps: the same schedule as
    warmup_steps 2 (and warmup_steps wins when both are given, as in transformers)."""
    from anyfeedback.llm.trainer import Trainer

    def lrs(**fields):
        cfg = train_cfg("pmpo", lr_scheduler_type="linear", max_steps=4, **fields)
        trainer = Trainer(cfg, total_steps=4)
        return [trainer.scheduler.lr_lambdas[0](s) for s in range(5)]

    ratio, steps = lrs(warmup_ratio=0.5), lrs(warmup_steps=2)
    assert ratio == steps and ratio != lrs() and ratio[0] < ratio[1] < ratio[2] == 1.0
    assert lrs(warmup_ratio=0.5, warmup_steps=1) == lrs(warmup_steps=1) != steps


def test_max_prompt_length_keeps_the_prompt_end():
    from anyfeedback.llm.data import truncate

    prompt, comps, n = truncate(([1, 2, 3, 4, 5], ([6, 7],)), 4, 0, "x", max_prompt_length=2)
    assert prompt == [4, 5] and comps == ([6, 7],) and n == 0
