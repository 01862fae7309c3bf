"""Predicates for the torch-cuda known discrepancies (``conformance/known/cuda_elementwise.toml``
and the ``cuda-*`` entries of ``sparse.toml``): conditions on a case's values that a ``when``
expression cannot say. Each takes the Case and returns a bool; pure NumPy, no torch."""

from __future__ import annotations

import numpy as np

from backends.base import Case
from conformance.numerics.normalization import fma

# -- class-index targets outside [0, C) (CUDA: a device-side assert) ------------------------------


def _class_axis(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def class_target_out_of_range(case: Case) -> bool:
    """An invalid case of NLLLoss / NLLLoss2d / CrossEntropyLoss / MultiMarginLoss whose
    class-index target holds a counted value outside [0, C) (a value equal to ``ignore_index``
    is not counted). torch's CUDA kernels check it with CUDA_KERNEL_ASSERT (the device context
    is lost); the CPU raises IndexError."""
    if not case.invalid:
        return False
    x = np.asarray(case.inputs["input"])
    t = np.asarray(case.inputs["target"])
    if t.dtype.kind not in "iu" or t.size == 0:
        return False
    classes = x.shape[_class_axis(x.ndim)] if x.ndim else 1
    ignore = case.params.get("ignore_index")
    counted = t if ignore is None else t[t != ignore]
    return bool(np.any((counted < 0) | (counted >= classes)))


# -- Embedding / EmbeddingBag max_norm renormalisation on CUDA -----------------------------------


def _indices(case: Case) -> np.ndarray:
    return np.asarray(case.inputs["input"]).reshape(-1).astype(np.int64)


def _norms_cuda(rows: np.ndarray, p: float) -> np.ndarray:
    """What torch 2.11's CUDA renorm_kernel computes: Σ|x| for p = 1, Σx² for p = 2 and Σ pow(x, p)
    otherwise (no absolute value: NaN for a negative x and a non-integer p, negative terms for an
    odd p, pow(x, ±inf) / pow(x, 0) for p = ±inf / 0), then pow(v, 1/p)."""
    with np.errstate(all="ignore"):
        if p == 1:
            v = np.sum(np.abs(rows), axis=1)
        elif p == 2:
            v = np.sum(rows * rows, axis=1)
        else:
            v = np.sum(np.power(rows, p), axis=1)
        return np.power(v, 1.0 / p) if p != 0 else np.power(v, np.inf)


def _renormed(rows: np.ndarray, norms: np.ndarray, max_norm: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
    return rows * scale[:, None]


def _referenced(case: Case) -> tuple[np.ndarray, np.ndarray] | None:
    """(the unique indices a valid max_norm case looks up, the weight in float64), or None."""
    if case.invalid or case.params.get("max_norm") is None:
        return None
    idx = _indices(case)
    if idx.size == 0:
        return None
    return np.unique(idx), np.asarray(case.inputs["weight"], dtype=np.float64)


def _referenced_rows(case: Case) -> np.ndarray | None:
    found = _referenced(case)
    return None if found is None else found[1][found[0]]


def _renorm_beyond_bound(case: Case, uniq: np.ndarray, got: np.ndarray) -> bool:
    """Whether a backend whose renormalisation leaves the referenced rows ``uniq`` of the weight as
    ``got`` (rounded to the case's dtype) would be outside the case's bound in some compared tensor:
    the reference evaluated on that weight with max_norm=None gives what such a backend returns
    (output, gradients; state.weight is that weight), and ``beyond_bound`` compares it with the
    true reference."""
    import dataclasses

    from conformance.dtypes import DTYPES
    from conformance.numerics.elementwise import beyond_bound
    from conformance.spec import spec_of

    w = np.asarray(case.inputs["weight"], dtype=np.float64).copy()
    with np.errstate(all="ignore"):
        w[uniq] = DTYPES[case.dtype].round(np.asarray(got, dtype=np.float64))
    alt_case = dataclasses.replace(case, params={**case.params, "max_norm": None},
                                   inputs={**case.inputs, "weight": w})
    with np.errstate(all="ignore"):
        alt = spec_of(case).evaluate(alt_case, case.cotangents).tensors()
    alt["state.weight"] = w  # the renormalised weight (max_norm=None records no state)
    return beyond_bound(case, alt)


def embedding_cuda_renorm_norm_differs(case: Case) -> bool:
    """Embedding / EmbeddingBag with max_norm, a contiguous weight, and some referenced row whose
    renormalisation by CUDA's norm (``_norms_cuda``: pow without the absolute value for
    norm_type not 1 or 2) differs from the renormalisation by the true p-norm by more than the
    case's bound in some compared tensor (e.g. norm_type inf, rows of 1.0078 with max_norm 1: CUDA's
    norm is 1, the row is not rescaled, 0.8 % off; rows of 1.0039 in float16 are within the bound)."""
    if case.layout("weight").kind != "contiguous":
        return False
    rows = _referenced_rows(case)
    if rows is None or rows.size == 0:
        return False
    p, max_norm = float(case.params["norm_type"]), float(case.params["max_norm"])
    if p in (1.0, 2.0):
        return False
    got = _renormed(rows, _norms_cuda(rows, p), max_norm)
    return _renorm_beyond_bound(case, np.unique(_indices(case)), got)


def _cuda_renorm_noncontiguous(case: Case, rows_idx: np.ndarray, w: np.ndarray, p: float,
                               max_norm: float) -> np.ndarray | None:
    """The rows ``rows_idx`` of the weight after torch 2.11's CUDA embedding_renorm_ on a weight
    that is not contiguous: the kernel takes a row's length from self.stride(0) and walks it with
    self.stride(1). A transposed (permuted) weight has stride(0) = 1: only the first element of each
    row makes the norm and is rescaled. A strided view with a row step > 1 reads the NaN gap after
    the row: the norm is NaN and nothing is rescaled. None where the model cannot say (a strided view
    whose column step > 1 reads and rescales the following rows)."""
    layout = case.layout("weight")
    got = w[rows_idx].copy()
    if layout.kind == "permuted":
        if tuple(layout.perm) != (1, 0):
            return None
        first = got[:, :1]
        norms = _norms_cuda(first, p)
        with np.errstate(all="ignore"):
            scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        got[:, 0] = first[:, 0] * scale
        return got
    if layout.kind == "strided":
        step = tuple(layout.step) or (1, 1)
        if step[0] > 1 and w.shape[1] > 0:
            return got  # the gap holds NaN: norm NaN, no rescaling
        return None
    return None


def embedding_noncontiguous_weight_renormalises(case: Case) -> bool:
    """Embedding / EmbeddingBag with max_norm and a weight that is not contiguous (transposed or a
    strided view): torch 2.11's CUDA renorm reads a row as self.stride(0) elements
    (``_cuda_renorm_noncontiguous``), so the renormalised rows differ from the CPU's beyond the
    case's bound. Where the model cannot say, the rows are taken as not rescaled."""
    found = None if case.layout("weight").kind == "contiguous" else _referenced(case)
    if found is None:
        return False
    uniq, w = found
    rows = w[uniq]
    p, max_norm = float(case.params["norm_type"]), float(case.params["max_norm"])
    got = _cuda_renorm_noncontiguous(case, uniq, w, p, max_norm)
    return _renorm_beyond_bound(case, uniq, rows if got is None else got)


def embedding_bag_empty_with_max_norm(case: Case) -> bool:
    """A valid EmbeddingBag case with max_norm and no index at all that reaches the renormalisation:
    CUDA's embedding_renorm_ launches its kernel over zero unique indices ("CUDA error: invalid
    argument"). A 2-d input of B > 0 bags of length 0 does not get there: F.embedding_bag's
    torch.arange(0, 0, 0) for its offsets raises "step must be nonzero" first (the entry
    embedding-bag-2d-zero-length-bags-raise)."""
    x = np.asarray(case.inputs["input"])
    if x.ndim == 2 and x.shape[0] > 0 and x.shape[1] == 0:
        return False
    return not case.invalid and case.params.get("max_norm") is not None and x.size == 0


# -- DataParallel: scale_grad_by_freq counts per replica -----------------------------------------


def _chunks(n: int, k: int) -> list[slice]:
    """torch.Tensor.chunk(k) along dim 0 (scatter's split): chunks of ceil(n / k)."""
    if n == 0:
        return []
    size = -(-n // k)
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _frequency_split(case: Case) -> tuple[bool, bool]:
    """(an Embedding(scale_grad_by_freq=True) first layer sees a non-padding index in more than one
    replica's chunk, the stack holds a ReLU)."""
    layers = case.params.get("layers") or ()
    if (case.invalid or not layers or layers[0].get("op") != "Embedding"
            or not layers[0]["params"].get("scale_grad_by_freq")):
        return False, False
    relu = any(layer.get("op") in ("ReLU",) for layer in layers)
    x = np.asarray(case.inputs["input"])
    if x.ndim == 0:
        return False, relu
    k = len(case.params.get("device_ids") or ()) or 1
    pad = layers[0]["params"].get("padding_idx")
    rows = layers[0]["params"].get("num_embeddings")
    if pad is not None and pad < 0 and rows is not None:
        pad += rows
    seen: dict[int, int] = {}
    for c, sl in enumerate(_chunks(x.shape[0], k)):
        for v in np.unique(x[sl]):
            v = int(v)
            if v == pad:
                continue
            if v in seen and seen[v] != c:
                return True, relu
            seen.setdefault(v, c)
    return False, relu


def data_parallel_freq_split(case: Case) -> bool:
    """DataParallel over an Embedding(scale_grad_by_freq=True) whose input repeats an index across
    the replicas' chunks, and no ReLU in the stack (so the embedding's cotangents are not cut)."""
    split, relu = _frequency_split(case)
    return split and not relu


def data_parallel_freq_split_relu(case: Case) -> bool:
    """The same, with a ReLU in the stack (which may zero the cotangents of the repeated rows)."""
    split, relu = _frequency_split(case)
    return split and relu


# -- Hardsigmoid / Hardswish: CUDA's float constants ----------------------------------------------

_SIXTH_F32 = float(np.float32(1.0 / 6.0))  # CUDA's opmath_t(1.0f / 6.0f), 0.1666666716337204


def hardsigmoid_cuda_float_sixth(case: Case) -> bool:
    """torch 2.11's CUDA Hardsigmoid is min(max(x + 3, 0), 6)·(1.0f/6.0f) and its backward
    g·(1.0f/6.0f) for -3 < x < 3, the constant a float even for float64: the case (float64) is
    beyond its bound there (the output of x >= 3 is 1.00000003, not 1)."""
    from conformance.numerics.elementwise import beyond_bound

    if case.dtype != "float64":
        return False
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    with np.errstate(all="ignore"):
        out = np.minimum(np.maximum(x + 3.0, 0.0), 6.0) * _SIXTH_F32
        alternatives = {"output": out, "state.input": out}
        g = case.cotangents.get("output")
        if g is not None:
            inside = (x > -3) & (x < 3)
            alternatives["grad.input"] = np.where(inside, np.asarray(g, dtype=np.float64) * _SIXTH_F32, 0.0)
    return beyond_bound(case, alternatives)


def hardswish_cuda(case: Case) -> bool:
    """torch 2.11's CUDA Hardswish is x·min(max(x + 3, 0), 6)·(1.0f/6.0f): NaN at -inf, inf where
    6·x overflows the compute format (the CPU entries' triggers), and in float64 the float 1/6 puts
    the output beyond its bound."""
    from conformance.numerics.elementwise import beyond_bound, hardswish_overflows, has_minus_inf_input

    if has_minus_inf_input(case) or hardswish_overflows(case):
        return True
    if case.dtype != "float64":
        return False
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    with np.errstate(all="ignore"):
        out = x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) * _SIXTH_F32
    return beyond_bound(case, {"output": out, "state.input": out})


# -- constant_: CUDA's fill always range-checks ---------------------------------------------------


def one_element_half_fill_checks_range(case: Case) -> bool:
    """constant_ of a one-element float16/bfloat16 tensor with a finite val above the format's largest
    finite value that rounds to it (a valid case): the CPU fills the rounded value (its one-element
    path), CUDA's fill checks the unrounded value and raises like for any other tensor (the CPU entry
    init-constant-range-checked-before-rounding covers the other tensors)."""
    from conformance.dtypes import DTYPES
    from conformance.numerics.init import above_largest

    return (not case.invalid and case.dtype in ("float16", "bfloat16") and case.inputs["tensor"].size == 1
            and above_largest(case) and abs(case.params["val"]) > DTYPES[case.dtype].max_value)


# -- RMSNorm: the fused CUDA kernel and infinite inputs ----------------------------------------------


def rms_norm_fused_infinite_row(case: Case) -> bool:
    """RMSNorm (not channels_last: those take the composite path) with some normalised row that
    holds ±inf and a finite element: torch 2.11's fused CUDA kernel returns NaN for the whole row
    (its rstd is NaN), where x·rsqrt(mean(x²) + eps) is ±0 at the finite elements."""
    if case.invalid or case.layout("input").kind == "channels_last":
        return False
    from conformance.numerics.normalization import RN

    x = np.asarray(case.inputs["input"], dtype=np.float64)
    if not x.size:
        return False
    axes = RN.trailing_axes(x, case.params["normalized_shape"])
    return bool(np.any(np.isinf(x).any(axis=axes) & np.isfinite(x).any(axis=axes)))


# -- GroupNorm: the CUDA backward for one element per channel (HxW == 1) in float16/bfloat16 -------


def _warp_sum32(terms: np.ndarray) -> np.ndarray:
    """cuda_utils::WarpReduceSum over the last axis as the 1d-backward kernel forms it: thread t
    accumulates terms t, t + 32, ... in float32, then val += shfl_down(val, k) for k = 16, 8, 4, 2, 1
    (lane 0's value)."""
    lanes = np.zeros(terms.shape[:-1] + (32,), dtype=np.float32)
    for i in range(terms.shape[-1]):
        lanes[..., i % 32] = lanes[..., i % 32] + terms[..., i]
    k = 16
    while k:
        shifted = np.zeros_like(lanes)
        shifted[..., :32 - k] = lanes[..., k:]
        lanes = lanes + shifted
        k //= 2
    return lanes[..., 0]


def group_norm_1d_backward_half(case: Case) -> bool:
    """GroupNorm in float16/bfloat16 on an input with one element per channel (N, C) or (N, C, 1, ...):
    torch 2.11's CUDA backward takes GroupNorm1dBackward, whose Compute1dBackwardFusedParamsCUDAKernel
    accumulates ``sum1 += dY[i] * X[i] * gamma`` with ``dY[i] * X[i]`` a product of two T values,
    i.e. rounded to T, while ``sum2 * mean`` is exact in float; the difference is multiplied by rstd³
    (mean and rstd are stored in T too, eps cast to T): c2 = (sum2·mean − sum1)·rstd³/D,
    c3 = −c2·mean − sum2·rstd/D, dX = rstd·gamma·dY + c2·X + c3 in float (rounded to T), with the
    multiply-adds nvcc contracts to fma: c3 = fma(−c2, mean, −sum2·rstd/D) and
    dX = fma(c1, dY, c2·X) + c3 (this reproduces the verification run's case c80f2a2eba5a exactly:
    X = 4320, eps 1e-3, dY 0.537 and −0.0779 give −4 and −0.5). With one channel per group (X = mean)
    the exact gradient is 0 and the rounding residue is left. The predicate evaluates that
    computation and holds where grad.input is beyond the bound."""
    from conformance.dtypes import DTYPES
    from conformance.numerics.elementwise import beyond_bound

    if case.invalid or case.dtype not in ("float16", "bfloat16"):
        return False
    g = case.cotangents.get("output")
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    groups, channels = int(case.params["num_groups"]), int(case.params["num_channels"])
    if g is None or x.ndim < 2 or x.shape[1] != channels or x.shape[0] == 0 or channels == 0:
        return False
    if groups <= 0 or channels % groups or int(np.prod(x.shape[2:], dtype=np.int64)) != 1:
        return False
    rnd = DTYPES[case.dtype].round
    f32 = np.float32
    n, d = x.shape[0], channels // groups
    with np.errstate(all="ignore"):
        X = x.reshape(n, groups, d)
        dy = np.asarray(g, dtype=np.float64).reshape(n, groups, d)
        w = case.inputs.get("weight")
        gamma = (np.ones((groups, d)) if w is None or not case.params.get("affine", True)
                 else np.asarray(w, dtype=np.float64).reshape(groups, d))
        eps = f32(rnd(np.asarray(float(case.params["eps"]))))
        mean = rnd(X.mean(axis=2)).astype(f32)  # stored in T
        var = X.var(axis=2).astype(f32)
        rstd = rnd((f32(1) / np.sqrt(var + eps)).astype(np.float64)).astype(f32)  # stored in T
        prod = rnd(dy * X).astype(f32)  # T * T -> T
        gamma32, dy32, x32 = np.broadcast_to(gamma.astype(f32)[None], X.shape), dy.astype(f32), X.astype(f32)
        sum1 = _warp_sum32((prod.astype(np.float64) * gamma32).astype(f32))
        sum2 = _warp_sum32((dy32.astype(np.float64) * gamma32).astype(f32))
        s = f32(1) / f32(d)
        c2 = fma(sum2, mean, -sum1, "float32").astype(np.float32) * rstd * rstd * rstd * s
        c3 = fma(-c2, mean, -(sum2 * rstd * s), "float32").astype(np.float32)
        c1 = rstd[:, :, None] * gamma32
        dx = fma(c1, dy32, c2[:, :, None] * x32, "float32").astype(np.float32) + c3[:, :, None]
        dx = rnd(dx.astype(np.float64))
    return beyond_bound(case, {"grad.input": dx.reshape(x.shape)})


# -- LocalResponseNorm: the float16/bfloat16 composite on inputs of 4 or more dims -----------------


def lrn_composite_nd_half_shows(case: Case) -> bool:
    """F.local_response_norm in float16/bfloat16 on an input of 4 or more dims (the avg_pool3d path,
    which the CPU has no half kernel for, so the CPU entries lrn-composite-out-of-range-* leave these
    cases out): the composite replayed op by op in the dtype (``lrn_composite_result``: x·x, the
    window average, α·avg + k, pow, x/p and autograd's chain back, each rounded) is non-finite where
    the reference is finite, or the reverse, or beyond the bound (``shows_against_reference``)."""
    from conformance.dtypes import DTYPES
    from conformance.numerics.elementwise import shows_against_reference
    from conformance.numerics.normalization import lrn_composite_result, lrn_view_fails

    x = case.inputs["input"]
    if (case.invalid or case.dtype not in ("float16", "bfloat16") or x.ndim < 4 or not x.size
            or lrn_view_fails(case)):
        return False
    result = lrn_composite_result(case)
    if float(case.params["beta"]) == 0.0 and "grad.input" in result:
        # torch's pow backward gives 0 for exponent 0 (not 0·d^-1, NaN at d = 0): grad.input = g/p, p = 1
        result["grad.input"] = DTYPES[case.dtype].round(np.asarray(case.cotangents["output"], dtype=np.float64))
    return shows_against_reference(case, result)


# -- RMSNorm: channels_last (composite path) rstd³ underflow in bfloat16 ----------------------------


def rms_norm_channels_last_finite_row_rstd_cubed_underflow(case: Case) -> bool:
    """RMSNorm on a channels_last input (torch 2.11's CUDA composite path, whose backward forms
    rstd³ like the CPU's) with some normalised row of finite elements whose root mean square is beyond
    min_normal^(-1/3) of the compute format (2^42 for float32/bfloat16): rstd³ underflows and the
    x̂·mean(ĝ·x̂) term of the input gradient is lost (``rms_norm_rstd_cubed_underflow``, restricted to
    rows without ±inf/NaN, whose rms is not finite anyway)."""
    from conformance.numerics.normalization import RN, trailing_eps

    if case.invalid or case.dtype == "float16" or case.layout("input").kind != "channels_last":
        return False
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    if not x.size:
        return False
    axes = RN.trailing_axes(x, case.params["normalized_shape"])
    compute = "float64" if case.dtype == "float64" else "float32"
    from conformance.dtypes import DTYPES

    with np.errstate(all="ignore"):
        finite = np.isfinite(x).all(axis=axes)
        rms = np.sqrt((x * x).mean(axis=axes) + trailing_eps(case))
        return bool(np.any(finite & (rms ** 3 > 1 / DTYPES[compute].min_normal)))
