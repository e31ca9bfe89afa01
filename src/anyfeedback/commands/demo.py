"""`anyfeedback demo`: the embedded offline demo (see `anyfeedback.llm.demo.run`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs/demo"), help="Where the report and runs go."),
        quick: bool = typer.Option(False, help="A smaller model and fewer steps (~2 minutes)."),
    ) -> None:
        """Train a small LM on generated reviews, align it to positive sentiment with PMPO-AR,
        PMPO-A, PMPO-R and DPO, and write an HTML report (offline, CPU only)."""
        from anyfeedback.llm.demo.run import run_demo

        report = run_demo(out, quick=quick, log=typer.echo)
        typer.echo(f"report: {report.resolve()}")
