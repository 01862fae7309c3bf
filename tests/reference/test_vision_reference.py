"""The pixel (un)shuffle reference on its own terms (no torch): hand values, the inverse, the
channel order, invalid shapes, and the VJPs against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from reference import functional as RF
from reference import vision as V
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20240611)


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
    (V.pixel_shuffle, (4, 2), 2),          # fewer than 3 dims
])
def test_pixel_invalid_shapes_raise(fn, shape, r):
    with pytest.raises(ValueError):
        fn(np.zeros(shape), r)


@pytest.mark.parametrize("name, shape, r", [("pixel_shuffle", (2, 8, 2, 3), 2), ("pixel_unshuffle", (3, 1, 6, 3), 3)])
def test_pixel_vjp_is_the_inverse_permutation(name, shape, r):
    x = RNG.standard_normal(shape)
    y = getattr(RF, name)(x, r)
    g = RNG.standard_normal(y.shape)
    grads = RF.vjp(name, x, r, cotangent=g)
    assert np.sum(y * g) == pytest.approx(np.sum(x * grads["input"]), rel=1e-13)
    assert vjp_check(lambda a: {"y": getattr(RF, name)(a["input"], r)}, {"input": x}, {"y": g}, grads).ok()


def test_pixel_shuffle_copies_non_finite_values_and_signed_zeros():
    x = np.array([np.nan, np.inf, -np.inf, -0.0]).reshape(1, 4, 1, 1)
    y = V.pixel_shuffle(x, 2)[0, 0]
    assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[1, 0] == -np.inf and np.signbit(y[1, 1])
