"""`anyfeedback train`: fine-tune a causal LM from a feedback file.

The options are generated from `anyfeedback.llm.config.TrainConfig`: one flag per field
(`learning_rate` → `--learning-rate`, booleans as `--flag/--no-flag`), the field's docstring as
help. `--config FILE` (YAML/JSON of the same fields) is read first; flags given on the command
line override it. Errors in the inputs exit with code 2 before any training; a run stopped by a
non-finite loss exits with code 1.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Optional

import typer


def _base_type(annotation: Any) -> type:
    """`float | None` → float; `bool` → bool."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _signature() -> tuple[inspect.Signature, dict[str, Any]]:
    from anyfeedback.llm.config import TrainConfig, config_fields, field_docs

    hints = typing.get_type_hints(TrainConfig)
    docs = field_docs()
    defaults = {f.name: f.default for f in config_fields()}
    params, annotations = [], {}
    config_opt = typer.Option(None, "--config", help="YAML or JSON file of these fields.")
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=config_opt))
    annotations["config"] = Optional[str]
    for f in config_fields():
        base = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = defaults[f.name]
        shown = "per method" if f.name == "beta" else default
        help_text = f"{docs.get(f.name, '')} [default: {shown}]"
        decl = f"{flag}/--no-{flag[2:]}" if base is bool else flag
        option = typer.Option(None, decl, help=help_text, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option))
        annotations[f.name] = Optional[base]
    return inspect.Signature(params), annotations


def run_train(config: str | None = None, **flags: Any) -> None:
    """Build the config (defaults ← --config file ← flags) and train."""
    import warnings

    from transformers.utils import logging as hf_logging

    from anyfeedback.errors import check_finite_fields
    from anyfeedback.llm.config import make_config
    from anyfeedback.llm.fit import train
    from anyfeedback.llm.trainer import NonFiniteLossError
    from anyfeedback.runs import prepare_output_dir

    hf_logging.disable_progress_bar()  # one line per problem on stderr, as every command
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _one_line_warning
        cfg = make_config(config, **flags)
    check_finite_fields(cfg)
    try:
        with prepare_output_dir(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite):
            result = train(cfg)
    except NonFiniteLossError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"done: {result.steps} steps; model in {result.model_dir}; report {result.out}/report.md"
    )


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {message}", err=True)


def register(app: typer.Typer) -> None:
    signature, annotations = _signature()

    def train(**kwargs: Any) -> None:
        run_train(**kwargs)

    train.__signature__ = signature
    train.__annotations__ = {**annotations, "return": None}
    train.__doc__ = (
        "Fine-tune a causal LM from feedback: pmpo | dpo | ipo | kto | sft | aihf-dpo. "
        "Runs under `accelerate launch` / `torchrun` for several processes."
    )
    app.command(name="train")(train)
