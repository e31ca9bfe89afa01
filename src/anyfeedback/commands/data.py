"""`anyfeedback data inspect FILE`: kind, counts, lengths, and the problems found.

By default the first problem ends the command as for any other command: one line on stderr,
exit code 2. `--all-problems` lists up to 20 problems, one line each, then exits 2.
"""

from __future__ import annotations

import json

import typer

data_app = typer.Typer(help="Inspect and validate feedback data.", no_args_is_help=True)


@data_app.command("inspect")
def inspect_cmd(
    path: str = typer.Argument(..., help="File (jsonl/json/csv/parquet), directory or Hub id."),
    kind: str = typer.Option(None, help="unpaired | paired | demonstration | prompt-only."),
    split: str = typer.Option("train", help="Split of a dataset directory or Hub id."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
    all_problems: bool = typer.Option(False, help="List up to 20 problems instead of the first."),
) -> None:
    """Print a feedback dataset's kind, counts and length statistics, or its problems."""
    from anyfeedback.feedback import dataset_stats, load_feedback

    problems: list = [] if all_problems else None
    ds = load_feedback(path, kind=kind, split=split, problems=problems)
    if problems:
        for err in problems:
            typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    stats = dataset_stats(ds)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    counts = ", ".join(f"{k} {v}" for k, v in stats["counts"].items() if v)
    typer.echo(
        f"{stats['source']}: {stats['kind']}"
        f"{' (conversational)' if stats['conversational'] else ''}"
    )
    typer.echo(f"  counts: {counts}")
    for key in ("prompt_chars", "prompt_words", "completion_chars", "completion_words"):
        if stats[key]:
            s = stats[key]
            typer.echo(
                f"  {key:<17} min {s['min']}  median {s['median']}  mean {s['mean']}"
                f"  max {s['max']}"
            )
    if stats["pairs_with_identical_sides"]:
        typer.echo(
            f"  warning: {stats['pairs_with_identical_sides']} pairs have chosen == "
            "rejected (no preference signal)"
        )
    typer.echo("  problems: none")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
