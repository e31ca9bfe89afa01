"""Black-box test functions for the bandit benchmark (PMPO §5.1, Fig. 1), all minimised, f* = 0.

Every function maps points y [N, d] (numpy float64) to values [N]; d is configurable. The names
follow Hansen et al. (2003) / pycma's `cma.ff`, which PMPO cites:

  sphere       Σ y_i²                                            optimum y = 0
  ellipsoid    Σ 10^{6(i−1)/(d−1)} y_i²                           optimum y = 0  (condition 1e6)
  rosenbrock   Σ_{i<d} 100(y_{i+1} − y_i²)² + (1 − y_i)²           optimum y = 1  (d ≥ 2)
  schwefel     Σ_i (Σ_{j≤i} y_j)²   (Schwefel 1.2, double sum = `cma.ff.schwefelelli`, the default)
  schwefel226  418.98288727·d − Σ c_i sin(√|c_i|) + 1e4·Σ (|y_i| − 500)₊²,  c = clip(y, −500, 500)
               (multimodal Schwefel 2.26 on [−500, 500]^d, optimum y_i = 420.9687; off-domain
               samples are evaluated at the clipped point plus a quadratic penalty, so f ≥ 0
               everywhere and the ranking pulls a run back into the box; cf. `cma.ff.schwefelmult`)
  rastrigin    10d + Σ y_i² − 10 cos(2π y_i)                     optimum y = 0
  ackley       −20 exp(−0.2 √(mean y²)) − exp(mean cos 2πy) + 20 + e   optimum y = 0

A user function `module:callable` (an importable module, searched in the working directory too,
or `path/to/file.py:callable`) takes [N, d] and returns [N], as numpy arrays or torch tensors
(float64; a torch function is detected by its annotation or by failing on numpy; any result is
converted to numpy); it is checked for shape and
finiteness where it is first evaluated (a clear `InputError`, not a crash inside the loop).
Each function carries its initial box (the first mean is drawn uniformly in it, per seed) and
σ₀ = ¼ of the box width (pycma's advice: sigma0 ¼–⅓ of the search range).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anyfeedback.errors import InputError

__all__ = ["FUNCTIONS", "Function", "resolve_function"]

SCHWEFEL226_OPT = 420.968746359982  # argmax of x·sin(√x) on [0, 500]
SCHWEFEL226_MAX = float(SCHWEFEL226_OPT * np.sin(np.sqrt(SCHWEFEL226_OPT)))  # 418.98288727…


def sphere(y: np.ndarray) -> np.ndarray:
    return np.sum(y * y, axis=-1)


def ellipsoid(y: np.ndarray) -> np.ndarray:
    d = y.shape[-1]
    coef = 1e6 ** (np.arange(d) / (d - 1)) if d > 1 else np.ones(1)
    return np.sum(coef * y * y, axis=-1)


def rosenbrock(y: np.ndarray) -> np.ndarray:
    head, tail = y[..., :-1], y[..., 1:]
    return np.sum(100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2, axis=-1)


def schwefel12(y: np.ndarray) -> np.ndarray:
    partial = np.cumsum(y, axis=-1)  # Σ_{j≤i} y_j
    return np.sum(partial * partial, axis=-1)


def schwefel226(y: np.ndarray) -> np.ndarray:
    c = np.clip(y, -500.0, 500.0)
    outside = np.maximum(np.abs(y) - 500.0, 0.0)
    per_dim = np.maximum(SCHWEFEL226_MAX - c * np.sin(np.sqrt(np.abs(c))), 0.0)  # each ≥ 0
    return np.sum(per_dim, axis=-1) + 1e4 * np.sum(outside * outside, axis=-1)


def rastrigin(y: np.ndarray) -> np.ndarray:
    d = y.shape[-1]
    return 10.0 * d + np.sum(y * y - 10.0 * np.cos(2.0 * math.pi * y), axis=-1)


def ackley(y: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(y * y, axis=-1))
    value = -20.0 * np.exp(-0.2 * rms) - np.exp(np.mean(np.cos(2.0 * math.pi * y), axis=-1))
    return np.maximum(value + 20.0 + math.e, 0.0)  # clip the ~4e-16 rounding at the optimum


@dataclass(frozen=True)
class Function:
    """A named objective with its initial box [low, high]^d; σ₀ = (high − low)/4."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    low: float
    high: float
    min_dim: int = 1
    optimum: Callable[[int], np.ndarray] | None = None

    @property
    def sigma0(self) -> float:
        return (self.high - self.low) / 4.0

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return self.fn(y)


def _const(value: float) -> Callable[[int], np.ndarray]:
    return lambda d: np.full(d, value)


FUNCTIONS: dict[str, Function] = {
    "sphere": Function("sphere", sphere, -2.0, 2.0, optimum=_const(0.0)),
    "ellipsoid": Function("ellipsoid", ellipsoid, -2.0, 2.0, optimum=_const(0.0)),
    "rosenbrock": Function("rosenbrock", rosenbrock, -2.0, 2.0, min_dim=2, optimum=_const(1.0)),
    "schwefel": Function("schwefel", schwefel12, -2.0, 2.0, optimum=_const(0.0)),
    "schwefel226": Function(
        "schwefel226", schwefel226, -500.0, 500.0, optimum=_const(SCHWEFEL226_OPT)
    ),
    "rastrigin": Function("rastrigin", rastrigin, -5.12, 5.12, optimum=_const(0.0)),
    "ackley": Function("ackley", ackley, -5.0, 5.0, optimum=_const(0.0)),
}


def _load_user_function(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    from anyfeedback.usercode import import_callable

    return _ArrayAdapter(import_callable(spec, field="function"))


class _ArrayAdapter:
    """A user objective written for numpy or for torch: called with numpy [N, d] float64; if it
    is annotated for torch tensors, or fails on numpy and works on a torch tensor, it gets a
    torch float64 tensor from then on. Its result (numpy, torch, list) becomes numpy float64."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.torch = "Tensor" in str(getattr(fn, "__annotations__", {}).values())

    def __call__(self, y: np.ndarray) -> np.ndarray:
        if self.torch:
            return _to_numpy(self.fn(_to_torch(y)))
        try:
            return _to_numpy(self.fn(y))
        except (TypeError, AttributeError) as err:  # e.g. `y.sum(dim=1)`, `torch.sin(y)`
            try:
                out = _to_numpy(self.fn(_to_torch(y)))
            except Exception:
                raise err from None  # not a torch function either: the numpy error is the one
            self.torch = True
            return out


def _to_torch(y: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(y))


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU or with grad
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def resolve_function(spec: str, dim: int) -> Function:
    """A built-in name (see `FUNCTIONS`) or `module:callable`; checks `dim` against the function.

    A user function gets the box [−2, 2]^d (override σ₀/x₀ with the run's flags)."""
    if dim < 1:
        raise InputError(f"dim must be >= 1, got {dim}", field="dim")
    if ":" in spec:
        fn = _load_user_function(spec)
        return Function(spec, fn, -2.0, 2.0)
    if spec not in FUNCTIONS:
        known = ", ".join(FUNCTIONS)
        raise InputError(f"unknown function {spec!r} (known: {known}, or module:callable)")
    function = FUNCTIONS[spec]
    if dim < function.min_dim:
        raise InputError(f"{spec} needs dim >= {function.min_dim}, got {dim}", field="dim")
    return function


def evaluate(function: Function, y: np.ndarray) -> np.ndarray:
    """f(y) for y [N, d] -> float64 [N], with the output's shape checked (user functions)."""
    try:
        raw = function(y)
    except Exception as err:  # the user's function failed: name it, not our loop
        raise InputError(
            f"function {function.name!r} raised {type(err).__name__}: {err}", field="function"
        ) from None
    try:
        out = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"function {function.name!r} returned {type(raw).__name__} values that are not "
            "numbers; it must return finite floats",
            field="function",
        ) from None
    if out.shape != (y.shape[0],):
        out = out.reshape(-1) if out.size == y.shape[0] else out
        if out.shape != (y.shape[0],):
            raise InputError(
                f"function {function.name!r} returned shape {np.shape(out)} for input "
                f"{tuple(y.shape)}; expected ({y.shape[0]},)",
                field="function",
            )
    return out


def check_finite_start(function: Function, y: np.ndarray) -> None:
    """Raise `InputError` if f is non-finite at finite starting points (a broken objective)."""
    values = evaluate(function, y)
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        raise InputError(
            f"function {function.name!r} returned {bad} non-finite value(s) at finite starting "
            "points; it must return finite floats",
            field="function",
        )
