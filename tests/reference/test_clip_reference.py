"""torch.nn.utils' gradient references (reference.clip, reference.utils) on hand-computed values and
independent formulas (no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference import clip
from reference import functional as RF
from reference.finite_differences import vjp_check

GRADS = [np.array([3.0, -4.0]), np.array([[0.0], [12.0]])]


@pytest.mark.parametrize(("norm_type", "expected"), [
    (2.0, 13.0),  # sqrt(9 + 16 + 144)
    (1.0, 19.0),
    (float("inf"), 12.0),
    (0.5, (math.sqrt(3) + 2 + math.sqrt(12)) ** 2),
    (3.0, (27 + 64 + 1728) ** (1 / 3)),
])
def test_total_norm_is_the_norm_of_all_elements_together(norm_type, expected):
    assert clip.total_norm(GRADS, norm_type) == pytest.approx(expected, rel=1e-15)


def test_total_norm_of_large_norm_type_neither_overflows_nor_underflows():
    assert clip.total_norm([np.array([3.0, 4.0, 0.5])], 1000.0) == pytest.approx(4.0, rel=1e-12)
    assert clip.total_norm([np.array([1e-300, 2e-300])], 100.0) == pytest.approx(2e-300 * (1 + 2.0**-100) ** 0.01)
    assert clip.power_sum([np.array([4.0])], 1000.0) == math.inf  # what an unscaled sum forms


def test_no_gradient_gives_zero_and_non_finite_gradients_propagate():
    assert clip.total_norm([], 2.0) == 0.0
    assert math.isnan(clip.total_norm([np.array([1.0, np.nan]), np.array([np.inf])], 2.0))
    assert clip.total_norm([np.array([1.0, -np.inf])], 2.0) == math.inf
    assert clip.total_norm([np.array([1.0, -np.inf])], float("inf")) == math.inf


@pytest.mark.parametrize(("max_norm", "total", "coef"), [
    (1.0, 13.0, 1.0 / (13.0 + 1e-6)),  # clipped
    (26.0, 13.0, 1.0),  # clamped: never amplified
    (13.0, 13.0, 13.0 / (13.0 + 1e-6)),  # at the norm: the 1e-6 still scales slightly
    (0.0, 13.0, 0.0),
    (1.0, 0.0, 1.0),  # all-zero gradients: 1/1e-6 clamped
    (1.0, math.inf, 0.0),
])
def test_clip_coefficient(max_norm, total, coef):
    assert clip.clip_coefficient(max_norm, total) == coef


def test_nan_norm_gives_nan_coefficient_and_inf_times_zero_is_nan():
    assert math.isnan(clip.clip_coefficient(1.0, math.nan))
    out = clip.clip([np.array([2.0, np.inf])], 0.0)[0]
    assert out[0] == 0.0 and math.isnan(out[1])
    np.testing.assert_array_equal(clip.clip([np.array([3.0, -4.0])], 0.5)[0], [1.5, -2.0])


# -- the registered torch.nn.utils functions --------------------------------------------------------------

def test_get_total_norm_takes_a_single_tensor_or_a_list_and_the_string_inf():
    assert float(RF.get_total_norm(GRADS, 2.0)) == 13.0
    assert float(RF.get_total_norm(np.array([3.0, -4.0]))) == 5.0
    assert float(RF.get_total_norm(GRADS, "inf")) == 12.0
    assert float(RF.get_total_norm([], 2.0)) == 0.0
    assert float(RF.get_total_norm([np.zeros((0, 3)), np.array([-2.0])], float("inf"))) == 2.0  # empty: no element
    with pytest.raises(ValueError):
        RF.get_total_norm([np.array([1.0, np.nan])], 2.0, error_if_nonfinite=True)
    assert math.isnan(float(RF.get_total_norm([np.array([1.0, np.nan])], 2.0)))


def test_clip_grads_with_norm_uses_the_given_norm_and_leaves_missing_gradients():
    g = np.array([3.0, -4.0])
    out = RF.clip_grads_with_norm_([g, None], 1.0, np.array(5.0 - 1e-6))
    np.testing.assert_allclose(out[0], g / 5.0, rtol=1e-15)
    assert out[1] is None
    # a negative total norm: the documented formula gives a negative coefficient (-1 / (2 - 1e-6))
    np.testing.assert_allclose(RF.clip_grads_with_norm_([g], 1.0, np.array(-2.0))[0], g / (-2.0 + 1e-6))
    assert np.isnan(RF.clip_grads_with_norm_([g], 1.0, np.array(np.nan))[0]).all()
    with pytest.raises(TypeError):
        RF.clip_grads_with_norm_([g], 1.0, 5.0)  # total_norm is a tensor


def test_clip_grad_norm_is_get_total_norm_then_clip_grads_with_norm():
    total, clipped = RF.clip_grad_norm_(GRADS + [None], 6.5)
    assert float(total) == 13.0 and clipped[2] is None
    for g, c in zip(GRADS, clipped):
        np.testing.assert_allclose(c, g * 6.5 / (13.0 + 1e-6), rtol=1e-15)


@pytest.mark.parametrize(("clip_value", "expected"), [
    (2.0, [-2.0, -0.5, 0.0, 2.0, np.nan, -2.0]),
    (np.inf, [-3.0, -0.5, 0.0, 5.0, np.nan, -np.inf]),
    (0.0, [0.0, 0.0, 0.0, 0.0, np.nan, 0.0]),
    (-1.0, [-1.0, -1.0, -1.0, -1.0, np.nan, -1.0]),  # min > max: every element is clip_value
])
def test_clip_grad_value_clamps_keeps_nan_and_follows_torch_clamp_for_negative_values(clip_value, expected):
    g = np.array([-3.0, -0.5, 0.0, 5.0, np.nan, -np.inf])
    out = RF.clip_grad_value_([g, None], clip_value)
    np.testing.assert_array_equal(out[0], expected)
    assert out[1] is None


def test_parameters_to_vector_flattens_row_major_and_its_vjp_splits_the_cotangent():
    params = [np.arange(6.0).reshape(2, 3), np.array(7.0), np.zeros((0, 2)), np.array([8.0, 9.0])]
    np.testing.assert_array_equal(RF.parameters_to_vector(params), [0, 1, 2, 3, 4, 5, 7, 8, 9])
    cot = np.arange(9.0) * 10
    grads = RF.vjp("parameters_to_vector", params, cotangent=cot)["parameters"]
    assert [g.shape for g in grads] == [(2, 3), (), (0, 2), (2,)]
    np.testing.assert_array_equal(grads[0], [[0, 10, 20], [30, 40, 50]])
    assert float(grads[1]) == 60.0
    flat = {f"p{i}": p for i, p in enumerate(params)}
    check = vjp_check(lambda x: {"out": RF.parameters_to_vector([x[f"p{i}"] for i in range(4)])}, flat,
                      {"out": cot}, {f"p{i}": g for i, g in enumerate(grads)})
    assert check.ok(), check
    with pytest.raises(ValueError):
        RF.parameters_to_vector([])


def test_vector_to_parameters_is_the_inverse_and_checks_the_length():
    params = [np.zeros((2, 3)), np.zeros(()), np.zeros(2)]
    values = RF.vector_to_parameters(np.arange(9.0), params)
    np.testing.assert_array_equal(values[0], [[0, 1, 2], [3, 4, 5]])
    assert values[1].shape == () and float(values[1]) == 6.0
    np.testing.assert_array_equal(RF.parameters_to_vector(values), np.arange(9.0))
    for length in (8, 10):
        with pytest.raises(ValueError):
            RF.vector_to_parameters(np.arange(float(length)), params)
    with pytest.raises(TypeError):
        RF.vector_to_parameters(list(range(9)), params)


def test_norm_error_grows_with_length_and_vanishes_for_the_infinity_norm():
    u, tiny = 2.0**-24, 2.0**-149
    short = clip.norm_error([np.ones(4)], 2.0, u, tiny, tiny)
    long = clip.norm_error([np.ones(400)], 2.0, u, tiny, tiny)
    assert 0 < short < long
    # (2·√K + 1)/2 + 2 per level, two levels (K = 4, then m = 1): 4.5 + 3.5
    assert short == pytest.approx((2 * 2 + 1) / 2 + 2 + (2 * 1 + 1) / 2 + 2)
    assert clip.norm_error([np.ones(4)], float("inf"), u, tiny, tiny) == 0.0
    assert clip.coefficient_error(short, 0.5, u, tiny) == pytest.approx(short + 3 + tiny / 0.5 / u)
