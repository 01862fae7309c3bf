"""``reference.sampling`` on its own terms (no torch): the coordinate maps by hand, sampling the
identity grid returns the input, bilinear reproduces ramps, nearest's ties, the padding modes,
hand-computed grid gradients at the kinks, VJPs against finite differences, and affine_grid's base
coordinates; the error analyses are non-negative and grow where they should."""

from __future__ import annotations

import numpy as np
import pytest

from reference import functional as RF
from reference import sampling as RS
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20261130)


@pytest.mark.parametrize("g, size, align, expected", [
    (-1.0, 5, True, 0.0), (1.0, 5, True, 4.0), (0.0, 4, True, 1.5),
    (-1.0, 5, False, -0.5), (1.0, 5, False, 4.5), (0.0, 4, False, 1.5),
])
def test_unnormalize_hand_values(g, size, align, expected):
    assert RS.unnormalize(np.array(g), size, align)[0] == expected


def test_reflection_folds_about_centres_or_edges():
    """align_corners: reflect about 0 and S - 1 = 3; otherwise about -½ and 3.5 (S = 4)."""
    c = np.array([-1.0, 4.0, 7.5, -7.0])
    centres, sign = RS.reflect(c, 0, 6)
    np.testing.assert_allclose(centres, [1.0, 2.0, 1.5, 1.0])
    np.testing.assert_allclose(sign, [-1, -1, 1, -1])  # -7: two folds of |c| = 7, mirrored once
    edges, _ = RS.reflect(c, -1, 7)
    np.testing.assert_allclose(edges, [0.0, 3.0, -0.5, 1.0])


def test_border_clamps_with_zero_derivative_at_and_beyond_the_border():
    c, grad = RS.pad_coordinate(np.array([-0.5, 0.0, 1.5, 3.0, 4.0]), 4, "border", False)
    np.testing.assert_allclose(c, [0, 0, 1.5, 3, 3])
    np.testing.assert_allclose(grad, [0, 0, 1, 0, 0])


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("align", [False, True])
def test_the_identity_grid_returns_the_input(mode, align):
    x = RNG.standard_normal((2, 3, 4, 5))
    grid = RF.affine_grid(np.broadcast_to(np.eye(2, 3), (2, 2, 3)), (2, 3, 4, 5), align_corners=align)
    np.testing.assert_allclose(RF.grid_sample(x, grid, mode, "zeros", align), x, atol=1e-14)


def test_trilinear_identity_and_ramp():
    x = RNG.standard_normal((1, 2, 3, 4, 2))
    grid = RF.affine_grid(np.eye(3, 4)[None], (1, 2, 3, 4, 2), align_corners=True)
    np.testing.assert_allclose(RF.grid_sample(x, grid, "bilinear", "zeros", True), x, atol=1e-14)
    ramp = np.broadcast_to(np.arange(4.0)[None, None, None, :, None], (1, 1, 3, 4, 2)).copy()
    points = RNG.uniform(-1, 1, (1, 2, 2, 2, 3))
    y = RF.grid_sample(ramp, points, "bilinear", "border", True)
    np.testing.assert_allclose(y[0, 0], (points[0, ..., 1] + 1) / 2 * 3, rtol=1e-13)  # y along H (size 4)


def test_nearest_rounds_ties_to_even_or_up():
    x = np.arange(4.0).reshape(1, 1, 1, 4)
    grid = np.array([[[[0.0, 0.0], [0.5, 0.0], [-0.25, 0.0]]]])  # c = 1.5, 2.5, 1.0
    np.testing.assert_array_equal(RF.grid_sample(x, grid, "nearest", "zeros", False)[0, 0, 0], [2, 2, 1])
    np.testing.assert_array_equal(RS.grid_sample_ties_up(x, grid, "zeros", False)[0, 0, 0], [2, 3, 1])


def test_zeros_padding_reads_zero_outside():
    x = np.ones((1, 1, 2, 2))
    grid = np.array([[[[1.5, 0.0], [-3.0, 0.0], [1.25, 0.0]]]])  # c = 2, -2.5 (outside), 1.75
    y = RF.grid_sample(x, grid, "bilinear", "zeros", False)[0, 0, 0]
    np.testing.assert_allclose(y, [0.0, 0.0, 0.25])  # 1.75: tap 1 weighs ¼, tap 2 is outside
    y = RF.grid_sample(x, np.array([[[[1.0, 0.0]]]]), "bilinear", "zeros", False)  # c = 1.5: half outside
    np.testing.assert_allclose(y, [[[[0.5]]]])


def test_bilinear_grid_gradient_at_a_pixel_centre_is_taken_from_the_right():
    """x = [0, 1, 5] along W, c = 1 exactly: the taps are 1 and 2, dy/dc = x[2] - x[1] = 4, and
    dc/dg = (S - 1)/2 = 1 with align_corners."""
    x = np.array([0.0, 1.0, 5.0]).reshape(1, 1, 1, 3)
    grid = np.array([[[[0.0, 0.0]]]])
    grads = RF.vjp("grid_sample", x, grid, "bilinear", "zeros", True, cotangent=np.ones((1, 1, 1, 1)))
    assert grads["grid"][0, 0, 0, 0] == 4.0
    assert grads["grid"][0, 0, 0, 1] == 0.0  # H = 1: (S - 1)/2 = 0


def test_reflection_flips_the_grid_gradient_on_odd_folds():
    x = np.array([0.0, 1.0, 3.0, 6.0]).reshape(1, 1, 1, 4)
    inside = RF.vjp("grid_sample", x, np.array([[[[0.2, 0.0]]]]), "bilinear", "reflection", True,
                    cotangent=np.ones((1, 1, 1, 1)))["grid"][0, 0, 0, 0]
    folded = RF.vjp("grid_sample", x, np.array([[[[1.8, 0.0]]]]), "bilinear", "reflection", True,
                    cotangent=np.ones((1, 1, 1, 1)))["grid"][0, 0, 0, 0]
    assert folded == pytest.approx(-inside)  # 1.8 reflects onto 0.2 about 1


CALLS = [
    ((2, 2, 3, 4), (2, 3, 2, 2), "bilinear", "zeros", False),
    ((1, 3, 4, 3), (1, 2, 3, 2), "bilinear", "border", True),
    ((1, 2, 3, 5), (1, 2, 2, 2), "bilinear", "reflection", False),
    ((1, 1, 4, 4), (1, 3, 3, 2), "bicubic", "zeros", True),
    ((2, 2, 4, 3), (2, 2, 2, 2), "bicubic", "reflection", False),
    ((1, 2, 3, 2, 4), (1, 2, 2, 1, 3), "bilinear", "border", False),
    ((1, 2, 3, 4), (1, 2, 2, 2), "nearest", "zeros", False),
]


@pytest.mark.parametrize("shape, grid_shape, mode, padding, align", CALLS, ids=[f"{c[2]}-{c[3]}" for c in CALLS])
def test_vjp_matches_finite_differences(shape, grid_shape, mode, padding, align):
    x = RNG.standard_normal(shape)
    grid = RNG.uniform(-2.2, 2.2, grid_shape)
    y = RF.grid_sample(x, grid, mode, padding, align)
    g = RNG.standard_normal(y.shape)
    grads = RF.vjp("grid_sample", x, grid, mode, padding, align, cotangent=g)
    assert grads["grid"].shape == grid.shape and grads["input"].shape == x.shape
    check = vjp_check(lambda a: {"y": RF.grid_sample(a["input"], a["grid"], mode, padding, align)},
                      {"input": x, "grid": grid}, {"y": g}, grads)
    assert check.ok(), check
    if mode == "nearest":
        assert not grads["grid"].any()


def test_invalid_grid_sample_calls_raise():
    x, grid = np.zeros((1, 1, 3, 3)), np.zeros((1, 2, 2, 2))
    for args in [(x, grid, "area"), (x, grid, "bilinear", "circular"), (x[None], grid[..., None], "bicubic"),
                 (np.zeros((2, 1, 3, 3)), grid), (x, np.zeros((1, 2, 2, 3))), (np.zeros((1, 1, 0, 3)), grid)]:
        with pytest.raises(ValueError):
            RF.grid_sample(*args)


@pytest.mark.parametrize("steps, align, expected", [
    (3, True, [-1, 0, 1]), (4, False, [-0.75, -0.25, 0.25, 0.75]), (1, True, [0]), (1, False, [0]), (2, True, [-1, 1]),
])
def test_base_coordinates(steps, align, expected):
    np.testing.assert_allclose(RS.base_coordinates(steps, align), expected)


def test_affine_grid_applies_theta_to_the_base_grid():
    theta = np.array([[[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]])
    grid = RF.affine_grid(theta, (1, 1, 2, 3), align_corners=True)
    x, y = np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 1.0])
    np.testing.assert_allclose(grid[0, ..., 0], 2 * x + 0.5 * y - 1)
    np.testing.assert_allclose(grid[0, ..., 1], y + 3)


@pytest.mark.parametrize("size", [(2, 1, 3, 4), (1, 2, 2, 3, 2)])
def test_affine_grid_vjp(size):
    theta = RNG.standard_normal((size[0], len(size) - 2, len(size) - 1))
    y = RF.affine_grid(theta, size, align_corners=False)
    g = RNG.standard_normal(y.shape)
    grads = RF.vjp("affine_grid", theta, size, align_corners=False, cotangent=g)
    assert vjp_check(lambda a: {"y": RF.affine_grid(a["theta"], size, False)}, {"theta": theta}, {"y": g}, grads).ok()


def test_invalid_affine_grid_calls_raise():
    for theta, size in [(np.zeros((1, 3, 3)), (1, 1, 2, 2)), (np.zeros((1, 2, 3)), (1, 1, 2)),
                        (np.zeros((1, 2, 3)), (1, 1, 0, 2)), (np.zeros((1, 2, 3)), (2, 1, 2, 2)),
                        (np.zeros((1, 2, 3), dtype=np.int64), (1, 1, 2, 2))]:
        with pytest.raises(ValueError):
            RF.affine_grid(theta, size)


def test_error_analyses_are_nonnegative_and_see_the_kinks():
    x = RNG.standard_normal((1, 2, 4, 4))
    near_kink = np.array([[[[(2 * 2.0 + 1) / 4 - 1 + 1e-9, 0.3]]]])  # c just above 2
    away = np.array([[[[(2 * 2.3 + 1) / 4 - 1, 0.3]]]])
    g = np.ones((1, 2, 1, 1))
    kink = RS.grid_sample_error(x, near_kink, g, "bilinear", "zeros", False, 2.0**-24)
    calm = RS.grid_sample_error(x, away, g, "bilinear", "zeros", False, 2.0**-24)
    for errors in (kink, calm):
        assert all((v >= 0).all() for v in errors.values())
    assert kink["grad.grid"][..., 0].max() > 1e3 * calm["grad.grid"][..., 0].max()  # either side of the kink
    affine = RS.affine_grid_error(RNG.standard_normal((1, 2, 3)), (1, 1, 3, 3), np.ones((1, 3, 3, 2)), False)
    assert affine["output"].min() > 0 and affine["grad.theta"].min() > 0
