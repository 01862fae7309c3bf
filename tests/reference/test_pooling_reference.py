"""The pooling reference on its own terms (no torch): hand-computed values, closed forms, the
ceil_mode window-dropping rule, invalid parameters, and finite-difference checks of every VJP."""

from __future__ import annotations

import numpy as np
import pytest

from reference import pooling as P
from reference import pooling_functional as PF
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20240601)


def _row(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(1, 1, -1)


# ---------------------------------------------------------------------------------------------
# Window geometry and the ceil_mode drop rule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "k", "s", "p", "d", "ceil", "expected"), [
    (5, 2, 2, 0, 1, False, 2),  # floor((5-2)/2)+1
    (5, 2, 2, 0, 1, True, 3),   # the ceil window starts at 4, inside the input
    (5, 2, 2, 1, 1, True, 3),   # a 4th window would start at 6 = in + p (right padding): dropped
    (6, 2, 3, 0, 1, True, 2),   # stride > kernel: a 3rd window would start at 6 = in: dropped
    (4, 3, 2, 1, 1, True, 3),   # kept: starts at 4 - 1 = 3 (input), clipped at in + p = 5
    (4, 3, 2, 1, 1, False, 2),
    (7, 2, 1, 1, 3, False, 6),  # dilation: e = 4, (7 + 2 - 4)/1 + 1
    (1, 1, 1, 0, 1, True, 1),
])
def test_output_size_hand_values(size, k, s, p, d, ceil, expected):
    assert P.pool_output_size(size, k, s, p, d, ceil) == expected


@pytest.mark.parametrize(("size", "k", "s", "p", "d"), [
    (5, 2, 2, 2, 1),  # padding > kernel // 2
    (5, 3, 2, 2, 1),
    (5, 2, 0, 0, 1),  # zero stride
    (5, 0, 1, 0, 1),  # zero kernel
    (5, 2, 1, 0, 0),  # zero dilation
    (5, 2, 1, -1, 1),  # negative padding
    (2, 3, 1, 0, 1),  # empty output
])
def test_invalid_geometry_raises(size, k, s, p, d):
    with pytest.raises(ValueError):
        P.pool_output_size(size, k, s, p, d, False)


def test_ceil_mode_matches_the_documented_rule():
    """ceil_mode: the ceil-division count, except that windows starting in the right padding or
    beyond (start >= in + p, in padded coordinates) are ignored: out = min(ceil count, #starts
    before in + p). Checked against the closed formula over a grid of geometries."""
    for size in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 7):
                for p in range(0, k // 2 + 1):
                    for d in (1, 2):
                        e = d * (k - 1) + 1
                        if size + 2 * p < e:
                            continue
                        ceil_count = -(-(size + 2 * p - e) // s) + 1
                        starts_inside = -(-(size + p) // s)
                        assert P.pool_output_size(size, k, s, p, d, True) == min(ceil_count, starts_inside)
                        assert P.pool_output_size(size, k, s, p, d, False) == (size + 2 * p - e) // s + 1


# ---------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------


def test_max_pool_hand_values():
    x = _row(1, 3, 2, 5, 4)
    out, idx = P.max_pool(x, (2,), (2,), (0,), (1,), False)
    np.testing.assert_array_equal(out.ravel(), [3, 5])
    np.testing.assert_array_equal(idx.ravel(), [1, 3])
    out, idx = P.max_pool(x, (2,), (2,), (0,), (1,), True)
    np.testing.assert_array_equal(out.ravel(), [3, 5, 4])
    np.testing.assert_array_equal(idx.ravel(), [1, 3, 4])
    # padding is -inf: an all-negative window at the border still yields an input value
    out, idx = P.max_pool(-x, (2,), (2,), (1,), (1,), False)
    np.testing.assert_array_equal(out.ravel(), [-1, -2, -4])
    np.testing.assert_array_equal(idx.ravel(), [0, 2, 4])
    # dilation 2: windows {0, 2}, {1, 3}, {2, 4}
    out, idx = P.max_pool(x, (2,), (1,), (0,), (2,), False)
    np.testing.assert_array_equal(out.ravel(), [2, 5, 4])
    np.testing.assert_array_equal(idx.ravel(), [2, 3, 4])


def test_max_pool_2d_indices_are_flat_per_plane():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x = np.concatenate([x, -x], axis=1)  # second plane: maxima at the window's first element
    out, idx = P.max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
    np.testing.assert_array_equal(out[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(idx[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(idx[0, 1], [[0, 2], [8, 10]])


def test_max_pool_nan_and_empty_windows():
    x = _row(1, np.nan, 3, 2)
    out, idx = P.max_pool(x, (2,), (2,), (0,), (1,), False)
    assert np.isnan(out.ravel()[0]) and idx.ravel()[0] == 1
    assert out.ravel()[1] == 3 and idx.ravel()[1] == 2
    # dilation 3, padding 1 on a length-2 input: taps -1 and 2 are both outside the input
    out, idx = P.max_pool(_row(0, 1), (2,), (1,), (1,), (3,), False)
    assert out.ravel().tolist() == [-np.inf] and idx.ravel().tolist() == [-1]
    grad = P.scatter_by_indices((1, 1, 2), idx, np.ones((1, 1, 1)))
    np.testing.assert_array_equal(grad.ravel(), [0, 0])


def test_avg_pool_divisors_by_hand():
    """in = 4, k = 3, s = 2, p = 1, ceil: windows [-1, 2), [1, 4), [3, 6) clipped at in + p = 5."""
    x = _row(1, 2, 3, 4)
    incl = P.avg_pool(x, (3,), (2,), (1,), True, True)
    excl = P.avg_pool(x, (3,), (2,), (1,), True, False)
    np.testing.assert_allclose(incl.ravel(), [3 / 3, 9 / 3, 4 / 2])  # padding counted, overhang not
    np.testing.assert_allclose(excl.ravel(), [3 / 2, 9 / 3, 4 / 1])
    override = P.avg_pool(np.ones((1, 1, 4, 4)), (3, 3), (2, 2), (1, 1), True, True, divisor_override=5)
    np.testing.assert_allclose(override[0, 0] * 5, [[4, 6, 2], [6, 9, 3], [2, 3, 1]])  # counts / 5


def test_lp_pool_hand_values():
    np.testing.assert_allclose(P.lp_pool(_row(1, 2, 2), 2.0, (2,), (1,), False).ravel(), [5**0.5, 8**0.5])
    np.testing.assert_allclose(P.lp_pool(_row(1, 2, 2), 1.0, (2,), (1,), False).ravel(), [3, 4])
    # ceil-clipped window [12]: torch's implementation scales its sum by K / count = 2
    np.testing.assert_allclose(P.lp_pool(_row(3, 4, 12), 2.0, (2,), (2,), True).ravel(), [5, 12 * 2**0.5])
    # no abs: a negative input with a fractional p is NaN; an odd p keeps the sign of the sum
    assert np.isnan(P.lp_pool(_row(-1, 2), 1.5, (2,), (2,), False)).all()
    np.testing.assert_allclose(P.lp_pool(_row(-1, 2), 3.0, (2,), (2,), False).ravel(), [7 ** (1 / 3)])
    assert np.isnan(P.lp_pool(_row(-2, 1), 3.0, (2,), (2,), False)).all()
    np.testing.assert_array_equal(P.lp_pool(_row(-3, 2, -1, 0.5), np.inf, (2,), (2,), False).ravel(), [3, 1])
    np.testing.assert_array_equal(P.lp_pool(_row(-3, 2, -1, 0.5), -np.inf, (2,), (2,), False).ravel(), [2, 0.5])


def test_lp_pool_zero_window_has_zero_gradient():
    g = P.lp_pool_vjp(_row(0.0, 0.0, 1.0, 2.0), np.ones((1, 1, 2)), 2.0, (2,), (2,), False)
    np.testing.assert_allclose(g.ravel(), [0, 0, 1 / 5**0.5, 2 / 5**0.5])


def test_adaptive_windows_by_hand():
    start, end = P.adaptive_bounds(5, 3)
    np.testing.assert_array_equal(start, [0, 1, 3])
    np.testing.assert_array_equal(end, [2, 4, 5])
    x = _row(1, 2, 3, 4, 5)
    np.testing.assert_allclose(P.adaptive_avg_pool(x, (3,)).ravel(), [1.5, 3, 4.5])
    out, idx = P.adaptive_max_pool(x, (3,))
    np.testing.assert_array_equal(out.ravel(), [2, 4, 5])
    np.testing.assert_array_equal(idx.ravel(), [1, 3, 4])
    # output larger than the input: windows of one element, repeated
    np.testing.assert_array_equal(P.adaptive_avg_pool(_row(1, 2), (3,)).ravel(), [1, 1.5, 2])
    np.testing.assert_array_equal(P.adaptive_bounds(2, 3)[0], [0, 0, 1])


def test_fractional_starts_by_hand():
    """in = 10, k = 2, out = 4, u = 0.5: alpha = 8/3, start_i = floor((i + u)·alpha) - floor(u·alpha)."""
    np.testing.assert_array_equal(P.fractional_starts(np.array([0.5]), 10, 4, 2)[0], [0, 3, 5, 8])
    np.testing.assert_array_equal(P.fractional_starts(np.array([0.0]), 10, 1, 2)[0], [8])
    # rounding every operation to a coarse format changes the sequence (torch evaluates in the dtype)
    to_quarter = lambda v: np.round(np.asarray(v) * 4) / 4  # noqa: E731
    # u = 0.5: alpha -> 2.75, offset 1.375 -> 1.5, 2.5·2.75 = 6.875 -> 7: start_2 = 6 instead of 5
    assert P.fractional_starts(np.array([0.5]), 10, 4, 2, to_quarter)[0].tolist() == [0, 3, 6, 8]
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    out, idx = P.fractional_max_pool(x, (2, 2), (2, 2), np.array([[[0.5, 0.5]]]))
    np.testing.assert_array_equal(idx[0, 0], [[6, 9], [21, 24]])
    np.testing.assert_array_equal(out, x.reshape(1, 1, -1)[..., idx.ravel()].reshape(out.shape))


def test_unpool_output_size_rules():
    assert P.unpool_output_size((3,), (2,), (2,), (0,), None) == (6,)
    assert P.unpool_output_size((3,), (3,), (2,), (1,), None) == (5,)
    assert P.unpool_output_size((3,), (2,), (2,), (0,), (7,)) == (7,)
    assert P.unpool_output_size((3,), (2,), (2,), (0,), (1, 1, 5)) == (5,)
    for bad in ((8,), (4,), (1, 5)):
        with pytest.raises(ValueError):
            P.unpool_output_size((3,), (2,), (2,), (0,), bad)


def test_max_unpool_places_the_maxima():
    x = (RNG.permutation(24) + 1.0).reshape(2, 1, 3, 4)
    out, idx = P.max_pool(x, (2, 2), (2, 2), (1, 1), (1, 1), False)
    restored = P.max_unpool(out, idx, (3, 4))
    named = np.zeros((2, 12), dtype=bool)
    np.put_along_axis(named, idx.reshape(2, -1), True, axis=1)
    named = named.reshape(restored.shape)
    np.testing.assert_array_equal(restored[named], x[named])
    assert (restored[~named] == 0).all()
    with pytest.raises(ValueError):
        P.max_unpool(out, idx + 100, (3, 4))


def test_max_unpool_duplicates_last_wins_and_gradient_gathers():
    out = P.max_unpool(np.array([[[1.0, 2.0, 3.0]]]), np.array([[[1, 1, 0]]]), (3,))
    np.testing.assert_array_equal(out.ravel(), [3, 2, 0])
    g = np.array([[[10.0, 20.0, 30.0]]])
    np.testing.assert_array_equal(P.max_unpool_vjp(np.array([[[1, 1, 0]]]), g).ravel(), [20, 20, 10])


# ---------------------------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------------------------


def _random_geometry(nd: int) -> tuple:
    k = tuple(int(v) for v in RNG.integers(1, 5, nd))
    s = tuple(int(v) for v in RNG.integers(1, 6, nd))
    p = tuple(int(RNG.integers(0, kk // 2 + 1)) for kk in k)
    return k, s, p


def test_avg_pool_of_a_constant_is_the_constant_without_padding_counts():
    for _ in range(60):
        nd = int(RNG.integers(1, 4))
        k, s, p = _random_geometry(nd)
        shape = (1, 2, *[int(v) for v in RNG.integers(max(k), 9, nd)])
        ceil = bool(RNG.integers(0, 2))
        out = P.avg_pool(np.full(shape, 2.5), k, s, p, ceil, False)
        np.testing.assert_allclose(out, 2.5, rtol=1e-15)


def test_adaptive_closed_forms():
    x = RNG.standard_normal((2, 3, 5, 7))
    np.testing.assert_allclose(P.adaptive_avg_pool(x, (1, 1))[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-13)
    out, idx = P.adaptive_max_pool(x, (1, 1))
    np.testing.assert_array_equal(out[..., 0, 0], x.max(axis=(2, 3)))
    np.testing.assert_array_equal(idx[..., 0, 0], x.reshape(2, 3, -1).argmax(-1))
    np.testing.assert_allclose(P.adaptive_avg_pool(x, (5, 7)), x)  # out = in: identity


def test_unit_kernel_max_pool_is_identity():
    x = RNG.standard_normal((2, 2, 3, 4, 5))
    out, idx = P.max_pool(x, (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), False)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(idx, np.broadcast_to(np.arange(60).reshape(3, 4, 5), x.shape))


# ---------------------------------------------------------------------------------------------
# VJPs against central finite differences (float64, tie-free inputs)
# ---------------------------------------------------------------------------------------------


def _fd_check(forward, vjp, x: np.ndarray, h: float = 1e-6, tol: float = 1e-6) -> None:
    """The shared dot-product test (``reference.finite_differences``): d/dt <g, forward(x + t·d)>
    at 0 = <vjp(x, g), d>."""
    g = RNG.standard_normal(np.shape(forward(x)))
    check = vjp_check(lambda moved: {"y": forward(moved["x"])}, {"x": x}, {"y": g}, {"x": vjp(x, g)},
                      {"x": RNG.standard_normal(x.shape)}, h=h)
    assert check.ok(rtol=tol, atol=tol), check


def _distinct(shape) -> np.ndarray:
    return (RNG.permutation(int(np.prod(shape))) + RNG.uniform(0.2, 0.8)).reshape(shape) * 0.5 - 5


def _selection(pool):
    """(forward, vjp) of a max-type pooling ``pool(x) -> (out, indices)``."""
    return (lambda x: pool(x)[0]), (lambda x, g: P.scatter_by_indices(x.shape, pool(x)[1], g))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool_vjp_fd(nd):
    for _ in range(10):
        k, s, p = _random_geometry(nd)
        shape = (2, 2, *[int(v) for v in RNG.integers(max(k), 8, nd)])
        dov = int(RNG.integers(1, 7)) if nd > 1 and RNG.random() < 0.3 else None
        args = (k, s, p, bool(RNG.integers(0, 2)), bool(RNG.integers(0, 2)), dov)
        _fd_check(lambda x, a=args: P.avg_pool(x, *a),
                  lambda x, g, a=args: P.avg_pool_vjp(x.shape, g, *a), RNG.standard_normal(shape))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_vjp_fd(nd):
    for _ in range(10):
        k, s, p = _random_geometry(nd)
        d = tuple(int(v) for v in RNG.integers(1, 3, nd))
        shape = (2, 2, *[int(v) for v in RNG.integers(max(k) * max(d), 9, nd)])
        args = (k, s, p, d, bool(RNG.integers(0, 2)))
        _fd_check(*_selection(lambda x, a=args: P.max_pool(x, *a)), _distinct(shape))


@pytest.mark.parametrize("norm", [1.0, 2.0, 3.0, 1.5, 0.5, 8.0, np.inf, -np.inf])
def test_lp_pool_vjp_fd(norm):
    for nd in (1, 2):
        for _ in range(4):
            k = tuple(int(v) for v in RNG.integers(1, 4, nd))
            s = tuple(int(v) for v in RNG.integers(1, 4, nd))
            shape = (1, 2, *[int(v) for v in RNG.integers(max(k), 8, nd)])
            args = (norm, k, s, bool(RNG.integers(0, 2)))
            x = _distinct(shape) / 10 + 0.1 if np.isinf(norm) else RNG.uniform(0.5, 2.0, shape)
            _fd_check(lambda x, a=args: P.lp_pool(x, *a),
                      lambda x, g, a=args: P.lp_pool_vjp(x, g, *a), x, tol=1e-5)


def test_adaptive_vjps_fd():
    for _ in range(10):
        nd = int(RNG.integers(1, 3))
        shape = (2, 2, *[int(v) for v in RNG.integers(1, 9, nd)])
        out = tuple(int(v) for v in RNG.integers(1, 11, nd))
        _fd_check(lambda x, o=out: P.adaptive_avg_pool(x, o),
                  lambda x, g, o=out: P.adaptive_avg_pool_vjp(x.shape, g, o), RNG.standard_normal(shape))
        _fd_check(*_selection(lambda x, o=out: P.adaptive_max_pool(x, o)), _distinct(shape))


def test_fractional_and_unpool_vjps_fd():
    samples = RNG.random((2, 3, 2))
    _fd_check(*_selection(lambda x: P.fractional_max_pool(x, (2, 3), (4, 5), samples)), _distinct((2, 3, 9, 8)))
    idx = np.stack([RNG.permutation(12)[:5] for _ in range(6)]).reshape(2, 3, 5)  # no duplicates
    _fd_check(lambda v: P.max_unpool(v, idx, (12,)), lambda v, g: P.max_unpool_vjp(idx, g),
              RNG.standard_normal((2, 3, 5)))


def test_max_overlap_counts_windows():
    taps = [P.sliding_taps(7, 5, 3, 1, 0)]
    assert P.max_overlap((7,), taps) == 3
    taps = [P.sliding_taps(7, 3, 2, 3, 1)]
    assert P.max_overlap((7,), taps) == 1


# ---------------------------------------------------------------------------------------------
# FractionalMaxPool2d[drawn]: the statistical check of the samples torch draws
# ---------------------------------------------------------------------------------------------


def _drawn_cases(count: int, dtype: str):
    """``count`` cases of FractionalMaxPool2d[drawn] with 2 samples of 3 channels each."""
    from backends.base import Case
    from conformance.spec import all_specs

    spec = all_specs()["FractionalMaxPool2d[drawn]"]
    case = Case(op="FractionalMaxPool2d", dtype=dtype, params={"kernel_size": 2, "output_size": 2},
                inputs={"input": np.zeros((2, 3, 5, 5))}, variant="drawn")
    return spec, [case] * count


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fractional_sample_check_catches_shared_and_biased_samples(dtype):
    """Samples shared across channels, or confined to [0, 1/2), or reaching 1, fail the check at
    the runner's rate; torch-like samples (``sample``) pass it."""
    spec, cases = _drawn_cases(40, dtype)
    rng = np.random.default_rng(5)
    good = [(c, spec.randomness.sample(c, rng)) for c in cases]
    shared = [(c, {"_random_samples": np.broadcast_to(s["_random_samples"][:, :1], s["_random_samples"].shape)})
              for c, s in good]
    low = [(c, {"_random_samples": s["_random_samples"] / 2}) for c, s in good]
    one = [(c, {"_random_samples": np.where(s["_random_samples"] > 0.9, 1.0, s["_random_samples"])})
           for c, s in good]
    alpha = spec.randomness.false_alarm

    def failed(samples):
        return {check.name for check in spec.randomness.check(samples, alpha) if not check.ok}

    assert failed(good) == set()
    assert "independent channels" in failed(shared)
    assert {"below 0.5", "below 0.75"} <= failed(low)
    assert "range" in failed(one)


# ---------------------------------------------------------------------------------------------
# The torch.nn.functional API (3-d included)
# ---------------------------------------------------------------------------------------------


def test_functional_pooling_handles_unbatched_inputs_and_return_indices():
    from reference import functional as RF

    x = _distinct((3, 6, 5, 4))
    out, idx = RF.max_pool3d(x, 2, padding=1, return_indices=True)
    bout, bidx = RF.max_pool3d(x[None], 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(out, bout[0])
    np.testing.assert_array_equal(idx, bidx[0])
    np.testing.assert_array_equal(RF.max_pool3d(x, (2, 2, 2), padding=1), out)
    np.testing.assert_array_equal(RF.avg_pool3d(x, 2, stride=(1, 2, 1)), P.avg_pool(x[None], (2,) * 3, (1, 2, 1),
                                                                                    (0,) * 3, False, True)[0])
    with pytest.raises(ValueError):
        RF.max_pool2d(x[None], 2)  # a 5-d input is 3-d pooling's


def test_adaptive_3d_closed_forms():
    from reference import functional as RF

    x = RNG.standard_normal((2, 3, 4, 6, 5))
    np.testing.assert_allclose(RF.adaptive_avg_pool3d(x, 1)[..., 0, 0, 0], x.mean(axis=(2, 3, 4)), rtol=1e-13)
    # windows that divide the input: block means; None keeps a dim
    blocks = x.reshape(2, 3, 2, 2, 3, 2, 5).mean(axis=(3, 5))
    np.testing.assert_allclose(RF.adaptive_avg_pool3d(x, (2, 3, None)), blocks, rtol=1e-13)
    out, idx = RF.adaptive_max_pool3d(x, (1, 1, 1), return_indices=True)
    np.testing.assert_array_equal(out[..., 0, 0, 0], x.max(axis=(2, 3, 4)))
    np.testing.assert_array_equal(idx[..., 0, 0, 0], x.reshape(2, 3, -1).argmax(-1))
    with pytest.raises(ValueError):
        RF.adaptive_avg_pool3d(x, (1, -1, 1))


def test_lp_pool3d_closed_forms():
    from reference import functional as RF

    x = RNG.uniform(0.5, 2.0, (1, 2, 4, 4, 6))
    k = (2, 2, 3)
    sums = x.reshape(1, 2, 2, 2, 2, 2, 2, 3).sum(axis=(3, 5, 7))
    np.testing.assert_allclose(RF.lp_pool3d(x, 1.0, k), sums, rtol=1e-13)  # p = 1: the window sum
    squares = (x**2).reshape(1, 2, 2, 2, 2, 2, 2, 3).sum(axis=(3, 5, 7))
    np.testing.assert_allclose(RF.lp_pool3d(x, 2.0, k), np.sqrt(squares), rtol=1e-13)
    np.testing.assert_array_equal(RF.lp_pool3d(-x, np.inf, k),
                                  np.abs(x).reshape(1, 2, 2, 2, 2, 2, 2, 3).max(axis=(3, 5, 7)))
    # a ceil-clipped window: its sum of powers scaled by K / count (torch's avg_pool then ·K)
    y = RNG.uniform(0.5, 2.0, (1, 1, 3, 2, 2))
    clipped = RF.lp_pool3d(y, 2.0, 2, ceil_mode=True)
    np.testing.assert_allclose(clipped[0, 0, 1, 0, 0], np.sqrt(8 / 4 * (y[0, 0, 2] ** 2).sum()), rtol=1e-13)


def test_fractional_3d_samples_drive_depth_height_width():
    """u in [..., 0] drives the depth, [..., 1] the height, [..., 2] the width (torch's order);
    in = 11, k = 1, out = 4: u = 0 starts at 0, 3, 6, 10 and u = 0.5 at 0, 4, 7, 10."""
    from reference import functional as RF

    x = np.arange(11.0**3).reshape(1, 1, 11, 11, 11)
    for which in range(3):
        u = np.zeros((1, 1, 3))
        u[..., which] = 0.5
        _, idx = RF.fractional_max_pool3d(x, 1, output_size=4, return_indices=True, _random_samples=u)
        coords = np.stack(np.unravel_index(idx.ravel(), (11, 11, 11)))
        for dim in range(3):
            want = [0, 4, 7, 10] if dim == which else [0, 3, 6, 10]
            assert sorted(set(coords[dim].tolist())) == want, (which, dim)
    with pytest.raises(ValueError):
        RF.fractional_max_pool3d(x, 1, output_size=4)  # the reference draws nothing
    with pytest.raises(ValueError):
        RF.fractional_max_pool3d(x, 2, output_size=11, _random_samples=np.zeros((1, 1, 3)))  # pool too large


def test_fractional_output_ratio_and_size():
    assert PF.fractional_output_size((10, 7, 5), None, 0.5) == (5, 3, 2)
    assert PF.fractional_output_size((10, 7), 3, 0.5) == (3, 3)  # output_size wins (F's rule)
    with pytest.raises(ValueError):
        PF.fractional_output_size((10, 7), None, None)


@pytest.mark.parametrize("norm", [2.0, 1.5, np.inf])
def test_lp_pool_error_analysis_is_zero_only_where_exact(norm):
    x = RNG.uniform(0.5, 2.0, (1, 2, 6, 5))
    g = RNG.standard_normal(P.lp_pool(x, norm, (2, 2), (2, 2), True).shape)  # (1, 2, 3, 3): ceil mode
    out, grad = P.lp_pool_error(x, g, norm, (2, 2), (2, 2), True, 2.0**-1074 / 2.0**-53)
    assert out.shape == g.shape and grad.shape == x.shape
    if np.isinf(norm):
        assert (out == 0).all()  # a selection: exact
        assert (grad > 0).sum() == (g != 0).sum()  # one selected element per window
    else:
        assert (out > 0).all() and (grad > 0).all()
