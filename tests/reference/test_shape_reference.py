"""The reshaping and channel-shuffle references on their own terms (no torch): hand shapes and
values, the documentation's example, inverses, the rules, the VJPs; and the copies family's value
rounding (correct rounding, the float32-first alternative torch takes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.numerics.copies import dtype_value, through_float32
from reference import functional as RF
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20240613)


@pytest.mark.parametrize("shape, start, end, expected", [
    ((2, 3, 4, 5), 1, -1, (2, 60)), ((2, 3, 4, 5), 0, -1, (120,)), ((2, 3, 4, 5), -3, -2, (2, 12, 5)),
    ((2, 3, 4, 5), 2, 2, (2, 3, 4, 5)), ((), 0, -1, (1,)), ((), -1, 0, (1,)), ((3,), 0, 0, (3,)),
    ((2, 0, 3), 1, 2, (2, 0)),
])
def test_flatten_shapes(shape, start, end, expected):
    x = RNG.standard_normal(shape)
    y = RF.flatten(x, start, end)
    assert y.shape == expected
    np.testing.assert_array_equal(y.ravel(), x.ravel())  # row-major: the elements in order


@pytest.mark.parametrize("shape, start, end, error", [
    ((2, 3, 4), 2, 1, ValueError), ((2, 3, 4), -1, 0, ValueError), ((2, 3, 4), 3, -1, IndexError),
    ((2, 3, 4), 0, -4, IndexError), ((), 1, -1, IndexError), ((3,), 1, -1, IndexError), ((2, 3), 0.0, 1, TypeError),
])
def test_flatten_rules(shape, start, end, error):
    with pytest.raises(error):
        RF.flatten(np.zeros(shape), start, end)


@pytest.mark.parametrize("shape, dim, sizes, expected", [
    ((2, 6, 3), 1, (2, 3), (2, 2, 3, 3)), ((2, 6, 3), -2, (-1, 3), (2, 2, 3, 3)), ((2, 6, 3), 1, [6], (2, 6, 3)),
    ((2, 6, 3), 2, (3, 1, 1), (2, 6, 3, 1, 1)), ((2, 0, 3), 1, (-1, 2), (2, 0, 2, 3)),
    ((2, 0, 3), 1, (0, 5), (2, 0, 5, 3)), ((6,), 0, (1, -1, 2), (1, 3, 2)),
])
def test_unflatten_shapes_and_flatten_inverts_it(shape, dim, sizes, expected):
    x = RNG.standard_normal(shape)
    y = RF.unflatten(x, dim, sizes)
    assert y.shape == expected
    axis = dim % len(shape)
    np.testing.assert_array_equal(RF.flatten(y, axis, axis + len(sizes) - 1), x)


@pytest.mark.parametrize("shape, dim, sizes, error", [
    ((2, 6), 1, (4, 3), ValueError), ((2, 6), 1, (-1, -1), ValueError), ((2, 6), 1, (), ValueError),
    ((2, 6), 2, (2, 3), IndexError), ((2, 6), -3, (2, 3), IndexError), ((), 0, (1,), ValueError),
    ((2, 0), 1, (-1, 0), ValueError), ((2, 6), 1, (-2, -3), ValueError), ((2, 6), 1, 6, TypeError),
    ((2, 6), "C", (2, 3), TypeError), ((2, 6), 1, (2.0, 3), TypeError), ((2, 6), 1, (-1, 4), ValueError),
])
def test_unflatten_rules(shape, dim, sizes, error):
    with pytest.raises(error):
        RF.unflatten(np.zeros(shape), dim, sizes)


def test_channel_shuffle_documentation_example():
    """ChannelShuffle(2) on arange(1, 17).view(1, 4, 2, 2): channels in the order 0, 2, 1, 3."""
    x = np.arange(1.0, 17.0).reshape(1, 4, 2, 2)
    y = RF.channel_shuffle(x, 2)
    np.testing.assert_array_equal(y[0, :, 0, 0], [1, 9, 5, 13])
    np.testing.assert_array_equal(y, x[:, [0, 2, 1, 3]])


@pytest.mark.parametrize("shape, groups", [((2, 6, 3), 2), ((2, 6, 3), 3), ((1, 12, 2, 2), 4), ((3, 6, 1, 1, 2), 6),
                                           ((2, 0, 3), 2), ((0, 4, 3), 2)])
def test_channel_shuffle_is_a_transpose_and_its_inverse_shuffles_by_c_over_g(shape, groups):
    """out = x viewed (N, g, C/g, *), the two channel axes swapped; shuffling again with C/g groups
    undoes it."""
    x = RNG.standard_normal(shape)
    n, c, *rest = shape
    y = RF.channel_shuffle(x, groups)
    np.testing.assert_array_equal(y, x.reshape(n, groups, c // groups, *rest).swapaxes(1, 2).reshape(shape))
    if c:
        np.testing.assert_array_equal(RF.channel_shuffle(y, c // groups), x)


def test_channel_shuffle_identities():
    x = RNG.standard_normal((2, 5, 3))
    np.testing.assert_array_equal(RF.channel_shuffle(x, 1), x)
    np.testing.assert_array_equal(RF.channel_shuffle(x, 5), x)


@pytest.mark.parametrize("shape, groups, error", [((2, 6, 3), 4, ValueError), ((2, 6, 3), 0, ValueError),
                                                  ((2, 6, 3), -2, ValueError), ((2, 6), 2, ValueError),
                                                  ((6,), 2, ValueError), ((2, 6, 3), 2.0, TypeError)])
def test_channel_shuffle_rules(shape, groups, error):
    with pytest.raises(error):
        RF.channel_shuffle(np.zeros(shape), groups)


@pytest.mark.parametrize("name, args", [("flatten", ((2, 3, 4), 0, 1)), ("unflatten", ((2, 6, 3), 1, (3, -1))),
                                        ("channel_shuffle", ((2, 6, 2, 2), 3))])
def test_vjps_are_the_inverse_copies(name, args):
    shape, *rest = args
    x = RNG.standard_normal(shape)
    y = getattr(RF, name)(x, *rest)
    g = RNG.standard_normal(y.shape)
    grad = RF.vjp(name, x, *rest, cotangent=g)["input"]
    assert np.sum(y * g) == pytest.approx(np.sum(x * grad), rel=1e-12)
    assert sorted(grad.ravel()) == sorted(g.ravel())  # a permutation of the cotangent
    assert vjp_check(lambda a: {"y": getattr(RF, name)(a["input"], *rest)}, {"input": x}, {"y": g},
                     {"input": grad}).ok()


def test_signs_of_zero_and_non_finite_values_are_copied():
    x = np.array([-0.0, np.nan, np.inf, -np.inf, 0.0, 1.0]).reshape(1, 6, 1)
    for y in (RF.channel_shuffle(x, 3), RF.flatten(x), RF.unflatten(x, 1, (2, 3))):
        flat = y.ravel()
        assert np.signbit(flat[flat == 0]).sum() == 1 and np.isnan(flat).sum() == 1 and np.isinf(flat).sum() == 2


@pytest.mark.parametrize("value, dtype, expected", [
    (0.1, "float16", 0.0999755859375), (0.1, "bfloat16", 0.10009765625), (1 / 3, "float32", float(np.float32(1 / 3))),
    (1 + 2.0**-11 + 2.0**-40, "float16", 1.0009765625), (1 + 2.0**-8 + 2.0**-40, "bfloat16", 1.0078125),
    (1 + 2.0**-8, "bfloat16", 1.0), (1 + 3 * 2.0**-8, "bfloat16", 1 + 2.0**-6),  # ties to even
    (-(2.0**-25), "float16", -0.0), (1.5 * 2.0**-24, "float16", 2.0**-23), (2.0**-134, "bfloat16", 0.0),
    (3 * 2.0**-134, "bfloat16", 2.0**-132), (65504.0, "float16", 65504.0), (-0.0, "bfloat16", -0.0),
])
def test_dtype_value_rounds_correctly_from_float64(value, dtype, expected):
    got = dtype_value(value, dtype)
    assert got == expected and math.copysign(1, got) == math.copysign(1, expected)


def test_dtype_value_refuses_overflow_and_keeps_non_finite_values():
    for value, dtype in ((65505.0, "float16"), (1e39, "float32"), (-1e39, "bfloat16")):
        with pytest.raises(ValueError):
            dtype_value(value, dtype)
    assert dtype_value(math.inf, "float16") == math.inf and math.isnan(dtype_value(math.nan, "bfloat16"))
    assert dtype_value(1e300, "float64") == 1e300


def test_through_float32_double_rounds():
    assert through_float32(1 + 2.0**-11 + 2.0**-40, "float16") == 1.0
    assert through_float32(1 + 2.0**-8 + 2.0**-40, "bfloat16") == 1.0
    assert through_float32(0.1, "float16") == dtype_value(0.1, "float16")
