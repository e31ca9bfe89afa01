"""`anyfeedback online`: sample → score → label → update (options from `OnlineConfig`)."""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _run(cfg) -> None:
    import os
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per problem on stderr, as every command
    from anyfeedback.llm.online.loop import run_online
    from anyfeedback.llm.trainer import NonFiniteLossError
    from anyfeedback.run_dir import prepare_output_dir

    def one_line(message, category, *args, **kwargs):
        typer.echo(f"warning: {message}", err=True)

    warnings.showwarning = one_line
    try:
        with prepare_output_dir(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite):
            result = run_online(cfg)
    except NonFiniteLossError as err:
        typer.echo(f"error: {err}; the last checkpoint in {cfg.out} is intact", err=True)
        raise typer.Exit(1) from None
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch: process 0 reports
        return
    typer.echo(
        f"done: {result.steps} steps; held-out reward {result.start.reward_mean:+.3f} → "
        f"{result.final.reward_mean:+.3f}, win rate vs start {result.final.win_rate:.2f}; "
        f"model in {result.out / 'model'}"
    )


def register(app: typer.Typer) -> None:
    from anyfeedback.llm.online.config import OnlineConfig

    add_dataclass_command(
        app,
        "online",
        OnlineConfig,
        _run,
        "Online alignment: sample K completions per prompt, score them, label the best accepted "
        "and the worst rejected, update with PMPO (or DPO/KTO), refresh π_ref every N steps. User "
        "code: a --reward given as module:function or file.py:function is imported and run; it "
        "is the only code this command executes from its inputs (docs/safety.md).",
        aliases=True,
    )
