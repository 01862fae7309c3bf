"""clip_grad_norm_'s reference on hand-computed values (no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference import clip

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
