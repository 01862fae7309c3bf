"""Pooling layers: max, average, power-average (LP), fractional max, max-unpool and adaptive pooling.

Sixteen declarations: MaxPool1d/2d/3d, MaxUnpool1d/2d/3d, AvgPool1d/2d/3d, FractionalMaxPool2d,
LPPool1d/2d, AdaptiveMaxPool1d/2d, AdaptiveAvgPool1d/2d. Their case strategies live in
``_pooling_cases``, their references, error model and tie-rule comparators in ``_pooling_model``;
this module declares them, with their corner regimes.
"""

from __future__ import annotations

from backends.base import Case
from conformance.spec import LayerSpec, Randomness, Regime, Tolerance, TorchMapping, arg, declare
from conformance.specs._pooling_cases import (
    adaptive_cases,
    adaptive_invalid,
    avg_pool_cases,
    fractional_cases,
    fractional_invalid,
    lp_pool_cases,
    max_pool_cases,
    sliding_invalid,
    unpool_cases,
    unpool_invalid,
)
from conformance.specs._pooling_model import (  # has_empty_window & co. are named by known_discrepancies.toml
    adaptive_avg_reference,
    adaptive_global,
    adaptive_larger,
    adaptive_max_reference,
    adaptive_none,
    adaptive_uneven,
    avg_pool_reference,
    avgpool3d_input_smaller_than_kernel,
    ceil_dropped,
    ceil_overhang,
    channels_last,
    check_fractional_samples,
    dilated_with_padding,
    divisor_overridden,
    draw_fractional_samples,
    duplicate_indices,
    excludes_padding,
    extreme_samples,
    fractional_dense,
    fractional_norm,
    fractional_norm_negative_input,
    fractional_ratio,
    fractional_reference,
    fractional_sample_rule,
    fractional_single_window,
    has_empty_window,
    indices_comparator,
    is_unbatched,
    lp_magnitudes,
    lp_pool_reference,
    lp_smooth,
    max_pool_reference,
    maxpool3d_channels_last_neginf_window,
    negative_with_padding,
    no_ties,
    non_finite_input,
    norm_type_is,
    overlap,
    selection_grad_comparator,
    selection_grad_magnitude,
    tied_window,
    unpool_output_comparator,
    unpool_output_size,
    unpool_output_size_with_batch,
    unpool_padded,
    unpool_reference,
    unpool_smooth,
    window_numel,
)

__all__ = ["avgpool3d_input_smaller_than_kernel", "has_empty_window", "maxpool3d_channels_last_neginf_window"]


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


def fractional_regimes(drawn: bool) -> tuple[Regime, ...]:
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
    return (*regimes, *_layout_regimes(2))


# ---------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------


def selection_outputs(case: Case) -> tuple[str, ...]:
    """A max-type module returns (output, indices) when return_indices is set, else the output."""
    return ("output", "indices") if case.params.get("return_indices") else ("output",)


SELECTION_TOLERANCE = {
    # Max selects: the output is an input value, bit-exact in every tier.
    "output": Tolerance(magnitude="ref", exact="always"),
    # The gradient sums the cotangents of the windows that selected an element (K = max overlap):
    # bit-exact on integer cotangents, float model otherwise.
    "grad.input": Tolerance(reduction=overlap, magnitude=selection_grad_magnitude, exact="bitwise"),
}
SELECTION_COMPARATORS = {"indices": indices_comparator, "grad.input": selection_grad_comparator}
AVG_TOLERANCE = {
    # Σ of K inputs then one division: exact sums on integers, one final rounding allowed (torch
    # accumulates float16/bfloat16 in float32; rounding the quotient first to float32 cannot
    # create a wrong tie for quotients of small integers, so the result is still correctly rounded).
    "output": Tolerance(reduction=window_numel, magnitude="abs", exact="rounded"),
    # Σ over the windows reading an element of g/divisor: each quotient rounds, so float model.
    "grad.input": Tolerance(reduction=overlap, magnitude="abs", exact="none"),
}
ADAPTIVE_AVG_TOLERANCE = {
    # torch divides the window sum by the window's height, then by its width: two roundings.
    "output": Tolerance(reduction=window_numel, magnitude="abs", exact="rounded", out_ulps=2.0),
    "grad.input": Tolerance(reduction=overlap, magnitude="abs", exact="none"),
}
LP_TOLERANCE = {
    # Each term's path: x^p (up to 2 roundings: x·x·x), /count, ·K, root (rounding + pow's own
    # error): 5 roundings besides the window sum's √K, hence c = 5.
    "output": Tolerance(reduction=window_numel, magnitude=lp_magnitudes, exact="none", c=5.0),
    # Backward path of each term: v^(1/p-1), ·(1/p), ·g, ·K, /count, x^(p-1), ·p, ·grad: 7 roundings
    # besides the final one and the √K accumulation over overlapping windows, hence c = 7.
    "grad.input": Tolerance(reduction=overlap, magnitude=lp_magnitudes, exact="none", c=7.0),
}
EMPTY_WINDOW_NOTE = (
    "torch discrepancy: when dilation > 1 and padding > 0 leave a window with no tap inside the input "
    "(e.g. MaxPool1d(2, stride=1, padding=1, dilation=3) on length 2), torch returns -inf with an index "
    "past the window (2, outside a plane of 2 elements) and its backward adds that output's gradient "
    "there: into another element/plane, or out of bounds (heap corruption, 'malloc(): unsorted double "
    "linked list corrupted'). Predicate: has_empty_window(case); ALLOW_EMPTY_WINDOWS = False keeps them out."
)

for _nd in (1, 2, 3):
    declare(LayerSpec(
        name=f"MaxPool{_nd}d", family="pooling", dims=_nd, kind="max", regimes=max_pool_regimes(_nd),
        cases=max_pool_cases(f"MaxPool{_nd}d", _nd),
        reference=max_pool_reference,
        torch=TorchMapping(f"torch.nn.MaxPool{_nd}d", outputs=selection_outputs),
        tolerance=SELECTION_TOLERANCE, comparators=SELECTION_COMPARATORS,
        invalid_cases=sliding_invalid(f"MaxPool{_nd}d", _nd, "max"),
        smooth_at=no_ties,
        notes=("Max over dilated windows of the -inf padded input; padding <= kernel_size // 2; ceil_mode "
               "drops a last window starting in the right padding. NaN in a window gives NaN. Ties: any "
               "arg-max is accepted as index (torch CPU returns the last NaN of a window), and the gradient "
               "must go to the indices returned. " + EMPTY_WINDOW_NOTE
               + (" torch discrepancies (3d): on a channels_last_3d input, a window of only -inf values whose "
                  "first tap is at depth > 0 gets an index without the depth offset (channels in the scalar "
                  "remainder of the vectorised channel loop, e.g. C = 2 or 3), and the gradient goes there "
                  "(see maxpool3d_channels_last_neginf_window); an unbatched 4-D input whose strides are "
                  "channels_last (2-D) raises 'Unsupported memory format'." if _nd == 3 else "")),
    ))
    declare(LayerSpec(
        name=f"AvgPool{_nd}d", family="pooling", dims=_nd, kind="avg", regimes=avg_pool_regimes(_nd),
        cases=avg_pool_cases(f"AvgPool{_nd}d", _nd),
        reference=avg_pool_reference,
        torch=TorchMapping(f"torch.nn.AvgPool{_nd}d"),
        tolerance=AVG_TOLERANCE,
        invalid_cases=sliding_invalid(f"AvgPool{_nd}d", _nd, "avg"),
        notes=("Divisor: with count_include_pad the window's positions inside the padded input (the ceil "
               "overhang beyond in + padding is not counted), else those inside the input; "
               "divisor_override (2d/3d) replaces it."
               + (" torch discrepancy: AvgPool3d raises 'input image ... smaller than kernel size' when the "
                  "input is smaller than the kernel along a dim even though padding makes the output valid "
                  "(AvgPool1d/2d accept it); CPU has no float16/bfloat16 kernel." if _nd == 3 else "")),
    ))
    declare(LayerSpec(
        name=f"MaxUnpool{_nd}d", family="pooling", dims=_nd, kind="unpool", regimes=unpool_regimes(_nd),
        cases=unpool_cases(f"MaxUnpool{_nd}d", _nd),
        reference=unpool_reference,
        torch=TorchMapping(f"torch.nn.MaxUnpool{_nd}d", args=("input", "indices")),
        tolerance=Tolerance(magnitude="ref", exact="always"),
        comparators={"output": unpool_output_comparator},
        invalid_cases=unpool_invalid(f"MaxUnpool{_nd}d", _nd),
        smooth_at=unpool_smooth,
        notes=("Indices come from a MaxPool of the same geometry, or are random with duplicates. With "
               "duplicates the value written must be one of those sent to the position (torch CPU writes "
               "the last in row-major order); the gradient is a gather, exact."),
    ))

for _nd in (1, 2):
    declare(LayerSpec(
        name=f"LPPool{_nd}d", family="pooling", dims=_nd, kind="lp", regimes=lp_pool_regimes(_nd),
        cases=lp_pool_cases(f"LPPool{_nd}d", _nd),
        reference=lp_pool_reference,
        torch=TorchMapping(f"torch.nn.LPPool{_nd}d"),
        tolerance=LP_TOLERANCE,
        invalid_cases=sliding_invalid(f"LPPool{_nd}d", _nd, "lp"),
        smooth_at=lp_smooth,
        notes=("torch's formula: (sign(s)·relu(|s|)·K)^(1/p) with s = avg_pool(x^p) (no abs: negative x with "
               "non-integer p gives NaN; a negative sum gives NaN). A ceil-clipped window divides by its "
               "clipped size before the ·K, i.e. its sum is scaled by K/count — the documentation's "
               "(Σ x^p)^(1/p) holds only for unclipped windows. p = ±inf: max/min of |x|."),
    ))
    declare(LayerSpec(
        name=f"AdaptiveMaxPool{_nd}d", family="pooling", dims=_nd, kind="adaptive-max",
        regimes=adaptive_regimes(_nd, selection=True),
        cases=adaptive_cases(f"AdaptiveMaxPool{_nd}d", _nd, selection=True),
        reference=adaptive_max_reference,
        torch=TorchMapping(f"torch.nn.AdaptiveMaxPool{_nd}d", outputs=selection_outputs),
        tolerance=SELECTION_TOLERANCE, comparators=SELECTION_COMPARATORS,
        invalid_cases=adaptive_invalid(f"AdaptiveMaxPool{_nd}d", _nd),
        smooth_at=no_ties,
        notes=("Window i: [floor(i·in/out), ceil((i+1)·in/out)). Output size 0 is not drawn: torch's forward "
               "returns an empty tensor but its backward raises."),
    ))
    declare(LayerSpec(
        name=f"AdaptiveAvgPool{_nd}d", family="pooling", dims=_nd, kind="adaptive-avg",
        regimes=adaptive_regimes(_nd, selection=False),
        cases=adaptive_cases(f"AdaptiveAvgPool{_nd}d", _nd, selection=False),
        reference=adaptive_avg_reference,
        torch=TorchMapping(f"torch.nn.AdaptiveAvgPool{_nd}d"),
        tolerance=ADAPTIVE_AVG_TOLERANCE,
        invalid_cases=adaptive_invalid(f"AdaptiveAvgPool{_nd}d", _nd),
        notes="Mean over [floor(i·in/out), ceil((i+1)·in/out)) per dim; None keeps the input size.",
    ))

FRACTIONAL_NOTES = (
    "[...,0] of the samples (N, C, 2) drives the width, [...,1] the height. Window starts: "
    "trunc((i+u)·alpha) - trunc(u·alpha), alpha = (in-k)/(out-1), last = in-k, evaluated in the input's "
    "dtype as torch does. torch discrepancy: in bfloat16 that evaluation can place a window past the input "
    "(e.g. W=146, k=1, out=135, u=0.5390625) and torch fails an internal assert; inputs that large are not drawn."
)

declare(LayerSpec(
    name="FractionalMaxPool2d", family="pooling", dims=2, kind="fractional", regimes=fractional_regimes(False),
    cases=fractional_cases(drawn=False),
    reference=fractional_reference,
    torch=TorchMapping("torch.nn.FractionalMaxPool2d", outputs=selection_outputs,
                       ctor=lambda case: {**case.params, "_random_samples": arg("_random_samples")}),
    tolerance=SELECTION_TOLERANCE, comparators=SELECTION_COMPARATORS,
    invalid_cases=fractional_invalid(drawn=False),
    smooth_at=no_ties,
    notes="Deterministic: the samples _random_samples are an input of the case. " + FRACTIONAL_NOTES,
))

declare(LayerSpec(
    name="FractionalMaxPool2d", variant="drawn", family="pooling", dims=2, kind="fractional",
    regimes=fractional_regimes(True),
    cases=fractional_cases(drawn=True),
    reference=fractional_reference,
    torch=TorchMapping("torch.nn.FractionalMaxPool2d", outputs=selection_outputs),
    tolerance=SELECTION_TOLERANCE, comparators=SELECTION_COMPARATORS,
    invalid_cases=fractional_invalid(drawn=True),
    smooth_at=no_ties,
    randomness=Randomness(
        choices={"_random_samples": fractional_sample_rule},
        sample=draw_fractional_samples,
        check=check_fractional_samples,
        deterministic=lambda case: False,
    ),
    notes=("torch draws the samples (torch.rand(N, C, 2) in the input's dtype, N = 1 unbatched) and the adapter "
           "reports them (replayed after the call's seed); the reference pools with the reported samples, and "
           "a statistical check over the target tests them for uniformity on [0, 1) and independence. "
           + FRACTIONAL_NOTES),
))
