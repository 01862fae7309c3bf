"""Numerics of the vision family: the call arguments and error analyses behind the tolerances,
comparators that accept torch's undocumented conventions as alternatives, and the predicates of
``conformance/known/vision.toml``.

Alternatives (the documentation leaves them open or torch's kernels deviate from it consistently):

- Resizing with a given factor: torch's kernels copy when an output length equals the input's, and
  mode 'nearest' takes dst >> 1 when it doubles, whatever the factor (the documentation says the
  factor is used). ``shortcut_case`` is the same call with those factors replaced by 1 or 2, i.e.
  the shortcut's result; the comparator accepts it when the output follows it, and then judges the
  gradients against the same convention: a backward that follows the other one is a discrepancy.
- grid_sample(mode='nearest') at a coordinate exactly halfway between two pixels: torch rounds
  half to even; rounding half up is accepted too, again consistently for output and gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, spec_of
from conformance.tolerance import magnitudes
from reference import interpolate as RI
from reference import sampling as RS

# The modes the kernels of the older Upsampling layers fix (and their align_corners).
LAYER_MODES = {"nearest": ("nearest", None), "bilinear": ("bilinear", True)}


def precision(case: Case) -> RI.Precision:
    """The dtype's u and that of torch's arithmetic on it (float32 for float16 and bfloat16)."""
    u = DTYPES[case.dtype].unit_roundoff
    return RI.Precision(u, min(u, DTYPES["float32"].unit_roundoff))


# -- resizing --------------------------------------------------------------------------------------

def resize_arguments(case: Case) -> dict[str, Any]:
    """torch.nn.functional.interpolate's keyword arguments for a case: a module (Upsample and the
    Upsampling layers, ``kind`` of the declaration) stores scale_factor as floats and a factor of
    0 as None; the Upsampling layers fix the mode (UpsamplingBilinear2d: align_corners=True)."""
    params = dict(case.params)
    kind = spec_of(case).kind
    if kind in LAYER_MODES:
        params["mode"], align = LAYER_MODES[kind]
        if align is not None:
            params["align_corners"] = align
    if kind != "interpolate":
        scale = params.get("scale_factor")
        params["scale_factor"] = (tuple(float(s) for s in scale) if isinstance(scale, (tuple, list))
                                  else float(scale) if scale else None)
    return params


def resize_geometry(case: Case) -> RI.Geometry:
    args = resize_arguments(case)
    return RI.interpolate_geometry(case.inputs["input"].shape, args.get("size"), args.get("scale_factor"),
                                   args.get("mode", "nearest"), args.get("align_corners"),
                                   args.get("recompute_scale_factor"), args.get("antialias", False))


def resize_taps(case: Case) -> list[RI.Taps]:
    args = resize_arguments(case)
    return RI.geometry_taps(resize_geometry(case), args.get("mode", "nearest"), args.get("antialias", False))


def resize_errors(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """``reference.interpolate.interpolate_error`` of the case (the ErrorFn of the interpolating
    modes and area)."""
    args = resize_arguments(case)
    g = case.cotangents.get("output") if "input" in result.grads else None
    return RI.interpolate_error(case.inputs["input"], g, resize_geometry(case), args["mode"], precision(case),
                                args.get("antialias", False))


def resize_length(case: Case, tensor: str) -> int:
    """K: the taps of one output, or for the gradient the most (output, tap) pairs reading one
    input element."""
    taps = resize_taps(case)
    if tensor == "output":
        return int(np.prod([int((t.weight != 0).sum(axis=1).max()) if t.weight.size else 1 for t in taps]))
    return RI.gradient_overlap(taps)


def shortcut_case(case: Case) -> Case | None:
    """The case whose documented result is what torch's shortcut kernels compute: factors whose
    output length equals the input's (nearest, the linear modes, antialias) or doubles it
    (nearest) replaced by exactly 1 or 2. None when no given factor is concerned."""
    args = resize_arguments(case)
    if args.get("scale_factor") is None or args.get("recompute_scale_factor") or args.get("mode") == "area":
        return None
    mode, antialias = args["mode"], args.get("antialias", False)
    if mode in ("bicubic", "nearest-exact") and not antialias:
        return None
    geo = resize_geometry(case)
    scales, changed = [], False
    for size_in, size_out, scale in zip(geo.in_sizes, geo.out_sizes, geo.scales):
        target = 1.0 if size_out == size_in else 2.0 if (size_out == 2 * size_in and mode == "nearest") else None
        changed = changed or (target is not None and target != scale)
        scales.append(scale if target is None else target)
    if not changed:
        return None
    params = dict(case.params)
    params["scale_factor"] = tuple(scales)
    return replace(case, params=params)


def shortcut_differs(case: Case, taps_of: Callable[[Case], list[RI.Taps]] = resize_taps) -> bool:
    """torch's shortcut reads other input positions than the documented rule in some dim."""
    alt = shortcut_case(case)
    if alt is None:
        return False
    return any(not np.array_equal(a.matrix(), b.matrix()) for a, b in zip(taps_of(case), taps_of(alt)))


# -- grid_sample and affine_grid ----------------------------------------------------------------------

def grid_sample_errors(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """``reference.sampling.grid_sample_error`` of the case (bilinear and bicubic)."""
    p = case.params
    g = case.cotangents.get("output") if result.grads else None
    errors = RS.grid_sample_error(case.inputs["input"], case.inputs["grid"], g, p["mode"], p["padding_mode"],
                                  bool(p["align_corners"]), DTYPES[case.dtype].unit_roundoff)
    return {k: v for k, v in errors.items() if k == "output" or k[len("grad."):] in result.grads}


def grid_sample_length(case: Case, tensor: str) -> int:
    """K: taps per grid point (4, 8 or 16), for the input gradient the most taps reaching one
    element, for the grid gradient taps × channels."""
    p, x = case.params, case.inputs["input"]
    taps = RS.sample_taps(x.shape[2:], case.inputs["grid"], p["mode"], p["padding_mode"], bool(p["align_corners"]))
    per_point = taps.flat.shape[-1]
    if tensor == "output":
        return per_point
    if tensor == "grad.grid":
        return per_point * x.shape[1]
    reached = (taps.flat + np.arange(x.shape[0])[:, None, None] * int(np.prod(x.shape[2:])))[taps.valid]
    return int(np.bincount(reached.ravel()).max()) if reached.size else 1


def grid_sample_ties(spec: LayerSpec, case: Case) -> tuple[Case, Result] | None:
    """grid_sample(mode='nearest') with ties rounded up: the other reading of 'nearest' exactly
    halfway between two pixels (None when no coordinate is a tie)."""
    p = case.params
    x, grid = case.inputs["input"], case.inputs["grid"]
    if not has_tie(case):
        return None
    result = Result(outputs={"output": RS.grid_sample_ties_up(x, grid, p["padding_mode"], bool(p["align_corners"]))})
    g = case.cotangents.get("output")
    if g is not None:
        result.grads = {"input": RS.grid_sample_ties_up_vjp(g, x, grid, p["padding_mode"], bool(p["align_corners"])),
                        "grid": np.zeros_like(grid)}
    return case, result


def has_tie(case: Case) -> bool:
    """Some pixel coordinate of the grid (after padding) is exactly halfway between two pixels."""
    p, x, grid = case.params, case.inputs["input"], case.inputs["grid"]
    dims = x.ndim - 2
    for d in range(dims):
        c, _ = RS.unnormalize(grid[..., d], x.shape[-1 - d], bool(p["align_corners"]))
        c, _ = RS.pad_coordinate(c, x.shape[-1 - d], p["padding_mode"], bool(p["align_corners"]))
        if np.any(np.abs(c - np.floor(c) - 0.5) == 0):
            return True
    return False


def affine_grid_errors(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """``reference.sampling.affine_grid_error`` of the case."""
    g = case.cotangents.get("output") if result.grads else None
    return RS.affine_grid_error(case.inputs["theta"], tuple(case.params["size"]), g,
                                bool(case.params["align_corners"]))


def affine_grid_length(case: Case, tensor: str) -> int:
    """K: the D + 1 terms of a grid value, or the grid points summed into a theta gradient."""
    size = case.params["size"]
    return len(size) - 1 if tensor == "output" else int(np.prod(size[2:]))


# -- comparators ---------------------------------------------------------------------------------------

Alternative = Callable[[LayerSpec, Case], "tuple[Case, Result] | None"]


def shortcut_alternative(spec: LayerSpec, case: Case) -> tuple[Case, Result] | None:
    """The result of torch's shortcut convention (``shortcut_case``), judged as its own case."""
    alt = shortcut_case(case)
    if alt is None or not shortcut_differs(case):
        return None
    return alt, spec.evaluate(alt, case.cotangents)


def accepting(alternative: Alternative) -> Callable[[LayerSpec, Case, str, Result, Result], Comparison]:
    """A comparator judging each tensor under the documented reference or ``alternative``: the
    output passes under either; a gradient is judged under the conventions the backend's output
    is consistent with (the documented one when it matches neither)."""

    def under(spec: LayerSpec, case: Case, ref: Result, got: Result, tensor: str) -> Comparison:
        absref = magnitudes(spec, case, ref)[tensor]
        return compare_tensor(spec, case, tensor, ref.tensors()[tensor], got.tensors().get(tensor),
                              got.dtypes.get(tensor), absref)

    def compare(spec: LayerSpec, case: Case, tensor: str, ref: Result, got: Result) -> Comparison:
        documented = under(spec, case, ref, got, tensor)
        if tensor == "output" and documented.ok:
            return documented
        alt = alternative(spec, case)
        if alt is None:
            return documented
        if tensor == "output":
            other = under(spec, *alt, got, tensor)
            return other if other.ok else documented
        followed = [pair for pair in ((case, ref), alt) if under(spec, *pair, got, "output").ok] or [(case, ref)]
        judged = [documented if pair[0] is case and pair[1] is ref else under(spec, *pair, got, tensor)
                  for pair in followed]
        return next((c for c in judged if c.ok), judged[0])

    return compare


# -- regime and known-entry predicates ------------------------------------------------------------------

def pixel_factor(case: Case) -> int:
    """upscale_factor or downscale_factor."""
    return int(case.params.get("upscale_factor", case.params.get("downscale_factor")))


def five_d_channels_last_3d_strides(case: Case) -> bool:
    """torch's pixel_(un)shuffle rejects a 5-d input whose strides it reads as channels_last_3d
    ("Unsupported memory format. Supports only ChannelsLast, Contiguous"), although any leading
    dims are documented; exact over every permutation of several 5-d shapes."""
    x = case.inputs["input"]
    return x.ndim == 5 and S.channels_last_like(x.shape, S.torch_strides(x.shape, case.layout("input")))


def nearest_backward_shortcut(case: Case) -> bool:
    """Upsample(mode='nearest') on a 3-d or 5-d input with a factor whose output length equals or
    doubles an input length without the factor being 1 or 2: torch's forward follows the factor
    (⌊dst/factor⌋) and its backward the shortcut (copy, dst >> 1), so the gradient is not the
    forward's. (torch's channels_last_3d kernel for C > 3 takes the shortcut in the forward too.)"""
    x = case.inputs["input"]
    if resize_arguments(case).get("mode") != "nearest" or x.ndim not in (3, 5) or not shortcut_differs(case):
        return False
    return not (x.ndim == 5 and x.shape[1] > 3
                and S.channels_last_like(x.shape, S.torch_strides(x.shape, case.layout("input"))))


def antialias_copy_backward(case: Case) -> bool:
    """F.interpolate(antialias=True) with a factor whose output length equals the input's
    without being 1: torch's forward copies that dim and its backward follows the factor."""
    return bool(resize_arguments(case).get("antialias")) and shortcut_differs(case)


def bicubic_backward_copy(case: Case) -> bool:
    """Upsample(mode='bicubic', align_corners=False) with every output length equal to the
    input's but a factor other than 1: the forward follows the factor, the backward copies."""
    args = resize_arguments(case)
    if args.get("mode") != "bicubic" or args.get("antialias") or args.get("align_corners"):
        return False
    geo = resize_geometry(case)
    return geo.out_sizes == geo.in_sizes and any(s is not None and s != 1 for s in geo.scales)


def antialias_single_column(case: Case) -> bool:
    """F.interpolate(antialias=True) resizing the height to a length other than 1 into an output
    one pixel wide: every output row gets the taps and weights of the first."""
    if not resize_arguments(case).get("antialias"):
        return False
    geo = resize_geometry(case)
    return geo.out_sizes[-1] == 1 and geo.out_sizes[0] not in (1, geo.in_sizes[0])


def grid_dims(case: Case) -> list[np.ndarray]:
    """Per spatial dim (first to last), the unpadded pixel coordinates of the grid."""
    x, grid = case.inputs["input"], case.inputs["grid"]
    dims = x.ndim - 2
    return [RS.unnormalize(grid[..., dims - 1 - d], x.shape[2 + d], bool(case.params["align_corners"]))[0]
            for d in range(dims)]


def on_pixel_centres(case: Case) -> bool:
    """Some grid point lies exactly on a pixel centre in every dim (the kinks of bilinear)."""
    coords = grid_dims(case)
    return bool(np.any(np.all([c == np.round(c) for c in coords], axis=0)))


def beyond_border(case: Case) -> bool:
    """Some grid value lies outside [-1, 1]."""
    return bool(np.any(np.abs(case.inputs["grid"]) > 1))


def folds_twice(case: Case) -> bool:
    """padding_mode='reflection' folds some coordinate more than once."""
    if case.params["padding_mode"] != "reflection":
        return False
    x = case.inputs["input"]
    for d, c in enumerate(grid_dims(case)):
        low, span = (0.0, x.shape[2 + d] - 1.0) if case.params["align_corners"] else (-0.5, float(x.shape[2 + d]))
        if span > 0 and np.any(np.abs(c - low) >= 2 * span):
            return True
    return False


def scale_matters(size_in: int, size_out: int, scale: float | None) -> bool:
    """Whether nearest's source index ⌊dst/scale⌋ differs from ⌊dst·in/out⌋ somewhere (out = in
    and out = 2·in take torch's shortcuts, which use neither)."""
    if scale is None or size_out in (size_in, 2 * size_in):
        return False
    dst = np.arange(size_out)
    return bool(np.any(np.floor(dst / scale) != (dst * size_in) // size_out))


def factors(case: Case) -> list[float]:
    """The factors the call gives, per dim (none for a size)."""
    scale = case.params.get("scale_factor")
    if scale is None:
        return []
    rank = case.inputs["input"].ndim - 2
    return [float(s) for s in scale] if isinstance(scale, (tuple, list)) else [float(scale)] * rank


def resize_dims(case: Case) -> list[tuple[int, int, float | None]]:
    """Per spatial dim: (input length, output length, the factor the kernel receives)."""
    geo = resize_geometry(case)
    return list(zip(geo.in_sizes, geo.out_sizes, geo.scales))


def grid_smooth(case: Case) -> bool:
    """No grid coordinate within 1e-4 pixel of a kink: an integer (bilinear, the floor; also the
    zeros padding's border; bicubic, whose Keys' cubic is C¹ but not C²: the outer tap's piece
    ends with W''(2) = 2A ≠ 0, so vjp2's second derivative jumps there), a half-integer
    (nearest), the clamp of border/reflection or a fold of reflection; so finite differences of
    the reference apply."""
    p = case.params
    x = case.inputs["input"]
    half = 0.5 if p["mode"] == "nearest" else 0.0
    for d, raw in enumerate(grid_dims(case)):
        size = x.shape[2 + d]
        for c in (raw, RS.pad_coordinate(raw, size, p["padding_mode"], bool(p["align_corners"]))[0]):
            frac = np.abs((c - half) - np.round(c - half))
            if np.any(frac < 1e-4):
                return False
        if p["padding_mode"] != "zeros" and np.any(np.minimum(np.abs(raw), np.abs(raw - (size - 1))) < 1e-4):
            return False
        if p["padding_mode"] == "reflection":
            low, span = (0.0, size - 1.0) if p["align_corners"] else (-0.5, float(size))
            if span and np.any(np.abs((raw - low) / span - np.round((raw - low) / span)) * span < 1e-4):
                return False
    return True


def empty_resize(case: Case) -> bool:
    """An interpolation whose input or output has a zero-length dim (an empty channel dim, a size
    of 0, or a factor that floors an output length to 0)."""
    x = case.inputs["input"]
    if 0 in x.shape:
        return True
    size = case.params.get("size")
    if size is not None:
        return 0 in (tuple(size) if isinstance(size, (tuple, list)) else (size,))
    return any(math.floor(n * s) == 0 for n, s in zip(x.shape[2:], factors(case)))


def area_accepts_empty(case: Case) -> bool:
    """Upsample/interpolate mode='area' (adaptive average pooling) skips interpolate's size checks:
    where the only rule broken is "input and output sizes must be > 0" or "at least one channel",
    torch returns an empty tensor when the input's spatial lengths are all positive, except for an
    empty channel dim of a 5-d input (adaptive_avg_pool3d rejects it)."""
    args = resize_arguments(case)
    if args.get("mode") != "area":
        return False
    shape = case.inputs["input"].shape
    try:
        resize_geometry(case)
    except ValueError as error:
        message = str(error)
        if not message.startswith(("input and output sizes must be > 0", "interpolate needs at least one channel")):
            return False
    else:
        return False
    return min(shape[2:], default=0) > 0 and not (len(shape) == 5 and shape[1] == 0)


def bicubic_backward_copy_visible(case: Case) -> bool:
    """``bicubic_backward_copy`` where the copy differs from the VJP: a non-empty input with some
    spatial length of 2 or more (a 1×1 image interpolates to a copy of itself)."""
    x = case.inputs["input"]
    return x.size > 0 and max(x.shape[2:], default=0) >= 2 and bicubic_backward_copy(case)


def _composition(case: Case) -> str | None:
    """The vjp2 composition of a case (None outside the vjp2 mode)."""
    node = case.mode_node
    return node.get("composition") if node.get("kind") == "vjp2" else None


def bicubic_empty_grid_double_backward(case: Case) -> bool:
    """grid_sample(mode='bicubic') double backward (vjp2's reverse-over-reverse) with a grid of no
    sampling point (H_out or W_out 0) in a non-empty batch: the differentiable bicubic backward
    reshapes with -1 over 0 elements and raises."""
    grid = case.inputs["grid"]
    return (_composition(case) == "reverse-over-reverse" and case.params.get("mode") == "bicubic"
            and grid.shape[0] > 0 and 0 in grid.shape[1:3])


def bilinear_reflection_half_double_backward(case: Case) -> bool:
    """grid_sample(mode='bilinear', padding_mode='reflection') in float16/bfloat16, double backward
    (vjp2's reverse-over-reverse) with both the input and the grid differentiable: the
    differentiable backward scatters a float32 source into the half-precision gradient and raises."""
    return (_composition(case) == "reverse-over-reverse" and case.dtype in ("float16", "bfloat16")
            and case.params.get("mode") == "bilinear" and case.params.get("padding_mode") == "reflection"
            and {"input", "grid"} <= set(case.differentiable))


def affine_grid_unit_size_under_func(case: Case) -> bool:
    """affine_grid with some spatial length 1 under vjp2's torch.func compositions (torch.func.jvp
    of torch.func.vjp; torch.func.grad of torch.func.jvp, differentiated w.r.t. the tangent too):
    torch reads a functorch wrapper's data pointer and raises."""
    return (_composition(case) in ("forward-over-reverse", "reverse-over-forward")
            and 1 in tuple(case.params["size"])[2:])


# -- predicates of known torch.compile discrepancies (conformance/known/torch_compile*.toml) --------

def resize_to_empty_by_nonzero_factor(case: Case) -> bool:
    """``empty_resize`` where no factor is 0 (a factor of 0 counts as none given, which is rejected
    before any size is computed)."""
    return empty_resize(case) and all(f != 0 for f in factors(case))


def widened_width(case: Case) -> int:
    """The output width of an upsampling (UpsamplingNearest2d/UpsamplingBilinear2d) of an input 1
    wide; 0 when the input is wider."""
    x = case.inputs["input"]
    if x.shape[-1] != 1:
        return 0
    size = case.params.get("size")
    if size is not None:
        return int(size[-1] if isinstance(size, (tuple, list)) else size)
    return math.floor(factors(case)[-1])


def resizes_width_one_input(case: Case) -> bool:
    """An input 1 wide with a dim of size 1 widened (inductor's CPU code generation asserts on
    bilinear ones: 1x1 to 2x1 or 4x4, 2x1 to 3x5; 3x1 to 6x1, 7x1 to 1x1, 1x3 to 2x6 compile)."""
    x = case.inputs["input"]
    if x.shape[-1] != 1:
        return False
    size = case.params.get("size")
    if size is not None:
        out = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    else:
        out = tuple(math.floor(n * f) for n, f in zip(x.shape[2:], factors(case)))
    return any(n == 1 and int(o) > 1 for n, o in zip(x.shape[2:], out))


# The narrowest output of nearest upsampling of an input 1 wide on which inductor's CPU code generation
# asserts, per dtype (measured, torch 2.13: float32 fails from 4, 3 compiles; float64 fails at 4;
# float16 and bfloat16 fail from 8, 7 compiles).
NEAREST_CODEGEN_MIN_WIDTH = {"float64": 4, "float32": 4, "float16": 8, "bfloat16": 8}


def widens_width_one_input_nearest_codegen(case: Case) -> bool:
    """An input 1 wide upsampled (nearest) to an output at least ``NEAREST_CODEGEN_MIN_WIDTH`` wide
    for the case's dtype."""
    return widened_width(case) >= NEAREST_CODEGEN_MIN_WIDTH[case.dtype]
