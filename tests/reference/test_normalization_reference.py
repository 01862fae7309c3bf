"""BatchNorm1d/3d on the shared reference (no torch): statistics over the right axes for (N, C),
(N, C, L) and (N, C, D, H, W) inputs, the running-statistics update, the rank each declaration
accepts, and the memory-format facts behind the known-discrepancy predicates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.runner import reference_result
from conformance.spec import all_specs
from conformance.numerics.normalization import strided_weight_one_value_per_sample
from reference import normalization as N


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


def _case(op: str, shape: tuple[int, ...], train: bool = True) -> Case:
    c = shape[1] if len(shape) > 1 else shape[0]
    params = {"num_features": c, "eps": 1e-5, "momentum": 0.1, "affine": False, "track_running_stats": False}
    x = np.arange(float(np.prod(shape))).reshape(shape)
    return Case(op=op, dtype="float64", params=params, inputs={"input": x}, differentiable=("input",), train=train)


@pytest.mark.parametrize("op, good, bad", [
    ("BatchNorm1d", [(4, 3), (2, 3, 5)], [(3,), (2, 3, 2, 2)]),
    ("BatchNorm2d", [(2, 3, 2, 2)], [(2, 3, 2), (2, 3, 2, 2, 2)]),
    ("BatchNorm3d", [(2, 3, 2, 2, 2)], [(2, 3, 2, 2), (2, 3, 2, 2, 2, 2)]),
])
def test_each_declaration_takes_its_ranks(op, good, bad):
    spec = all_specs()[op]
    for shape in good:
        reference_result(spec, _case(op, shape))
    for shape in bad:
        with pytest.raises(ValueError):
            reference_result(spec, _case(op, shape))


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
    assert strided_weight_one_value_per_sample(case)
    assert not strided_weight_one_value_per_sample(case.with_inputs(input=np.zeros((3, 2, 2))))
    assert not strided_weight_one_value_per_sample(replace(case, dtype="float16"))
    transposed = replace(case, layouts={**case.layouts, "input": Layout("permuted", perm=(1, 0))})
    assert not strided_weight_one_value_per_sample(transposed)
