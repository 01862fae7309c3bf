"""The elementwise family's references checked on their own terms (no torch): hand-computed values,
closed forms and independent formulas, the conventions at kinks, NaN and ±inf, every VJP against
finite differences (``reference.finite_differences.vjp_check``) across parameters, the accuracy of
the helpers the error analyses rely on, and RReLU's statistics (false alarms and power)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from conformance.numerics import elementwise as N
from conformance.strategies.elementwise import kink_points, neighbours
from reference import activation as A
from reference import functional as RF
from reference import libm
from reference import smooth_activation as S
from reference import softmax as M
from reference.finite_differences import vjp_check

INF, NAN = math.inf, math.nan
LN2, LN3 = math.log(2.0), math.log(3.0)


def _arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def _sigma(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# -- forward values: (name, function, inputs, expected) ------------------------------------------

FORWARD = [
    ("relu", A.relu, _arr(-1, 0, 2.5, INF, -INF), _arr(0, 0, 2.5, INF, 0)),
    ("relu6", A.relu6, _arr(-1, 0, 3, 6, 7, INF), _arr(0, 0, 3, 6, 6, 6)),
    ("hardtanh", lambda x: A.hardtanh(x, -1.0, 1.0), _arr(-2, -1, 0.5, 1, 3, -INF), _arr(-1, -1, 0.5, 1, 1, -1)),
    ("hardtanh min == max (functional)", lambda x: A.hardtanh(x, 1.0, 1.0), _arr(-2, 3), _arr(1, 1)),
    ("threshold", lambda x: A.threshold(x, 1.0, 5.0), _arr(1, 2, 0, -INF, INF), _arr(5, 2, 5, 5, INF)),
    ("leaky 0.5", lambda x: A.leaky_relu(x, 0.5), _arr(-2, 0, 3, -INF), _arr(-1, 0, 3, -INF)),
    ("leaky 0 at -inf", lambda x: A.leaky_relu(x, 0.0), _arr(-INF, -3, 2), _arr(0, 0, 2)),
    ("leaky negative", lambda x: A.leaky_relu(x, -2.0), _arr(-3, 4), _arr(6, 4)),
    ("rrelu eval: the midpoint", lambda x: A.rrelu(x, 0.25, 0.75), _arr(-2, 3, -INF), _arr(-1, 3, -INF)),
    ("rrelu lower == upper in training", lambda x: A.rrelu(x, 0.25, 0.25, training=True), _arr(-4, 1), _arr(-1, 1)),
    ("rrelu zero slope at -inf", lambda x: A.rrelu(x, 0.0, 0.0), _arr(-INF, -1), _arr(0, 0)),
    ("rrelu_with_noise", lambda x: A.rrelu_with_noise(x, _arr(0.5, 0.25, 7.0), 0.1, 0.9, True), _arr(-2, -4, 3),
     _arr(-1, -1, 3)),
    ("softshrink", lambda x: A.softshrink(x, 0.5), _arr(-1, -0.5, 0, 0.5, 1, INF), _arr(-0.5, 0, 0, 0, 0.5, INF)),
    ("softshrink 0", lambda x: A.softshrink(x, 0.0), _arr(-1, 0, 2), _arr(-1, 0, 2)),
    ("hardshrink", lambda x: A.hardshrink(x, 0.5), _arr(-1, -0.5, 0.25, 0.5, 0.75, -INF),
     _arr(-1, 0, 0, 0, 0.75, -INF)),
    ("hardshrink negative lambd: identity", lambda x: A.hardshrink(x, -0.5), _arr(-1, 0, 0.25), _arr(-1, 0, 0.25)),
    ("hardsigmoid", A.hardsigmoid, _arr(-4, -3, 0, 1.5, 3, 7, INF, -INF), _arr(0, 0, 0.5, 0.75, 1, 1, 1, 0)),
    ("hardswish", A.hardswish, _arr(-4, -3, -1.5, 0, 1, 3, 1e308, INF, -INF),
     _arr(0, 0, -0.375, 0, 2 / 3, 3, 1e308, INF, 0)),
    ("elu alpha 2", lambda x: A.elu(x, 2.0), _arr(-LN2, 0, 3, -INF), _arr(-1, 0, 3, -2)),
    ("elu alpha -1", lambda x: A.elu(x, -1.0), _arr(-LN2, -INF), _arr(0.5, 1)),
    ("selu", A.selu, _arr(1, -INF), _arr(A.SELU_SCALE, -A.SELU_SCALE * A.SELU_ALPHA)),
    ("celu alpha 2", lambda x: A.celu(x, 2.0), _arr(-2 * LN2, 0, 3, -INF), _arr(-1, 0, 3, -2)),
    ("celu alpha -1: -(exp(-x) - 1)", lambda x: A.celu(x, -1.0), _arr(-LN3, -INF), _arr(-2, -INF)),
    ("celu alpha -0.5 near the float64 range", lambda x: A.celu(x, -0.5), _arr(-355.0),
     _arr(float(-Decimal(710).exp() / 2))),
    ("sigmoid", libm.sigmoid, _arr(0, LN3, -LN3, INF, -INF, -1000), _arr(0.5, 0.75, 0.25, 1, 0, 0)),
    ("tanh", S.tanh, _arr(0, math.atanh(0.5), INF, -INF), _arr(0, 0.5, 1, -1)),
    ("logsigmoid", S.logsigmoid, _arr(0, LN3, -1000, 1000, -INF), _arr(-LN2, math.log(0.75), -1000, 0, -INF)),
    ("softplus", lambda x: S.softplus(x, 2.0, 20.0), _arr(0, 10.5, -INF, INF), _arr(LN2 / 2, 10.5, 0, INF)),
    ("softplus at switch", lambda x: S.softplus(x, 2.0, 20.0), _arr(10.0), _arr(math.log1p(math.exp(20.0)) / 2)),
    ("softplus no overflow", lambda x: S.softplus(x, 1.0, 1000.0), _arr(800.0), _arr(800.0)),
    ("softplus small threshold", lambda x: S.softplus(x, 1.0, 0.5), _arr(0.5, 0.75), _arr(math.log1p(math.exp(0.5)),
                                                                                           0.75)),
    ("tanhshrink", S.tanhshrink, _arr(0, 1, INF, -INF), _arr(0, 1 - math.tanh(1), INF, -INF)),
    ("softsign", S.softsign, _arr(0, 1, -3, INF, -INF), _arr(0, 0.5, -0.75, 1, -1)),
    ("silu", S.silu, _arr(0, LN3, -LN3, INF, -INF, -800), _arr(0, 0.75 * LN3, -0.25 * LN3, INF, 0,
                                                               -800 * math.exp(-800))),
    # softplus(ln 3) = ln 4, tanh(ln 4) = (16 - 1)/(16 + 1)
    ("mish", S.mish, _arr(0, LN3, INF, -INF, 800), _arr(0, LN3 * 15 / 17, INF, 0, 800)),
    ("gelu", lambda x: S.gelu(x, "none"), _arr(0, 1, -1, INF, -INF),
     _arr(0, 0.5 * (1 + math.erf(1 / math.sqrt(2))), -0.5 * math.erfc(1 / math.sqrt(2)), INF, 0)),
    ("gelu tanh", lambda x: S.gelu(x, "tanh"), _arr(0, 1, INF, -INF),
     _arr(0, 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715)), INF, 0)),
]


@pytest.mark.parametrize(("name", "fn", "x", "expected"), FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_hand_values(name, fn, x, expected):
    # celu's argument x/alpha carries a rounding: its values are exact to a few ulps, not one
    np.testing.assert_allclose(fn(x), expected, rtol=2e-16 if not name.startswith("celu") else 1e-15, atol=0)


@pytest.mark.parametrize(("name", "fn", "x", "expected"), FORWARD, ids=[f[0] for f in FORWARD])
def test_nan_propagates_through_the_forward(name, fn, x, expected):
    assert np.isnan(fn(_arr(NAN) if "noise" not in name else _arr(NAN, NAN, NAN))).all()


# -- gradients at kinks and limits: (name, function, kwargs, inputs, expected for g = 1) -----------

GRADIENTS = [
    ("relu: 0 at the kink", "relu", {}, _arr(-1, 0, 2, INF), _arr(0, 0, 1, 1)),
    ("relu6: 0 at both kinks", "relu6", {}, _arr(0, 3, 6), _arr(0, 1, 0)),
    ("hardtanh: 0 at both bounds", "hardtanh", {"min_val": -1.0, "max_val": 1.0}, _arr(-1, 0, 1), _arr(0, 1, 0)),
    ("threshold: 0 at x == threshold", "threshold", {"threshold": 1.0, "value": 5.0}, _arr(1, 1.5, 0), _arr(0, 1, 0)),
    ("leaky: the slope at 0", "leaky_relu", {"negative_slope": 0.25}, _arr(0, -1, 1), _arr(0.25, 0.25, 1)),
    ("rrelu eval: the midpoint at 0", "rrelu", {"lower": 0.25, "upper": 0.75}, _arr(0, -1, 1), _arr(0.5, 0.5, 1)),
    ("softshrink: 0 at ±lambd", "softshrink", {"lambd": 0.5}, _arr(-0.5, 0.5, 0.75), _arr(0, 0, 1)),
    ("hardshrink: 0 at ±lambd", "hardshrink", {"lambd": 0.5}, _arr(-0.5, 0.5, 0.75, 0.25), _arr(0, 0, 1, 0)),
    ("hardshrink lambd 0: 0 at 0", "hardshrink", {"lambd": 0.0}, _arr(0, 1e-300), _arr(0, 1)),
    ("hardsigmoid: 0 at ±3", "hardsigmoid", {}, _arr(-3, 3, 0, INF), _arr(0, 0, 1 / 6, 0)),
    ("hardswish: outer branches at ±3", "hardswish", {}, _arr(-3, 3, -1.5, 0, INF, -INF), _arr(0, 1, 0, 0.5, 1, 0)),
    ("elu: alpha at 0, 0 at -inf", "elu", {"alpha": 2.0}, _arr(0, -INF, 1), _arr(2, 0, 1)),
    ("selu: scale·alpha at 0", "selu", {}, _arr(0, 1), _arr(A.SELU_SCALE * A.SELU_ALPHA, A.SELU_SCALE)),
    ("celu: 1 at 0 (smooth), exp(x/alpha)", "celu", {"alpha": 0.5}, _arr(0, -LN2, -INF, 2), _arr(1, 0.25, 0, 1)),
    ("celu alpha -0.5: no spurious overflow", "celu", {"alpha": -0.5}, _arr(-354.8), _arr(math.exp(709.6))),
    ("sigmoid", "sigmoid", {}, _arr(0, LN3, INF, -INF), _arr(0.25, 0.1875, 0, 0)),
    ("tanh: sech² at atanh(1/2)", "tanh", {}, _arr(math.atanh(0.5), 0, INF), _arr(0.75, 1, 0)),
    ("logsigmoid", "logsigmoid", {}, _arr(0, LN3, -INF, INF), _arr(0.5, 0.25, 1, 0)),
    ("softplus: σ(βx), 1 on the linear branch", "softplus", {"beta": 2.0, "threshold": 20.0}, _arr(0, 10, 10.5),
     _arr(0.5, 1 / (1 + math.exp(-20)), 1)),
    ("tanhshrink: tanh²", "tanhshrink", {}, _arr(math.atanh(0.5), INF), _arr(0.25, 1)),
    ("softsign", "softsign", {}, _arr(0, 1, INF, -INF), _arr(1, 0.25, 0, 0)),
    ("silu: σ(x)·(1 + x·σ(-x))", "silu", {}, _arr(0, LN3, INF, -INF), _arr(0.5, 0.75 * (1 + LN3 / 4), 1, 0)),
    ("mish", "mish", {}, _arr(0, INF, -INF), _arr(0.6, 1, 0)),
    ("gelu", "gelu", {"approximate": "none"}, _arr(0, 1, INF, -INF),
     _arr(0.5, 0.5 * (1 + math.erf(1 / math.sqrt(2))) + math.exp(-0.5) / math.sqrt(2 * math.pi), 1, 0)),
    ("gelu tanh", "gelu", {"approximate": "tanh"}, _arr(0, INF, -INF, 1e200, -1e200), _arr(0.5, 1, 0, 1, 0)),
]


@pytest.mark.parametrize(("name", "fn", "kwargs", "x", "expected"), GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_gradient_conventions(name, fn, kwargs, x, expected):
    grad = RF.vjp(fn, x, cotangent=np.ones_like(x), **kwargs)["input"]
    np.testing.assert_allclose(grad, expected, rtol=4e-16 if "overflow" not in name else 1e-14, atol=0)


@pytest.mark.parametrize(("name", "fn", "kwargs", "x", "expected"), GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_the_reference_gradient_at_nan_is_nan(name, fn, kwargs, x, expected):
    assert np.isnan(RF.vjp(fn, _arr(NAN), cotangent=_arr(1.0), **kwargs)["input"]).all()


def test_gelu_tanh_gradient_closed_form():
    x = 0.7
    k, c = math.sqrt(2 / math.pi), 0.044715
    t = math.tanh(k * (x + c * x**3))
    expected = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)
    np.testing.assert_allclose(RF.vjp("gelu", _arr(x), cotangent=_arr(1.0), approximate="tanh")["input"], [expected],
                               rtol=1e-15)


def test_silu_and_mish_against_independent_formulas():
    x = np.linspace(-30, 30, 601)
    sig = np.array([_sigma(v) for v in x])
    np.testing.assert_allclose(S.silu(x), x * sig, rtol=1e-15, atol=1e-300)
    # d/dx x·σ(x) = σ(x) + x·σ(x)·(1 - σ(x)), and mish' by the chain rule through softplus and tanh
    np.testing.assert_allclose(RF.vjp("silu", x, cotangent=np.ones_like(x))["input"], sig + x * sig * (1 - sig),
                               rtol=1e-13, atol=1e-15)
    sp = np.array([math.log1p(math.exp(v)) for v in x])
    np.testing.assert_allclose(S.mish(x), x * np.tanh(sp), rtol=1e-14, atol=1e-300)
    mish_grad = np.tanh(sp) + x * sig / np.cosh(sp) ** 2
    np.testing.assert_allclose(RF.vjp("mish", x, cotangent=np.ones_like(x))["input"], mish_grad, rtol=1e-13, atol=1e-15)


def test_hardswish_is_x_times_hardsigmoid_and_celu_is_a_rescaled_elu():
    x = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(A.hardswish(x), x * A.hardsigmoid(x), rtol=1e-15, atol=1e-300)
    for alpha in (0.5, 2.0, -1.5):
        np.testing.assert_allclose(A.celu(x, alpha), alpha * A.elu(x / alpha, 1.0) if alpha > 0 else
                                   np.where(x > 0, x, alpha * np.expm1(x / alpha)), rtol=1e-15)


def test_glu_halves_and_gradient_by_hand():
    x = np.array([[2.0, -4.0, 0.0, LN3], [1.0, 1.0, -INF, INF]])
    # a = first half, b = second half of the last dim: a·σ(b)
    np.testing.assert_allclose(S.glu(x), [[1.0, -3.0], [0.0, 1.0]], rtol=1e-15)
    np.testing.assert_allclose(S.glu(x.T, dim=0), (x.T[:2] * (1 / (1 + np.exp(-x.T[2:])))), rtol=1e-15)
    g = np.array([[1.0, 2.0], [1.0, 1.0]])
    grad = RF.vjp("glu", x, cotangent=g)["input"]
    # dL/da = g·σ(b); dL/db = g·a·σ(b)·σ(-b): σ(0) = 1/2, σ(ln 3) = 3/4
    np.testing.assert_allclose(grad[0], [0.5, 1.5, 2 * 0.25, 2 * -4.0 * 0.75 * 0.25], rtol=1e-15)
    np.testing.assert_allclose(grad[1], [0.0, 1.0, 0.0, 0.0], rtol=1e-15)
    for bad, error in ((np.ones(3), ValueError), (np.array(1.0), ValueError), (np.ones((2, 4)), IndexError)):
        with pytest.raises(error):
            S.glu(bad, dim=2 if bad.ndim == 2 else -1)


def test_glu_gradient_has_no_spurious_overflow_of_g_times_a():
    """a near the float64 maximum, |g| > 1: g·a overflows but g·a·σ(b)·σ(-b) does not (closed form
    in Decimal); the reference returns the finite value, and ±inf only where the product itself overflows."""
    a, b, g = -1.25065185e308, -0.132104863, 1.48485398
    grad = RF.vjp("glu", _arr(a, b), cotangent=_arr(g))["input"]
    s = 1 / (1 + Decimal(math.exp(-b)))
    exact = Decimal(g) * Decimal(a) * s * (1 - s)
    assert np.isfinite(grad[1]) and abs(Decimal(grad[1]) - exact) <= abs(exact) * Decimal(2.0**-50)
    assert S.scaled_product(_arr(1e300, INF, 0.0, NAN), _arr(1e300, 0.0, 5.0, 1.0)).tolist()[0] == INF
    assert np.isnan(S.scaled_product(_arr(INF), _arr(0.0))).all() and S.scaled_product(_arr(0.0), _arr(5.0))[0] == 0


def test_softmax2d_is_softmax_over_the_channels():
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 4))
    y = M.softmax2d(x)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(M.softmax2d(x[0]), M.softmax(x[0], 0))
    for rank in (0, 2, 5):
        with pytest.raises(ValueError):
            M.softmax2d(np.ones((2,) * rank))


# -- every VJP against finite differences, across parameters (kinks avoided) -------------------------

FD = [
    ("leaky_relu", {"negative_slope": -0.5}), ("hardtanh", {"min_val": -2.0, "max_val": 3.0}),
    ("threshold", {"threshold": 0.5, "value": -1.0}), ("rrelu", {"lower": -0.5, "upper": 0.25}),
    ("softshrink", {"lambd": 1.0}), ("hardshrink", {"lambd": 0.25}), ("hardshrink", {"lambd": -1.0}),
    ("hardsigmoid", {}), ("hardswish", {}), ("elu", {"alpha": -1.0}), ("selu", {}), ("celu", {"alpha": 0.1}),
    ("celu", {"alpha": -2.0}), ("sigmoid", {}), ("tanh", {}), ("logsigmoid", {}),
    ("softplus", {"beta": 0.5, "threshold": 1.0}), ("tanhshrink", {}), ("softsign", {}), ("silu", {}), ("mish", {}),
    ("gelu", {"approximate": "none"}), ("glu", {"dim": 0}), ("glu", {"dim": -1}), ("softmax", {"dim": -1}),
    ("softmin", {"dim": 1}), ("log_softmax", {"dim": 0}), ("softmax2d", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), FD, ids=[f"{n}-{sorted(k.items())}" for n, k in FD])
def test_vjp_against_finite_differences(name, kwargs):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 2)) * 3
    x = np.where(np.abs(np.abs(x) - 3) < 0.05, x + 0.2, x)  # away from the ±3 kinks of the hard functions
    fn = getattr(RF, name)
    y = fn(x, **kwargs)
    g = rng.standard_normal(y.shape)
    grads = RF.vjp(name, x, cotangent=g, **kwargs)
    check = vjp_check(lambda inputs: {"y": fn(inputs["input"], **kwargs)}, {"input": x}, {"y": g}, grads,
                      rng=np.random.default_rng(1))
    assert check.ok(), check


def test_rrelu_with_noise_and_prelu_vjps_against_finite_differences():
    rng = np.random.default_rng(2)
    x, noise, g = rng.standard_normal((3, 4)), rng.uniform(0.1, 0.3, (3, 4)), rng.standard_normal((3, 4))
    grads = RF.vjp("rrelu_with_noise", x, noise, 0.1, 0.3, True, cotangent=g)
    assert set(grads) == {"input"}  # the slopes are not differentiated
    assert vjp_check(lambda a: {"y": A.rrelu_with_noise(a["input"], noise, 0.1, 0.3, True)}, {"input": x}, {"y": g},
                     grads).ok()
    w = np.array([0.25, -0.5, 2.0, 0.0])
    xp = rng.standard_normal((2, 4, 3))
    gp = rng.standard_normal(xp.shape)
    grads = RF.vjp("prelu", xp, w, cotangent=gp)
    assert vjp_check(lambda a: {"y": A.prelu(a["input"], a["weight"])}, {"input": xp, "weight": w}, {"y": gp},
                     grads).ok()


# -- PReLU -------------------------------------------------------------------------------------------

def test_prelu_channels_along_dim_1_and_weight_gradient():
    x = np.array([[[-1.0, 2.0], [-3.0, 0.0]], [[4.0, -5.0], [-6.0, 7.0]]])  # (N=2, C=2, L=2)
    w = np.array([0.5, -2.0])
    g = np.array([[[1.0, 1.0], [2.0, 1.0]], [[1.0, 3.0], [1.0, 1.0]]])
    np.testing.assert_array_equal(A.prelu(x, w), [[[-0.5, 2.0], [6.0, 0.0]], [[4.0, -2.5], [12.0, 7.0]]])
    grads = RF.vjp("prelu", x, w, cotangent=g)
    np.testing.assert_array_equal(grads["input"], [[[0.5, 1.0], [-4.0, -2.0]], [[1.0, 1.5], [-2.0, 1.0]]])
    # channel 0: x <= 0 at -1 (g 1) and -5 (g 3): -1 - 15; channel 1: -3 (g 2), 0 (g 1), -6 (g 1): -6 + 0 - 6
    np.testing.assert_array_equal(grads["weight"], [-16.0, -12.0])


def test_prelu_below_rank_2_has_one_channel():
    np.testing.assert_array_equal(A.prelu(np.array(-4.0), np.array([0.25])), -1.0)
    np.testing.assert_array_equal(A.prelu(np.array([-4.0, 2.0, -1.0]), np.array([0.5])), [-2.0, 2.0, -0.5])
    with pytest.raises(ValueError):
        A.prelu(np.array([-4.0, 2.0, -1.0]), np.array([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError):
        A.prelu(np.ones((2, 3)), np.ones(2))


def test_prelu_zero_weight_at_minus_inf_is_zero_and_nan_poisons_the_weight_gradient():
    x = np.array([[-INF, 1.0]])
    np.testing.assert_array_equal(A.prelu(x, np.array([0.0])), [[0.0, 1.0]])
    gw = RF.vjp("prelu", np.array([[NAN, -2.0]]), np.array([0.25]), cotangent=np.array([[1.0, 1.0]]))["weight"]
    assert np.isnan(gw).all()


def test_invalid_parameters_raise():
    for call in (lambda: A.softshrink(_arr(1.0), -0.5), lambda: A.hardtanh(_arr(1.0), 2.0, 1.0),
                 lambda: S.gelu(_arr(1.0), "sigmoid"), lambda: A.celu(_arr(1.0), 0.0),
                 lambda: A.rrelu(_arr(1.0), 0.5, 0.1), lambda: A.rrelu(_arr(-1.0), 0.1, 0.5, training=True)):
        with pytest.raises(ValueError):
            call()


# -- softmax family ------------------------------------------------------------------------------

def test_log_softmax_and_softmin_hand_values():
    x = _arr(0.0, LN3)
    np.testing.assert_allclose(M.log_softmax(x, 0), [-math.log(4), LN3 - math.log(4)], rtol=1e-15)
    np.testing.assert_allclose(M.softmin(x, 0), [0.75, 0.25], rtol=1e-15)
    np.testing.assert_allclose(M.log_softmax(x + 1e4, 0), [-math.log(4), LN3 - math.log(4)], rtol=1e-12)
    np.testing.assert_allclose(M.log_softmax(_arr(-1e4, 1e4), 0), [-2e4, 0.0])


def test_log_softmax_non_finite_conventions():
    y = M.log_softmax(np.array([[0.0, -INF], [-INF, -INF], [INF, 1.0], [NAN, 0.0]]), 1)
    assert y[0, 0] == 0.0 and y[0, 1] == -INF
    assert np.isnan(y[1:]).all()
    np.testing.assert_array_equal(M.softmin(_arr(INF, 1.0), 0), [0.0, 1.0])
    assert M.log_softmax(np.array(2.5), -1) == 0.0
    assert M.softmax(np.ones((0, 3)), 1).shape == (0, 3)  # empty inputs stay empty


def test_log_softmax_vjp_closed_form_and_minus_inf_entries():
    x, g = _arr(0.0, LN3, -INF), _arr(1.0, 2.0, 5.0)
    # g - p·Σg with p = (1/4, 3/4, 0) and Σg = 8: the -inf entry passes g through
    np.testing.assert_allclose(RF.vjp("log_softmax", x, cotangent=g, dim=0)["input"], [-1.0, -4.0, 5.0], rtol=1e-15)
    # softmin's VJP is softmax's at -x with the sign flipped
    np.testing.assert_allclose(RF.vjp("softmin", x, cotangent=g, dim=0)["input"],
                               -RF.vjp("softmax", -x, cotangent=g, dim=0)["input"])


# -- helpers of the error analyses ---------------------------------------------------------------

def test_accurate_helpers_against_math():
    x = _arr(-30.0, -8.0, -1.0, 0.0, 0.3, 2.0, 7.5, 39.0)
    np.testing.assert_allclose(libm.exp_neg_half_square(x), [math.exp(-v * v / 2) for v in x], rtol=4e-16)
    np.testing.assert_allclose(libm.normal_cdf(x), [0.5 * math.erfc(-v / math.sqrt(2)) for v in x], rtol=1e-15)
    np.testing.assert_allclose(S.sech2(x), [1 / math.cosh(v) ** 2 for v in x], rtol=2e-15)
    assert libm.exp_neg_half_square(_arr(50.0))[0] == 0.0


def test_saturation_rule():
    u = 2.0**-24
    # tanh(10) is within half an ulp of 1: the libm must return 1, an error of 1 - tanh(10)
    dist = 2 * libm.sigmoid(_arr(-20.0))
    assert libm.saturating_error(_arr(math.tanh(10.0)), dist, u)[0] == pytest.approx(dist[0] / u)
    assert libm.saturating_error(_arr(0.5), _arr(0.5), u)[0] == libm.LIBM_ULPS * 0.5


def test_cancelling_formulas_are_bounded_in_the_magnitude_of_their_terms():
    u, tiny = 2.0**-24, 2.0**-149
    x = _arr(-1e-6)
    e_out, _ = A.elu_error(x, A.elu(x, 1.0), None, u, tiny, alpha=1.0)
    assert e_out[0] >= libm.LIBM_ULPS * 0.99  # alpha·(L·e^x + ...): absolute, not relative to y ≈ -1e-6
    t = _arr(1e-3)
    e_t, e_g = S.tanhshrink_error(t, S.tanhshrink(t), _arr(1.0), u, tiny)
    assert e_t[0] >= libm.LIBM_ULPS * math.tanh(1e-3) * 0.99 and e_g[0] >= 2.0  # g - g·(1 - t²)
    # SiLU' vanishes near x = -1.2785 and Hardswish' at -1.5: bounds in the magnitude of the terms
    z = _arr(-1.2784645427610738, -1.5)
    _, e_silu = S.silu_error(z[:1], S.silu(z[:1]), _arr(1.0), u, tiny)
    assert e_silu[0] >= 0.2  # ≈ σ(x)·|x|·(1 - σ)·2, though the gradient itself is ~0
    _, e_hswish = A.hardswish_error(z[1:], A.hardswish(z[1:]), _arr(1.0), u, tiny)
    assert e_hswish[0] == pytest.approx(1.0)  # 2|x|/3 with x/3 + 1/2 = 0


def test_celu_bounds_stay_finite_near_the_float64_range():
    x = _arr(-354.0, -1.0)  # alpha = -0.5: exp(x/alpha) = e^708, times g
    y = A.celu(x, -0.5)
    e_y, e_g = A.celu_error(x, y, _arr(0.25, 1.0), 2.0**-53, 2.0**-1074, alpha=-0.5)
    assert np.isfinite(e_y).all() and np.isfinite(e_g).all() and e_g[0] > 0


def test_celu_bounds_at_minus_inf_cover_the_in_place_backward():
    """At x = -inf the term |s·x|·exp(s·x) of the bound takes its limit 0 (not inf·0 = NaN): the
    in-place backward g·s·(y + alpha) from the float16 output y = -alpha (rounded) stays within it."""
    alpha, g = 0.1, -0.581543
    y = float(np.float16(-alpha))
    e_y, e_g = A.celu_error(_arr(-INF), _arr(y), _arr(g), 2.0**-11, 2.0**-24, alpha=alpha, inplace=True)
    assert np.all(np.isfinite(e_y)) and np.all(np.isfinite(e_g))
    in_place = g * (y / float(np.float32(alpha)) + 1.0)  # the exact gradient is g·exp(-inf) = 0
    assert abs(in_place) <= e_g[0] * 2.0**-11


def test_kink_neighbours_are_the_adjacent_representable_values():
    np.testing.assert_array_equal(np.sort(neighbours([1.0], "float32")), [1 - 2.0**-24, 1 + 2.0**-23])
    np.testing.assert_array_equal(np.sort(neighbours([0.0], "float16")), [-(2.0**-24), 2.0**-24])
    np.testing.assert_array_equal(np.sort(neighbours([-6.0], "bfloat16")), [-6.0 - 2.0**-5, -6.0 + 2.0**-5])
    points = kink_points([0.5, -0.5], "float64")
    assert {0.5, -0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0)} <= set(points.tolist())


# -- RReLU's statistics: false alarms and power ---------------------------------------------------------

def _rrelu_samples(slopes: np.ndarray, lower: float = 0.1, upper: float = 0.3, dtype: str = "float32"):
    from backends.base import Case

    x = -np.ones(slopes.shape)
    case = Case(op="RReLU", dtype=dtype, params={"lower": lower, "upper": upper, "inplace": False}, inputs={"input": x})
    return [(case, {"noise": slopes})]


def test_dkw_tests_accept_uniform_slopes_and_reject_shared_or_misplaced_ones():
    rng = np.random.default_rng(5)
    uniform = np.float32(rng.uniform(0.1, 0.3, 2000)).astype(np.float64)  # rounded to float32, as drawn
    assert all(c.ok for c in N.rrelu_check(_rrelu_samples(uniform), 1e-6))
    shared = np.full(2000, uniform[0])  # one slope for every element
    assert not all(c.ok for c in N.rrelu_check(_rrelu_samples(shared), 1e-6))
    midpoint = np.full(2000, 0.2)  # the evaluation slope in training
    assert not all(c.ok for c in N.rrelu_check(_rrelu_samples(midpoint), 1e-6))
    narrow = rng.uniform(0.1, 0.2, 2000)  # U(lower, (lower + upper)/2)
    assert not N.rrelu_check(_rrelu_samples(narrow), 1e-6)[0].ok
    pairs = np.repeat(uniform[:1000], 2)  # neighbours share their slope: the marginal is still uniform
    checks = N.rrelu_check(_rrelu_samples(pairs), 1e-6)
    assert checks[0].ok and not checks[1].ok


def test_dkw_false_alarm_rate_is_within_the_stated_rate():
    rng = np.random.default_rng(11)
    alarms = sum(not all(c.ok for c in N.rrelu_check(_rrelu_samples(rng.uniform(0.1, 0.3, 300)), 0.2))
                 for _ in range(200))
    assert alarms / 200 <= 0.2 + 4 * math.sqrt(0.2 * 0.8 / 200)


def test_canonical_slopes_are_one_at_positive_inputs_and_clipped_into_the_bounds():
    from backends.base import Case

    case = Case(op="RReLU", dtype="float32", params={"lower": 0.1, "upper": 0.3, "inplace": False},
                inputs={"input": _arr(-1, 2, -3, -4)}, choices={"noise": _arr(0.2, 5.0, 0.5, 0.05)})
    np.testing.assert_array_equal(N.canonical_noise(case), [0.2, 1.0, 0.3, 0.1])
