"""Pixel shuffle and unshuffle (``torch.nn.functional.pixel_shuffle`` / ``pixel_unshuffle``).

pixel_shuffle maps (*, C·r², H, W) to (*, C, H·r, W·r) with
out[..., c, h·r + i, w·r + j] = in[..., c·r² + i·r + j, h, w]; pixel_unshuffle is its inverse.
Both are permutations, so each one's VJP is the other applied to the cotangent (exact, NaN and
±inf included). Any number of leading dims; the input has at least 3 dims. Interpolation and
sampling live in ``reference.interpolate`` and ``reference.sampling``.
"""

from __future__ import annotations

import numpy as np

from reference.registry import functional


def _check(x: np.ndarray, factor: int, name: str) -> None:
    if x.ndim < 3:
        raise ValueError(f"{name} needs an input of at least 3 dims, got {x.ndim}")
    if factor < 1:
        raise ValueError(f"{name}: the factor must be positive, got {factor}")


def _pixel_shuffle_vjp(cotangent, input, upscale_factor):
    return {"input": pixel_unshuffle(cotangent, upscale_factor)}


@functional(vjp=_pixel_shuffle_vjp, example=lambda rng: ((rng.standard_normal((2, 8, 2, 3)), 2), {}))
def pixel_shuffle(input, upscale_factor):
    """(*, C·r², H, W) -> (*, C, H·r, W·r), r = upscale_factor:
    out[..., c, h·r + i, w·r + j] = in[..., c·r² + i·r + j, h, w]. Raises ValueError for fewer
    than 3 dims, r < 1, or channels not divisible by r²."""
    x = np.asarray(input)
    r = int(upscale_factor)
    _check(x, r, "pixel_shuffle")
    *lead, c, h, w = x.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle: {c} channels are not divisible by upscale_factor² = {r * r}")
    out_c = c // (r * r)
    y = x.reshape(*lead, out_c, r, r, h, w)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (*, C, H, r_i, W, r_j)
    return y.reshape(*lead, out_c, h * r, w * r)


def _pixel_unshuffle_vjp(cotangent, input, downscale_factor):
    return {"input": pixel_shuffle(cotangent, downscale_factor)}


@functional(vjp=_pixel_unshuffle_vjp, example=lambda rng: ((rng.standard_normal((3, 2, 4, 6)), 2), {}))
def pixel_unshuffle(input, downscale_factor):
    """(*, C, H·r, W·r) -> (*, C·r², H, W), r = downscale_factor: the inverse of
    ``pixel_shuffle``. Raises ValueError for fewer than 3 dims, r < 1, or a spatial size not
    divisible by r."""
    x = np.asarray(input)
    r = int(downscale_factor)
    _check(x, r, "pixel_unshuffle")
    *lead, c, hr, wr = x.shape
    if hr % r or wr % r:
        raise ValueError(f"pixel_unshuffle: spatial size {hr}×{wr} is not divisible by downscale_factor {r}")
    h, w = hr // r, wr // r
    y = x.reshape(*lead, c, h, r, w, r)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)  # (*, C, r_i, r_j, H, W)
    return y.reshape(*lead, c * r * r, h, w)
