"""`anyfeedback` command line. Subcommands live in their own modules and register here.

Heavy imports (torch, transformers, matplotlib) happen inside the command functions, so `--help`
stays fast. Every `InputError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from anyfeedback import __version__
from anyfeedback.errors import EXIT_DIVERGED, EXIT_USAGE, DivergenceError, InputError

app = typer.Typer(
    name="anyfeedback",
    help="Train policies from whatever feedback you have (PMPO, AIHF and baselines).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"anyfeedback {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """anyfeedback: PMPO, AIHF and the field's baselines on bandits, control and language models."""


_registered = False


def register_commands() -> None:
    # Each command module adds its commands to `app`, once; import order = order in --help.
    global _registered
    if not _registered:
        from anyfeedback.commands import register_all

        register_all(app)
        _registered = True


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from anyfeedback.runs import configure_threads, one_line_warnings, set_command_line

    configure_threads()  # before any command imports torch (every command: runs.thread_defaults)
    register_commands()
    set_command_line(sys.argv[1:] if argv is None else list(argv))
    try:
        with one_line_warnings():
            result = app(args=argv, standalone_mode=False)
        if isinstance(result, int):  # click returns typer.Exit's code when not standalone
            return result
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except DivergenceError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_DIVERGED
    except typer.Exit as ex:
        return ex.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except Exception as err:
        # usage errors (unknown option, bad value) from the click bundled with typer: they
        # carry `show()` and `exit_code` (2); anything else is a bug and keeps its traceback
        if hasattr(err, "show") and isinstance(getattr(err, "exit_code", None), int):
            text = err.format_message() if hasattr(err, "format_message") else str(err)
            print(f"error: {' '.join(text.split())}", file=sys.stderr)  # one line, as InputError
            return err.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
