"""Pooling declarations' semantics beyond the reference: parameters as the reference needs them,
the reference wrappers, the error model (reduction lengths and magnitudes), the tie-rule
comparators, the smoothness predicates and the statistics of FractionalMaxPool2d[drawn]'s samples.

Max-type layers are checked by rule where the documentation leaves a choice:

- indices: each index must name a position of its window holding the window's maximum (any NaN
  of the window when it holds one); an empty window (no input element) must not name an element;
- grad.input: the scatter of the output gradient to the indices the backend returned.

MaxUnpool with duplicate indices: which of the values sent to one position lands there is
unspecified; the rule checked is that the value written is one of them (positions nobody names
are 0). The gradient is a gather, so it is compared exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import WORST_SHOWN, Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, spec_of
from conformance.stats import StatCheck, bernstein_threshold
from reference import pooling as ref

# ---------------------------------------------------------------------------------------------
# Parameters as the reference needs them
# ---------------------------------------------------------------------------------------------


def spatial_dims(case: Case) -> int:
    """Spatial dimensionality, a fact of the declaration."""
    return spec_of(case).dims  # type: ignore[return-value]


def pool_kind(case: Case) -> str:
    """max | avg | lp | unpool | adaptive-max | adaptive-avg | fractional, a fact of the declaration."""
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


def _like_input(case: Case, arr: np.ndarray) -> np.ndarray:
    """Drop the batch axis again for an unbatched case."""
    return arr[0] if is_unbatched(case) else arr


def _batched_like(case: Case, arr: np.ndarray) -> np.ndarray:
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


def fractional_output(case: Case, x: np.ndarray) -> tuple[int, int]:
    p = case.params
    has_size, has_ratio = p.get("output_size") is not None, p.get("output_ratio") is not None
    if has_size == has_ratio:
        raise ValueError("FractionalMaxPool2d needs exactly one of output_size and output_ratio")
    if has_size:
        return per_dim_param(p["output_size"], 2)  # type: ignore[return-value]
    ratio = p["output_ratio"]
    ratio = tuple(ratio) if isinstance(ratio, (list, tuple)) else (ratio, ratio)
    if not all(0 < r < 1 for r in ratio):
        raise ValueError(f"output_ratio must lie in (0, 1), got {ratio}")
    return int(x.shape[-2] * ratio[0]), int(x.shape[-1] * ratio[1])


def adaptive_output(case: Case, spatial: Sequence[int]) -> tuple[int, ...]:
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
        (kh, kw), (oh, ow) = per_dim_param(case.params["kernel_size"], 2), fractional_output(case, x)
        u = fractional_samples(case).reshape(-1, 2)
        return [ref.fractional_taps(ref.fractional_starts(u[:, 1], spatial[0], oh, kh, _round_fn(case)), kh),
                ref.fractional_taps(ref.fractional_starts(u[:, 0], spatial[1], ow, kw, _round_fn(case)), kw)]
    raise KeyError(kind)


def has_empty_window(case: Case) -> bool:
    """True when some max-pooling window has no tap inside the input (see ALLOW_EMPTY_WINDOWS)."""
    if pool_kind(case) != "max":
        return False
    taps = case_taps(case, batched_input(case).shape[2:])
    return any(not t.valid.any(axis=-1).all() for t in taps)


def maxpool3d_channels_last_neginf_window(case: Case) -> bool:
    """Predicate of a torch discrepancy: MaxPool3d on a channels_last_3d input, where a window whose
    elements are all -inf has its first tap at depth > 0 (torch's index then lacks the depth offset)."""
    if pool_kind(case) != "max" or spatial_dims(case) != 3 or case.inputs["input"].ndim != 5:
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
    if pool_kind(case) != "avg" or spatial_dims(case) != 3:
        return False
    kernel = per_dim_param(case.params["kernel_size"], 3)
    return any(s < k for s, k in zip(case.inputs["input"].shape[-3:], kernel))


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def _with_input_grad(case: Case, res: Result, backward: bool, vjp: Callable[[np.ndarray], np.ndarray]) -> Result:
    """Add the input gradient ``vjp(g)`` (g: the batched output cotangent) when backward is asked."""
    if backward:
        g = S.output_gradient(case, "output", res.outputs["output"])
        res.grads["input"] = _like_input(case, vjp(_batched_like(case, g)))
    return res


def _selection_result(case: Case, x: np.ndarray, out: np.ndarray, idx: np.ndarray, backward: bool) -> Result:
    """Result of a max-type layer: output, indices when asked, and the scatter VJP."""
    res = Result(outputs={"output": _like_input(case, out)}, meta={"argmax": idx})
    if case.params.get("return_indices"):
        res.outputs["indices"] = _like_input(case, idx)
    return _with_input_grad(case, res, backward, lambda g: ref.scatter_by_indices(x.shape, idx, g))


def max_pool_reference(case: Case, backward: bool) -> Result:
    x = batched_input(case)
    g = sliding(case)
    out, idx = ref.max_pool(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
    return _selection_result(case, x, out, idx, backward)


def _avg_args(case: Case) -> tuple[Any, ...]:
    g = sliding(case)
    p = case.params
    return (g.kernel, g.stride, g.padding, g.ceil_mode, bool(p.get("count_include_pad", True)),
            p.get("divisor_override"))


def avg_pool_reference(case: Case, backward: bool) -> Result:
    x = batched_input(case)
    args = _avg_args(case)
    res = Result(outputs={"output": _like_input(case, ref.avg_pool(x, *args))})
    return _with_input_grad(case, res, backward, lambda g: ref.avg_pool_vjp(x.shape, g, *args))


def _lp_args(case: Case) -> tuple[float, tuple[int, ...], tuple[int, ...], bool]:
    g = sliding(case)
    return float(case.params["norm_type"]), g.kernel, g.stride, g.ceil_mode


def lp_pool_reference(case: Case, backward: bool) -> Result:
    x = batched_input(case)
    p, kernel, stride, ceil_mode = _lp_args(case)
    res = Result(outputs={"output": _like_input(case, ref.lp_pool(x, p, kernel, stride, ceil_mode))})
    return _with_input_grad(case, res, backward, lambda g: ref.lp_pool_vjp(x, g, p, kernel, stride, ceil_mode))


def fractional_sample_shape(case: Case) -> tuple[int, int, int]:
    """(N, C, 2): one (width, height) sample pair per plane (N = 1 for an unbatched input)."""
    x = batched_input(case)
    return int(x.shape[0]), int(x.shape[1]), 2


def fractional_samples(case: Case) -> np.ndarray:
    """FractionalMaxPool2d's samples: an input of the case, or the random choice the backend
    reported (``case.choices``). Before the backend has run, a drawn case (whose output shapes do
    not depend on the samples) uses samples a conforming backend could draw."""
    if "_random_samples" in case.choices:
        return np.asarray(case.choices["_random_samples"], dtype=np.float64)
    if "_random_samples" in case.inputs:
        return np.asarray(case.inputs["_random_samples"], dtype=np.float64)
    return S.uniform_samples(np.random.default_rng(case.cotangent_seed), fractional_sample_shape(case), case.dtype)


def fractional_reference(case: Case, backward: bool) -> Result:
    """Fractional max pooling given its samples; a drawn case returns them as its random choice."""
    x = batched_input(case)
    out_size = fractional_output(case, x)
    samples = fractional_samples(case)
    if samples.shape != fractional_sample_shape(case):
        raise ValueError(f"_random_samples must have shape {fractional_sample_shape(case)}, got {samples.shape}")
    kernel = per_dim_param(case.params["kernel_size"], 2)
    out, idx = ref.fractional_max_pool2d(x, kernel, out_size, samples, _round_fn(case))
    result = _selection_result(case, x, out, idx, backward)
    if "_random_samples" in case.choices:
        result.choices["_random_samples"] = samples
    return result


def unpool_geometry(case: Case) -> tuple[tuple[int, ...], ...]:
    nd = spatial_dims(case)
    p = case.params
    kernel = per_dim_param(p["kernel_size"], nd)
    stride = per_dim_param(p.get("stride"), nd) or kernel
    padding = per_dim_param(p.get("padding", 0), nd)
    return kernel, stride, padding


def unpool_reference(case: Case, backward: bool) -> Result:
    x = batched_input(case)
    idx = batched_input(case, "indices")
    kernel, stride, padding = unpool_geometry(case)
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError("kernel_size and stride must be >= 1")
    size = ref.unpool_output_size(x.shape[2:], kernel, stride, padding, case.forward_kwargs.get("output_size"))
    res = Result(outputs={"output": _like_input(case, ref.max_unpool(x, idx, size))})
    return _with_input_grad(case, res, backward, lambda g: ref.max_unpool_vjp(idx, g))


def adaptive_max_reference(case: Case, backward: bool) -> Result:
    x = batched_input(case)
    out, idx = ref.adaptive_max_pool(x, adaptive_output(case, x.shape[2:]))
    return _selection_result(case, x, out, idx, backward)


def adaptive_avg_reference(case: Case, backward: bool) -> Result:
    x = batched_input(case)
    size = adaptive_output(case, x.shape[2:])
    res = Result(outputs={"output": _like_input(case, ref.adaptive_avg_pool(x, size))})
    return _with_input_grad(case, res, backward, lambda g: ref.adaptive_avg_pool_vjp(x.shape, g, size))


# ---------------------------------------------------------------------------------------------
# Error model: reduction lengths and magnitudes
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
    g = np.abs(_batched_like(case, case.cotangents["output"]))
    mag = ref.scatter_by_indices(x.shape, result.meta["argmax"], g)
    return {"grad.input": _like_input(case, mag)}


def lp_magnitudes(case: Case, result: Result) -> dict[str, np.ndarray]:
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
    x = batched_input(case)
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
    x = batched_input(case)
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


def selection_grad_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """With indices from the backend (all of them arg-maxes), the gradient must be the scatter of
    the output gradient to exactly those positions; otherwise to the reference's arg-max."""
    expected = result.grads["input"]
    x = batched_input(case)
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
    y = _batched_like(case, np.asarray(value, dtype=np.float64)).reshape(n * c, -1)
    plane = y.shape[1]
    written = np.take_along_axis(y, flat_idx, axis=1)
    sent = x.reshape(n * c, -1)
    match = (written == sent) | (np.isnan(written) & np.isnan(sent))
    positions = (flat_idx + (np.arange(n * c) * plane)[:, None]).ravel()
    hits = np.bincount(positions, weights=match.ravel().astype(np.float64), minlength=y.size) > 0
    named = np.bincount(positions, minlength=y.size) > 0
    ok = np.where(named, hits, y.ravel() == 0).reshape(y.shape)
    ok = _like_input(case, ok.reshape((n, c) + tuple(expected.shape[-spatial_dims(case):])))
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


# ---------------------------------------------------------------------------------------------
# Randomness of FractionalMaxPool2d[drawn]: torch draws the samples, the suite tests them
# ---------------------------------------------------------------------------------------------

SAMPLE_THRESHOLDS = (0.25, 0.5, 0.75)
# Independence: neighbouring sample pairs along (batch, channel, width/height) of one case.
SAMPLE_AXES = ((0, "samples of a batch"), (1, "channels"), (2, "the width and height samples"))


def fractional_sample_rule(case: Case) -> dict[str, Any]:
    """How a torch-like adapter reads the samples back: ``torch.rand(N, C, 2)`` in the case dtype,
    replayed after the call's seed (F.fractional_max_pool2d draws exactly that, first)."""
    return {"rule": "rand", "shape": list(fractional_sample_shape(case))}


def draw_fractional_samples(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Samples as a conforming backend draws them (the reference backend's choices)."""
    return {"_random_samples": S.uniform_samples(rng, fractional_sample_shape(case), case.dtype)}


def _resolution(dtype: str, t: float) -> float:
    """A bound on |P(u < t) - t| for a uniform variate rounded to ``dtype`` by any rounding, a
    value rounded up to 1 wrapping to 0: the dtype's spacing at t (>= the spacing just below t)
    plus the spacing just below 1."""
    fmt = DTYPES[dtype]
    return float(fmt.ulp(np.float64(t)) + fmt.ulp(np.float64(0.5)))


def _allowing(name: str, description: str, outcomes: np.ndarray, mean: float, slack: float,
              alpha: float) -> StatCheck:
    """Two-sided test that independent 0/1 ``outcomes`` have a mean within ``slack`` of ``mean``:
    the Bernstein threshold at the largest variance in that range, widened by n·slack (a correct
    backend still raises a false alarm with probability <= alpha)."""
    n = int(outcomes.size)
    hi = min(0.5, mean + slack) if mean < 0.5 else max(0.5, mean - slack)
    variance = n * hi * (1 - hi)
    threshold = bernstein_threshold(variance, alpha) + n * slack if n else 0.0
    return StatCheck(name=name, trials=n, observed=float(outcomes.sum()), expected=n * mean,
                     threshold=threshold, false_alarm=alpha, description=description)


def _one_per_seed(samples: Sequence[tuple[Case, dict[str, np.ndarray]]]) -> list[tuple[Case, dict[str, np.ndarray]]]:
    """One (the largest) sample set per call seed: cases run with the same seed draw the same
    stream (derandomized searches repeat small seeds such as 0), so only one of them is an
    independent observation."""
    best: dict[Any, tuple[Case, dict[str, np.ndarray]]] = {}
    for i, (case, choices) in enumerate(samples):
        seed = (case.call or {}).get("seed")
        key = ("case", i) if seed is None else seed
        size = np.asarray(choices["_random_samples"]).size
        if key not in best or size > np.asarray(best[key][1]["_random_samples"]).size:
            best[key] = (case, choices)
    return list(best.values())


def check_fractional_samples(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], alpha: float) -> list[StatCheck]:
    """The reported samples are uniform on [0, 1) (up to the dtype's resolution) and independent.

    - range: every sample lies in [0, 1) (no false alarm possible);
    - for t in 1/4, 1/2, 3/4: the count below t is Binomial(n, P(u < t)) with |P(u < t) - t| at
      most the dtype's resolution at t (``_resolution``);
    - for pairs of neighbouring samples along the batch, the channels and the (width, height)
      pair: whether both fall on the same side of 1/2 agrees with probability q² + (1-q)² (q the
      probability of u < 1/2), 1/2 up to 2·resolution² — a sample shared across channels agrees always.
    The six tests share ``alpha`` equally (union bound), so a conforming backend raises a false
    alarm on a target with probability <= alpha. Cases that ran with the same seed count once.
    """
    dtype = samples[0][0].dtype if samples else "float64"
    arrays = [np.asarray(choices["_random_samples"], dtype=np.float64) for _, choices in _one_per_seed(samples)]
    u = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    each = alpha / (len(SAMPLE_THRESHOLDS) + len(SAMPLE_AXES))
    outside = int(((u < 0) | (u >= 1) | np.isnan(u)).sum())
    checks = [StatCheck(name="range", trials=int(u.size), observed=float(outside), expected=0.0, threshold=0.0,
                        false_alarm=0.0, description="samples outside [0, 1)")]
    for t in SAMPLE_THRESHOLDS:
        checks.append(_allowing(f"below {t}", f"samples below {t}", u < t, t, _resolution(dtype, t), each))
    half = _resolution(dtype, 0.5)
    for axis, what in SAMPLE_AXES:
        same: list[np.ndarray] = []
        for a in arrays:
            pairs = a.shape[axis] // 2
            if pairs:
                first = np.take(a, np.arange(0, 2 * pairs, 2), axis=axis) < 0.5
                second = np.take(a, np.arange(1, 2 * pairs, 2), axis=axis) < 0.5
                same.append((first == second).reshape(-1))
        agree = np.concatenate(same) if same else np.zeros(0, dtype=bool)
        checks.append(_allowing(f"independent {what}", f"neighbouring {what} on the same side of 1/2",
                                agree, 0.5, 2 * half * half, each))
    return checks
