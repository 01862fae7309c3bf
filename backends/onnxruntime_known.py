"""Value predicates of the onnxruntime backend's known entries (``conformance/known/onnxruntime*.toml``).

NumPy only (``backends`` imports nothing of ``conformance``): each takes the ``Case``, and those reading
the declaration's spatial dimensionality its LayerSpec as ``spec`` (``spec.dims``; never parsed from a name).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.base import Case
from backends.export_strides import (
    elementwise_perm_divides_by_zero,
    example_strides,
    inplace_write_export_failure,
)
from backends.torch_compile import runs_dynamic_graph


def input_has_nan(case: Case) -> bool:
    """The input holds a NaN (ONNX Runtime's max pooling may drop it: which windows do depends on the
    kernel path, see the entry)."""
    x = case.inputs.get("input")
    return x is not None and np.asarray(x).dtype.kind == "f" and bool(np.isnan(x).any())


# -- found by the catalogue triage (1/3) ------------------------------------------------------------
def _per_dim(value: Any, nd: int) -> tuple[Any, ...]:
    """A per-dimension parameter as ``nd`` entries (an int, or None, repeated)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * nd


def adaptive_pool_uneven(case: Case, spec: Any) -> bool:
    """Adaptive pooling where some spatial size is not a multiple of its output size (torchlib then
    has no ONNX function for aten.adaptive_max_pool*d: its windows are not one fixed MaxPool)."""
    nd = spec.dims
    spatial = np.shape(case.inputs["input"])[-nd:]
    out = _per_dim(case.params["output_size"], nd)
    return any(o is not None and (o == 0 or s % o != 0) for s, o in zip(spatial, out))


_FINITE_MAX = {"float64": 1.7976931348623157e308, "float32": 3.4028234663852886e38, "float16": 65504.0,
               "bfloat16": 3.3895313892515355e38}


def pad_value_out_of_range(case) -> bool:
    """ConstantPad's value is beyond the dtype's largest finite value (torch's fill check raises)."""
    v = float(case.params.get("value", 0.0))
    return np.isfinite(v) and abs(v) > _FINITE_MAX[case.dtype]


def pad_crops_beyond_dim(case: Case, spec: Any) -> bool:
    """Negative padding removing more elements than the dimension holds (torch's narrow raises), while every
    padded size stays non-negative (ONNX Runtime's Pad then runs; a negative size it refuses too)."""
    x = np.shape(case.inputs["input"])
    pad = _per_dim(case.params["padding"], 2 * spec.dims)
    crops = False
    for i in range(len(pad) // 2):
        size = x[len(x) - 1 - i]
        left, right = pad[2 * i], pad[2 * i + 1]
        if size + left + right < 0:
            return False
        crops = crops or size + min(left, 0) < 0 or size + min(left, 0) + min(right, 0) < 0
    return crops


def output_padding_not_below_stride(case: Case, spec: Any) -> bool:
    """ConvTranspose with output_padding >= stride in some dim (valid in torch when below the dilation)."""
    nd = spec.dims
    op = _per_dim(case.params.get("output_padding", 0), nd)
    st = _per_dim(case.params.get("stride", 1), nd)
    return any(o >= s for o, s in zip(op, st))


def loss_reduction(params: dict[str, Any]) -> str:
    """A loss case's reduction ('none', 'mean', 'sum', 'batchmean'): ``reduction``, unless the deprecated
    ``size_average``/``reduce`` is given (torch's legacy rule: reduce=False is 'none', else
    size_average=False is 'sum', else 'mean')."""
    size_average, reduce = params.get("size_average"), params.get("reduce")
    if size_average is None and reduce is None:
        return params.get("reduction", "mean")
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def reduce_loss(loss: np.ndarray, reduction: str) -> np.ndarray:
    """``loss`` reduced as torch reduces it: 'mean' (NaN for an empty loss), 'sum', else unchanged."""
    if reduction == "mean":
        return np.asarray(loss.mean() if loss.size else np.nan)
    if reduction == "sum":
        return np.asarray(loss.sum())
    return loss


def reduction_is_sum(case: Case) -> bool:
    """The loss's reduction is 'sum', given as reduction or by the deprecated size_average/reduce."""
    return loss_reduction(case.params) == "sum"


def cosine_embedding_without_eps_model(case, reference, got) -> dict:
    """CosineEmbeddingLoss as the exported graph computes it: the 1e-12 added to the squared norms dropped
    (cos = Σx1·x2 / √(Σx1²·Σx2²)), in float64; reduced as the case says."""
    x1 = np.asarray(case.inputs["input1"], dtype=np.float64)
    x2 = np.asarray(case.inputs["input2"], dtype=np.float64)
    y = np.asarray(case.inputs["target"], dtype=np.float64)
    margin = float(case.params.get("margin", 0.0))
    with np.errstate(all="ignore"):
        cos = np.sum(x1 * x2, axis=-1) / np.sqrt(np.sum(x1 * x1, axis=-1) * np.sum(x2 * x2, axis=-1))
        loss = np.where(y == 1, 1.0 - cos, 0.0) + np.where(y == -1, np.maximum(cos - margin, 0.0), 0.0)
    return {"output": np.asarray(reduce_loss(loss, loss_reduction(case.params)), dtype=np.float64)}


def dropout_scale_rounded_in_float32(case) -> bool:
    """A training-mode dropout whose scale 1/(1 - p) changes when p or 1 - p is rounded to float32 (the
    exported graph holds them as float32 constants): 0 < p < 1 and p or 1 - p not a float32."""
    p = float(case.params.get("p", 0.5))
    return bool(case.train) and 0.0 < p < 1.0 and (float(np.float32(1.0 - p)) != 1.0 - p or float(np.float32(p)) != p)


# -- found by the catalogue triage (2/3) ------------------------------------------------------------
def _pads(padding, dims):
    """torch's padding argument as [(before, after)] per padded dim, last dim first."""
    if isinstance(padding, (int, np.integer)):
        return [(int(padding), int(padding))] * dims
    padding = [int(p) for p in padding]
    return [(padding[2 * i], padding[2 * i + 1]) for i in range(len(padding) // 2)]


def _pad_refused(case: Case, dims: int, reflect: bool) -> bool:
    x = case.inputs.get("input")
    if x is None or case.invalid:
        return False
    shape = np.shape(x)
    if 0 in shape:  # an empty input: ONNX Runtime's Pad returns the empty result
        return False
    for i, (before, after) in enumerate(_pads(case.params.get("padding"), dims)):
        if i >= len(shape):
            break
        extent = shape[-1 - i] + min(before, 0) + min(after, 0)  # after ONNX Runtime's slicing
        if extent <= 0:
            return True
        if reflect and max(before, after) >= extent:
            return True
    return False


def reflection_pad_refused(case: Case, spec: Any) -> bool:
    """ONNX Runtime's Pad(mode=reflect) with negative pads crops first, then reflects within what is
    left: it refuses a non-empty input when a padded dim has nothing left after the crop, or a
    reflected pad not smaller than what is left (torch reflects within the whole input)."""
    return _pad_refused(case, spec.dims, True)


def replication_pad_refused(case: Case, spec: Any) -> bool:
    """ONNX Runtime's Pad(mode=edge) with negative pads crops first: it refuses a non-empty input when
    a padded dim has nothing left after the crop (torch replicates the edge of the whole input)."""
    return _pad_refused(case, spec.dims, False)


def strided_broadcast_dynamic(case) -> bool:
    """A dynamic-shape export of two inputs that broadcast (a size-1 dim against a dim >= 2, the shapes
    aligned from the right), one of them stored non-contiguously (strided or permuted layout): where
    torch.export's shape guards may assert on the stride symbols ("AssertionError: True != False").
    A superset: which stride patterns fail is not characterised (see the entry)."""
    if case.invalid or not runs_dynamic_graph(case):
        return False
    names = list(case.inputs)
    shapes = {n: np.shape(case.inputs[n]) for n in names}
    if not any(case.layout(n).kind in ("strided", "permuted") for n in names):
        return False
    for a in names:
        for b in names:
            if a == b:
                continue
            sa, sb = shapes[a], shapes[b]
            if any(sa[-k] == 1 and sb[-k] >= 2 for k in range(1, min(len(sa), len(sb)) + 1)):
                return True
    return False


def _pairwise_params(case):
    p = case.params.get("p", 2.0)
    p = float(p) if not isinstance(p, str) else float(p)
    return p, float(case.params.get("eps", 1e-6)), bool(case.params.get("keepdim", False))


_FORMATS = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def ort_pairwise(case):
    """What the dynamo exporter's PairwiseDistance graph computes on ONNX Runtime, op by op rounded to
    the case's format: d = (x1 - x2) + eps with eps a float32 constant (float16 in a float16 graph),
    then the norm without scaling: p = 0 the count of non-zeros, 1 ReduceL1, 2 ReduceL2, ±inf
    ReduceMax/ReduceMin of |d|, else Pow(ReduceSum(Pow(|d|, float32 p)), 1/p) with 1/p a float32
    constant (float16 in a float16 graph); a row of one element too (torch returns |d| there)."""
    fmt = _FORMATS.get(case.dtype)
    if fmt is None:
        return None
    small = np.float16 if fmt is np.float16 else np.float32  # the format of the graph's scalar constants

    def rd(v):
        return np.asarray(v, dtype=np.float64).astype(fmt).astype(np.float64)

    p, eps, keepdim = _pairwise_params(case)
    x1 = np.asarray(case.inputs["x1"], dtype=np.float64)
    x2 = np.asarray(case.inputs["x2"], dtype=np.float64)
    with np.errstate(all="ignore"):
        d = rd(rd(x1 - x2) + float(small(eps)))
        a = np.abs(d)
        if d.shape[-1] == 0:
            return None
        if p == 0:
            n = np.sum(d != 0, axis=-1, keepdims=True).astype(np.float64)
        elif p == 1:
            n = rd(np.sum(a, axis=-1, keepdims=True))
        elif p == 2:
            n = rd(np.sqrt(np.sum(d * d, axis=-1, keepdims=True)))
        elif p == np.inf:
            n = np.max(a, axis=-1, keepdims=True)
        elif p == -np.inf:
            n = np.min(a, axis=-1, keepdims=True)
        else:
            powers = rd(np.power(a, float(np.float32(p))))
            n = rd(np.power(rd(np.sum(powers, axis=-1, keepdims=True)), float(small(1.0 / p))))
    return n if keepdim else n[..., 0]


def _exact_pairwise(case):
    p, eps, keepdim = _pairwise_params(case)
    x1 = np.asarray(case.inputs["x1"], dtype=np.float64)
    x2 = np.asarray(case.inputs["x2"], dtype=np.float64)
    with np.errstate(all="ignore"):
        d = (x1 - x2) + eps
        a = np.abs(d)
        if d.shape[-1] == 0:
            return None
        if p == 0:
            n = np.sum(d != 0, axis=-1, keepdims=True).astype(np.float64)
        elif p == np.inf:
            n = np.max(a, axis=-1, keepdims=True)
        elif p == -np.inf:
            n = np.min(a, axis=-1, keepdims=True)
        elif p > 0:
            m = np.max(a, axis=-1, keepdims=True)
            s = np.where(m > 0, m, 1.0)
            n = np.where(m > 0, s * np.power(np.sum(np.power(a / s, p), axis=-1, keepdims=True), 1.0 / p), 0.0)
        else:
            n = np.power(np.sum(np.power(a, p), axis=-1, keepdims=True), 1.0 / p)
    return n if keepdim else n[..., 0]


def pairwise_distance_ort_differs(case) -> bool:
    """PairwiseDistance where the exported graph's result (``ort_pairwise``: float32 eps and 1/p,
    unscaled powers, a one-element row too) differs from the exact distance by more than 8 units of
    the format's rounding, or in its non-finite pattern (a superset of where the error exceeds the
    bound)."""
    if case.invalid or case.dtype not in _FORMATS:
        return False
    unit = float(np.finfo(_FORMATS[case.dtype]).eps) / 2
    got, exact = ort_pairwise(case), _exact_pairwise(case)
    if got is None or exact is None or np.shape(got) != np.shape(exact):
        return False
    with np.errstate(all="ignore"):
        finite = np.isfinite(got) & np.isfinite(exact)
        if np.any(np.isfinite(got) != np.isfinite(exact)):
            return True
        err = np.abs(got - exact)
        return bool(np.any(finite & (err > 8 * unit * np.abs(exact))))


def pairwise_distance_ort_model(case, reference, got):
    """The output the exported graph computes (``ort_pairwise``)."""
    out = ort_pairwise(case)
    return {} if out is None else {"output": out}


def pairwise_float16_broadcast_dynamic(case) -> bool:
    """float16, a dynamic-shape graph, x1 and x2 of the same rank and x2 of size 1 in a dim where x1's
    size is >= 2: the exported program gives both inputs x1's size symbol, so ONNX Runtime's float16
    buffer planner refuses the (valid) broadcast."""
    if case.invalid or case.dtype != "float16" or not runs_dynamic_graph(case):
        return False
    s1, s2 = np.shape(case.inputs["x1"]), np.shape(case.inputs["x2"])
    return len(s1) == len(s2) and any(b == 1 and a >= 2 for a, b in zip(s1, s2))


def poisson_nll_export_differs(case) -> bool:
    """PoissonNLLLoss where the exported graph differs from torch: log_input=False with |eps| <= 1e-8
    (the default; onnxscript's optimizer rewrites input + eps as input: its x + 0 rule matches
    constants within abs_tol 1e-8), or full=True in float64 (2π is a float32 constant,
    6.2831854820251465, in the Stirling term). float16 only in the first case and where it shows."""
    p = case.params
    if case.invalid or case.dtype == "float16" or case.dtype == "bfloat16":
        return False
    dropped = not p.get("log_input", True) and abs(float(p.get("eps", 1e-8))) <= 1e-8
    return dropped or (bool(p.get("full", False)) and case.dtype == "float64")


def poisson_nll_export_model(case, reference, got):
    """The exported PoissonNLLLoss replayed in float64: exp(x) - t·x (log_input) or x - t·log(x + eps)
    with eps dropped when |eps| <= 1e-8 (else a float32 constant); full: + t·log(t) - t +
    0.5·log(2π·t) where t > 1, 2π a float32 constant."""
    p = case.params
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    t = np.asarray(case.inputs["target"], dtype=np.float64)
    eps = float(p.get("eps", 1e-8))
    eps = 0.0 if abs(eps) <= 1e-8 else float(np.float32(eps))
    with np.errstate(all="ignore"):
        loss = np.exp(x) - t * x if p.get("log_input", True) else x - t * np.log(x + eps)
        if p.get("full", False):
            stirling = t * np.log(t) - t + 0.5 * np.log(float(np.float32(2 * np.pi)) * t)
            loss = loss + np.where(t > 1, stirling, 0.0)
        loss = reduce_loss(loss, loss_reduction(p))
    return {"output": loss}


# -- found by the catalogue triage (3/3) ------------------------------------------------------------
_LOG_MAX = {"float64": math.log(np.finfo(np.float64).max), "float32": math.log(np.finfo(np.float32).max)}


def _compute(dtype: str) -> str:
    """The format the exported graph computes in: float16/bfloat16 are cast to float32 by the
    decomposition (or by ONNX Runtime's cast insertion); float64 stays float64."""
    return "float64" if dtype == "float64" else "float32"


def soft_margin_exp_overflows(case) -> bool:
    """exp(-y·x) overflows the compute format (float32 for float32/float16/bfloat16, float64 for
    float64) for some element: the exported Log(Add(Exp(-y·x), 1)) is inf there."""
    x, y = case.inputs["input"], case.inputs["target"]
    with np.errstate(all="ignore"):
        return bool(np.any(-y * x > _LOG_MAX[_compute(case.dtype)]))


def soft_margin_log1p_cancels(case) -> bool:
    """Some element has exp(-y·x) < 1/4 (-y·x < -1.39): Log(1 + e) of the exported graph then loses
    the low bits of e (log1p is written as Log(Add(1, e)))."""
    x, y = case.inputs["input"], case.inputs["target"]
    with np.errstate(all="ignore"):
        z = -y * x
        return bool(np.any(np.isfinite(z) & (z < -math.log(4.0))))


def softplus_overflows_compute(case) -> bool:
    """torch's softplus-overflow-below-threshold condition: beta·x within the threshold but beyond
    log(max) of the compute format (float32 for float16, float64 for float64)."""
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    beta, threshold = case.params.get("beta", 1.0), case.params.get("threshold", 20.0)
    with np.errstate(all="ignore"):
        t = x * beta
        return bool(np.any((t > _LOG_MAX[_compute(case.dtype)]) & (t <= threshold)))


def _resize_geometry(case):
    """(input spatial sizes, output spatial sizes, scale factors or None) of an interpolate case."""
    p = case.params
    shape = tuple(np.shape(case.inputs["input"]))
    spatial = shape[2:]
    n = len(spatial)
    size, scale = p.get("size"), p.get("scale_factor")
    if size is not None:
        out = tuple(size) if isinstance(size, (list, tuple)) else (size,) * n
        return spatial, tuple(int(o) for o in out), None
    scales = tuple(scale) if isinstance(scale, (list, tuple)) else (scale,) * n
    out = tuple(int(math.floor(i * float(s))) for i, s in zip(spatial, scales))
    return spatial, out, scales


def resize_antialias_differs(case) -> bool:
    """F.interpolate(antialias=True) exported as ONNX Resize(antialias=1), where ONNX Runtime's
    resampling is not torch's: align_corners=True with a dim that changes length, or a scale_factor
    used as given (recompute_scale_factor not True) on a dim whose length times the factor is not
    the output length (ONNX Runtime maps coordinates with out/in, torch with the factor)."""
    p = case.params
    if not p.get("antialias") or p.get("mode") not in ("bilinear", "bicubic"):
        return False
    spatial, out, scales = _resize_geometry(case)
    changed = [i != o for i, o in zip(spatial, out)]
    if not any(changed):
        return False
    if p.get("align_corners"):
        return True
    if scales is not None and not p.get("recompute_scale_factor"):
        return any(c and i * float(s) != o for c, i, s, o in zip(changed, spatial, scales, out))
    return False


def resize_same_size_not_copied(case) -> bool:
    """F.interpolate/Upsample bicubic without antialias and without align_corners, given a scale_factor used
    as given (recompute_scale_factor not True) whose output has exactly the input's spatial sizes
    (e.g. 5 x 1.1 -> 5) and some factor != 1 on a dim longer than 1: torch resamples with 1/factor,
    ONNX Runtime's Resize returns the input unchanged (same output shape: a copy)."""
    p = case.params
    if p.get("antialias") or p.get("align_corners") or p.get("recompute_scale_factor"):
        return False
    if p.get("mode") != "bicubic":  # torch's linear modes copy such a dim too (the copy shortcut)
        return False
    spatial, out, scales = _resize_geometry(case)
    if scales is None or tuple(spatial) != tuple(out):
        return False
    return any(i > 1 and float(s) != 1.0 for i, s in zip(spatial, scales))


def has_empty_channel(case) -> bool:
    """An input of shape (N, 0, ...): no channel (torch's interpolate refuses it)."""
    shape = np.shape(case.inputs["input"])
    return len(shape) >= 3 and shape[1] == 0



def soft_margin_ort_model(case, reference, got):
    """What the exported SoftMarginLoss computes: Log(Add(Exp(-y·x), 1)) element by element in the
    compute format (float32 for float32/float16/bfloat16, float64 for float64), then the reduction
    (its rounding is within the tensor's bound)."""
    fmt = np.float64 if case.dtype == "float64" else np.float32
    x = np.asarray(case.inputs["input"], dtype=fmt)
    y = np.asarray(case.inputs["target"], dtype=fmt)
    with np.errstate(all="ignore"):
        z = (-y * x).astype(fmt)
        loss = np.log(fmt(1) + np.exp(z).astype(fmt)).astype(fmt).astype(np.float64)
        out = reduce_loss(loss, loss_reduction(case.params))
    # ONNX Runtime's vectorised Exp and Log are a few ulps off the correctly rounded values NumPy gives:
    # the prediction is judged at 16 times its own magnitude (seen: up to 8 times the plain bound).
    return {"output": (out, 16.0 * np.abs(out))}


def soft_margin_ort_differs(case) -> bool:
    """Where the exported formula can be told from log1p: some exp(-y·x) < 1/4, or an overflow."""
    return soft_margin_log1p_cancels(case) or soft_margin_exp_overflows(case)


def resize_invalid_accepted(case) -> bool:
    """An interpolate case torch refuses that ONNX Runtime's Resize runs: an input with no channel
    (N, 0, ...), or an output size of 0 (e.g. scale_factor 0.1 on a length of 4)."""
    if has_empty_channel(case):
        return True
    try:
        spatial, out, _ = _resize_geometry(case)
    except Exception:
        return False
    return any(i > 0 for i in spatial) and any(o == 0 for o in out)


# -- found by the verification run of 2026-12-05 (ortver) --------------------------------------------------


def inplace_empty_export_fails(case) -> bool:
    """An in-place activation (inplace=True) of an empty input whose dynamic-shape export from the case's own
    example (example_strides) fails in torch.export or its ONNX translation
    (inplace_write_export_failure)."""
    if not case.params.get("inplace", False) or not runs_dynamic_graph(case):
        return False
    shape = tuple(int(s) for s in np.shape(case.inputs["input"]))
    if 0 not in shape:
        return False
    return inplace_write_export_failure(shape, example_strides(case, "input")) is not None


def _constant_pad_list(case: Case, nd: int) -> list[int]:
    """ConstantPad{1,2,3}d's padding as F.pad's list (last dim first)."""
    pad = case.params.get("padding")
    return [int(pad)] * (2 * nd) if isinstance(pad, (int, np.integer)) else [int(p) for p in pad]


def constant_pad_clone_divides_by_zero(case: Case, spec: Any) -> bool:
    """ConstantPad whose dynamic-shape export fails in torch.export with "integer modulo by zero": every pad
    is <= 0, so aten.constant_pad_nd returns a clone of the (narrowed) input, and laying out that clone
    divides by an empty dim's size (elementwise_perm_divides_by_zero on the example the adapter
    exports from)."""
    if case.invalid or not runs_dynamic_graph(case):
        return False
    pad = _constant_pad_list(case, spec.dims)
    if any(p > 0 for p in pad):
        return False
    shape = tuple(int(s) for s in np.shape(case.inputs["input"]))
    if len(pad) // 2 > len(shape):
        return False
    offsets = [0] * len(shape)
    for k in range(len(pad) // 2):
        offsets[len(shape) - 1 - k] = pad[2 * k] + pad[2 * k + 1]
    if any(s + o < 0 for s, o in zip(shape, offsets)):
        return False
    return elementwise_perm_divides_by_zero(shape, list(example_strides(case, "input")), offsets)


def _area_output(case) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(input spatial sizes, output spatial sizes) of an Upsample(mode='area') case, or None."""
    if case.params.get("mode") != "area":
        return None
    spatial, out, _ = _resize_geometry(case)
    return tuple(int(s) for s in spatial), tuple(int(o) for o in out)


def area_3d_not_global(case) -> bool:
    """Upsample(mode='area') of a 5-d input (adaptive_avg_pool3d) whose output is not 1 x 1 x 1: torch
    decomposes only global pooling (a mean); aten._adaptive_avg_pool3d has no ONNX function."""
    if case.invalid or np.ndim(case.inputs["input"]) != 5:
        return False
    geometry = _area_output(case)
    return geometry is not None and any(o != 1 for o in geometry[1])


def area_global_strided_empty_dynamic(case) -> bool:
    """A dynamic-shape export of Upsample(mode='area') to a 1 x 1 output (global pooling: a mean) of an
    empty 4-d input in the strided layout, whose example (example_strides: the adapter's clone keeps an
    empty tensor's strides) has a last-dim stride other than 0 and 1: the trace keeps an aten.sym_stride
    node, which has no ONNX function."""
    if case.invalid or not runs_dynamic_graph(case) or case.layout("input").kind != "strided":
        return False
    shape = np.shape(case.inputs["input"])
    if len(shape) != 4 or 0 not in shape:
        return False
    geometry = _area_output(case)
    if geometry is None or any(o != 1 for o in geometry[1]):
        return False
    return example_strides(case, "input")[-1] not in (0, 1)


def random_normal_zero_std_exported(case) -> bool:
    """The exported graph draws with ONNX RandomNormalLike at scale 0 (std = 0): normal_, and sparse_ of a
    2-d tensor with no column (no column to zero, so no aten.randperm: the graph is the normal_ alone); not
    where the export fails first: an empty tensor with a dim of 2 or more in a dynamic-shape graph
    (normal_empty_dynamic)."""
    if case.invalid or float(case.params.get("std", 1.0)) != 0.0:
        return False
    shape = np.shape(case.inputs["tensor"])
    if normal_empty_dynamic(case):
        return False
    if case.op == "normal_":
        return True
    return case.op == "sparse_" and len(shape) == 2 and shape[1] == 0


def normal_empty_dynamic(case) -> bool:
    """An in-place normal_ fill (normal_, or sparse_'s) of an empty tensor with a dim of 2 or more, exported with
    dynamic shapes: the example has zero strides (an empty NumPy copy), so torch.export refuses the in-place write
    ("more than one element of the written-to tensor refers to a single memory location"), or, strided, keeps an
    aten.sym_stride node."""
    shape = np.shape(case.inputs["tensor"])
    return 0 in shape and max(shape) >= 2 and runs_dynamic_graph(case)


def area_empty_output(case) -> bool:
    """Upsample(mode='area') of a 3-d or 4-d input with every input length positive and some output length 0
    (size 0, or a factor that floors a length to 0): torch's adaptive pooling returns an empty tensor (it skips
    interpolate's size check), the export's decomposition divides by the output length."""
    if np.ndim(case.inputs["input"]) not in (3, 4):
        return False
    try:
        geometry = _area_output(case)
    except Exception:
        return False
    return geometry is not None and min(geometry[0]) > 0 and 0 in geometry[1]
