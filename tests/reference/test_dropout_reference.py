"""The dropout references on their own terms: hand-computed values, the self-normalising property of
alpha dropout in closed form, the units of each variant, and finite differences of the conditional
forms (no torch here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference import dropout as D
from reference import functional as RF
from reference.finite_differences import vjp_check


def test_dropout_scales_what_it_keeps_and_zeroes_the_rest_with_the_sign_of_the_input():
    x = np.array([1.0, -2.0, 3.0, -4.0])
    keep = np.array([True, False, True, False])
    y = RF.dropout(x, 0.75, True, mask=keep)
    np.testing.assert_array_equal(y, [4.0, -0.0, 12.0, -0.0])
    assert np.signbit(y[1]) and np.signbit(y[3])
    g = RF.vjp("dropout", x, 0.75, True, mask=keep, cotangent=np.array([1.0, 1.0, -1.0, 2.0]))["input"]
    np.testing.assert_array_equal(g, [4.0, 0.0, -4.0, 0.0])


@pytest.mark.parametrize("fn", ["dropout", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"])
def test_the_deterministic_points_are_copies_and_input_times_zero(fn):
    x = np.array([[[[2.0, -3.0], [np.inf, -np.inf]], [[np.nan, 0.0], [-0.0, 1.0]]]])
    f = getattr(RF, fn)
    for y in (f(x, 0.5, False), f(x, 0.0, True)):  # evaluation and p = 0: the identity, a copy
        np.testing.assert_array_equal(y, x)
        assert y is not x and np.array_equal(np.signbit(y), np.signbit(x))
    dropped = f(x, 1.0, True)  # p = 1: x·0
    np.testing.assert_array_equal(dropped[0, 0, 0], [0.0, -0.0])
    assert np.signbit(dropped[0, 0, 0, 1]) and np.isnan(dropped[0, 0, 1]).all() and np.isnan(dropped[0, 1, 0, 0])
    np.testing.assert_array_equal(RF.vjp(fn, x, 1.0, True, cotangent=np.ones_like(x))["input"], np.zeros_like(x))
    twos = np.full(x.shape, 2.0)
    np.testing.assert_array_equal(RF.vjp(fn, x, 0.5, False, cotangent=twos)["input"], twos)
    empty = np.zeros((2, 0, 3, 1))
    assert f(empty, 0.5, True).shape == empty.shape  # nothing to draw: no mask needed


def test_the_reference_does_not_draw():
    with pytest.raises(ValueError, match="does not draw"):
        RF.dropout(np.ones(3), 0.5, True)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_outside_the_unit_interval_is_rejected(p):
    with pytest.raises(ValueError):
        RF.alpha_dropout(np.ones(3), p, False)


@pytest.mark.parametrize(("function", "ndim", "units"), [
    ("dropout", 3, 3), ("alpha_dropout", 0, 0), ("dropout1d", 3, 2), ("dropout1d", 2, 1), ("dropout2d", 4, 2),
    ("dropout2d", 3, 2), ("dropout3d", 5, 2), ("dropout3d", 4, 1), ("feature_alpha_dropout", 5, 2),
    ("feature_alpha_dropout", 4, 1), ("feature_alpha_dropout", 3, 2)])
def test_units_of_each_variant(function, ndim, units):
    assert D.unit_dims(function, ndim) == units


def test_channel_masks_keep_a_channel_only_when_all_of_it_is_kept():
    mask = np.ones((2, 3, 2, 2), dtype=bool)
    mask[1, 2, 0, 1] = False  # one element of channel (1, 2) dropped: not a channel mask
    canonical = D.canonical_mask(mask, 2)
    assert canonical[1, 2].sum() == 0 and canonical[:1].all() and canonical[1, :2].all()
    np.testing.assert_array_equal(D.canonical_mask(mask, 4), mask)  # element dropout: any mask
    assert D.unit_shape((2, 3, 4, 5), 2) == (2, 3, 1, 1)


def test_dropout1d_takes_2d_and_3d_inputs_only_in_every_mode():
    for shape in ((4,), (2, 3, 2, 2)):
        for training in (True, False):
            with pytest.raises(ValueError):
                RF.dropout1d(np.ones(shape), 0.5, training, mask=np.ones(shape, dtype=bool))
    unbatched = RF.dropout1d(np.arange(1.0, 7.0).reshape(2, 3), 0.5, True, mask=np.array([[True], [False]]))
    np.testing.assert_array_equal(unbatched, [[2.0, 4.0, 6.0], [0.0, 0.0, 0.0]])


def test_feature_alpha_dropout_needs_two_dims_only_when_it_draws():
    with pytest.raises(ValueError):
        RF.feature_alpha_dropout(np.ones(3), 0.5, True, mask=np.ones(3, dtype=bool))
    np.testing.assert_array_equal(RF.feature_alpha_dropout(np.ones(3), 0.5, False), np.ones(3))
    np.testing.assert_array_equal(RF.feature_alpha_dropout(np.ones(3), 1.0, True), np.zeros(3))


def test_selu_saturation_constant_is_torchs():
    assert D.ALPHA_PRIME == 1.7580993408473766


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 1 / 3, 0.9])
def test_alpha_dropout_coefficients_match_the_paper_and_keep_zero_mean_and_unit_variance(p):
    a, b, dropped = D.alpha_dropout_coefficients(p)
    q, alpha = 1 - p, -D.ALPHA_PRIME  # the paper's keep probability and α' (negative)
    assert math.isclose(a, (q + alpha**2 * q * (1 - q)) ** -0.5, rel_tol=1e-15)
    assert math.isclose(b, -a * (1 - q) * alpha, rel_tol=1e-15)
    assert math.isclose(dropped, a * alpha + b, rel_tol=1e-14)
    # x ~ N(0, 1): E[y] = q·b + p·(a·α' + b), E[y²] = q·(a² + b²) + p·(a·α' + b)².
    mean = q * b + p * dropped
    second = q * (a * a + b * b) + p * dropped**2
    assert abs(mean) < 1e-15 and math.isclose(second, 1.0, rel_tol=1e-14)


def test_alpha_dropout_values_by_hand_and_its_limit_at_p_one():
    # a = ((1 - p)(1 + p·α'²))^(-1/2) at p = 1/2: (1/2·(1 + 3.0909135/2))^(-1/2) = 0.8864049; the dropped
    # value -α'·a·(1 - p) = -1.7580993·0.8864049/2 = -0.7791939.
    a, b, dropped = D.alpha_dropout_coefficients(0.5)
    assert math.isclose(a, 0.886404895, rel_tol=1e-8) and math.isclose(dropped, -0.779193931, rel_tol=1e-8)
    y = RF.alpha_dropout(np.array([0.0, 2.0, 5.0]), 0.5, True, mask=np.array([True, True, False]))
    np.testing.assert_allclose(y, [b, 2 * a + b, dropped], rtol=1e-15)
    assert abs(D.alpha_dropout_coefficients(1 - 1e-12)[2]) < 1e-5  # the dropped value tends to 0
    g = RF.vjp("alpha_dropout", np.ones(3), 0.5, True, mask=np.array([True, False, True]), cotangent=np.ones(3))
    np.testing.assert_allclose(g["input"], [a, 0.0, a], rtol=1e-15)


def test_feature_alpha_dropout_applies_one_choice_per_channel():
    x = np.arange(8.0).reshape(2, 1, 2, 2)
    mask = np.array([True, False]).reshape(2, 1, 1, 1)
    a, b, dropped = D.alpha_dropout_coefficients(0.25)
    y = RF.feature_alpha_dropout(x, 0.25, True, mask=mask)
    np.testing.assert_allclose(y[0], a * x[0] + b, rtol=1e-15)
    np.testing.assert_array_equal(y[1], np.full((1, 2, 2), dropped))


@pytest.mark.parametrize(("fn", "shape", "unit"), [("dropout2d", (2, 3, 2, 2), 2), ("alpha_dropout", (3, 4), 2),
                                                   ("feature_alpha_dropout", (2, 3, 1, 2, 2), 2),
                                                   ("dropout1d", (3, 5), 1)])
def test_conditional_forms_agree_with_finite_differences(fn, shape, unit):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    mask = rng.random(D.unit_shape(shape, unit)) >= 0.4
    kw = {"p": 0.4, "training": True, "mask": mask}
    g = rng.standard_normal(shape)
    grads = RF.vjp(fn, x, cotangent=g, **kw)
    check = vjp_check(lambda inp: {"y": getattr(RF, fn)(inp["x"], **kw)}, {"x": x}, {"y": g}, {"x": grads["input"]})
    assert check.ok(), check


def test_the_older_spelling_of_masked_dropout_still_computes_the_random_branch():
    keep = np.array([True, False])
    np.testing.assert_array_equal(RF.dropout(np.array([1.0, 2.0]), keep, 0.5), D.masked_dropout(np.array([1.0, 2.0]),
                                                                                               keep, 0.5))
