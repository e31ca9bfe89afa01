"""`anyfeedback reward`: a Bradley–Terry reward model from preference pairs (`RewardConfig`)."""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _run(cfg) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from anyfeedback.llm.reward.train import train_reward
    from anyfeedback.run_dir import prepare_output_dir

    with prepare_output_dir(cfg.out, resume=getattr(cfg, "resume", False), overwrite=cfg.overwrite):
        r = train_reward(cfg)
    typer.echo(
        f"done: {r.steps} steps on {r.n_train} pairs; held-out pairwise accuracy "
        f"{r.start_accuracy:.3f} → {r.accuracy:.3f} on {r.n_eval} pairs; reward model "
        f"in {r.model_dir} (use it as --reward {r.model_dir})"
    )


def register(app: typer.Typer) -> None:
    from anyfeedback.llm.reward.config import RewardConfig

    add_dataclass_command(
        app,
        "reward",
        RewardConfig,
        _run,
        "Train a Bradley–Terry reward model (scalar head on the last token of a causal LM) from "
        "preference pairs; reports held-out pairwise accuracy; saves it in HF format.",
        aliases=True,
    )
