"""Pooling layers: max, average, power-average (LP), fractional max, max-unpool and adaptive pooling.

Sixteen declarations: MaxPool1d/2d/3d, MaxUnpool1d/2d/3d, AvgPool1d/2d/3d, FractionalMaxPool2d,
LPPool1d/2d, AdaptiveMaxPool1d/2d, AdaptiveAvgPool1d/2d, and FractionalMaxPool2d[drawn] (torch
draws the samples). Their case strategies live in ``_pooling_cases``, their references, error model,
tie-rule comparators and sample statistics in ``_pooling_model``, their corner regimes in
``_pooling_regimes``; this module declares them.
"""

from __future__ import annotations

from backends.base import Case
from conformance.spec import LayerSpec, Randomness, Tolerance, TorchMapping, arg, declare, result_reference
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
from conformance.specs._pooling_model import (  # has_empty_window & co. are named by conformance/known/pooling.toml
    adaptive_avg_reference,
    adaptive_max_reference,
    avg_pool_reference,
    avgpool3d_input_smaller_than_kernel,
    check_fractional_samples,
    draw_fractional_samples,
    fractional_reference,
    fractional_sample_rule,
    has_empty_window,
    indices_comparator,
    lp_magnitudes,
    lp_pool_reference,
    lp_smooth,
    max_pool_reference,
    maxpool3d_channels_last_neginf_window,
    no_ties,
    overlap,
    selection_grad_comparator,
    selection_grad_magnitude,
    unpool_output_comparator,
    unpool_reference,
    unpool_smooth,
    window_numel,
)
from conformance.specs._pooling_regimes import (
    adaptive_regimes,
    avg_pool_regimes,
    fractional_regimes,
    lp_pool_regimes,
    max_pool_regimes,
    unpool_regimes,
)

__all__ = ["avgpool3d_input_smaller_than_kernel", "has_empty_window", "maxpool3d_channels_last_neginf_window"]


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
        reference=result_reference(max_pool_reference),
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
        reference=result_reference(avg_pool_reference),
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
        reference=result_reference(unpool_reference),
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
        reference=result_reference(lp_pool_reference),
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
        reference=result_reference(adaptive_max_reference),
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
        reference=result_reference(adaptive_avg_reference),
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
    reference=result_reference(fractional_reference),
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
    reference=result_reference(fractional_reference),
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
