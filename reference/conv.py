"""N-d convolution and transposed convolution (1-d, 2-d, 3-d): forward and VJP.

Public API (``reference.functional``): ``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` with
torch.nn.functional's signatures; ``conv``/``conv_transpose`` are their n-d forms (``output_size``
of a ConvTranspose module's forward is ``output_padding_for_size``), ``module_padding`` the
explicit padding of a Conv module with a non-zeros ``padding_mode``.

Shapes follow torch.nn: input ``(N, C_in, *L)`` or unbatched ``(C_in, *L)``; convolution weight
``(C_out, C_in/groups, *k)``; transposed-convolution weight ``(C_in, C_out/groups, *k)``; bias
``(C_out,)``. The number of spatial dims ``nd`` is ``weight.ndim - 2``.

Convolution (cross-correlation), with x̃ the input padded by (l_i, r_i) per dim and channel ``c``
of group ``g = o // (C_out/groups)``:

    y[n, o, j] = b[o] + Σ_{c, κ} w[o, c, κ] · x̃[n, g·C_in/groups + c, j·s + κ·d]

Transposed convolution is the adjoint of that map with respect to its input (the gradient of a
convolution), on an output of length ``(L-1)·s - 2p + d·(k-1) + output_padding + 1``; the
positions that no kernel tap reaches (from ``output_padding``) receive only the bias.

Padding modes (torch.nn.Conv*d): ``zeros`` pads implicitly; ``reflect`` (mirror without repeating
the edge, pad < L), ``replicate`` (repeat the edge, any pad) and ``circular`` (wrap, pad <= L) pad
the input explicitly (``reference.padding.pad``, amounts from ``module_padding``) and then convolve
without padding; the pad's VJP folds the gradient of the padded border back onto the elements it
was copied from. ``padding='same'`` pads ``d·(k-1)`` in total per dim,
``total // 2`` on the left and the rest on the right (torch's rule); it needs stride 1.

Everything is vectorised: a strided sliding-window view (im2col) and one batched matmul over the
groups; the scatter of the input gradient loops over kernel offsets only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from reference.padding import pad_input, pad_input_vjp, pad_source_index  # noqa: F401 (part of this module's API)
from reference.registry import functional

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
IntOrTuple = int | Sequence[int]


@dataclass(frozen=True)
class Geometry:
    """Per-dim kernel, stride, dilation and (left, right) padding, plus the group count."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    groups: int

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def span(self) -> tuple[int, ...]:
        """Extent of one dilated kernel window: d·(k-1) + 1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def windows(self, padded: Sequence[int]) -> tuple[int, ...]:
        """Number of full windows along each dim of a padded input: (L̃ - span) // s + 1."""
        return tuple((lp - sp) // s + 1 for lp, sp, s in zip(padded, self.span, self.stride))


# -- parameter normalisation ----------------------------------------------------------------------

def per_dim(value: IntOrTuple, nd: int, name: str, minimum: int) -> tuple[int, ...]:
    """An int or an nd-tuple as an nd-tuple of ints >= ``minimum`` (ValueError otherwise)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * nd
    elif isinstance(value, (tuple, list)) and len(value) == nd and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        values = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{name} must be an int or a tuple of {nd} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} in every dim, got {value!r}")
    return values


def resolve_padding(padding: IntOrTuple | str, kernel: tuple[int, ...], stride: tuple[int, ...],
                    dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(left, right) padding per dim for an int, a tuple, ``'valid'`` or ``'same'``."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise ValueError(f"padding string must be 'valid' or 'same', got {padding!r}")
    return tuple((p, p) for p in per_dim(padding, nd, "padding", 0))


def _spatial_dims(weight: np.ndarray) -> int:
    nd = weight.ndim - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"weight must have 3 to 5 dims (C, C', *kernel), got shape {weight.shape}")
    return nd


def _batched(x: np.ndarray, nd: int) -> tuple[np.ndarray, bool]:
    """(x with a batch dim, whether the caller passed one)."""
    if x.ndim == nd + 2:
        return x, True
    if x.ndim == nd + 1:
        return x[None], False
    raise ValueError(f"expected a {nd + 1}-d (unbatched) or {nd + 2}-d (batched) input, got shape {x.shape}")


def _check_groups(groups: int, channels: int, name: str) -> None:
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if channels % groups:
        raise ValueError(f"{name} ({channels}) must be divisible by groups ({groups})")


def _check_bias(bias: np.ndarray | None, channels: int) -> None:
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},), got {bias.shape}")


# -- padding ----------------------------------------------------------------------------------------

# -- the three core products on an already padded input -----------------------------------------

def _columns(xp: np.ndarray, geo: Geometry, out: Sequence[int]) -> np.ndarray:
    """im2col: (N, C, *L̃) -> (G, N·∏out, C/G·∏k), row (n, j) holding x̃[n, c, j·s + κ·d]."""
    nd, n, c = geo.nd, xp.shape[0], xp.shape[1]
    axes = tuple(range(2, 2 + nd))
    view = sliding_window_view(xp, geo.span, axis=axes)  # (N, C, *positions, *span)
    index = (slice(None), slice(None))
    index += tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, geo.stride))
    index += tuple(slice(None, None, d) for d in geo.dilation)
    view = view[index]  # (N, C, *out, *k)
    view = view.reshape((n, geo.groups, c // geo.groups) + view.shape[2:])
    # -> (G, N, *out, C/G, *k)
    order = (1, 0) + tuple(range(3, 3 + nd)) + (2,) + tuple(range(3 + nd, 3 + 2 * nd))
    cols = view.transpose(order)
    return cols.reshape(geo.groups, n * math.prod(out), -1)


def _grouped_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """(C_o, C_i/G, *k) -> (G, C_o/G, C_i/G·∏k)."""
    return w.reshape(groups, w.shape[0] // groups, -1)


def correlate_padded(xp: np.ndarray, w: np.ndarray, geo: Geometry, out: Sequence[int]) -> np.ndarray:
    """y[n, o, j] = Σ_{c,κ} w[o, c, κ]·x̃[n, g(o)·C/G + c, j·s + κ·d] for j < out (no padding, no bias)."""
    n = xp.shape[0]
    prod = np.matmul(_columns(xp, geo, out), _grouped_weight(w, geo.groups).transpose(0, 2, 1))
    # (G, N·∏out, C_o/G) -> (N, C_o, *out)
    prod = prod.reshape((geo.groups, n) + tuple(out) + (w.shape[0] // geo.groups,))
    order = (1, 0, prod.ndim - 1) + tuple(range(2, 2 + geo.nd))
    return prod.transpose(order).reshape((n, w.shape[0]) + tuple(out))


def _grouped_rows(g: np.ndarray, groups: int) -> np.ndarray:
    """(N, C_o, *out) -> (G, N·∏out, C_o/G)."""
    n, c = g.shape[0], g.shape[1]
    nd = g.ndim - 2
    gg = g.reshape((n, groups, c // groups) + g.shape[2:])
    order = (1, 0) + tuple(range(3, 3 + nd)) + (2,)
    return gg.transpose(order).reshape(groups, -1, c // groups)


def correlate_padded_input_vjp(g: np.ndarray, w: np.ndarray, geo: Geometry,
                               padded: Sequence[int]) -> np.ndarray:
    """Adjoint of ``correlate_padded`` w.r.t. x̃: scatter g·w onto a zero (N, C, *padded) array.

    One batched matmul gives every tap's contribution; a loop over the ∏k kernel offsets adds them
    at positions j·s + κ·d.
    """
    n, nd, groups = g.shape[0], geo.nd, geo.groups
    out = g.shape[2:]
    cg = w.shape[1]
    contrib = np.matmul(_grouped_rows(g, groups), _grouped_weight(w, groups))  # (G, N·∏out, C/G·∏k)
    contrib = contrib.reshape((groups, n) + tuple(out) + (cg,) + geo.kernel)
    # -> (N, G, C/G, *out, *k)
    order = (1, 0, 2 + nd) + tuple(range(2, 2 + nd)) + tuple(range(3 + nd, 3 + 2 * nd))
    contrib = contrib.transpose(order)
    gx = np.zeros((n, groups, cg) + tuple(padded), dtype=np.result_type(g, w))
    for offset in itertools.product(*(range(k) for k in geo.kernel)):
        target = tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                       for o, d, m, s in zip(offset, geo.dilation, out, geo.stride))
        gx[(Ellipsis,) + target] += contrib[(Ellipsis,) + offset]
    return gx.reshape((n, groups * cg) + tuple(padded))


def correlate_padded_weight_vjp(xp: np.ndarray, g: np.ndarray, geo: Geometry,
                                kernel_channels: int) -> np.ndarray:
    """Adjoint of ``correlate_padded`` w.r.t. w: Σ_{n,j} g[n, o, j]·x̃[n, g(o)·C/G + c, j·s + κ·d]."""
    out = g.shape[2:]
    cols = _columns(xp, geo, out)  # (G, N·∏out, C/G·∏k)
    gw = np.matmul(_grouped_rows(g, geo.groups).transpose(0, 2, 1), cols)  # (G, C_o/G, C/G·∏k)
    return gw.reshape((g.shape[1], kernel_channels) + geo.kernel)


# -- convolution ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvPlan:
    """A validated convolution call: geometry, padding mode and the input/padded/output sizes."""

    geo: Geometry
    mode: str
    spatial: tuple[int, ...]
    padded: tuple[int, ...]
    out: tuple[int, ...]


def conv_plan(x_shape: Sequence[int], w_shape: Sequence[int], stride: IntOrTuple, padding: IntOrTuple | str,
              dilation: IntOrTuple, groups: int, padding_mode: str) -> ConvPlan:
    """Validate a convolution's parameters against its (batched) input and weight shapes."""
    nd = len(w_shape) - 2
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    kernel = tuple(int(k) for k in w_shape[2:])
    if any(k < 1 for k in kernel):
        raise ValueError(f"kernel size must be positive, got {kernel}")
    stride_t = per_dim(stride, nd, "stride", 1)
    dilation_t = per_dim(dilation, nd, "dilation", 1)
    pads = resolve_padding(padding, kernel, stride_t, dilation_t)
    _check_groups(groups, w_shape[0], "out_channels")
    if x_shape[1] != w_shape[1] * groups:
        raise ValueError(f"input has {x_shape[1]} channels; weight {tuple(w_shape)} with groups={groups} "
                         f"expects {w_shape[1] * groups}")
    spatial = tuple(int(v) for v in x_shape[2:])
    if any(v < 1 for v in spatial):
        raise ValueError(f"input spatial size must be positive, got {spatial}")
    if padding_mode != "zeros":
        for length, (left, right) in zip(spatial, pads):
            pad_source_index(length, left, right, padding_mode)  # raises when the padding is too large
    geo = Geometry(kernel, stride_t, dilation_t, pads, int(groups))
    padded = tuple(v + l + r for v, (l, r) in zip(spatial, pads))
    if any(p < sp for p, sp in zip(padded, geo.span)):
        raise ValueError(f"padded input size {padded} is smaller than the dilated kernel {geo.span}")
    return ConvPlan(geo, padding_mode, spatial, padded, geo.windows(padded))


def conv(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
         padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> np.ndarray:
    """``torch.nn.functional.conv{nd}d`` for nd = weight.ndim - 2: (N, C_in, *L) or (C_in, *L) ->
    (N, C_out, *out), out = (L + l + r - d·(k-1) - 1)//s + 1, zero padding (l, r) per dim."""
    nd = _spatial_dims(weight)
    xb, batched = _batched(np.asarray(input, dtype=np.float64), nd)
    plan = conv_plan(xb.shape, weight.shape, stride, padding, dilation, groups, "zeros")
    _check_bias(bias, weight.shape[0])
    xp = pad_input(xb, plan.geo.pads, plan.mode)
    y = correlate_padded(xp, np.asarray(weight, dtype=np.float64), plan.geo, plan.out)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape((-1,) + (1,) * nd)
    return y if batched else y[0]


def conv_vjp(input: np.ndarray, weight: np.ndarray, grad_output: np.ndarray, stride: IntOrTuple = 1,
             padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1,
             groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dw, dL/db) of ``conv`` for the output gradient ``grad_output``.

    dL/dx̃ scatters g·w back over the windows and is cropped onto x (the zero padding's adjoint);
    dL/dw = Σ_{n,j} g·x̃ over the windows; dL/db = Σ_{n,j} g.
    """
    nd = _spatial_dims(weight)
    xb, batched = _batched(np.asarray(input, dtype=np.float64), nd)
    gy, _ = _batched(np.asarray(grad_output, dtype=np.float64), nd)
    w = np.asarray(weight, dtype=np.float64)
    plan = conv_plan(xb.shape, w.shape, stride, padding, dilation, groups, "zeros")
    expected = (xb.shape[0], w.shape[0]) + plan.out
    if gy.shape != expected:
        raise ValueError(f"grad_output shape {gy.shape} does not match the output {expected}")
    xp = pad_input(xb, plan.geo.pads, plan.mode)
    gxp = correlate_padded_input_vjp(gy, w, plan.geo, plan.padded)
    gx = pad_input_vjp(gxp, xb.shape, plan.geo.pads, plan.mode)
    gw = correlate_padded_weight_vjp(xp, gy, plan.geo, w.shape[1])
    gbias = gy.sum(axis=(0,) + tuple(range(2, 2 + nd)))
    return (gx if batched else gx[0]), gw, gbias


def module_padding(padding: IntOrTuple | str, kernel: Sequence[int], stride: IntOrTuple,
                   dilation: IntOrTuple) -> tuple[int, ...]:
    """The flat ``F.pad`` amounts (last dim first) of a ``torch.nn.Conv{nd}d`` with a non-zeros
    ``padding_mode`` (its ``_reversed_padding_repeated_twice``): the module pads explicitly with
    ``reference.padding.pad(input, amounts, padding_mode)`` and then convolves without padding.
    'same' splits d·(k-1) as (total // 2, total - total // 2), the extra element on the right."""
    nd = len(kernel)
    kernel_t = tuple(int(k) for k in kernel)
    pairs = resolve_padding(padding, kernel_t, per_dim(stride, nd, "stride", 1), per_dim(dilation, nd, "dilation", 1))
    return tuple(v for left, right in reversed(pairs) for v in (left, right))


# -- transposed convolution -----------------------------------------------------------------------

@dataclass(frozen=True)
class TransposedPlan:
    """A validated transposed convolution: geometry (pads symmetric), output padding and sizes."""

    geo: Geometry
    spatial: tuple[int, ...]
    output_padding: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def padded(self) -> tuple[int, ...]:
        """The uncropped output: out + 2p = (L-1)·s + d·(k-1) + 1 + output_padding."""
        return tuple(o + l + r for o, (l, r) in zip(self.out, self.geo.pads))


def transposed_min_size(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                        padding: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Output size with no output padding: (L-1)·s - 2p + d·(k-1) + 1."""
    return tuple((v - 1) * s - 2 * p + d * (k - 1) + 1
                 for v, k, s, p, d in zip(spatial, kernel, stride, padding, dilation))


def output_padding_for_size(output_size: Sequence[int], spatial: Sequence[int], batched: bool,
                            kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                            dilation: Sequence[int]) -> tuple[int, ...]:
    """The output padding that an explicit ``output_size`` selects (torch.nn.ConvTranspose*d's rule).

    ``output_size`` lists the spatial sizes, optionally preceded by the batch and/or channel sizes
    (its last nd entries are used when it has nd + 1 (unbatched) or nd + 2 (batched) entries). Each
    size must lie in [min, min + s - 1] (min = the size without output padding); it selects
    output_padding = size - min.
    """
    nd = len(kernel)
    sizes = [int(v) for v in output_size]
    leading = 2 if batched else 1
    if len(sizes) == nd + leading:
        sizes = sizes[leading:]
    if len(sizes) != nd:
        raise ValueError(f"output_size must have {nd} or {nd + leading} elements, got {len(sizes)}")
    low = transposed_min_size(spatial, kernel, stride, padding, dilation)
    if any(not (lo <= v <= lo + s - 1) for v, lo, s in zip(sizes, low, stride)):
        raise ValueError(f"requested output size {sizes}, but valid sizes range from {list(low)} to "
                         f"{[lo + s - 1 for lo, s in zip(low, stride)]}")
    return tuple(v - lo for v, lo in zip(sizes, low))


def conv_transpose_plan(x_shape: Sequence[int], w_shape: Sequence[int], stride: IntOrTuple, padding: IntOrTuple,
                        output_padding: IntOrTuple, groups: int, dilation: IntOrTuple,
                        output_size: Sequence[int] | None = None, batched: bool = True) -> TransposedPlan:
    """Validate a transposed convolution against its (batched) input and weight shapes."""
    nd = len(w_shape) - 2
    kernel = tuple(int(k) for k in w_shape[2:])
    if any(k < 1 for k in kernel):
        raise ValueError(f"kernel size must be positive, got {kernel}")
    if isinstance(padding, str):
        raise ValueError("transposed convolution takes numeric padding only")
    stride_t = per_dim(stride, nd, "stride", 1)
    dilation_t = per_dim(dilation, nd, "dilation", 1)
    pad_t = per_dim(padding, nd, "padding", 0)
    _check_groups(groups, w_shape[0], "in_channels")
    if x_shape[1] != w_shape[0]:
        raise ValueError(f"input has {x_shape[1]} channels; weight {tuple(w_shape)} expects {w_shape[0]}")
    spatial = tuple(int(v) for v in x_shape[2:])
    if any(v < 1 for v in spatial):
        raise ValueError(f"input spatial size must be positive, got {spatial}")
    if output_size is not None:
        op = output_padding_for_size(output_size, spatial, batched, kernel, stride_t, pad_t, dilation_t)
    else:
        op = per_dim(output_padding, nd, "output_padding", 0)
    if any(o >= max(s, d) for o, s, d in zip(op, stride_t, dilation_t)):
        raise ValueError(f"output_padding {op} must be smaller than either stride {stride_t} or dilation {dilation_t}")
    out = tuple(lo + o for lo, o in zip(transposed_min_size(spatial, kernel, stride_t, pad_t, dilation_t), op))
    if any(o < 1 for o in out):
        raise ValueError(f"calculated output size {out} is too small")
    geo = Geometry(kernel, stride_t, dilation_t, tuple((p, p) for p in pad_t), int(groups))
    return TransposedPlan(geo, spatial, op, out)


def conv_transpose(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
                   padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                   dilation: IntOrTuple = 1, output_size: Sequence[int] | None = None) -> np.ndarray:
    """Transposed convolution forward: (N, C_in, *L) -> (N, C_out, *out).

    y = crop_p(Σ_{c,κ} x[n, c, i]·w[c, o, κ] placed at i·s + κ·d) + b, i.e. the adjoint of the
    convolution with weight w (read as (C_out', C_in'/G, *k) = (C_in, C_out/G, *k)).
    """
    nd = _spatial_dims(weight)
    xb, batched = _batched(np.asarray(x, dtype=np.float64), nd)
    w = np.asarray(weight, dtype=np.float64)
    plan = conv_transpose_plan(xb.shape, w.shape, stride, padding, output_padding, groups, dilation,
                               output_size, batched)
    _check_bias(bias, w.shape[1] * plan.geo.groups)
    yp = correlate_padded_input_vjp(xb, w, plan.geo, plan.padded)
    y = pad_input_vjp(yp, (xb.shape[0], yp.shape[1]) + plan.out, plan.geo.pads, "zeros")
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape((-1,) + (1,) * nd)
    return y if batched else y[0]


def conv_transpose_vjp(x: np.ndarray, weight: np.ndarray, grad_output: np.ndarray, stride: IntOrTuple = 1,
                       padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                       dilation: IntOrTuple = 1, output_size: Sequence[int] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dw, dL/db) of ``conv_transpose``: dL/dx is the convolution of the zero-padded
    output gradient with w; dL/dw correlates that padded gradient with x; dL/db = Σ_{n,j} g."""
    nd = _spatial_dims(weight)
    xb, batched = _batched(np.asarray(x, dtype=np.float64), nd)
    gy, _ = _batched(np.asarray(grad_output, dtype=np.float64), nd)
    w = np.asarray(weight, dtype=np.float64)
    plan = conv_transpose_plan(xb.shape, w.shape, stride, padding, output_padding, groups, dilation,
                               output_size, batched)
    expected = (xb.shape[0], w.shape[1] * plan.geo.groups) + plan.out
    if gy.shape != expected:
        raise ValueError(f"grad_output shape {gy.shape} does not match the output {expected}")
    gyp = pad_input(gy, plan.geo.pads, "zeros")
    gx = correlate_padded(gyp, w, plan.geo, plan.spatial)
    gw = correlate_padded_weight_vjp(gyp, xb, plan.geo, w.shape[1]).reshape(w.shape)
    gbias = gy.sum(axis=(0,) + tuple(range(2, 2 + nd)))
    return (gx if batched else gx[0]), gw, gbias


# -- torch.nn.functional ------------------------------------------------------------------------------

def _with_dims(nd: int, weight: np.ndarray, name: str) -> None:
    if np.ndim(weight) != nd + 2:
        raise ValueError(f"{name} expects a {nd + 2}-d weight, got shape {np.shape(weight)}")


def _grads(names: Sequence[str], values: Sequence[np.ndarray], bias: np.ndarray | None) -> dict[str, np.ndarray]:
    grads = dict(zip(names, values))
    if bias is None:
        grads.pop("bias")
    return grads


def _conv_vjp(nd: int):
    def vjp(cotangent: np.ndarray, input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
            stride: IntOrTuple = 1, padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1,
            groups: int = 1) -> dict[str, np.ndarray]:
        """{"input", "weight", "bias"}: the scatter of g·w over the windows, Σ g·x̃, Σ g."""
        _with_dims(nd, weight, f"conv{nd}d")
        values = conv_vjp(input, weight, cotangent, stride, padding, dilation, groups)
        return _grads(("input", "weight", "bias"), values, bias)

    return vjp


def _conv_transpose_vjp(nd: int):
    def vjp(cotangent: np.ndarray, input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
            stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
            dilation: IntOrTuple = 1) -> dict[str, np.ndarray]:
        """{"input", "weight", "bias"}: the convolution of g with w, the correlation of g with x, Σ g."""
        _with_dims(nd, weight, f"conv_transpose{nd}d")
        values = conv_transpose_vjp(input, weight, cotangent, stride, padding, output_padding, groups, dilation)
        return _grads(("input", "weight", "bias"), values, bias)

    return vjp


def _conv_example(nd: int, transposed: bool):
    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        spatial, kernel = (6, 5, 4)[:nd], (3, 2, 2)[:nd]
        x = rng.standard_normal((2, 4) + spatial)
        w = rng.standard_normal(((4, 3) if transposed else (6, 2)) + kernel)
        b = rng.standard_normal(6)
        if transposed:
            return (x, w, b), {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "dilation": 2}
        return (x, w, b), {"stride": (1, 2, 1)[:nd], "padding": "same" if nd == 1 else 1, "dilation": 1,
                           "groups": 2}

    return example


@functional(vjp=_conv_vjp(1), example=_conv_example(1, False))
def conv1d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> np.ndarray:
    """1-d convolution (cross-correlation): y[n, o, j] = b[o] + Σ_{c,κ} w[o, c, κ]·x̃[n, g·C_in/G + c,
    j·s + κ·d], x̃ zero-padded. input (N, C_in, L) or (C_in, L); weight (C_out, C_in/groups, k); bias
    (C_out,); padding an int, a 1-tuple, 'valid' or 'same' (stride 1; total d·(k-1) split as
    (total//2, total - total//2)). Output length (L + l + r - d·(k-1) - 1)//s + 1."""
    _with_dims(1, weight, "conv1d")
    return conv(input, weight, bias, stride, padding, dilation, groups)


@functional(vjp=_conv_vjp(2), example=_conv_example(2, False))
def conv2d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> np.ndarray:
    """2-d convolution, ``conv1d``'s formula per dim: input (N, C_in, H, W) or (C_in, H, W), weight
    (C_out, C_in/groups, kH, kW); stride, padding and dilation an int or a pair; padding also
    'valid' or 'same' (asymmetric when d·(k-1) is odd: the extra element on the right/bottom)."""
    _with_dims(2, weight, "conv2d")
    return conv(input, weight, bias, stride, padding, dilation, groups)


@functional(vjp=_conv_vjp(3), example=_conv_example(3, False))
def conv3d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> np.ndarray:
    """3-d convolution, ``conv1d``'s formula per dim: input (N, C_in, D, H, W) or (C_in, D, H, W),
    weight (C_out, C_in/groups, kD, kH, kW); per-dim parameters an int or a triple; 'valid'/'same'."""
    _with_dims(3, weight, "conv3d")
    return conv(input, weight, bias, stride, padding, dilation, groups)


@functional(vjp=_conv_transpose_vjp(1), example=_conv_example(1, True))
def conv_transpose1d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> np.ndarray:
    """1-d transposed convolution, the adjoint of ``conv1d`` w.r.t. its input: every x[n, c, i]·w[c, o, κ]
    lands at i·s + κ·d - p, on an output of length (L-1)·s - 2p + d·(k-1) + output_padding + 1
    (output_padding < max(stride, dilation)); positions no tap reaches hold the bias alone.
    input (N, C_in, L) or (C_in, L); weight (C_in, C_out/groups, k); bias (C_out,)."""
    _with_dims(1, weight, "conv_transpose1d")
    return conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation)


@functional(vjp=_conv_transpose_vjp(2), example=_conv_example(2, True))
def conv_transpose2d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> np.ndarray:
    """2-d transposed convolution, ``conv_transpose1d``'s rule per dim: input (N, C_in, H, W) or
    (C_in, H, W), weight (C_in, C_out/groups, kH, kW), per-dim parameters an int or a pair."""
    _with_dims(2, weight, "conv_transpose2d")
    return conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation)


@functional(vjp=_conv_transpose_vjp(3), example=_conv_example(3, True))
def conv_transpose3d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> np.ndarray:
    """3-d transposed convolution, ``conv_transpose1d``'s rule per dim: input (N, C_in, D, H, W) or
    (C_in, D, H, W), weight (C_in, C_out/groups, kD, kH, kW), per-dim parameters an int or a triple."""
    _with_dims(3, weight, "conv_transpose3d")
    return conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation)
