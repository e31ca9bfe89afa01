"""Bandit test functions: optimum values, agreement with pycma's `cma.ff`, the bounded
Schwefel 2.26, user functions given as module:callable."""

import numpy as np
import pytest

from anyfeedback.bandit.functions import (
    FUNCTIONS,
    check_finite_start,
    evaluate,
    resolve_function,
)
from anyfeedback.errors import InputError


def shifted_sphere(y):
    """A user function for the module:callable path: Σ (y_i − 1)², optimum 0 at y = 1."""
    return np.sum((y - 1.0) ** 2, axis=-1)


def nan_function(y):
    return np.full(y.shape[0], np.nan)


def wrong_shape(y):
    return np.zeros((y.shape[0], 2))


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_optimum_is_zero(name):
    f = FUNCTIONS[name]
    for d in (2, 10):
        value = f(f.optimum(d)[None])[0]
        assert 0.0 <= value < 1e-12, (name, d, value)


def test_hand_values():
    """sphere(1, 2) = 5; rosenbrock(0, 0) = 100·0 + 1 = 1; schwefel 1.2 (1, 2) = 1² + 3² = 10;
    rastrigin(0.5, 0) = 20 + (0.25 − 10 cos π) + (0 − 10 cos 0) = 20.25; ellipsoid(1, 1) = 1 + 1e6."""
    y = np.array([[1.0, 2.0]])
    assert FUNCTIONS["sphere"](y)[0] == 5.0
    assert FUNCTIONS["rosenbrock"](np.zeros((1, 2)))[0] == 1.0
    assert FUNCTIONS["schwefel"](y)[0] == 10.0
    assert FUNCTIONS["rastrigin"](np.array([[0.5, 0.0]]))[0] == pytest.approx(20.25)
    assert FUNCTIONS["ellipsoid"](np.ones((1, 2)))[0] == pytest.approx(1 + 1e6)


def test_match_pycma():
    import cma

    y = np.random.default_rng(0).normal(size=(6, 10)) * 2
    assert np.allclose(FUNCTIONS["rosenbrock"](y), cma.ff.rosen(y))
    assert np.allclose(FUNCTIONS["schwefel"](y), [cma.ff.schwefelelli(x) for x in y])
    assert np.allclose(FUNCTIONS["rastrigin"](y), cma.ff.rastrigin(y))
    assert np.allclose(FUNCTIONS["ellipsoid"](y), cma.ff.elli(y))
    inside = np.random.default_rng(1).uniform(-500, 500, size=(6, 10))
    assert np.allclose(FUNCTIONS["schwefel226"](inside), cma.ff.schwefelmult(inside), atol=1e-9)


def test_schwefel226_off_domain_is_clipped_and_penalised():
    """Outside [−500, 500]^d: f(clip(y)) + 1e4·Σ(|y|−500)₊², so 510 costs 1e6 more than 500,
    and f never drops below 0 (raw x·sin√x would reach −|x| far outside the box)."""
    f = FUNCTIONS["schwefel226"]
    edge, out = np.full((1, 3), 500.0), np.full((1, 3), 510.0)
    assert f(out)[0] == pytest.approx(f(edge)[0] + 3 * 1e4 * 100)
    far = np.full((1, 3), -1e4)
    assert f(far)[0] > 0


def test_user_function_and_errors():
    fn = resolve_function("test_bandit_functions:shifted_sphere", 3)
    assert evaluate(fn, np.ones((2, 3))).tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="unknown function"):
        resolve_function("no_such_function", 3)
    with pytest.raises(InputError, match="cannot import"):
        resolve_function("no_such_module_xyz:f", 3)
    with pytest.raises(InputError, match="no attribute"):
        resolve_function("test_bandit_functions:missing", 3)
    with pytest.raises(InputError, match="dim must be >= 1"):
        resolve_function("sphere", 0)
    with pytest.raises(InputError, match="needs dim >= 2"):
        resolve_function("rosenbrock", 1)
    with pytest.raises(InputError, match="non-finite"):
        check_finite_start(
            resolve_function("test_bandit_functions:nan_function", 2), np.zeros((1, 2))
        )
    with pytest.raises(InputError, match="shape"):
        evaluate(resolve_function("test_bandit_functions:wrong_shape", 2), np.zeros((3, 2)))
