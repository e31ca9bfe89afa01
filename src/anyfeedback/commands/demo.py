"""`anyfeedback demo`: placeholder until the embedded demo lands (replaced below)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo() -> None:
        """Run the embedded offline demo."""
        typer.echo("demo: not yet available")
