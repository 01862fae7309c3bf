"""Case strategies of the vision family: pixel (un)shuffle, resizing (the Upsampling layers,
Upsample, F.interpolate) and sampling (grid_sample, affine_grid).

Every draw is labelled and lists its simplest option first; sizes are capped while drawing (an
input length is drawn after its factor, within the range whose output stays small), so every case
is valid by construction. The strategies of the four older entries (PixelShuffle, PixelUnshuffle,
UpsamplingNearest2d, UpsamplingBilinear2d) draw exactly as they always did: their case ids are
stable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import CONTIGUOUS, Case
from conformance import strategies as S
from conformance.dtypes import DTYPES

SPECIALS = (math.inf, -math.inf, math.nan)
PIXEL_BUDGET = 2048


# -- pixel shuffle / unshuffle ---------------------------------------------------------------------

def factor_name(shuffle: bool) -> str:
    return "upscale_factor" if shuffle else "downscale_factor"


def pixel_cases(name: str, shuffle: bool):
    """(lead..., C·r², H, W) for shuffle, (lead..., C, H·r, W·r) for unshuffle."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d)
        r = d.integer(1, 4, "factor")
        leading = d.choice(("batched", "unbatched", "extra leading dims"), "leading")
        channels = d.integer(1, 3, "channels")
        h, w = S.sizes_within(d, 2, PIXEL_BUDGET // (channels * r * r), hi=4, label="spatial")
        lead: tuple[int, ...] = {
            "batched": lambda: (d.integer(1, 3, "N"),),
            "unbatched": lambda: (),
            "extra leading dims": lambda: (*S.sizes_within(d, d.integer(1, 2, "extra dims"), 6, hi=3, label="A"),
                                           d.integer(1, 2, "N")),
        }[leading]()
        shape = (*lead, channels * r * r, h, w) if shuffle else (*lead, channels, h * r, w * r)
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", layout=layout, specials=SPECIALS)
        return Case(op=name, dtype=dtype, params={factor_name(shuffle): r}, inputs={"input": x},
                    differentiable=("input",), layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return cases


def pixel_invalid(name: str, shuffle: bool):
    """A factor < 1, an input of fewer than 3 dims, channels not divisible by r² (shuffle) or a
    spatial size not divisible by r (unshuffle)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(("not divisible", "factor < 1", "fewer than 3 dims"), "invalid kind")
        r = d.integer(2, 3, "factor")
        if kind == "not divisible":
            shape: tuple[int, ...] = ((1, r * r + d.integer(1, r * r - 1, "extra channels"), 2, 2) if shuffle else
                                      (1, 2, r * 2 + d.integer(1, r - 1, "extra rows"), r * 2))
        elif kind == "factor < 1":
            r = d.choice((0, -1), "bad factor")
            shape = (1, 4, 2, 2)
        else:
            shape = (r * r, 2 * r)
        x = S.values(d, shape, dtype, "float", "input")
        return Case(op=name, dtype=dtype, params={factor_name(shuffle): r}, inputs={"input": x},
                    differentiable=("input",), invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- UpsamplingNearest2d / UpsamplingBilinear2d ------------------------------------------------------

INTEGER_FACTORS = (2.0, 1.0, 3.0, 4.0)
FRACTIONAL_FACTORS = (1.5, 2.5, 1.25, 1.3, 1.75, 1.1, 3.3, 2.05)
DOWN_FACTORS = (0.5, 0.75, 0.6, 0.3)
MAX_IN = 8
FACTORS = {"integer": INTEGER_FACTORS, "fractional": FRACTIONAL_FACTORS, "downsampling": DOWN_FACTORS}


def min_input(scale: float) -> int:
    """The smallest input length whose output ⌊in·scale⌋ is at least 1."""
    n = 1
    while math.floor(n * scale) < 1:
        n += 1
    return n


def _spell(d: S.Drawer, values: tuple[Any, Any], differs: bool, label: str) -> Any:
    """One value, or a pair (always when the dims differ, sometimes otherwise)."""
    return tuple(values) if differs or d.flag(f"{label} spelled as tuple") else values[0]


def _draw_geometry(d: S.Drawer) -> tuple[dict[str, Any], tuple[int, int]]:
    """(size= or scale_factor= parameter, input (H, W)); valid by construction."""
    if d.choice(("scale_factor", "size"), "by") == "size":
        hin, win = d.integer(1, MAX_IN, "in[0]"), d.integer(1, MAX_IN, "in[1]")
        differs = d.flag("size differs per dim")
        first = d.integer(1, 16, "size[0]")
        sizes = (first, d.integer(1, 16, "size[1]") if differs else first)
        return {"size": _spell(d, sizes, differs and sizes[0] != sizes[1], "size")}, (hin, win)
    kind = d.choice(("integer", "fractional", "downsampling"), "scale kind")
    options = FACTORS[kind]
    first = d.choice(options, "scale[0]")
    differs = d.flag("scale differs per dim")
    second = d.choice(tuple(o for o in options if o != first), "scale[1]") if differs else first
    scales: tuple[Any, Any] = (first, second)
    if kind == "integer" and d.flag("scale spelled as int"):
        scales = (int(first), int(second))
    hin = d.integer(min_input(first), MAX_IN, "in[0]")
    win = d.integer(min_input(second), MAX_IN, "in[1]")
    return {"scale_factor": _spell(d, scales, differs, "scale")}, (hin, win)


def upsampling_cases(name: str, nearest: bool):
    """UpsamplingNearest2d / UpsamplingBilinear2d: (N, C, H, W) and a size or a factor."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d) if nearest else S.tier(d, ("float",))
        params, (hin, win) = _draw_geometry(d)
        shape = (d.integer(1, 3, "N"), d.integer(1, 3, "C"), hin, win)
        layout = S.layouts(d, 4, "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", layout=layout, specials=SPECIALS if nearest else ())
        return Case(op=name, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return cases


def upsampling_invalid(name: str):
    """Both size and scale_factor, neither (a factor of 0 counts as none, as in torch), a zero
    size, a factor that leaves no output element, a negative factor."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(("both given", "neither given", "zero size", "output size 0", "negative factor"),
                        "invalid kind")
        hin = d.integer(2, 5, "in")
        params: dict[str, Any] = {
            "both given": lambda: {"size": d.integer(1, 6, "size"), "scale_factor": 2.0},
            "neither given": lambda: {} if not d.flag("zero factor") else {"scale_factor": 0.0},
            "zero size": lambda: {"size": (0, 3) if d.flag("one dim zero") else 0},
            "output size 0": lambda: {"scale_factor": d.choice((0.1, 0.15), "tiny factor")},
            "negative factor": lambda: {"scale_factor": -1.0},
        }[kind]()
        x = S.values(d, (1, 2, hin, hin), dtype, "float", "input")
        return Case(op=name, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- Upsample and F.interpolate ---------------------------------------------------------------------

# Per spatial rank: the largest input and output lengths drawn.
RESIZE_CAPS = {1: (12, 24), 2: (8, 16), 3: (4, 8)}
MODE_RANK = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _largest_input(scale: float, cap_in: int, cap_out: int) -> int:
    """The largest n <= cap_in with ⌊n·scale⌋ <= cap_out (at least ``min_input(scale)``)."""
    n = min(cap_in, int(cap_out / scale) + 1)
    while n > min_input(scale) and math.floor(n * scale) > cap_out:
        n -= 1
    return max(n, min_input(scale))


def _per_dim_spelling(d: S.Drawer, values: list[Any], label: str) -> Any:
    """A per-dim parameter as torch takes it: one number when every dim agrees (sometimes a
    tuple anyway), else a tuple."""
    if len(set(values)) == 1 and not d.flag(f"{label} spelled as tuple"):
        return values[0]
    return tuple(values)


def resize_geometry(d: S.Drawer, rank: int) -> tuple[dict[str, Any], list[int]]:
    """(size / scale_factor / recompute_scale_factor parameters, input lengths) of ``rank``
    spatial dims: a size (per dim or shared), or a factor (integer, fractional or < 1; shared or
    per dim; an int or a float) with recompute_scale_factor None, False or True."""
    cap_in, cap_out = RESIZE_CAPS[rank]
    if d.choice(("scale_factor", "size"), "by") == "size":
        ins = [d.integer(1, cap_in, f"in[{i}]") for i in range(rank)]
        differs = rank > 1 and d.flag("size differs per dim")
        first = d.integer(1, cap_out, "size[0]")
        sizes = [first] + [d.integer(1, cap_out, f"size[{i}]") if differs else first for i in range(1, rank)]
        return {"size": _per_dim_spelling(d, sizes, "size")}, ins
    kind = d.choice(("integer", "fractional", "downsampling"), "scale kind")
    options = FACTORS[kind]
    first = d.choice(options, "scale[0]")
    differs = rank > 1 and d.flag("scale differs per dim")
    others = tuple(o for o in options if o != first)  # the second dim differs from the first
    scales: list[Any] = [first] + [d.choice(others if i == 1 else options, f"scale[{i}]") if differs else first
                                   for i in range(1, rank)]
    ins = [d.integer(min_input(s), _largest_input(s, cap_in, cap_out), f"in[{i}]") for i, s in enumerate(scales)]
    if kind == "integer" and d.flag("scale spelled as int"):
        scales = [int(s) for s in scales]
    params: dict[str, Any] = {"scale_factor": _per_dim_spelling(d, scales, "scale")}
    recompute = d.choice((None, False, True), "recompute_scale_factor")
    if recompute is not None:
        params["recompute_scale_factor"] = recompute
    return params, ins


def resize_cases(name: str, modes: tuple[str, ...], *, tiers: tuple[str, ...] = S.TIERS, specials: bool = False,
                 antialias: bool = False):
    """Upsample (``antialias``: F.interpolate with antialias drawn): a mode of ``modes`` (the
    linear modes fix the rank; the others draw 1-d, 2-d or 3-d), its geometry, align_corners
    (None, False, True) for the interpolating modes, an (N, C, *spatial) input (an empty batch
    sometimes), every memory layout."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, tiers)
        mode = d.choice(modes, "mode")
        rank = MODE_RANK.get(mode) or d.choice((2, 1, 3), "rank")
        params: dict[str, Any] = {"mode": mode}
        geometry, ins = resize_geometry(d, rank)
        params.update(geometry)
        if mode in MODE_RANK:
            align = d.choice((None, False, True), "align_corners")
            if align is not None:
                params["align_corners"] = align
        if antialias:
            params["antialias"] = d.choice((True, False), "antialias")
        batch = 0 if d.flag("empty batch") else d.integer(1, 2, "N")
        shape = (batch, d.integer(1, 4, "C"), *ins)
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", layout=layout, specials=SPECIALS if specials else (),
                     some_special=specials)
        return Case(op=name, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return cases


RESIZE_INVALID = ("both given", "neither given", "zero size", "output size 0", "negative factor",
                  "align_corners with a selecting mode", "mode for another rank", "recompute with a size",
                  "size of another rank", "scale_factor of another rank", "float size", "2-d input", "no channels")


def resize_invalid(name: str, modes: tuple[str, ...], antialias: bool = False):
    """Calls torch rejects: both or neither of size and scale_factor, a zero or negative output
    size, align_corners with nearest/nearest-exact/area, a linear mode on another rank, a size with
    recompute_scale_factor=True, a size or factor tuple of another length, a float size, a 2-d
    input, no channels; with ``antialias``: antialias on a mode or rank that has none."""
    kinds = RESIZE_INVALID + (("antialias elsewhere",) if antialias else ())

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(kinds, "invalid kind")
        mode = d.choice(modes, "mode")
        rank = MODE_RANK.get(mode, 2)
        n = d.integer(2, 4, "in")
        channels = 2
        params: dict[str, Any] = {"mode": mode, "scale_factor": 2.0}
        if kind == "both given":
            params["size"] = d.integer(1, 6, "size")
        elif kind == "neither given":
            del params["scale_factor"]
        elif kind == "zero size":
            del params["scale_factor"]
            params["size"] = d.choice((0, -2), "bad size")
        elif kind == "output size 0":
            params["scale_factor"] = d.choice((0.1, 0.15), "tiny factor")
        elif kind == "negative factor":
            params["scale_factor"] = -1.0
        elif kind == "align_corners with a selecting mode":
            params.update(mode=d.choice(("nearest", "nearest-exact", "area"), "selecting mode"),
                          align_corners=d.flag("align"))
        elif kind == "mode for another rank":
            params["mode"] = d.choice(("linear", "bilinear", "trilinear"), "ranked mode")
            rank = {1: 2, 2: 3, 3: 1}[MODE_RANK[params["mode"]]]
        elif kind == "recompute with a size":
            del params["scale_factor"]
            params.update(size=d.integer(1, 6, "size"), recompute_scale_factor=True)
        elif kind == "size of another rank":
            del params["scale_factor"]
            params["size"] = (3,) * (rank + 1)
        elif kind == "scale_factor of another rank":
            params["scale_factor"] = (2.0,) * (rank + 1)
        elif kind == "float size":
            del params["scale_factor"]
            params["size"] = 4.0
        elif kind == "2-d input":
            params["mode"] = "nearest"
            rank = 0
        elif kind == "no channels":
            channels = 0
        else:  # antialias with a mode or rank that has none
            params.update(antialias=True, mode=d.choice(("nearest", "linear", "area"), "mode without antialias"))
            rank = MODE_RANK.get(params["mode"], 2)
        shape = (1, channels, *(n,) * rank) if rank else (channels, n)
        x = S.values(d, shape, dtype, "float", "input")
        return Case(op=name, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- grid_sample -------------------------------------------------------------------------------------

GRID_KINDS = ("inside", "outside", "pixel centres", "pixel edges", "corners", "far outside")
# Grid values of the nearest variant lie on the lattice k/8, |k| <= 20: every dtype's arithmetic
# then computes their pixel coordinates exactly (inputs of at most 6 pixels a dim), so which pixel
# is nearest never depends on rounding; a coordinate exactly halfway is a tie (see the notes).
LATTICE = 8
LATTICE_REACH = 20


def _pixel_to_grid(c: np.ndarray, size: np.ndarray, align_corners: bool) -> np.ndarray:
    """The grid value whose pixel coordinate along a dim of ``size`` pixels is c."""
    if align_corners:
        return np.where(size > 1, 2 * c / np.maximum(size - 1, 1) - 1, 0.0)
    return (2 * c + 1) / size - 1


def grid_values(d: S.Drawer, shape: tuple[int, ...], spatial: tuple[int, ...], dtype: str, align_corners: bool,
                lattice: bool) -> np.ndarray:
    """A grid (N, *out, D) of one drawn kind: inside [-1, 1], just outside it (|g| <= 2.5), exactly
    on pixel centres or halfway between pixels (some beyond the border), on the corners ±1, far
    outside (|g| in [3, 6]: reflection folds more than once); ``lattice`` rounds every value to
    k/8 within ±2.5 (the nearest variant)."""
    kind = d.choice(GRID_KINDS, "grid.kind")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "grid.seed"))
    sizes = np.array(spatial[::-1], dtype=np.float64)  # grid's last axis is (x, y[, z])
    if kind == "inside":
        g = rng.uniform(-1, 1, shape)
    elif kind in ("outside", "far outside"):  # |g| in (1, 2.5] or [3, 6]: reflection folds once or more
        low, high = (1.0, 2.5) if kind == "outside" or lattice else (3.0, 6.0)
        g = rng.choice(np.array([-1.0, 1.0]), shape) * rng.uniform(low + 1 / LATTICE, high, shape)
    elif kind == "corners":
        g = rng.choice(np.array([-1.0, 1.0]), shape)
    else:
        c = rng.integers(-1, sizes.astype(np.int64) + 1, shape).astype(np.float64)
        if kind == "pixel edges":
            c = c + 0.5
        g = _pixel_to_grid(c, sizes, align_corners)
    if lattice:
        g = np.clip(np.round(g * LATTICE), -LATTICE_REACH, LATTICE_REACH) / LATTICE
    return DTYPES[dtype].round(g)


def grid_sample_cases(name: str, modes: tuple[str, ...], *, nearest: bool = False):
    """grid_sample: input (N, C, *in) with 2 or 3 spatial dims (bicubic: 2), a grid (N, *out, D) of
    a drawn kind (``grid_values``), padding_mode, align_corners (False, True, None: the default,
    False with a warning), memory layouts for both; the nearest variant also draws the exact tier
    and non-finite inputs (selected values are copied)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d) if nearest else S.tier(d, ("float",))
        mode = d.choice(modes, "mode")
        rank = 2 if mode == "bicubic" else d.choice((2, 3), "rank")
        padding = d.choice(("zeros", "border", "reflection"), "padding_mode")
        align = d.choice((False, True, None), "align_corners")
        cap = 6 if rank == 2 else 4
        spatial = tuple(d.integer(1, cap, f"in[{i}]") for i in range(rank))
        out = tuple(d.integer(1, 4 if rank == 2 else 3, f"out[{i}]") for i in range(rank))
        if d.flag("empty grid"):
            out = (0, *out[1:])
        n, channels = d.integer(1, 2, "N"), d.integer(1, 3, "C")
        shape = (n, channels, *spatial)
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", layout=layout, specials=SPECIALS if nearest else ())
        grid_shape = (n, *out, rank)
        grid_layout = S.layouts(d, len(grid_shape), "layout.grid", channels_last=False)
        grid = grid_values(d, grid_shape, spatial, dtype, bool(align), lattice=nearest)
        params = {"mode": mode, "padding_mode": padding, "align_corners": align}
        # The exact tier's differentiable inputs hold integers: the grid (geometry) is differentiated in
        # the float tier only (its gradient is 0 for nearest anyway).
        differentiable = ("input",) if tier == "exact" else ("input", "grid")
        return Case(op=name, dtype=dtype, params=params, inputs={"input": x, "grid": grid},
                    differentiable=differentiable, layouts={"input": layout, "grid": grid_layout}, tier=tier,
                    cotangent_seed=S.seed(d))

    return cases


GRID_SAMPLE_INVALID = ("unknown mode", "unknown padding_mode", "bicubic on 5-d", "batch mismatch",
                       "grid of another width", "grid of another rank", "empty input")


def grid_sample_invalid(name: str, modes: tuple[str, ...]):
    """Calls torch rejects: an unknown mode or padding_mode, bicubic on a 5-d input, grid and
    input batches that differ, a grid whose last dim is not the input's spatial rank, a grid of
    another rank than the input, an input with an empty spatial dim."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(GRID_SAMPLE_INVALID, "invalid kind")
        params: dict[str, Any] = {"mode": d.choice(modes, "mode"), "padding_mode": "zeros", "align_corners": False}
        rank, n, grid_n, width, grid_rank, size = 2, 1, 1, 2, 2, 3
        if kind == "unknown mode":
            params["mode"] = d.choice(("area", "linear", "cubic"), "bad mode")
        elif kind == "unknown padding_mode":
            params["padding_mode"] = d.choice(("circular", "constant", "replicate"), "bad padding_mode")
        elif kind == "bicubic on 5-d":
            params["mode"], rank, grid_rank, width = "bicubic", 3, 3, 3
        elif kind == "batch mismatch":
            n = 2
        elif kind == "grid of another width":
            width = 3
        elif kind == "grid of another rank":
            grid_rank = 3
        else:
            size = 0
        x = S.values(d, (n, 1, *(size,) * rank), dtype, "float", "input")
        grid = np.zeros((grid_n, *(2,) * grid_rank, width))
        return Case(op=name, dtype=dtype, params=params, inputs={"input": x, "grid": grid},
                    differentiable=("input", "grid"), invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- affine_grid ---------------------------------------------------------------------------------------

def affine_grid_cases(name: str):
    """affine_grid: theta (N, 2, 3) for a 4-d size or (N, 3, 4) for a 5-d one (any memory layout),
    spatial sizes 2..6 (2..4 in 3-d) or a unit first spatial size (its coordinate is 0),
    align_corners False, True or None; theta normal, uniform, of mixed magnitudes, or the identity."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        rank = d.choice((2, 3), "rank")
        align = d.choice((False, True, None), "align_corners")
        cap = 6 if rank == 2 else 4
        n = d.integer(1, 2, "N")
        size = [n, d.integer(1, 3, "C"), *(d.integer(2, cap, f"size[{i}]") for i in range(rank))]
        if d.flag("unit size"):  # one pixel along the first spatial dim: its coordinate is 0
            size[2] = 1
        shape = (n, rank, rank + 1)
        layout = S.layouts(d, 3, "layout.theta", expanded=True)
        if d.flag("identity theta"):
            theta = np.broadcast_to(np.eye(rank, rank + 1), shape).copy()
            layout = CONTIGUOUS if layout.kind == "expanded" else layout
        else:
            theta = S.values(d, shape, dtype, "float", "theta", layout=layout)
        params = {"size": size, "align_corners": align}
        return Case(op=name, dtype=dtype, params=params, inputs={"theta": theta}, differentiable=("theta",),
                    layouts={"theta": layout}, tier="float", cotangent_seed=S.seed(d))

    return cases


AFFINE_GRID_INVALID = ("theta of another shape", "size of another length", "zero size", "batch mismatch",
                       "integer theta")


def affine_grid_invalid(name: str):
    """Calls torch rejects: theta not (N, 2, 3) / (N, 3, 4) for the size, a size of 3 or 6
    entries, a zero entry, theta's batch differing from size[0], an integer theta."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(AFFINE_GRID_INVALID, "invalid kind")
        size: list[int] = [1, 1, 3, 3]
        shape = (1, 2, 3)
        types: dict[str, str] = {}
        if kind == "theta of another shape":
            shape = d.choice(((1, 3, 3), (1, 2, 4), (1, 3, 4)), "bad theta shape")
        elif kind == "size of another length":
            size = d.choice(([1, 1, 3], [1, 1, 3, 3, 3, 3]), "bad size")
        elif kind == "zero size":
            size = [1, 1, 0, 3] if d.flag("spatial zero") else [1, 0, 3, 3]
        elif kind == "batch mismatch":
            size = [2, 1, 3, 3]
        else:
            types = {"theta": "int64"}
        theta = S.values(d, shape, dtype, "exact", "theta")
        return Case(op=name, dtype=dtype, params={"size": size, "align_corners": False}, inputs={"theta": theta},
                    differentiable=("theta",) if not types else (), types=types, invalid=True, note=kind,
                    cotangent_seed=S.seed(d))

    return cases
