"""The padding reference on its own terms (no torch): hand values and the documentation's examples,
numpy.pad as an independent formula, crops as slices of the padded extension, the crop-first
reading of circular padding, torch's rules, and the VJP as the adjoint scatter-add."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference import functional as RF
from reference import padding as P
from reference.finite_differences import vjp_check
from reference.shape import scatter_error

RNG = np.random.default_rng(20240612)
NUMPY_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def test_hand_values_of_every_mode():
    x = np.arange(4.0).reshape(1, 1, 4)
    assert RF.pad(x, (2, 1), "constant", -1.0)[0, 0].tolist() == [-1, -1, 0, 1, 2, 3, -1]
    assert RF.pad(x, (2, 1), "reflect")[0, 0].tolist() == [2, 1, 0, 1, 2, 3, 2]
    assert RF.pad(x, (2, 1), "replicate")[0, 0].tolist() == [0, 0, 0, 1, 2, 3, 3]
    assert RF.pad(x, (2, 1), "circular")[0, 0].tolist() == [2, 3, 0, 1, 2, 3, 0]
    assert RF.pad(x, (0, 3), "reflect")[0, 0].tolist() == [0, 1, 2, 3, 2, 1, 0]  # padding = size - 1


def test_the_documentation_examples():
    """CircularPad1d(2), CircularPad1d((3, 1)) and CircularPad2d((1, 1, 2, 0)) as documented."""
    x = np.arange(8.0).reshape(1, 2, 4)
    np.testing.assert_array_equal(RF.pad(x, (2, 2), "circular"), [[[2, 3, 0, 1, 2, 3, 0, 1], [6, 7, 4, 5, 6, 7, 4, 5]]])
    np.testing.assert_array_equal(RF.pad(x, (3, 1), "circular"), [[[1, 2, 3, 0, 1, 2, 3, 0], [5, 6, 7, 4, 5, 6, 7, 4]]])
    y = RF.pad(np.arange(9.0).reshape(1, 1, 3, 3), (1, 1, 2, 0), "circular")
    np.testing.assert_array_equal(y[0, 0], [[5, 3, 4, 5, 3], [8, 6, 7, 8, 6], [2, 0, 1, 2, 0], [5, 3, 4, 5, 3],
                                            [8, 6, 7, 8, 6]])


@pytest.mark.parametrize("mode", sorted(NUMPY_MODES))
@pytest.mark.parametrize("shape, pad", [((2, 3, 5), (2, 3)), ((1, 2, 4, 3), (1, 2, 3, 0)),
                                        ((2, 1, 3, 4, 5), (0, 2, 1, 1, 2, 2)), ((3, 4), (3, 3))])
def test_positive_padding_matches_numpy_pad(mode, shape, pad):
    """numpy.pad (constant, reflect, edge, wrap) is an independent implementation of the four modes."""
    x = RNG.standard_normal(shape)
    pairs = [(0, 0)] * (len(shape) - len(pad) // 2) + [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)][::-1]
    if mode == "reflect" and any(p >= n for (l, r), n in zip(pairs, shape) for p in (l, r) if p):
        pytest.skip("reflection of at least the size")
    kwargs = {"constant_values": 2.5} if mode == "constant" else {}
    expected = np.pad(x, pairs, mode=NUMPY_MODES[mode], **kwargs)
    np.testing.assert_array_equal(RF.pad(x, pad, mode, 2.5 if mode == "constant" else None), expected)


@pytest.mark.parametrize("mode, pad", [("constant", (-1, 2)), ("reflect", (-2, 3)), ("replicate", (3, -5)),
                                       ("circular", (-1, 2)), ("circular", (2, -3)), ("reflect", (-5, 3)),
                                       ("replicate", (-6, 3)), ("circular", (-4, 3))])
def test_a_crop_removes_positions_of_the_padded_extension(mode, pad):
    """pad(x, (l, r)) with a negative side equals the positive part padded, then sliced ("pad, then
    crop"): a crop never changes what the remaining positions read."""
    x = RNG.standard_normal((2, 4))
    left, right = pad
    full = RF.pad(x, (max(left, 0), max(right, 0)), mode)
    stop = full.shape[-1] - max(-right, 0)
    np.testing.assert_array_equal(RF.pad(x, pad, mode), full[:, max(-left, 0):stop])


def test_two_dims_pad_independently():
    """Padding two dims is padding one, then the other (last dim first in the flat tuple)."""
    x = RNG.standard_normal((2, 3, 4))
    for mode in ("constant", "reflect", "replicate", "circular"):
        both = RF.pad(x, (1, 2, -1, 2), mode)
        np.testing.assert_array_equal(both, RF.pad(RF.pad(x, (1, 2), mode), (0, 0, -1, 2), mode))


def test_copies_keep_the_sign_of_zero_nan_and_inf():
    x = np.array([[[-0.0, np.nan, np.inf, -np.inf]]])
    for mode in ("constant", "reflect", "replicate", "circular"):
        y = RF.pad(x, (3, 3), mode, -0.0 if mode == "constant" else None)
        assert np.signbit(y[0, 0, 3]) and np.isnan(y[0, 0, 4]) and y[0, 0, 5] == np.inf
    y = RF.pad(x, (1, 1), "constant", -0.0)
    assert y[0, 0, 0] == 0 and np.signbit(y[0, 0, 0]) and np.signbit(y[0, 0, -1])
    assert np.isnan(RF.pad(x, (1, 0), "constant", math.nan)[0, 0, 0])


def test_constant_padding_of_empty_dims_and_crops_to_empty():
    assert RF.pad(np.zeros((2, 0)), (1, 2), "constant", 7.0).tolist() == [[7.0] * 3] * 2
    assert RF.pad(np.zeros((2, 3)), (-1, -2), "constant").shape == (2, 0)
    assert RF.pad(np.zeros((2, 3)), (-3, 1), "constant", 5.0).tolist() == [[5.0]] * 2
    assert RF.pad(np.zeros((1, 2, 3)), (-1, -2), "circular").shape == (1, 2, 0)
    assert RF.pad(np.zeros((1, 2, 0)), (0, 0), "circular").shape == (1, 2, 0)


def test_circular_remainder_reading():
    """torch's reading: crop, then wrap around what remains; equal to the extension without a
    crop, different where one side crops and the other pads, undefined past the remainder."""
    x = np.arange(4.0).reshape(1, 1, 4)
    assert P.pad_circular_remainder(x, (-1, 2))[0, 0].tolist() == [1, 2, 3, 1, 2]
    assert RF.pad(x, (-1, 2), "circular")[0, 0].tolist() == [1, 2, 3, 0, 1]
    assert P.pad_circular_remainder(x, (2, -1))[0, 0].tolist() == [1, 2, 0, 1, 2]
    for pad in ((2, 3), (-1, -2), (4, 4), (0, -4)):
        np.testing.assert_array_equal(P.pad_circular_remainder(x, pad), RF.pad(x, pad, "circular"))
    for pad in ((-2, 3), (3, -2), (-5, 2), (1, -4)):
        with pytest.raises(ValueError):
            P.pad_circular_remainder(x, pad)
    g = RNG.standard_normal((1, 1, 5))
    grad = P.pad_circular_remainder_vjp(g, x, (-1, 2))["input"]
    assert grad[0, 0].tolist() == [0.0, g[0, 0, 0] + g[0, 0, 3], g[0, 0, 1] + g[0, 0, 4], g[0, 0, 2]]


@pytest.mark.parametrize("shape, pad, mode, value", [
    ((2, 3), (1, 1, 1), "constant", None),          # odd length
    ((3,), (1, 1, 1, 1), "constant", None),         # more padded dims than the input has
    ((2, 3), (-4, 0), "constant", None),            # crops more than the dim holds
    ((2, 3), (-2, -2), "constant", None),
    ((1, 2, 3), (3, 0), "reflect", None),           # reflection as long as the dim
    ((1, 2, 3), (0, 1), "reflect", 1.0),            # a value outside constant mode
    ((3,), (1, 1), "reflect", None),                # a 1-d input for 1-d reflection
    ((1, 1, 1, 3), (1, 1), "replicate", None),      # a 4-d input for 1-d replication
    ((1, 2, 3), (-2, -1), "replicate", None),       # cropped to empty
    ((1, 2, 2, 3), (0, 0, -1, -1), "reflect", None),
    ((1, 0, 3), (1, 1), "replicate", None),         # an empty channel dim
    ((0, 3), (1, 1), "reflect", None),              # unbatched: the first dim is a channel dim
    ((1, 2, 3), (4, 0), "circular", None),          # wraps twice
    ((1, 2, 3), (-3, -1), "circular", None),        # below empty
    ((1, 2, 3), (1, 1), "symmetric", None),
])
def test_torch_rules_raise(shape, pad, mode, value):
    with pytest.raises(ValueError):
        RF.pad(np.zeros(shape), pad, mode, value)


def test_what_the_rules_allow():
    assert RF.pad(np.zeros((0, 2, 3)), (1, 1), "reflect").shape == (0, 2, 5)  # empty batch
    assert RF.pad(np.zeros((1, 2, 1)), (4, 2), "replicate").shape == (1, 2, 7)  # larger than the input
    assert RF.pad(np.zeros((1, 2, 3)), (3, 3), "circular").shape == (1, 2, 9)  # wrapping exactly once
    assert RF.pad(np.zeros(3), (1, 1)).shape == (5,)  # constant: any rank
    assert RF.pad(np.zeros((2, 3)), (-5, 3), "replicate").shape == (2, 1)  # a crop past the edge


@pytest.mark.parametrize("mode, pad", [("constant", (2, -1, 1, 3)), ("reflect", (-1, 2, 2, 1)),
                                       ("replicate", (3, 4, -2, 1)), ("circular", (-1, 3, 3, -2))])
def test_vjp_is_the_adjoint_scatter_add(mode, pad):
    x = RNG.standard_normal((2, 3, 4))
    y = RF.pad(x, pad, mode)
    g = RNG.standard_normal(y.shape)
    grad = RF.vjp("pad", x, pad, mode, cotangent=g)["input"]
    assert np.sum(y * g) == pytest.approx(np.sum(x * grad), rel=1e-12)
    assert vjp_check(lambda a: {"y": RF.pad(a["input"], pad, mode)}, {"input": x}, {"y": g}, {"input": grad}).ok()


def test_copy_counts_and_the_scatter_error():
    """Replicating a 1×1 plane by (2, 3) and (1, 0) copies its element 6·2 times; the VJP of ones
    counts the copies, and the scatter-add of n copies carries n - 1 roundings."""
    x = np.zeros((1, 1, 1, 1))
    counts = RF.vjp("pad", x, (2, 3, 1, 0), "replicate", cotangent=np.ones((1, 1, 2, 6)))["input"]
    assert counts.item() == 12
    reflect = RF.vjp("pad", np.zeros((1, 4)), (1, 2), "reflect", cotangent=np.ones((1, 7)))["input"]
    assert reflect.tolist() == [[1, 3, 2, 1]]  # [b, a, b, c, d, c, b]
    assert scatter_error(np.array([0.0, 1.0, 2.0, 12.0]), np.array([5.0, 5.0, 5.0, 5.0])).tolist() == [0, 0, 5, 55]


def test_pad_input_is_the_convolution_form_of_pad():
    x = RNG.standard_normal((2, 3, 4, 5))
    pads = [(1, 2), (2, 0)]
    for mode in ("zeros", "reflect", "replicate", "circular"):
        y = P.pad_input(x, pads, mode)
        np.testing.assert_array_equal(y, RF.pad(x, (2, 0, 1, 2), P.CONV_MODES[mode]))
        g = RNG.standard_normal(y.shape)
        np.testing.assert_array_equal(P.pad_input_vjp(g, x.shape, pads, mode),
                                      RF.vjp("pad", x, (2, 0, 1, 2), P.CONV_MODES[mode], cotangent=g)["input"])
