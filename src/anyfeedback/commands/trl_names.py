"""transformers/TRL argument names for the LLM commands (train, online, reward, aihf, self-play).

`ALIASES` maps a TRL name to our field; the generator (`commands/options.py`) accepts it as a
hidden flag (snake_case or kebab-case) and as a YAML/JSON key. An alias whose field does not exist
on the command's config is "not supported yet" (one line, exit 2). `UNSUPPORTED` TRL keys are
refused with one line naming them; `NO_EFFECT` keys are dropped with a one-line note.
docs/trl-names.md is the table for users.
"""

from __future__ import annotations

import typing
from typing import Any, Optional

import typer

from anyfeedback.errors import InputError

# TRL / transformers name → our field name
ALIASES: dict[str, str] = {
    "model_name_or_path": "model",
    "dataset_name": "data",
    "output_dir": "out",
    "per_device_train_batch_size": "batch_size",
    "num_train_epochs": "num_epochs",
    "learning_rate": "learning_rate",
    "lr_scheduler_type": "lr_scheduler_type",
    "warmup_ratio": "warmup_ratio",
    "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_steps": "max_steps",
    "save_steps": "save_steps",
    "seed": "seed",
    "bf16": "bf16",
    "gradient_checkpointing": "gradient_checkpointing",
    "use_peft": "lora_r",  # true → lora_r 16 unless lora_r is given
    "lora_r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "lora_target_modules": "lora_target_modules",
    "max_length": "max_length",
    "max_prompt_length": "max_prompt_length",
    "beta": "beta",
    "loss_type": "method",  # sigmoid → dpo, ipo → ipo
    # data splits, evaluation, logging, trackers, Hub, output directory
    "dataset_config": "dataset_config",
    "dataset_train_split": "split",
    "dataset_test_split": "eval_split",
    "per_device_eval_batch_size": "per_device_eval_batch_size",
    "eval_steps": "eval_steps",
    "logging_steps": "logging_steps",
    "report_to": "report_to",
    "run_name": "run_name",
    "push_to_hub": "push_to_hub",
    "hub_model_id": "hub_model_id",
    "overwrite_output_dir": "overwrite",
}
LOSS_TYPES = {"sigmoid": "dpo", "ipo": "ipo"}
USE_PEFT_LORA_R = 16
# TRL options with no counterpart here: refused, so a recipe never silently means something else
UNSUPPORTED = (
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "deepspeed",
    "f_divergence_type",
    "fsdp",
    "label_smoothing",
    "load_in_4bit",
    "load_in_8bit",
    "max_completion_length",
    "optim",
    "padding_free",
    "precompute_ref_log_probs",
    "reference_free",
    "rpo_alpha",
    "sync_ref_model",
    "ref_model_sync_steps",
    "ref_model_mixup_alpha",
    "torch_dtype",
    "use_liger_kernel",
    "use_dora",
    "use_rslora",
    "packing",
)
# TRL options that change nothing here (logging cadence, data-loader plumbing)
NO_EFFECT = (
    "eval_strategy",  # evaluation runs whenever an eval set is given, every --eval-steps
    "logging_first_step",
    "logging_strategy",
    "logging_dir",
    "remove_unused_columns",
    "dataloader_num_workers",
    "dataloader_pin_memory",
    "disable_tqdm",
    "do_train",
    "do_eval",
    "save_strategy",
    "ddp_find_unused_parameters",
)


def all_keys() -> dict[str, str]:
    """Every TRL key a config file may hold (the caller resolves them)."""
    return {**ALIASES, **{k: "" for k in UNSUPPORTED + NO_EFFECT}}


def alias_help(field: str) -> str:
    """ " (TRL: a, b)" for the help of `field`, or ""."""
    names = [a for a, f in ALIASES.items() if f == field and a != field]
    return f" (TRL: {', '.join(names)})" if names else ""


def hidden_flags(cls: type, hints: dict[str, Any]):
    """(alias, flag declarations, annotation) of the hidden TRL flags for `cls`."""
    primary = {"--" + name.replace("_", "-") for name in hints}
    for alias in all_keys():
        target = ALIASES.get(alias)
        kinds = {"--" + alias.replace("_", "-"), "--" + alias} - primary
        if not kinds:
            continue
        base: Any = str
        if target in hints and alias not in ("use_peft", "loss_type"):
            base = hints[target]
            args = [a for a in typing.get_args(base) if a is not type(None)]
            base = args[0] if args else base
        if alias == "use_peft":
            base = bool
        decls = sorted(kinds)
        if base is bool:
            decls = [f"{d}/--no-{d[2:]}" for d in decls]
        yield alias, decls, Optional[base]


def _loss_type(value: Any, source: str) -> str:
    if value not in LOSS_TYPES:
        supported = ", ".join(f"{k} → {v}" for k, v in LOSS_TYPES.items())
        raise InputError(
            f"loss_type {value!r} is not supported (supported: {supported})",
            source=source,
            field="loss_type",
        )
    return LOSS_TYPES[value]


def resolve(
    raw: dict[str, Any], fields: set[str], *, source: str, given: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`raw` with TRL keys renamed to our fields; refuses unsupported keys and conflicts."""
    given = given or {}
    refused = sorted(k for k in raw if k in UNSUPPORTED)
    if refused:
        raise InputError(f"TRL option(s) not supported here: {', '.join(refused)}", source=source)
    ignored = sorted(k for k in raw if k in NO_EFFECT)
    if ignored:
        typer.echo(f"note: TRL option(s) with no effect here: {', '.join(ignored)}", err=True)
    out = {k: v for k, v in raw.items() if k in fields or (k not in ALIASES and k not in NO_EFFECT)}
    use_peft = False
    for alias, value in raw.items():
        target = ALIASES.get(alias)
        if target is None or (alias == target and alias in fields):
            continue
        if alias == "logging_steps" and target not in fields:
            typer.echo("note: logging_steps has no effect here (every step is logged)", err=True)
            continue
        if target not in fields:
            raise InputError(
                f"not supported yet (it would set {target})", source=source, field=alias
            )
        if alias == "use_peft":
            use_peft = value is True or str(value).lower() == "true"
            continue
        if alias == "loss_type":
            value = _loss_type(value, source)
        for seen in (out, given):
            if target in seen and seen[target] != value:
                raise InputError(
                    f"conflicts with {target}={seen[target]!r} (both given)",
                    source=source,
                    field=alias,
                )
        out[target] = value
    if use_peft and "lora_r" not in out and "lora_r" not in given:
        out["lora_r"] = USE_PEFT_LORA_R
    return out
