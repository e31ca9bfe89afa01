"""`anyfeedback offline`: PMPO / BC from a fixed NPZ dataset of transitions (`OfflineConfig`)."""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _run(cfg) -> None:
    from anyfeedback.control.offline.train import run
    from anyfeedback.run_dir import prepare_output_dir

    resume = getattr(cfg, "resume", False)  # --resume: the control helper's branch
    with prepare_output_dir(cfg.out, resume=resume, overwrite=cfg.overwrite):
        summary = run(cfg)
    for method, s in summary["methods"].items():
        typer.echo(
            f"{method}: eval return {s['mean']:.1f} ± {s['std']:.1f} over "
            f"{len(s['returns'])} seeds  ({cfg.out})"
        )


def register(app: typer.Typer) -> None:
    from anyfeedback.control.offline.config import OfflineConfig

    add_dataclass_command(
        app,
        "offline",
        OfflineConfig,
        _run,
        "Offline PMPO (arXiv 2410.04166 §5.3): fit Q and V to an NPZ dataset of transitions, label "
        "each transition accepted (Q − V > 0) or rejected (< 0), train BC / accept / accept-bc / "
        "reject-bc / accept-reject-bc policies, evaluate them in dm_control. Example: anyfeedback "
        "offline --dataset data.npz --methods bc,accept-reject-bc --num-seeds 3 --out runs/off",
    )
