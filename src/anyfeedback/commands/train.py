"""`anyfeedback train`: fine-tune a causal LM from a feedback file.

The options are generated from `anyfeedback.llm.config.TrainConfig` by `commands/options.py` (one
flag per field, TRL spellings accepted). Errors in the inputs exit with code 2 before any
training; a run stopped by a non-finite loss exits with code 1.
"""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _run(cfg) -> None:
    """Train with the config (its β < 1 − α warning is printed as one `warning:` line)."""
    from transformers.utils import logging as hf_logging

    from anyfeedback.llm.fit import train
    from anyfeedback.llm.trainer import NonFiniteLossError
    from anyfeedback.run_dir import prepare_output_dir

    hf_logging.disable_progress_bar()  # one line per problem on stderr, as every command
    try:
        with prepare_output_dir(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite):
            result = train(cfg)
    except NonFiniteLossError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"done: {result.steps} steps; model in {result.model_dir}; report {result.out}/report.md"
    )


def _build_with_warnings(build) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown once each, one line, by cli.main's hook
        cfg = build()
    _run(cfg)


def register(app: typer.Typer) -> None:
    from anyfeedback.llm.config import TrainConfig

    add_dataclass_command(
        app,
        "train",
        TrainConfig,
        _build_with_warnings,
        "Fine-tune a causal LM from feedback: pmpo | dpo | ipo | kto | sft | aihf-dpo. "
        "Runs under `accelerate launch` / `torchrun` for several processes.",
        aliases=True,
        lazy=True,
    )
