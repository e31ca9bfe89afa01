"""`anyfeedback bandit`: black-box optimisation from preferences (PMPO §5.1, Fig. 1 and Fig. 3).

  anyfeedback bandit run --function rosenbrock --dim 10 --methods pmpo-ar,pmpo-a,cma-es --out DIR
  anyfeedback bandit --function rosenbrock --out DIR          (the same: `run` is the default)
  anyfeedback bandit sweep --function sphere --alphas 0,0.5,1 --betas 0,0.5,1,2,4 --out DIR

Options are generated from `BanditConfig` / `SweepConfig` by `commands/options.py` (comma lists
for tuples, `--config FILE` too). Bad inputs raise `InputError` (one line, exit 2); the β < 1 − α
warning is printed as one `warning:` line. Heavy imports (torch, matplotlib, cma) happen inside
the commands.
"""

from __future__ import annotations

from typing import Optional

import typer

from anyfeedback.commands.options import Extra, config_command

EXTRAS = (
    Extra("out", None, Optional[str], "Output directory (default: runs/bandit/<function(s)>)."),
    Extra(
        "overwrite",
        False,
        bool,
        "Replace the outputs of an earlier run in --out (only files a run writes).",
    ),
    Extra("quiet", False, bool, "No progress bar."),
)
RUN_EXTRAS = (
    *EXTRAS,
    Extra("resume", False, bool, "Continue a killed run in --out: finished pieces are not rerun."),
)
SWEEP_EXTRAS = (
    *EXTRAS,
    Extra(
        "resume", False, bool, "Continue a killed sweep in --out: finished alphas are not rerun."
    ),
)
FLAG_NAMES = {"functions": "--function"}


def _default_out(kind: str, name: str) -> str:
    """runs/bandit/<functions> or runs/bandit/sweep_<function> (module:callable made safe)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"runs/bandit/{kind}{safe}"


def _run_in_out_dir(
    build,
    *,
    default_out,
    run,
    write,
    out: str | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    resume: bool = False,
):
    """Build the config, then run it in its output directory (resumable piece by piece) and write
    its outputs; returns (results, out, report)."""
    import warnings

    from anyfeedback.bandit.pieces import Pieces
    from anyfeedback.run_dir import prepare_output_dir

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        cfg = build()
        out = default_out(cfg) if out is None else out
        with prepare_output_dir(out, resume=resume, overwrite=overwrite) as path:
            pieces = Pieces(path / "pieces", cfg, resume=resume)
            results = run(cfg, show_progress=not quiet, pieces=pieces)
            report = write(results, out)
    return results, out, report


def do_run(build, **options) -> None:
    """Build the config, run every (function, method, seed) and write the run directory
    (options: out, quiet, overwrite, resume)."""
    from anyfeedback.bandit.outputs import write_run_outputs
    from anyfeedback.bandit.run import run_bandit

    def default_out(cfg):
        return _default_out("", "+".join(cfg.functions))

    results, out, report = _run_in_out_dir(
        build, default_out=default_out, run=run_bandit, write=write_run_outputs, **options
    )
    diverged = sum(r["diverged"] for r in results["runs"])
    typer.echo(
        f"done: {len(results['runs'])} runs in {results['seconds']:.1f} s "
        f"({diverged} diverged); results in {out}/results.json, report {report}"
    )


def do_sweep(build, **options) -> None:
    """Run the α × β grid and write sweep.json, heatmap.png and report.md (options as do_run)."""
    from anyfeedback.bandit.outputs import write_sweep_outputs
    from anyfeedback.bandit.sweep import run_sweep

    def default_out(cfg):
        return _default_out("sweep_", cfg.function)

    results, out, report = _run_in_out_dir(
        build, default_out=default_out, run=run_sweep, write=write_sweep_outputs, **options
    )
    typer.echo(f"done: sweep in {results['seconds']:.1f} s; heat map {out}/heatmap.png, {report}")


def register(app: typer.Typer) -> None:
    from anyfeedback.bandit.config import BanditConfig, SweepConfig

    bandit = typer.Typer(
        help="Black-box optimisation from preferences: PMPO, DPO, MPO, CEM, CMA-ES (PMPO Fig. 1). "
        "User code: a --function given as module:callable or file.py:callable is imported and "
        "run; it is the only code this command executes from its inputs (docs/safety.md).",
        invoke_without_command=True,
        no_args_is_help=False,
    )

    def group(ctx: typer.Context, build, given: bool, out=None, **extras) -> None:
        if ctx.invoked_subcommand is not None:
            return
        if out is None and not given:  # bare `anyfeedback bandit`: help
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        do_run(build, out=out, **extras)

    run_kw = dict(flag_names=FLAG_NAMES, extra=RUN_EXTRAS)
    bandit.callback()(
        config_command(
            BanditConfig,
            group,
            "Black-box optimisation from preferences (`run` is the default command).",
            with_ctx=True,
            **run_kw,
        )
    )
    bandit.command("run")(
        config_command(
            BanditConfig,
            lambda cfg_build, **extras: do_run(cfg_build, **extras),
            "Optimise functions with every method over seeds; write results.json, plots.",
            lazy=True,
            **run_kw,
        )
    )
    bandit.command("sweep")(
        config_command(
            SweepConfig,
            lambda cfg_build, **extras: do_sweep(cfg_build, **extras),
            "PMPO alpha x beta sweep on one function: heat map of final f (PMPO Fig. 3).",
            lazy=True,
            extra=SWEEP_EXTRAS,
        )
    )
    app.add_typer(bandit, name="bandit")
