"""The normalisation references checked on their own terms (no torch): hand-computed values, closed
forms, one layer written as another (InstanceNorm as BatchNorm of a reshaped input, GroupNorm with one
group as LayerNorm, CrossMapLRN2d as LocalResponseNorm), a loop-by-loop LRN, every VJP against
finite differences (``reference.finite_differences.vjp_check``), the error analysis against what
float32 actually makes of the formula, and the memory-format facts behind the known-entry predicates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.numerics import normalization as NN
from conformance.runner import reference_result
from conformance.spec import all_specs
from reference import normalization as N
from reference import normalization_errors as E
from reference import normalization_lrn as L
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(7)


def _vjp_ok(forward, inputs, vjp, names, cotangent):
    """The VJP ``vjp(cotangent)`` (a dict) against finite differences of ``forward(**inputs)``."""
    grads = {n: g for n, g in vjp(cotangent).items() if n in names}
    check = vjp_check(lambda a: {"y": forward(**a)}, inputs, {"y": cotangent}, grads)
    assert check.ok(), check


# -- batch normalisation ---------------------------------------------------------------------------

def test_two_d_input_statistics_are_over_the_batch():
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    mean, var = N.batch_stats(x)
    np.testing.assert_array_equal(mean, [2.0, 4.0])
    np.testing.assert_array_equal(var, [1.0, 4.0])  # biased
    np.testing.assert_array_equal(N.batch_norm(x, mean, var, None, None, eps=0.0), [[-1, -1], [1, 1]])
    assert N.values_per_channel(x) == 2


def test_five_d_input_statistics_are_over_n_and_every_spatial_axis():
    """Channel c holds c + (+1 / -1 alternating) over N·D·H·W = 16 values: mean c, variance 1."""
    signs = np.where(np.arange(16) % 2 == 0, 1.0, -1.0).reshape(2, 1, 2, 2, 2)
    x = np.concatenate([c + signs for c in range(3)], axis=1)
    mean, var = N.batch_stats(x)
    np.testing.assert_array_equal(mean, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(var, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(N.batch_norm(x, mean, var, None, None, eps=0.0), np.broadcast_to(signs, x.shape))
    rm, rv, n = N.update_running_stats(np.zeros(3), np.ones(3), 0, x, momentum=None)
    np.testing.assert_allclose(rm, mean)  # momentum None, first batch: factor 1
    np.testing.assert_allclose(rv, 16 / 15)  # the unbiased variance K/(K - 1)
    assert n == 1


def test_three_d_input_pairs_of_values_normalise_to_plus_minus_one():
    """K = N·L = 2 values per channel: x̂ = ±1, and the training gradient of x̂ vanishes."""
    x = np.array([[[1.0], [5.0]], [[3.0], [-5.0]]])
    mean, var = N.batch_stats(x)
    y = N.batch_norm(x, mean, var, None, None, eps=0.0)
    np.testing.assert_array_equal(np.abs(y), 1.0)
    gx, _, _ = N.batch_norm_train_vjp(x, None, np.array([[[2.0], [1.0]], [[-7.0], [4.0]]]), eps=0.0)
    np.testing.assert_allclose(gx, 0.0, atol=1e-15)


def test_batch_norm_as_torch_calls_it_in_one_call():
    """training=True: batch statistics, and the running statistics updated with the unbiased
    variance; training=False: the running statistics, returned unchanged."""
    x = np.arange(8.0).reshape(4, 2)  # channel 0: 0, 2, 4, 6 (mean 3, biased var 5); channel 1: +1
    rm, rv = np.array([1.0, -1.0]), np.array([2.0, 3.0])
    y, rm2, rv2 = N.batch_norm_with_running_stats(x, rm, rv, training=True, momentum=0.25, eps=0.0)
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 3) / np.sqrt(5))
    np.testing.assert_allclose(rm2, 0.75 * rm + 0.25 * np.array([3.0, 4.0]))
    np.testing.assert_allclose(rv2, 0.75 * rv + 0.25 * 5 * 4 / 3)
    np.testing.assert_array_equal(N.batch_norm(x, rm, rv, training=True, momentum=0.25, eps=0.0), y)
    y, rm3, rv3 = N.batch_norm_with_running_stats(x, rm, rv, np.array([2.0, 1.0]), np.array([0.5, 0.0]), eps=1.0)
    np.testing.assert_allclose(y[:, 0], 2 * (x[:, 0] - 1) / np.sqrt(3) + 0.5)
    assert rm3 is rm and rv3 is rv
    # without running statistics batch statistics normalise whatever ``training`` says... once given
    np.testing.assert_allclose(N.batch_norm(x, None, None, training=True, eps=0.0)[:, 0], (x[:, 0] - 3) / np.sqrt(5))
    with pytest.raises(ValueError):
        N.batch_norm(x, None, None, training=False)  # evaluation mode needs running statistics
    with pytest.raises(ValueError):
        N.batch_norm(x[:1], None, None, training=True)  # one value per channel


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_vjp_against_finite_differences(training):
    x, w, b = RNG.standard_normal((3, 2, 2)) + 3, RNG.standard_normal(2), RNG.standard_normal(2)
    rm, rv = RNG.standard_normal(2), RNG.uniform(0.5, 2, 2)
    g = RNG.standard_normal(x.shape)
    _vjp_ok(lambda input, weight, bias: N.batch_norm(input, rm, rv, weight, bias, training, 0.1, 1e-3),
            {"input": x, "weight": w, "bias": b},
            lambda c: N._batch_norm_vjp(c, x, rm, rv, w, b, training, 0.1, 1e-3), ("input", "weight", "bias"), g)


# -- instance normalisation ----------------------------------------------------------------------

def test_instance_norm_is_batch_norm_of_each_sample_and_channel():
    """InstanceNorm of (N, C, L) = BatchNorm of the (1, N·C, L) input (per-channel parameters tiled);
    the running statistics average the per-instance updates over N."""
    x, w, b = RNG.standard_normal((3, 2, 5)), RNG.standard_normal(2), RNG.standard_normal(2)
    rm, rv = RNG.standard_normal(2), RNG.uniform(0.5, 2, 2)
    y, rm2, rv2 = N.instance_norm_with_running_stats(x, rm, rv, w, b, True, 0.3, 1e-3)
    expected, rm_rep, rv_rep = N.batch_norm_with_running_stats(
        x.reshape(1, 6, 5), np.tile(rm, 3), np.tile(rv, 3), np.tile(w, 3), np.tile(b, 3), True, 0.3, 1e-3)
    np.testing.assert_allclose(y, expected.reshape(x.shape), rtol=1e-13)
    np.testing.assert_allclose(rm2, rm_rep.reshape(3, 2).mean(0), rtol=1e-13)
    np.testing.assert_allclose(rv2, rv_rep.reshape(3, 2).mean(0), rtol=1e-13)
    y_eval = N.instance_norm(x, rm, rv, w, b, use_input_stats=False, eps=1e-3)
    np.testing.assert_allclose(y_eval, N.batch_norm(x, rm, rv, w, b, eps=1e-3))
    with pytest.raises(ValueError):
        N.instance_norm(x[:, :, :1])  # one spatial element
    with pytest.raises(ValueError):
        N.instance_norm(x, use_input_stats=False)  # no running statistics


@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_vjp_against_finite_differences(use_input_stats):
    x, w, b = RNG.standard_normal((2, 3, 2, 2)) - 1, RNG.standard_normal(3), RNG.standard_normal(3)
    rm, rv = RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)
    g = RNG.standard_normal(x.shape)
    _vjp_ok(lambda input, weight, bias: N.instance_norm(input, rm, rv, weight, bias, use_input_stats, 0.1, 1e-2),
            {"input": x, "weight": w, "bias": b},
            lambda c: N._instance_norm_vjp(c, x, rm, rv, w, b, use_input_stats, 0.1, 1e-2),
            ("input", "weight", "bias"), g)


# -- group normalisation ---------------------------------------------------------------------------

def test_group_norm_by_hand():
    """Two groups of two channels: group 0 holds 0, 1, 2, 3 (mean 1.5, var 1.25), group 1 is constant."""
    x = np.array([[[0.0, 1.0], [2.0, 3.0], [7.0, 7.0], [7.0, 7.0]]])
    with np.errstate(invalid="ignore"):
        y = N.group_norm(x, 2, np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 5.0, 6.0]), eps=0.0)
    np.testing.assert_allclose(y[0, 0], (np.array([0.0, 1.0]) - 1.5) / np.sqrt(1.25))
    np.testing.assert_allclose(y[0, 1], 2 * (np.array([2.0, 3.0]) - 1.5) / np.sqrt(1.25))
    assert np.isnan(y[0, 2:]).all()  # a constant group with eps 0: 0/0
    y = N.group_norm(x, 2, None, np.array([0.0, 0.0, 5.0, 6.0]), eps=1e-5)
    np.testing.assert_array_equal(y[0, 2:], [[5.0, 5.0], [6.0, 6.0]])  # a constant group: y = bias


def test_group_norm_at_its_extremes():
    """One group: LayerNorm over (C, *spatial) with per-channel parameters; C groups: InstanceNorm."""
    x, w, b = RNG.standard_normal((2, 4, 3)), RNG.standard_normal(4), RNG.standard_normal(4)
    one = N.group_norm(x, 1, w, b, eps=1e-3)
    np.testing.assert_allclose(one, N.layer_norm(x, (4, 3), eps=1e-3) * w[:, None] + b[:, None], rtol=1e-13)
    np.testing.assert_allclose(N.group_norm(x, 4, w, b, 1e-3), N.instance_norm(x, None, None, w, b, eps=1e-3),
                               rtol=1e-13)


def test_group_norm_rules():
    """torch's rules: channels divisible by the groups; N·(C/G)·prod(spatial) > 1 (a group of one
    element is fine with N >= 2: v = 0, y = bias)."""
    with pytest.raises(ValueError):
        N.group_norm(np.zeros((2, 3, 2)), 2)
    with pytest.raises(ValueError):
        N.group_norm(np.zeros((1, 4)), 4)
    with pytest.raises(ValueError):
        N.group_norm(np.zeros(4), 1)
    np.testing.assert_array_equal(N.group_norm(np.ones((2, 4)), 4, None, np.arange(4.0)), [np.arange(4.0)] * 2)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm_vjp_against_finite_differences(groups):
    x, w, b = RNG.standard_normal((2, 6, 3)) + 2, RNG.standard_normal(6), RNG.standard_normal(6)
    g = RNG.standard_normal(x.shape)
    _vjp_ok(lambda input, weight, bias: N.group_norm(input, groups, weight, bias, 1e-3),
            {"input": x, "weight": w, "bias": b},
            lambda c: N._group_norm_vjp(c, x, groups, w, b, 1e-3), ("input", "weight", "bias"), g)


# -- layer and RMS normalisation -----------------------------------------------------------------

def test_layer_norm_over_every_trailing_choice():
    x = RNG.standard_normal((2, 3, 4))
    for k in (1, 2, 3):
        shape = x.shape[3 - k:]
        y = N.layer_norm(x, shape, eps=0.0)
        flat = y.reshape(-1, int(np.prod(shape)))
        np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-14)
        np.testing.assert_allclose((flat**2).mean(axis=1), 1.0, rtol=1e-13)
    np.testing.assert_array_equal(N.layer_norm(x[..., :1], 1, bias=np.array([3.0])), 3.0)  # K = 1: y = bias
    with pytest.raises(ValueError):
        N.layer_norm(x, (3,))
    with pytest.raises(ValueError):
        N.layer_norm(x, ())


def test_rms_norm_by_hand():
    """Row (3, 4): mean square 12.5; with eps None (float64: 2^-52) y = x/√12.5; an all-zero row
    gives 0 and the gradient g·w/√eps."""
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    y = N.rms_norm(x, 2, np.array([1.0, 2.0]))
    np.testing.assert_allclose(y[0], np.array([3.0, 8.0]) / np.sqrt(12.5 + 2.0**-52), rtol=1e-15)
    np.testing.assert_array_equal(y[1], 0.0)
    g = np.ones_like(x)
    grads = N._rms_norm_vjp(g, x, 2, np.array([1.0, 2.0]), eps=0.25)
    np.testing.assert_allclose(grads["input"][1], np.array([1.0, 2.0]) / 0.5)
    assert N.rms_eps(None, np.float32) == 2.0**-23 and N.rms_eps(None) == 2.0**-52 and N.rms_eps(0.1) == 0.1


@pytest.mark.parametrize("normalized", [(4,), (3, 4)])
@pytest.mark.parametrize("rms", [False, True])
def test_trailing_norm_vjps_against_finite_differences(normalized, rms):
    x, g = RNG.standard_normal((2, 3, 4)) + 1, RNG.standard_normal((2, 3, 4))
    w, b = RNG.standard_normal(normalized), RNG.standard_normal(normalized)
    if rms:
        _vjp_ok(lambda input, weight: N.rms_norm(input, normalized, weight, 1e-3), {"input": x, "weight": w},
                lambda c: N._rms_norm_vjp(c, x, normalized, w, 1e-3), ("input", "weight"), g)
    else:
        _vjp_ok(lambda input, weight, bias: N.layer_norm(input, normalized, weight, bias, 1e-3),
                {"input": x, "weight": w, "bias": b},
                lambda c: N._layer_norm_vjp(c, x, normalized, w, b, 1e-3), ("input", "weight", "bias"), g)


# -- local response normalisation ---------------------------------------------------------------

def _lrn_loop(x, size, alpha, beta, k):
    """The documented formula, one channel at a time."""
    c = x.shape[1]
    y = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        s = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        y[:, ch] = x[:, ch] * (k + alpha / size * s) ** -beta
    return y


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_local_response_norm_against_the_loop(size):
    x = RNG.standard_normal((2, 5, 3))
    np.testing.assert_allclose(L.local_response_norm(x, size, 0.5, 0.75, 1.5), _lrn_loop(x, size, 0.5, 0.75, 1.5),
                               rtol=1e-14)
    x4 = x.reshape(2, 5, 3, 1)
    np.testing.assert_allclose(L.cross_map_lrn2d(x4, size, 0.5, 0.75, 1.5).reshape(x.shape),
                               _lrn_loop(x, size, 0.5, 0.75, 1.5), rtol=1e-14)


def test_local_response_norm_by_hand():
    """Size 2 reaches one channel back: d_c = k + α/2·(x_{c-1}² + x_c²)."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    y = L.local_response_norm(x, 2, alpha=2.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(y.reshape(-1), [1 / 2, 2 / 6, 3 / 14])
    with np.errstate(invalid="ignore"):
        assert np.isnan(L.local_response_norm(np.zeros((1, 2, 1)), 3, k=0.0)).all()  # 0/0
    assert L.local_response_norm(np.zeros((2, 0, 3)), 3).shape == (2, 0, 3)
    with pytest.raises(ValueError):
        L.local_response_norm(np.zeros((2, 3)), 3)
    with pytest.raises(ValueError):
        L.cross_map_lrn2d(np.zeros((2, 3, 4)), 3)


@pytest.mark.parametrize("size", [1, 2, 3, 6])
def test_local_response_norm_vjp_against_finite_differences(size):
    x, g = RNG.standard_normal((2, 4, 3)), RNG.standard_normal((2, 4, 3))
    _vjp_ok(lambda input: L.local_response_norm(input, size, 0.7, 0.75, 0.5), {"input": x},
            lambda c: L._local_response_norm_vjp(c, x, size, 0.7, 0.75, 0.5), ("input",), g)


# -- the error analysis ----------------------------------------------------------------------------

def _float32_two_pass(x, axes, eps):
    x32 = x.astype(np.float32)
    mean = x32.mean(axis=axes, keepdims=True, dtype=np.float32)
    var = ((x32 - mean) ** 2).mean(axis=axes, keepdims=True, dtype=np.float32)
    return ((x32 - mean) / np.sqrt(var + np.float32(eps))).astype(np.float64)


@pytest.mark.parametrize("offset", [0.0, 64.0, 4096.0])
def test_standardisation_bound_covers_a_stable_float32_computation(offset):
    """A two-pass float32 LayerNorm stays within the analysed bound; the bound grows only like the
    offset (not its square): the one-pass E[x²] - E[x]² breaks it at a large offset."""
    x = np.float32(RNG.standard_normal((8, 64)) + offset).astype(np.float64)
    u = 2.0**-24
    exact = N.layer_norm(x, 64, eps=1e-5)
    bound = u * E.standardisation_errors(x, (1,), 1e-5, u)["output"] + u * np.abs(exact)
    assert np.all(np.abs(_float32_two_pass(x, (1,), 1e-5) - exact) <= bound)
    if offset >= 4096:
        x32 = x.astype(np.float32)
        mean = x32.mean(axis=1, keepdims=True)
        one_pass = np.maximum((x32 * x32).mean(axis=1, keepdims=True) - mean * mean, 0)
        y = ((x32 - mean) / np.sqrt(one_pass + np.float32(1e-5))).astype(np.float64)
        assert np.any(np.abs(y - exact) > bound)


def test_bounds_reduce_to_the_batch_norm_formula_when_the_weight_is_per_statistic():
    """With the weight constant over the statistic axes, the weighted bracket of grad.input is the
    unweighted one times |w| (no extra rounding term)."""
    x, g = RNG.standard_normal((4, 3, 2)), RNG.standard_normal((4, 3, 2))
    w = RNG.standard_normal(3)
    axes = (0, 2)
    weighted = E.standardisation_errors(x, axes, 1e-3, 2.0**-24, weight=N.per_channel(w, 3), cotangent=g,
                                        param_axes=axes)
    plain = E.standardisation_errors(x, axes, 1e-3, 2.0**-24, cotangent=g, param_axes=axes)
    np.testing.assert_allclose(weighted["input"], np.abs(N.per_channel(w, 3)) * plain["input"], rtol=1e-12)
    np.testing.assert_allclose(weighted["weight"], plain["weight"], rtol=1e-12)


# -- declarations and predicates ---------------------------------------------------------------------

def _case(op: str, shape: tuple[int, ...], train: bool = True) -> Case:
    c = shape[1] if len(shape) > 1 else shape[0]
    params = {"num_features": c, "eps": 1e-5, "momentum": 0.1, "affine": False, "track_running_stats": False}
    x = np.arange(float(np.prod(shape))).reshape(shape)
    return Case(op=op, dtype="float64", params=params, inputs={"input": x}, differentiable=("input",), train=train)


@pytest.mark.parametrize("op, good, bad", [
    ("BatchNorm1d", [(4, 3), (2, 3, 5)], [(3,), (2, 3, 2, 2)]),
    ("BatchNorm2d", [(2, 3, 2, 2)], [(2, 3, 2), (2, 3, 2, 2, 2)]),
    ("BatchNorm3d", [(2, 3, 2, 2, 2)], [(2, 3, 2, 2), (2, 3, 2, 2, 2, 2)]),
    ("InstanceNorm1d", [(2, 3, 4), (3, 4)], [(3,), (2, 3, 2, 2)]),
    ("InstanceNorm2d", [(2, 3, 2, 2), (3, 2, 2)], [(3, 4), (2, 3, 2, 2, 2)]),
    ("InstanceNorm3d", [(2, 3, 2, 2, 2), (3, 2, 2, 2)], [(3, 2, 2), (2, 3, 2, 2, 2, 2)]),
])
def test_each_declaration_takes_its_ranks(op, good, bad):
    spec = all_specs()[op]
    for shape in good:
        reference_result(spec, _case(op, shape))
    for shape in bad:
        with pytest.raises(ValueError):
            reference_result(spec, _case(op, shape))


def test_unbatched_instance_norm_is_one_sample():
    spec = all_specs()["InstanceNorm2d"]
    x = RNG.standard_normal((3, 2, 2))
    case = replace(_case("InstanceNorm2d", (3, 2, 2)), inputs={"input": x})
    _, one = reference_result(spec, case)
    _, batched = reference_result(spec, replace(case, inputs={"input": x[None]}))
    np.testing.assert_array_equal(one.outputs["output"], batched.outputs["output"][0])


@pytest.mark.parametrize("shape, strides, channels_last", [
    ((2, 3, 4, 5), (60, 1, 15, 3), True),       # NHWC
    ((2, 3, 4, 5), (60, 20, 5, 1), False),      # NCHW
    ((2, 3, 1, 1), (3, 1, 1, 1), False),        # N C 1 1 contiguous: ambiguous, torch falls back to NCHW
    ((2, 3, 1, 1), (3, 1, 3, 3), True),         # the same sizes with channels-last strides for the 1s
    ((2, 3, 2, 2, 2), (24, 1, 12, 6, 3), True),  # NDHWC
    ((2, 3, 4), (12, 1, 3), False),             # 3-d tensors have no channels-last format
])
def test_channels_last_inference(shape, strides, channels_last):
    assert S.channels_last_like(shape, strides) is channels_last


def test_torch_strides_of_an_expanded_layout():
    """An expanded layout expands a contiguous source whose stride-0 dims have size 1."""
    assert S.torch_strides((3, 4, 1, 1), Layout("expanded", dims=(1,))) == (1, 0, 1, 1)
    assert S.torch_strides((3, 4), Layout("permuted", perm=(1, 0))) == (1, 3)


def test_strided_weight_predicate():
    case = Case(op="BatchNorm1d", dtype="float64", params={}, train=True,
                inputs={"input": np.zeros((3, 2)), "weight": np.ones(2)},
                layouts={"weight": Layout("strided", step=(2,))})
    assert NN.strided_weight_one_value_per_sample(case)
    assert not NN.strided_weight_one_value_per_sample(case.with_inputs(input=np.zeros((3, 2, 2))))
    assert not NN.strided_weight_one_value_per_sample(replace(case, dtype="float16"))
    transposed = replace(case, layouts={**case.layouts, "input": Layout("permuted", perm=(1, 0))})
    assert not NN.strided_weight_one_value_per_sample(transposed)


def test_group_norm_one_pass_predicate():
    x = RNG.standard_normal((2, 4, 3, 3)) + 1024
    case = Case(op="GroupNorm", dtype="float64", params={"num_groups": 2}, inputs={"input": x},
                layouts={"input": Layout("channels_last", perm=(0, 2, 3, 1))})
    assert NN.group_norm_one_pass_variance(case)
    assert not NN.group_norm_one_pass_variance(replace(case, layouts={}))
    assert not NN.group_norm_one_pass_variance(case.with_inputs(input=x - 1024))


def test_lrn_view_predicate():
    """x² keeps a dense input's layout; viewing dims 3... together fails unless they are nested."""
    case = Case(op="LocalResponseNorm", dtype="float64", params={}, inputs={"input": np.zeros((2, 3, 4, 5, 6))},
                layouts={"input": Layout("permuted", perm=(0, 1, 2, 4, 3))})
    assert NN.lrn_view_fails(case)
    assert not NN.lrn_view_fails(replace(case, layouts={"input": Layout("permuted", perm=(1, 0, 2, 3, 4))}))
    assert not NN.lrn_view_fails(replace(case, layouts={"input": Layout("channels_last", perm=(0, 2, 3, 4, 1))}))
    assert not NN.lrn_view_fails(case.with_inputs(input=np.zeros((2, 3, 4))))


def test_degenerate_channels_last_predicate():
    """(2, 3, 4, 1) with strides (12, 1, 3, 1) (the repro's as_strided): channels-last-contiguous,
    not contiguous, inferred contiguous by torch; NHWC proper and NCHW are not in scope."""
    def case(shape, layout):
        return Case(op="BatchNorm2d", dtype="float64", params={}, inputs={"input": np.zeros(shape)},
                    layouts={"input": layout})

    degenerate = Layout("permuted", perm=(0, 2, 1, 3))
    assert S.torch_strides((2, 3, 4, 1), degenerate) == (12, 1, 3, 1)
    assert NN.batch_norm_degenerate_channels_last(case((2, 3, 4, 1), degenerate))
    assert not NN.batch_norm_degenerate_channels_last(case((2, 3, 4, 5), Layout("channels_last", perm=(0, 2, 3, 1))))
    assert not NN.batch_norm_degenerate_channels_last(case((2, 3, 4, 1), Layout()))
    assert not NN.batch_norm_degenerate_channels_last(replace(case((2, 3, 4, 1), degenerate), invalid=True))


def test_cross_map_loop_replay():
    """torch's running sums for x = 1..6 with size 3 (its published output divided back: 5, 14, 30,
    51, 78, 62), against the window sums 5, 14, 29, 50, 77, 61: channel 0's square never leaves."""
    x = np.arange(1.0, 7.0).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(NN.torch_cross_map_sums(x, 3).reshape(-1), [5, 14, 30, 51, 78, 62])
    np.testing.assert_array_equal(L.window_sum(x * x, 3, 1, 1).reshape(-1), [5, 14, 29, 50, 77, 61])
    case = Case(op="CrossMapLRN2d", dtype="float64", params={"size": 3}, inputs={"input": x})
    assert NN.cross_map_forward_window_differs(case)
    assert not NN.cross_map_forward_window_differs(case.with_inputs(input=x[:, :2]))  # C <= pre_pad


def test_rms_and_lrn_range_predicates():
    rows = Case(op="RMSNorm", dtype="float64", params={"normalized_shape": 3, "eps": 1e-5},
                inputs={"input": np.array([[1.0, -2.0, 3.0]]) * 1e120})
    assert NN.rms_norm_rstd_cubed_underflow(rows)  # rms³ beyond 1/min_normal
    assert not NN.rms_norm_rstd_cubed_underflow(rows.with_inputs(input=np.array([[1.0, -2.0, 3.0]])))
    assert NN.rms_norm_rstd_cubed_underflow(replace(rows.with_inputs(input=np.full((1, 3), 2.0**43)), dtype="float32"))
    half = Case(op="LocalResponseNorm", dtype="float16", params={"size": 1, "alpha": 1e-4, "beta": 0.75, "k": 1.0},
                inputs={"input": np.full((1, 1, 1), 300.0)})
    assert NN.lrn_intermediate_out_of_range(half)  # 300² > 65504
    assert not NN.lrn_intermediate_out_of_range(half.with_inputs(input=np.full((1, 1, 1), 3.0)))


@pytest.mark.parametrize("momentum, changed", [(None, False), (0.5, True)])
def test_instance_norm_module_momentum_none_leaves_the_buffers(momentum, changed):
    """InstanceNorm passes momentum None to F.instance_norm as 0.0: the buffers stay; num_batches_tracked
    is never counted."""
    spec = all_specs()["InstanceNorm1d"]
    x = RNG.standard_normal((2, 3, 4))
    params = {"num_features": 3, "eps": 1e-5, "momentum": momentum, "affine": False, "track_running_stats": True}
    inputs = {"input": x, "running_mean": np.zeros(3), "running_var": np.ones(3),
              "num_batches_tracked": np.array(2, dtype=np.int64)}
    _, result = reference_result(spec, Case(op="InstanceNorm1d", dtype="float64", params=params, inputs=inputs,
                                             differentiable=("input",), train=True))
    assert (not np.array_equal(result.state["running_mean"], np.zeros(3))) is changed
    assert int(result.state["num_batches_tracked"]) == 2


def test_moments_mean_is_correctly_rounded_when_the_first_value_dominates():
    """The shift by a slice's first value costs u·|x - shift| per difference; the residual
    correction brings the mean back to u·mean|x| (here: the exact mean, correctly rounded, as
    Fraction arithmetic gives it), which the backend's error model assumes of the reference."""
    from fractions import Fraction

    x = np.array([[2.0657999024695269e+121, -3.2278123476086357e+119, -2.0657999024695269e+121,
                   3.2278123476086357e+119, -3.2278123476086357e+119, -7.1061786855331622e+120,
                   3.2278123476086357e+119, -6.0113940384951545e+119, -5.5167571278644984e+119,
                   -3.2278123476086357e+119, -1.5439720051836574e+120, -3.1834917535701374e+120]])
    exact = float(sum(Fraction(v) for v in x[0]) / x.shape[1])
    mean, var = N.moments(x, (1,))
    assert mean[0, 0] == exact
    constant = np.full((1, 5), 0.1)
    assert N.moments(constant, (1,))[0][0, 0] == 0.1 and N.moments(constant, (1,))[1][0, 0] == 0.0
