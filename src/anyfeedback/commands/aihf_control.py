"""`anyfeedback aihf-control`: AIHF with a SAC inner loop on dm_control, with the RLHF, ML-IRL and
BC baselines on the same demonstrations and preference pairs (needs the `control` extra)."""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _run(cfg) -> None:
    from anyfeedback.control.aihf.loop import run_aihf_control
    from anyfeedback.run_dir import prepare_output_dir

    resume = getattr(cfg, "resume", False)  # --resume: the control helper's branch
    with prepare_output_dir(cfg.out, resume=resume, overwrite=cfg.overwrite):
        summary = run_aihf_control(cfg)
    for name, m in summary["methods"].items():
        typer.echo(
            f"{name}: true return {m['mean']:.1f} ± {m['std']:.1f} over "
            f"{len(m['returns'])} seeds  ({cfg.out})"
        )


def register(app: typer.Typer) -> None:
    from anyfeedback.control.aihf.config import AIHFControlConfig

    add_dataclass_command(
        app,
        "aihf-control",
        AIHFControlConfig,
        _run,
        "AIHF for control: a reward MLP learned jointly with SAC from demonstrations (ML-IRL "
        "term) and segment preferences (Bradley–Terry), plus RLHF, ML-IRL and BC baselines. "
        "Example: anyfeedback aihf-control --data pool.npz --num-pairs 20 --pref-noise 0.3",
    )
