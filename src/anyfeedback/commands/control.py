"""`anyfeedback control`: PMPO / MPO / SAC actor-critic on the DeepMind Control Suite.

The options are generated from `ControlConfig` by `commands/options.py` (one flag per field, its
docstring as help), so the CLI and the config cannot drift apart. Bad values become one-line
`error:` messages, exit 2.
"""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _run(cfg) -> None:
    from anyfeedback.control.train import run
    from anyfeedback.run_dir import prepare_output_dir

    with prepare_output_dir(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite):
        summary = run(cfg)
    for name, s in summary.items():
        typer.echo(f"{name}: final eval return {s['final_eval_return']}  ({cfg.out})")


def register(app: typer.Typer) -> None:
    from anyfeedback.control.config import ControlConfig

    add_dataclass_command(
        app,
        "control",
        ControlConfig,
        _run,
        "Train PMPO-AR/-A/-R, MPO or SAC on a DeepMind Control task (needs the `control` extra). "
        "Example: anyfeedback control --domain walker --task walk --method pmpo-ar --steps 200000 "
        "--seed 0 --out runs/walker",
    )
