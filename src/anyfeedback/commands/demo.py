"""`anyfeedback demo`: the embedded offline demo (see `anyfeedback.llm.demo.run`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs/demo"), help="Where the report and runs go."),
        quick: bool = typer.Option(False, help="A smaller model and fewer steps (~2 minutes)."),
        overwrite: bool = typer.Option(
            False, help="Replace the outputs of an earlier run in --out (only files a run writes)."
        ),
    ) -> None:
        """Train a small LM on generated reviews, align it to positive sentiment with PMPO-AR,
        PMPO-A, PMPO-R and DPO, and write an HTML report (offline, 2 CPU cores)."""
        from anyfeedback.llm.demo.run import run_demo
        from anyfeedback.runs import prepare_output_dir

        with prepare_output_dir(out, overwrite=overwrite):
            report = run_demo(out, quick=quick, log=typer.echo)
        typer.echo(f"report: {report.resolve()}")
