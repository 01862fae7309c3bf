"""Activation references checked on their own terms: hand-computed values, closed forms, the
conventions at kinks, NaN and ±inf, and the accuracy of the helpers the error analyses rely on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.specs._activations import kink_points, neighbours
from reference import activation as A
from reference import libm
from reference import smooth_activation as S
from reference import softmax as M

INF, NAN = math.inf, math.nan
LN2, LN3 = math.log(2.0), math.log(3.0)


def _arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# -- forward values: (name, function, inputs, expected) ------------------------------------------

FORWARD = [
    ("relu", A.relu, _arr(-1, 0, 2.5, INF, -INF), _arr(0, 0, 2.5, INF, 0)),
    ("relu6", lambda x: A.hardtanh(x, 0.0, 6.0), _arr(-1, 0, 3, 6, 7, INF), _arr(0, 0, 3, 6, 6, 6)),
    ("hardtanh", lambda x: A.hardtanh(x, -1.0, 1.0), _arr(-2, -1, 0.5, 1, 3, -INF), _arr(-1, -1, 0.5, 1, 1, -1)),
    ("threshold", lambda x: A.threshold(x, 1.0, 5.0), _arr(1, 2, 0, -INF, INF), _arr(5, 2, 5, 5, INF)),
    ("leaky 0.5", lambda x: A.leaky_relu(x, 0.5), _arr(-2, 0, 3, -INF), _arr(-1, 0, 3, -INF)),
    ("leaky 0 at -inf", lambda x: A.leaky_relu(x, 0.0), _arr(-INF, -3, 2), _arr(0, 0, 2)),
    ("leaky negative", lambda x: A.leaky_relu(x, -2.0), _arr(-3, 4), _arr(6, 4)),
    ("softshrink", lambda x: A.softshrink(x, 0.5), _arr(-1, -0.5, 0, 0.5, 1, INF), _arr(-0.5, 0, 0, 0, 0.5, INF)),
    ("softshrink 0", lambda x: A.softshrink(x, 0.0), _arr(-1, 0, 2), _arr(-1, 0, 2)),
    ("elu alpha 2", lambda x: A.elu(x, 2.0), _arr(-LN2, 0, 3, -INF), _arr(-1, 0, 3, -2)),
    ("elu alpha -1", lambda x: A.elu(x, -1.0), _arr(-LN2, -INF), _arr(0.5, 1)),
    ("selu", lambda x: A.elu(x, A.SELU_ALPHA, A.SELU_SCALE), _arr(1, -INF),
     _arr(A.SELU_SCALE, -A.SELU_SCALE * A.SELU_ALPHA)),
    ("sigmoid", libm.sigmoid, _arr(0, LN3, -LN3, INF, -INF, -1000), _arr(0.5, 0.75, 0.25, 1, 0, 0)),
    ("logsigmoid", S.log_sigmoid, _arr(0, LN3, -1000, 1000, -INF), _arr(-LN2, math.log(0.75), -1000, 0, -INF)),
    ("softplus", lambda x: S.softplus(x, 2.0, 20.0), _arr(0, 10.5, -INF, INF), _arr(LN2 / 2, 10.5, 0, INF)),
    ("softplus at switch", lambda x: S.softplus(x, 2.0, 20.0), _arr(10.0), _arr(math.log1p(math.exp(20.0)) / 2)),
    ("softplus no overflow", lambda x: S.softplus(x, 1.0, 1000.0), _arr(800.0), _arr(800.0)),
    ("softplus small threshold", lambda x: S.softplus(x, 1.0, 0.5), _arr(0.5, 0.75), _arr(math.log1p(math.exp(0.5)),
                                                                                           0.75)),
    ("tanhshrink", S.tanhshrink, _arr(0, 1, INF, -INF), _arr(0, 1 - math.tanh(1), INF, -INF)),
    ("softsign", S.softsign, _arr(0, 1, -3, INF, -INF), _arr(0, 0.5, -0.75, 1, -1)),
    ("gelu", lambda x: S.gelu(x, "none"), _arr(0, 1, -1, INF, -INF),
     _arr(0, 0.5 * (1 + math.erf(1 / math.sqrt(2))), -0.5 * math.erfc(1 / math.sqrt(2)), INF, 0)),
    ("gelu tanh", lambda x: S.gelu(x, "tanh"), _arr(0, 1, INF, -INF),
     _arr(0, 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715)), INF, 0)),
]


@pytest.mark.parametrize(("name", "fn", "x", "expected"), FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_hand_values(name, fn, x, expected):
    np.testing.assert_allclose(fn(x), expected, rtol=2e-16, atol=0)


@pytest.mark.parametrize(("name", "fn", "x", "expected"), FORWARD, ids=[f[0] for f in FORWARD])
def test_nan_propagates_through_the_forward(name, fn, x, expected):
    assert np.isnan(fn(_arr(NAN))).all()


# -- gradients at kinks and limits: (name, vjp of (x, g), inputs, expected for g = 1) ------------

GRADIENTS = [
    ("relu: 0 at the kink", lambda x, g: A.relu_vjp(x, g), _arr(-1, 0, 2, INF), _arr(0, 0, 1, 1)),
    ("relu6: 0 at both kinks", lambda x, g: A.hardtanh_vjp(x, g, 0.0, 6.0), _arr(0, 3, 6), _arr(0, 1, 0)),
    ("hardtanh: 0 at both bounds", lambda x, g: A.hardtanh_vjp(x, g, -1.0, 1.0), _arr(-1, 0, 1), _arr(0, 1, 0)),
    ("threshold: 0 at x == threshold", lambda x, g: A.threshold_vjp(x, g, 1.0), _arr(1, 1.5, 0), _arr(0, 1, 0)),
    ("leaky: the slope at 0", lambda x, g: A.leaky_relu_vjp(x, g, 0.25), _arr(0, -1, 1), _arr(0.25, 0.25, 1)),
    ("softshrink: 0 at ±lambd", lambda x, g: A.softshrink_vjp(x, g, 0.5), _arr(-0.5, 0.5, 0.75), _arr(0, 0, 1)),
    ("elu: alpha at 0, 0 at -inf", lambda x, g: A.elu_vjp(x, g, 2.0), _arr(0, -INF, 1), _arr(2, 0, 1)),
    ("selu: scale·alpha at 0", lambda x, g: A.elu_vjp(x, g, A.SELU_ALPHA, A.SELU_SCALE), _arr(0, 1),
     _arr(A.SELU_SCALE * A.SELU_ALPHA, A.SELU_SCALE)),
    ("sigmoid", S.sigmoid_vjp, _arr(0, LN3, INF, -INF), _arr(0.25, 0.1875, 0, 0)),
    ("tanh: sech² at atanh(1/2)", S.tanh_vjp, _arr(math.atanh(0.5), 0, INF), _arr(0.75, 1, 0)),
    ("logsigmoid", S.log_sigmoid_vjp, _arr(0, LN3, -INF, INF), _arr(0.5, 0.25, 1, 0)),
    ("softplus: σ(βx), 1 on the linear branch", lambda x, g: S.softplus_vjp(x, g, 2.0, 20.0), _arr(0, 10, 10.5),
     _arr(0.5, 1 / (1 + math.exp(-20)), 1)),
    ("tanhshrink: tanh²", S.tanhshrink_vjp, _arr(math.atanh(0.5), INF), _arr(0.25, 1)),
    ("softsign", S.softsign_vjp, _arr(0, 1, INF, -INF), _arr(1, 0.25, 0, 0)),
    ("gelu", lambda x, g: S.gelu_vjp(x, g, "none"), _arr(0, 1, INF, -INF),
     _arr(0.5, 0.5 * (1 + math.erf(1 / math.sqrt(2))) + math.exp(-0.5) / math.sqrt(2 * math.pi), 1, 0)),
    ("gelu tanh", lambda x, g: S.gelu_vjp(x, g, "tanh"), _arr(0, INF, -INF, 1e200, -1e200), _arr(0.5, 1, 0, 1, 0)),
]


@pytest.mark.parametrize(("name", "vjp", "x", "expected"), GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_gradient_conventions(name, vjp, x, expected):
    np.testing.assert_allclose(vjp(x, np.ones_like(x)), expected, rtol=4e-16, atol=0)


@pytest.mark.parametrize(("name", "vjp", "x", "expected"), GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_the_reference_gradient_at_nan_is_nan(name, vjp, x, expected):
    assert np.isnan(vjp(_arr(NAN), _arr(1.0))).all()


def test_gelu_tanh_gradient_closed_form():
    x = 0.7
    k, c = math.sqrt(2 / math.pi), 0.044715
    t = math.tanh(k * (x + c * x**3))
    expected = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)
    np.testing.assert_allclose(S.gelu_vjp(_arr(x), _arr(1.0), "tanh"), [expected], rtol=1e-15)


# -- PReLU -------------------------------------------------------------------------------------------

def test_prelu_channels_along_dim_1_and_weight_gradient():
    x = np.array([[[-1.0, 2.0], [-3.0, 0.0]], [[4.0, -5.0], [-6.0, 7.0]]])  # (N=2, C=2, L=2)
    w = np.array([0.5, -2.0])
    g = np.array([[[1.0, 1.0], [2.0, 1.0]], [[1.0, 3.0], [1.0, 1.0]]])
    np.testing.assert_array_equal(A.prelu(x, w), [[[-0.5, 2.0], [6.0, 0.0]], [[4.0, -2.5], [12.0, 7.0]]])
    gx, gw = A.prelu_vjp(x, w, g)
    np.testing.assert_array_equal(gx, [[[0.5, 1.0], [-4.0, -2.0]], [[1.0, 1.5], [-2.0, 1.0]]])
    # channel 0: x <= 0 at -1 (g 1) and -5 (g 3): -1 - 15; channel 1: -3 (g 2), 0 (g 1), -6 (g 1): -6 + 0 - 6
    np.testing.assert_array_equal(gw, [-16.0, -12.0])


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
    _, gw = A.prelu_vjp(np.array([[NAN, -2.0]]), np.array([0.25]), np.array([[1.0, 1.0]]))
    assert np.isnan(gw).all()


def test_invalid_parameters_raise():
    with pytest.raises(ValueError):
        A.softshrink(_arr(1.0), -0.5)
    with pytest.raises(ValueError):
        A.hardtanh(_arr(1.0), 1.0, 1.0)
    with pytest.raises(ValueError):
        S.gelu(_arr(1.0), "sigmoid")


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


def test_log_softmax_vjp_closed_form_and_minus_inf_entries():
    x, g = _arr(0.0, LN3, -INF), _arr(1.0, 2.0, 5.0)
    y = M.log_softmax(x, 0)
    # g - p·Σg with p = (1/4, 3/4, 0) and Σg = 8: the -inf entry passes g through
    np.testing.assert_allclose(M.log_softmax_vjp(y, g, 0), [-1.0, -4.0, 5.0], rtol=1e-15)
    # softmin's VJP is softmax's with the sign flipped
    ys = M.softmin(x, 0)
    np.testing.assert_allclose(M.softmin_vjp(ys, g, 0), -M.softmax_vjp(ys, g, 0))


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
    x = _arr(-1e-6)
    y = A.elu(x, 1.0)
    e_out, _ = A.elu_error(x, y, None, 1.0)
    assert e_out[0] >= libm.LIBM_ULPS * 0.99  # alpha·(L·e^x + ...): absolute, not relative to y ≈ -1e-6
    t = _arr(1e-3)
    e_t, e_g = S.tanhshrink_error(t, S.tanhshrink(t), _arr(1.0), 2.0**-24)
    assert e_t[0] >= libm.LIBM_ULPS * math.tanh(1e-3) * 0.99 and e_g[0] >= 2.0  # g - g·(1 - t²)


def test_kink_neighbours_are_the_adjacent_representable_values():
    np.testing.assert_array_equal(np.sort(neighbours([1.0], "float32")), [1 - 2.0**-24, 1 + 2.0**-23])
    np.testing.assert_array_equal(np.sort(neighbours([0.0], "float16")), [-(2.0**-24), 2.0**-24])
    np.testing.assert_array_equal(np.sort(neighbours([-6.0], "bfloat16")), [-6.0 - 2.0**-5, -6.0 + 2.0**-5])
    points = kink_points([0.5, -0.5], "float64")
    assert {0.5, -0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0)} <= set(points.tolist())
