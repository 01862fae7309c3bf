"""Reference of the first slice (Softmax, Linear, BatchNorm2d; the losses moved to test_loss_reference), checked
on its own terms: values worked out by hand or in closed form, and every VJP against central
finite differences in float64. No torch here."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from reference import activation, linear, normalization
from reference.finite_differences import vjp_check

# -- finite differences -------------------------------------------------------------------------


def assert_vjp_matches_fd(forward: Callable[..., np.ndarray], inputs: dict[str, np.ndarray],
                          grads: dict[str, np.ndarray], cotangent: np.ndarray, seed: int = 0) -> None:
    """The shared dot-product test (``reference.finite_differences``) of ``forward(**inputs)``."""
    check = vjp_check(lambda moved: {"y": forward(**moved)}, inputs, {"y": cotangent}, grads,
                      {n: np.random.default_rng(seed + i).standard_normal(np.shape(inputs[n]))
                       for i, n in enumerate(grads)})
    assert check.ok(rtol=1e-6, atol=1e-8), check


# -- Softmax ------------------------------------------------------------------------------------


def test_softmax_of_equal_logits_is_uniform():
    np.testing.assert_allclose(activation.softmax(np.full((2, 5), 3.0), -1), np.full((2, 5), 0.2), rtol=1e-15)


def test_softmax_hand_values_and_overflow_safety():
    # exp(ln 3) = 3: softmax([0, ln 3]) = [1/4, 3/4], and shifting by 1000 changes nothing.
    x = np.array([0.0, math.log(3.0)])
    np.testing.assert_allclose(activation.softmax(x, 0), [0.25, 0.75], rtol=1e-15)
    np.testing.assert_allclose(activation.softmax(x + 1000.0, 0), [0.25, 0.75], rtol=1e-12)
    np.testing.assert_allclose(activation.softmax(np.array([-1e4, 1e4]), 0), [0.0, 1.0])


def test_softmax_minus_infinity():
    y = activation.softmax(np.array([[0.0, -np.inf, math.log(3.0)], [-np.inf, -np.inf, -np.inf]]), 1)
    np.testing.assert_allclose(y[0], [0.25, 0.0, 0.75], rtol=1e-15)
    assert np.isnan(y[1]).all()  # no finite entry: -inf - -inf


def test_softmax_dims_and_implicit_choice():
    x = np.arange(24.0).reshape(2, 3, 4) / 7
    for dim in (0, 1, 2, -1, -3):
        y = activation.softmax(x, dim)
        np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=1e-15)
    assert [activation.softmax_implicit_dim(n) for n in range(5)] == [0, 0, 1, 0, 1]
    np.testing.assert_array_equal(activation.softmax(x, None), activation.softmax(x, 0))
    np.testing.assert_array_equal(activation.softmax(x[0], None), activation.softmax(x[0], 1))
    assert activation.softmax(np.array(2.5), -1) == 1.0
    with pytest.raises(ValueError):
        activation.softmax(x, 3)


def test_softmax_vjp_hand_value():
    # y = [1/2, 1/2], g = [1, 0]: y·(g - Σ y·g) = [1/4, -1/4]
    y = activation.softmax(np.zeros(2), 0)
    np.testing.assert_allclose(activation.softmax_vjp(y, np.array([1.0, 0.0]), 0), [0.25, -0.25])


@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 1), ((2, 3, 4), 0), ((2, 3, 2, 2), -1), ((), 0)])
def test_softmax_vjp_matches_fd(shape, dim):
    rng = np.random.default_rng(len(shape))
    x, g = rng.standard_normal(shape) * 3, rng.standard_normal(shape)
    grad = activation.softmax_vjp(activation.softmax(x, dim), g, dim)
    assert_vjp_matches_fd(lambda input: activation.softmax(input, dim), {"input": x}, {"input": grad}, g)


# -- Linear -------------------------------------------------------------------------------------


def test_linear_hand_values():
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(linear.linear(np.array([1.0, 2.0]), w, b), [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(linear.linear(np.array([1.0, 2.0]), w, None), [1.0, 2.0, 3.0])


def test_linear_any_rank_is_the_rowwise_matmul():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((6, 5)), rng.standard_normal(6)
    expected = np.einsum("abci,oi->abco", x, w) + b
    np.testing.assert_allclose(linear.linear(x, w, b), expected, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError):
        linear.linear(x[..., :4], w, b)
    with pytest.raises(ValueError):
        linear.linear(np.array(1.0), w, b)


def test_linear_vjp_hand_values():
    x, w = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, -1.0]])
    gx, gw, gb = linear.linear_vjp(x, w, np.array([[1.0], [2.0]]), True)
    np.testing.assert_array_equal(gx, [[1.0, -1.0], [2.0, -2.0]])
    np.testing.assert_array_equal(gw, [[7.0, 10.0]])  # 1·[1, 2] + 2·[3, 4]
    np.testing.assert_array_equal(gb, [3.0])


@pytest.mark.parametrize("x_shape,bias", [((4,), True), ((3, 4), False), ((2, 3, 4), True)])
def test_linear_vjp_matches_fd(x_shape, bias):
    rng = np.random.default_rng(len(x_shape))
    x, w = rng.standard_normal(x_shape), rng.standard_normal((5, 4))
    b = rng.standard_normal(5) if bias else None
    g = rng.standard_normal(x_shape[:-1] + (5,))
    gx, gw, gb = linear.linear_vjp(x, w, g, bias)
    inputs = {"x": x, "w": w, **({"b": b} if bias else {})}
    grads = {"x": gx, "w": gw, **({"b": gb} if bias else {})}
    assert_vjp_matches_fd(lambda x, w, b=None: linear.linear(x, w, b), inputs, grads, g)


# -- BatchNorm2d --------------------------------------------------------------------------------

# One channel holding 1, 2, 3, 4: mean 5/2, biased variance 5/4, unbiased 5/3.
BATCH = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)


def test_batch_norm_of_a_known_batch():
    mean, var = normalization.batch_stats(BATCH)
    np.testing.assert_allclose([mean[0], var[0]], [2.5, 1.25], rtol=1e-15)
    y = normalization.batch_norm(BATCH, mean, var, None, None, eps=0.0)
    np.testing.assert_allclose(y.reshape(-1), np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25), rtol=1e-14)
    y = normalization.batch_norm(BATCH, mean, var, np.array([2.0]), np.array([1.0]), eps=0.0)
    np.testing.assert_allclose(y.reshape(-1), 1 + 2 * np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25))


def test_batch_norm_running_statistics():
    rm, rv, n = normalization.update_running_stats(np.array([0.0]), np.array([1.0]), 0, BATCH, 0.1)
    np.testing.assert_allclose([rm[0], rv[0]], [0.25, 0.9 + 0.1 * 5 / 3], rtol=1e-15)  # unbiased variance
    assert n == 1
    # momentum None: cumulative average, factor 1/(3 + 1) after three tracked batches
    rm, rv, n = normalization.update_running_stats(np.array([1.0]), np.array([1.0]), 3, BATCH, None)
    np.testing.assert_allclose([rm[0], rv[0]], [0.75 + 0.25 * 2.5, 0.75 + 0.25 * 5 / 3], rtol=1e-15)
    assert n == 4
    with pytest.raises(ValueError):
        normalization.update_running_stats(np.array([0.0]), np.array([1.0]), 0, BATCH[:, :, :1, :1], 0.1)


def test_batch_norm_is_invariant_to_shift_and_scale_of_the_batch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 2, 2))
    y1 = normalization.batch_norm(x, *normalization.batch_stats(x), None, None, eps=0.0)
    y2 = normalization.batch_norm(5 * x + 7, *normalization.batch_stats(5 * x + 7), None, None, eps=0.0)
    np.testing.assert_allclose(y1, y2, atol=1e-12)


def test_batch_norm_train_vjp_closed_forms():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal(3)
    # A constant cotangent: the output's mean is b whatever x, so dL/dx = 0, dL/dw = Σ x̂ = 0, dL/db = K.
    gx, gw, gb = normalization.batch_norm_train_vjp(x, w, np.ones_like(x), eps=0.0)
    np.testing.assert_allclose(gx, 0.0, atol=1e-12)
    np.testing.assert_allclose(gw, 0.0, atol=1e-12)
    np.testing.assert_array_equal(gb, 8.0)
    # g = x̂ with eps = 0: x̂·Σ(x̂²)/K = x̂, so dL/dx = 0 (scaling x does not change x̂); dL/dw = K.
    xhat = normalization.batch_norm(x, *normalization.batch_stats(x), None, None, eps=0.0)
    gx, gw, _ = normalization.batch_norm_train_vjp(x, w, xhat, eps=0.0)
    np.testing.assert_allclose(gx, 0.0, atol=1e-12)
    np.testing.assert_allclose(gw, 8.0, rtol=1e-13)


def test_batch_norm_eval_vjp_hand_values():
    gx, gw, gb = normalization.batch_norm_eval_vjp(BATCH, np.array([1.0]), np.array([4.0]), np.array([3.0]),
                                                   np.ones_like(BATCH), eps=0.0)
    np.testing.assert_allclose(gx, 1.5)  # w/σ = 3/2
    np.testing.assert_allclose(gw, [(0 + 1 + 2 + 3) / 2])
    np.testing.assert_allclose(gb, [4.0])


@pytest.mark.parametrize("shape,affine,eps", [((2, 3, 2, 2), True, 1e-5), ((4, 1, 1, 1), False, 0.1),
                                              ((1, 2, 3, 1), True, 1.0)])
def test_batch_norm_vjps_match_fd(shape, affine, eps):
    rng = np.random.default_rng(shape[0])
    c = shape[1]
    x, g = rng.standard_normal(shape) + 2.0, rng.standard_normal(shape)
    w, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    gx, gw, gb = normalization.batch_norm_train_vjp(x, w, g, eps)

    def train(x, w=None, b=None):
        return normalization.batch_norm(x, *normalization.batch_stats(x), w, b, eps=eps)

    inputs = {"x": x, **({"w": w, "b": b} if affine else {})}
    assert_vjp_matches_fd(train, inputs, {"x": gx, **({"w": gw, "b": gb} if affine else {})}, g)

    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    gx, gw, gb = normalization.batch_norm_eval_vjp(x, rm, rv, w, g, eps)

    def evaluate(x, w=None, b=None):
        return normalization.batch_norm(x, rm, rv, w, b, eps=eps)

    assert_vjp_matches_fd(evaluate, inputs, {"x": gx, **({"w": gw, "b": gb} if affine else {})}, g)
