"""`anyfeedback data inspect FILE`: kind, counts, lengths, scores, and the problems found.

By default the first problem ends the command as for any other command: one line on stderr
(`error: FILE:line N: field 'x': problem`), exit code 2. `--all-problems` validates every record
and lists up to `--max-problems` problems, one `error:` line each, then exits 2; a clean file
prints its statistics either way. Warnings (e.g. pairs with chosen == rejected) never fail.
"""

from __future__ import annotations

import json

import typer

data_app = typer.Typer(help="Inspect and validate feedback data.", no_args_is_help=True)


@data_app.command("inspect")
def inspect_cmd(
    path: str = typer.Argument(
        ..., help="File (.jsonl/.json/.csv/.parquet), directory, saved dataset or Hub id."
    ),
    kind: str = typer.Option(
        None, help="unpaired | paired | demonstration | prompt-only (default: detected)."
    ),
    split: str = typer.Option("train", help="Split of a saved dataset directory or Hub id."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
    all_problems: bool = typer.Option(
        False, "--all-problems", help="List every problem (up to --max-problems), not the first."
    ),
    max_problems: int = typer.Option(20, min=1, help="Most problems --all-problems lists."),
) -> None:
    """Print a feedback dataset's kind, counts and length statistics, or its problems."""
    from anyfeedback.feedback.inspect import dataset_stats, format_stats
    from anyfeedback.feedback.loaders import load_feedback

    problems: list | None = [] if all_problems else None
    ds = load_feedback(path, kind=kind, split=split, problems=problems, max_problems=max_problems)
    if problems:
        for err in problems:
            typer.echo(f"error: {err}", err=True)
        if len(problems) >= max_problems:
            typer.echo(f"error: stopped after {max_problems} problems", err=True)
        raise typer.Exit(2)
    stats = dataset_stats(ds)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    for line in format_stats(stats):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
