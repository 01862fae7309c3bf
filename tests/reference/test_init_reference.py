"""torch.nn.init and fusion references on their own terms: closed forms, hand-computed values,
independent formulas (no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference import conv as C
from reference import fusion as FU
from reference import init as RI
from reference import normalization as N


def test_gains_follow_the_documented_table():
    for name in RI.LINEAR_NAMES + ("sigmoid",):
        assert RI.calculate_gain(name) == 1
    assert RI.calculate_gain("tanh") == 5 / 3
    assert RI.calculate_gain("relu") == math.sqrt(2)
    assert RI.calculate_gain("selu", 7) == 0.75
    assert RI.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    assert RI.calculate_gain("leaky_relu", 1) == 1.0  # an int slope: √(2/2)
    assert RI.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    for bad in (("gelu", None), ("leaky_relu", True), ("leaky_relu", "0.1")):
        with pytest.raises(ValueError):
            RI.calculate_gain(*bad)


def test_fans_count_the_receptive_field():
    assert RI.calculate_fan_in_and_fan_out((5, 3)) == (3, 5)
    assert RI.calculate_fan_in_and_fan_out((8, 4, 3, 2)) == (24, 48)
    assert RI.correct_fan((8, 4, 3, 2), "FAN_OUT") == 48
    with pytest.raises(ValueError):
        RI.calculate_fan_in_and_fan_out((3,))
    with pytest.raises(ValueError):
        RI.correct_fan((3, 3), "fan_avg")


def test_xavier_and_kaiming_bounds_by_hand():
    # (out 4, in 2, k 3): fan_in 6, fan_out 12; xavier std = √(2/18) = 1/3.
    assert RI.xavier_std((4, 2, 3), 1.0) == pytest.approx(1 / 3)
    # kaiming with a = √5 (the layers' reset_parameters): bound √3·√(1/3)/√fan_in = 1/√fan_in.
    assert math.sqrt(3) * RI.kaiming_std((4, 2, 3), math.sqrt(5)) == pytest.approx(1 / math.sqrt(6))
    assert RI.kaiming_std((4, 2, 3), 0, "fan_out", "relu") == pytest.approx(math.sqrt(2) / math.sqrt(12))
    with pytest.raises(ValueError):
        RI.xavier_std((0, 0))


def test_eye_and_dirac_by_hand():
    np.testing.assert_array_equal(RI.eye_(np.empty((2, 3))), [[1, 0, 0], [0, 1, 0]])
    w = RI.dirac_(np.empty((4, 3, 3)), groups=2)  # 2 outputs per group, 3 inputs: d < 2
    expected = np.zeros((4, 3, 3))
    for o, i in ((0, 0), (1, 1), (2, 0), (3, 1)):
        expected[o, i, 1] = 1
    np.testing.assert_array_equal(w, expected)
    even = RI.dirac_(np.empty((1, 1, 4, 2)))
    assert even[0, 0, 2, 1] == 1 and even.sum() == 1  # k//2: right of centre for even kernels
    assert RI.dirac_(np.empty((1, 1, 0))).shape == (1, 1, 0)
    for bad in ({"groups": 2}, {"groups": 0}, {"groups": -1}):
        with pytest.raises(ValueError):
            RI.dirac_(np.empty((3, 2, 3)), **bad)
    with pytest.raises(ValueError):
        RI.eye_(np.empty((2, 2, 2)))


def test_zeros_are_positive_and_constant_keeps_the_sign_of_zero():
    assert not np.signbit(RI.zeros_(np.empty(3))).any()
    assert np.signbit(RI.constant_(np.empty(2), -0.0)).all()


@pytest.mark.parametrize("name, precision, min_exponent, np_type", [
    ("float16", 11, -14, np.float16), ("float32", 24, -126, np.float32)])
def test_correct_rounding_matches_numpy_conversions(name, precision, min_exponent, np_type):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(2000) * 10.0 ** rng.integers(-8, 5, 2000),
                        [0.0, -0.0, np.inf, -np.inf, 1 + 2.0**-precision + 2.0**-40, 2.0**(min_exponent - precision)]])
    got = RI.correctly_rounded(x, precision, min_exponent)
    finite = np.abs(x) < np.finfo(np_type).max
    np.testing.assert_array_equal(got[finite], x[finite].astype(np_type).astype(np.float64))
    assert RI.correctly_rounded(np.array(1 + 2.0**-11 + 2.0**-40), 11, -14) == 1 + 2.0**-10  # above the midpoint


def test_bfloat16_rounding_is_one_rounding():
    # 1 + 2^-8 + 2^-40: above the midpoint of 1 and 1 + 2^-7, so it rounds up (through float32 it would tie to 1).
    assert RI.correctly_rounded(np.array(1 + 2.0**-8 + 2.0**-40), 8, -126) == 1 + 2.0**-7
    assert RI.correctly_rounded(np.array(1 + 2.0**-8), 8, -126) == 1.0  # a tie: to even


def test_samplers_draw_the_documented_moments():
    rng = np.random.default_rng(1)
    x = RI.uniform_(np.empty(200_000), -1.0, 3.0, rng)
    assert x.min() >= -1 and x.max() <= 3 and abs(x.mean() - 1) < 0.02
    y = RI.kaiming_normal_(np.empty((400, 500)), 0, "fan_out", "relu", rng)
    assert abs(y.std() - math.sqrt(2 / 400)) < 1e-3
    t = RI.trunc_normal_(np.empty(100_000), 0.0, 1.0, 1.0, 4.0, rng)  # uniform proposals (mass 0.16)
    dist = RI.TruncatedNormal(0.0, 1.0, 1.0, 4.0)
    assert t.min() >= 1 and t.max() <= 4
    assert abs(np.mean(t <= 1.5) - float(dist.cdf(np.array(1.5)))) < 0.01
    assert np.all(RI.trunc_normal_(np.empty(5), 1.0, 0.0, 0.0, 2.0, rng) == 1.0)
    for bad in ((0.0, 1.0, 2.0, 1.0), (0.0, -1.0, -2.0, 2.0), (5.0, 0.0, 0.0, 1.0)):
        with pytest.raises(ValueError):
            RI.trunc_normal_(np.empty(2), *bad)


def test_truncated_normal_cdf_in_the_tail_and_against_the_normal():
    far = RI.TruncatedNormal(0.0, 1.0, 8.0, 9.0)  # Φ near 1 would cancel: upper tails are used
    assert 0 < far.mass < 1e-14
    np.testing.assert_allclose(far.cdf(np.array([8.0, 9.0])), [0.0, 1.0])
    assert 0.5 < float(far.cdf(np.array(8.1))) < 0.6  # most of the mass near a (exp(-8·0.1)/(1 - ...) ≈ 0.55)
    wide = RI.TruncatedNormal(1.0, 2.0, -100.0, 100.0)
    x = np.linspace(-5, 7, 13)
    np.testing.assert_allclose(wide.cdf(x), RI.Normal(1.0, 2.0).cdf(x), atol=1e-15)


def test_orthogonal_draws_are_semi_orthogonal_and_the_polar_factor_is_the_identity_on_them():
    rng = np.random.default_rng(2)
    for shape in ((5, 3), (3, 5), (4, 2, 3)):
        q = RI.orthogonal_(np.empty(shape), 2.0, rng)
        m = q.reshape(shape[0], -1) / 2
        small = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
        np.testing.assert_allclose(small, np.eye(small.shape[0]), atol=1e-12)
        np.testing.assert_allclose(RI.nearest_semi_orthogonal(q, 2.0), q, atol=1e-12)
    skewed = np.array([[1.0, 0.1], [0.0, 1.0]])
    polar = RI.nearest_semi_orthogonal(skewed, 1.0)
    np.testing.assert_allclose(polar.T @ polar, np.eye(2), atol=1e-14)


def test_sparse_puts_the_same_number_of_zeros_in_every_column():
    rng = np.random.default_rng(3)
    w = RI.sparse_(np.empty((7, 40)), 0.3, 1.0, rng)
    np.testing.assert_array_equal((w == 0).sum(axis=0), math.ceil(0.3 * 7))
    assert RI.zeros_per_column(10, 0.1) == 1 and RI.zeros_per_column(3, 1 / 3) == 1
    for bad in (1.5, -0.5):
        with pytest.raises(ValueError):
            RI.sparse_(np.empty((3, 2)), bad)


def test_sample_error_models_are_a_few_roundings():
    u32 = 2.0**-24
    # U(0, 1) in float32: the final rounding plus the grid and three roundings of hi - lo = 1.
    assert RI.uniform_sample_error(0.0, 1.0, np.array(0.5), u32, u32) == pytest.approx(u32 * (0.5 + 4))
    assert RI.normal_sample_error(0.0, 1.0, np.array(0.0), 2.0**-53, 2.0**-53) > 0
    assert RI.grid_mass(u32, 2) == 2 * u32


def test_fusion_is_the_convolution_followed_by_batch_norm():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 7))
    w, b = rng.standard_normal((6, 2, 3)), rng.standard_normal(6)  # groups 2
    rm, rv, gamma, beta = rng.standard_normal(6), rng.random(6) + 0.5, rng.standard_normal(6), rng.standard_normal(6)
    fw, fb = FU.fuse_conv_bn_weights(w, b, rm, rv, 1e-3, gamma, beta)
    y = C.conv(x, w, b, groups=2)
    bn = N.batch_norm(y, rm, rv, gamma, beta, eps=1e-3)
    np.testing.assert_allclose(C.conv(x, fw, fb, groups=2), bn, rtol=1e-12, atol=1e-12)
    fw0, fb0 = FU.fuse_conv_bn_weights(w, None, rm, rv, 1e-3, None, None)
    np.testing.assert_allclose(C.conv(x, fw0, fb0, groups=2), N.batch_norm(C.conv(x, w, None, groups=2), rm, rv,
                                                                            None, None, eps=1e-3), atol=1e-12)


def test_transposed_fusion_scales_each_group_s_output_channels():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 5))
    w, b = rng.standard_normal((4, 3, 2)), rng.standard_normal(6)  # ConvTranspose: in 4, out 6, groups 2
    rm, rv, gamma, beta = rng.standard_normal(6), rng.random(6) + 0.5, rng.standard_normal(6), rng.standard_normal(6)
    fw, fb = FU.fuse_conv_bn_weights(w, b, rm, rv, 1e-5, gamma, beta, transpose=True)
    y = N.batch_norm(C.conv_transpose(x, w, b, groups=2), rm, rv, gamma, beta, eps=1e-5)
    np.testing.assert_allclose(C.conv_transpose(x, fw, fb, groups=2), y, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        FU.fuse_conv_bn_weights(w, b, rm[:5], rv[:5], 1e-5, None, None, transpose=True)
    bounds = FU.fusion_errors(w, b, rm, rv, 1e-5, gamma, beta, transpose=True)
    assert bounds[0].shape == w.shape and (bounds[1] > 0).all()
