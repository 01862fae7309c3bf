"""Pooling layers: max, average, power-average (LP), fractional max, max-unpool and adaptive pooling.

Sixteen declarations: MaxPool1d/2d/3d, MaxUnpool1d/2d/3d, AvgPool1d/2d/3d, FractionalMaxPool2d,
LPPool1d/2d, AdaptiveMaxPool1d/2d, AdaptiveAvgPool1d/2d.

Geometry is drawn per spatial dim (kernel, dilation, padding <= kernel // 2, stride — torch's
default ``None`` or explicit, up to kernel + 2), then a *ceil corner* that fixes the remainder
r = (in + 2p - e) mod s: ``fit`` (r = 0), ``overhang`` (ceil_mode adds a last window that runs
past the padded input and is clipped), ``drop`` (the extra ceil window would start in the right
padding or past it, so torch drops it), ``any``. The input length is derived from the output
length, so every case is valid by construction.

Values of max-type layers come in modes: ``distinct`` (no two equal values in a plane: a random
subset of a grid of representable values, or of the integers in the exact tier), ``negative``
(distinct, all negative: padding or a zero-initialised maximum must never win), ``ties`` (few
distinct values, so windows hold equal maxima) and ``special`` (distinct plus NaN and ±inf). The
last two force ``return_indices=True`` and are checked by rule, not by equality:

- indices: each index must name a position of its window holding the window's maximum (any NaN
  of the window when it holds one); an empty window (no input element) must not name an element;
- grad.input: the scatter of the output gradient to the indices the backend returned.

MaxUnpool with duplicate indices: which of the values sent to one position lands there is
unspecified; the rule checked is that the value written is one of them (positions nobody names
are 0). The gradient is a gather, so it is compared exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout, Result
from conformance import strategies as S
from conformance.compare import WORST_SHOWN, Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Tolerance, TorchMapping, arg, declare, spec_of
from reference import pooling as ref

BUDGET = 2048  # input elements
MAX_VALUE_MODES = ("distinct", "negative", "ties", "special")
TIE_MODES = ("ties", "special")
CEIL_CORNERS = ("fit", "overhang", "drop", "any")
# Max pooling: about one dim in eight gets a window whose taps all fall in the padding.
EMPTY_WINDOW_ODDS = (False,) * 7 + (True,)

# A max-pooling window whose dilated taps all fall in the padding (dilation > 1, small input) is
# valid: its output is -inf and no input element receives its gradient. torch mishandles it (an
# index past the window, a gradient written there — into another element or plane, or out of
# bounds, which can corrupt the heap and abort the process; the runner's worker isolation records
# that as a crash). Switch off to keep such cases out of a run.
ALLOW_EMPTY_WINDOWS = True


# ---------------------------------------------------------------------------------------------
# Parameters as the reference needs them
# ---------------------------------------------------------------------------------------------


def _ndim(case: Case) -> int:
    """Spatial dimensionality, a fact of the declaration."""
    return spec_of(case).dims  # type: ignore[return-value]


def _kind(case: Case) -> str:
    """max | avg | lp | unpool | adaptive-max | adaptive-avg | fractional, a fact of the declaration."""
    return spec_of(case).kind


def _per_dim(value: Any, nd: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),) * nd


def _batched(case: Case, name: str = "input") -> np.ndarray:
    """The input with a batch axis (unbatched inputs have ndim = spatial + 1)."""
    x = case.inputs[name]
    return x[None] if x.ndim == _ndim(case) + 1 else x


def _is_unbatched(case: Case) -> bool:
    return case.inputs["input"].ndim == _ndim(case) + 1


def _like_input(case: Case, arr: np.ndarray) -> np.ndarray:
    """Drop the batch axis again for an unbatched case."""
    return arr[0] if _is_unbatched(case) else arr


def _batched_like(case: Case, arr: np.ndarray) -> np.ndarray:
    return arr[None] if _is_unbatched(case) else arr


@dataclass(frozen=True)
class Sliding:
    """Per-dim sliding-window parameters of a case (torch defaults filled in)."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool


def sliding(case: Case) -> Sliding:
    nd = _ndim(case)
    p = case.params
    kernel = _per_dim(p["kernel_size"], nd)
    stride = _per_dim(p.get("stride"), nd) or kernel
    return Sliding(kernel, stride, _per_dim(p.get("padding", 0), nd), _per_dim(p.get("dilation", 1), nd),
                   bool(p.get("ceil_mode", False)))


def _fractional_output(case: Case, x: np.ndarray) -> tuple[int, int]:
    p = case.params
    has_size, has_ratio = p.get("output_size") is not None, p.get("output_ratio") is not None
    if has_size == has_ratio:
        raise ValueError("FractionalMaxPool2d needs exactly one of output_size and output_ratio")
    if has_size:
        return _per_dim(p["output_size"], 2)  # type: ignore[return-value]
    ratio = p["output_ratio"]
    ratio = tuple(ratio) if isinstance(ratio, (list, tuple)) else (ratio, ratio)
    if not all(0 < r < 1 for r in ratio):
        raise ValueError(f"output_ratio must lie in (0, 1), got {ratio}")
    return int(x.shape[-2] * ratio[0]), int(x.shape[-1] * ratio[1])


def _adaptive_output(case: Case, spatial: Sequence[int]) -> tuple[int, ...]:
    size = case.params["output_size"]
    size = tuple(size) if isinstance(size, (list, tuple)) else (size,) * len(spatial)
    out = tuple(int(s) if o is None else int(o) for o, s in zip(size, spatial))
    if any(o < 0 for o in out):
        raise ValueError(f"output_size must be >= 0, got {size}")
    return out


def _round_fn(case: Case) -> Callable[[np.ndarray], np.ndarray]:
    return DTYPES[case.dtype].round


def case_taps(case: Case, spatial: Sequence[int]) -> list[ref.Taps]:
    """The windows of a max-type case (MaxPool, AdaptiveMaxPool, FractionalMaxPool, LPPool ±inf)."""
    kind = _kind(case)
    if kind in ("max", "lp"):
        g = sliding(case)
        padding = g.padding if kind == "max" else (0,) * len(spatial)
        return ref.pool_taps(spatial, g.kernel, g.stride, padding, g.dilation, g.ceil_mode)
    if kind == "adaptive-max":
        out = _adaptive_output(case, spatial)
        return [ref.adaptive_taps(int(s), o) for s, o in zip(spatial, out)]
    if kind == "fractional":
        x = _batched(case)
        (kh, kw), (oh, ow) = _per_dim(case.params["kernel_size"], 2), _fractional_output(case, x)
        u = np.asarray(case.inputs["_random_samples"], dtype=np.float64).reshape(-1, 2)
        return [ref.fractional_taps(ref.fractional_starts(u[:, 1], spatial[0], oh, kh, _round_fn(case)), kh),
                ref.fractional_taps(ref.fractional_starts(u[:, 0], spatial[1], ow, kw, _round_fn(case)), kw)]
    raise KeyError(kind)


def has_empty_window(case: Case) -> bool:
    """True when some max-pooling window has no tap inside the input (see ALLOW_EMPTY_WINDOWS)."""
    if _kind(case) != "max":
        return False
    taps = case_taps(case, _batched(case).shape[2:])
    return any(not t.valid.any(axis=-1).all() for t in taps)


def maxpool3d_channels_last_neginf_window(case: Case) -> bool:
    """Predicate of a torch discrepancy: MaxPool3d on a channels_last_3d input, where a window whose
    elements are all -inf has its first tap at depth > 0 (torch's index then lacks the depth offset)."""
    if _kind(case) != "max" or _ndim(case) != 3 or case.inputs["input"].ndim != 5:
        return False
    layout = case.layout("input")
    if layout.kind not in ("channels_last", "permuted") or tuple(layout.perm) != (0, 2, 3, 4, 1):
        return False
    x = case.inputs["input"]
    g = sliding(case)
    with np.errstate(all="ignore"):
        out, _ = ref.max_pool(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
    start = np.arange(out.shape[2]) * g.stride[0] - g.padding[0]
    first_tap = np.where(start >= 0, start, start + (-start + g.dilation[0] - 1) // g.dilation[0] * g.dilation[0])
    starts_deep = (first_tap > 0)[None, None, :, None, None]
    return bool(((out == -np.inf) & starts_deep).any())


def avgpool3d_input_smaller_than_kernel(case: Case) -> bool:
    """Predicate of a torch discrepancy: AvgPool3d rejects an input smaller than the kernel along
    some dim even when the padding makes the output valid (AvgPool1d/2d accept it)."""
    if _kind(case) != "avg" or _ndim(case) != 3:
        return False
    kernel = _per_dim(case.params["kernel_size"], 3)
    return any(s < k for s, k in zip(case.inputs["input"].shape[-3:], kernel))


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def _with_input_grad(case: Case, res: Result, backward: bool, vjp: Callable[[np.ndarray], np.ndarray]) -> Result:
    """Add the input gradient ``vjp(g)`` (g: the batched output cotangent) when backward is asked."""
    if backward and "output" in case.cotangents:
        res.grads["input"] = _like_input(case, vjp(_batched_like(case, case.cotangents["output"])))
    return res


def _selection_result(case: Case, x: np.ndarray, out: np.ndarray, idx: np.ndarray, backward: bool) -> Result:
    """Result of a max-type layer: output, indices when asked, and the scatter VJP."""
    res = Result(outputs={"output": _like_input(case, out)}, meta={"argmax": idx})
    if case.params.get("return_indices"):
        res.outputs["indices"] = _like_input(case, idx)
    return _with_input_grad(case, res, backward, lambda g: ref.scatter_by_indices(x.shape, idx, g))


def _max_pool_reference(case: Case, backward: bool) -> Result:
    x = _batched(case)
    g = sliding(case)
    out, idx = ref.max_pool(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
    return _selection_result(case, x, out, idx, backward)


def _avg_args(case: Case) -> tuple[Any, ...]:
    g = sliding(case)
    p = case.params
    return (g.kernel, g.stride, g.padding, g.ceil_mode, bool(p.get("count_include_pad", True)),
            p.get("divisor_override"))


def _avg_pool_reference(case: Case, backward: bool) -> Result:
    x = _batched(case)
    args = _avg_args(case)
    res = Result(outputs={"output": _like_input(case, ref.avg_pool(x, *args))})
    return _with_input_grad(case, res, backward, lambda g: ref.avg_pool_vjp(x.shape, g, *args))


def _lp_args(case: Case) -> tuple[float, tuple[int, ...], tuple[int, ...], bool]:
    g = sliding(case)
    return float(case.params["norm_type"]), g.kernel, g.stride, g.ceil_mode


def _lp_pool_reference(case: Case, backward: bool) -> Result:
    x = _batched(case)
    p, kernel, stride, ceil_mode = _lp_args(case)
    res = Result(outputs={"output": _like_input(case, ref.lp_pool(x, p, kernel, stride, ceil_mode))})
    return _with_input_grad(case, res, backward, lambda g: ref.lp_pool_vjp(x, g, p, kernel, stride, ceil_mode))


def _fractional_reference(case: Case, backward: bool) -> Result:
    x = _batched(case)
    out_size = _fractional_output(case, x)
    samples = np.asarray(case.inputs["_random_samples"], dtype=np.float64)
    n, c = x.shape[:2]
    if samples.shape != (n, c, 2):
        raise ValueError(f"_random_samples must have shape {(n, c, 2)}, got {samples.shape}")
    kernel = _per_dim(case.params["kernel_size"], 2)
    out, idx = ref.fractional_max_pool2d(x, kernel, out_size, samples, _round_fn(case))
    return _selection_result(case, x, out, idx, backward)


def _unpool_geometry(case: Case) -> tuple[tuple[int, ...], ...]:
    nd = _ndim(case)
    p = case.params
    kernel = _per_dim(p["kernel_size"], nd)
    stride = _per_dim(p.get("stride"), nd) or kernel
    padding = _per_dim(p.get("padding", 0), nd)
    return kernel, stride, padding


def _unpool_reference(case: Case, backward: bool) -> Result:
    x = _batched(case)
    idx = _batched(case, "indices")
    kernel, stride, padding = _unpool_geometry(case)
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError("kernel_size and stride must be >= 1")
    size = ref.unpool_output_size(x.shape[2:], kernel, stride, padding, case.forward_kwargs.get("output_size"))
    res = Result(outputs={"output": _like_input(case, ref.max_unpool(x, idx, size))})
    return _with_input_grad(case, res, backward, lambda g: ref.max_unpool_vjp(idx, g))


def _adaptive_max_reference(case: Case, backward: bool) -> Result:
    x = _batched(case)
    out, idx = ref.adaptive_max_pool(x, _adaptive_output(case, x.shape[2:]))
    return _selection_result(case, x, out, idx, backward)


def _adaptive_avg_reference(case: Case, backward: bool) -> Result:
    x = _batched(case)
    size = _adaptive_output(case, x.shape[2:])
    res = Result(outputs={"output": _like_input(case, ref.adaptive_avg_pool(x, size))})
    return _with_input_grad(case, res, backward, lambda g: ref.adaptive_avg_pool_vjp(x.shape, g, size))


# ---------------------------------------------------------------------------------------------
# Error model: reduction lengths and magnitudes
# ---------------------------------------------------------------------------------------------


def _overlap(case: Case, tensor: str) -> int:
    """K of an input gradient: the most windows reading one input position."""
    x = _batched(case)
    kind = _kind(case)
    if kind == "avg":
        g = sliding(case)
        taps = ref.pool_taps(x.shape[2:], g.kernel, g.stride, g.padding, (1,) * len(g.kernel), g.ceil_mode)
    elif kind == "adaptive-avg":
        out = _adaptive_output(case, x.shape[2:])
        taps = [ref.adaptive_taps(int(s), o) for s, o in zip(x.shape[2:], out)]
    else:
        taps = case_taps(case, x.shape[2:])
    return ref.max_overlap(x.shape[2:], taps)


def _window_numel(case: Case, tensor: str) -> int:
    """K of a pooled output: the largest window."""
    x = _batched(case)
    if _kind(case) == "adaptive-avg":
        out = _adaptive_output(case, x.shape[2:])
        sizes = [int((e - s).max(initial=1)) for s, e in (ref.adaptive_bounds(int(i), o)
                                                          for i, o in zip(x.shape[2:], out))]
        return int(np.prod(sizes))
    return int(np.prod(sliding(case).kernel))


def _selection_grad_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """|g| scattered to the arg-max of the case's own input (re-evaluating on |x| would move it)."""
    x = _batched(case)
    g = np.abs(_batched_like(case, case.cotangents["output"]))
    mag = ref.scatter_by_indices(x.shape, result.meta["argmax"], g)
    return {"grad.input": _like_input(case, mag)}


def _lp_magnitudes(case: Case, result: Result) -> dict[str, np.ndarray]:
    """Error magnitudes of LPPool, propagated through y = v^(1/p), v = K/count·Σ x^p:

    output: δy = (1/p)·|v|^(1/p-1)·δv with δv ~ √K·u·v_abs (v_abs from |x|^p), the sensitivity of
    the root to the rounding of the sum (large where the sum cancels); plus |y|·|ln v|/p, the
    sensitivity of v^(1/p) to the rounding of the exponent 1/p into the format (torch evaluates
    pow with the exponent cast to the tensor's compute type: float32 for float32 tensors).
    grad.input: the VJP on |x| and |g| evaluated at the true |v| (the factor v^(1/p-1) is taken at
    the real sum, not at the sum of |x|^p), each window's |g| scaled by 1 + |(1/p - 1)·ln v| for
    the rounding of the exponent 1/p - 1, plus the amplified underflow of the per-window factor.
    For p = ±inf the layer selects: output magnitude 0 (exact), gradient |g| at the selected element.
    """
    x = _batched(case)
    p, kernel, stride, ceil_mode = _lp_args(case)
    out: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):
        if np.isinf(p):
            out["output"] = np.zeros_like(result.outputs["output"])
            if case.cotangents:
                g = np.abs(_batched_like(case, case.cotangents["output"]))
                sign = 1.0 if p > 0 else -1.0
                _, idx = ref.max_pool(sign * np.abs(x), kernel, stride, (0,) * len(kernel), (1,) * len(kernel),
                                      ceil_mode)
                out["grad.input"] = _like_input(case, ref.scatter_by_indices(x.shape, idx, g))
            return out
        v, v_abs = ref.lp_pool_sums(x, p, kernel, stride, ceil_mode)
        log_v = np.where(v != 0, np.abs(np.log(np.abs(v))), 0.0)
        sens = np.where(v_abs == 0, 0.0, (1.0 / p) * np.power(np.abs(v), 1.0 / p - 1.0) * v_abs)
        sens = sens + np.abs(np.power(np.abs(v), 1.0 / p)) * log_v / p
        out["output"] = _like_input(case, np.where(np.isnan(sens), 0.0, sens))
        if case.cotangents:
            g = np.abs(_batched_like(case, case.cotangents["output"])) * (1.0 + abs(1.0 / p - 1.0) * log_v)
            mag = ref.lp_pool_vjp(np.abs(x), g, p, kernel, stride, ceil_mode, v_override=np.abs(v))
            # The window's factor g·v^(1/p-1)/p can fall below the normal range (large v, small g);
            # its absolute rounding error (a subnormal spacing, twice: ·(1/p)·g then /count) is then
            # amplified by K/count·p·|x|^(p-1). With g = p·|v|^(1-1/p) the VJP returns exactly that
            # amplification per element.
            unit = p * np.power(np.abs(v), 1.0 - 1.0 / p)
            spread = ref.lp_pool_vjp(np.abs(x), unit, p, kernel, stride, ceil_mode, v_override=np.abs(v))
            fmt = DTYPES[case.dtype]
            mag = mag + spread * fmt.min_subnormal / fmt.unit_roundoff
            out["grad.input"] = _like_input(case, np.where(np.isnan(mag), 0.0, mag))
    return out


# ---------------------------------------------------------------------------------------------
# Comparators (tie rules)
# ---------------------------------------------------------------------------------------------


def _fail(name: str, shape: Sequence[int], message: str) -> Comparison:
    return Comparison(tensor=name, ok=False, shape=list(shape), size=int(np.prod(shape)), message=message)


def _index_check(case: Case, result: Result, got_idx: np.ndarray) -> np.ndarray:
    """Per output element: is the backend's index an arg-max of its window? (batched shape)"""
    x = _batched(case)
    n, c = x.shape[:2]
    planes, plane = n * c, int(np.prod(x.shape[2:]))
    taps = case_taps(case, x.shape[2:])
    flat, valid = ref.window_positions(x.shape[2:], taps)
    out_shape = flat.shape[1:1 + len(taps)]
    flat = np.broadcast_to(flat, (planes, *flat.shape[1:])).reshape(planes, *out_shape, -1)
    valid = np.broadcast_to(valid, (planes, *valid.shape[1:])).reshape(planes, *out_shape, -1)
    gi = _batched_like(case, got_idx).reshape(planes, *out_shape).astype(np.int64)
    in_window = ((flat == gi[..., None]) & valid).any(axis=-1)
    safe = np.clip(gi, 0, max(plane - 1, 0)).reshape(planes, -1)
    picked = np.take_along_axis(x.reshape(planes, -1), safe, axis=1).reshape(gi.shape)
    best = _batched_like(case, result.outputs["output"]).reshape(gi.shape)
    same = (picked == best) | (np.isnan(picked) & np.isnan(best))
    empty = ~valid.any(axis=-1)
    outside = (gi < 0) | (gi >= plane)
    return np.where(empty, outside, in_window & same).reshape(n, c, *out_shape)


def _indices_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
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
    ok = _like_input(case, _index_check(case, result, value))
    cmp = Comparison(tensor=name, ok=bool(ok.all()), shape=list(expected.shape), size=int(expected.size),
                     exact_elements=int(expected.size))
    if not cmp.ok:
        bad = np.argwhere(~ok)[:WORST_SHOWN]
        cmp.mismatches = int((~ok).sum())
        cmp.worst_index = [int(i) for i in bad[0]]
        cmp.worst = [{"index": [int(i) for i in ix], "ref": int(expected[tuple(ix)]), "got": int(value[tuple(ix)]),
                      "err": float(abs(int(expected[tuple(ix)]) - int(value[tuple(ix)]))), "bound": 0.0}
                     for ix in bad]
        cmp.max_abs_err = max(w["err"] for w in cmp.worst)
        cmp.utilisation = float("inf")
        cmp.message = (f"{cmp.mismatches} of {cmp.size} indices do not name a maximum of their window "
                       "(any tied position is accepted)")
    return cmp


def _selection_grad_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """With indices from the backend (all of them arg-maxes), the gradient must be the scatter of
    the output gradient to exactly those positions; otherwise to the reference's arg-max."""
    expected = result.grads["input"]
    x = _batched(case)
    g = _batched_like(case, case.cotangents["output"])
    idx = result.meta["argmax"]
    got_idx = got.outputs.get("indices")
    if (got_idx is not None and "indices" in result.outputs
            and np.shape(got_idx) == result.outputs["indices"].shape):
        check = _index_check(case, result, np.asarray(got_idx))
        if check.all():
            gi = _batched_like(case, np.asarray(got_idx)).astype(np.int64)
            empty = ~_window_nonempty(case)
            idx = np.where(empty, -1, gi)
            expected = _like_input(case, ref.scatter_by_indices(x.shape, idx, g))
    absref = _like_input(case, ref.scatter_by_indices(x.shape, idx, np.abs(g)))
    return compare_tensor(spec, case, name, expected, got.grads.get("input"), got.dtypes.get(name), absref)


def _window_nonempty(case: Case) -> np.ndarray:
    x = _batched(case)
    taps = case_taps(case, x.shape[2:])
    _, valid = ref.window_positions(x.shape[2:], taps)
    nonempty = valid.reshape(*valid.shape[:1 + len(taps)], -1).any(axis=-1)
    n, c = x.shape[:2]
    return np.broadcast_to(nonempty, (n * c, *nonempty.shape[1:])).reshape(n, c, *nonempty.shape[1:])


def _unpool_output_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Each position named by some index holds one of the values sent there; others hold 0."""
    expected = result.outputs[name]
    x = _batched(case)
    idx = _batched(case, "indices")
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
    y = _batched_like(case, np.asarray(value, dtype=np.float64)).reshape(n * c, -1)
    plane = y.shape[1]
    written = np.take_along_axis(y, flat_idx, axis=1)
    sent = x.reshape(n * c, -1)
    match = (written == sent) | (np.isnan(written) & np.isnan(sent))
    positions = (flat_idx + (np.arange(n * c) * plane)[:, None]).ravel()
    hits = np.bincount(positions, weights=match.ravel().astype(np.float64), minlength=y.size) > 0
    named = np.bincount(positions, minlength=y.size) > 0
    ok = np.where(named, hits, y.ravel() == 0).reshape(y.shape)
    ok = _like_input(case, ok.reshape((n, c) + tuple(expected.shape[-_ndim(case):])))
    cmp = Comparison(tensor=name, ok=bool(ok.all()), shape=list(expected.shape), size=int(expected.size),
                     exact_elements=int(expected.size))
    if not cmp.ok:
        bad = np.argwhere(~ok)[:WORST_SHOWN]
        got_arr = np.asarray(value)
        cmp.mismatches = int((~ok).sum())
        cmp.worst_index = [int(i) for i in bad[0]]
        cmp.worst = [{"index": [int(i) for i in ix], "ref": float(expected[tuple(ix)]),
                      "got": float(got_arr[tuple(ix)]), "err": float("inf"), "bound": 0.0} for ix in bad]
        cmp.utilisation = float("inf")
        cmp.message = (f"{cmp.mismatches} of {cmp.size} positions hold a value no index sent there "
                       "(duplicate indices: any of the values sent is accepted)")
    return cmp


# ---------------------------------------------------------------------------------------------
# Value generation
# ---------------------------------------------------------------------------------------------


def _distinct_grid(rng: np.random.Generator, planes: int, plane: int, dtype: str, tier: str,
                   negative: bool) -> np.ndarray:
    """``(planes, plane)`` values, pairwise distinct within each plane, representable in ``dtype``.

    Float tier: a random subset of the grid ±(1 + j/J)·2^(e-2) (J = 2^min(p-1, 10)); exact tier:
    a random subset of the integers in [-M, M] (all negative when ``negative``).
    """
    if tier == "exact":
        size = max(plane, 8)
        codes = rng.permuted(np.tile(np.arange(size), (planes, 1)), axis=1)[:, :plane]
        return -(codes + 1.0) if negative else codes - (size // 2) * 1.0
    size = 2 * max(plane, 8)
    codes = rng.permuted(np.tile(np.arange(size), (planes, 1)), axis=1)[:, :plane]
    j_count = 2 ** min(DTYPES[dtype].precision - 1, 10)
    sign = np.where(codes % 2 == 1, -1.0, 1.0)
    rest = codes // 2 if not negative else codes
    mantissa = 1.0 + (rest % j_count) / j_count
    exponent = rest // j_count - 2
    values = mantissa * np.exp2(exponent)
    return -values if negative else sign * values


def _max_plane_cap(dtype: str) -> int:
    """Largest plane for which the exact tier can hold pairwise distinct integers."""
    return 2 * DTYPES[dtype].exact_integer_limit + 1


def _selection_values(d: S.Drawer, shape: Sequence[int], nd: int, dtype: str, tier: str,
                      modes: Sequence[str] = MAX_VALUE_MODES) -> tuple[np.ndarray, str]:
    """Input values of a max-type layer and the value mode drawn (see the module docstring)."""
    mode = d.choice(modes, "input.values")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "input.seed"))
    plane = int(np.prod(shape[-nd:]))
    planes = int(np.prod(shape[:-nd]))
    if mode == "ties":
        if tier == "exact":
            arr = rng.integers(-2, 3, size=tuple(shape)).astype(np.float64)
        else:
            arr = rng.standard_normal(3)[rng.integers(0, 3, size=tuple(shape))]
    else:
        arr = _distinct_grid(rng, planes, plane, dtype, tier, negative=mode == "negative").reshape(shape)
    if mode == "special":
        pick = rng.random(tuple(shape)) < 0.15
        arr = np.where(pick, rng.choice(np.array([np.nan, np.inf, -np.inf]), size=tuple(shape)), arr)
    return DTYPES[dtype].round(arr), mode


def _lp_values(d: S.Drawer, shape: Sequence[int], dtype: str, tier: str, p: float, window: int,
               layout: Any) -> np.ndarray:
    """LPPool inputs whose powers stay inside the format, with sign modes valid for ``p``.

    Float tier: |x| log-uniform in [lo, hi] with x^p normal, and K·hi^p and p·hi^(p-1) well below
    the overflow threshold; signs all positive, all negative, or mixed — mixed only where the sum of powers
    cannot cancel (p = 1 is linear, even p has x^p >= 0, non-integer p turns negatives into NaN).
    Exact tier (integer p): integers with K·m^p <= 2^precision, so the sums of powers are exact.
    For p = ±inf: pairwise distinct magnitudes (no ties between |x| values).
    """
    fmt = DTYPES[dtype]
    rng_seed = d.integer(0, 2**32 - 1, "input.seed")
    rng = np.random.default_rng(rng_seed)
    gen_shape = tuple(1 if (layout.kind == "expanded" and i in layout.dims) else s for i, s in enumerate(shape))
    if np.isinf(p):
        mags = np.abs(_distinct_grid(rng, 1, int(np.prod(gen_shape)), dtype, tier, negative=True))
        signs = np.where(rng.random(mags.shape) < 0.5, -1.0, 1.0)
        arr = (mags * signs).reshape(gen_shape)
        return np.ascontiguousarray(np.broadcast_to(fmt.round(arr), tuple(shape)))
    odd_integer = float(p).is_integer() and int(p) % 2 == 1 and p != 1
    signs_allowed = ["positive", "negative", "mixed"]
    if odd_integer and tier == "float":
        signs_allowed = ["positive", "negative"]
    sign_mode = d.choice(signs_allowed, "input.signs")
    if tier == "exact":
        m = max(1, int(math.floor((fmt.exact_integer_limit / max(window, 1)) ** (1.0 / p))))
        arr = rng.integers(1 if sign_mode != "mixed" else -m, m + 1, size=gen_shape).astype(np.float64)
        if sign_mode == "negative":
            arr = -arr
    else:
        # log2 bounds, clipped to [-4, 4] before exponentiating (p < 1 would overflow otherwise)
        lo = 2.0 ** max(-4.0, math.log2(4 * fmt.min_normal) / p)
        hi = 2.0 ** min(4.0, math.log2(fmt.max_value / (8.0 * window)) / p)
        if p > 1:  # the backward's p·x^(p-1) is formed in the format too
            hi = min(hi, 2.0 ** min(4.0, math.log2(fmt.max_value / (8.0 * p)) / (p - 1)))
        arr = np.exp(rng.uniform(math.log(lo), math.log(max(hi, lo)), size=gen_shape))
        if sign_mode == "negative":
            arr = -arr
        elif sign_mode == "mixed":
            arr = arr * np.where(rng.random(gen_shape) < 0.5, -1.0, 1.0)
    return np.ascontiguousarray(np.broadcast_to(fmt.round(arr), tuple(shape)))


# ---------------------------------------------------------------------------------------------
# Geometry draws
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DimDraw:
    kernel: int
    dilation: int
    padding: int
    stride: int
    remainder: int
    single_output: bool = False

    @property
    def effective(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    def input_length(self, out: int) -> int:
        return (out - 1) * self.stride + self.remainder + self.effective - 2 * self.padding

    def min_output(self) -> int:
        base = self.input_length(1)
        return 1 if base >= 1 else 1 + -(-(1 - base) // self.stride)


def _draw_remainder(d: S.Drawer, label: str, corner: str, stride: int, effective: int, padding: int) -> int:
    """r = (in + 2p - e) mod s for the ceil corner (falls back to any r when infeasible)."""
    drop_hi = min(stride - 1, stride - effective + padding)
    if corner == "fit":
        return 0
    if corner == "drop" and drop_hi >= 1:
        return d.integer(1, drop_hi, f"{label}.remainder")
    over_lo = max(1, stride - effective + padding + 1)
    if corner == "overhang" and over_lo <= stride - 1:
        return d.integer(over_lo, stride - 1, f"{label}.remainder")
    return d.integer(0, stride - 1, f"{label}.remainder")


def _draw_dims(d: S.Drawer, nd: int, *, dilation: bool, padding: bool, explicit_stride: bool,
               max_kernel: int = 4) -> list[DimDraw]:
    """Per-dim geometry; the first choice repeats one geometry in every dim."""
    same = nd == 1 or not d.flag("geometry differs per dim")
    dims: list[DimDraw] = []
    for i in range(nd):
        if same and i > 0:
            dims.append(dims[0])
            continue
        label = f"dim[{i}]"
        if dilation and d.choice(EMPTY_WINDOW_ODDS, f"{label}.window in the padding only"):
            # k = 2, p = 1, d >= 2 on an input of d - 1: the taps -1 and d - 1 both miss the input
            stride = d.integer(1, 3, f"{label}.stride") if explicit_stride else 2
            dims.append(DimDraw(2, d.integer(2, 3, f"{label}.dilation"), 1, stride, 0, single_output=True))
            continue
        k = d.integer(1, max_kernel, f"{label}.kernel")
        corner = d.choice(CEIL_CORNERS, f"{label}.ceil corner")
        dil = d.integer(1, 3, f"{label}.dilation") if dilation else 1
        p = d.integer(0, k // 2, f"{label}.padding") if padding else 0
        e = dil * (k - 1) + 1
        if explicit_stride and corner == "drop":  # a dropped ceil window needs s > e - p
            s = d.integer(e - p + 1, e - p + 3, f"{label}.stride")
        else:
            s = d.integer(1, k + 2, f"{label}.stride") if explicit_stride else k
        r = _draw_remainder(d, label, corner, s, e, p)
        dims.append(DimDraw(k, dil, p, s, r))
    return dims


def _draw_outputs(d: S.Drawer, dims: Sequence[DimDraw], budget: int, hi: int = 8) -> list[int]:
    """Output lengths whose derived input lengths keep the plane within ``budget``."""
    outs: list[int] = []
    used = 1
    for i, dim in enumerate(dims):
        reserve = int(np.prod([dd.input_length(dd.min_output()) for dd in dims[i + 1:]] or [1]))
        room = budget // max(used * reserve, 1)
        lo = dim.min_output()
        cap = (room - dim.remainder - dim.effective + 2 * dim.padding) // dim.stride + 1
        o = lo if dim.single_output else d.integer(lo, max(lo, min(hi, cap)), f"dim[{i}].output")
        outs.append(o)
        used *= dim.input_length(o)
    return outs


def _without_empty_windows(dims: list[DimDraw], spatial: Sequence[int], ceil_mode: bool) -> list[DimDraw]:
    """Dilation 1 in any dim where a window would have no tap inside the input (input sizes kept)."""
    fixed = []
    for dim, size in zip(dims, spatial):
        out = ref.pool_output_size(size, dim.kernel, dim.stride, dim.padding, dim.dilation, ceil_mode)
        taps = ref.sliding_taps(size, out, dim.kernel, dim.stride, dim.padding, dim.dilation)
        if not taps.valid.any(axis=-1).all():
            dim = DimDraw(dim.kernel, 1, dim.padding, dim.stride, dim.remainder)
        fixed.append(dim)
    return fixed


def _batch_and_channels(d: S.Drawer) -> tuple[bool, int, int]:
    unbatched = d.flag("unbatched")
    n = 1 if unbatched else d.integer(1, 2, "batch")
    c = d.integer(1, 3, "channels")
    return unbatched, n, c


def _input_shape(unbatched: bool, n: int, c: int, spatial: Sequence[int]) -> tuple[int, ...]:
    return (c, *spatial) if unbatched else (n, c, *spatial)


def _sliding_params(d: S.Drawer, dims: Sequence[DimDraw], explicit_stride: bool, *, padding: bool = True,
                    dilation: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"kernel_size": S.as_param(tuple(x.kernel for x in dims), d, "kernel_size")}
    if explicit_stride:
        params["stride"] = S.as_param(tuple(x.stride for x in dims), d, "stride")
    elif d.flag("stride spelled as None"):
        params["stride"] = None
    if padding:
        params["padding"] = S.as_param(tuple(x.padding for x in dims), d, "padding")
    if dilation:
        params["dilation"] = S.as_param(tuple(x.dilation for x in dims), d, "dilation")
    return params


def _tier_for(d: S.Drawer, allowed: bool) -> str:
    return S.tier(d) if allowed else "float"


def _draw_sliding_geometry(d: S.Drawer, nd: int, n: int, c: int, *, dilation: bool, padding: bool,
                           ceil: bool = True) -> tuple[bool, bool, list[DimDraw], list[int]]:
    """Stride spelling, ceil_mode (drawn only where ``ceil``), per-dim geometry and the input's spatial sizes."""
    explicit = d.flag("explicit stride")
    ceil_mode = d.flag("ceil_mode") if ceil else False
    dims = _draw_dims(d, nd, dilation=dilation, padding=padding, explicit_stride=explicit)
    outs = _draw_outputs(d, dims, BUDGET // (n * c))
    spatial = [dim.input_length(o) for dim, o in zip(dims, outs)]
    return explicit, ceil_mode, dims, spatial


def _input_case(d: S.Drawer, op: str, dtype: str, params: dict[str, Any], x: np.ndarray, layout: Layout,
                tier: str, note: str = "") -> Case:
    """A case of one differentiable ``input``; draws the cotangent seed last."""
    return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d), note=note)


def _strategy(build_case: Callable[[S.Drawer, str], Case]) -> Callable[[str], st.SearchStrategy[Case]]:
    """The per-dtype case strategy that runs ``build_case(drawer, dtype)``."""
    def strategy(dtype: str) -> st.SearchStrategy[Case]:
        @st.composite
        def build(draw: Any) -> Case:
            return build_case(S.Drawer(draw), dtype)

        return build()

    return strategy


# ---------------------------------------------------------------------------------------------
# Case strategies
# ---------------------------------------------------------------------------------------------


def _max_pool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        explicit, ceil_mode, dims, spatial = _draw_sliding_geometry(d, nd, n, c, dilation=True, padding=True)
        if not ALLOW_EMPTY_WINDOWS:
            dims = _without_empty_windows(dims, spatial, ceil_mode)
        tier = _tier_for(d, int(np.prod(spatial)) <= _max_plane_cap(dtype))
        shape = _input_shape(unbatched, n, c, spatial)
        x, mode = _selection_values(d, shape, nd, dtype, tier)
        params = _sliding_params(d, dims, explicit, dilation=True)
        params["ceil_mode"] = ceil_mode
        params["return_indices"] = True if mode in TIE_MODES else d.flag("return_indices")
        layout = S.layouts(d, len(shape), "layout.input")
        return _input_case(d, op, dtype, params, x, layout, tier, note=f"values={mode}")

    return _strategy(build)


def _avg_pool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        explicit, ceil_mode, dims, spatial = _draw_sliding_geometry(d, nd, n, c, dilation=False, padding=True)
        shape = _input_shape(unbatched, n, c, spatial)
        params = _sliding_params(d, dims, explicit)
        params["ceil_mode"] = ceil_mode
        params["count_include_pad"] = not d.flag("count_include_pad=False")
        window = int(np.prod([dim.kernel for dim in dims]))
        if nd > 1 and d.flag("divisor_override"):
            magnitude = d.integer(1, window + 2, "divisor_override.magnitude")
            params["divisor_override"] = -magnitude if d.flag("divisor_override negative") else magnitude
        tier = S.tier(d)
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", int_limit=S.exact_int_limit(dtype, window, factors=1),
                     layout=layout, specials=(np.nan, np.inf, -np.inf, 0.0))
        return _input_case(d, op, dtype, params, x, layout, tier)

    return _strategy(build)


LP_NORMS = (2.0, 1.0, 3.0, 1.5, 4, 8.0, 0.5, 16.0, float("inf"), float("-inf"))


def _lp_pool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        p = d.choice(LP_NORMS, "norm_type")
        explicit, ceil_mode, dims, spatial = _draw_sliding_geometry(d, nd, n, c, dilation=False, padding=False)
        shape = _input_shape(unbatched, n, c, spatial)
        params: dict[str, Any] = {"norm_type": p}
        params.update(_sliding_params(d, dims, explicit, padding=False))
        if nd == 1:  # LPPool1d takes an int kernel_size (it multiplies the result by it)
            params["kernel_size"] = dims[0].kernel
        params["ceil_mode"] = ceil_mode
        window = int(np.prod([dim.kernel for dim in dims]))
        exact_ok = float(p).is_integer() or (np.isinf(p) and int(np.prod(shape)) <= _max_plane_cap(dtype))
        tier = _tier_for(d, exact_ok)
        layout = S.layouts(d, len(shape), "layout.input", expanded=not np.isinf(p))
        x = _lp_values(d, shape, dtype, tier, float(p), window, layout)
        return _input_case(d, op, dtype, params, x, layout, tier)

    return _strategy(build)


def _fractional_cases(dtype: str) -> st.SearchStrategy[Case]:
    @st.composite
    def build(draw: Any) -> Case:
        d = S.Drawer(draw)
        unbatched, n, c = _batch_and_channels(d)
        kernel = S.per_dim(d, 2, 1, 4, "kernel_size")
        outs = [d.integer(1, 8, f"output[{i}]") for i in range(2)]
        minimal = [o + k - 1 for o, k in zip(outs, kernel)]
        room = BUDGET // (n * c)
        height = minimal[0] + d.integer(0, max(0, min(24, room // minimal[1] - minimal[0])), "input slack[0]")
        width = minimal[1] + d.integer(0, max(0, min(24, room // height - minimal[1])), "input slack[1]")
        sizes = [height, width]
        tier = _tier_for(d, sizes[0] * sizes[1] <= _max_plane_cap(dtype))
        shape = _input_shape(unbatched, n, c, sizes)
        x, mode = _selection_values(d, shape, 2, dtype, tier)
        params: dict[str, Any] = {"kernel_size": S.as_param(kernel, d, "kernel_size")}
        ratio_ok = all(o + 0.5 < s for o, s in zip(outs, sizes))
        if ratio_ok and d.flag("output_ratio"):
            ratio = tuple((o + 0.5) / s for o, s in zip(outs, sizes))
            params["output_ratio"] = ratio[0] if ratio[0] == ratio[1] and not d.flag("ratio as tuple") else ratio
        else:
            params["output_size"] = S.as_param(tuple(outs), d, "output_size")
        params["return_indices"] = True if mode in TIE_MODES else d.flag("return_indices")
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "_random_samples.seed"))
        fmt = DTYPES[dtype]
        below_one = 1.0 - fmt.unit_roundoff  # the largest representable value below 1
        samples = np.minimum(fmt.round(rng.random((1 if unbatched else n, c, 2))), below_one)
        layout = S.layouts(d, len(shape), "layout.input")
        case = _input_case(d, "FractionalMaxPool2d", dtype, params, x, layout, tier, note=f"values={mode}")
        return case.with_inputs(_random_samples=samples)

    return build()


ADAPTIVE_MODES = ("divides", "any", "larger", "none")


def _adaptive_cases(op: str, nd: int, selection: bool) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        modes = ADAPTIVE_MODES if nd > 1 else ADAPTIVE_MODES[:-1]
        sizes, outs = [], []
        for i in range(nd):
            mode = d.choice(modes, f"dim[{i}].output mode")
            if mode == "divides":
                o = d.integer(1, 6, f"dim[{i}].output")
                sizes.append(o * d.integer(1, 4, f"dim[{i}].window"))
                outs.append(o)
            elif mode == "larger":
                size = d.integer(1, 6, f"dim[{i}].input")
                sizes.append(size)
                outs.append(size + d.integer(1, 6, f"dim[{i}].extra"))
            else:
                sizes.append(d.integer(1, 16, f"dim[{i}].input"))
                outs.append(None if mode == "none" else d.integer(1, 10, f"dim[{i}].output"))
        shape = _input_shape(unbatched, n, c, sizes)
        if nd == 1:
            output_size: Any = outs[0] if not d.flag("output_size as tuple") else (outs[0],)
        elif outs[0] == outs[1] and outs[0] is not None and not d.flag("output_size as tuple"):
            output_size = outs[0]
        else:
            output_size = tuple(outs)
        params: dict[str, Any] = {"output_size": output_size}
        layout = S.layouts(d, len(shape), "layout.input", expanded=not selection)
        if selection:
            tier = _tier_for(d, sizes[0] * (sizes[1] if nd > 1 else 1) <= _max_plane_cap(dtype))
            x, mode = _selection_values(d, shape, nd, dtype, tier)
            params["return_indices"] = True if mode in TIE_MODES else d.flag("return_indices")
            note = f"values={mode}"
        else:
            tier = S.tier(d)
            window = int(np.prod([-(-s // max(o or s, 1)) + 1 for s, o in zip(sizes, outs)]))
            x = S.values(d, shape, dtype, tier, "input", int_limit=S.exact_int_limit(dtype, window, 1),
                         layout=layout, specials=(np.nan, np.inf, -np.inf, 0.0))
            note = ""
        return _input_case(d, op, dtype, params, x, layout, tier, note=note)

    return _strategy(build)


UNPOOL_INDEX_MODES = ("maxpool", "duplicates")


def _unpool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        explicit, _, dims, original = _draw_sliding_geometry(d, nd, n, c, dilation=False, padding=True, ceil=False)
        kernel = tuple(dim.kernel for dim in dims)
        stride = tuple(dim.stride for dim in dims)
        padding = tuple(dim.padding for dim in dims)
        tier = _tier_for(d, int(np.prod(original)) <= _max_plane_cap(dtype))
        # The indices come from a max pooling of an input of the original size.
        source, _ = _selection_values(d, (n, c, *original), nd, dtype, tier, modes=("distinct", "ties"))
        values, indices = ref.max_pool(source, kernel, stride, padding, (1,) * nd, False)
        default = ref.unpool_output_size(values.shape[2:], kernel, stride, padding, None)
        index_mode = d.choice(UNPOOL_INDEX_MODES, "indices")
        size_mode = d.choice(("default", "original", "largest", "with N and C"), "output_size")
        target = list(original)
        if size_mode == "largest":
            target = [dflt + s - 1 for dflt, s in zip(default, stride)]
        elif size_mode == "default":
            target = list(default)
        plane = int(np.prod(target))
        if index_mode == "duplicates" and plane > 0:
            rng = np.random.default_rng(d.integer(0, 2**32 - 1, "indices.seed"))
            span = d.integer(1, plane, "indices.span")
            indices = rng.integers(0, span, size=indices.shape)
            values = DTYPES[dtype].round(rng.standard_normal(values.shape) if tier == "float"
                                         else rng.integers(-4, 5, size=values.shape).astype(np.float64))
        elif int(indices.max(initial=-1)) >= plane:
            target, size_mode = list(original), "original"
        forward_kwargs: dict[str, Any] = {}
        if size_mode == "with N and C" and not unbatched:
            forward_kwargs["output_size"] = [n, c, *target]
        elif size_mode != "default":
            forward_kwargs["output_size"] = list(target)
        if unbatched:
            values, indices = values[0], indices[0]
        params = _sliding_params(d, dims, explicit)
        layout = S.layouts(d, values.ndim, "layout.input")
        return Case(op=op, dtype=dtype, params=params,
                    inputs={"input": values, "indices": indices.astype(np.int64)},
                    differentiable=("input",), layouts={"input": layout}, forward_kwargs=forward_kwargs,
                    tier=tier, cotangent_seed=S.seed(d), note=f"indices={index_mode}")

    return _strategy(build)


# ---------------------------------------------------------------------------------------------
# Invalid cases
# ---------------------------------------------------------------------------------------------


SLIDING_VIOLATIONS = ("padding > kernel // 2", "zero stride", "zero kernel", "negative padding",
                      "empty output", "zero dilation", "zero divisor_override")


def _sliding_invalid(op: str, nd: int, kind: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """Parameter combinations torch rejects: the reference raises ValueError, torch must raise."""
    violations = [v for v in SLIDING_VIOLATIONS
                  if (v != "zero dilation" or kind == "max")
                  and (v != "zero divisor_override" or (kind == "avg" and nd > 1))
                  and (v not in ("padding > kernel // 2", "negative padding") or kind != "lp")]

    def build(d: S.Drawer, dtype: str) -> Case:
        violation = d.choice(violations, "violation")
        kernel = [d.integer(1, 4, f"kernel[{i}]") for i in range(nd)]
        stride = [d.integer(1, 3, f"stride[{i}]") for i in range(nd)]
        padding = [0] * nd
        dilation = [1] * nd
        spatial = [d.integer(k + 1, k + 6, f"input[{i}]") for i, k in enumerate(kernel)]
        dim = d.integer(0, nd - 1, "violating dim")
        params: dict[str, Any] = {}
        if violation == "padding > kernel // 2":
            padding[dim] = kernel[dim] // 2 + d.integer(1, 2, "excess padding")
        elif violation == "zero stride":
            stride[dim] = 0
        elif violation == "zero kernel":
            kernel[dim] = 0
        elif violation == "negative padding":
            padding[dim] = -1
        elif violation == "zero dilation":
            dilation[dim] = 0
        elif violation == "empty output":
            kernel[dim] = max(kernel[dim], 2)
            spatial[dim] = d.integer(1, kernel[dim] - 1, "short input")
        elif violation == "zero divisor_override":
            params["divisor_override"] = 0
        if kind == "lp":
            params = {"norm_type": d.choice((2.0, 1.0, 3.0), "norm_type"), **params}
        params.update({"kernel_size": kernel[0] if kind == "lp" and nd == 1 else tuple(kernel),
                       "stride": tuple(stride)})
        if kind != "lp":
            params["padding"] = tuple(padding)
        if kind == "max":
            params["dilation"] = tuple(dilation)
        x = DTYPES[dtype].round(np.random.default_rng(0).standard_normal((1, 2, *spatial)))
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    invalid=True, note=violation)

    return _strategy(build)


def _unpool_invalid(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        violation = d.choice(("output_size too large", "output_size too small", "index past the end",
                              "negative index"), "violation")
        k = d.integer(2, 3, "kernel")
        s = d.integer(1, 3, "stride")
        pooled = [d.integer(1, 4, f"pooled[{i}]") for i in range(nd)]
        default = [(p - 1) * s + k for p in pooled]
        plane = int(np.prod(default))
        rng = np.random.default_rng(d.integer(0, 2**16, "seed"))
        indices = rng.integers(0, plane, size=(1, 2, *pooled))
        forward_kwargs: dict[str, Any] = {}
        dim = d.integer(0, nd - 1, "violating dim")
        if violation == "output_size too large":
            size = list(default)
            size[dim] += s
            forward_kwargs["output_size"] = size
        elif violation == "output_size too small":
            size = list(default)
            size[dim] -= s
            forward_kwargs["output_size"] = size
        elif violation == "index past the end":
            indices.flat[d.integer(0, indices.size - 1, "position")] = plane
        else:
            indices.flat[d.integer(0, indices.size - 1, "position")] = -1
        x = DTYPES[dtype].round(rng.standard_normal(indices.shape))
        return Case(op=op, dtype=dtype, params={"kernel_size": k, "stride": s},
                    inputs={"input": x, "indices": indices.astype(np.int64)}, differentiable=("input",),
                    forward_kwargs=forward_kwargs, invalid=True, note=violation)

    return _strategy(build)


def _fractional_invalid(dtype: str) -> st.SearchStrategy[Case]:
    @st.composite
    def build(draw: Any) -> Case:
        d = S.Drawer(draw)
        violation = d.choice(("pool too large", "output_ratio >= 1", "output_ratio <= 0",
                              "both output_size and output_ratio", "neither output_size nor output_ratio"),
                             "violation")
        k = d.integer(1, 3, "kernel")
        size = d.integer(k + 1, k + 6, "input")
        out = d.integer(1, size - k + 1, "output")
        params: dict[str, Any] = {"kernel_size": k}
        if violation == "pool too large":
            params["output_size"] = size - k + 2
        elif violation == "output_ratio >= 1":
            params["output_ratio"] = d.choice((1.0, 1.5), "ratio")
        elif violation == "output_ratio <= 0":
            params["output_ratio"] = d.choice((0.0, -0.5), "ratio")
        elif violation == "both output_size and output_ratio":
            params.update(output_size=out, output_ratio=0.5)
        rng = np.random.default_rng(0)
        samples = DTYPES[dtype].round(rng.random((1, 2, 2)) * 0.9)
        x = DTYPES[dtype].round(rng.standard_normal((1, 2, size, size)))
        return Case(op="FractionalMaxPool2d", dtype=dtype, params=params,
                    inputs={"input": x, "_random_samples": samples},
                    differentiable=("input",), invalid=True, note=violation)

    return build()


def _adaptive_invalid(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        sizes = [d.integer(1, 6, f"input[{i}]") for i in range(nd)]
        outs = [d.integer(1, 4, f"output[{i}]") for i in range(nd)]
        outs[d.integer(0, nd - 1, "violating dim")] = -d.integer(1, 3, "negative output")
        x = DTYPES[dtype].round(np.random.default_rng(0).standard_normal((1, 2, *sizes)))
        return Case(op=op, dtype=dtype, params={"output_size": tuple(outs)}, inputs={"input": x},
                    differentiable=("input",), invalid=True, note="negative output_size")

    return _strategy(build)


# ---------------------------------------------------------------------------------------------
# Smoothness (for the finite-difference check of the reference VJPs)
# ---------------------------------------------------------------------------------------------


def _no_ties(case: Case) -> bool:
    """Finite values, pairwise distinct within each plane."""
    x = _batched(case)
    planes = x.reshape(x.shape[0] * x.shape[1], -1)
    if not np.isfinite(planes).all():
        return False
    srt = np.sort(planes, axis=1)
    return bool((np.diff(srt, axis=1) > 0).all())


def _unpool_smooth(case: Case) -> bool:
    """Without duplicate indices unpooling is linear; with them the forward keeps one value per
    position while torch's gradient gathers for every entry (not the forward's derivative)."""
    idx = _batched(case, "indices")
    rows = idx.reshape(idx.shape[0] * idx.shape[1], -1)
    return all(len(np.unique(r)) == len(r) for r in rows)


def _lp_smooth(case: Case) -> bool:
    x = _batched(case)
    p, kernel, stride, ceil_mode = _lp_args(case)
    if not np.isfinite(x).all() or (x == 0).any():
        return False
    if np.isinf(p):
        mags = np.sort(np.abs(x).reshape(x.shape[0] * x.shape[1], -1), axis=1)
        return bool((np.diff(mags, axis=1) > 0).all())
    with np.errstate(all="ignore"):
        v, _ = ref.lp_pool_sums(x, p, kernel, stride, ceil_mode)
    return bool(np.isfinite(v).all() and (v > 0).all())


# ---------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------


def _declare(spec: LayerSpec) -> None:
    declare(spec)


SELECTION_TOLERANCE = {
    # Max selects: the output is an input value, bit-exact in every tier.
    "output": Tolerance(magnitude="ref", exact="always"),
    # The gradient sums the cotangents of the windows that selected an element (K = max overlap):
    # bit-exact on integer cotangents, float model otherwise.
    "grad.input": Tolerance(reduction=_overlap, magnitude=_selection_grad_magnitude, exact="bitwise"),
}
SELECTION_COMPARATORS = {"indices": _indices_comparator, "grad.input": _selection_grad_comparator}
AVG_TOLERANCE = {
    # Σ of K inputs then one division: exact sums on integers, one final rounding allowed (torch
    # accumulates float16/bfloat16 in float32; rounding the quotient first to float32 cannot
    # create a wrong tie for quotients of small integers, so the result is still correctly rounded).
    "output": Tolerance(reduction=_window_numel, magnitude="abs", exact="rounded"),
    # Σ over the windows reading an element of g/divisor: each quotient rounds, so float model.
    "grad.input": Tolerance(reduction=_overlap, magnitude="abs", exact="none"),
}
ADAPTIVE_AVG_TOLERANCE = {
    # torch divides the window sum by the window's height, then by its width: two roundings.
    "output": Tolerance(reduction=_window_numel, magnitude="abs", exact="rounded", out_ulps=2.0),
    "grad.input": Tolerance(reduction=_overlap, magnitude="abs", exact="none"),
}
LP_TOLERANCE = {
    # Each term's path: x^p (up to 2 roundings: x·x·x), /count, ·K, root (rounding + pow's own
    # error): 5 roundings besides the window sum's √K, hence c = 5.
    "output": Tolerance(reduction=_window_numel, magnitude=_lp_magnitudes, exact="none", c=5.0),
    # Backward path of each term: v^(1/p-1), ·(1/p), ·g, ·K, /count, x^(p-1), ·p, ·grad: 7 roundings
    # besides the final one and the √K accumulation over overlapping windows, hence c = 7.
    "grad.input": Tolerance(reduction=_overlap, magnitude=_lp_magnitudes, exact="none", c=7.0),
}
EMPTY_WINDOW_NOTE = (
    "torch discrepancy: when dilation > 1 and padding > 0 leave a window with no tap inside the input "
    "(e.g. MaxPool1d(2, stride=1, padding=1, dilation=3) on length 2), torch returns -inf with an index "
    "past the window (2, outside a plane of 2 elements) and its backward adds that output's gradient "
    "there: into another element/plane, or out of bounds (heap corruption, 'malloc(): unsorted double "
    "linked list corrupted'). Predicate: has_empty_window(case); ALLOW_EMPTY_WINDOWS = False keeps them out."
)

for _nd in (1, 2, 3):
    _declare(LayerSpec(
        name=f"MaxPool{_nd}d", family="pooling", dims=_nd, kind="max",
        cases=_max_pool_cases(f"MaxPool{_nd}d", _nd),
        reference=_max_pool_reference,
        torch=TorchMapping(f"torch.nn.MaxPool{_nd}d", outputs=("output", "indices")),
        tolerance=SELECTION_TOLERANCE, comparators=SELECTION_COMPARATORS,
        invalid_cases=_sliding_invalid(f"MaxPool{_nd}d", _nd, "max"),
        smooth_at=_no_ties,
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
    _declare(LayerSpec(
        name=f"AvgPool{_nd}d", family="pooling", dims=_nd, kind="avg",
        cases=_avg_pool_cases(f"AvgPool{_nd}d", _nd),
        reference=_avg_pool_reference,
        torch=TorchMapping(f"torch.nn.AvgPool{_nd}d"),
        tolerance=AVG_TOLERANCE,
        invalid_cases=_sliding_invalid(f"AvgPool{_nd}d", _nd, "avg"),
        notes=("Divisor: with count_include_pad the window's positions inside the padded input (the ceil "
               "overhang beyond in + padding is not counted), else those inside the input; "
               "divisor_override (2d/3d) replaces it."
               + (" torch discrepancy: AvgPool3d raises 'input image ... smaller than kernel size' when the "
                  "input is smaller than the kernel along a dim even though padding makes the output valid "
                  "(AvgPool1d/2d accept it); CPU has no float16/bfloat16 kernel." if _nd == 3 else "")),
    ))
    _declare(LayerSpec(
        name=f"MaxUnpool{_nd}d", family="pooling", dims=_nd, kind="unpool",
        cases=_unpool_cases(f"MaxUnpool{_nd}d", _nd),
        reference=_unpool_reference,
        torch=TorchMapping(f"torch.nn.MaxUnpool{_nd}d", args=("input", "indices")),
        tolerance=Tolerance(magnitude="ref", exact="always"),
        comparators={"output": _unpool_output_comparator},
        invalid_cases=_unpool_invalid(f"MaxUnpool{_nd}d", _nd),
        smooth_at=_unpool_smooth,
        notes=("Indices come from a MaxPool of the same geometry, or are random with duplicates. With "
               "duplicates the value written must be one of those sent to the position (torch CPU writes "
               "the last in row-major order); the gradient is a gather, exact."),
    ))

for _nd in (1, 2):
    _declare(LayerSpec(
        name=f"LPPool{_nd}d", family="pooling", dims=_nd, kind="lp",
        cases=_lp_pool_cases(f"LPPool{_nd}d", _nd),
        reference=_lp_pool_reference,
        torch=TorchMapping(f"torch.nn.LPPool{_nd}d"),
        tolerance=LP_TOLERANCE,
        invalid_cases=_sliding_invalid(f"LPPool{_nd}d", _nd, "lp"),
        smooth_at=_lp_smooth,
        notes=("torch's formula: (sign(s)·relu(|s|)·K)^(1/p) with s = avg_pool(x^p) (no abs: negative x with "
               "non-integer p gives NaN; a negative sum gives NaN). A ceil-clipped window divides by its "
               "clipped size before the ·K, i.e. its sum is scaled by K/count — the documentation's "
               "(Σ x^p)^(1/p) holds only for unclipped windows. p = ±inf: max/min of |x|."),
    ))
    _declare(LayerSpec(
        name=f"AdaptiveMaxPool{_nd}d", family="pooling", dims=_nd, kind="adaptive-max",
        cases=_adaptive_cases(f"AdaptiveMaxPool{_nd}d", _nd, selection=True),
        reference=_adaptive_max_reference,
        torch=TorchMapping(f"torch.nn.AdaptiveMaxPool{_nd}d", outputs=("output", "indices")),
        tolerance=SELECTION_TOLERANCE, comparators=SELECTION_COMPARATORS,
        invalid_cases=_adaptive_invalid(f"AdaptiveMaxPool{_nd}d", _nd),
        smooth_at=_no_ties,
        notes=("Window i: [floor(i·in/out), ceil((i+1)·in/out)). Output size 0 is not drawn: torch's forward "
               "returns an empty tensor but its backward raises."),
    ))
    _declare(LayerSpec(
        name=f"AdaptiveAvgPool{_nd}d", family="pooling", dims=_nd, kind="adaptive-avg",
        cases=_adaptive_cases(f"AdaptiveAvgPool{_nd}d", _nd, selection=False),
        reference=_adaptive_avg_reference,
        torch=TorchMapping(f"torch.nn.AdaptiveAvgPool{_nd}d"),
        tolerance=ADAPTIVE_AVG_TOLERANCE,
        invalid_cases=_adaptive_invalid(f"AdaptiveAvgPool{_nd}d", _nd),
        notes="Mean over [floor(i·in/out), ceil((i+1)·in/out)) per dim; None keeps the input size.",
    ))

_declare(LayerSpec(
    name="FractionalMaxPool2d", family="pooling", dims=2, kind="fractional",
    cases=_fractional_cases,
    reference=_fractional_reference,
    torch=TorchMapping("torch.nn.FractionalMaxPool2d", outputs=("output", "indices"),
                       ctor=lambda case: {**case.params, "_random_samples": arg("_random_samples")}),
    tolerance=SELECTION_TOLERANCE, comparators=SELECTION_COMPARATORS,
    invalid_cases=_fractional_invalid,
    smooth_at=_no_ties,
    notes=("Deterministic through _random_samples (N, C, 2): [...,0] drives the width, [...,1] the height. "
           "Window starts: trunc((i+u)·alpha) - trunc(u·alpha), alpha = (in-k)/(out-1), last = in-k, "
           "evaluated in the input's dtype as torch does. torch discrepancy: in bfloat16 that evaluation can "
           "place a window past the input (e.g. W=146, k=1, out=135, u=0.5390625) and torch fails an "
           "internal assert; inputs that large are not drawn."),
))
