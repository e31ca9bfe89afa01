"""`anyfeedback plot DIR`: redraw a run's metrics (metrics.png) and rewrite its report.

Accepted: the LLM runs (`train`, `online`, `reward`, `aihf`, `self-play`; an AIHF / self-play
run gets its own report back from its summary.json). Refused, with one line saying what draws
them: bandit runs (`anyfeedback bandit` writes curves.png and report.md) and control runs
(`anyfeedback control` / `offline` / `aihf-control` write curves.png).
"""

from __future__ import annotations

import typer

ACCEPTED = "train, online, reward, aihf and self-play runs"


def _refusal(run) -> str | None:
    """Why `plot` does not draw the run in `run`, or None if it does."""
    import json

    config = {}
    if (run / "config.json").is_file():
        try:
            config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            config = {}
    if (run / "results.json").is_file() or (run / "sweep.json").is_file():
        return "a bandit run: `anyfeedback bandit` draws its curves.png and report.md"
    if isinstance(config, dict) and "domain" in config:
        return "a control run: the command that made it drew its curves.png and report"
    if not (run / "metrics.jsonl").is_file():
        return f"not a run directory (no metrics.jsonl); plot draws {ACCEPTED}"
    return None


def register(app: typer.Typer) -> None:
    @app.command()
    def plot(
        run_dir: str = typer.Argument(
            ..., help=f"A run directory of `anyfeedback train` (or {ACCEPTED})."
        ),
    ) -> None:
        """Plot a run's metrics (metrics.png) and rewrite its report."""
        import json
        from pathlib import Path

        from anyfeedback.errors import InputError

        run = Path(run_dir)
        why = _refusal(run)
        if why is not None:
            raise InputError(f"cannot plot {why}", source=run_dir)
        summary = run / "summary.json"
        config = (
            json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        )
        if "demos" in config and summary.is_file():  # aihf / self-play: their own report
            from anyfeedback.llm.aihf.report import write_outputs

            data = json.loads(summary.read_text(encoding="utf-8"))
            title = _aihf_title(config)
            write_outputs(run, title, data.get("start", {}), data.get("final", {}), config)
            report = run / "report.md"
        else:
            from anyfeedback.llm.report import write_report

            report = write_report(run)
        png = run / "metrics.png"
        if png.is_file():
            typer.echo(f"wrote {report} and {png}")
        else:
            typer.echo(f"wrote {report}; no numeric metrics to draw, so no {png.name}")


def _aihf_title(config: dict) -> str:
    """The title the AIHF / self-play loop gave its report."""
    if "reward_model" in config:
        return "AIHF (Algorithm 1)"
    demo, pref = config.get("demo_weight", 0), config.get("pref_weight", 0)
    if demo > 0 and pref > 0:
        return "Self-Play AIHF"
    return "SPIN" if demo > 0 else "iterated DPO (reference π_t)"
