"""Numerics of the window operators (convolution, pooling, Fold/Unfold): the parameters of a case
as the references take them, the reduction lengths and magnitudes of the tolerance model, the
comparators that accept what the documentation leaves open, the smoothness predicates of the
finite-difference checks and the predicates named by ``conformance/known/convolution.toml`` and
``pooling.toml``. The statistics of the samples FractionalMaxPool draws are in ``window_randomness``.

Comparators:

- indices (max-type pooling): each index must name a position of its window holding the window's
  maximum (any NaN of the window when it holds one); an empty window (no input element) must not
  name an element. grad.input: the scatter of the output gradient to the indices the backend
  returned (when they are all valid), else to the reference's.
- MaxUnpool with duplicate indices: which of the values sent to one position lands there is
  unspecified; the value written must be one of them (positions nobody names are 0).
- copies (Unfold's output, Fold's input gradient): bit for bit, the sign of zero included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import WORST_SHOWN, Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Tolerance, spec_of
from conformance.tolerance import analysed_tolerance
from reference import conv as conv_ref
from reference import fold as fold_ref
from reference import pooling as ref
from reference import pooling_functional

# ---------------------------------------------------------------------------------------------
# Parameters of a case, as the references take them
# ---------------------------------------------------------------------------------------------


def spatial_dims(case: Case) -> int:
    """Spatial dimensionality, a fact of the declaration."""
    return spec_of(case).dims  # type: ignore[return-value]


def pool_kind(case: Case) -> str:
    """The declaration's kind: direct | transposed | max | avg | lp | unpool | adaptive-max |
    adaptive-avg | fractional | fold | unfold."""
    return spec_of(case).kind


def per_dim_param(value: Any, nd: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),) * nd


def batched_input(case: Case, name: str = "input") -> np.ndarray:
    """The input with a batch axis (unbatched inputs have ndim = spatial + 1)."""
    x = case.inputs[name]
    return x[None] if x.ndim == spatial_dims(case) + 1 else x


def is_unbatched(case: Case) -> bool:
    return case.inputs["input"].ndim == spatial_dims(case) + 1


def like_input(case: Case, arr: np.ndarray) -> np.ndarray:
    """Drop the batch axis again for an unbatched case."""
    return arr[0] if is_unbatched(case) else arr


def batched_like(case: Case, arr: np.ndarray) -> np.ndarray:
    return arr[None] if is_unbatched(case) else arr


@dataclass(frozen=True)
class Sliding:
    """Per-dim sliding-window parameters of a case (torch defaults filled in)."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool


def sliding(case: Case) -> Sliding:
    nd = spatial_dims(case)
    p = case.params
    kernel = per_dim_param(p["kernel_size"], nd)
    stride = per_dim_param(p.get("stride"), nd) or kernel
    return Sliding(kernel, stride, per_dim_param(p.get("padding", 0), nd), per_dim_param(p.get("dilation", 1), nd),
                   bool(p.get("ceil_mode", False)))


def fractional_output(case: Case, x: np.ndarray) -> tuple[int, ...]:
    """The output size of a FractionalMaxPool module: exactly one of output_size and output_ratio
    (the ratio in (0, 1)), as the module's constructor demands."""
    p = case.params
    nd = spatial_dims(case)
    has_size, has_ratio = p.get("output_size") is not None, p.get("output_ratio") is not None
    if has_size == has_ratio:
        raise ValueError(f"FractionalMaxPool{nd}d needs exactly one of output_size and output_ratio")
    if has_ratio:
        ratio = p["output_ratio"]
        ratio = tuple(ratio) if isinstance(ratio, (list, tuple)) else (ratio,) * nd
        if not all(0 < r < 1 for r in ratio):
            raise ValueError(f"output_ratio must lie in (0, 1), got {ratio}")
    return pooling_functional.fractional_output_size(x.shape[2:], p.get("output_size"), p.get("output_ratio"))


def adaptive_output(case: Case, spatial: Sequence[int]) -> tuple[int, ...]:
    return pooling_functional.adaptive_output_size(case.params["output_size"], spatial)


def round_fn(case: Case) -> Callable[[np.ndarray], np.ndarray]:
    """Rounding to the case's dtype (FractionalMaxPool's interval arithmetic runs in it)."""
    return DTYPES[case.dtype].round


def fractional_sample_shape(case: Case) -> tuple[int, int, int]:
    """(N, C, nd): one sample per plane and spatial dim (N = 1 for an unbatched input)."""
    x = batched_input(case)
    return int(x.shape[0]), int(x.shape[1]), spatial_dims(case)


def fractional_samples(case: Case) -> np.ndarray:
    """FractionalMaxPool's samples: an input of the case, or the random choice the backend
    reported (``case.choices``). Before the backend has run, a drawn case (whose output shapes do
    not depend on the samples) uses samples a conforming backend could draw."""
    if "_random_samples" in case.choices:
        return np.asarray(case.choices["_random_samples"], dtype=np.float64)
    if "_random_samples" in case.inputs:
        return np.asarray(case.inputs["_random_samples"], dtype=np.float64)
    return S.uniform_samples(np.random.default_rng(case.cotangent_seed), fractional_sample_shape(case), case.dtype)


def unpool_geometry(case: Case) -> tuple[tuple[int, ...], ...]:
    nd = spatial_dims(case)
    p = case.params
    kernel = per_dim_param(p["kernel_size"], nd)
    stride = per_dim_param(p.get("stride"), nd) or kernel
    padding = per_dim_param(p.get("padding", 0), nd)
    return kernel, stride, padding


def case_taps(case: Case, spatial: Sequence[int]) -> list[ref.Taps]:
    """The windows of a max-type case (MaxPool, AdaptiveMaxPool, FractionalMaxPool, LPPool ±inf)."""
    kind = pool_kind(case)
    if kind in ("max", "lp"):
        g = sliding(case)
        padding = g.padding if kind == "max" else (0,) * len(spatial)
        return ref.pool_taps(spatial, g.kernel, g.stride, padding, g.dilation, g.ceil_mode)
    if kind == "adaptive-max":
        out = adaptive_output(case, spatial)
        return [ref.adaptive_taps(int(s), o) for s, o in zip(spatial, out)]
    if kind == "fractional":
        x = batched_input(case)
        kernel = per_dim_param(case.params["kernel_size"], len(spatial))
        return ref.fractional_window_taps(spatial, kernel, fractional_output(case, x), fractional_samples(case),
                                          round_fn(case))
    raise KeyError(kind)


def fold_geometry(case: Case) -> conv_ref.Geometry:
    p = case.params
    return fold_ref.fold_geometry(p["kernel_size"], p.get("dilation", 1), p.get("padding", 0), p.get("stride", 1))


def fold_image_size(case: Case) -> tuple[int, ...]:
    """The image side of a Fold/Unfold case: Fold's output_size, Unfold's input spatial size."""
    if pool_kind(case) == "fold":
        size = case.params["output_size"]
        return tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    return tuple(case.inputs["input"].shape[-2:])


# ---------------------------------------------------------------------------------------------
# Convolution: constructor checks, reduction lengths, tolerance
# ---------------------------------------------------------------------------------------------


def is_transposed(case: Case) -> bool:
    """Transposed convolution, a fact of the declaration (``kind``)."""
    return pool_kind(case) == "transposed"


def check_conv_constructor(op: str, params: dict[str, Any], transposed: bool) -> None:
    """The checks torch.nn's constructor makes (it raises ValueError for them)."""
    groups = params["groups"]
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"{op}: groups must be a positive integer")
    if params["in_channels"] % groups:
        raise ValueError(f"{op}: in_channels must be divisible by groups")
    if params["out_channels"] % groups:
        raise ValueError(f"{op}: out_channels must be divisible by groups")
    mode = params.get("padding_mode", "zeros")
    if mode not in conv_ref.PADDING_MODES:
        raise ValueError(f"{op}: unknown padding_mode {mode!r}")
    if transposed and mode != "zeros":
        raise ValueError(f'{op}: only "zeros" padding mode is supported')


def _fold_copies(mode: str, pads: tuple[tuple[int, int], ...]) -> int:
    """Most positions of the padded input that copy one input element."""
    if mode == "zeros":
        return 1
    if mode == "replicate":
        return math.prod(l + r + 1 for l, r in pads)
    return 3 ** len(pads)


def conv_reduction_lengths(transposed: bool, params: dict[str, Any], inputs: dict[str, np.ndarray],
                           forward_kwargs: dict[str, Any]) -> dict[str, int]:
    """K for every compared tensor of a convolution, from the validated geometry of the call:
    output (C_in/G)·Π k (+1 with bias); the input gradient (C_out/G)·Π k, times the number of
    padded copies of an element (non-zero padding modes); weight gradient N·Π(positions); bias
    gradient N·Π(output)."""
    x, w = inputs["input"], inputs["weight"]
    nd = w.ndim - 2
    xb = x if x.ndim == nd + 2 else x[None]
    groups = params["groups"]
    taps = math.prod(w.shape[2:])
    bias = 1 if "bias" in inputs else 0
    if transposed:
        plan = conv_ref.conv_transpose_plan(xb.shape, w.shape, params["stride"], params["padding"],
                                            params["output_padding"], groups, params["dilation"],
                                            forward_kwargs.get("output_size"), x.ndim == nd + 2)
        return {
            "output": (w.shape[0] // groups) * taps + bias,
            "grad.input": w.shape[1] * taps,
            "grad.weight": xb.shape[0] * math.prod(plan.spatial),
            "grad.bias": xb.shape[0] * math.prod(plan.out),
        }
    plan = conv_ref.conv_plan(xb.shape, w.shape, params["stride"], params["padding"], params["dilation"], groups,
                              params["padding_mode"])
    positions = xb.shape[0] * math.prod(plan.out)
    return {
        "output": w.shape[1] * taps + bias,
        "grad.input": (w.shape[0] // groups) * taps * _fold_copies(plan.mode, plan.geo.pads),
        "grad.weight": positions,
        "grad.bias": positions,
    }


def conv_reduction(case: Case, tensor: str) -> int:
    return conv_reduction_lengths(is_transposed(case), case.params, case.inputs, case.forward_kwargs).get(tensor, 1)


# The multilinear model: K per tensor, absref the convolution of |inputs|, bit-exact in the exact tier.
CONV_TOLERANCE = Tolerance(reduction=conv_reduction, magnitude="abs", exact="bitwise")


# ---------------------------------------------------------------------------------------------
# Pooling: reduction lengths, magnitudes, tolerances
# ---------------------------------------------------------------------------------------------


def overlap(case: Case, tensor: str) -> int:
    """K of an input gradient: the most windows reading one input position."""
    x = batched_input(case)
    kind = pool_kind(case)
    if kind == "avg":
        g = sliding(case)
        taps = ref.pool_taps(x.shape[2:], g.kernel, g.stride, g.padding, (1,) * len(g.kernel), g.ceil_mode)
    elif kind == "adaptive-avg":
        out = adaptive_output(case, x.shape[2:])
        taps = [ref.adaptive_taps(int(s), o) for s, o in zip(x.shape[2:], out)]
    else:
        taps = case_taps(case, x.shape[2:])
    return ref.max_overlap(x.shape[2:], taps)


def window_numel(case: Case, tensor: str) -> int:
    """K of a pooled output: the largest window."""
    x = batched_input(case)
    if pool_kind(case) == "adaptive-avg":
        out = adaptive_output(case, x.shape[2:])
        sizes = [int((e - s).max(initial=1)) for s, e in (ref.adaptive_bounds(int(i), o)
                                                          for i, o in zip(x.shape[2:], out))]
        return int(np.prod(sizes))
    return int(np.prod(sliding(case).kernel))


def selection_grad_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """|g| scattered to the arg-max of the case's own input (re-evaluating on |x| would move it)."""
    x = batched_input(case)
    g = np.abs(batched_like(case, case.cotangents["output"]))
    mag = ref.scatter_by_indices(x.shape, result.meta["argmax"], g)
    return {"grad.input": like_input(case, mag)}


def _lp_args(case: Case) -> tuple[float, tuple[int, ...], tuple[int, ...], bool]:
    g = sliding(case)
    return float(case.params["norm_type"]), g.kernel, g.stride, g.ceil_mode


def lp_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """LPPool's first-order error analysis (``reference.pooling.lp_pool_error``), in units of u."""
    x = batched_input(case)
    p, kernel, stride, ceil_mode = _lp_args(case)
    g = batched_like(case, case.cotangents["output"]) if "output" in case.cotangents else None
    fmt = DTYPES[case.dtype]
    out, grad = ref.lp_pool_error(x, g, p, kernel, stride, ceil_mode, fmt.min_subnormal / fmt.unit_roundoff)
    errors = {"output": like_input(case, out)}
    if grad is not None:
        errors["grad.input"] = like_input(case, grad)
    return errors


def lp_length(case: Case, tensor: str) -> int:
    return overlap(case, tensor) if tensor.startswith("grad.") else window_numel(case, tensor)


SELECTION_TOLERANCE = {
    # Max selects: the output is an input value, bit-exact in every tier.
    "output": Tolerance(magnitude="ref", exact="always"),
    # The gradient sums the cotangents of the windows that selected an element (K = max overlap):
    # bit-exact on integer cotangents, float model otherwise.
    "grad.input": Tolerance(reduction=overlap, magnitude=selection_grad_magnitude, exact="bitwise"),
}
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
# The root of a window sum of powers, and its backward, by their own error analysis.
LP_TOLERANCE = analysed_tolerance(lp_errors, lp_length)


# ---------------------------------------------------------------------------------------------
# Fold / Unfold
# ---------------------------------------------------------------------------------------------


def fold_overlap(case: Case, tensor: str) -> int:
    """K of Fold's output (and of Unfold's input gradient): the most (block, tap) pairs reading one
    image position."""
    return fold_ref.max_overlap(fold_image_size(case), fold_geometry(case))


# A sum of at most K copies: bit-exact in the exact tier, the float model otherwise.
FOLD_SUM = Tolerance(reduction=fold_overlap, magnitude="abs", exact="bitwise")
# A copy: bit for bit in every tier (the sign of zero by ``copy_comparator``).
COPY = Tolerance(magnitude="ref", exact="always")


# ---------------------------------------------------------------------------------------------
# Predicates of known torch discrepancies (conformance/known/convolution.toml, pooling.toml)
# ---------------------------------------------------------------------------------------------


def has_empty_window(case: Case) -> bool:
    """Some max-pooling window has no tap inside the input (dilation > 1 with padding)."""
    if pool_kind(case) != "max":
        return False
    taps = case_taps(case, batched_input(case).shape[2:])
    return any(not t.valid.any(axis=-1).all() for t in taps)


# Channels per vector of torch's channels-last max-pooling loop (measured: 256-bit vectors); the
# channels past the last full vector run in its scalar remainder.
CHANNELS_LAST_VECTOR = {"float64": 4, "float32": 8, "float16": 16, "bfloat16": 16}


def _torch_memory_format_channels_last(case: Case, name: str = "input") -> bool:
    """torch takes the channels-last kernel: the strides are channels-last-like and not also
    contiguous (a single channel's channels-last strides are contiguous ones)."""
    x = case.inputs[name]
    strides = S.torch_strides(tuple(x.shape), case.layout(name))
    return S.channels_last_like(tuple(x.shape), strides) and not S.is_torch_contiguous(tuple(x.shape), strides)


def maxpool3d_channels_last_neginf_window(case: Case) -> bool:
    """MaxPool3d on a channels_last_3d input (torch's channels-last kernel), where a window whose
    elements are all -inf has its first tap at depth > 0 in a channel of the vector loop's scalar
    remainder (torch's index then lacks the depth offset, and the gradient goes there), and the
    wrong index shows: the indices are returned, or that window's cotangent is not 0."""
    if pool_kind(case) != "max" or spatial_dims(case) != 3 or case.inputs["input"].ndim != 5:
        return False
    if not _torch_memory_format_channels_last(case):
        return False
    x = case.inputs["input"]
    g = sliding(case)
    with np.errstate(all="ignore"):
        out, _ = ref.max_pool(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
    taps = case_taps(case, x.shape[2:])
    # a window with taps inside the input (an empty one is has_empty_window's) ...
    nonempty = np.ones((), dtype=bool)
    for d, t in enumerate(taps):
        shape = [1] * 5
        shape[2 + d] = t.out
        nonempty = nonempty & t.valid[0].any(axis=-1).reshape(shape)
    # ... whose first tap inside the input has depth > 0
    depth = taps[0]
    first = np.take_along_axis(depth.index[0], depth.valid[0].argmax(axis=-1)[:, None], axis=-1)[:, 0]
    starts_deep = (first > 0)[None, None, :, None, None] & nonempty
    channels = x.shape[1]
    in_remainder = np.arange(channels) >= channels - channels % CHANNELS_LAST_VECTOR[case.dtype]
    remainder = in_remainder[None, :, None, None, None]
    wrong = (out == -np.inf) & starts_deep & remainder
    if case.params.get("return_indices"):
        return bool(wrong.any())
    cotangent = case.cotangents.get("output")
    return cotangent is not None and bool((wrong & (cotangent != 0)).any())


def maxpool3d_unbatched_channels_last_strides(case: Case) -> bool:
    """max_pool3d on an unbatched (C, D, H, W) input whose strides are channels-last-like as a 4-d
    tensor: torch's 4-d memory-format check rejects it ('Unsupported memory format'). MaxPool3d,
    and LPPool3d with norm_type ±inf (F.lp_pool3d is max_pool3d of ±|x| then, and |x| keeps the
    strides)."""
    kind = pool_kind(case)
    infinite_lp = kind == "lp" and math.isinf(float(case.params["norm_type"]))
    if not (kind == "max" or infinite_lp) or spatial_dims(case) != 3 or case.inputs["input"].ndim != 4:
        return False
    x = case.inputs["input"]
    return S.channels_last_like(tuple(x.shape), S.torch_strides(tuple(x.shape), case.layout("input")))


def avgpool3d_input_smaller_than_kernel(case: Case) -> bool:
    """AvgPool3d rejects an input smaller than the kernel along some dim even when the padding
    makes the output valid (AvgPool1d/2d accept it)."""
    if pool_kind(case) != "avg" or spatial_dims(case) != 3:
        return False
    kernel = per_dim_param(case.params["kernel_size"], 3)
    return any(s < k for s, k in zip(case.inputs["input"].shape[-3:], kernel))


def fractional3d_windows_fit_exactly(case: Case) -> bool:
    """FractionalMaxPool3d with out + k - 1 == in along some dim (windows stepping by one from 0 to
    the end): torch's 3-d check demands out + k - 1 < in there (the 2-d one, out + k - 1 <= in)."""
    if pool_kind(case) != "fractional" or spatial_dims(case) != 3:
        return False
    x = batched_input(case)
    kernel = per_dim_param(case.params["kernel_size"], 3)
    return any(o + k - 1 == n for o, k, n in zip(fractional_output(case, x), kernel, x.shape[2:]))


def fractional_starts_differ_in_float32(case: Case) -> bool:
    """FractionalMaxPool whose window starts, evaluated in float32, differ from those in the case's
    dtype (CUDA evaluates the interval formula in float32 for bfloat16 inputs, the CPU in bfloat16)."""
    if pool_kind(case) != "fractional":
        return False
    x = batched_input(case)
    spatial = x.shape[2:]
    kernel = per_dim_param(case.params["kernel_size"], len(spatial))
    size, samples = fractional_output(case, x), fractional_samples(case)
    own = ref.fractional_window_taps(spatial, kernel, size, samples, round_fn(case))
    single = ref.fractional_window_taps(spatial, kernel, size, samples, DTYPES["float32"].round)
    return any(not np.array_equal(a.index, b.index) for a, b in zip(own, single))


def conv_transpose_unchecked_geometry(case: Case) -> bool:
    """An invalid ConvTranspose case that breaks only a check oneDNN's path skips: a dilation of 0,
    or a computed output size of exactly 0 (a negative one is still rejected)."""
    if pool_kind(case) != "transposed" or not case.invalid:
        return False
    p, nd = case.params, spatial_dims(case)
    values = {k: per_dim_param(p[k], nd) for k in ("kernel_size", "stride", "padding", "dilation", "output_padding")}
    if any(d == 0 for d in values["dilation"]):
        return True
    spatial = case.inputs["input"].shape[-nd:]
    low = conv_ref.transposed_min_size(spatial, values["kernel_size"], values["stride"], values["padding"],
                                       values["dilation"])
    sizes = [lo + o for lo, o in zip(low, values["output_padding"])]
    return "output_size" not in case.forward_kwargs and min(sizes) == 0


# ---------------------------------------------------------------------------------------------
# Comparators
# ---------------------------------------------------------------------------------------------


def _fail(name: str, shape: Sequence[int], message: str) -> Comparison:
    return Comparison(tensor=name, ok=False, shape=list(shape), size=int(np.prod(shape)), message=message,
                      symptoms=["shape"])


def _mark_wrong(cmp: Comparison, wrong: np.ndarray, expected: np.ndarray, got: np.ndarray, message: str,
                symptom: str, err: np.ndarray | float) -> Comparison:
    """Record the elements ``wrong`` of a comparison judged by rule (not by a bound): the first
    ``WORST_SHOWN`` of them with their error ``err`` (per element, or one value), utilisation inf."""
    bad = np.argwhere(wrong)[:WORST_SHOWN]
    errors = np.broadcast_to(np.asarray(err, dtype=np.float64), wrong.shape)
    kind = int if expected.dtype.kind in "iu" else float
    cmp.ok, cmp.mismatches, cmp.symptoms = False, int(wrong.sum()), [symptom]
    cmp.worst_index = [int(i) for i in bad[0]]
    cmp.worst = [{"index": [int(i) for i in ix], "ref": kind(expected[tuple(ix)]), "got": kind(got[tuple(ix)]),
                  "err": float(errors[tuple(ix)]), "bound": 0.0} for ix in bad]
    cmp.utilisation = float("inf")
    cmp.message = f"{cmp.mismatches} of {cmp.size} {message}"
    return cmp


def _index_check(case: Case, result: Result, got_idx: np.ndarray) -> np.ndarray:
    """Per output element: is the backend's index an arg-max of its window? (batched shape)"""
    x = batched_input(case)
    n, c = x.shape[:2]
    planes, plane = n * c, int(np.prod(x.shape[2:]))
    taps = case_taps(case, x.shape[2:])
    flat, valid = ref.window_positions(x.shape[2:], taps)
    out_shape = flat.shape[1:1 + len(taps)]
    flat = np.broadcast_to(flat, (planes, *flat.shape[1:])).reshape(planes, *out_shape, -1)
    valid = np.broadcast_to(valid, (planes, *valid.shape[1:])).reshape(planes, *out_shape, -1)
    gi = batched_like(case, got_idx).reshape(planes, *out_shape).astype(np.int64)
    in_window = ((flat == gi[..., None]) & valid).any(axis=-1)
    safe = np.clip(gi, 0, max(plane - 1, 0)).reshape(planes, -1)
    picked = np.take_along_axis(x.reshape(planes, -1), safe, axis=1).reshape(gi.shape)
    best = batched_like(case, result.outputs["output"]).reshape(gi.shape)
    same = (picked == best) | (np.isnan(picked) & np.isnan(best))
    empty = ~valid.any(axis=-1)
    outside = (gi < 0) | (gi >= plane)
    return np.where(empty, outside, in_window & same).reshape(n, c, *out_shape)


def indices_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Any arg-max of the window is accepted (first, last or any tied position; any NaN)."""
    expected = result.outputs[name]
    value = got.outputs.get(name)
    if value is None:
        return _fail(name, expected.shape, "missing from the backend result")
    value = np.asarray(value)
    if value.shape != expected.shape:
        return _fail(name, expected.shape, f"shape {list(value.shape)} != expected {list(expected.shape)}")
    dtype = got.dtypes.get(name)
    if dtype is not None and dtype != "int64":
        return _fail(name, expected.shape, f"dtype {dtype} != expected int64")
    ok = like_input(case, _index_check(case, result, value))
    cmp = Comparison(tensor=name, ok=bool(ok.all()), shape=list(expected.shape), size=int(expected.size),
                     exact_elements=int(expected.size))
    if not cmp.ok:
        _mark_wrong(cmp, ~ok, expected, value, "indices do not name a maximum of their window (any tied position "
                    "is accepted)", "index", np.abs(expected.astype(np.float64) - value.astype(np.float64)))
        cmp.max_abs_err = max(w["err"] for w in cmp.worst)
    return cmp


def selection_grad_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """With indices from the backend (all of them arg-maxes), the gradient must be the scatter of
    the output gradient to exactly those positions; otherwise to the reference's arg-max."""
    expected = result.grads["input"]
    x = batched_input(case)
    g = batched_like(case, case.cotangents["output"])
    idx = result.meta["argmax"]
    got_idx = got.outputs.get("indices")
    if (got_idx is not None and "indices" in result.outputs
            and np.shape(got_idx) == result.outputs["indices"].shape):
        check = _index_check(case, result, np.asarray(got_idx))
        if check.all():
            gi = batched_like(case, np.asarray(got_idx)).astype(np.int64)
            empty = ~_window_nonempty(case)
            idx = np.where(empty, -1, gi)
            expected = like_input(case, ref.scatter_by_indices(x.shape, idx, g))
    absref = like_input(case, ref.scatter_by_indices(x.shape, idx, np.abs(g)))
    return compare_tensor(spec, case, name, expected, got.grads.get("input"), got.dtypes.get(name), absref)


def _window_nonempty(case: Case) -> np.ndarray:
    x = batched_input(case)
    taps = case_taps(case, x.shape[2:])
    _, valid = ref.window_positions(x.shape[2:], taps)
    nonempty = valid.reshape(*valid.shape[:1 + len(taps)], -1).any(axis=-1)
    n, c = x.shape[:2]
    return np.broadcast_to(nonempty, (n * c, *nonempty.shape[1:])).reshape(n, c, *nonempty.shape[1:])


def unpool_output_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Each position named by some index holds one of the values sent there; others hold 0."""
    expected = result.outputs[name]
    x = batched_input(case)
    idx = batched_input(case, "indices")
    n, c = x.shape[:2]
    flat_idx = idx.reshape(n * c, -1)
    duplicated = any(len(np.unique(row)) < len(row) for row in flat_idx)
    value = got.outputs.get(name)
    if not duplicated or value is None or np.shape(value) != expected.shape:
        absref = np.abs(expected)
        return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)
    dtype = got.dtypes.get(name)
    if dtype is not None and dtype != case.dtype:
        return _fail(name, expected.shape, f"dtype {dtype} != expected {case.dtype}")
    y = batched_like(case, np.asarray(value, dtype=np.float64)).reshape(n * c, -1)
    plane = y.shape[1]
    written = np.take_along_axis(y, flat_idx, axis=1)
    sent = x.reshape(n * c, -1)
    match = (written == sent) | (np.isnan(written) & np.isnan(sent))
    positions = (flat_idx + (np.arange(n * c) * plane)[:, None]).ravel()
    hits = np.bincount(positions, weights=match.ravel().astype(np.float64), minlength=y.size) > 0
    named = np.bincount(positions, minlength=y.size) > 0
    ok = np.where(named, hits, y.ravel() == 0).reshape(y.shape)
    ok = like_input(case, ok.reshape((n, c) + tuple(expected.shape[-spatial_dims(case):])))
    cmp = Comparison(tensor=name, ok=bool(ok.all()), shape=list(expected.shape), size=int(expected.size),
                     exact_elements=int(expected.size))
    if not cmp.ok:
        _mark_wrong(cmp, ~ok, expected, np.asarray(value), "positions hold a value no index sent there (duplicate "
                    "indices: any of the values sent is accepted)", "value", np.inf)
    return cmp


def copy_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """A copy, bit for bit: the values within the (zero) bound, and every zero of the sign the
    reference's has (-0 copied as -0, padding +0)."""
    tensors = result.tensors()
    expected = tensors[name]
    value = got.tensors().get(name)
    cmp = compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), np.abs(expected))
    if not cmp.ok:
        return cmp
    got_arr = np.asarray(value, dtype=np.float64)
    wrong = (expected == 0) & (np.signbit(expected) != np.signbit(got_arr))
    if wrong.any():
        _mark_wrong(cmp, wrong, expected, got_arr, "zeros have the wrong sign (a copy keeps the sign of zero)",
                    "signed-zero", 0.0)
    return cmp


SELECTION_COMPARATORS = {"indices": indices_comparator, "grad.input": selection_grad_comparator}


# ---------------------------------------------------------------------------------------------
# Smoothness (for the finite-difference check of the reference VJPs)
# ---------------------------------------------------------------------------------------------


def no_ties(case: Case) -> bool:
    """Finite values, pairwise distinct within each plane."""
    x = batched_input(case)
    planes = x.reshape(x.shape[0] * x.shape[1], -1)
    if not np.isfinite(planes).all():
        return False
    srt = np.sort(planes, axis=1)
    return bool((np.diff(srt, axis=1) > 0).all())


def unpool_smooth(case: Case) -> bool:
    """Without duplicate indices unpooling is linear; with them the forward keeps one value per
    position while torch's gradient gathers for every entry (not the forward's derivative)."""
    idx = batched_input(case, "indices")
    rows = idx.reshape(idx.shape[0] * idx.shape[1], -1)
    return all(len(np.unique(r)) == len(r) for r in rows)


def lp_smooth(case: Case) -> bool:
    x = batched_input(case)
    p, kernel, stride, ceil_mode = _lp_args(case)
    if not np.isfinite(x).all() or (x == 0).any():
        return False
    if np.isinf(p):
        mags = np.sort(np.abs(x).reshape(x.shape[0] * x.shape[1], -1), axis=1)
        return bool((np.diff(mags, axis=1) > 0).all())
    with np.errstate(all="ignore"):
        v, _ = ref.lp_pool_sums(x, p, kernel, stride, ceil_mode)
    return bool(np.isfinite(v).all() and (v > 0).all())


def lp_second_order_error(case: Case, v: dict[str, np.ndarray], g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bound on the rounding of LPPool's second-order terms (finite p ≠ 1, windows with s > 0: the
    vjp2 domain ``lp_smooth``), which cancel where the p-norm is linear in every direction (a
    1-element window, kernel_size 1: y = (x^p)^(1/p) = |x|, whose second derivative is 0 although
    torch differentiates x^p and s^(1/p) and rounds both terms), so that no difference sees them.

    With s_o = c_o·Σ_{k∈o} x_k^p (c_o = K/count_o) and y_o = s_o^(1/p), H_g·w has per element i
    the terms (p-1)·Σ_{o∋i} g_o·(c_o·x_i^(p-2)·s_o^(1/p-1)·w_i - c_o²·x_i^(p-1)·s_o^(1/p-2)·
    Σ_{k∈o} x_k^(p-1)·w_k), of scale T_i (the same with absolute values; |x_i|^(p-2)·|x_i|^(1-p)·...
    = 1/|x_i| each for a 1-element window). Each term is formed from the rounded powers of s_o,
    whose relative error e_o = ((K + 2)·u·Σ|x|^p + K·tiny)/|s_o| (K terms summed, the scaling, the
    power; each term may fall among the subnormals) the
    powers s^(1/p-1), s^(1/p-2) carry with factors |1/p - 1|, |1/p - 2|; the powers of x_i, the
    products and the sum over windows add at most 10 roundings: T·((|1/p-1| + |1/p-2| + 1)·e + 10u).
    A factor among the subnormals adds tiny/|factor| to the relative error (s^(1/p-2) = |x|^(1-2p)
    is subnormal in float16 for x = 7.6, p = 4). Where one of those powers (or (p·|x|^(p-1))², which
    torch's double backward forms) exceeds the dtype's range, or e_o >= 1/2 (s_o may round to 0 or be
    known to no digit), the bound is infinite (see below)."""
    p, kernel, stride, ceil_mode = _lp_args(case)
    cot, w = g.get("output"), v.get("input")
    if cot is None or w is None or not math.isfinite(p) or p == 1.0:
        return {}
    x = batched_input(case)
    a = np.abs(x)
    w = np.abs(batched_like(case, np.asarray(w, dtype=np.float64)))
    gg = np.abs(batched_like(case, np.asarray(cot, dtype=np.float64)))
    u = DTYPES[case.dtype].unit_roundoff
    k = int(np.prod(kernel))
    with np.errstate(all="ignore"):
        taps, scale, s_abs = ref._lp_parts(a, p, kernel, stride, ceil_mode)
        _, _, s = ref._lp_parts(x, p, kernel, stride, ceil_mode)
        live = np.isfinite(s) & (s != 0) & np.isfinite(s_abs) & (s_abs > 0)
        # (each x^p rounds into the dtype's subnormals too: k·tiny absolutely)
        e = ((k + 2) * u * s_abs + k * DTYPES[case.dtype].min_subnormal) / np.abs(s)
        tiny = DTYPES[case.dtype].min_subnormal
        ws1, ws2 = scale * s_abs ** (1 / p - 1), scale ** 2 * s_abs ** (1 / p - 2)
        d = abs(p) * a ** (p - 1)
        # A factor among the subnormals is known only to tiny absolutely: tiny/|f| relatively,
        # for the window's powers (per window) and the element's (|x|^(p-1), |x|^(p-2), the
        # derivative p·|x|^(p-1) and its square, per element).
        rel = np.where(live, (abs(1 / p - 1) + abs(1 / p - 2) + 1) * e + 10 * u + tiny / ws1 + tiny / ws2, 0.0)
        rel_x = tiny / a ** (p - 1) + tiny / a ** (p - 2) + tiny / d + tiny / d ** 2
        inner = ref.window_sum(a ** (p - 1) * w, taps)
        first = np.where(live, gg * ws1 * rel, 0.0)
        second = np.where(live, gg * ws2 * inner * rel, 0.0)
        first_x = np.where(live, gg * ws1, 0.0)
        second_x = np.where(live, gg * ws2 * inner, 0.0)
        terms = abs(p - 1) * (ref.window_sum_vjp(x.shape, taps, first) * a ** (p - 2) * w
                              + ref.window_sum_vjp(x.shape, taps, second) * a ** (p - 1)
                              + rel_x * (ref.window_sum_vjp(x.shape, taps, first_x) * a ** (p - 2) * w
                                         + ref.window_sum_vjp(x.shape, taps, second_x) * a ** (p - 1)))
        terms = np.where(np.isfinite(terms), terms, 0.0)
        # The powers torch forms on the way (c·s^(1/p-1), c²·s^(1/p-2) per window; |x|^(p-1), |x|^(p-2))
        # can exceed the dtype's range where the result does not (float16: a 1-element window of
        # x = 0.1 with p = 3 has s^(1/p-2) = |x|^-5 = 1e5): an intermediate overflow, after which
        # the element is ±inf or NaN. There the bound is infinite (the element is not judged).
        top = DTYPES[case.dtype].max_value
        window_big = np.where(live, np.maximum(scale * s_abs ** (1 / p - 1), scale ** 2 * s_abs ** (1 / p - 2)), 0.0)
        # (a window whose s is not known to within a factor of 2 in the dtype may be rounded to 0)
        reach = ref.window_sum_vjp(x.shape, taps, ((window_big > top) | (e >= 0.5)).astype(np.float64)) > 0
        big = reach | (np.maximum(np.maximum(a ** (p - 1), a ** (p - 2)), d ** 2) > top)
        terms = np.where(big, np.inf, terms)
    return {"d2.input": like_input(case, terms)}
