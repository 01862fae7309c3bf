"""Interpolation: ``torch.nn.functional.interpolate`` in every mode, and its older spellings
``upsample``, ``upsample_nearest`` and ``upsample_bilinear``.

Every mode is separable: along each spatial axis an output position o reads a few input positions
(taps) with weights, and the output is the tensor product of those one-axis maps (the area mode's
windows are products of intervals too). A one-axis map is ``Taps``: ``index`` and ``weight`` of
shape (out, T). The forward gathers the taps (so NaN and ±inf travel exactly as a copy would in
the selecting modes); the VJP applies the transposed (in × out) matrix of each axis to the
cotangent.

Conventions, as torch documents them and, where it does not, as its CPU kernels compute them
(aten/src/ATen/native/UpSample.h):

- Output size: ``size``, or ⌊in·scale_factor⌋ per dim (the product in float64, truncated).
- The scale a mode uses, s: with ``align_corners=True``, (in - 1)/(out - 1) (0 when out = 1);
  else 1/scale_factor when a positive factor is given and ``recompute_scale_factor`` is not True,
  else in/out. torch evaluates s and the source positions below in ``opmath`` (float32 for
  float16, bfloat16 and float32 inputs, float64 for float64) and the nearest modes' indices in
  float32 (its 1-d and 3-d nearest kernels use float64 for float64 inputs: the two agree for inputs
  of up to 13 and outputs of up to 36 elements); the reference evaluates the positions exactly
  (rationals), and the two nearest rules in float32, as their definition.
- ``nearest``: src = min(⌊dst·s⌋, in - 1), dst·s in float32 (the OpenCV rule torch keeps).
- ``nearest-exact``: src = min(⌊(dst + ½)·s⌋, in - 1), the product in float64 of float32 s,
  rounded to float32 before the floor (Pillow's rule).
- Linear modes (``linear``, ``bilinear``, ``trilinear``): src = s·dst (align_corners) or
  s·(dst + ½) - ½ clamped at 0; i0 = min(⌊src⌋, in - 1), i1 = min(i0 + 1, in - 1),
  λ = src - i0 (clamped to [0, 1]); weights 1 - λ and λ.
- ``bicubic``: the same src without the clamp at 0, t = src - ⌊src⌋, the four taps
  ⌊src⌋ - 1 .. ⌊src⌋ + 2 clamped into [0, in - 1] (a border tap repeats the edge value), weights
  Keys' cubic convolution with A = -0.75: W(x) = (A + 2)|x|³ - (A + 3)|x|² + 1 for |x| <= 1,
  A|x|³ - 5A|x|² + 8A|x| - 4A for 1 < |x| < 2, at x = t + 1, t, 1 - t, 2 - t.
- ``area``: adaptive average pooling (``reference.pooling.adaptive_bounds``): output i averages
  the input window [⌊i·in/out⌋, ⌈(i + 1)·in/out⌉); a scale factor only sets the output size.
- ``antialias=True`` (bilinear and bicubic, 4-d input; Pillow's resampling): with s as above,
  support = (T/2)·max(s, 1) (T = 2 bilinear, 4 bicubic), center = s·(dst + ½); the taps are
  j = xmin .. xmax - 1 with xmin = max(trunc(center - support + ½), 0) and
  xmax = min(trunc(center + support + ½), in), weights filter((j - center + ½)/max(s, 1))
  normalised to sum 1, filter the triangle max(0, 1 - |x|) or Keys' cubic with A = -0.5.
  For upsampling (s < 1) this is linear (or cubic) interpolation whose border taps are dropped and
  the remaining weights renormalised, instead of clamped.

torch's kernels also take shortcuts the documentation does not state: nearest copies when out = in
and takes dst >> 1 when out = 2·in, and the linear modes copy when out = in, whatever the factor.
The reference follows the documented rule; ``kernel_taps`` gives the shortcut variants, which the
conformance suite accepts as alternatives (see ``conformance.numerics.vision``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.pooling import adaptive_bounds
from reference.registry import functional

MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
# Modes that take align_corners, and the input rank each needs (spatial dims).
MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
SELECTING = ("nearest", "nearest-exact")
CUBIC_A = -0.75
ANTIALIAS_CUBIC_A = -0.5


@dataclass(frozen=True)
class Taps:
    """The one-axis map of a mode: output o = Σ_t weight[o, t]·input[index[o, t]]; ``src`` is the
    (exact) source position of each output (for the error analysis; None for area)."""

    index: np.ndarray
    weight: np.ndarray
    in_size: int
    src: np.ndarray | None = None

    def matrix(self, absolute: bool = False) -> np.ndarray:
        """The (out × in) matrix (weights of repeated taps summed; of their |weights| when
        ``absolute``)."""
        out = np.zeros((self.index.shape[0], self.in_size))
        rows = np.broadcast_to(np.arange(self.index.shape[0])[:, None], self.index.shape)
        np.add.at(out, (rows, self.index), np.abs(self.weight) if absolute else self.weight)
        return out


@dataclass(frozen=True)
class Geometry:
    """What ``interpolate`` computes per spatial dim: input and output lengths, the factor the
    kernel receives (None: it uses in/out), and the effective align_corners."""

    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]
    scales: tuple[float | None, ...]
    align_corners: bool


def _per_dim(value: Any, dims: int, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != dims:
            raise ValueError(f"{what} {tuple(value)} must give one value per spatial dim ({dims})")
        return list(value)
    return [value] * dims


def interpolate_geometry(shape: Sequence[int], size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                         align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                         antialias: bool = False) -> Geometry:
    """Validate the arguments as ``torch.nn.functional.interpolate`` does (ValueError or
    TypeError) and return the geometry of the call."""
    if mode not in MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}")
    if mode in (*SELECTING, "area"):
        if align_corners is not None:
            raise ValueError("align_corners can only be set with the interpolating modes")
    dims = len(shape) - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    if dims < 1 or dims > 3:
        raise ValueError(f"interpolate takes 3-d, 4-d or 5-d input, got {len(shape)}-d")
    if size is not None:
        sizes = _per_dim(size, dims, "size")
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes):
            raise TypeError(f"size must hold integers, got {size!r}")
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size")
        scales: list[float | None] = [None] * dims
    else:
        factors = [float(f) for f in _per_dim(scale_factor, dims, "scale_factor")]
        sizes = [math.trunc(shape[2 + i] * factors[i]) for i in range(dims)]
        recompute = recompute_scale_factor or mode == "area"
        scales = [None] * dims if recompute else [f if f > 0 else None for f in factors]
    if antialias and not (mode in ("bilinear", "bicubic") and len(shape) == 4):
        raise ValueError("antialias takes the bilinear and bicubic modes and a 4-d input")
    if mode in MODE_DIMS and MODE_DIMS[mode] != dims:
        raise ValueError(f"mode {mode!r} needs a {MODE_DIMS[mode] + 2}-d input, got {len(shape)}-d")
    in_sizes = tuple(int(s) for s in shape[2:])
    if min(in_sizes) <= 0 or min(sizes) <= 0:
        raise ValueError(f"input and output sizes must be > 0, got input {in_sizes}, output {tuple(sizes)}")
    if shape[1] == 0:
        raise ValueError(f"interpolate needs at least one channel (an empty batch is fine), got shape {tuple(shape)}")
    return Geometry(in_sizes, tuple(int(s) for s in sizes), tuple(scales), bool(align_corners))


# -- one-axis maps ---------------------------------------------------------------------------------

def _scale_ratio(in_size: int, out_size: int, scale: float | None, align_corners: bool) -> tuple[int, int]:
    """The scale s as an exact ratio (numerator, denominator) of Python integers."""
    if align_corners:
        return (in_size - 1, out_size - 1) if out_size > 1 else (0, 1)
    if scale is not None:
        q, p = float(scale).as_integer_ratio()  # s = 1/scale = p/q
        return p, q
    return in_size, out_size


def _exact_source(in_size: int, out_size: int, scale: float | None, align_corners: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(⌊src⌋, src - ⌊src⌋, src) of every output position, src computed exactly (rational) and
    only the fraction and src rounded once to float64."""
    num, den = _scale_ratio(in_size, out_size, scale, align_corners)
    dst = np.arange(out_size, dtype=object)
    if align_corners:
        top, bottom = dst * num, den
    else:  # s·(dst + ½) - ½ = (s·(2·dst + 1) - 1)/2
        top, bottom = (2 * dst + 1) * num - den, 2 * den
    floor = (top // bottom).astype(np.int64)
    frac = ((top % bottom) / bottom).astype(np.float64)
    return floor, frac, (top / bottom).astype(np.float64)


def nearest_index(in_size: int, out_size: int, scale: float | None, exact: bool = False) -> np.ndarray:
    """Source index of each output position of mode 'nearest' (``exact=False``) or
    'nearest-exact', in torch's float32 evaluation: s = float32(1/scale) (the quotient in float64,
    rounded) or float32(in)/float32(out); nearest: ⌊float32(dst)·s⌋ in float32; nearest-exact:
    ⌊float32((dst + ½)·s)⌋, the product in float64. Clamped to in - 1."""
    dst = np.arange(out_size)
    s = np.float32(1.0 / float(scale)) if scale is not None else np.float32(in_size) / np.float32(out_size)
    if exact:
        src = np.floor(((dst + 0.5) * np.float64(s)).astype(np.float32))
    else:
        src = np.floor(dst.astype(np.float32) * s)
    return np.minimum(src.astype(np.int64), in_size - 1)


def keys_kernel(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel W(x) with parameter a (0 outside |x| < 2)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


def _antialias_taps(in_size: int, out_size: int, scale: float | None, align_corners: bool, cubic: bool) -> Taps:
    num, den = _scale_ratio(in_size, out_size, scale, align_corners)
    s = num / den
    support = (2.0 if cubic else 1.0) * max(s, 1.0)
    width = int(math.ceil(support)) * 2 + 1
    center = s * (np.arange(out_size) + 0.5)
    lo = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    hi = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    j = lo[:, None] + np.arange(width)[None, :]
    inside = j < np.minimum(hi, lo + width)[:, None]
    x = (j - center[:, None] + 0.5) / max(s, 1.0)
    w = np.where(inside, keys_kernel(x, ANTIALIAS_CUBIC_A) if cubic else _triangle(x), 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total != 0, w / np.where(total != 0, total, 1.0), 0.0)
    return Taps(np.minimum(j, in_size - 1), w, in_size, center - 0.5)


def axis_taps(mode: str, in_size: int, out_size: int, scale: float | None = None, align_corners: bool = False,
              antialias: bool = False) -> Taps:
    """The one-axis map of ``mode`` (see the module docstring) from ``in_size`` to
    ``out_size`` positions, ``scale`` being the factor the kernel receives (None: in/out)."""
    if mode in SELECTING:
        index = nearest_index(in_size, out_size, scale, exact=mode == "nearest-exact")
        return Taps(index[:, None], np.ones((out_size, 1)), in_size)
    if mode == "area":
        start, end = adaptive_bounds(in_size, out_size)
        width = int((end - start).max())
        j = start[:, None] + np.arange(width)[None, :]
        inside = j < end[:, None]
        w = np.where(inside, 1.0 / (end - start)[:, None], 0.0)
        return Taps(np.minimum(j, in_size - 1), w, in_size)
    if antialias:
        return _antialias_taps(in_size, out_size, scale, align_corners, cubic=mode == "bicubic")
    floor, frac, src = _exact_source(in_size, out_size, scale, align_corners)
    if mode == "bicubic":
        i0 = np.minimum(floor, in_size - 1)
        t = np.where(floor > in_size - 1, np.clip(src - i0, 0.0, 1.0), frac)
        offsets = np.arange(-1, 3)
        index = np.clip(i0[:, None] + offsets[None, :], 0, in_size - 1)
        weight = keys_kernel(t[:, None] - offsets[None, :], CUBIC_A)
        return Taps(index, weight, in_size, src)
    negative = floor < 0  # align_corners=False: a source left of 0 is clamped to 0
    i0 = np.where(negative, 0, np.minimum(floor, in_size - 1))
    lam = np.where(negative | (floor > in_size - 1), 0.0, frac)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return Taps(np.stack([i0, i1], axis=1), np.stack([1.0 - lam, lam], axis=1), in_size, np.maximum(src, 0.0))


def kernel_taps(mode: str, in_size: int, out_size: int, scale: float | None = None,
                align_corners: bool = False) -> Taps:
    """torch's undocumented shortcuts: the nearest kernels copy when out = in and take
    dst >> 1 when out = 2·in; the linear kernels copy when out = in; whatever the factor."""
    if mode == "nearest" and out_size in (in_size, 2 * in_size):
        index = np.arange(out_size) >> (0 if out_size == in_size else 1)
        return Taps(index[:, None], np.ones((out_size, 1)), in_size)
    if mode in ("linear", "bilinear", "trilinear") and out_size == in_size:
        index = np.arange(out_size)
        return Taps(np.stack([index, index], axis=1), np.stack([np.ones(out_size), np.zeros(out_size)], axis=1),
                    in_size, index.astype(np.float64))
    return axis_taps(mode, in_size, out_size, scale, align_corners)


def geometry_taps(geometry: Geometry, mode: str, antialias: bool = False) -> list[Taps]:
    """One ``Taps`` per spatial dim of a call."""
    return [axis_taps(mode, i, o, s, geometry.align_corners, antialias)
            for i, o, s in zip(geometry.in_sizes, geometry.out_sizes, geometry.scales)]


# -- applying separable maps ----------------------------------------------------------------------

def resample(x: np.ndarray, taps: Sequence[Taps]) -> np.ndarray:
    """y = the maps of ``taps`` applied to the trailing len(taps) axes of x, last axis first (as
    torch nests its loops); a one-tap map is a pure gather."""
    lead = x.ndim - len(taps)
    for axis in range(x.ndim - 1, lead - 1, -1):
        t = taps[axis - lead]
        if t.index.shape[1] == 1:
            x = np.take(x, t.index[:, 0], axis=axis)
            continue
        gathered = np.take(x, t.index, axis=axis)  # (..., out, T, ...)
        shape = [1] * gathered.ndim
        shape[axis], shape[axis + 1] = t.weight.shape
        x = (gathered * t.weight.reshape(shape)).sum(axis=axis + 1)
    return x


def apply_matrices(g: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
    """Contract each trailing axis of g with its matrix: out[..., i, ...] = Σ_o m[o, i]·g[..., o, ...]
    (the VJP of ``resample``, with the maps' matrices; also the absolute-value analyses)."""
    lead = g.ndim - len(matrices)
    for k, m in enumerate(matrices):
        g = np.moveaxis(np.tensordot(g, m, axes=([lead + k], [0])), -1, lead + k)
    return g


def resample_vjp(g: np.ndarray, taps: Sequence[Taps]) -> np.ndarray:
    """dL/dx of ``resample``: each axis' transposed matrix applied to the cotangent."""
    return apply_matrices(g, [t.matrix() for t in taps])


# -- torch.nn.functional.interpolate and its older spellings ---------------------------------------

def _interpolate_vjp(cotangent, input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                     recompute_scale_factor=None, antialias=False):
    geo = interpolate_geometry(input.shape, size, scale_factor, mode, align_corners, recompute_scale_factor,
                               antialias)
    return {"input": resample_vjp(np.asarray(cotangent, dtype=np.float64), geometry_taps(geo, mode, antialias))}


def _interpolate_example(rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (rng.standard_normal((2, 2, 4, 5)),), {"size": (7, 3), "mode": "bicubic", "align_corners": False}


@functional(vjp=_interpolate_vjp, example=_interpolate_example)
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the trailing 1 to 3 spatial dims of an (N, C, *spatial) input to ``size`` or
    ⌊in·scale_factor⌋ with ``mode`` (nearest, nearest-exact, linear (3-d input), bilinear and
    bicubic (4-d), trilinear (5-d), area); the index and weight conventions are in the module
    docstring. Raises ValueError/TypeError for calls torch rejects. Returns (N, C, *out)."""
    x = np.asarray(input, dtype=np.float64)
    geo = interpolate_geometry(x.shape, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias)
    return resample(x, geometry_taps(geo, mode, antialias))


def _upsample_vjp(cotangent, input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    return _interpolate_vjp(cotangent, input, size, scale_factor, mode, align_corners)


@functional(vjp=_upsample_vjp,
            example=lambda rng: ((rng.standard_normal((1, 2, 3, 2, 2)),), {"scale_factor": 1.5, "mode": "trilinear"}))
def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """torch.nn.functional.upsample (deprecated): ``interpolate`` with the same arguments and the
    default recompute_scale_factor. Shapes as ``interpolate``."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def _upsample_nearest_vjp(cotangent, input, size=None, scale_factor=None):
    return _interpolate_vjp(cotangent, input, size, scale_factor, "nearest")


@functional(vjp=_upsample_nearest_vjp,
            example=lambda rng: ((rng.standard_normal((2, 3, 4)),), {"scale_factor": 1.5}))
def upsample_nearest(input, size=None, scale_factor=None):
    """torch.nn.functional.upsample_nearest (deprecated): ``interpolate(mode='nearest')``, the
    layer UpsamplingNearest2d computes. Shapes as ``interpolate``."""
    return interpolate(input, size, scale_factor, "nearest")


def _upsample_bilinear_vjp(cotangent, input, size=None, scale_factor=None):
    return _interpolate_vjp(cotangent, input, size, scale_factor, "bilinear", True)


@functional(vjp=_upsample_bilinear_vjp,
            example=lambda rng: ((rng.standard_normal((1, 2, 3, 4)),), {"size": (5, 2)}))
def upsample_bilinear(input, size=None, scale_factor=None):
    """torch.nn.functional.upsample_bilinear (deprecated): ``interpolate(mode='bilinear',
    align_corners=True)``, the layer UpsamplingBilinear2d computes: src = dst·(in - 1)/(out - 1)
    (0 when out = 1). 4-d input (N, C, H, W) -> (N, C, H_out, W_out)."""
    return interpolate(input, size, scale_factor, "bilinear", True)


# -- error analysis -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Precision:
    """The rounding units of a call: ``u`` of the dtype (the units of every bound) and
    ``compute`` of the arithmetic torch carries out (opmath: float32 for float16/bfloat16)."""

    u: float
    compute: float

    @property
    def ratio(self) -> float:
        """u of the arithmetic in units of the dtype's u (1 for float32 and float64)."""
        return self.compute / self.u

    @property
    def reduced(self) -> bool:
        """The dtype is narrower than its arithmetic (float16, bfloat16)."""
        return self.u > self.compute


# |W'| of Keys' kernel is at most 1.35 (A = -0.75) and 1.39 (A = -0.5); the triangle's is 1.
CUBIC_LIPSCHITZ = 1.5


def _columns(taps: Taps, below: int, above: int, values: np.ndarray) -> np.ndarray:
    """(out × in): ``values[o]`` on the columns ⌊src_o⌋ - below .. ⌊src_o⌋ + above of row o."""
    out = taps.index.shape[0]
    cols = np.clip(np.floor(taps.src).astype(np.int64)[:, None] + np.arange(-below, above + 1)[None, :],
                   0, taps.in_size - 1)
    mask = np.zeros((out, taps.in_size))
    mask[np.repeat(np.arange(out)[:, None], cols.shape[1], axis=1), cols] = 1.0
    return mask * values[:, None]


def keys_terms(x: np.ndarray, a: float) -> np.ndarray:
    """Σ|a_k||x|^k of Keys' kernel's polynomial at |x| (0 beyond 2): Horner's rule evaluates W(x)
    within γ₆ (about 6u) times it."""
    x = np.abs(x)
    return np.where(x <= 1, np.abs(a + 2) * x**3 + np.abs(a + 3) * x**2 + 1,
                    np.where(x < 2, np.abs(a) * (x**3 + 5 * x**2 + 8 * x + 4), 0.0))


def _source_error(taps: Taps, align_corners: bool) -> np.ndarray:
    """|δsrc| in units of the arithmetic's u: s (one rounding), s·(dst + ½) (one), - ½ (one):
    (2|src| + 1)·u + |src|·u <= (3|src| + 1)·u; with align_corners s·dst: 2|src|·u."""
    src = np.abs(taps.src)
    return 2 * src if align_corners else 3 * src + 1


def _antialias_error(in_size: int, out_size: int, scale: float | None, align_corners: bool, cubic: bool
                     ) -> np.ndarray:
    """(out × in) bound, in units of the arithmetic's u, on the antialias weights as torch forms
    them in the input's dtype: center = s·(dst + ½) (2|center|·u), the filter argument
    a_j = (j - center + ½)·inv (inv = 1/max(s, 1): 2 more roundings of the sum, 2 of the
    product) moves by δa_j = inv·(2|center| + 2(|j - center| + 1)) + 2|a_j|; the raw filter value
    by L·δa_j plus its evaluation (1, or Horner's 6Σ|a_k||x|^k); normalising by the total T of the
    raw values: δw_j <= (δraw_j + w_j·Σ_k δraw_k)/T + width·w_j (the sum's and division's
    roundings). Every tap of torch's loop counts, also one whose exact weight is 0 (the triangle's
    edge |a_j| = 1, Keys' zeros |a_j| = 1 and 2): the rounded argument moves it off the zero, e.g.
    center = 3.5 exactly, taps 3 and 4 at a = 0 and 1: a float32 center 3.5000002 gives tap 4 the
    weight 2·10⁻⁷."""
    num, den = _scale_ratio(in_size, out_size, scale, align_corners)
    s = num / den
    taps = _antialias_taps(in_size, out_size, scale, align_corners, cubic)
    inv = 1.0 / max(s, 1.0)
    center = taps.src + 0.5
    support = (2.0 if cubic else 1.0) * max(s, 1.0)
    lo = np.maximum(np.trunc(center - support + 0.5), 0)
    hi = np.minimum(np.trunc(center + support + 0.5), in_size)
    width = taps.index.shape[1]
    j_loop = lo[:, None] + np.arange(width)[None, :]
    inside = j_loop < np.minimum(hi, lo + width)[:, None]  # torch's loop: [lo, hi), edges included
    j = taps.index.astype(np.float64)
    arg = (j - center[:, None] + 0.5) * inv
    d_arg = inv * (2 * np.abs(center)[:, None] + 2 * (np.abs(j - center[:, None]) + 1)) + 2 * np.abs(arg)
    if cubic:
        raw = keys_kernel(arg, ANTIALIAS_CUBIC_A)
        d_raw = CUBIC_LIPSCHITZ * d_arg + 6 * keys_terms(arg, ANTIALIAS_CUBIC_A)
    else:
        raw = _triangle(arg)
        d_raw = d_arg + 1
    live = inside | (raw != 0)
    raw, d_raw = np.where(live, raw, 0.0), np.where(live, d_raw, 0.0)
    total = np.abs(raw.sum(axis=1, keepdims=True))
    total = np.where(total > 0, total, 1.0)
    w = np.abs(taps.weight)
    width = live.sum(axis=1, keepdims=True)
    err = (d_raw + w * d_raw.sum(axis=1, keepdims=True)) / total + width * w
    return Taps(taps.index, err, in_size).matrix()


def weight_error(taps: Taps, mode: str, align_corners: bool, precision: Precision,
                 scale: float | None = None, antialias: bool = False) -> np.ndarray:
    """(out × in) first-order bound, in units of the dtype's u, on how far a backend's weights may
    move from the exact ones along one axis (zero for the selecting modes and area, whose
    divisions are counted in ``rounding_terms``).

    The source position carries |δsrc| (``_source_error``). A linear weight moves by |δsrc| plus
    the rounding of 1 - λ; a cubic weight by L·(|δsrc| + 3) (the roundings of t, t + 1, 1 - t
    and 2 - t; L = 1.5 bounds |W'| of Keys' kernel) plus Horner's 6Σ|a_k||x|^k. The exact src is
    a rational with a small denominator, so ⌊src⌋ can only flip where src is an integer, moving
    weight to ⌊src⌋ - 1 (linear) or ⌊src⌋ - 2 (cubic, whose window shifts by one): the bound
    covers those columns and the taps'. float16/bfloat16 kernels store the weights in the dtype: a
    cubic weight rounds once (u·|w|); the linear kernels round λ, then form 1 - λ in the dtype, so
    both weights move by up to u. Antialias: ``_antialias_error``.
    """
    r = precision.ratio
    if mode in (*SELECTING, "area"):
        return np.zeros((taps.index.shape[0], taps.in_size))
    if antialias:
        out_size = taps.index.shape[0]
        return r * _antialias_error(taps.in_size, out_size, scale, align_corners, mode == "bicubic")
    delta = _source_error(taps, align_corners)
    stored = float(precision.reduced)  # float16/bfloat16 kernels store the weights in the dtype
    if mode == "bicubic":
        t = taps.src - np.floor(taps.src)
        horner = Taps(taps.index, 6 * keys_terms(t[:, None] - np.arange(-1, 3)[None, :], CUBIC_A), taps.in_size)
        return r * (_columns(taps, 2, 2, CUBIC_LIPSCHITZ * (delta + 3)) + horner.matrix()) + stored * taps.matrix(True)
    # λ rounded to the dtype, then 1 - λ in the dtype: both weights move by up to u·(λ + (1 - λ)) = u
    return r * _columns(taps, 1, 1, delta + 1) + stored * _columns(taps, 0, 1, np.ones(taps.index.shape[0]))


def rounding_terms(mode: str, widths: Sequence[int], precision: Precision, antialias: bool = False) -> float:
    """Roundings, in units of the dtype's u, on each weight·input path of the forward besides the
    final rounding to the dtype (``widths``: taps per dim).

    torch's CPU kernels evaluate Σ_paths (Π_d w_d)·x in opmath: the weight product (D - 1
    roundings), the product with x (1) and a sequential sum of P = Π widths terms (P - 1). With
    float16/bfloat16 they store the weights in the dtype (D roundings), and the vectorised
    bilinear/trilinear kernel may round every operation, the weights' conversion included, to the
    dtype (P + 1). Antialias runs one pass per dim in the dtype (w_d roundings each); area sums the
    window (P - 1) and divides once, in the dtype whatever it is."""
    r = precision.ratio
    dims, paths = len(widths), int(np.prod(widths))
    if mode in SELECTING:
        return 0.0
    if mode == "area":  # adaptive average pooling rounds in the dtype, float16/bfloat16 too
        return float(paths)
    if antialias:
        return r * float(sum(widths))
    arithmetic = r * (dims + paths - 1)
    if not precision.reduced:
        return arithmetic
    return float(paths + 1) if mode in ("bilinear", "trilinear") else dims + arithmetic


def perturbed_subsets(dims: int, u: float) -> list[tuple[frozenset[int], float]]:
    """The terms of Π_d (|w_d| + u·P_d) - Π_d |w_d|, in units of u: every non-empty set S of dims
    whose weights are perturbed, with its factor u^(|S| - 1) (the first-order terms have |S| = 1;
    the others matter where the perturbations are not small, e.g. bfloat16 Horner evaluations)."""
    return [(frozenset(moved), u ** (len(moved) - 1)) for size in range(1, dims + 1)
            for moved in itertools.combinations(range(dims), size)]


def gradient_overlap(taps: Sequence[Taps]) -> int:
    """K of the gradient: the most (output, tap) pairs reading one input element."""
    count = 1
    for t in taps:
        count *= int((t.matrix(absolute=True) != 0).sum(axis=0).max())
    return count


def interpolate_error(x: np.ndarray, cotangent: np.ndarray | None, geometry: Geometry, mode: str,
                      precision: Precision, antialias: bool = False) -> dict[str, np.ndarray]:
    """First-order bounds, in units of the dtype's u, of |computed - exact| for the output and
    (given a cotangent) the input gradient of ``interpolate`` in an interpolating mode or area.

    With A_d the exact one-axis matrices, |A_d| those of the |weights| and P_d = ``weight_error``:
    E_y = Σ_d (|A_1| ⊗ .. P_d .. ⊗ |A_D|)·|x| + c·(|A_1| ⊗ .. ⊗ |A_D|)·|x| (c = ``rounding_terms``)
    plus the higher-order terms of the product of perturbed weights (``perturbed_subsets``);
    the gradient accumulates, for each input element, the K (``gradient_overlap``) products
    w_1..w_D·g in the arithmetic (D roundings and the sum's 2√K; float16/bfloat16 accumulate in
    float32 and round once): E = Σ_d (..P_dᵀ..)·|g| + r·(D + 2√K)·|A|ᵀ·|g|; area divides each
    cotangent by its window's size and accumulates in the dtype: (1 + 2√K)·|A|ᵀ·|g|."""
    taps = geometry_taps(geometry, mode, antialias)
    dims = len(taps)
    absolute = [t.matrix(absolute=True) for t in taps]
    perturb = [weight_error(t, mode, geometry.align_corners, precision, s, antialias)
               for t, s in zip(taps, geometry.scales)]
    widths = [int((t.weight != 0).sum(axis=1).max()) if mode in ("area",) or antialias else t.index.shape[1]
              for t in taps]
    ax = np.abs(x)

    def through(mats: list[np.ndarray], values: np.ndarray, transpose: bool) -> np.ndarray:
        return apply_matrices(values, [m if transpose else m.T for m in mats])

    def bound(values: np.ndarray, c: float, transpose: bool) -> np.ndarray:
        total = c * through(absolute, values, transpose)
        for moved, scale in perturbed_subsets(dims, precision.u):
            if all(perturb[d].any() for d in moved):
                total = total + scale * through([perturb[k] if k in moved else absolute[k] for k in range(dims)],
                                                values, transpose)
        return total

    result = {"output": bound(ax, rounding_terms(mode, widths, precision, antialias), transpose=False)}
    if cotangent is not None:
        k = gradient_overlap(taps)
        c = 1 + 2 * math.sqrt(k) if mode == "area" else precision.ratio * (dims + 2 * math.sqrt(k))
        result["grad.input"] = bound(np.abs(cotangent), c, transpose=True)
    return result
