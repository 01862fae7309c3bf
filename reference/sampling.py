"""Spatial sampling: ``torch.nn.functional.grid_sample`` and ``torch.nn.functional.affine_grid``.

grid_sample reads the input (N, C, *in) at the positions of a grid (N, *out, D) whose last axis
holds normalised coordinates (x, y[, z]) = (width, height[, depth]) in [-1, 1]; the output is
(N, C, *out). Per spatial dim of size S, a grid value g becomes the pixel coordinate

    c = (g + 1)/2·(S - 1)        (align_corners=True: ±1 are the centres of the corner pixels)
    c = ((g + 1)·S - 1)/2        (align_corners=False: ±1 are the outer edges of the corner pixels)

then ``padding_mode`` maps it: ``zeros`` leaves it (taps outside the input read 0); ``border``
clamps it to [0, S - 1]; ``reflection`` reflects it about the centres of the corner pixels
(align_corners=True: about 0 and S - 1) or their outer edges (-½ and S - ½) as many times as needed,
then clamps to [0, S - 1]. Modes:

- ``bilinear`` (trilinear on 5-d input): taps ⌊c⌋ and ⌊c⌋ + 1 with weights 1 - f and f,
  f = c - ⌊c⌋, multiplied over the dims; a tap outside the input contributes nothing.
- ``nearest``: the tap round(c), ties to even (torch's std::nearbyint); 0 outside the input.
- ``bicubic`` (4-d only): the unpadded coordinate c, taps ⌊c⌋ - 1 .. ⌊c⌋ + 2, Keys' weights with
  A = -0.75 at t = c - ⌊c⌋; each tap's position is itself mapped by the padding mode (border:
  clamped; reflection: reflected then clamped) and read as 0 outside the input (zeros).

Gradients. The input's is the transposed gather (each output's cotangent scattered to its taps with
their weights). The grid's follows torch's conventions at the kinks: the derivative of ⌊c⌋-based
weights is taken from the right at integer c (the taps ⌊c⌋, ⌊c⌋ + 1 of the forward); a clamped
coordinate has derivative 0 at and beyond the border (c <= 0 or c >= S - 1 count as clamped);
a reflection flips the sign on odd folds; ``nearest`` has a zero grid gradient. bicubic's padding
maps only tap positions, so its grid gradient is Σ value·W'(t) times the unnormalisation factor.

affine_grid(theta, size, align_corners) builds the grid of an affine map: with base coordinates
b_i = -1 + 2i/(S - 1) per dim (align_corners=True), b_i = (2i + 1)/S - 1 (False), and 0 when
S = 1, grid[n, ..., :] = theta[n] @ (x, y[, z], 1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.interpolate import CUBIC_A, CUBIC_LIPSCHITZ, keys_kernel, keys_terms, perturbed_subsets
from reference.registry import functional

MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")


def unnormalize(coord: np.ndarray, size: int, align_corners: bool) -> tuple[np.ndarray, float]:
    """(pixel coordinate, d coordinate / d grid value) of normalised grid values along a dim of
    ``size`` pixels (see the module docstring)."""
    if align_corners:
        return (coord + 1) / 2 * (size - 1), (size - 1) / 2
    return ((coord + 1) * size - 1) / 2, size / 2


def reflect(c: np.ndarray, twice_low: int, twice_high: int) -> tuple[np.ndarray, np.ndarray]:
    """(c reflected into [low, high] as many times as needed, the sign of dc'/dc): the bounds are
    given doubled so that half-integers stay integers. A span of 0 maps everything to 0."""
    if twice_low == twice_high:
        return np.zeros_like(c), np.zeros_like(c)
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    shifted = c - low
    sign = np.where(shifted < 0, -1.0, 1.0)
    shifted = np.abs(shifted)
    extra = np.fmod(shifted, span)
    flips = np.floor(shifted / span)
    even = flips % 2 == 0
    return np.where(even, extra + low, span - extra + low), np.where(even, sign, -sign)


def pad_coordinate(c: np.ndarray, size: int, padding_mode: str, align_corners: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(the coordinate after ``padding_mode``, its derivative): border clamps to [0, S - 1]
    (derivative 0 at and beyond the bounds), reflection reflects then clamps."""
    grad = np.ones_like(c)
    if padding_mode == "reflection":
        c, grad = reflect(c, 0, 2 * (size - 1)) if align_corners else reflect(c, -1, 2 * size - 1)
    if padding_mode in ("border", "reflection"):
        inside = (c > 0) & (c < size - 1)
        grad = np.where(inside, grad, 0.0)
        c = np.clip(c, 0, size - 1)
    return c, grad


@dataclass(frozen=True)
class DimTaps:
    """The taps of one spatial dim at every grid point: ``index`` (…, T) int, ``weight``,
    ``dweight`` (d weight / d pixel coordinate), ``valid`` (inside the input), and ``scale``
    (…,) d pixel coordinate / d grid value (padding included)."""

    index: np.ndarray
    weight: np.ndarray
    dweight: np.ndarray
    valid: np.ndarray
    scale: np.ndarray


def _keys_derivative(x: np.ndarray, a: float) -> np.ndarray:
    """W'(x) of Keys' kernel."""
    s, x = np.sign(x), np.abs(x)
    near = (3 * (a + 2) * x - 2 * (a + 3)) * x
    far = (3 * a * x - 10 * a) * x + 8 * a
    return s * np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def dim_taps(coord: np.ndarray, size: int, mode: str, padding_mode: str, align_corners: bool,
             ties: str = "even") -> DimTaps:
    """The taps of grid values ``coord`` along a dim of ``size`` pixels (``ties``: how
    ``nearest`` rounds a coordinate exactly halfway, "even" as torch, or "up")."""
    c, scale = unnormalize(coord, size, align_corners)
    if mode == "bicubic":
        base = np.floor(c)
        t = c - base
        offsets = np.arange(-1, 3)
        position = base[..., None] + offsets
        mapped, _ = pad_coordinate(position, size, padding_mode, align_corners)
        index = np.trunc(mapped)
        valid = (index >= 0) & (index < size) & np.isfinite(index)
        weight = keys_kernel(t[..., None] - offsets, CUBIC_A)
        dweight = _keys_derivative(t[..., None] - offsets, CUBIC_A)
        return DimTaps(np.where(valid, index, 0).astype(np.int64), weight, dweight, valid,
                       np.full(c.shape, scale))
    c, grad = pad_coordinate(c, size, padding_mode, align_corners)
    if mode == "nearest":
        index = np.rint(c) if ties == "even" else np.floor(c + 0.5)
        valid = (index >= 0) & (index < size)
        return DimTaps(np.where(valid, index, 0).astype(np.int64)[..., None], np.ones(c.shape + (1,)),
                       np.zeros(c.shape + (1,)), valid[..., None], np.zeros(c.shape))
    base = np.floor(c)
    f = c - base
    index = base[..., None] + np.arange(2)
    valid = (index >= 0) & (index < size)
    weight = np.stack([1 - f, f], axis=-1)
    dweight = np.broadcast_to(np.array([-1.0, 1.0]), weight.shape)
    return DimTaps(np.where(valid, index, 0).astype(np.int64), weight, dweight, valid, scale * grad)


@dataclass(frozen=True)
class SampleTaps:
    """The combined taps of every grid point: ``flat`` (N, P, T) indices into the flattened input
    plane, ``weight`` and ``valid`` (N, P, T), ``dweight`` (D, N, P, T) d weight / d coordinate of
    each dim, ``scale`` (D, N, P) d coordinate / d grid value."""

    flat: np.ndarray
    weight: np.ndarray
    valid: np.ndarray
    dweight: np.ndarray
    scale: np.ndarray


def sample_taps(in_spatial: tuple[int, ...], grid: np.ndarray, mode: str, padding_mode: str,
                align_corners: bool, ties: str = "even") -> SampleTaps:
    """Combine the per-dim taps (grid's last axis is x, y[, z]: the last spatial dim first)."""
    dims = len(in_spatial)
    n = grid.shape[0]
    points = grid.reshape(n, -1, dims)
    per_dim = [dim_taps(points[..., dims - 1 - d], in_spatial[d], mode, padding_mode, align_corners, ties)
               for d in range(dims)]
    counts = [t.index.shape[-1] for t in per_dim]
    strides = [int(np.prod(in_spatial[d + 1:], dtype=np.int64)) for d in range(dims)]

    def spread(array: np.ndarray, d: int) -> np.ndarray:
        """(N, P, T_d) -> (N, P, 1, .., T_d, .., 1): the tap axis of dim d in its own slot."""
        shape = [1] * dims
        shape[d] = counts[d]
        return array.reshape(array.shape[:-1] + tuple(shape))

    def product(arrays: list[np.ndarray]) -> np.ndarray:
        return functools.reduce(np.multiply, [spread(a, d) for d, a in enumerate(arrays)])

    flat = functools.reduce(np.add, [spread(t.index * s, d) for d, (t, s) in enumerate(zip(per_dim, strides))])
    weight = product([t.weight for t in per_dim])
    valid = functools.reduce(np.logical_and, [spread(t.valid, d) for d, t in enumerate(per_dim)])
    dweight = np.stack([product([t.dweight if k == d else t.weight for k, t in enumerate(per_dim)])
                        for d in range(dims)])
    total = int(np.prod(counts))
    return SampleTaps(flat.reshape(n, -1, total), weight.reshape(n, -1, total), valid.reshape(n, -1, total),
                      dweight.reshape(dims, n, -1, total), np.stack([t.scale for t in per_dim]))


def _check_grid_sample(input: np.ndarray, grid: np.ndarray, mode: str, padding_mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"grid_sample: mode must be one of {MODES}, got {mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"grid_sample: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if input.ndim not in (4, 5) or grid.ndim != input.ndim:
        raise ValueError(f"grid_sample: 4-d or 5-d input and a grid of its rank, got {input.shape}, {grid.shape}")
    if grid.shape[0] != input.shape[0] or grid.shape[-1] != input.ndim - 2:
        raise ValueError(f"grid_sample: grid {grid.shape} must be (N, *out, {input.ndim - 2}) for input {input.shape}")
    if mode == "bicubic" and input.ndim != 4:
        raise ValueError("grid_sample: bicubic interpolation takes a 4-d input only")
    if min(input.shape[2:], default=0) <= 0:
        raise ValueError(f"grid_sample: empty input spatial dims {input.shape}")


def _sample(x: np.ndarray, taps: SampleTaps) -> np.ndarray:
    """out[n, c, p] = Σ_t valid·weight·x[n, c, flat] (an out-of-bounds tap reads 0)."""
    n, c = x.shape[:2]
    plane = x.reshape(n, c, -1)
    values = plane[np.arange(n)[:, None, None], :, taps.flat]  # (N, P, T, C)
    values = np.where(taps.valid[..., None], values, 0.0)
    return np.einsum("nptc,npt->ncp", values, taps.weight)


def _grid_sample_vjp(cotangent, input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    x, g = np.asarray(input, dtype=np.float64), np.asarray(cotangent, dtype=np.float64)
    _check_grid_sample(x, np.asarray(grid), mode, padding_mode)
    taps = sample_taps(x.shape[2:], np.asarray(grid, dtype=np.float64), mode, padding_mode, bool(align_corners))
    n, c = x.shape[:2]
    gp = g.reshape(n, c, -1)  # (N, C, P)
    grad_x = np.zeros((n, int(np.prod(x.shape[2:])), c))
    contributions = np.where(taps.valid, taps.weight, 0.0)[..., None] * np.moveaxis(gp, 1, -1)[:, :, None, :]
    np.add.at(grad_x, (np.arange(n)[:, None, None], taps.flat), contributions)
    values = np.where(taps.valid[..., None], x.reshape(n, c, -1)[np.arange(n)[:, None, None], :, taps.flat], 0.0)
    per_point = np.einsum("nptc,ncp->npt", values, gp)  # Σ_c value·g
    dims = x.ndim - 2
    grad_coord = np.einsum("dnpt,npt->dnp", taps.dweight, per_point) * taps.scale
    if mode == "nearest":  # piecewise constant: torch's grid gradient is 0 (NaN inputs included)
        grad_coord = np.zeros_like(grad_coord)
    grad_grid = np.stack([grad_coord[dims - 1 - k] for k in range(dims)], axis=-1).reshape(np.shape(grid))
    return {"input": np.moveaxis(grad_x, -1, 1).reshape(x.shape), "grid": grad_grid}


def _grid_sample_example(rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return ((rng.standard_normal((2, 2, 3, 4)), rng.uniform(-1.3, 1.3, (2, 3, 2, 2))),
            {"mode": "bicubic", "padding_mode": "reflection", "align_corners": False})


@functional(vjp=_grid_sample_vjp, example=_grid_sample_example)
def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """Sample input (N, C, H, W) or (N, C, D, H, W) at the normalised coordinates of grid
    (N, H_out, W_out, 2) or (N, D_out, H_out, W_out, 3) -> (N, C, *out), with the coordinate,
    padding and interpolation conventions of the module docstring (align_corners None is False).
    Raises ValueError for calls torch rejects."""
    x, grid = np.asarray(input, dtype=np.float64), np.asarray(grid, dtype=np.float64)
    _check_grid_sample(x, grid, mode, padding_mode)
    taps = sample_taps(x.shape[2:], grid, mode, padding_mode, bool(align_corners))
    return _sample(x, taps).reshape(x.shape[:2] + grid.shape[1:-1])


def grid_sample_ties_up(input: np.ndarray, grid: np.ndarray, padding_mode: str, align_corners: bool
                        ) -> np.ndarray:
    """grid_sample(mode='nearest') with ties rounded up (⌊c + ½⌋) instead of to even: the other
    reasonable reading of 'nearest' at a coordinate exactly halfway between two pixels."""
    x = np.asarray(input, dtype=np.float64)
    taps = sample_taps(x.shape[2:], np.asarray(grid, dtype=np.float64), "nearest", padding_mode, align_corners, "up")
    return _sample(x, taps).reshape(x.shape[:2] + grid.shape[1:-1])


def grid_sample_ties_up_vjp(g: np.ndarray, input: np.ndarray, grid: np.ndarray, padding_mode: str,
                            align_corners: bool) -> np.ndarray:
    """The input gradient of ``grid_sample_ties_up``."""
    x = np.asarray(input, dtype=np.float64)
    taps = sample_taps(x.shape[2:], np.asarray(grid, dtype=np.float64), "nearest", padding_mode, align_corners, "up")
    n, c = x.shape[:2]
    grad = np.zeros((n, int(np.prod(x.shape[2:])), c))
    contributions = np.where(taps.valid, 1.0, 0.0)[..., None] * np.moveaxis(g.reshape(n, c, -1), 1, -1)[:, :, None]
    np.add.at(grad, (np.arange(n)[:, None, None], taps.flat), contributions)
    return np.moveaxis(grad, -1, 1).reshape(x.shape)


# -- affine_grid ------------------------------------------------------------------------------------

def base_coordinates(steps: int, align_corners: bool) -> np.ndarray:
    """The normalised coordinates of ``steps`` pixel centres: -1 + 2i/(S - 1) (align_corners),
    (2i + 1)/S - 1 (not), and [0] for S = 1."""
    if steps <= 1:
        return np.zeros(steps)
    i = np.arange(steps)
    return -1 + 2 * i / (steps - 1) if align_corners else (2 * i + 1) / steps - 1


def base_grid(spatial: tuple[int, ...], align_corners: bool) -> np.ndarray:
    """(*spatial, D + 1): (x, y[, z], 1) at every output position (x along the last dim)."""
    axes = [base_coordinates(s, align_corners) for s in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([*mesh[::-1], np.ones(tuple(spatial))], axis=-1)


def _check_affine_grid(theta: np.ndarray, size: Any) -> tuple[int, ...]:
    if not np.issubdtype(np.asarray(theta).dtype, np.floating):
        raise ValueError(f"affine_grid: theta must be floating point, got {np.asarray(theta).dtype}")
    size = tuple(int(s) for s in size)
    if len(size) not in (4, 5):
        raise ValueError(f"affine_grid takes a 4-d or 5-d size, got {size}")
    dims = len(size) - 2
    if theta.ndim != 3 or theta.shape[1:] != (dims, dims + 1):
        raise ValueError(f"affine_grid: theta must be (N, {dims}, {dims + 1}) for size {size}, got {theta.shape}")
    if min(size) <= 0:
        raise ValueError(f"affine_grid: a positive size, got {size}")
    if theta.shape[0] != size[0]:
        raise ValueError(f"affine_grid: theta's batch {theta.shape[0]} differs from size[0] = {size[0]}")
    return size


def _affine_grid_vjp(cotangent, theta, size, align_corners=None):
    size = _check_affine_grid(np.asarray(theta), size)
    base = base_grid(size[2:], bool(align_corners)).reshape(-1, len(size) - 1)
    g = np.asarray(cotangent, dtype=np.float64).reshape(size[0], -1, len(size) - 2)
    return {"theta": np.einsum("npi,pj->nij", g, base)}


@functional(vjp=_affine_grid_vjp,
            example=lambda rng: ((rng.standard_normal((2, 3, 4)), (2, 1, 3, 2, 4)), {"align_corners": False}))
def affine_grid(theta, size, align_corners=None):
    """The sampling grid of affine maps theta (N, 2, 3) for size (N, C, H, W), or (N, 3, 4) for
    (N, C, D, H, W): grid[n, ..., i] = Σ_j theta[n, i, j]·base[..., j] with the base grid of
    ``base_grid``; returns (N, H, W, 2) or (N, D, H, W, 3). align_corners None is False."""
    size = _check_affine_grid(np.asarray(theta), size)
    base = base_grid(size[2:], bool(align_corners))
    return np.einsum("...j,nij->n...i", base, np.asarray(theta, dtype=np.float64))


# -- error analyses ---------------------------------------------------------------------------------

def coordinate_error(c: np.ndarray, size: int, padding_mode: str, align_corners: bool) -> np.ndarray:
    """|δc| of the pixel coordinate, in units of the arithmetic's u, as torch computes it:
    align_corners (g + 1)/2·(S - 1): two roundings, 2|c|; else ((g + 1)·S - 1)/2: 2|c + ½| + |c|;
    a reflection adds three (|c| + S each: the shift, the fold, the shift back)."""
    err = 2 * np.abs(c) if align_corners else 2 * np.abs(c + 0.5) + np.abs(c)
    if padding_mode == "reflection":
        err = err + 3 * (np.abs(c) + size)
    return err


# |W''| of Keys' kernel (A = -0.75) is at most 2|A + 3| + 6|A + 2| = 12 (for |x| < 1) and below
# elsewhere; |W'| at most 1.35 (``reference.interpolate.CUBIC_LIPSCHITZ`` rounds it up to 1.5).
CUBIC_CURVATURE = 12.0


@dataclass(frozen=True)
class _ErrorTaps:
    """Per dim, a window of taps around each grid point (…, W) with: the input index and its
    validity, |weight| of the exact taps, |d weight/dc| on the exact taps and, where the
    coordinate is within its error of a kink, on the neighbours the backend may read instead."""

    index: np.ndarray
    valid: np.ndarray
    weight: np.ndarray
    slope: np.ndarray
    horner: np.ndarray
    kink: np.ndarray  # (…,) the coordinate is within its error of an integer (linear) or clamp/fold


def _error_taps(coord: np.ndarray, size: int, mode: str, padding_mode: str, align_corners: bool, u: float
                ) -> tuple[_ErrorTaps, np.ndarray, np.ndarray, float]:
    """(window taps, |δc| in units of u, |dc/dg| (padding included), |dc/dg| of the
    unnormalisation alone) of one dim (see ``grid_sample_error``)."""
    raw, scale = unnormalize(coord, size, align_corners)
    err = coordinate_error(raw, size, "zeros" if mode == "bicubic" else padding_mode, align_corners)
    reach = err * u
    if mode == "bicubic":
        c, grad = raw, np.full(raw.shape, scale)
        base = np.floor(c)
        offsets = np.arange(-2, 4)
        position = base[..., None] + offsets
        mapped, _ = pad_coordinate(position, size, padding_mode, align_corners)
        index = np.trunc(mapped)
        t = (c - base)[..., None] - offsets
        weight = np.where((offsets >= -1) & (offsets <= 2), np.abs(keys_kernel(t, CUBIC_A)), 0.0)
        slope = np.where(np.abs(t) < 2 + reach[..., None], CUBIC_LIPSCHITZ, 0.0)
        horner = np.where((offsets >= -1) & (offsets <= 2), 6 * keys_terms(t, CUBIC_A) + 4 * CUBIC_LIPSCHITZ, 0.0)
        kink = np.zeros(c.shape, dtype=bool)
    else:
        c, grad = pad_coordinate(raw, size, padding_mode, align_corners)
        base = np.floor(c)
        f = c - base
        offsets = np.arange(-1, 3)
        index = base[..., None] + offsets
        weight = np.stack([np.zeros_like(f), 1 - f, f, np.zeros_like(f)], -1)
        below, above = f <= reach, 1 - f <= reach
        slope = np.stack([np.where(below, 1.0, 0.0), np.ones_like(f), np.ones_like(f), np.where(above, 1.0, 0.0)], -1)
        horner = np.stack([np.zeros_like(f), np.ones_like(f), np.ones_like(f), np.zeros_like(f)], -1)  # 1 - f
        kink = below | above
        if padding_mode != "zeros":
            kink = kink | (np.abs(raw) <= reach) | (np.abs(raw - (size - 1)) <= reach)
        if padding_mode == "reflection":
            low, span = (0.0, size - 1.0) if align_corners else (-0.5, float(size))
            folds = (raw - low) / span if span else np.zeros_like(raw)
            kink = kink | (np.abs(folds - np.rint(folds)) * span <= reach)
    valid = (index >= 0) & (index < size)
    taps = _ErrorTaps(np.where(valid, index, 0).astype(np.int64), valid, weight, slope, horner, kink)
    return taps, err, np.abs(scale * grad) if mode != "bicubic" else np.abs(grad), abs(scale)


def grid_sample_error(input: np.ndarray, grid: np.ndarray, cotangent: np.ndarray | None, mode: str,
                      padding_mode: str, align_corners: bool, u: float) -> dict[str, np.ndarray]:
    """First-order bounds, in units of the dtype's u, of |computed - exact| for grid_sample's
    output and (given a cotangent) its input and grid gradients, ``mode`` bilinear or bicubic,
    every operation rounded to the dtype (torch computes in the input's dtype; float16/bfloat16
    measurably so).

    Per dim the pixel coordinate errs by δc (``coordinate_error``). The output is
    Σ_t (Π_d w_d)·x_t: R = 2D + T roundings per path (weights 1 - f and f, their product, the
    product with x, the sequential sum of T taps), plus Σ_d δc_d·Σ_t |∂w_t/∂c_d|·|x_t| (the weights
    are Lipschitz in c: 1 for the triangle, 1.5 for Keys' kernel, whose Horner evaluation adds
    6Σ|a_k||t|^k + 4·1.5 for the roundings of its arguments; with every order of the product of
    the perturbed weights, ``perturbed_subsets``); where c is within δc of an integer the
    backend may read the neighbour below or above instead, so those taps enter the sum too. The
    input gradient scatters the same terms times |g| (R + 2√K, K the taps reaching one element).
    The grid gradient s_d·Σ_c g_c Σ_t x_t ∂w_t/∂c_d errs by (2D + 1 + 2√(T·C))·|…| of its
    absolute terms, by the other dims' weight errors, by Keys' curvature 12·δc_d, and, where c
    is within δc of a kink of the derivative (an integer for bilinear, the clamp of border, a fold
    of reflection), by twice its whole absolute value (the backend may take either side)."""
    x = np.asarray(input, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    dims = x.ndim - 2
    n, ch = x.shape[:2]
    points = grid.reshape(n, -1, dims)
    spatial = x.shape[2:]
    per_dim, errs, scales, spans = [], [], [], []
    for d in range(dims):
        taps, err, scale, span = _error_taps(points[..., dims - 1 - d], spatial[d], mode, padding_mode, align_corners,
                                             u)
        per_dim.append(taps)
        errs.append(err)
        scales.append(scale)
        spans.append(span)
    widths = [t.index.shape[-1] for t in per_dim]
    strides = [int(np.prod(spatial[d + 1:], dtype=np.int64)) for d in range(dims)]
    total = int(np.prod(widths))

    def spread(array: np.ndarray, d: int) -> np.ndarray:
        shape = [1] * dims
        shape[d] = widths[d]
        return array.reshape(array.shape[:-1] + tuple(shape))

    def combine(arrays: list[np.ndarray]) -> np.ndarray:
        return functools.reduce(np.multiply, [spread(a, d) for d, a in enumerate(arrays)]).reshape(n, -1, total)

    flat = functools.reduce(np.add, [spread(t.index * s, d) for d, (t, s) in enumerate(zip(per_dim, strides))])
    flat = flat.reshape(n, -1, total)
    valid = combine([t.valid.astype(np.float64) for t in per_dim])
    weight = combine([t.weight for t in per_dim]) * valid
    taps_per_dim = 4 if mode == "bicubic" else 2
    rounds = 2 * dims + taps_per_dim**dims
    # per tap: the coefficient of |x_t| in the output's bound (every order of the weights' product)
    coef = rounds * weight
    perturb = [errs[d][..., None] * t.slope + t.horner for d, t in enumerate(per_dim)]
    for moved, factor in perturbed_subsets(dims, u):
        coef = coef + factor * combine([perturb[k] if k in moved else t.weight for k, t in enumerate(per_dim)]) * valid
    ax = np.abs(x).reshape(n, ch, -1)
    values = ax[np.arange(n)[:, None, None], :, flat]  # (N, P, T, C) |x| at the taps
    out_shape = x.shape[:2] + grid.shape[1:-1]
    result = {"output": np.einsum("nptc,npt->ncp", values, coef).reshape(out_shape)}
    if cotangent is None:
        return result
    ag = np.abs(np.asarray(cotangent, dtype=np.float64)).reshape(n, ch, -1)
    reached = (flat + np.arange(n)[:, None, None] * ax.shape[-1])[weight > 0]
    k = int(np.bincount(reached.ravel()).max()) if reached.size else 1
    gcoef = coef + 2 * np.sqrt(k) * weight
    grad_x = np.zeros((n, ax.shape[-1], ch))
    np.add.at(grad_x, (np.arange(n)[:, None, None], flat), gcoef[..., None] * np.moveaxis(ag, 1, -1)[:, :, None, :])
    result["grad.input"] = np.moveaxis(grad_x, -1, 1).reshape(x.shape)
    mass = np.einsum("nptc,ncp->npt", values, ag)  # Σ_c |g_c|·|x_t|
    grad_grid = []
    for d in range(dims):
        slope_d = combine([per_dim[d].slope if k == d else per_dim[k].weight for k in range(dims)]) * valid
        magnitude = np.einsum("npt,npt->np", slope_d, mass)
        bound = (2 * dims + 1 + 2 * math.sqrt(total * ch)) * magnitude
        for e in range(dims):
            if e != d:
                cross = combine([per_dim[k].slope if k in (d, e) else per_dim[k].weight for k in range(dims)]) * valid
                bound = bound + np.einsum("npt,npt->np", cross, mass) * (errs[e] + 1)
        if mode == "bicubic":
            bound = bound + CUBIC_CURVATURE * errs[d] * magnitude
        window = combine([np.ones_like(t.weight) if k == d else t.weight for k, t in enumerate(per_dim)]) * valid
        kink = np.where(per_dim[d].kink, 2 * spans[d] * np.einsum("npt,npt->np", window, mass) / u, 0.0)
        grad_grid.append(bound * scales[d] + kink)
    result["grad.grid"] = np.stack(grad_grid[::-1], axis=-1).reshape(grid.shape)
    return result


def affine_grid_error(theta: np.ndarray, size: tuple[int, ...], cotangent: np.ndarray | None,
                      align_corners: bool) -> dict[str, np.ndarray]:
    """First-order bounds, in units of the dtype's u, for affine_grid. torch builds the base
    coordinates with linspace in the dtype (start + step·i: |δb| <= 3u, plus the rounding to the
    dtype, and for align_corners=False the scaling by (S - 1)/S: 2 more relative roundings; so
    |δb| <= 4u, or 6u) and multiplies by theta with a batched matrix product of K = D + 1 terms:
    E_grid = Σ_j |θ_ij|·(δb_j + K·|b_j|); the gradient Σ_p g_pi·b_pj over the P grid points:
    E_θ = Σ_p |g_pi|·(δb_pj + (1 + 2√P)·|b_pj|)."""
    theta = np.abs(np.asarray(theta, dtype=np.float64))
    spatial = tuple(size[2:])
    base = np.abs(base_grid(spatial, align_corners))
    drift = np.full(base.shape, 4.0 if align_corners else 6.0)
    drift[..., -1] = 0.0  # the constant 1
    k = base.shape[-1]
    result = {"output": np.einsum("...j,nij->n...i", drift + k * base, theta)}
    if cotangent is not None:
        points = int(np.prod(spatial))
        g = np.abs(np.asarray(cotangent, dtype=np.float64)).reshape(theta.shape[0], points, -1)
        per_point = (drift + (1 + 2 * math.sqrt(points)) * base).reshape(points, -1)
        result["grad.theta"] = np.einsum("npi,pj->nij", g, per_point)
    return result
