"""``reference.interpolate`` on its own terms (no torch): torch's documented index and weight rules
by hand, independent formulas (Keys' kernel values, adaptive windows, Pillow's antialias filter),
the adjointness and finite differences of every mode's VJP, the calls torch rejects, and the error
analysis against a NumPy emulation of float32 arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from reference import functional as RF
from reference import interpolate as RI
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20261129)


def matrix(mode, in_size, out_size, scale=None, align_corners=False, antialias=False):
    return RI.axis_taps(mode, in_size, out_size, scale, align_corners, antialias).matrix()


# -- nearest and nearest-exact ---------------------------------------------------------------------

@pytest.mark.parametrize("in_size, out_size, scale, expected", [
    (5, 6, 1.3, [0, 0, 1, 2, 3, 3]),     # s = 1/1.3: the last output reads 3.85 -> 3
    (5, 6, None, [0, 0, 1, 2, 3, 4]),    # s = 5/6: the last output reads 4.17 -> 4
    (8, 8, 1.1, [0, 0, 1, 2, 3, 4, 5, 6]),  # out = in: the documented rule follows the factor
    (3, 6, 2.05, [0, 0, 0, 1, 1, 2]),    # out = 2·in: ⌊dst/2.05⌋
    (4, 2, 0.5, [0, 2]),                 # downsampling
    (3, 1, None, [0]),
    (2, 7, None, [0, 0, 0, 0, 1, 1, 1]),  # 2/7 in float32
    (3, 10, 3.3, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]),
])
def test_nearest_index_hand_values(in_size, out_size, scale, expected):
    np.testing.assert_array_equal(RI.nearest_index(in_size, out_size, scale), expected)


def test_nearest_kernel_shortcuts():
    """torch's shortcut variant: a copy when out = in, dst >> 1 when out = 2·in."""
    np.testing.assert_array_equal(RI.kernel_taps("nearest", 8, 8, 1.1).index[:, 0], np.arange(8))
    np.testing.assert_array_equal(RI.kernel_taps("nearest", 3, 6, 2.05).index[:, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(RI.kernel_taps("bilinear", 5, 5, 1.1).matrix(), np.eye(5))


def test_nearest_index_is_evaluated_in_float32():
    """s = float32(1/3) is slightly above 1/3; 3·s rounds to 1.0 in float32 (clamped here)."""
    assert float(np.float32(1.0 / 3.0)) > 1 / 3
    np.testing.assert_array_equal(RI.nearest_index(1, 4, 3.0), [0, 0, 0, 0])
    np.testing.assert_array_equal(RI.nearest_index(4, 12, 3.0), np.arange(12) // 3)


@pytest.mark.parametrize("in_size, out_size, expected", [
    (5, 6, [0, 1, 2, 2, 3, 4]),   # ⌊(dst + ½)·5/6⌋
    (4, 2, [1, 3]),               # the centres of pairs
    (3, 7, [0, 0, 1, 1, 1, 2, 2]),
])
def test_nearest_exact_hand_values(in_size, out_size, expected):
    np.testing.assert_array_equal(RI.nearest_index(in_size, out_size, None, exact=True), expected)


def test_nearest_copies_non_finite_values_exactly():
    x = np.array([[[np.nan, np.inf, -0.0]]])
    y = RF.interpolate(x, size=6)
    assert np.isnan(y[0, 0, :2]).all() and (y[0, 0, 2:4] == np.inf).all() and np.signbit(y[0, 0, 4:]).all()


# -- linear modes ------------------------------------------------------------------------------------

def test_linear_align_corners_false_hand_values():
    """s = in/out = ½: src = ½(dst + ½) - ½ = -¼ (clamped to 0), ¼, ¾, 1¼ (i1 clamped to i0)."""
    np.testing.assert_allclose(matrix("linear", 2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])


def test_bilinear_align_corners_true_hand_values():
    np.testing.assert_allclose(matrix("bilinear", 2, 3, align_corners=True), [[1, 0], [0.5, 0.5], [0, 1]])
    np.testing.assert_allclose(matrix("bilinear", 3, 1, align_corners=True), [[1, 0, 0]])  # out = 1: src = 0
    np.testing.assert_allclose(matrix("bilinear", 1, 3, align_corners=True), [[1], [1], [1]])  # in = 1
    np.testing.assert_allclose(matrix("bilinear", 5, 3, align_corners=True), np.eye(5)[[0, 2, 4]])


@pytest.mark.parametrize("in_size, out_size", [(2, 5), (7, 3), (4, 4), (3, 8), (6, 1), (1, 1)])
def test_align_corners_reproduces_linear_functions(in_size, out_size):
    """Rows sum to 1, the corners map onto the corners, and a ramp a + b·i is reproduced exactly
    at the source positions dst·(in - 1)/(out - 1)."""
    a = matrix("linear", in_size, out_size, align_corners=True)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    ramp = 2.0 + 0.5 * np.arange(in_size)
    src = np.arange(out_size) * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0)
    np.testing.assert_allclose(a @ ramp, 2.0 + 0.5 * src, rtol=1e-15)


def test_the_factor_sets_the_scale_unless_recomputed():
    """in = 5, factor 1.3: the output has 6 elements; s = 1/1.3 (given) or 5/6 (recomputed)."""
    x = RNG.standard_normal((1, 1, 5))
    by_factor = RF.interpolate(x, scale_factor=1.3, mode="linear")
    np.testing.assert_allclose(by_factor, x @ matrix("linear", 5, 6, 1.3).T)
    np.testing.assert_allclose(RF.interpolate(x, scale_factor=1.3, mode="linear", recompute_scale_factor=True),
                               RF.interpolate(x, size=6, mode="linear"))
    assert not np.allclose(by_factor, RF.interpolate(x, size=6, mode="linear"))


# -- bicubic ---------------------------------------------------------------------------------------------

def test_keys_kernel_hand_values():
    """W(½) = (A + 2)/8 - (A + 3)/4 + 1 = 0.59375 and W(3/2) = A·(27/8 - 45/4 + 12 - 4) = -0.09375
    for A = -0.75; W(0) = 1, W(1) = W(2) = 0."""
    w = RI.keys_kernel(np.array([0.5, 1.5, 0.0, 1.0, 2.0, -0.5]), RI.CUBIC_A)
    np.testing.assert_allclose(w, [0.59375, -0.09375, 1, 0, 0, 0.59375])


@pytest.mark.parametrize("in_size, out_size, align", [(4, 9, False), (6, 4, False), (5, 7, True), (1, 3, False)])
def test_bicubic_weights_form_a_partition_of_unity(in_size, out_size, align):
    """Keys' weights sum to 1 at every t; clamped border taps keep their weight on the edge."""
    a = matrix("bicubic", in_size, out_size, align_corners=align)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-14)


def test_keys_kernel_reproduces_a_ramp_only_for_a_minus_half():
    """Σ_k W(t - k)·k = t for Keys' a = -0.5 (third order); torch's A = -0.75 keeps only the
    partition of unity Σ_k W(t - k) = 1, so a ramp is reproduced approximately."""
    t = np.linspace(0, 1, 17)[:, None]
    k = np.arange(-1, 3)[None, :]
    for a in (-0.5, RI.CUBIC_A):
        np.testing.assert_allclose(RI.keys_kernel(t - k, a).sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose((RI.keys_kernel(t - k, -0.5) * k).sum(axis=1), t[:, 0], atol=1e-14)
    assert np.abs((RI.keys_kernel(t - k, RI.CUBIC_A) * k).sum(axis=1) - t[:, 0]).max() > 1e-3


def test_bicubic_clamps_taps_at_the_border():
    """Output 0 with align_corners=False, in = 2, out = 4: src = ½·½ - ½ = -¼ (not clamped), ⌊src⌋ = -1,
    t = ¾, taps -2..1 clamped to 0, 0, 0, 1."""
    t = RI.axis_taps("bicubic", 2, 4)
    np.testing.assert_array_equal(t.index[0], [0, 0, 0, 1])
    np.testing.assert_allclose(t.weight[0], RI.keys_kernel(0.75 - np.arange(-1, 3), RI.CUBIC_A))


# -- area and antialias -----------------------------------------------------------------------------------

def test_area_is_adaptive_average_pooling():
    """in = 5, out = 3: windows [0, 2), [1, 4), [3, 5)."""
    third = 1 / 3
    expected = [[.5, .5, 0, 0, 0], [0, third, third, third, 0], [0, 0, 0, .5, .5]]
    np.testing.assert_allclose(matrix("area", 5, 3), expected)
    x = RNG.standard_normal((2, 3, 4, 6))
    y = RF.interpolate(x, size=(2, 3), mode="area")
    np.testing.assert_allclose(y, x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)))


def test_antialias_downsampling_hand_values():
    """Pillow's triangle filter, in = 5 -> out = 2 (s = 2.5): center 1.25, support 2.5, taps 0..3
    with raw weights 1 - |j - ¾|/2.5 = 0.7, 0.9, 0.5, 0.1, normalised by their sum 2.2."""
    np.testing.assert_allclose(matrix("bilinear", 5, 2, antialias=True)[0], np.array([0.7, 0.9, 0.5, 0.1, 0]) / 2.2)


def test_antialias_upsampling_is_linear_interpolation_inside():
    """For s < 1 the triangle has support 1: inside, the weights are align_corners=False's."""
    aa, plain = matrix("bilinear", 4, 10, antialias=True), matrix("bilinear", 4, 10)
    np.testing.assert_allclose(aa[2:8], plain[2:8], atol=1e-15)
    np.testing.assert_allclose(aa.sum(axis=1), 1.0)


def test_antialias_bicubic_uses_a_minus_half():
    a = matrix("bicubic", 9, 3, antialias=True)  # s = 3: support 6
    center = 3 * (np.arange(3) + 0.5)
    j = np.arange(9)
    raw = RI.keys_kernel((j[None, :] - center[:, None] + 0.5) / 3, -0.5)
    raw = np.where(np.abs(j[None, :] + 0.5 - center[:, None]) < 6.5, raw, 0)
    np.testing.assert_allclose(a, raw / raw.sum(axis=1, keepdims=True), atol=1e-15)


# -- VJPs -------------------------------------------------------------------------------------------------

CALLS = [
    ((2, 2, 7), {"size": 4, "mode": "nearest"}),
    ((1, 2, 3, 5), {"scale_factor": (1.5, 0.6), "mode": "nearest-exact"}),
    ((1, 1, 4), {"scale_factor": 2.5, "mode": "linear", "align_corners": True}),
    ((2, 1, 3, 4), {"size": (5, 3), "mode": "bilinear"}),
    ((1, 2, 2, 3, 2), {"scale_factor": 1.5, "mode": "trilinear"}),
    ((1, 1, 4, 5), {"size": (6, 3), "mode": "bicubic", "align_corners": True}),
    ((1, 2, 5, 4, 3), {"size": (2, 3, 2), "mode": "area"}),
    ((1, 1, 7, 6), {"size": (3, 4), "mode": "bicubic", "antialias": True}),
    ((2, 1, 5, 4), {"scale_factor": 0.5, "mode": "bilinear", "antialias": True, "align_corners": True}),
]


@pytest.mark.parametrize("shape, kwargs", CALLS, ids=[c[1]["mode"] + str(c[0]) for c in CALLS])
def test_vjp_is_the_adjoint_and_matches_finite_differences(shape, kwargs):
    x = RNG.standard_normal(shape)
    y = RF.interpolate(x, **kwargs)
    g = RNG.standard_normal(y.shape)
    grads = RF.vjp("interpolate", x, cotangent=g, **kwargs)
    assert np.sum(y * g) == pytest.approx(np.sum(x * grads["input"]), rel=1e-12)
    assert vjp_check(lambda a: {"y": RF.interpolate(a["input"], **kwargs)}, {"input": x}, {"y": g}, grads).ok()


def test_legacy_spellings_are_interpolate():
    x = RNG.standard_normal((1, 2, 3, 4))
    np.testing.assert_array_equal(RF.upsample_bilinear(x, size=(5, 2)),
                                  RF.interpolate(x, size=(5, 2), mode="bilinear", align_corners=True))
    np.testing.assert_array_equal(RF.upsample_nearest(x, scale_factor=1.5), RF.interpolate(x, scale_factor=1.5))


# -- calls torch rejects ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape, kwargs", [
    ((1, 1, 4), {"size": 2, "scale_factor": 2.0}),
    ((1, 1, 4), {}),
    ((1, 1, 4), {"size": 0}),
    ((1, 1, 4), {"scale_factor": 0.2}),
    ((1, 1, 4), {"scale_factor": 2.0, "align_corners": True}),
    ((1, 1, 4, 4), {"scale_factor": 2.0, "mode": "linear"}),
    ((1, 1, 4), {"size": 3, "recompute_scale_factor": True}),
    ((1, 1, 4, 4), {"size": (2, 2, 2)}),
    ((1, 1, 4), {"size": 4.0}),
    ((4, 4), {"scale_factor": 2.0}),
    ((1, 0, 4), {"scale_factor": 2.0}),
    ((1, 1, 4), {"scale_factor": 2.0, "mode": "linear", "antialias": True}),
])
def test_invalid_calls_raise(shape, kwargs):
    with pytest.raises((ValueError, TypeError)):
        RF.interpolate(np.zeros(shape), **kwargs)


def test_an_empty_batch_is_valid():
    assert RF.interpolate(np.zeros((0, 2, 3)), scale_factor=2.0, mode="linear").shape == (0, 2, 6)


# -- the error analysis ------------------------------------------------------------------------------

def _float32_bilinear(x: np.ndarray, in_size: int, out_size: int) -> np.ndarray:
    """torch's linear kernel in float32, emulated: s = float32(in)/float32(out), src =
    s·(dst + ½) - ½ clamped at 0, λ = src - ⌊src⌋, the nested (1 - λ)·x0 + λ·x1 in float32."""
    f = np.float32
    s = f(in_size) / f(out_size)
    src = np.maximum(s * (np.arange(out_size, dtype=f) + f(0.5)) - f(0.5), f(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(f), f(0), f(1))
    i1 = np.minimum(i0 + 1, in_size - 1)
    x32 = x.astype(f)
    return ((f(1) - lam) * x32[..., i0] + lam * x32[..., i1]).astype(np.float64)


@pytest.mark.parametrize("in_size, out_size", [(7, 3), (5, 13), (9, 9), (3, 17)])
def test_linear_error_analysis_bounds_a_float32_emulation(in_size, out_size):
    x = RNG.standard_normal((4, 3, in_size)).astype(np.float32).astype(np.float64)
    geo = RI.interpolate_geometry(x.shape, size=out_size, mode="linear", align_corners=False)
    bound = RI.interpolate_error(x, None, geo, "linear", RI.Precision(2.0**-24, 2.0**-24))["output"]
    exact = RF.interpolate(x, size=out_size, mode="linear", align_corners=False)
    err = np.abs(_float32_bilinear(x, in_size, out_size) - exact)
    assert np.all(err <= 2.0**-24 * (bound + np.abs(exact)))


def test_error_analysis_scales_with_the_source_position():
    """The weight error of a linear map grows with |src| (the position's roundings)."""
    taps = RI.axis_taps("linear", 20, 7)
    err = RI.weight_error(taps, "linear", False, RI.Precision(2.0**-24, 2.0**-24))
    assert err[-1].max() > err[0].max() > 0
    assert not RI.weight_error(taps, "nearest", False, RI.Precision(2.0**-24, 2.0**-24)).any()
