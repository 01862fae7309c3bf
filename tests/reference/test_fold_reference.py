"""reference.fold (Unfold / Fold) on its own terms: hand-computed columns, an independent formula
(a convolution with one-hot kernels), the adjoint pair, the overlap counts, the sign of zero, and
finite differences of the VJPs. No torch here."""

from __future__ import annotations

import numpy as np
import pytest

from reference import conv as C
from reference import fold as F
from reference import functional as RF
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20261203)

GEOMETRIES = [
    dict(kernel_size=(2, 3), dilation=1, padding=0, stride=1),
    dict(kernel_size=2, dilation=(2, 1), padding=1, stride=(1, 2)),
    dict(kernel_size=(3, 1), dilation=(1, 3), padding=(2, 0), stride=(3, 1)),
    dict(kernel_size=1, dilation=1, padding=(1, 2), stride=2),
]


def test_unfold_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    # 2x2 blocks of a 3x3 image, stride 1: 4 blocks, columns are the blocks' values row-major
    expected = np.array([[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9.0]])
    np.testing.assert_array_equal(RF.unfold(x, 2), expected[None])
    # padding 1, stride 2: blocks at (-1, -1), (-1, 1), (1, -1), (1, 1); padding taps are +0
    cols = RF.unfold(x, 2, padding=1, stride=2)[0]
    np.testing.assert_array_equal(cols[:, 0], [0, 0, 0, 1])
    np.testing.assert_array_equal(cols[:, 3], [5, 6, 8, 9])
    assert not np.signbit(cols).any()


def test_fold_by_hand_sums_overlapping_blocks():
    ones = np.ones((1, 4, 4))  # 2x2 kernel, 4 blocks of a 3x3 image
    np.testing.assert_array_equal(RF.fold(ones, (3, 3), 2)[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    # taps in the padding are dropped; positions no block reaches stay 0 (stride 3 > kernel 1)
    np.testing.assert_array_equal(RF.fold(np.ones((1, 1, 4)), (4, 4), 1, stride=3)[0, 0],
                                  [[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]])
    np.testing.assert_array_equal(RF.fold(np.ones((1, 4, 4)), (2, 2), 2, padding=1, stride=2)[0, 0], np.ones((2, 2)))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_unfold_is_a_convolution_with_one_hot_kernels(geometry):
    """Independent formula: column c·Π k + κ is the convolution of channel c with the one-hot
    kernel at tap κ (same stride, padding, dilation), flattened row-major."""
    x = RNG.standard_normal((2, 3, 7, 6))
    geo = F.fold_geometry(geometry["kernel_size"], geometry["dilation"], geometry["padding"], geometry["stride"])
    taps = int(np.prod(geo.kernel))
    onehot = np.eye(taps).reshape(taps, 1, *geo.kernel)
    weight = np.concatenate([onehot] * 3)  # (3·taps, 1, kh, kw), groups = 3
    conv = C.conv(x, weight, None, geo.stride, tuple(p for p, _ in geo.pads), geo.dilation, 3)
    np.testing.assert_array_equal(RF.unfold(x, **geometry), conv.reshape(2, 3 * taps, -1))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_fold_is_the_adjoint_of_unfold_and_counts_the_overlap(geometry):
    x = RNG.standard_normal((2, 3, 7, 6))
    cols = RF.unfold(x, **geometry)
    y = RNG.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, y), np.vdot(x, RF.fold(y, (7, 6), **geometry)), rtol=1e-12)
    # fold(unfold(x)) multiplies every position by the number of (block, tap) pairs reading it
    counts = RF.fold(np.ones_like(cols), (7, 6), **geometry)
    np.testing.assert_allclose(RF.fold(cols, (7, 6), **geometry), x * counts, rtol=1e-13)
    geo = F.fold_geometry(geometry["kernel_size"], geometry["dilation"], geometry["padding"], geometry["stride"])
    assert F.max_overlap((7, 6), geo) == max(1, int(counts.max()))


def test_unfold_copies_bit_for_bit():
    x = np.array([-0.0, 0.0, np.nan, np.inf, -np.inf, 1e-310, -2.5, 3.0, -0.0]).reshape(1, 1, 3, 3)
    cols = RF.unfold(x, 2, padding=1)
    source = RF.unfold(np.arange(1.0, 10.0).reshape(x.shape), 2, padding=1).astype(int)  # 0: padding
    want = np.where(source > 0, x.reshape(-1)[source - 1], 0.0)
    assert np.array_equal(np.isnan(cols), np.isnan(want))
    assert np.array_equal(np.signbit(cols), np.signbit(want))  # -0 stays -0, padding is +0
    np.testing.assert_array_equal(cols, want)


def test_fold_sum_starts_from_plus_zero():
    cols = np.full((1, 1, 4), -0.0)
    out = RF.fold(cols, (2, 2), 1)
    assert not np.signbit(out).any()  # 0.0 + (-0.0) = +0.0, as col2im's zero-filled output gives


def test_unbatched_and_empty_batch():
    x = RNG.standard_normal((3, 5, 4))
    np.testing.assert_array_equal(RF.unfold(x, 2, stride=2), RF.unfold(x[None], 2, stride=2)[0])
    cols = RF.unfold(x, 2)
    np.testing.assert_array_equal(RF.fold(cols, (5, 4), 2), RF.fold(cols[None], (5, 4), 2)[0])
    assert RF.unfold(np.zeros((0, 3, 5, 4)), 2).shape == (0, 12, 12)
    assert RF.fold(np.zeros((0, 12, 12)), (5, 4), 2).shape == (0, 3, 5, 4)


@pytest.mark.parametrize("geometry", GEOMETRIES[:3])
def test_vjps_match_finite_differences(geometry):
    x = RNG.standard_normal((2, 2, 6, 5))
    cols = RF.unfold(x, **geometry)
    g = RNG.standard_normal(cols.shape)
    grads = RF.vjp("unfold", x, cotangent=g, **geometry)
    assert vjp_check(lambda a: {"y": RF.unfold(a["input"], **geometry)}, {"input": x}, {"y": g}, grads).ok()
    gi = RNG.standard_normal(x.shape)
    grads = RF.vjp("fold", cols, (6, 5), cotangent=gi, **geometry)
    assert vjp_check(lambda a: {"y": RF.fold(a["input"], (6, 5), **geometry)}, {"input": cols}, {"y": gi},
                     grads).ok()


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=0), dict(kernel_size=2, stride=0), dict(kernel_size=2, dilation=(1, 0)),
    dict(kernel_size=2, padding=-1), dict(kernel_size=6), dict(kernel_size=(2, 2, 2)),
])
def test_unfold_rejects_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        RF.unfold(np.zeros((1, 2, 4, 5)), **kwargs)


@pytest.mark.parametrize("shape, output_size", [
    ((1, 7, 12), (4, 5)),  # rows not a multiple of Π kernel
    ((1, 8, 11), (4, 5)),  # columns not the number of blocks
    ((1, 0, 12), (4, 5)),  # no channel
    ((1, 1, 8, 12), (4, 5)),  # a 4-d input
    ((1, 8, 12), (4, 5, 1)),  # a 3-d output size
])
def test_fold_rejects_inconsistent_shapes(shape, output_size):
    with pytest.raises(ValueError):
        RF.fold(np.zeros(shape), output_size, 2)
    with pytest.raises(ValueError):
        RF.unfold(np.zeros((1, 2, 3, 4, 5)), 2)  # a 5-d input
