"""Pooling: max, average, power-average, fractional max, max-unpool and adaptive pooling
(template: conformance.families.window)."""

from conformance.families.window import window
from conformance.spec import declare

for _nd in (1, 2, 3):
    declare(window(f"MaxPool{_nd}d", "max", _nd, notes=(
        "Max over dilated windows of the -inf padded input; padding <= kernel_size // 2; ceil_mode drops a last "
        "window starting in the right padding. NaN in a window gives NaN. Ties: any arg-max is accepted as index "
        "(torch CPU returns the last NaN of a window), and the gradient must go to the indices returned. torch "
        "discrepancy: when dilation > 1 and padding > 0 leave a window with no tap inside the input (e.g. "
        "MaxPool1d(2, stride=1, padding=1, dilation=3) on length 2), torch returns -inf with an index past the "
        "window (2, outside a plane of 2 elements) and its backward adds that output's gradient there: into "
        "another element/plane, or out of bounds (heap corruption, 'malloc(): unsorted double linked list "
        "corrupted'). Predicate: has_empty_window(case); strategies.pooling.ALLOW_EMPTY_WINDOWS = False keeps "
        "them out." + (
            " torch discrepancies (3d): on a channels_last_3d input, a window of only -inf values whose first tap "
            "is at depth > 0 gets an index without the depth offset (channels in the scalar remainder of the "
            "vectorised channel loop, e.g. C = 2 or 3), and the gradient goes there; an unbatched 4-D input whose "
            "strides are channels_last (2-D) raises 'Unsupported memory format'." if _nd == 3 else ""))))
    declare(window(f"AvgPool{_nd}d", "avg", _nd, notes=(
        "Divisor: with count_include_pad the window's positions inside the padded input (the ceil overhang "
        "beyond in + padding is not counted), else those inside the input; divisor_override (2d/3d) replaces "
        "it. Output: the window sum exact on integers, one final rounding allowed." + (
            " torch discrepancy: AvgPool3d raises 'input image ... smaller than kernel size' when the input is "
            "smaller than the kernel along a dim even though padding makes the output valid (AvgPool1d/2d accept "
            "it); CPU has no float16/bfloat16 kernel." if _nd == 3 else ""))))
    declare(window(f"MaxUnpool{_nd}d", "unpool", _nd, notes=(
        "Indices come from a MaxPool of the same geometry, or are random with duplicates. With duplicates the "
        "value written must be one of those sent to the position (torch CPU writes the last in row-major "
        "order); the gradient is a gather, exact.")))

for _nd in (1, 2, 3):
    declare(window(f"LPPool{_nd}d", "lp", _nd, notes=(
        "torch's formula: (sign(s)·relu(|s|)·K)^(1/p) with s = avg_pool(x^p) (no abs: negative x with "
        "non-integer p gives NaN; a negative sum gives NaN). A ceil-clipped window divides by its clipped size "
        "before the ·K, i.e. its sum is scaled by K/count — the documentation's (Σ x^p)^(1/p) holds only for "
        "unclipped windows. p = ±inf: max/min of |x|. Tolerance: the first-order error analysis "
        "reference.pooling.lp_pool_error." + (
            " CPU has no float16/bfloat16 kernel (avg_pool3d)." if _nd == 3 else ""))))
    declare(window(f"AdaptiveMaxPool{_nd}d", "adaptive-max", _nd, notes=(
        "Window i: [floor(i·in/out), ceil((i+1)·in/out)); None (2d, 3d) keeps the input size. Ties: any "
        "arg-max is accepted as index; the gradient must go to the indices returned. Output size 0 is not "
        "drawn: torch's forward returns an empty tensor but its backward raises.")))
    declare(window(f"AdaptiveAvgPool{_nd}d", "adaptive-avg", _nd, notes=(
        "Mean over [floor(i·in/out), ceil((i+1)·in/out)) per dim; None (2d, 3d) keeps the input size. torch "
        "divides the window sum by the window's extent dim by dim: one rounding per dim allowed.")))

for _nd in (2, 3):
    for _variant in ("", "drawn"):
        declare(window(f"FractionalMaxPool{_nd}d", "fractional", _nd, variant=_variant, notes=(
            ("torch draws the samples (torch.rand(N, C, nd) in the input's dtype, N = 1 unbatched) and the "
             "adapter reports them (replayed after the call's seed); the reference pools with the reported "
             "samples, and a statistical check over the target tests them for uniformity on [0, 1) and "
             "independence. " if _variant else "Deterministic: the samples _random_samples are an input of the "
             "case. ")
            + ("[..., 0] of the samples (N, C, 2) drives the width, [..., 1] the height. " if _nd == 2 else
               "[..., 0], [..., 1], [..., 2] of the samples (N, C, 3) drive the depth, height and width. ")
            + "Window starts: trunc((i+u)·alpha) - trunc(u·alpha), alpha = (in-k)/(out-1), last = in-k, evaluated "
            "in the input's dtype as torch does. torch discrepancy: in bfloat16 that evaluation can place a window "
            "past the input (e.g. W=146, k=1, out=135, u=0.5390625) and torch fails an internal assert; inputs that "
            "large are not drawn.")))
