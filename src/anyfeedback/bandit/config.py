"""Configuration of a bandit run: one flat dataclass, method specs parsed at the edge.

A method spec is `NAME` or `NAME:key=value:key=value`, e.g. `pmpo-r:beta=2`,
`pmpo:alpha=0.3:beta=20`, `pmpo-ar:beta=adaptive:epsilon=0.02`, `cma-es:popsize=10`.

Defaults and the β mapping (PMPO §7.1). The paper's β (AR 0.5, A 0, R 2) belong to its
normalisation and its slowly refreshed reference. Here 4 samples per iteration and π_ref ← π_θ
every iteration, so β is the trust region of each step: the exact step moves the mean by
Σwᵢzᵢ/(Σwᵢ+β) reference standard deviations. At β ≤ 2 the exact M-step fails (Σ* not PD) for
every variant and Adam steps stall; `--paper-betas` restores the paper's values (and DPO's 0.1)
for every method without an explicit beta. Defaults (choice; tuned at d = 10, 10,000 evals):

  start      x₀ ~ U(box)^d per seed, Σ₀ = σ₀²I with σ₀ = ¼ of the box (all methods, CMA-ES too)
  PMPO       exact M-step, per-set means; β: AR 35, A 50, R 50 (gradient solver: 20, 20, 50 with
             Adam lr 0.01); adaptive β: ε = 0.01 nats per iteration, ln β step 0.1·ln(KL/ε)
  DPO        β = 100 (the sigmoid saturates after a margin ≈ 1/β: its trust region), lr 0.005
  MPO        ε = 0.5 (< log 4), ε_μ = 0.02, ε_Σ = 0.01, lr 0.02, duals stepped per iteration
  CEM        diagonal, 2 elites of 4, smoothing 0.5, noise floor 0.1·σ₀²·0.99^t
  gradient   10 Adam steps per iteration on whitened parameters (moments reset at each refresh)
  CMA-ES     pycma defaults; population 4 (`cma-es`) and 4 + ⌊3 ln d⌋ (`cma-es-default`)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from anyfeedback.configfile import check_choice, positive
from anyfeedback.errors import InputError

PMPO_ALPHA = {"pmpo-ar": 0.5, "pmpo-a": 1.0, "pmpo-r": 0.0, "pmpo": 0.5}
BANDIT_BETA = {"pmpo-ar": 35.0, "pmpo-a": 50.0, "pmpo-r": 50.0, "pmpo": 35.0}  # exact solver
GRADIENT_BETA = {"pmpo-ar": 20.0, "pmpo-a": 20.0, "pmpo-r": 50.0, "pmpo": 20.0}  # gradient solver
PAPER_BETA = {"pmpo-ar": 0.5, "pmpo-a": 0.0, "pmpo-r": 2.0, "pmpo": 0.5}
DPO_BETA, DPO_PAPER_BETA = 100.0, 0.1
DEFAULT_LR = {"pmpo": 0.01, "dpo": 0.005, "mpo": 0.02}  # Adam lr per gradient method (tuned)
METHOD_KEYS = {
    "pmpo": {
        "alpha",
        "beta",
        "epsilon",
        "beta_lr",
        "solver",
        "decoupled",
        "beta_cov",
        "epsilon_cov",
        "lr",
    },
    "dpo": {"beta", "lr"},
    "mpo": {"epsilon", "epsilon_mean", "epsilon_cov", "lr"},
    "cem": {"smoothing", "noise", "decay", "elites"},
    "cma-es": {"popsize"},
}
KINDS = {**{n: "pmpo" for n in PMPO_ALPHA}, "dpo": "dpo", "mpo": "mpo", "cem": "cem"}
KINDS.update({"cma-es": "cma-es", "cma-es-default": "cma-es"})
DEFAULT_METHODS = (
    "pmpo-ar",
    "pmpo-a",
    "pmpo-r",
    "dpo",
    "mpo",
    "cem",
    "cma-es",
    "cma-es-default",
)


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method: its label (the spec string), kind and resolved options."""

    label: str
    kind: str
    options: dict = field(default_factory=dict)


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_method(spec: str) -> tuple[str, str, dict]:
    """`name:key=value:...` -> (name, kind, raw options). Raises InputError on unknown names/keys."""
    name, *pairs = [p.strip() for p in spec.strip().split(":")]
    if name not in KINDS:
        known = ", ".join(KINDS)
        raise InputError(f"unknown method {name!r} (known: {known})", field="methods")
    kind = KINDS[name]
    options = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or key not in METHOD_KEYS[kind]:
            allowed = ", ".join(sorted(METHOD_KEYS[kind]))
            raise InputError(f"{spec!r}: bad option {pair!r} (allowed: {allowed})", field="methods")
        options[key] = _value(text)
    return name, kind, options


@dataclass
class BanditConfig:
    """Resolved configuration of `anyfeedback bandit run` (saved with every run)."""

    functions: tuple[str, ...] = ("rosenbrock",)
    """Function(s), comma-separated: sphere, ellipsoid, rosenbrock, schwefel (1.2), schwefel226,
    rastrigin, ackley, or module:callable ([N,d] -> [N])."""
    dim: int = 10
    """Problem dimension d."""
    methods: tuple[str, ...] = DEFAULT_METHODS
    """Comma-separated method specs (NAME or NAME:key=value:...): pmpo-ar, pmpo-a, pmpo-r, pmpo,
    dpo, mpo, cem, cma-es, cma-es-default."""
    seeds: int = 5
    """Seeds per (function, method): first-seed, first-seed+1, ..."""
    first_seed: int = 1
    """First seed (pycma needs seeds >= 1)."""
    evals: int = 10_000
    """Function-evaluation budget per run (monitoring f(mean) is not counted)."""
    samples: int = 4
    """Samples per iteration (top half accepted, bottom half rejected)."""
    solver: str = "exact"
    """PMPO M-step: exact (closed form) or gradient (Adam on pmpo_loss)."""
    steps: int = 10
    """Adam steps per iteration (gradient methods: PMPO-gradient, DPO, MPO)."""
    lr: float | None = None
    """Adam learning rate (whitened parameters) for every gradient method (default: per method,
    PMPO 0.01, DPO 0.005, MPO 0.02)."""
    param: str = "whitened"
    """Policy parameters relative to pi_ref (whitened) or absolute."""
    refresh_every: int = 1
    """Refresh pi_ref <- pi every N iterations (gradient methods)."""
    ema: float = 0.0
    """If > 0: refresh pi_ref as an EMA with this rate every iteration."""
    covariance: str = "full"
    """Gaussian covariance: full (Cholesky) or diag."""
    normalization: str = "per_set"
    """pmpo_loss normalisation: per_set or global."""
    paper_betas: bool = False
    """Use the paper's beta (AR 0.5, A 0, R 2; DPO 0.1) as defaults."""
    epsilon: float = 0.01
    """Target KL(pi_ref||pi) per iteration for beta=adaptive."""
    sigma0: float | None = None
    """Initial standard deviation (default: 1/4 of the function box)."""
    target: float = 1e-2
    """Report evaluations until f <= target."""
    curve_every: int = 100
    """Curve resolution in evaluations."""
    workers: int = 1
    """Worker processes for CMA-ES (0 = inline)."""

    def __post_init__(self) -> None:
        self.functions = tuple(self.functions)
        self.methods = tuple(self.methods)
        checks = [
            (self.dim >= 1, "dim", f"must be >= 1, got {self.dim}"),
            (self.seeds >= 1, "seeds", f"must be >= 1, got {self.seeds}"),
            (self.first_seed >= 1, "first_seed", "must be >= 1 (pycma seeds 0 from the clock)"),
            (self.samples >= 2, "samples", f"must be >= 2, got {self.samples}"),
            (self.evals >= self.samples, "evals", f"must be >= samples ({self.samples})"),
            (self.steps >= 1, "steps", f"must be >= 1, got {self.steps}"),
            (self.lr is None or self.lr > 0, "lr", f"must be > 0, got {self.lr}"),
            (self.refresh_every >= 1, "refresh_every", "must be >= 1"),
            (0.0 <= self.ema < 1.0, "ema", f"must be in [0, 1), got {self.ema}"),
            (self.solver in ("exact", "gradient"), "solver", "must be 'exact' or 'gradient'"),
            (self.param in ("whitened", "absolute"), "param", "must be 'whitened' or 'absolute'"),
            (self.covariance in ("full", "diag"), "covariance", "must be 'full' or 'diag'"),
            (self.normalization in ("per_set", "global"), "normalization", "per_set or global"),
            (self.epsilon > 0, "epsilon", "must be > 0"),
            (self.sigma0 is None or self.sigma0 > 0, "sigma0", "must be > 0"),
            (self.curve_every >= 1, "curve_every", "must be >= 1"),
            (self.workers >= 0, "workers", "must be >= 0"),
            (len(self.functions) >= 1, "function", "give at least one function"),
            (len(self.methods) >= 1, "methods", "give at least one method"),
        ]
        for ok, name, problem in checks:
            if not ok:
                raise InputError(problem, field=name)
        if len(set(self.methods)) != len(self.methods):
            raise InputError("a method is listed twice", field="methods")
        self.resolved = [self._resolve_checked(spec) for spec in self.methods]

    @property
    def iterations(self) -> int:
        return self.evals // self.samples

    @property
    def n_accepted(self) -> int:
        return self.samples // 2

    def _resolve_checked(self, spec: str) -> MethodSpec:
        """`resolve`, with a value that is not a number (pmpo:alpha=abc) as one InputError."""
        try:
            return self.resolve(spec)
        except InputError:
            raise
        except (TypeError, ValueError) as err:
            raise InputError(f"{spec!r}: {err}", field="methods") from None

    def resolve(self, spec: str) -> MethodSpec:
        """Fill a method's options with the defaults; warn if PMPO's β < 1 − α (docs/algorithms.md#pmpo-kl)."""
        # torch-backed checks, imported here so that `anyfeedback --help` does not load torch
        from anyfeedback.losses.mpo import check_mpo_epsilon
        from anyfeedback.losses.pmpo import check_pmpo_beta

        name, kind, opts = parse_method(spec)
        if kind == "pmpo":
            alpha = float(opts.get("alpha", PMPO_ALPHA[name]))
            if name != "pmpo" and "alpha" in opts:
                raise InputError(f"{spec!r}: alpha is fixed for {name}; use pmpo:alpha=…")
            solver = opts.get("solver", self.solver)
            if solver not in ("exact", "gradient"):
                raise InputError(f"{spec!r}: solver must be 'exact' or 'gradient'")
            tuned = (BANDIT_BETA if solver == "exact" else GRADIENT_BETA)[name]
            beta = opts.get("beta", PAPER_BETA[name] if self.paper_betas else tuned)
            adaptive = beta == "adaptive"
            if not adaptive and not isinstance(beta, (int, float)):
                raise InputError(f"{spec!r}: beta must be a number or 'adaptive'")
            beta0 = tuned if adaptive else float(beta)  # adaptive β starts at the tuned value
            if not 0.0 <= alpha <= 1.0 or beta0 < 0:
                raise InputError(f"{spec!r}: need 0 <= alpha <= 1 and beta >= 0")
            check_pmpo_beta(
                alpha, beta0, stacklevel=3
            )  # warns: β < 1 − α (docs/algorithms.md#pmpo-kl)
            out = dict(alpha=alpha, beta=beta0, solver=solver, adaptive=adaptive)
            out.update(epsilon=float(opts.get("epsilon", self.epsilon)))
            out.update(beta_lr=float(opts.get("beta_lr", 0.1)))
            out.update(decoupled=bool(opts.get("decoupled", False)))
            out.update(beta_cov=float(opts.get("beta_cov", 50.0)))
            out.update(epsilon_cov=float(opts.get("epsilon_cov", 0.001)))
            out.update(lr=_lr(spec, opts.get("lr", self.lr or DEFAULT_LR["pmpo"])))
            return MethodSpec(spec, kind, out)
        if kind == "dpo":
            beta = float(opts.get("beta", DPO_PAPER_BETA if self.paper_betas else DPO_BETA))
            if beta <= 0:
                raise InputError(f"{spec!r}: beta must be > 0")
            lr = _lr(spec, opts.get("lr", self.lr or DEFAULT_LR["dpo"]))
            return MethodSpec(spec, kind, {"beta": beta, "lr": lr})
        if kind == "mpo":
            out = {
                "epsilon": float(opts.get("epsilon", 0.5)),
                "epsilon_mean": float(opts.get("epsilon_mean", 0.02)),
                "epsilon_cov": float(opts.get("epsilon_cov", 0.01)),
                "lr": _lr(spec, opts.get("lr", self.lr or DEFAULT_LR["mpo"])),
            }
            try:
                check_mpo_epsilon(out["epsilon"], self.samples)
            except ValueError as err:
                raise InputError(str(err), field="methods") from err
            return MethodSpec(spec, kind, out)
        if kind == "cem":
            elites = int(opts.get("elites", self.n_accepted))
            if not 1 <= elites < self.samples:
                raise InputError(f"{spec!r}: elites must be in [1, samples)")
            out = {"smoothing": float(opts.get("smoothing", 0.5)), "elites": elites}
            out.update(noise=float(opts.get("noise", 0.1)), decay=float(opts.get("decay", 0.99)))
            return MethodSpec(spec, kind, out)
        popsize = opts.get("popsize", None if name == "cma-es-default" else self.samples)
        if popsize is not None and (not isinstance(popsize, int) or popsize < 2):
            raise InputError(f"{spec!r}: popsize must be an integer >= 2")
        return MethodSpec(spec, kind, {"popsize": popsize})


def _lr(spec: str, value) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or value <= 0:
        raise InputError(f"{spec!r}: lr must be a number > 0")
    return float(value)


def default_popsize(dim: int) -> int:
    """pycma's default λ = 4 + ⌊3 ln d⌋."""
    return 4 + int(3 * math.log(dim))


@dataclass
class SweepConfig:
    """Resolved configuration of `anyfeedback bandit sweep` (saved with the results)."""

    function: str = "sphere"
    """Function (name or module:callable)."""
    dim: int = 10
    """Problem dimension d."""
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0)
    """Comma-separated alpha values (rows of the heat map)."""
    betas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0)
    """Comma-separated beta values (the paper's scale)."""
    seeds: int = 5
    """Seeds per cell."""
    first_seed: int = 1
    """First seed."""
    evals: int = 30_000
    """Evaluations per run (60 reference refreshes at the defaults)."""
    samples: int = 4
    """Samples per iteration (top half accepted, bottom half rejected)."""
    steps: int = 2
    """Adam steps per iteration."""
    lr: float = 0.02
    """Adam learning rate (whitened local parameters)."""
    refresh_every: int = 50
    """Refresh pi_ref <- pi every N iterations (slow reference)."""
    normalization: str = "per_set"
    """pmpo_loss normalisation: per_set or global."""
    covariance: str = "full"
    """Gaussian covariance: full or diag."""

    def __post_init__(self) -> None:
        self.alphas, self.betas = tuple(self.alphas), tuple(self.betas)
        if not self.alphas or not self.betas:
            raise InputError("give at least one alpha and one beta", field="alphas/betas")
        if any(not 0 <= a <= 1 for a in self.alphas):
            raise InputError("alphas must lie in [0, 1]", field="alphas")
        if any(b < 0 for b in self.betas):
            raise InputError("betas must be >= 0", field="betas")
        positive(self, "dim", "seeds", "first_seed", "steps", "refresh_every", source=None)
        if self.samples < 2 or self.evals < self.samples:
            raise InputError("need samples >= 2 and evals >= samples", field="evals")
        if self.lr <= 0:
            raise InputError("must be > 0", field="lr")
        check_choice(self, "normalization", ("per_set", "global"), source=None)
        check_choice(self, "covariance", ("full", "diag"), source=None)
