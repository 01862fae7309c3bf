"""Predicates of the known convolution discrepancies of compiled torch (``conformance/known/torch_compile*.toml``)
that an expression over the case's parameters and shapes cannot state: conditions on the strides
that a case's layouts give its tensors, and on the graph kind; and grid_sample's (values the sampling reads).
"""

from __future__ import annotations

import numpy as np

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph
from conformance import strategies as S
from conformance.numerics.window import per_dim_param, pool_kind, spatial_dims
from reference import sampling


def _compiled_conv2d_shapes(case: Case) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(weight shape, input shape) of a valid 2-d convolution case with a non-empty weight that
    compiles; None otherwise (an unbatched input with both spatial dims above 1 on a dynamic graph
    does not compile: inductor-unbatched-conv2d-dynamic-shape-compile-error)."""
    if case.invalid or "weight" not in case.inputs:
        return None
    weight = tuple(int(n) for n in case.inputs["weight"].shape)
    x = tuple(int(n) for n in case.inputs["input"].shape)
    if len(weight) != 4 or 0 in weight:
        return None
    if len(x) == 3 and x[1] > 1 and x[2] > 1 and runs_dynamic_graph(case):
        return None
    return weight, x


def grouped_conv2d_ambiguous_channels_last_input(case: Case) -> bool:
    """Whether inductor's Conv2d backward hits eager's grouped slow-conv weight gradient with a
    channels_last weight and an input whose strides are channels_last only up to a size-1 dim."""
    p = case.params
    shapes = _compiled_conv2d_shapes(case)
    if shapes is None:
        return False
    weight, x = shapes
    if len(x) not in (3, 4) or 0 in x:
        return False
    kernel = weight[2:]
    if int(p.get("groups", 1)) < 2 or weight[1] < 2 or kernel[0] * kernel[1] < 2:
        return False  # ungrouped, depthwise or 1x1: both weight orders hold the same sequence
    if p.get("padding_mode", "zeros") != "zeros" or any(d != 1 for d in per_dim_param(p.get("dilation", 1), 2)):
        return False  # an explicit pad makes a fresh tensor; dilation runs another kernel
    padding = p.get("padding", 0)
    if padding == "same" and any(k % 2 == 0 for k in kernel):
        return False  # uneven 'same' padding pads explicitly
    strides = S.torch_strides(x, case.layout("input"))
    if len(x) == 3:  # F.conv2d unsqueezes an unbatched input: the new dim's stride is C * stride(C)
        x, strides = (1, *x), (x[0] * strides[0], *strides)
    w_strides = S.torch_strides(weight, case.layout("weight"))
    return (S.is_channels_last_contiguous(x, strides) and not S.channels_last_like(x, strides)
            and not S.is_channels_last_contiguous(weight, w_strides))


def conv_dynamic_offset_strides(case: Case) -> bool:
    """Whether a valid convolution case runs a dynamic graph whose convolution backward may see strides
    that multiply offset size expressions: three spatial dims, or a ConvTranspose2d given an output_size."""
    if case.invalid or not runs_dynamic_graph(case):
        return False
    nd = spatial_dims(case)
    return nd == 3 or (nd == 2 and pool_kind(case) == "transposed"
                       and case.forward_kwargs.get("output_size") is not None)


def conv_transpose2d_ambiguous_channels_last_weight(case: Case) -> bool:
    """Whether a valid ConvTranspose2d case with a dense input has a weight (more than one input channel)
    that is channels_last-contiguous only up to a size-1 dim: torch's contiguous and channels_last tests
    both reject it."""
    shapes = _compiled_conv2d_shapes(case)
    if shapes is None:
        return False
    weight, x = shapes
    if weight[0] < 2:
        return False  # a single input channel: eager's backward accepts the layout (measured)
    if not S.is_non_overlapping_and_dense(x, S.torch_strides(x, case.layout("input"))):
        return False  # a strided (non-dense) input keeps eager's layout (measured)
    strides = S.torch_strides(weight, case.layout("weight"))
    return (S.is_channels_last_contiguous(weight, strides) and not S.is_torch_contiguous(weight, strides)
            and not S.channels_last_like(weight, strides))


def grid_sample_nearest_outside_reads_signed_or_nonfinite(case: Case) -> bool:
    """A valid 4-d nearest grid_sample with some sampling point outside the input (padding zeros; after rounding, ties
    to even) in a channel whose pixel (0, 0) is negative, -0 or not finite: inductor's decomposition reads that pixel
    times a weight of 0 there (-0 or NaN) where torch writes 0."""
    p = case.params
    x, grid = case.inputs["input"], case.inputs["grid"]
    if case.invalid or p.get("mode") != "nearest" or x.ndim != 4 or x.size == 0 or grid.size == 0:
        return False
    taps = sampling.sample_taps(tuple(x.shape[2:]), np.asarray(grid, dtype=np.float64), "nearest",
                                p.get("padding_mode", "zeros"), bool(p.get("align_corners")), ties="even")
    outside = ~taps.valid[..., 0]  # (N, P)
    corner = np.asarray(x[:, :, 0, 0], dtype=np.float64)  # (N, C)
    bad = np.signbit(corner) | ~np.isfinite(corner)
    return bool((outside[:, None, :] & bad[:, :, None]).any())
