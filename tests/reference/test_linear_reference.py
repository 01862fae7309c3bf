"""The linear family's references on their own terms (no torch): Linear, Bilinear and Identity
against hand values and loops, their VJPs against finite differences, shapes and errors."""

from __future__ import annotations

import numpy as np
import pytest

from reference import linear as RL
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20240601)


def test_linear_hand_values_and_leading_dims():
    x, w, b = np.array([[1.0, 2.0]]), np.array([[3.0, 4.0], [5.0, -6.0]]), np.array([0.5, -1.0])
    np.testing.assert_array_equal(RL.linear(x, w, b), [[11.5, -8.0]])
    assert RL.linear(RNG.standard_normal((2, 3, 0, 2)), w).shape == (2, 3, 0, 2)
    with pytest.raises(ValueError):
        RL.linear(np.ones(3), w)


def test_bilinear_matches_a_loop():
    x1, x2, w, b = RNG.standard_normal((3, 2)), RNG.standard_normal((3, 4)), RNG.standard_normal((5, 2, 4)), \
        RNG.standard_normal(5)
    expected = np.array([[x1[n] @ w[o] @ x2[n] + b[o] for o in range(5)] for n in range(3)])
    np.testing.assert_allclose(RL.bilinear(x1, x2, w, b), expected, rtol=1e-13)
    assert RL.bilinear(np.ones(2), np.ones(4), w).shape == (5,)  # 1-d inputs
    assert RL.bilinear(np.ones((2, 0, 2)), np.ones((2, 0, 4)), w).shape == (2, 0, 5)
    for bad in ((np.ones((3, 3)), x2), (x1, np.ones((2, 4)))):
        with pytest.raises(ValueError):
            RL.bilinear(*bad, w)


def test_bilinear_exact_on_integers():
    x1, x2 = RNG.integers(-3, 4, (4, 3)).astype(float), RNG.integers(-3, 4, (4, 2)).astype(float)
    w = RNG.integers(-3, 4, (2, 3, 2)).astype(float)
    y = RL.bilinear(x1, x2, w)
    assert np.array_equal(y, np.round(y))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (0, 4)])
def test_vjps_match_finite_differences(shape):
    x1, x2 = RNG.standard_normal(shape), RNG.standard_normal((*shape[:-1], 3))
    w, b = RNG.standard_normal((5, 4, 3)), RNG.standard_normal(5)
    g = RNG.standard_normal((*shape[:-1], 5))
    grads = RL._bilinear_vjp(g, x1, x2, w, b)
    inputs = {"input1": x1, "input2": x2, "weight": w, "bias": b}
    check = vjp_check(lambda a: {"y": RL.bilinear(a["input1"], a["input2"], a["weight"], a["bias"])}, inputs,
                      {"y": g}, grads)
    assert check.ok(), check
    lw = RNG.standard_normal((5, 4))
    lgrads = RL._linear_vjp(g, x1, lw, b)
    check = vjp_check(lambda a: {"y": RL.linear(a["input"], a["weight"], a["bias"])},
                      {"input": x1, "weight": lw, "bias": b}, {"y": g}, lgrads)
    assert check.ok(), check


def test_identity_copies_bit_for_bit():
    x = np.array([-0.0, np.inf, -np.inf, np.nan, 1.5])
    y = RL.identity(x)
    assert y is not x and np.array_equal(np.signbit(y), np.signbit(x)) and np.array_equal(y, x, equal_nan=True)
    assert RL._identity_vjp(x, x)["input"] is not x
