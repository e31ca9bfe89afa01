"""The bandit harness end to end: every method on a short budget through the CLI, the JSON
schema, the divergence detector, user functions, seeding, bad inputs (one line, exit 2)."""

import json

import numpy as np
import pytest
import torch

from anyfeedback.bandit.engine import Block, EngineConfig, run_engine
from anyfeedback.bandit.functions import FUNCTIONS
from anyfeedback.cli import main
from anyfeedback.policies import GaussianPolicy

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_METHODS = (
    "pmpo-ar,pmpo-a,pmpo-r,pmpo-ar:solver=gradient,pmpo-r:beta=adaptive,"
    "pmpo:alpha=0.3:beta=30,pmpo-a:decoupled=true:beta=3,dpo,mpo,cem,cma-es,cma-es-default"
)
RUN_KEYS = {
    "function",
    "method",
    "seed",
    "diverged",
    "divergence",
    "final_f_mean",
    "final_f_best",
    "evals_to_target_mean",
    "evals_to_target_best",
    "diagnostics",
    "curve",
}


def shifted_quadratic(y):
    """User function for the module:callable path: Σ (y_i − 0.5)², optimum 0 at y = 0.5."""
    return np.sum((y - 0.5) ** 2, axis=-1)


def returns_nan(y):
    return np.full(y.shape[0], np.nan)


def _run(args, tmp_path, capsys):
    code = main(["bandit", *args, "--out", str(tmp_path), "--quiet"])
    captured = capsys.readouterr()
    return code, captured


def test_every_method_short_run_and_schema(tmp_path, capsys):
    """200 evaluations × 2 seeds for every method (and custom α/β, adaptive β, the gradient
    solver, decoupled β): exit 0, results.json follows the schema, equal budgets, plots."""
    args = [
        "run",
        "--function",
        "sphere",
        "--dim",
        "3",
        "--methods",
        ALL_METHODS,
        "--seeds",
        "2",
        "--evals",
        "200",
        "--curve-every",
        "40",
        "--workers",
        "0",
    ]
    code, out = _run(args, tmp_path, capsys)
    assert code == 0, out.err
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["schema"] == "anyfeedback.bandit/1"
    assert res["grid"] == [0, 40, 80, 120, 160, 200]
    methods = ALL_METHODS.split(",")
    assert len(res["runs"]) == len(methods) * 2
    for run in res["runs"]:
        assert set(run) == RUN_KEYS
        assert len(run["curve"]["f_mean"]) == len(run["curve"]["f_best"]) == 6
        assert run["curve"]["f_best"][0] is None  # nothing sampled at 0 evaluations
        assert run["diverged"] or np.isfinite(run["final_f_best"])
        assert run["seed"] in (1, 2)
    assert set(res["summary"]["sphere"]) == set(methods)
    assert res["config"]["evals"] == 200 and res["config"]["dim"] == 3
    assert json.loads((tmp_path / "config.json").read_text())["methods"] == methods
    for name in ("curves.png", "curves_best.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "| cma-es |" in report and "anyfeedback bandit run" in report


def test_user_function_end_to_end_without_run_keyword(tmp_path, capsys):
    """`anyfeedback bandit --function module:callable` (no `run`): PMPO-AR and CMA-ES (in a
    worker process) both make progress on a function defined in this test module."""
    args = [
        "--function",
        "test_bandit_run:shifted_quadratic",
        "--dim",
        "4",
        "--methods",
        "pmpo-ar,cma-es",
        "--seeds",
        "2",
        "--evals",
        "800",
        "--workers",
        "1",
    ]
    code, out = _run(args, tmp_path, capsys)
    assert code == 0, out.err
    res = json.loads((tmp_path / "results.json").read_text())
    assert {r["function"] for r in res["runs"]} == {"test_bandit_run:shifted_quadratic"}
    for run in res["runs"]:
        assert run["final_f_mean"] < run["curve"]["f_mean"][0] / 10


class _Mover:
    """A closed-form test double: each iteration shifts the mean by `shift`·σ and scales σ."""

    gradient = False

    def __init__(self, rows, shift=0.0, grow=1.0, nan_at=None):
        self.rows, self.shift, self.grow, self.nan_at, self.t = rows, shift, grow, nan_at, 0

    def solve(self, ref, fb):
        self.t += 1
        mean = ref.mean + self.shift * ref.std
        if self.nan_at is not None and self.t >= self.nan_at:
            mean = mean * float("nan")
        ok = torch.ones(mean.shape[0], dtype=torch.bool)
        return GaussianPolicy(mean, ref.scale * self.grow), ok

    def end_iteration(self, *a, **k):
        pass

    def diagnostics(self, iterations):
        return {}


def test_divergence_detector_freezes_and_reports():
    """f(μ) > 1e3·f(μ₀) → f_increased; σ > 1e4·σ₀ → covariance_exploded; NaN → nan. Each run
    is frozen at its last finite policy (finite final value), its later curve is NaN, and
    runs beside it are unaffected."""
    sphere = FUNCTIONS["sphere"]
    blocks = [
        Block("up", _Mover(slice(0, 1), shift=3.0), slice(0, 1)),
        Block("wide", _Mover(slice(1, 2), grow=2.0), slice(1, 2)),
        Block("nan", _Mover(slice(2, 3), nan_at=5), slice(2, 3)),
        Block("still", _Mover(slice(3, 4)), slice(3, 4)),
    ]
    x0 = np.full((4, 2), 1.0)
    out = run_engine(
        EngineConfig(dim=2, iterations=60), blocks, [sphere] * 4, [1] * 4, x0, np.ones(4)
    )
    assert out.reason == ["f_increased", "covariance_exploded", "nan", None]
    assert out.diverged_at[2] == 4 and out.diverged_at[3] == -1
    assert np.isnan(out.f_mean[-1, :3]).all() and np.isfinite(out.final_f_mean).all()
    assert out.final_f_mean[3] == pytest.approx(2.0)


def test_exact_mstep_failures_and_warning_reach_the_report(tmp_path, capsys):
    """PMPO-R at β = 0.1 < 1 − α: the config warns (one `warning:` line) and every exact M-step
    fails (W < 0), so the runs are reported as diverged ("mstep_failed"), not crashed."""
    args = [
        "run",
        "--function",
        "sphere",
        "--dim",
        "2",
        "--methods",
        "pmpo-r:beta=0.1",
        "--seeds",
        "2",
        "--evals",
        "400",
        "--workers",
        "0",
    ]
    code, out = _run(args, tmp_path, capsys)
    assert code == 0
    warnings = [line for line in out.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "beta=0.1 < 1 - alpha=1" in warnings[0]
    res = json.loads((tmp_path / "results.json").read_text())
    for run in res["runs"]:
        assert run["diverged"] and run["divergence"]["reason"] == "mstep_failed"
        assert run["diagnostics"]["mstep_failures"] >= 50
    assert "## Diverged runs" in (tmp_path / "report.md").read_text()


def test_results_do_not_depend_on_the_batch():
    """Common random numbers per seed: PMPO-AR on sphere gives the same numbers alone and
    batched with other functions and methods (one tensor program, independent rows)."""
    from anyfeedback.bandit.config import BanditConfig
    from anyfeedback.bandit.run import run_bandit

    def finals(functions, methods):
        cfg = BanditConfig(
            functions=functions, dim=3, methods=methods, seeds=2, evals=120, workers=0
        )
        res = run_bandit(cfg, show_progress=False)
        return [
            r["final_f_mean"]
            for r in res["runs"]
            if r["function"] == "sphere" and r["method"] == "pmpo-ar"
        ]

    alone = finals(("sphere",), ("pmpo-ar",))
    assert alone == finals(("rastrigin", "sphere"), ("cem", "pmpo-ar", "dpo"))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--function", "nope"], "unknown function"),
        (["--methods", "pmpo-ar,nope"], "unknown method"),
        (["--methods", "pmpo-ar:gamma=3"], "bad option"),
        (["--dim", "0"], "dim"),
        (["--seeds", "0"], "seeds"),
        (["--function", "test_bandit_run:returns_nan"], "non-finite"),
        (["--function", "no_module_here:f"], "cannot import"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(args, needle, tmp_path, capsys):
    code, out = _run(["run", *args, "--evals", "40", "--workers", "0"], tmp_path, capsys)
    lines = out.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_bare_bandit_prints_help(capsys):
    assert main(["bandit"]) == 0
    out = capsys.readouterr().out
    assert "sweep" in out and "--function" in out


def test_sweep_writes_heatmap_and_json(tmp_path, capsys):
    args = [
        "sweep",
        "--function",
        "sphere",
        "--dim",
        "2",
        "--alphas",
        "0,1",
        "--betas",
        "0,2",
        "--seeds",
        "1",
        "--evals",
        "200",
        "--refresh-every",
        "10",
    ]
    code, out = _run(args, tmp_path, capsys)
    assert code == 0, out.err
    assert any(line.startswith("warning: PMPO beta=0") for line in out.err.splitlines())
    res = json.loads((tmp_path / "sweep.json").read_text())
    assert [(c["alpha"], c["beta"]) for c in res["cells"]] == [(0, 0), (0, 2), (1, 0), (1, 2)]
    assert res["cells"][0]["below_bound"] and not res["cells"][1]["below_bound"]
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    assert "| α \\ β |" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "flags",
    [
        [
            "--methods",
            "pmpo-ar,pmpo-r,dpo",
            "--solver",
            "gradient",
            "--refresh-every",
            "5",
            "--covariance",
            "diag",
            "--normalization",
            "global",
            "--samples",
            "6",
            "--sigma0",
            "0.5",
            "--target",
            "1",
            "--curve-every",
            "60",
        ],
        [
            "--methods",
            "pmpo-ar:solver=gradient,mpo,cem,pmpo-a",
            "--ema",
            "0.5",
            "--param",
            "absolute",
            "--lr",
            "0.01",
            "--steps",
            "3",
        ],
        [
            "--methods",
            "pmpo-ar:beta=adaptive:decoupled=true,pmpo-r:beta=adaptive",
            "--epsilon",
            "0.02",
            "--covariance",
            "diag",
        ],
    ],
)
def test_every_option_runs(flags, tmp_path, capsys):
    """The engine's options (gradient solver with a slow / EMA reference, absolute parameters,
    diagonal covariance, global normalisation, K = 6, adaptive and decoupled β) run end to end
    and keep every run finite."""
    args = [
        "run",
        "--function",
        "sphere",
        "--dim",
        "3",
        "--seeds",
        "2",
        "--evals",
        "180",
        "--workers",
        "0",
        *flags,
    ]
    code, out = _run(args, tmp_path, capsys)
    assert code == 0, out.err
    res = json.loads((tmp_path / "results.json").read_text())
    for run in res["runs"]:
        assert not run["diverged"] and np.isfinite(run["final_f_mean"]), run
        assert run["final_f_mean"] < run["curve"]["f_mean"][0]


def test_paper_betas_and_defaults_resolve():
    """Bandit defaults (exact: AR 35, A 50, R 50; gradient: AR 20, A 20) and the paper's values
    under --paper-betas (AR 0.5, A 0, R 2, DPO 0.1), which sit exactly on the β ≥ 1 − α bound (no
    warning); β = 0.5 < 1 − 0 for PMPO-R warns at config time."""
    from anyfeedback.bandit.config import BanditConfig
    from anyfeedback.losses.pmpo import BetaBelowBoundWarning

    cfg = BanditConfig(methods=("pmpo-ar", "pmpo-a", "pmpo-r", "pmpo-a:solver=gradient", "dpo"))
    assert [m.options["beta"] for m in cfg.resolved] == [35.0, 50.0, 50.0, 20.0, 100.0]
    paper = BanditConfig(methods=("pmpo-ar", "pmpo-a", "pmpo-r", "dpo"), paper_betas=True)
    assert [m.options["beta"] for m in paper.resolved] == [0.5, 0.0, 2.0, 0.1]
    with pytest.warns(BetaBelowBoundWarning):
        BanditConfig(methods=("pmpo-r:beta=0.5",))
