"""Unfold (im2col) and Fold (col2im): the sliding blocks of a 2-d image as columns, and back.

Geometry (torch.nn.Unfold / Fold documentation), per spatial dim with kernel k, dilation d,
padding p and stride s: an image of size H holds

    L_d = floor((H + 2p - d·(k-1) - 1) / s) + 1

blocks, and L = Π_d L_d in row-major order. Block l's tap κ (row-major over the kernel) reads
image position l_d·s + κ_d·d - p per dim, zero outside the image (the padding).

- ``unfold``: (N, C, H, W) or (C, H, W) -> (N, C·Π k, L) or (C·Π k, L);
  out[n, c·Π k + κ, l] = x̃[n, c, l·s + κ·d]. A copy: every value (±0, NaN, ±inf) travels
  bit for bit; padding taps are +0.
- ``fold``: (N, C·Π k, L) or (C·Π k, L) -> (N, C, *output_size); the adjoint of ``unfold``:
  y[n, c, i] = Σ over the (block, tap) pairs reading i of x[n, c·Π k + κ, l] (overlapping blocks
  sum; taps in the padding are dropped). The sum starts from +0 and adds the taps in row-major
  kernel order, as torch's col2im does.

Each is the other's VJP. Shares the convolution's sliding-window view (``reference.conv``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from reference.conv import Geometry, _columns
from reference.registry import functional


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def fold_geometry(kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> Geometry:
    """Validated per-dim parameters: kernel, dilation, stride >= 1, padding >= 0 (else ValueError)."""
    kernel = _pair(kernel_size, "kernel_size", 1)
    pads = _pair(padding, "padding", 0)
    return Geometry(kernel, _pair(stride, "stride", 1), _pair(dilation, "dilation", 1),
                    tuple((p, p) for p in pads), 1)


def block_counts(spatial: Sequence[int], geo: Geometry) -> tuple[int, ...]:
    """L_d per dim (see the module docstring); ValueError when some L_d < 1."""
    padded = tuple(int(v) + 2 * p for v, (p, _) in zip(spatial, geo.pads))
    counts = tuple((lp - sp) // s + 1 for lp, sp, s in zip(padded, geo.span, geo.stride))
    if any(c < 1 for c in counts):
        raise ValueError(f"spatial size {tuple(spatial)} with kernel {geo.kernel}, dilation {geo.dilation} and "
                         f"padding {tuple(p for p, _ in geo.pads)} gives {counts} blocks (at least 1 needed)")
    return counts


def _batched(input: Any, ndim: int, name: str) -> tuple[np.ndarray, bool]:
    """(input with a batch axis, whether it had one): ``ndim`` dims batched, ``ndim - 1`` not."""
    x = np.asarray(input, dtype=np.float64)
    if x.ndim == ndim:
        return x, True
    if x.ndim == ndim - 1:
        return x[None], False
    raise ValueError(f"{name} expects a {ndim - 1}-d or {ndim}-d input, got shape {x.shape}")


def _image(input: Any) -> tuple[np.ndarray, bool]:
    return _batched(input, 4, "unfold")


def _columns_of(input: Any) -> tuple[np.ndarray, bool]:
    return _batched(input, 3, "fold")


def _unfold(x: np.ndarray, geo: Geometry) -> np.ndarray:
    """(N, C, H, W) -> (N, C·Π k, L)."""
    if 0 in x.shape[1:]:
        raise ValueError(f"unfold expects non-empty channel and spatial dims, got shape {x.shape}")
    counts = block_counts(x.shape[2:], geo)
    n, rows = x.shape[0], x.shape[1] * math.prod(geo.kernel)
    if n == 0:
        return np.zeros((0, rows, math.prod(counts)))
    padded = np.pad(x, [(0, 0), (0, 0), *geo.pads])
    cols = _columns(padded, geo, counts)[0]  # (N·L, C·Π k), channel-major then taps
    return cols.reshape(n, math.prod(counts), rows).transpose(0, 2, 1).copy()


def _fold(cols: np.ndarray, output_size: tuple[int, int], geo: Geometry) -> np.ndarray:
    """(N, C·Π k, L) -> (N, C, *output_size): every column scattered and summed, tap by tap."""
    n, rows, length = cols.shape
    taps = math.prod(geo.kernel)
    if rows == 0 or rows % taps:
        raise ValueError(f"fold: input dim 1 ({rows}) must be a positive multiple of Π kernel_size = {taps}")
    if any(v < 1 for v in output_size):
        raise ValueError(f"fold: output_size must be positive, got {output_size}")
    counts = block_counts(output_size, geo)
    if length != math.prod(counts):
        raise ValueError(f"fold: input dim 2 ({length}) must be the number of blocks {math.prod(counts)} "
                         f"({counts[0]}×{counts[1]}) of output_size {output_size}")
    channels = rows // taps
    blocks = cols.reshape(n, channels, *geo.kernel, *counts)
    padded = tuple(v + 2 * p for v, (p, _) in zip(output_size, geo.pads))
    out = np.zeros((n, channels) + padded)
    for offset in itertools.product(*(range(k) for k in geo.kernel)):  # row-major taps, as col2im adds them
        target = tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                       for o, d, m, s in zip(offset, geo.dilation, counts, geo.stride))
        out[(Ellipsis,) + target] += blocks[(slice(None), slice(None)) + offset]
    crop = tuple(slice(p, p + v) for v, (p, _) in zip(output_size, geo.pads))
    return out[(Ellipsis,) + crop]


def _output_size(output_size: Any) -> tuple[int, int]:
    return _pair(output_size, "output_size", 0)


def _unfold_vjp(cotangent: np.ndarray, input: np.ndarray, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
                stride: Any = 1) -> dict[str, np.ndarray]:
    """{"input": fold of the cotangent onto the image (the sum over the taps reading each element)}."""
    x, batched = _image(input)
    g, _ = _columns_of(cotangent)
    grad = _fold(g, tuple(x.shape[2:]), fold_geometry(kernel_size, dilation, padding, stride))
    return {"input": grad if batched else grad[0]}


def _fold_vjp(cotangent: np.ndarray, input: np.ndarray, output_size: Any, kernel_size: Any, dilation: Any = 1,
              padding: Any = 0, stride: Any = 1) -> dict[str, np.ndarray]:
    """{"input": unfold of the cotangent (each column reads the cotangent at its taps)}."""
    _, batched = _columns_of(input)
    g, _ = _image(cotangent)
    grad = _unfold(g, fold_geometry(kernel_size, dilation, padding, stride))
    return {"input": grad if batched else grad[0]}


@functional(vjp=_unfold_vjp, example=lambda rng: ((rng.standard_normal((2, 3, 6, 5)), (2, 3)),
                                                  {"dilation": (2, 1), "padding": 1, "stride": (1, 2)}))
def unfold(input: np.ndarray, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> np.ndarray:
    """Sliding blocks as columns (im2col): out[n, c·Π k + κ, l] = x̃[n, c, l·s + κ·d], x̃ the
    zero-padded input. input (N, C, H, W) or (C, H, W) -> (N, C·kH·kW, L) or (C·kH·kW, L), L the
    number of blocks (module docstring); kernel_size, dilation, stride >= 1 and padding >= 0, each
    an int or a pair. A copy: values travel bit for bit (±0, NaN), padding taps are +0."""
    x, batched = _image(input)
    out = _unfold(x, fold_geometry(kernel_size, dilation, padding, stride))
    return out if batched else out[0]


@functional(vjp=_fold_vjp, example=lambda rng: ((rng.standard_normal((2, 3 * 6, 10)), (5, 6), (2, 3)),
                                                {"dilation": (2, 1), "padding": (1, 0), "stride": (1, 2)}))
def fold(input: np.ndarray, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
         stride: Any = 1) -> np.ndarray:
    """Columns summed back into an image (col2im), the adjoint of ``unfold``:
    y[n, c, i] = Σ_{(l, κ): l·s + κ·d - p = i} x[n, c·Π k + κ, l]. input (N, C·kH·kW, L) or
    (C·kH·kW, L) -> (N, C, *output_size) or (C, *output_size); L must equal the number of blocks
    of output_size. Overlapping blocks sum (from +0, taps in row-major order); taps in the padding
    are dropped; positions no tap reaches are +0."""
    cols, batched = _columns_of(input)
    out = _fold(cols, _output_size(output_size), fold_geometry(kernel_size, dilation, padding, stride))
    return out if batched else out[0]


def max_overlap(spatial: Sequence[int], geo: Geometry) -> int:
    """The most (block, tap) pairs reading one image position (the length of Fold's sums): at
    least 1."""
    counts = block_counts(spatial, geo)
    ones = np.ones((1, math.prod(geo.kernel), math.prod(counts)))
    return max(1, int(_fold(ones, tuple(int(v) for v in spatial), geo).max(initial=0)))
