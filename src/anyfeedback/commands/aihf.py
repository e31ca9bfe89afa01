"""`anyfeedback aihf` (Algorithm 1) and `anyfeedback self-play` (Self-Play AIHF / SPIN)."""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _fmt(d: dict) -> str:
    return (
        ", ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in d.items()) or "no held-out eval"
    )


def _run_aihf(cfg) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from anyfeedback.llm.aihf.loop import run_aihf
    from anyfeedback.run_dir import prepare_output_dir

    with prepare_output_dir(cfg.out, resume=getattr(cfg, "resume", False), overwrite=cfg.overwrite):
        r = run_aihf(cfg)
    typer.echo(
        f"done: {r.iterations} iterations; start: {_fmt(r.start)}; final: {_fmt(r.final)}; "
        f"policy in {r.out / 'policy'}, reward model in {r.out / 'reward_model'}"
    )


def _run_self_play(cfg) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from anyfeedback.llm.aihf.selfplay import run_self_play
    from anyfeedback.run_dir import prepare_output_dir

    with prepare_output_dir(cfg.out, resume=getattr(cfg, "resume", False), overwrite=cfg.overwrite):
        r = run_self_play(cfg)
    typer.echo(
        f"done: {r.iterations} iterations; start: {_fmt(r.start)}; final: {_fmt(r.final)}; "
        f"model in {r.out / 'model'}"
    )


def register(app: typer.Typer) -> None:
    from anyfeedback.llm.aihf.config import AIHFConfig, SelfPlayConfig

    add_dataclass_command(
        app,
        "aihf",
        AIHFConfig,
        _run_aihf,
        "AIHF (Algorithm 1): alternate RLOO policy steps with a KL penalty to π_ref and one "
        "reward step on w_D·(demonstration ≻ fresh policy sample) + w_P·Bradley–Terry(pairs). "
        "User code: a --gold-reward given as module:function or file.py:function is imported "
        "and run; it is the only code this command executes from its inputs (docs/safety.md).",
        aliases=True,
    )
    add_dataclass_command(
        app,
        "self-play",
        SelfPlayConfig,
        _run_self_play,
        "Self-Play AIHF: iterations of sampling π_t on the demonstration prompts, then SPIN "
        "(demonstration ≻ sample) + DPO on pairs with π_t as reference; --pref-weight 0 is SPIN.",
        aliases=True,
    )
