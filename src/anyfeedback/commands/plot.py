"""`anyfeedback plot DIR`: draw a training run's metrics (metrics.png) and write its report.md."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def plot(
        run_dir: str = typer.Argument(..., help="A run directory written by `anyfeedback train`."),
    ) -> None:
        """Plot a training run's metrics and write its report.md."""
        from anyfeedback.llm.report import write_report

        report = write_report(run_dir)
        typer.echo(f"wrote {report} and {report.parent / 'metrics.png'}")
