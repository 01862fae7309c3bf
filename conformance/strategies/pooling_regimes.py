"""Regimes of the pooling declarations: predicates that say what a case is, computed from its data
(a ceil-mode window that overhangs or is dropped, ties, non-finite values, uneven adaptive windows...),
and the regimes that pair each predicate with the labelled draws of ``strategies.pooling`` that
reach it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backends.base import Case
from conformance.dtypes import DTYPES
from conformance.numerics.window import (
    adaptive_output,
    batched_input,
    case_taps,
    fractional_output,
    has_empty_window,
    is_unbatched,
    per_dim_param,
    sliding,
    spatial_dims,
    unpool_geometry,
    unpool_smooth,
)
from conformance.numerics.window import fractional_samples as case_samples
from conformance.spec import Regime
from reference import pooling as ref

# -- regime predicates ---------------------------------------------------------------------------

def _ceil_counts(case: Case) -> list[tuple[int, int, int]]:
    """Per spatial dim of a sliding-window case: (floor-mode output length, ceil-mode length
    before torch's drop rule, torch's ceil-mode length)."""
    g = sliding(case)
    counts = []
    for size, k, s, p, d in zip(batched_input(case).shape[2:], g.kernel, g.stride, g.padding, g.dilation):
        span = size + 2 * p - d * (k - 1) - 1
        floor_n, ceil_n = span // s + 1, -(-span // s) + 1
        kept = ceil_n - 1 if (ceil_n - 1) * s >= size + p else ceil_n
        counts.append((floor_n, ceil_n, kept))
    return counts


def ceil_overhang(case: Case) -> bool:
    """ceil_mode keeps a last window that starts inside the input and runs past the right
    padding (torch clips it: a max over fewer taps, an average over fewer positions)."""
    return sliding(case).ceil_mode and any(kept > floor_n for floor_n, _, kept in _ceil_counts(case))


def ceil_dropped(case: Case) -> bool:
    """ceil_mode's extra last window would start in the right padding or past it: torch drops it."""
    return sliding(case).ceil_mode and any(ceil_n > kept for _, ceil_n, kept in _ceil_counts(case))


def dilated_with_padding(case: Case) -> bool:
    g = sliding(case)
    return any(d > 1 and p > 0 for d, p in zip(g.dilation, g.padding))


def padded(case: Case) -> bool:
    return any(p > 0 for p in sliding(case).padding)


def tied_window(case: Case) -> bool:
    """Some window holds its maximum at two or more taps, or two NaNs (any of them is a valid index)."""
    x = batched_input(case)
    taps = case_taps(case, x.shape[2:])
    flat, valid = ref.window_positions(x.shape[2:], taps)
    planes, window = x.shape[0] * x.shape[1], int(np.prod(flat.shape[1 + len(taps):]))
    flat = np.broadcast_to(flat, (planes, *flat.shape[1:])).reshape(planes, -1, window)
    valid = np.broadcast_to(valid, (planes, *valid.shape[1:])).reshape(planes, -1, window)
    vals = np.take_along_axis(x.reshape(planes, -1), flat.reshape(planes, -1), axis=1).reshape(flat.shape)
    nan = valid & np.isnan(vals)
    best = np.where(valid & ~nan, vals, -np.inf).max(axis=-1, initial=-np.inf)
    hits = (valid & ~nan & (vals == best[..., None])).sum(axis=-1)
    return bool(((hits >= 2) & ~nan.any(axis=-1)).any() or (nan.sum(axis=-1) >= 2).any())


def non_finite_input(case: Case) -> bool:
    return not np.isfinite(case.inputs["input"]).all()


def negative_with_padding(case: Case) -> bool:
    """Every input value is negative and some window reads padding (which must never win)."""
    return bool((case.inputs["input"] < 0).all()) and padded(case)


def channels_last(case: Case) -> bool:
    return case.layout("input").kind == "channels_last"


def excludes_padding(case: Case) -> bool:
    """count_include_pad=False with padding: windows over the padding divide by fewer positions."""
    return not case.params.get("count_include_pad", True) and padded(case)


def divisor_overridden(case: Case) -> bool:
    return case.params.get("divisor_override") is not None


def norm_type_is(value: float) -> Callable[[Case], bool]:
    return lambda case: float(case.params["norm_type"]) == value


def fractional_norm(case: Case) -> bool:
    """A finite non-integer p (x^p of a negative x is NaN)."""
    p = float(case.params["norm_type"])
    return bool(np.isfinite(p) and not p.is_integer())


def fractional_norm_negative_input(case: Case) -> bool:
    return fractional_norm(case) and bool((case.inputs["input"] < 0).any())


def duplicate_indices(case: Case) -> bool:
    return not unpool_smooth(case)


def unpool_output_size(case: Case) -> bool:
    """An explicit output_size larger than the default (the extra positions stay 0)."""
    size = case.forward_kwargs.get("output_size")
    if size is None:
        return False
    kernel, stride, padding = unpool_geometry(case)
    default = ref.unpool_output_size(batched_input(case).shape[2:], kernel, stride, padding, None)
    return tuple(size[-spatial_dims(case):]) != tuple(default)


def unpool_output_size_with_batch(case: Case) -> bool:
    size = case.forward_kwargs.get("output_size")
    return size is not None and len(size) == spatial_dims(case) + 2


def unpool_padded(case: Case) -> bool:
    return any(p > 0 for p in unpool_geometry(case)[2])


def _adaptive_sizes(case: Case) -> list[tuple[int, int]]:
    spatial = batched_input(case).shape[2:]
    return list(zip(spatial, adaptive_output(case, spatial)))


def adaptive_uneven(case: Case) -> bool:
    """Some dim has out < in with in % out != 0: windows of unequal length that overlap."""
    return any(o < i and i % o for i, o in _adaptive_sizes(case))


def adaptive_larger(case: Case) -> bool:
    """Some output dim is larger than the input's: windows repeat input elements."""
    return any(o > i for i, o in _adaptive_sizes(case))


def adaptive_none(case: Case) -> bool:
    size = case.params["output_size"]
    return isinstance(size, (list, tuple)) and any(o is None for o in size)


def adaptive_global(case: Case) -> bool:
    return all(o == 1 for _, o in _adaptive_sizes(case))


def fractional_ratio(case: Case) -> bool:
    return case.params.get("output_ratio") is not None


def fractional_single_window(case: Case) -> bool:
    return 1 in fractional_output(case, batched_input(case))


def fractional_dense(case: Case) -> bool:
    """Some dim has out = in - k + 1 > 1: alpha = 1, the windows step by one whatever the samples."""
    x = batched_input(case)
    kernel = per_dim_param(case.params["kernel_size"], spatial_dims(case))
    return any(o > 1 and o == i - k + 1 for i, o, k in zip(x.shape[2:], fractional_output(case, x), kernel))


def extreme_samples(case: Case) -> bool:
    """Some sample is 0 or the largest value below 1 in the dtype."""
    u = case_samples(case)
    return bool(((u == 0) | (u == 1.0 - DTYPES[case.dtype].unit_roundoff)).any())


# ---------------------------------------------------------------------------------------------
# Regimes: corners of each declaration, with the labelled draws that reach them
# ---------------------------------------------------------------------------------------------

# Max pooling draws, per dim, whether a window lies wholly in the padding; most regimes exclude it.
NO_EMPTY = {"dim[*].window in the padding only": False}
# ceil_mode corners: k = 3 and s = 3 leave room for every remainder r in [1, s-1] past e - p.
OVERHANG = {"ceil_mode": True, "dim[*].ceil corner": "overhang", "dim[*].kernel": 3, "dim[*].stride": 3}
# A dropped ceil window needs s > e - p: the explicit-stride draw provides it.
DROPPED = {"ceil_mode": True, "explicit stride": True, "dim[*].ceil corner": "drop"}
WITH_PADDING = {"dim[*].kernel": 3, "dim[*].padding": 1}


def _layout_regimes(nd: int) -> tuple[Regime, ...]:
    regimes = [Regime("unbatched", is_unbatched, {"unbatched": True}, "input without a batch dim: (C, *spatial)")]
    if nd > 1:
        regimes.append(Regime("channels_last", channels_last, {"unbatched": False, "layout.input": "channels_last"},
                              "input stored channels-last (torch's NHWC / NDHWC kernels)"))
    return tuple(regimes)


def _ceil_regimes(no_empty: dict[str, bool]) -> tuple[Regime, ...]:
    return (
        Regime("ceil overhang clipped", ceil_overhang, {**no_empty, **OVERHANG},
               "ceil_mode keeps a last window that starts in the input and runs past the right padding: clipped"),
        Regime("ceil window dropped", ceil_dropped, {**no_empty, **DROPPED},
               "ceil_mode's extra window would start in the right padding or past it: torch drops it"),
    )


def max_pool_regimes(nd: int) -> tuple[Regime, ...]:
    return (
        *_ceil_regimes(NO_EMPTY),
        Regime("dilation with padding", dilated_with_padding, {**NO_EMPTY, **WITH_PADDING, "dim[*].dilation": 2},
               "dilated taps that skip over or land in the -inf padding"),
        Regime("window wholly in the padding", has_empty_window, {"dim[*].window in the padding only": True},
               "a window none of whose dilated taps is inside the input: -inf, no index, no gradient "
               "(torch mishandles it: known discrepancy maxpool-empty-window-out-of-window-index)"),
        Regime("tied maxima", tied_window, {**NO_EMPTY, "input.values": "ties", "dim[*].kernel": 2,
                                            "dim[*].padding": 0},
               "a window holding its maximum twice: any of the tied positions is a valid index"),
        Regime("NaN and ±inf", non_finite_input, {"input.values": "special"},
               "non-finite inputs: a window with a NaN gives NaN, ±inf compare as numbers"),
        Regime("negative values with padding", negative_with_padding,
               {**NO_EMPTY, **WITH_PADDING, "input.values": "negative"},
               "every value negative while windows read padding: the padding (-inf) must never win"),
        *_layout_regimes(nd),
    )


def avg_pool_regimes(nd: int) -> tuple[Regime, ...]:
    regimes = [
        *_ceil_regimes({}),
        Regime("count_include_pad=False with padding", excludes_padding,
               {**WITH_PADDING, "count_include_pad=False": True},
               "windows over the padding divide by the positions inside the input only"),
    ]
    if nd > 1:
        regimes.append(Regime("divisor_override", divisor_overridden, {"divisor_override": True},
                              "a fixed divisor (also negative) replaces the window's count"))
    regimes.append(Regime("NaN and ±inf", non_finite_input, {"tier": "float", "input.kind": "special"},
                          "non-finite inputs propagate into every window that reads them"))
    return (*regimes, *_layout_regimes(nd))


def lp_pool_regimes(nd: int) -> tuple[Regime, ...]:
    return (
        *_ceil_regimes({}),
        Regime("p = inf", norm_type_is(float("inf")), {"norm_type": float("inf")},
               "norm_type = inf: the max of |x| over the window"),
        Regime("p = -inf", norm_type_is(float("-inf")), {"norm_type": float("-inf")},
               "norm_type = -inf: the min of |x| over the window"),
        Regime("p < 1", norm_type_is(0.5), {"norm_type": 0.5}, "norm_type = 0.5: a root of power 2"),
        Regime("non-integer p", fractional_norm, {"norm_type": 1.5}, "norm_type = 1.5"),
        Regime("negative input, non-integer p", fractional_norm_negative_input,
               {"norm_type": 1.5, "input.signs": "negative"},
               "x^p of a negative x with non-integer p is NaN (torch takes no absolute value)"),
        *_layout_regimes(nd),
    )


def unpool_regimes(nd: int) -> tuple[Regime, ...]:
    return (
        Regime("duplicate indices", duplicate_indices, {"indices": "duplicates", "dim[*].output": 2},
               "several values sent to one position: one of them must land there"),
        Regime("output_size beyond the default", unpool_output_size,
               {"output_size": "largest", "dim[*].kernel": 2, "dim[*].stride": 2},
               "an explicit output_size up to stride - 1 larger than the default: the extra positions stay 0"),
        Regime("output_size with batch and channels", unpool_output_size_with_batch,
               {"output_size": "with N and C", "unbatched": False},
               "output_size given as (N, C, *spatial): only the spatial sizes count"),
        Regime("padding", unpool_padded, WITH_PADDING, "the default output size subtracts 2·padding"),
        *_layout_regimes(nd),
    )


def adaptive_regimes(nd: int, selection: bool) -> tuple[Regime, ...]:
    regimes = [
        Regime("uneven windows", adaptive_uneven, {"dim[*].output mode": "uneven"},
               "in % out != 0: windows of unequal length that overlap"),
        Regime("output larger than input", adaptive_larger, {"dim[*].output mode": "larger"},
               "out > in: windows of one element, repeated"),
        Regime("global pooling", adaptive_global, {"dim[*].output mode": "divides", "dim[*].output": 1},
               "output_size 1: one window over the whole plane"),
    ]
    if nd > 1:
        regimes.append(Regime("output_size None", adaptive_none, {"dim[0].output mode": "none"},
                              "None keeps that dim's input size"))
    if selection:
        regimes += [
            Regime("tied maxima", tied_window, {"input.values": "ties", "dim[*].output mode": "divides",
                                                "dim[*].window": 2},
                   "a window holding its maximum twice: any of the tied positions is a valid index"),
            Regime("NaN and ±inf", non_finite_input, {"input.values": "special"},
                   "non-finite inputs: a window with a NaN gives NaN"),
        ]
    else:
        regimes.append(Regime("NaN and ±inf", non_finite_input, {"tier": "float", "input.kind": "special"},
                              "non-finite inputs propagate into every window that reads them"))
    return (*regimes, *_layout_regimes(nd))


def fractional_regimes(nd: int, drawn: bool) -> tuple[Regime, ...]:
    regimes = [
        Regime("output_ratio", fractional_ratio, {"output_ratio": True, "input slack[*]": 1},
               "the output size is int(input size · ratio)"),
        Regime("single window", fractional_single_window, {"output_ratio": False, "output[*]": 1},
               "output 1 along a dim: the only window starts at in - k"),
        Regime("dense windows", fractional_dense, {"output_ratio": False, "output[*]": 3, "input slack[*]": 0},
               "out = in - k + 1: alpha = 1, the windows step by one whatever the samples"),
        Regime("NaN and ±inf", non_finite_input, {"input.values": "special"},
               "non-finite inputs: a window with a NaN gives NaN"),
    ]
    if not drawn:
        regimes += [
            Regime("samples at 0 and just below 1", extreme_samples, {"_random_samples.kind": "extreme"},
                   "each sample 0 or the largest value below 1 (trunc(u·alpha) at its extremes)"),
            Regime("tied maxima", tied_window, {"input.values": "ties", "kernel_size[0]": 2},
                   "a window holding its maximum twice: any of the tied positions is a valid index"),
        ]
    return (*regimes, *_layout_regimes(nd))
