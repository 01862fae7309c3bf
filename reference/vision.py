"""Vision layers: pixel shuffle / unshuffle and 2-d nearest and bilinear upsampling.

Shapes: pixel shuffle maps (*, C·r², H, W) to (*, C, H·r, W·r) with
out[..., c, h·r + i, w·r + j] = in[..., c·r² + i·r + j, h, w]; unshuffle is its inverse. Both
are permutations, so each one's VJP is the other applied to the cotangent.

Upsampling acts on the last two axes of an (N, C, H, W) input and is separable: along each axis
an (out × in) interpolation matrix A, and y = A_h · x · A_wᵀ per plane. Nearest: A[o, src(o)] = 1;
bilinear (align_corners=True): two taps with weights 1 - λ and λ. The forward gathers (so that
NaN and ±inf travel exactly like a copy); the VJP is A_hᵀ · g · A_w, a scatter-add.
"""

from __future__ import annotations

import numpy as np


def pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """(*, C·r², H, W) -> (*, C, H·r, W·r)."""
    *lead, c, h, w = x.shape
    if r < 1 or c % (r * r):
        raise ValueError(f"pixel_shuffle: {c} channels are not divisible by upscale_factor² = {r * r}")
    out_c = c // (r * r)
    y = x.reshape(*lead, out_c, r, r, h, w)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (*, C, H, r_i, W, r_j)
    return y.reshape(*lead, out_c, h * r, w * r)


def pixel_unshuffle(x: np.ndarray, r: int) -> np.ndarray:
    """(*, C, H·r, W·r) -> (*, C·r², H, W), the inverse of ``pixel_shuffle``."""
    *lead, c, hr, wr = x.shape
    if r < 1 or hr % r or wr % r:
        raise ValueError(f"pixel_unshuffle: spatial size {hr}×{wr} is not divisible by downscale_factor {r}")
    h, w = hr // r, wr // r
    y = x.reshape(*lead, c, h, r, w, r)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)  # (*, C, r_i, r_j, H, W)
    return y.reshape(*lead, c * r * r, h, w)


# -- upsampling geometry ------------------------------------------------------------------------

def output_size(in_size: int, size: int | None, scale: float | None) -> int:
    """The output length along one axis: ``size``, or floor(in · scale) (in float64, as torch's
    F.interpolate computes it). Raises when it is not positive."""
    out = int(size) if size is not None else int(np.floor(float(in_size) * float(scale)))
    if out <= 0 or in_size <= 0:
        raise ValueError(f"input and output sizes must be > 0, got input {in_size}, output {out}")
    return out


def nearest_source_index(in_size: int, out_size: int, scale: float | None) -> np.ndarray:
    """Source index of each output position for mode 'nearest', as torch computes it.

    src = min(floor(dst · s), in - 1) with s = 1/scale_factor when a positive scale factor was
    given, else in/out; s and the product dst·s are evaluated in float32 (torch's
    ``nearest_idx``), and out == in (copy) and out == 2·in (dst >> 1) are exact shortcuts. The
    two definitions of s differ for fractional factors: with in = 5 and scale 1.3 (out = 6) the
    last output reads index 3 (5/1.3 = 3.85), not 4 (5·5/6 = 4.17).
    """
    dst = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    if scale is not None and scale > 0:
        s = np.float32(1.0 / float(scale))
    else:
        s = np.float32(in_size) / np.float32(out_size)
    src = np.floor(dst.astype(np.float32) * s).astype(np.int64)
    return np.minimum(src, in_size - 1)


def bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, λ, src) per output position for align_corners=True.

    src = dst·(in - 1)/(out - 1) (0 when out = 1), i0 = floor(src), i1 = min(i0 + 1, in - 1),
    λ = src - i0: the output is (1 - λ)·x[i0] + λ·x[i1]. i0 and the remainder are integer
    arithmetic, so λ (and 1 - λ) carry one rounding only.
    """
    dst = np.arange(out_size, dtype=np.int64)
    if out_size == 1:
        zeros = np.zeros(1, dtype=np.int64)
        return zeros, np.minimum(zeros + 1, in_size - 1), np.zeros(1), np.zeros(1)
    num, den = dst * (in_size - 1), out_size - 1
    i0 = num // den
    lam = (num % den) / den
    return i0, np.minimum(i0 + 1, in_size - 1), lam, num / den


def nearest_matrix(in_size: int, out_size: int, scale: float | None) -> np.ndarray:
    """The (out × in) 0/1 matrix of nearest upsampling along one axis."""
    a = np.zeros((out_size, in_size))
    a[np.arange(out_size), nearest_source_index(in_size, out_size, scale)] = 1.0
    return a


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out × in) matrix of linear interpolation (align_corners=True) along one axis."""
    i0, i1, lam, _ = bilinear_taps(in_size, out_size)
    a = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(a, (rows, i0), 1.0 - lam)
    np.add.at(a, (rows, i1), lam)
    return a


# -- forward and VJP ----------------------------------------------------------------------------

def upsample_nearest2d(x: np.ndarray, idx_h: np.ndarray, idx_w: np.ndarray) -> np.ndarray:
    """y[..., o, p] = x[..., idx_h[o], idx_w[p]] (a gather: non-finite values are copied)."""
    return x[..., idx_h[:, None], idx_w[None, :]]


def upsample_bilinear2d(x: np.ndarray, taps_h: tuple[np.ndarray, ...], taps_w: tuple[np.ndarray, ...]) -> np.ndarray:
    """y = Σ over the four corners of (weight_h · weight_w · x[corner]), taps from ``bilinear_taps``."""
    h0, h1, lh = taps_h[:3]
    w0, w1, lw = taps_w[:3]
    lh, lw = lh[:, None], lw[None, :]

    def at(ih: np.ndarray, iw: np.ndarray) -> np.ndarray:
        return x[..., ih[:, None], iw[None, :]]

    top = (1 - lw) * at(h0, w0) + lw * at(h0, w1)
    bottom = (1 - lw) * at(h1, w0) + lw * at(h1, w1)
    return (1 - lh) * top + lh * bottom


def separable_vjp(g: np.ndarray, a_h: np.ndarray, a_w: np.ndarray) -> np.ndarray:
    """dL/dx of y = A_h · x · A_wᵀ (per plane): A_hᵀ · g · A_w, i.e. each output's cotangent
    scattered to (and summed over) the inputs it read, weighted."""
    return a_h.T @ g @ a_w
