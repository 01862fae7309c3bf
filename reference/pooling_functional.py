"""torch.nn.functional's pooling API over the pooling reference (``reference.pooling``): torch's
names, argument order and defaults (max_pool1d..3d, avg_pool*, lp_pool*, fractional_max_pool2d/3d,
max_unpool*, adaptive_max_pool*, adaptive_avg_pool*), each registered with its VJP, and the rules
that turn torch's arguments into the reference's (per-dim parameters, unbatched inputs, the output
sizes of adaptive and fractional pooling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reference.pooling import (
    adaptive_avg_pool,
    adaptive_avg_pool_vjp,
    adaptive_max_pool,
    avg_pool,
    avg_pool_vjp,
    fractional_max_pool,
    lp_pool,
    lp_pool_vjp,
    max_pool,
    max_unpool,
    max_unpool_vjp,
    unpool_output_size,
)
from reference.pooling_windows import scatter_by_indices
from reference.registry import functional


def _per_dim(value: Any, nd: int, name: str) -> tuple[int, ...]:
    """An int, or a sequence of nd ints (a 1-sequence is repeated), as an nd-tuple."""
    if isinstance(value, (list, tuple)):
        values = tuple(value) * nd if len(value) == 1 else tuple(value)
    else:
        values = (value,) * nd
    if len(values) != nd or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or {nd} ints, got {value!r}")
    return tuple(int(v) for v in values)


def _batched(input: np.ndarray, nd: int, name: str) -> tuple[np.ndarray, bool]:
    """(input with a batch axis, whether it had one): (N, C, *spatial) or unbatched (C, *spatial)."""
    x = np.asarray(input, dtype=np.float64)
    if x.ndim == nd + 2:
        return x, True
    if x.ndim == nd + 1:
        return x[None], False
    raise ValueError(f"{name} expects a {nd + 1}-d or {nd + 2}-d input, got shape {x.shape}")


def _strip(value: np.ndarray, batched: bool) -> np.ndarray:
    return value if batched else value[0]


def _cotangent(cotangent: Any) -> np.ndarray:
    """The float output's cotangent (the first of a tuple: the indices have none)."""
    return np.asarray(cotangent[0] if isinstance(cotangent, tuple) else cotangent, dtype=np.float64)


def _sliding(nd: int, kernel_size: Any, stride: Any, padding: Any, dilation: Any = 1
             ) -> tuple[tuple[int, ...], ...]:
    """Per-dim kernel, stride (default: the kernel; an empty sequence too), padding, dilation."""
    kernel = _per_dim(kernel_size, nd, "kernel_size")
    strides = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) else \
        _per_dim(stride, nd, "stride")
    return kernel, strides, _per_dim(padding, nd, "padding"), _per_dim(dilation, nd, "dilation")


def _max_pool_nd(nd: int, input: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                 ceil_mode: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    xb, batched = _batched(input, nd, f"max_pool{nd}d")
    kernel, strides, pads, dils = _sliding(nd, kernel_size, stride, padding, dilation)
    out, idx = max_pool(xb, kernel, strides, pads, dils, bool(ceil_mode))
    return out, idx, batched


def _max_pool(nd: int) -> Callable[..., Any]:
    def forward(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        out, idx, batched = _max_pool_nd(nd, input, kernel_size, stride, padding, dilation, ceil_mode)
        out = _strip(out, batched)
        return (out, _strip(idx, batched)) if return_indices else out

    def vjp(cotangent, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        """{"input": the cotangent scattered to each window's first arg-max (summed where windows share it)}."""
        _, idx, batched = _max_pool_nd(nd, input, kernel_size, stride, padding, dilation, ceil_mode)
        g = _cotangent(cotangent)
        g = g if batched else g[None]
        return {"input": _strip(scatter_by_indices((idx.shape[0], idx.shape[1], *np.shape(input)[-nd:]), idx, g),
                                batched)}

    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        shape = (2, 3) + (9, 8, 7)[:nd]
        return (rng.standard_normal(shape), 3), {"stride": 2, "padding": 1, "dilation": (2, 1, 1)[:nd],
                                                  "ceil_mode": True, "return_indices": nd == 2}

    forward.__doc__ = f"""Max pooling over {nd}-d dilated windows of the -inf-padded input:
    y[o] = max_t x[o·s - p + t·d] per dim. input (N, C, *L) or (C, *L) with {nd} spatial dims;
    kernel_size, stride (default: kernel_size), padding (<= kernel_size // 2) and dilation an int
    or {nd} ints. Output length floor((L + 2p - d·(k-1) - 1 + (s-1 if ceil_mode)) / s) + 1, a
    ceil-mode window starting in the right padding dropped. A window holding a NaN gives NaN;
    ties: the first maximum in window order (row-major over the kernel) is the index, a flat
    position in the input's spatial plane. A window with no tap in the input gives -inf and
    index -1. Returns (output, indices) with return_indices."""
    forward.__name__ = f"max_pool{nd}d"
    return functional(f"max_pool{nd}d", vjp=vjp, example=example)(forward)


max_pool1d = _max_pool(1)
max_pool2d = _max_pool(2)
max_pool3d = _max_pool(3)


def _avg_parts(nd: int, input: Any, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool, divisor_override: int | None) -> tuple[np.ndarray, bool, tuple[Any, ...]]:
    xb, batched = _batched(input, nd, f"avg_pool{nd}d")
    kernel, strides, pads, _ = _sliding(nd, kernel_size, stride, padding)
    return xb, batched, (kernel, strides, pads, bool(ceil_mode), bool(count_include_pad), divisor_override)


def _avg_forward(nd: int, *args: Any) -> np.ndarray:
    xb, batched, geometry = _avg_parts(nd, *args)
    return _strip(avg_pool(xb, *geometry), batched)


def _avg_vjp(nd: int, cotangent: Any, *args: Any) -> dict[str, np.ndarray]:
    xb, batched, geometry = _avg_parts(nd, *args)
    g = _cotangent(cotangent)
    return {"input": _strip(avg_pool_vjp(xb.shape, g if batched else g[None], *geometry), batched)}


def _avg_example(nd: int) -> Callable[[np.random.Generator], tuple[tuple, dict]]:
    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        extra = {"divisor_override": 5} if nd == 3 else {}
        return ((rng.standard_normal((2, 3) + (9, 8, 7)[:nd]), 3),
                {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": nd != 2, **extra})
    return example


def _avg_pool1d_vjp(cotangent, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """{"input": Σ over the windows reading each element of g / divisor}."""
    return _avg_vjp(1, cotangent, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def _avg_pool2d_vjp(cotangent, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                    divisor_override=None):
    """{"input": Σ over the windows reading each element of g / divisor}."""
    return _avg_vjp(2, cotangent, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _avg_pool3d_vjp(cotangent, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                    divisor_override=None):
    """{"input": Σ over the windows reading each element of g / divisor}."""
    return _avg_vjp(3, cotangent, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


@functional(vjp=_avg_pool1d_vjp, example=_avg_example(1))
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling over 1-d windows: y[o] = Σ_window x / divisor. input (N, C, L) or (C, L);
    kernel_size, stride (default: kernel_size) and padding (<= kernel_size // 2) an int or a
    1-tuple; the output length as for max pooling (dilation 1). Divisor: with count_include_pad the
    window's positions inside [-p, L + p) (the ceil-mode overhang beyond it not counted), else
    those inside the input."""
    return _avg_forward(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


@functional(vjp=_avg_pool2d_vjp, example=_avg_example(2))
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling over 2-d windows, ``avg_pool1d``'s rule per dim (the divisor a product of
    the per-dim counts); divisor_override, when given, replaces the divisor of every window.
    input (N, C, H, W) or (C, H, W)."""
    return _avg_forward(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


@functional(vjp=_avg_pool3d_vjp, example=_avg_example(3))
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling over 3-d windows, ``avg_pool2d``'s rule per dim. input (N, C, D, H, W) or
    (C, D, H, W)."""
    return _avg_forward(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _lp_pool(nd: int) -> Callable[..., Any]:
    def parts(input, kernel_size, stride):
        xb, batched = _batched(input, nd, f"lp_pool{nd}d")
        kernel, strides, _, _ = _sliding(nd, kernel_size, stride, 0)
        return xb, batched, kernel, strides

    def forward(input, norm_type, kernel_size, stride=None, ceil_mode=False):
        xb, batched, kernel, strides = parts(input, kernel_size, stride)
        return _strip(lp_pool(xb, float(norm_type), kernel, strides, bool(ceil_mode)), batched)

    def vjp(cotangent, input, norm_type, kernel_size, stride=None, ceil_mode=False):
        """{"input": Σ_windows g·v^(1/p-1)·K/count·x^(p-1)} (0 where the window's sum is 0)."""
        xb, batched, kernel, strides = parts(input, kernel_size, stride)
        g = _cotangent(cotangent)
        return {"input": _strip(lp_pool_vjp(xb, g if batched else g[None], float(norm_type), kernel, strides,
                                            bool(ceil_mode)), batched)}

    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        x = rng.uniform(0.5, 2.0, (2, 3) + (9, 8, 7)[:nd])
        return (x, (2.0, 1.5, 3.0)[nd - 1], 3 if nd == 1 else (3, 2, 2)[:nd]), {"stride": 2, "ceil_mode": True}

    forward.__doc__ = f"""Power-average pooling over {nd}-d windows, as torch computes it:
    s = avg_pool{nd}d(x^p) (padding 0), y = (sign(s)·relu(|s|)·K)^(1/p), K = Π kernel_size;
    i.e. (K/count·Σ_window x^p)^(1/p), which is the documented (Σ x^p)^(1/p) except for a
    ceil-clipped window (count < K). x^p has no abs: negative x with non-integer p, or a negative
    sum, gives NaN. p = +inf: max |x|; p = -inf:
    min |x|. input (N, C, *L) or (C, *L); stride defaults to kernel_size."""
    forward.__name__ = f"lp_pool{nd}d"
    return functional(f"lp_pool{nd}d", vjp=vjp, example=example)(forward)


lp_pool1d = _lp_pool(1)
lp_pool2d = _lp_pool(2)
lp_pool3d = _lp_pool(3)


def adaptive_output_size(output_size: Any, spatial: Sequence[int]) -> tuple[int, ...]:
    """The output size of an adaptive pooling: an int or a sequence per dim, None keeping that
    dim's input size; negative sizes raise ``ValueError``."""
    nd = len(spatial)
    sizes = tuple(output_size) if isinstance(output_size, (list, tuple)) else (output_size,) * nd
    if len(sizes) != nd:
        raise ValueError(f"output_size must have {nd} entries, got {output_size!r}")
    out = tuple(int(s) if o is None else int(o) for o, s in zip(sizes, spatial))
    if any(o < 0 for o in out):
        raise ValueError(f"output_size must be >= 0, got {output_size!r}")
    return out


def _adaptive_max_pool(nd: int) -> Callable[..., Any]:
    def parts(input, output_size):
        xb, batched = _batched(input, nd, f"adaptive_max_pool{nd}d")
        out, idx = adaptive_max_pool(xb, adaptive_output_size(output_size, xb.shape[2:]))
        return xb, batched, out, idx

    def forward(input, output_size, return_indices=False):
        _, batched, out, idx = parts(input, output_size)
        return (_strip(out, batched), _strip(idx, batched)) if return_indices else _strip(out, batched)

    def vjp(cotangent, input, output_size, return_indices=False):
        """{"input": the cotangent scattered to each window's first arg-max}."""
        xb, batched, _, idx = parts(input, output_size)
        g = _cotangent(cotangent)
        return {"input": _strip(scatter_by_indices(xb.shape, idx, g if batched else g[None]), batched)}

    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        return (rng.standard_normal((2, 3) + (7, 5, 4)[:nd]), (3, None, 6)[:nd] if nd > 1 else 3), \
            {"return_indices": True}

    forward.__doc__ = f"""Adaptive max pooling over {nd} spatial dims: window i of a dim of length L with n outputs
    covers [floor(i·L/n), ceil((i+1)·L/n)). output_size an int or {nd} entries (None keeps the
    input's size). NaN wins; ties: the first maximum in window order; indices are flat positions
    in the spatial plane. input (N, C, *L) or (C, *L). Returns (output, indices) with return_indices."""
    forward.__name__ = f"adaptive_max_pool{nd}d"
    return functional(f"adaptive_max_pool{nd}d", vjp=vjp, example=example)(forward)


adaptive_max_pool1d = _adaptive_max_pool(1)
adaptive_max_pool2d = _adaptive_max_pool(2)
adaptive_max_pool3d = _adaptive_max_pool(3)


def _adaptive_avg_pool(nd: int) -> Callable[..., Any]:
    def forward(input, output_size):
        xb, batched = _batched(input, nd, f"adaptive_avg_pool{nd}d")
        return _strip(adaptive_avg_pool(xb, adaptive_output_size(output_size, xb.shape[2:])), batched)

    def vjp(cotangent, input, output_size):
        """{"input": Σ over the windows reading each element of g / |window|}."""
        xb, batched = _batched(input, nd, f"adaptive_avg_pool{nd}d")
        g = _cotangent(cotangent)
        size = adaptive_output_size(output_size, xb.shape[2:])
        return {"input": _strip(adaptive_avg_pool_vjp(xb.shape, g if batched else g[None], size), batched)}

    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        return (rng.standard_normal((2, 3) + (7, 5, 4)[:nd]), (3, 4, None)[:nd] if nd > 1 else 4), {}

    forward.__doc__ = f"""Adaptive average pooling over {nd} spatial dims: the mean over [floor(i·L/n), ceil((i+1)·L/n))
    per dim (the window sum, then one division by its size). output_size an int or {nd} entries
    (None keeps the input's size). input (N, C, *L) or (C, *L)."""
    forward.__name__ = f"adaptive_avg_pool{nd}d"
    return functional(f"adaptive_avg_pool{nd}d", vjp=vjp, example=example)(forward)


adaptive_avg_pool1d = _adaptive_avg_pool(1)
adaptive_avg_pool2d = _adaptive_avg_pool(2)
adaptive_avg_pool3d = _adaptive_avg_pool(3)


def fractional_output_size(spatial: Sequence[int], output_size: Any, output_ratio: Any) -> tuple[int, ...]:
    """torch.nn.functional's rule: output_size (an int or one per dim) when given, else
    int(L · ratio) per dim; neither raises ``ValueError``."""
    nd = len(spatial)
    if output_size is not None:
        return _per_dim(output_size, nd, "output_size")
    if output_ratio is None:
        raise ValueError("fractional max pooling requires an output_size or an output_ratio")
    ratios = tuple(output_ratio) if isinstance(output_ratio, (list, tuple)) else (output_ratio,) * nd
    if len(ratios) != nd:
        raise ValueError(f"output_ratio must have {nd} entries, got {output_ratio!r}")
    return tuple(int(s * float(r)) for s, r in zip(spatial, ratios))


def _fractional_max_pool(nd: int) -> Callable[..., Any]:
    def parts(input, kernel_size, output_size, output_ratio, samples, interval_round):
        xb, batched = _batched(input, nd, f"fractional_max_pool{nd}d")
        if samples is None:
            raise ValueError("the reference needs _random_samples (it draws nothing itself)")
        u = np.asarray(samples, dtype=np.float64)
        if u.shape != (xb.shape[0], xb.shape[1], nd):
            raise ValueError(f"_random_samples must have shape {(xb.shape[0], xb.shape[1], nd)}, got {u.shape}")
        kernel = _per_dim(kernel_size, nd, "kernel_size")
        size = fractional_output_size(xb.shape[2:], output_size, output_ratio)
        out, idx = fractional_max_pool(xb, kernel, size, u, interval_round)
        return xb, batched, out, idx

    def forward(input, kernel_size, output_size=None, output_ratio=None, return_indices=False,
                _random_samples=None, *, interval_round=None):
        _, batched, out, idx = parts(input, kernel_size, output_size, output_ratio, _random_samples, interval_round)
        return (_strip(out, batched), _strip(idx, batched)) if return_indices else _strip(out, batched)

    def vjp(cotangent, input, kernel_size, output_size=None, output_ratio=None, return_indices=False,
            _random_samples=None, *, interval_round=None):
        """{"input": the cotangent scattered to each window's first arg-max}."""
        xb, batched, _, idx = parts(input, kernel_size, output_size, output_ratio, _random_samples, interval_round)
        g = _cotangent(cotangent)
        return {"input": _strip(scatter_by_indices(xb.shape, idx, g if batched else g[None]), batched)}

    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        x = rng.standard_normal((2, 3) + (9, 8, 7)[:nd])
        return (x, 2), {"output_size": (4, 5, 3)[:nd], "return_indices": True,
                        "_random_samples": rng.random((2, 3, nd))}

    order = "u of the width in [..., 0] and of the height in [..., 1]" if nd == 2 else \
        "u of the depth, height and width in [..., 0], [..., 1], [..., 2]"
    forward.__doc__ = f"""Fractional max pooling over {nd}-d windows of size k whose starts follow torch's pseudo-random
    sequence: start_i = trunc((i + u)·alpha) - trunc(u·alpha), alpha = (L - k)/(n - 1), the last
    window at L - k. _random_samples (N, C, {nd}) holds one u per plane and dim ({order}); the
    reference draws nothing (None raises). output_size wins over output_ratio (n = int(L·ratio)).
    ``interval_round`` (an extension) rounds the interval arithmetic after each operation, as torch
    evaluates it in the input's dtype (default: exact float64). Max, NaN and tie rules as
    max_pool{nd}d; indices flat in the spatial plane. input (N, C, *L) or (C, *L)."""
    forward.__name__ = f"fractional_max_pool{nd}d"
    return functional(f"fractional_max_pool{nd}d", vjp=vjp, example=example)(forward)


fractional_max_pool2d = _fractional_max_pool(2)
fractional_max_pool3d = _fractional_max_pool(3)


def _max_unpool(nd: int) -> Callable[..., Any]:
    def parts(input, indices, kernel_size, stride, padding, output_size):
        xb, batched = _batched(input, nd, f"max_unpool{nd}d")
        idx = np.asarray(indices)
        idx = idx if batched else idx[None]
        if idx.shape != xb.shape:
            raise ValueError(f"indices shape {idx.shape} must match the input's {xb.shape}")
        kernel, strides, pads, _ = _sliding(nd, kernel_size, stride, padding)
        if min(kernel) < 1 or min(strides) < 1:
            raise ValueError("kernel_size and stride must be >= 1")
        return xb, batched, idx.astype(np.int64), unpool_output_size(xb.shape[2:], kernel, strides, pads, output_size)

    def forward(input, indices, kernel_size, stride=None, padding=0, output_size=None):
        xb, batched, idx, size = parts(input, indices, kernel_size, stride, padding, output_size)
        return _strip(max_unpool(xb, idx, size), batched)

    def vjp(cotangent, input, indices, kernel_size, stride=None, padding=0, output_size=None):
        """{"input": g gathered at the indices}."""
        xb, batched, idx, _ = parts(input, indices, kernel_size, stride, padding, output_size)
        g = _cotangent(cotangent)
        return {"input": _strip(max_unpool_vjp(idx, g if batched else g[None]), batched)}

    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        x = rng.standard_normal((2, 3) + (4, 3, 2)[:nd])
        _, idx = max_pool(rng.standard_normal((2, 3) + (8, 6, 4)[:nd]), (2,) * nd, (2,) * nd, (0,) * nd,
                          (1,) * nd, False)
        return (x, idx, 2), {}

    forward.__doc__ = f"""Max unpooling over {nd} spatial dims: y = 0 except y[n, c, indices[n, c, o]] = x[n, c, o]
    (indices flat in the output's spatial plane). Output size (L-1)·s - 2p + k per dim (stride
    defaults to kernel_size), or output_size (spatial sizes, optionally with N and C in front)
    strictly within (default - s, default + s). Duplicate indices: the last value in row-major
    order lands there (torch leaves the choice unspecified). input (N, C, *L) or (C, *L)."""
    forward.__name__ = f"max_unpool{nd}d"
    return functional(f"max_unpool{nd}d", vjp=vjp, example=example)(forward)


max_unpool1d = _max_unpool(1)
max_unpool2d = _max_unpool(2)
max_unpool3d = _max_unpool(3)
