"""`anyfeedback demo`: the embedded offline demo (see `anyfeedback.llm.demo.run`)."""

from __future__ import annotations

import typer

from anyfeedback.commands.options import add_dataclass_command


def _run(cfg) -> None:
    import sys
    from pathlib import Path

    from anyfeedback.llm.demo.run import run_demo
    from anyfeedback.run_dir import prepare_output_dir

    with prepare_output_dir(cfg.out, overwrite=cfg.overwrite):
        # nothing has run a torch op in this process yet, so on Linux the method workers can be
        # forked and share its imports (macOS: fork is unsafe with system frameworks; spawn)
        fork = sys.platform.startswith("linux")
        report = run_demo(Path(cfg.out), quick=cfg.quick, log=typer.echo, fork=fork)
    typer.echo(f"report: {report.resolve()}")


def register(app: typer.Typer) -> None:
    from anyfeedback.llm.demo.config import DemoConfig

    add_dataclass_command(
        app,
        "demo",
        DemoConfig,
        _run,
        "Train a small LM on generated reviews, align it to positive sentiment with PMPO-AR, "
        "PMPO-A, PMPO-R and DPO, and write an HTML report (offline, on CPU).",
    )
