"""The fast window reductions of ``reference.pooling_windows`` against the plain form, bit for bit.

The plain form (gather every tap of every window, numpy's ``max``/``argmax``/``sum`` over the taps,
``bincount`` for the VJP) defines the reference's numbers; the tap-by-tap forms must reproduce them
exactly: same values (the sign of zeros included), same arg-max indices, same NaN positions (a
NaN's payload and sign are not compared). Drawn over every window kind: sliding (padding, dilation,
ceil overhang, empty windows), shared irregular windows (adaptive) and per-plane ones (fractional),
with ties, signed zeros, NaN and infinities, and kernels past numpy's pairwise-summation blocks
(8 and 128 taps).
"""

from __future__ import annotations

import numpy as np
import pytest

from reference import pooling as P
from reference import pooling_windows as W

RNG = np.random.default_rng(20261129)


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype.kind == "f":
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan)
        got, want = np.where(nan, 0.0, got), np.where(nan, 0.0, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.array_equal(got, want)


def _values(shape: tuple[int, ...], kind: str) -> np.ndarray:
    x = RNG.standard_normal(shape)
    if kind == "ties":
        x = np.round(x)
    elif kind == "zeros":
        x = np.where(RNG.random(shape) < 0.4, -0.0, np.where(RNG.random(shape) < 0.5, 0.0, x))
    elif kind == "special":
        for value in (np.nan, np.inf, -np.inf):
            x[RNG.random(shape) < 0.06] = value
    return x


def _sliding(nd: int) -> tuple[tuple[int, ...], list[W.Taps]]:
    """A drawn sliding geometry (spatial size, taps), valid for torch's rules."""
    while True:
        k, s, d = (tuple(int(v) for v in RNG.integers(1, hi, nd)) for hi in (5, 4, 3))
        p = tuple(int(RNG.integers(0, kk // 2 + 1)) for kk in k)
        spatial = tuple(int(RNG.integers(1, 12)) for _ in range(nd))
        try:
            return spatial, P.pool_taps(spatial, k, s, p, d, bool(RNG.integers(0, 2)))
        except ValueError:
            continue


def _geometries() -> list[tuple[str, tuple[int, ...], list[W.Taps]]]:
    cases = [(f"sliding{nd}d", *_sliding(nd)) for nd in (1, 2, 3) for _ in range(12)]
    for nd in (1, 2, 3):
        for _ in range(4):
            spatial = tuple(int(v) for v in RNG.integers(1, 10, nd))
            out = tuple(int(v) for v in RNG.integers(1, 12, nd))
            cases.append((f"adaptive{nd}d", spatial, [P.adaptive_taps(n, o) for n, o in zip(spatial, out)]))
    large = [((40, 40), (12, 12), (3, 2), (5, 6)), ((300,), (150,), (7,), (0,)),
             ((12, 12, 12), (6, 6, 5), (2, 3, 1), (3, 2, 2))]
    for spatial, k, s, p in large:
        cases.append(("large", spatial, P.pool_taps(spatial, k, s, p, (1,) * len(k), True)))
    # padding wider than torch allows: windows with no tap inside the input
    cases.append(("empty", (4, 5), [P.sliding_taps(4, 9, 2, 1, 3), P.sliding_taps(5, 4, 2, 2, 2, 2)]))
    return cases


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf: NaN is the result
@pytest.mark.parametrize("kind", ["distinct", "ties", "zeros", "special"])
def test_window_reductions_match_the_plain_form(kind):
    for _, spatial, taps in _geometries():
        x = _values((2, 3, *spatial), kind)
        got, want = W.window_max(x, taps), W._window_max_generic(x, taps)
        _assert_same(got[0], want[0]), _assert_same(got[1], want[1])
        _assert_same(W.window_sum(x, taps), W._window_sum_generic(x, taps))
        g = _values((2, 3, *[t.out for t in taps]), kind)
        _assert_same(W.window_sum_vjp(x.shape, taps, g), W._window_sum_vjp_generic(x.shape, taps, g))


@pytest.mark.parametrize("kind", ["distinct", "ties", "zeros", "special"])
def test_per_plane_windows_match_the_plain_form(kind):
    for _ in range(12):
        k = tuple(int(v) for v in RNG.integers(1, 4, 2))
        spatial = tuple(int(RNG.integers(kk, 12)) for kk in k)
        out = tuple(int(RNG.integers(1, n - kk + 2)) for n, kk in zip(spatial, k))
        u = RNG.random((2 * 3, 2))
        taps = [P.fractional_taps(P.fractional_starts(u[:, 1 - d], spatial[d], out[d], k[d]), k[d]) for d in (0, 1)]
        x = _values((2, 3, *spatial), kind)
        got, want = W.window_max(x, taps), W._window_max_generic(x, taps)
        _assert_same(got[0], want[0]), _assert_same(got[1], want[1])
