"""Pooling: max, average, power-average (LP), fractional max, max-unpool and adaptive pooling
(torch.nn.functional's API over these: ``reference.pooling_functional``).

Arrays are float64, shaped ``(N, C, *spatial)`` with one to three spatial dims (unbatched inputs
are handled by the caller, which adds and removes the batch axis). Indices are int64 positions in
the row-major flattened spatial dims of each ``(n, c)`` plane.

Every pooling is expressed through *taps*: for each spatial dim, the input positions each output
position reads (``Taps.index``, shape ``(P, out, L)``; ``P`` is 1 when all planes share the
geometry, ``N·C`` when each plane has its own, as in fractional pooling) and whether each tap lies
inside the input (``Taps.valid``; padding taps are invalid). The windows are the outer product of
the per-dim taps; ``reference.pooling_windows`` reduces over them (max and arg-max, sum, the
sum's VJP) one tap of all windows at a time.

Window geometry (torch.nn.MaxPool/AvgPool documentation): with effective kernel e = d·(k-1)+1,

    out = floor((in + 2p - e + (s-1 if ceil_mode else 0)) / s) + 1,

and in ceil mode a last window that would start in the right padding or past it is dropped:
``if (out-1)·s >= in + p: out -= 1``. Parameters must satisfy k, s, d >= 1, 0 <= p <= k // 2
(half the kernel size, not of the dilated kernel) and out >= 1; otherwise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from reference.pooling_windows import (  # noqa: F401  (Taps, window_positions: part of this module's API)
    Taps,
    max_overlap,
    scatter_by_indices,
    window_max,
    window_positions,
    window_sum,
    window_sum_vjp,
)

# ---------------------------------------------------------------------------------------------
# Window geometry
# ---------------------------------------------------------------------------------------------


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length of a sliding-window pooling (torch's rule, see the module docstring).

    Raises ``ValueError`` for k, s, d < 1, p < 0, p > k // 2 or an output length below 1.
    """
    if kernel < 1 or stride < 1 or dilation < 1:
        raise ValueError(f"kernel ({kernel}), stride ({stride}) and dilation ({dilation}) must be >= 1")
    if padding < 0 or padding > kernel // 2:
        raise ValueError(f"padding {padding} must be in [0, kernel_size // 2 = {kernel // 2}]")
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        span += stride - 1
    out = span // stride + 1  # floor division (span may be negative)
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ValueError(f"input length {size} gives output length {out} < 1")
    return int(out)


def sliding_taps(size: int, out: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> Taps:
    """Taps of output o: positions o·s - p + t·d, t in [0, k); valid where inside [0, size)."""
    index = (np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation)
    valid = (index >= 0) & (index < size)
    return Taps(index[None].astype(np.int64), valid[None])


def adaptive_bounds(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive window i covers [floor(i·size/out), ceil((i+1)·size/out))."""
    i = np.arange(out, dtype=np.int64)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end


def adaptive_taps(size: int, out: int) -> Taps:
    """Taps of adaptive pooling: window i reads [start_i, end_i) (see ``adaptive_bounds``)."""
    start, end = adaptive_bounds(size, out)
    length = int((end - start).max()) if out > 0 else 1
    index = start[:, None] + np.arange(length)[None, :]
    valid = index < end[:, None]
    return Taps(np.where(valid, index, start[:, None])[None], valid[None])


def fractional_starts(samples: np.ndarray, size: int, out: int, kernel: int,
                      round_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Window starts of fractional max pooling, one row per sample u (shape ``(P,)`` -> ``(P, out)``).

    torch's pseudo-random sequence (Graham, "Fractional Max-Pooling"), for out > 1:
        alpha = (size - k) / (out - 1)
        start_i = trunc((i + u)·alpha) - trunc(u·alpha),   i < out - 1
        start_{out-1} = size - k.
    torch evaluates it in the input's scalar type; ``round_fn`` rounds after each operation to
    model that (identity: exact float64 arithmetic).
    """
    rnd = round_fn or (lambda v: v)
    u = rnd(np.asarray(samples, dtype=np.float64))[:, None]
    starts = np.full((u.shape[0], out), size - kernel, dtype=np.int64)
    if out > 1:
        alpha = rnd(rnd(np.float64(size - kernel)) / rnd(np.float64(out - 1)))
        i = np.arange(out - 1, dtype=np.float64)[None, :]
        first = np.trunc(rnd(rnd(rnd(i) + u) * alpha))
        offset = np.trunc(rnd(u * alpha))
        starts[:, :-1] = (first - offset).astype(np.int64)
    return starts


def fractional_taps(starts: np.ndarray, kernel: int) -> Taps:
    """Taps of fractional pooling: window i reads [start_i, start_i + k) (always inside)."""
    index = starts[:, :, None] + np.arange(kernel)[None, None, :]
    return Taps(index.astype(np.int64), np.ones(index.shape, dtype=bool))


# ---------------------------------------------------------------------------------------------
# Max pooling (and the scatter shared by every index-returning pooling)
# ---------------------------------------------------------------------------------------------


def max_pool(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             dilation: Sequence[int], ceil_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """MaxPool{1,2,3}d: y = max over each dilated window of the -inf-padded input; ``(y, indices)``."""
    return window_max(x, pool_taps(x.shape[2:], kernel, stride, padding, dilation, ceil_mode))


def pool_taps(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
              dilation: Sequence[int], ceil_mode: bool) -> list[Taps]:
    """Per-dim sliding-window taps (raises ``ValueError`` for invalid parameters)."""
    taps = []
    for size, k, s, p, d in zip(spatial, kernel, stride, padding, dilation):
        out = pool_output_size(int(size), int(k), int(s), int(p), int(d), ceil_mode)
        taps.append(sliding_taps(int(size), out, int(k), int(s), int(p), int(d)))
    return taps


# ---------------------------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------------------------


def avg_divisor(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                ceil_mode: bool, count_include_pad: bool, divisor_override: int | None = None) -> np.ndarray:
    """Divisor of every output window, shape ``out``.

    Window o of one dim spans [o·s - p, o·s - p + k). With ``count_include_pad`` it counts the
    positions inside the padded input [-p, in + p) (padding counted, the ceil-mode overhang beyond
    in + p not); otherwise only those inside the input [0, in). ``divisor_override`` replaces it.
    """
    counts = []
    for size, k, s, p in zip(spatial, kernel, stride, padding):
        out = pool_output_size(int(size), int(k), int(s), int(p), 1, ceil_mode)
        start = np.arange(out) * s - p
        end = start + k
        if count_include_pad:
            counts.append(np.minimum(end, size + p) - start)
        else:
            counts.append(np.minimum(end, size) - np.maximum(start, 0))
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("divisor_override must not be zero")
        return np.full(tuple(len(c) for c in counts), float(divisor_override))
    total = np.ones(())
    for c in counts:
        total = np.multiply.outer(total, c.astype(np.float64))
    return total


def avg_pool(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             ceil_mode: bool, count_include_pad: bool, divisor_override: int | None = None) -> np.ndarray:
    """AvgPool{1,2,3}d: y = (Σ of the input values in the window) / divisor (see ``avg_divisor``)."""
    ones = (1,) * len(kernel)
    taps = pool_taps(x.shape[2:], kernel, stride, padding, ones, ceil_mode)
    div = avg_divisor(x.shape[2:], kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return window_sum(x, taps) / div


def avg_pool_vjp(x_shape: Sequence[int], g: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int], ceil_mode: bool, count_include_pad: bool,
                 divisor_override: int | None = None) -> np.ndarray:
    """dL/dx_j = Σ_{windows o containing j} g_o / divisor_o."""
    ones = (1,) * len(kernel)
    taps = pool_taps(x_shape[2:], kernel, stride, padding, ones, ceil_mode)
    div = avg_divisor(x_shape[2:], kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return window_sum_vjp(x_shape, taps, g / div)


# ---------------------------------------------------------------------------------------------
# Power-average (LP) pooling
# ---------------------------------------------------------------------------------------------


def _lp_parts(x: np.ndarray, p: float, kernel: Sequence[int], stride: Sequence[int],
              ceil_mode: bool) -> tuple[list[Taps], np.ndarray, np.ndarray]:
    """(taps, scale = K / count, v = scale · Σ_window x^p) with K the kernel numel."""
    nd = len(kernel)
    taps = pool_taps(x.shape[2:], kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
    count = avg_divisor(x.shape[2:], kernel, stride, (0,) * nd, ceil_mode, True)
    scale = float(np.prod(kernel)) / count
    v = scale * window_sum(np.power(x, p), taps)
    return taps, scale, v


def lp_pool(x: np.ndarray, norm_type: float, kernel: Sequence[int], stride: Sequence[int],
            ceil_mode: bool) -> np.ndarray:
    """LPPool{1,2}d as torch implements it (torch.nn.functional.lp_pool1d/2d):

        s = avg_pool(x^p) (padding 0; a ceil-clipped window divides by its clipped size)
        y = (sign(s)·relu(|s|) · K)^(1/p) = (K/count · Σ_window x^p)^(1/p),   K = Π kernel.

    x^p has no abs: a negative x with non-integer p gives NaN, and an odd p can make the sum
    negative, whose (1/p)-th power is NaN. For a window not clipped by ceil_mode this is the
    documented f(X) = (Σ x^p)^(1/p); a ceil-clipped window's sum is scaled by K / count, which the
    documentation does not state. p = +inf is max(|x|) and p = -inf is min(|x|) (max pooling).
    """
    nd = len(kernel)
    if np.isinf(norm_type):
        sign = 1.0 if norm_type > 0 else -1.0
        out, _ = max_pool(sign * np.abs(x), kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
        return sign * out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/inf are results here
        _, _, v = _lp_parts(x, norm_type, kernel, stride, ceil_mode)
        return np.power(v, 1.0 / norm_type)


def lp_pool_vjp(x: np.ndarray, g: np.ndarray, norm_type: float, kernel: Sequence[int],
                stride: Sequence[int], ceil_mode: bool, v_override: np.ndarray | None = None) -> np.ndarray:
    """VJP of ``lp_pool``: with v = K/count·Σ x^p,

        dL/dx_j = Σ_{windows o ∋ j} g_o · (1/p)·v_o^(1/p - 1) · K/count_o · p·x_j^(p-1),

    where a window with s = 0 passes no gradient (torch: "if the sum of all inputs to the power
    of p is zero, the gradient is set to zero"). For p = ±inf: sign(x_j)·g at the arg-max/min.
    ``v_override`` replaces v (used to evaluate the gradient's error magnitude).
    """
    nd = len(kernel)
    if np.isinf(norm_type):
        sign = 1.0 if norm_type > 0 else -1.0
        _, idx = max_pool(sign * np.abs(x), kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
        return np.sign(x) * scatter_by_indices(x.shape, idx, g)
    p = float(norm_type)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/inf are results here
        taps, scale, v = _lp_parts(x, p, kernel, stride, ceil_mode)
        if v_override is not None:
            v = v_override
        g_v = np.where(v != 0, g * (1.0 / p) * np.power(v, 1.0 / p - 1.0), 0.0)
        g_terms = window_sum_vjp(x.shape, taps, g_v * scale)
        return g_terms * p * np.power(x, p - 1.0)


def lp_pool_sums(x: np.ndarray, norm_type: float, kernel: Sequence[int], stride: Sequence[int],
                 ceil_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """(v, v_abs): v = K/count·Σ x^p and the same with |x|^p (finite norm types only)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        _, _, v = _lp_parts(x, norm_type, kernel, stride, ceil_mode)
        _, _, v_abs = _lp_parts(np.abs(x), norm_type, kernel, stride, ceil_mode)
    return v, v_abs


# ---------------------------------------------------------------------------------------------
# Fractional max pooling
# ---------------------------------------------------------------------------------------------


def fractional_window_taps(spatial: Sequence[int], kernel: Sequence[int], output_size: Sequence[int],
                           samples: np.ndarray, round_fn: Callable[[np.ndarray], np.ndarray] | None = None
                           ) -> list[Taps]:
    """Per-plane taps of fractional max pooling: ``samples`` ``(N, C, nd)`` holds one u per plane
    and dim in torch's order — for 2-d, u of the width in ``[..., 0]`` and of the height in
    ``[..., 1]``; for 3-d, depth, height, width in ``[..., 0]``, ``[..., 1]``, ``[..., 2]``.
    Requires out + k - 1 <= in per dim (else ``ValueError``)."""
    nd = len(spatial)
    for size, k, o in zip(spatial, kernel, output_size):
        if k < 1 or o < 0:
            raise ValueError(f"kernel {k} must be >= 1 and output size {o} >= 0")
        if o + k - 1 > size:
            raise ValueError(f"pool size {k} too large for input {size} and output {o}")
    u = np.asarray(samples, dtype=np.float64).reshape(-1, nd)
    order = (1, 0) if nd == 2 else tuple(range(nd))  # the sample of each spatial dim
    return [fractional_taps(fractional_starts(u[:, order[d]], int(spatial[d]), int(output_size[d]), int(kernel[d]),
                                              round_fn), int(kernel[d])) for d in range(nd)]


def fractional_max_pool(x: np.ndarray, kernel: Sequence[int], output_size: Sequence[int], samples: np.ndarray,
                        round_fn: Callable[[np.ndarray], np.ndarray] | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """FractionalMaxPool2d/3d: max over windows of size k starting at ``fractional_starts``
    (samples and their order: ``fractional_window_taps``); ``(out, indices)``."""
    return window_max(x, fractional_window_taps(x.shape[2:], kernel, output_size, samples, round_fn))


# ---------------------------------------------------------------------------------------------
# Max unpooling
# ---------------------------------------------------------------------------------------------


def unpool_output_size(in_spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int], output_size: Sequence[int] | None) -> tuple[int, ...]:
    """Spatial size of MaxUnpool's output.

    Default D = (in - 1)·s - 2p + k per dim. An explicit ``output_size`` (spatial dims, or with
    N and C in front) must satisfy D - s < size < D + s per dim, else ``ValueError``.
    """
    nd = len(kernel)
    default = [(int(i) - 1) * int(s) - 2 * int(p) + int(k)
               for i, k, s, p in zip(in_spatial, kernel, stride, padding)]
    if output_size is None:
        sizes = default
    else:
        sizes = [int(v) for v in output_size]
        if len(sizes) == nd + 2:
            sizes = sizes[2:]
        if len(sizes) != nd:
            raise ValueError(f"output_size must have {nd} or {nd + 2} entries, got {len(sizes)}")
        for dim, (size, dflt, s) in enumerate(zip(sizes, default, stride)):
            if not dflt - s < size < dflt + s:
                raise ValueError(f"output_size[{dim}] = {size} outside ({dflt - s}, {dflt + s})")
    if any(v < 0 for v in sizes):
        raise ValueError(f"negative output size {sizes}")
    return tuple(sizes)


def max_unpool(x: np.ndarray, indices: np.ndarray, out_spatial: Sequence[int]) -> np.ndarray:
    """MaxUnpool{1,2,3}d: y = 0 except y[n, c, indices[n, c, o]] = x[n, c, o].

    Several entries naming one position is legal, and which value lands there is not specified;
    this reference writes the last one (in row-major order). Indices must lie in
    ``[0, Π out_spatial)``, else ``ValueError``.
    """
    n, c = x.shape[:2]
    plane = int(np.prod(out_spatial))
    idx = indices.reshape(n * c, -1)
    if idx.size and (idx.min() < 0 or idx.max() >= plane):
        raise ValueError(f"max_unpool: index out of range [0, {plane})")
    out = np.zeros((n * c, plane))
    rows = np.repeat(np.arange(n * c), idx.shape[1])
    out[rows, idx.ravel()] = x.reshape(n * c, -1).ravel()
    return out.reshape(n, c, *out_spatial)


def max_unpool_vjp(indices: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx[n, c, o] = g[n, c, indices[n, c, o]] (a gather; exact, duplicates included)."""
    n, c = g.shape[:2]
    gf = g.reshape(n * c, -1)
    idx = indices.reshape(n * c, -1)
    return np.take_along_axis(gf, idx, axis=1).reshape(indices.shape)


# ---------------------------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------------------------


def adaptive_max_pool(x: np.ndarray, output_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """AdaptiveMaxPool{1,2}d: max over [floor(i·in/out), ceil((i+1)·in/out)) per dim; (y, indices)."""
    taps = [adaptive_taps(int(s), int(o)) for s, o in zip(x.shape[2:], output_size)]
    return window_max(x, taps)


def adaptive_avg_pool(x: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """AdaptiveAvgPool{1,2}d: mean over the adaptive window (Σ then one division by its size)."""
    taps = [adaptive_taps(int(s), int(o)) for s, o in zip(x.shape[2:], output_size)]
    return window_sum(x, taps) / _adaptive_counts(x.shape[2:], output_size)


def adaptive_avg_pool_vjp(x_shape: Sequence[int], g: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """dL/dx_j = Σ_{windows o ∋ j} g_o / |window o|."""
    taps = [adaptive_taps(int(s), int(o)) for s, o in zip(x_shape[2:], output_size)]
    return window_sum_vjp(x_shape, taps, g / _adaptive_counts(x_shape[2:], output_size))


def _adaptive_counts(spatial: Sequence[int], output_size: Sequence[int]) -> np.ndarray:
    total = np.ones(())
    for s, o in zip(spatial, output_size):
        start, end = adaptive_bounds(int(s), int(o))
        total = np.multiply.outer(total, (end - start).astype(np.float64))
    return total


# ---------------------------------------------------------------------------------------------
# Error analysis of LPPool (in units of the format's unit roundoff u)
# ---------------------------------------------------------------------------------------------


def lp_pool_error(x: np.ndarray, g: np.ndarray | None, norm_type: float, kernel: Sequence[int],
                  stride: Sequence[int], ceil_mode: bool, tiny_over_u: float) -> tuple[np.ndarray, np.ndarray | None]:
    """First-order error bounds of ``lp_pool`` (output) and ``lp_pool_vjp`` (input gradient, when
    ``g`` is given) computed in a format of unit roundoff u, in units of u; x is batched.

    With K the window size (output) or the most windows reading one element (gradient):
    output: 5·√K·S, S = (1/p)·|v|^(1/p-1)·v_abs + |y|·|ln v|/p — the sensitivity of the root to
    the rounding of the window sum (v_abs: the sum of |x|^p, large where the sum cancels) and of
    v^(1/p) to the rounding of the exponent 1/p into the format; 5 roundings on each term's path
    (x^p in up to 2, /count, ·K, the root).
    gradient: 7·√K·M, M the VJP on |x| and |g| at the true |v|, each window's |g| scaled by
    1 + |(1/p - 1)·ln v| (rounding of the exponent 1/p - 1), plus the underflow of the per-window
    factor g·v^(1/p-1)/p amplified by K/count·p·|x|^(p-1) (``tiny_over_u``: the smallest
    subnormal over u); 7 roundings on each term's backward path.
    p = ±inf selects (max/min of |x|): output 0 (exact), gradient 7·√K·|g| at the selected element
    (the sum of the cotangents of the windows selecting it).
    NaN bounds (NaN results) are 0: the NaN pattern is compared on its own.
    """
    nd = len(kernel)
    grad = None
    with np.errstate(all="ignore"):
        if np.isinf(norm_type):
            out = np.zeros_like(lp_pool(x, norm_type, kernel, stride, ceil_mode))
            if g is not None:
                sign = 1.0 if norm_type > 0 else -1.0
                taps = pool_taps(x.shape[2:], kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
                _, idx = window_max(sign * np.abs(x), taps)
                grad = 7.0 * np.sqrt(max_overlap(x.shape[2:], taps)) * scatter_by_indices(x.shape, idx, np.abs(g))
            return out, grad
        p = float(norm_type)
        v, v_abs = lp_pool_sums(x, p, kernel, stride, ceil_mode)
        log_v = np.where(v != 0, np.abs(np.log(np.abs(v))), 0.0)
        sens = np.where(v_abs == 0, 0.0, (1.0 / p) * np.power(np.abs(v), 1.0 / p - 1.0) * v_abs)
        sens = sens + np.abs(np.power(np.abs(v), 1.0 / p)) * log_v / p
        out = 5.0 * np.sqrt(float(np.prod(kernel))) * np.where(np.isnan(sens), 0.0, sens)
        if g is not None:
            ga = np.abs(g) * (1.0 + abs(1.0 / p - 1.0) * log_v)
            mag = lp_pool_vjp(np.abs(x), ga, p, kernel, stride, ceil_mode, v_override=np.abs(v))
            unit = p * np.power(np.abs(v), 1.0 - 1.0 / p)
            spread = lp_pool_vjp(np.abs(x), unit, p, kernel, stride, ceil_mode, v_override=np.abs(v))
            mag = mag + spread * tiny_over_u
            taps = pool_taps(x.shape[2:], kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
            grad = 7.0 * np.sqrt(max_overlap(x.shape[2:], taps)) * np.where(np.isnan(mag), 0.0, mag)
    return out, grad
