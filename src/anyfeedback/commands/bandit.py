"""`anyfeedback bandit`: black-box optimisation from preferences (PMPO §5.1, Fig. 1 and Fig. 3).

  anyfeedback bandit run --function rosenbrock --dim 10 --methods pmpo-ar,pmpo-a,cma-es --out DIR
  anyfeedback bandit --function rosenbrock --out DIR          (the same: `run` is the default)
  anyfeedback bandit sweep --function sphere --alphas 0,0.5,1 --betas 0,0.5,1,2,4 --out DIR

Options come from `BanditConfig` / `SweepConfig` (comma lists for tuples). Bad inputs raise
`InputError` (one line, exit 2); the β < 1 − α warning is printed as one `warning:` line.
Heavy imports (torch, matplotlib, cma) happen inside the commands.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import typer

RUN_OPTIONS: list[tuple[str, Any, type, str]] = [
    (
        "function",
        "rosenbrock",
        str,
        "Function(s), comma-separated: sphere, ellipsoid, rosenbrock, "
        "schwefel (1.2), schwefel226, rastrigin, ackley, or module:callable ([N,d] -> [N]).",
    ),
    ("dim", 10, int, "Problem dimension d."),
    (
        "methods",
        None,
        str,
        "Comma-separated method specs (NAME or NAME:key=value:...): "
        "pmpo-ar, pmpo-a, pmpo-r, pmpo, dpo, mpo, cem, cma-es, cma-es-default. "
        "(default: pmpo-ar,pmpo-a,pmpo-r,dpo,mpo,cem,cma-es,cma-es-default)",
    ),
    ("seeds", 5, int, "Seeds per (function, method): first-seed, first-seed+1, ..."),
    ("first_seed", 1, int, "First seed (pycma needs seeds >= 1)."),
    ("evals", 10_000, int, "Function-evaluation budget per run."),
    ("samples", 4, int, "Samples per iteration (top half accepted, bottom half rejected)."),
    ("solver", "exact", str, "PMPO M-step: exact (closed form) or gradient (Adam on pmpo_loss)."),
    ("steps", 10, int, "Adam steps per iteration (gradient methods: PMPO-gradient, DPO, MPO)."),
    (
        "lr",
        None,
        float,
        "Adam learning rate (whitened parameters) for every gradient method "
        "(default: per method, PMPO 0.01, DPO 0.005, MPO 0.02).",
    ),
    ("param", "whitened", str, "Policy parameters relative to pi_ref (whitened) or absolute."),
    ("refresh_every", 1, int, "Refresh pi_ref <- pi every N iterations (gradient methods)."),
    ("ema", 0.0, float, "If > 0: refresh pi_ref as an EMA with this rate every iteration."),
    ("covariance", "full", str, "Gaussian covariance: full (Cholesky) or diag."),
    ("normalization", "per_set", str, "pmpo_loss normalisation: per_set or global."),
    ("paper_betas", False, bool, "Use the paper's beta (AR 0.5, A 0, R 2; DPO 0.1) as defaults."),
    ("epsilon", 0.01, float, "Target KL(pi_ref||pi) per iteration for beta=adaptive."),
    ("sigma0", None, float, "Initial standard deviation (default: 1/4 of the function box)."),
    ("target", 1e-2, float, "Report evaluations until f <= target."),
    ("curve_every", 100, int, "Curve resolution in evaluations."),
    ("workers", 1, int, "Worker processes for CMA-ES (0 = inline)."),
]
SWEEP_OPTIONS: list[tuple[str, Any, type, str]] = [
    ("function", "sphere", str, "Function (name or module:callable)."),
    ("dim", 10, int, "Problem dimension d."),
    ("alphas", "0,0.5,1", str, "Comma-separated alpha values."),
    ("betas", "0,0.25,0.5,1,1.5,2,4", str, "Comma-separated beta values (the paper's scale)."),
    ("seeds", 5, int, "Seeds per cell."),
    ("first_seed", 1, int, "First seed."),
    ("evals", 30_000, int, "Evaluations per run."),
    ("samples", 4, int, "Samples per iteration."),
    ("steps", 2, int, "Adam steps per iteration."),
    ("lr", 0.02, float, "Adam learning rate."),
    ("refresh_every", 50, int, "Refresh pi_ref <- pi every N iterations (slow reference)."),
    ("normalization", "per_set", str, "pmpo_loss normalisation: per_set or global."),
    ("covariance", "full", str, "full or diag."),
]


def _signature(options, *, with_ctx: bool, resume: bool = False) -> inspect.Signature:
    params = []
    if with_ctx:
        params.append(
            inspect.Parameter(
                "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
            )
        )
    for name, default, typ, help_text in options:
        flag = "--" + name.replace("_", "-")
        decl = (flag + "/--no-" + flag[2:],) if typ is bool else (flag,)
        opt = typer.Option(default, *decl, help=help_text)
        ann = Optional[typ] if default is None else typ
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
        )
    out_opt = typer.Option(
        None, "--out", help="Output directory (default: runs/bandit/<function(s)>)."
    )
    params.append(
        inspect.Parameter(
            "out", inspect.Parameter.KEYWORD_ONLY, default=out_opt, annotation=Optional[str]
        )
    )
    overwrite = typer.Option(
        False, help="Replace the outputs of an earlier run in --out (only files a run writes)."
    )
    params.append(
        inspect.Parameter(
            "overwrite", inspect.Parameter.KEYWORD_ONLY, default=overwrite, annotation=bool
        )
    )
    if resume:
        res = typer.Option(
            False, help="Continue a killed run in --out: finished pieces are not rerun."
        )
        params.append(
            inspect.Parameter(
                "resume", inspect.Parameter.KEYWORD_ONLY, default=res, annotation=bool
            )
        )
    quiet = typer.Option(False, "--quiet", help="No progress bar.")
    params.append(
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=quiet, annotation=bool)
    )
    return inspect.Signature(params)


def _set_signature(fn, options, *, with_ctx: bool, resume: bool = False) -> None:
    """Give `fn(**kw)` the typed signature typer reads (as `anyfeedback train` does)."""
    sig = _signature(options, with_ctx=with_ctx, resume=resume)
    fn.__signature__ = sig
    fn.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()} | {"return": None}


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _floats(text: str, name: str) -> tuple[float, ...]:
    from anyfeedback.errors import InputError

    try:
        return tuple(float(t) for t in _split(text))
    except ValueError:
        raise InputError(f"expected comma-separated numbers, got {text!r}", field=name) from None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {message}", err=True)


def _default_out(kind: str, name: str) -> str:
    """runs/bandit/<functions> or runs/bandit/sweep_<function> (module:callable made safe)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"runs/bandit/{kind}{safe}"


def do_run(
    out: str | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    **kw: Any,
) -> None:
    """Build the config, run every (function, method, seed) and write the run directory."""
    import warnings

    from anyfeedback.bandit.config import DEFAULT_METHODS, BanditConfig
    from anyfeedback.bandit.outputs import write_run_outputs
    from anyfeedback.bandit.pieces import Pieces
    from anyfeedback.bandit.run import run_bandit
    from anyfeedback.errors import check_finite_fields
    from anyfeedback.runs import prepare_output_dir

    kw["functions"] = tuple(_split(kw.pop("function")))
    out = _default_out("", "+".join(kw["functions"])) if out is None else out
    kw["methods"] = tuple(_split(kw["methods"])) if kw["methods"] else DEFAULT_METHODS
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _one_line_warning
        cfg = BanditConfig(**kw)
        check_finite_fields(cfg)
        with prepare_output_dir(out, resume=resume, overwrite=overwrite) as path:
            pieces = Pieces(path / "pieces", cfg, resume=resume)
            results = run_bandit(cfg, show_progress=not quiet, pieces=pieces)
            report = write_run_outputs(results, out)
    diverged = sum(r["diverged"] for r in results["runs"])
    typer.echo(
        f"done: {len(results['runs'])} runs in {results['seconds']:.1f} s "
        f"({diverged} diverged); results in {out}/results.json, report {report}"
    )


def do_sweep(
    out: str | None = None, quiet: bool = False, overwrite: bool = False, **kw: Any
) -> None:
    """Run the α × β grid and write sweep.json, heatmap.png and report.md."""
    import warnings

    from anyfeedback.bandit.outputs import write_sweep_outputs
    from anyfeedback.bandit.sweep import SweepConfig, run_sweep
    from anyfeedback.errors import check_finite_fields
    from anyfeedback.runs import prepare_output_dir

    out = _default_out("sweep_", kw["function"]) if out is None else out
    kw["alphas"] = _floats(kw["alphas"], "alphas")
    kw["betas"] = _floats(kw["betas"], "betas")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _one_line_warning
        cfg = SweepConfig(**kw)
        check_finite_fields(cfg)
        with prepare_output_dir(out, overwrite=overwrite):
            results = run_sweep(cfg, show_progress=not quiet)
            report = write_sweep_outputs(results, out)
    typer.echo(f"done: sweep in {results['seconds']:.1f} s; heat map {out}/heatmap.png, {report}")


def register(app: typer.Typer) -> None:
    bandit = typer.Typer(
        help="Black-box optimisation from preferences: PMPO, DPO, MPO, CEM, CMA-ES (PMPO Fig. 1). "
        "User code: a --function given as module:callable or file.py:callable is imported and "
        "run; it is the only code this command executes from its inputs (docs/safety.md).",
        invoke_without_command=True,
        no_args_is_help=False,
    )

    def group(ctx: typer.Context, **kw: Any) -> None:
        if ctx.invoked_subcommand is not None:
            return
        if kw.get("out") is None and _all_default(kw):  # bare `anyfeedback bandit`: help
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        do_run(**kw)

    _set_signature(group, RUN_OPTIONS, with_ctx=True, resume=True)
    group.__doc__ = "Black-box optimisation from preferences (`run` is the default command)."
    bandit.callback()(group)

    def run(**kw: Any) -> None:
        do_run(**kw)

    _set_signature(run, RUN_OPTIONS, with_ctx=False, resume=True)
    run.__doc__ = "Optimise functions with every method over seeds; write results.json, plots."
    bandit.command("run")(run)

    def sweep(**kw: Any) -> None:
        do_sweep(**kw)

    _set_signature(sweep, SWEEP_OPTIONS, with_ctx=False)
    sweep.__doc__ = "PMPO alpha x beta sweep on one function: heat map of final f (PMPO Fig. 3)."
    bandit.command("sweep")(sweep)
    app.add_typer(bandit, name="bandit")


def _all_default(kw: dict) -> bool:
    return all(kw.get(name) == default for name, default, _, _ in RUN_OPTIONS)
