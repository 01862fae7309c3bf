"""The vision reference on its own terms (no torch): pixel shuffle hand values and inverse,
torch's nearest index rule (float32, shortcuts, 1/factor vs in/out), align_corners bilinear
weights, and the adjointness of every VJP."""

from __future__ import annotations

import numpy as np
import pytest

from reference import vision as V

RNG = np.random.default_rng(20240611)


# -- pixel shuffle ------------------------------------------------------------------------------

def test_pixel_shuffle_hand_values():
    """out[c, h·r + i, w·r + j] = in[c·r² + i·r + j, h, w]: channel k of a 2×2 block lands at
    (k // 2, k % 2) of each block."""
    x = np.arange(16.0).reshape(1, 4, 2, 2)
    y = V.pixel_shuffle(x, 2)
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(y[0, 0], [[0, 4, 1, 5], [8, 12, 9, 13], [2, 6, 3, 7], [10, 14, 11, 15]])


@pytest.mark.parametrize("shape, r", [((1, 4, 2, 3), 2), ((9, 1, 2), 3), ((2, 3, 2, 16, 1, 1), 4), ((5, 2, 2), 1)])
def test_pixel_unshuffle_inverts_pixel_shuffle(shape, r):
    x = RNG.standard_normal(shape)
    y = V.pixel_shuffle(x, r)
    assert y.shape == (*shape[:-3], shape[-3] // (r * r), shape[-2] * r, shape[-1] * r)
    np.testing.assert_array_equal(V.pixel_unshuffle(y, r), x)


def test_pixel_shuffle_channel_order_is_not_the_transposed_block():
    """The (i, j) offset within a block comes from channel i·r + j, not j·r + i."""
    x = np.zeros((1, 9, 1, 1))
    x[0, 1, 0, 0] = 1.0  # i = 0, j = 1
    y = V.pixel_shuffle(x, 3)[0, 0]
    assert y[0, 1] == 1.0 and y.sum() == 1.0


@pytest.mark.parametrize("fn, shape, r", [
    (V.pixel_shuffle, (1, 6, 2, 2), 2),    # 6 channels, r² = 4
    (V.pixel_shuffle, (1, 4, 2, 2), 0),
    (V.pixel_unshuffle, (1, 2, 3, 4), 2),  # H = 3
])
def test_pixel_invalid_shapes_raise(fn, shape, r):
    with pytest.raises(ValueError):
        fn(np.zeros(shape), r)


# -- nearest -------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_size, out_size, scale, expected", [
    (5, 6, 1.3, [0, 0, 1, 2, 3, 3]),     # s = 1/1.3: the last output reads 3.85 -> 3
    (5, 6, None, [0, 0, 1, 2, 3, 4]),    # s = 5/6: the last output reads 4.17 -> 4
    (8, 8, 1.1, list(range(8))),         # out = in: torch copies (floor(7/1.1) would be 6)
    (3, 6, 2.05, [0, 0, 1, 1, 2, 2]),    # out = 2·in: dst >> 1
    (4, 2, 0.5, [0, 2]),                 # downsampling
    (3, 1, None, [0]),
    (2, 7, None, [0, 0, 0, 0, 1, 1, 1]),  # 2/7 in float32
    (3, 10, 3.3, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]),
])
def test_nearest_source_index_hand_values(in_size, out_size, scale, expected):
    np.testing.assert_array_equal(V.nearest_source_index(in_size, out_size, scale), expected)


def test_nearest_index_is_evaluated_in_float32():
    """s = float32(1/3) is slightly above 1/3, so 3·s rounds to 1.0 exactly in float32 and floor
    gives 1 (float64 arithmetic gives the same here, but the rule is float32's product)."""
    s = np.float32(1.0 / 3.0)
    assert float(s) > 1 / 3
    idx = V.nearest_source_index(1, 4, 3.0)
    np.testing.assert_array_equal(idx, [0, 0, 0, 0])  # clamped to in - 1
    np.testing.assert_array_equal(V.nearest_source_index(4, 12, 3.0), np.arange(12) // 3)


@pytest.mark.parametrize("in_size, size, scale, expected", [(5, None, 1.3, 6), (3, None, 0.5, 1), (4, 7, None, 7)])
def test_output_size(in_size, size, scale, expected):
    assert V.output_size(in_size, size, scale) == expected


@pytest.mark.parametrize("in_size, size, scale", [(3, 0, None), (3, None, 0.3), (3, None, -1.0)])
def test_output_size_must_be_positive(in_size, size, scale):
    with pytest.raises(ValueError):
        V.output_size(in_size, size, scale)


def test_nearest_forward_copies_non_finite_values():
    x = np.array([[[[np.nan, np.inf], [-np.inf, 1.0]]]])
    ih = V.nearest_source_index(2, 4, 2.0)
    y = V.upsample_nearest2d(x, ih, ih)
    assert np.isnan(y[0, 0, :2, :2]).all() and (y[0, 0, :2, 2:] == np.inf).all() and (y[0, 0, 2:, 2:] == 1).all()


# -- bilinear (align_corners=True) ---------------------------------------------------------------

def test_bilinear_hand_values():
    a = V.bilinear_matrix(2, 3)
    np.testing.assert_allclose(a, [[1, 0], [0.5, 0.5], [0, 1]])
    np.testing.assert_allclose(V.bilinear_matrix(3, 1), [[1, 0, 0]])  # out = 1: src = 0
    np.testing.assert_allclose(V.bilinear_matrix(1, 3), [[1], [1], [1]])  # in = 1: every output copies
    np.testing.assert_allclose(V.bilinear_matrix(5, 3), [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]])


@pytest.mark.parametrize("in_size, out_size", [(2, 5), (7, 3), (4, 4), (3, 8), (6, 1), (1, 1)])
def test_bilinear_reproduces_linear_functions_at_aligned_corners(in_size, out_size):
    """Rows sum to 1, the corners map onto the corners, and a ramp a + b·i is reproduced exactly
    at the source positions dst·(in - 1)/(out - 1)."""
    a = V.bilinear_matrix(in_size, out_size)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    ramp = 2.0 + 0.5 * np.arange(in_size)
    _, _, _, src = V.bilinear_taps(in_size, out_size)
    np.testing.assert_allclose(a @ ramp, 2.0 + 0.5 * src, rtol=1e-15)
    assert a[0, 0] == 1.0 and (out_size == 1 or a[-1, -1] == 1.0)


def test_bilinear_gather_matches_the_matrix_form():
    x = RNG.standard_normal((2, 3, 4, 5))
    th, tw = V.bilinear_taps(4, 7), V.bilinear_taps(5, 3)
    via_matrices = np.einsum("oh,nchw,pw->ncop", V.bilinear_matrix(4, 7), x, V.bilinear_matrix(5, 3))
    np.testing.assert_allclose(V.upsample_bilinear2d(x, th, tw), via_matrices, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("make", ["nearest", "bilinear"])
def test_separable_vjp_is_the_adjoint(make):
    """<A_h x A_wᵀ, g> = <x, A_hᵀ g A_w> for random x, g: the dot-product test of the VJP."""
    for in_h, in_w, out_h, out_w in [(3, 4, 7, 2), (5, 5, 5, 10), (1, 2, 3, 1)]:
        if make == "nearest":
            a_h, a_w = V.nearest_matrix(in_h, out_h, None), V.nearest_matrix(in_w, out_w, 1.5)
        else:
            a_h, a_w = V.bilinear_matrix(in_h, out_h), V.bilinear_matrix(in_w, out_w)
        x = RNG.standard_normal((2, 2, in_h, in_w))
        g = RNG.standard_normal((2, 2, out_h, out_w))
        y = np.einsum("oh,nchw,pw->ncop", a_h, x, a_w)
        np.testing.assert_allclose(np.sum(y * g), np.sum(x * V.separable_vjp(g, a_h, a_w)), rtol=1e-12)


def test_nearest_vjp_counts_the_readers_of_each_input():
    g = np.ones((1, 1, 6, 1))
    a_h = V.nearest_matrix(5, 6, 1.3)  # sources [0, 0, 1, 2, 3, 3]
    grad = V.separable_vjp(g, a_h, np.ones((1, 1)))
    np.testing.assert_array_equal(grad[0, 0, :, 0], [2, 1, 1, 2, 0])
