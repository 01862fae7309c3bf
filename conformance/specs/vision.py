"""Vision: pixel (un)shuffle, resizing (Upsampling layers, Upsample, F.interpolate), grid_sample, affine_grid."""

from __future__ import annotations

import numpy as np

from conformance.families.vision import affine_grid, grid_sample, pixel_layer, resize_layer
from conformance.numerics import vision as N
from conformance.spec import Regime, declare
from conformance.strategies import vision as V

for _name, _shuffle in (("PixelShuffle", True), ("PixelUnshuffle", False)):
    declare(pixel_layer(
        _name, shuffle=_shuffle,
        regimes=(
            Regime("factor 1", lambda c: N.pixel_factor(c) == 1, {"factor": 1}, "the identity"),
            Regime("factor 4", lambda c: N.pixel_factor(c) == 4, {"factor": 4},
                   "the largest factor"),
            Regime("unbatched", lambda c: c.inputs["input"].ndim == 3, {"leading": "unbatched"}, "(C, H, W) input"),
            Regime("extra leading dims", lambda c: c.inputs["input"].ndim > 4, {"leading": "extra leading dims"},
                   "(A, N, C, H, W): any leading dims"),
            Regime("channels_last", lambda c: c.layout("input").kind == "channels_last",
                   {"leading": "batched", "layout.input": "channels_last"}, "NHWC strides"),
            Regime("non-finite values", lambda c: not np.isfinite(c.inputs["input"]).all(),
                   {"tier": "float", "input.kind": "special"}, "NaN and ±inf are permuted too"),
        ),
        notes=("out[..., c, h·r + i, w·r + j] = in[..., c·r² + i·r + j, h, w] (shuffle); unshuffle is the inverse. "
               "Any number of leading dims (>= 3-d input). The gradient is the inverse permutation of the cotangent. "
               "Declared as two entries (PixelUnshuffle is its own torch.nn class), one mechanism. torch "
               "discrepancy: a 5-d input with channels_last_3d-like strides raises 'Unsupported memory format' "
               "(five_d_channels_last_3d_strides)."),
    ))

# The regimes both Upsampling layers share, over (input length, output length, factor) per dim.
_SIZE_GIVEN = Regime("size given", lambda c: c.params.get("size") is not None, {"by": "size"}, "s = in/out")
_FRACTIONAL = Regime("fractional scale", lambda c: any(s != int(s) for s in N.factors(c)),
                     {"by": "scale_factor", "scale kind": "fractional"}, "a non-integer factor")
_DOWN = Regime("downsampling", lambda c: any(o < i for i, o, _ in N.resize_dims(c)),
               {"by": "scale_factor", "scale kind": "downsampling"}, "factor < 1")
_PER_DIM = Regime("per-dim factors", lambda c: len(set(N.factors(c))) > 1,
                  {"by": "scale_factor", "scale differs per dim": True, "rank": 2, "mode": "bilinear"},
                  "a factor per dim")

declare(resize_layer(
    "UpsamplingNearest2d", kind="nearest", target="torch.nn.UpsamplingNearest2d", selecting=True, dims=2,
    cases=V.upsampling_cases("UpsamplingNearest2d", nearest=True), invalid=V.upsampling_invalid("UpsamplingNearest2d"),
    regimes=(
        _SIZE_GIVEN, _FRACTIONAL, _DOWN, _PER_DIM,
        Regime("channels_last", lambda c: c.layout("input").kind == "channels_last", {"layout.input": "channels_last"},
               "NHWC strides"),
        Regime("out = in with factor 1.1 (copy shortcut)",
               lambda c: any(o == i and s is not None and s != 1 for i, o, s in N.resize_dims(c)),
               {"by": "scale_factor", "scale kind": "fractional", "scale[0]": 1.1},
               "torch copies when out = in, although ⌊dst/1.1⌋ would differ"),
        Regime("1/factor differs from in/out", lambda c: any(N.scale_matters(*d) for d in N.resize_dims(c)),
               {"by": "scale_factor", "scale kind": "fractional", "scale[0]": 3.3, "in[0]": 2},
               "⌊dst/3.3⌋ != ⌊dst·in/out⌋: the source index uses the factor"),
        Regime("non-finite values", lambda c: not np.isfinite(c.inputs["input"]).all(),
               {"tier": "float", "input.kind": "special"}, "NaN and ±inf are copied"),
    ),
    notes=("src = min(⌊dst·s⌋, in - 1) per dim in float32, s = 1/scale_factor (in/out for a size): "
           "reference.interpolate, mode 'nearest'. torch's 2-d kernels copy when out = in and take dst >> 1 when out "
           "= 2·in whatever the factor, forward and backward alike: accepted as an alternative convention. Output "
           "size ⌊in·factor⌋. The gradient sums the cotangents of the outputs reading each input element."),
))

declare(resize_layer(
    "UpsamplingBilinear2d", kind="bilinear", target="torch.nn.UpsamplingBilinear2d", selecting=False, dims=2,
    cases=V.upsampling_cases("UpsamplingBilinear2d", nearest=False),
    invalid=V.upsampling_invalid("UpsamplingBilinear2d"),
    regimes=(
        _SIZE_GIVEN, _FRACTIONAL, _DOWN, _PER_DIM,
        Regime("channels_last", lambda c: c.layout("input").kind == "channels_last", {"layout.input": "channels_last"},
               "NHWC strides"),
        Regime("out = 1 (align_corners)", lambda c: any(o == 1 for _, o, _ in N.resize_dims(c)),
               {"by": "size", "size[0]": 1}, "(in - 1)/(out - 1) undefined: src = 0"),
        Regime("input size 1", lambda c: any(i == 1 for i, _, _ in N.resize_dims(c)), {"by": "size", "in[0]": 1},
               "every output copies the one input row"),
    ),
    notes=("align_corners=True: src = dst·(in - 1)/(out - 1) (0 when out = 1), i0 = ⌊src⌋, i1 = min(i0 + 1, in - 1), "
           "weights 1 - λ and λ per dim (reference.interpolate, mode 'bilinear'). A factor only sets the output size "
           "⌊in·factor⌋. The backward scatters each cotangent to the four taps and sums. Judged by the first-order "
           "error analysis of reference.interpolate (the position's and weights' roundings in torch's arithmetic). "
           "Finite values only (0·inf at a zero weight is NaN in torch, and whether a weight is exactly 0 depends on "
           "the rounding of src)."),
))

# Upsample and F.interpolate: one declaration per tolerance policy (selecting, linear, cubic, area, antialias).
_SELECTING, _LINEAR = ("nearest", "nearest-exact"), ("bilinear", "linear", "trilinear")
_COMMON = (
    _SIZE_GIVEN, _FRACTIONAL, _DOWN, _PER_DIM,
    Regime("recompute_scale_factor", lambda c: bool(c.params.get("recompute_scale_factor")),
           {"by": "scale_factor", "recompute_scale_factor": True}, "the kernel uses in/out, not the factor"),
    Regime("input size 1", lambda c: any(i == 1 for i, _, _ in N.resize_dims(c)), {"by": "size", "in[0]": 1},
           "one input element along a dim"),
    Regime("empty batch", lambda c: c.inputs["input"].shape[0] == 0, {"empty batch": True}, "N = 0"),
    Regime("channels_last, C > 3", lambda c: c.layout("input").kind == "channels_last"
           and c.inputs["input"].shape[1] > 3,
           {"layout.input": "channels_last", "C": 4, "rank": 2, "mode": "bilinear"},
           "torch's vectorised channels-last kernels"),
)
_COPY = Regime("out = in with factor 1.1 (copy shortcut)",
               lambda c: any(o == i and s is not None and s != 1 for i, o, s in N.resize_dims(c)),
               {"by": "scale_factor", "scale kind": "fractional", "scale[*]": 1.1, "recompute_scale_factor": None,
                "in[*]": 5}, "torch's kernels copy when out = in whatever the factor")
_ALIGN = (Regime("align_corners=True", lambda c: c.params.get("align_corners") is True, {"align_corners": True},
                 "src = dst·(in - 1)/(out - 1)"),
          Regime("align_corners with output size 1", lambda c: bool(c.params.get("align_corners"))
                 and any(o == 1 for _, o, _ in N.resize_dims(c)),
                 {"align_corners": True, "by": "size", "size[0]": 1}, "(in - 1)/(out - 1) undefined: s = 0"))

declare(resize_layer(
    "Upsample", variant="nearest", kind="upsample", target="torch.nn.Upsample", selecting=True,
    cases=V.resize_cases("Upsample", _SELECTING, specials=True), invalid=V.resize_invalid("Upsample", _SELECTING),
    regimes=(
        *_COMMON, _COPY,
        Regime("nearest-exact", lambda c: c.params["mode"] == "nearest-exact", {"mode": "nearest-exact"},
               "src = ⌊(dst + ½)·s⌋"),
        Regime("1-d", lambda c: c.inputs["input"].ndim == 3, {"rank": 1}, "(N, C, L)"),
        Regime("3-d", lambda c: c.inputs["input"].ndim == 5, {"rank": 3}, "(N, C, D, H, W)"),
        Regime("2x shortcut (factor 2.05)", lambda c: any(o == 2 * i and s is not None and s != 2
                                                           for i, o, s in N.resize_dims(c)),
               {"mode": "nearest", "by": "scale_factor", "scale kind": "fractional", "scale[*]": 2.05,
                "recompute_scale_factor": None}, "torch's nearest takes dst >> 1 when out = 2·in"),
        Regime("1/factor differs from in/out", lambda c: any(N.scale_matters(*d) for d in N.resize_dims(c)),
               {"mode": "nearest", "by": "scale_factor", "scale kind": "fractional", "scale[0]": 3.3, "in[0]": 2,
                "recompute_scale_factor": None}, "⌊dst/3.3⌋ != ⌊dst·in/out⌋"),
        Regime("non-finite values", lambda c: not np.isfinite(c.inputs["input"]).all(),
               {"tier": "float", "input.kind": "special", "empty batch": False}, "NaN and ±inf are copied"),
    ),
    notes=("nearest: src = min(⌊dst·s⌋, in - 1), nearest-exact: min(⌊(dst + ½)·s⌋, in - 1), per dim, s = "
           "1/scale_factor when a factor is given (and recompute_scale_factor is not True), else in/out, evaluated "
           "in float32 as torch does (float64 and exact evaluation agree for the lengths drawn: in <= 12, out <= "
           "24). torch's kernels copy when out = in and nearest takes dst >> 1 when out = 2·in whatever the factor: "
           "accepted as an alternative when output and gradient follow it alike. Output and gradient bit-exact (the "
           "gradient sums cotangents: exact in the exact tier). Known: 1-d and 3-d nearest take the shortcut in the "
           "backward only."),
))

declare(resize_layer(
    "Upsample", variant="linear", kind="upsample", target="torch.nn.Upsample", selecting=False,
    cases=V.resize_cases("Upsample", _LINEAR, tiers=("float",)), invalid=V.resize_invalid("Upsample", _LINEAR),
    regimes=(*_COMMON, _COPY, *_ALIGN,
             Regime("linear (1-d)", lambda c: c.params["mode"] == "linear", {"mode": "linear"}, "(N, C, L)"),
             Regime("trilinear (3-d)", lambda c: c.params["mode"] == "trilinear", {"mode": "trilinear"}, "5-d input")),
    notes=("src = s·dst (align_corners) or s·(dst + ½) - ½ clamped at 0, i0 = min(⌊src⌋, in - 1), i1 = min(i0 + 1, "
           "in - 1), weights 1 - λ and λ, λ = src - i0 (reference.interpolate); s = (in - 1)/(out - 1) (0 when out = "
           "1) with align_corners, else 1/scale_factor or in/out. align_corners None is False. torch copies when out "
           "= in whatever the factor (accepted, forward and backward alike). Judged by the first-order error "
           "analysis of reference.interpolate (positions and weights in torch's arithmetic; float16/bfloat16 weights "
           "stored in the dtype). Finite values only (0·inf at a zero weight is NaN)."),
))

declare(resize_layer(
    "Upsample", variant="bicubic", kind="upsample", target="torch.nn.Upsample", selecting=False, shortcuts=False,
    dims=2, cases=V.resize_cases("Upsample", ("bicubic",), tiers=("float",)),
    invalid=V.resize_invalid("Upsample", ("bicubic",)),
    regimes=(*_COMMON, *_ALIGN,
             Regime("out = in with factor 1.1 in every dim", lambda c: N.bicubic_backward_copy(c),
                    {"by": "scale_factor", "scale kind": "fractional", "scale[*]": 1.1, "scale differs per dim": False,
                     "recompute_scale_factor": None, "align_corners": False}, "torch's backward copies (known)")),
    notes=("Keys' cubic convolution, A = -0.75, at t = src - ⌊src⌋ with src = s·dst (align_corners) or s·(dst + ½) - "
           "½ (not clamped), taps ⌊src⌋ - 1 .. ⌊src⌋ + 2 clamped into [0, in - 1] (a border tap repeats the edge "
           "value). Overshoot is expected. Judged by reference.interpolate's error analysis (Horner's rule for the "
           "weights)."),
))

declare(resize_layer(
    "Upsample", variant="area", kind="upsample", target="torch.nn.Upsample", selecting=False, shortcuts=False,
    cases=V.resize_cases("Upsample", ("area",)), invalid=V.resize_invalid("Upsample", ("area",)),
    regimes=(*_COMMON,
             Regime("1-d", lambda c: c.inputs["input"].ndim == 3, {"rank": 1}, "(N, C, L)"),
             Regime("3-d", lambda c: c.inputs["input"].ndim == 5, {"rank": 3}, "(N, C, D, H, W)"),
             Regime("overlapping windows", lambda c: any(i % o and o < i for i, o, _ in N.resize_dims(c)),
                    {"by": "size", "in[*]": 5, "size[*]": 3}, "in/out not an integer: windows share elements")),
    notes=("area is adaptive average pooling: output i averages [⌊i·in/out⌋, ⌈(i + 1)·in/out⌉) per dim; a factor "
           "only sets the output size (the kernel always uses in/out). The gradient spreads each cotangent evenly "
           "over its window. torch sums and divides in the dtype, float16/bfloat16 too (the error analysis says so)."),
))

declare(resize_layer(
    "Upsample", variant="antialias", kind="interpolate", target="torch.nn.functional.interpolate", selecting=False,
    dims=2, cases=V.resize_cases("Upsample", ("bilinear", "bicubic"), tiers=("float",), antialias=True),
    invalid=V.resize_invalid("Upsample", ("bilinear", "bicubic"), antialias=True),
    regimes=(*_COMMON, _COPY, *_ALIGN,
             Regime("antialias=False", lambda c: not c.params["antialias"], {"antialias": False},
                    "F.interpolate without antialias"),
             Regime("bicubic (a = -0.5)", lambda c: c.params["mode"] == "bicubic", {"mode": "bicubic"},
                    "Pillow's cubic filter"),
             Regime("wide support (factor 0.3)", lambda c: any(o * 3 < i for i, o, _ in N.resize_dims(c)),
                    {"by": "scale_factor", "scale kind": "downsampling", "scale[*]": 0.3, "antialias": True},
                    "support = 1/0.3 pixels each side"),
             Regime("output one pixel wide", N.antialias_single_column,
                    {"antialias": True, "by": "size", "size differs per dim": True, "size[0]": 5, "size[1]": 1,
                     "in[0]": 3}, "known: every row takes the first row's taps")),
    notes=("F.interpolate (the catalogue's Upsample 'antialias through torch.nn.functional.interpolate'), bilinear "
           "and bicubic, antialias drawn. antialias=True (Pillow): support = (T/2)·max(s, 1), center = s·(dst + ½), "
           "taps trunc(center ± support + ½) clipped to the input, weights filter((j - center + ½)/max(s, 1)) "
           "normalised, filter the triangle or Keys' cubic with a = -0.5 (with align_corners=True torch keeps center "
           "= s·(dst + ½), s = (in - 1)/(out - 1)). torch implements antialias for float32/float64 only on the CPU "
           "(float16/bfloat16: NotImplementedError, reported unsupported). torch skips the pass of a dim whose "
           "length does not change."),
))

declare(grid_sample(
    "grid_sample", modes=("bilinear", "bicubic"), nearest=False, smooth_at=N.grid_smooth,
    regimes=(
        Regime("bicubic", lambda c: c.params["mode"] == "bicubic", {"mode": "bicubic"}, "Keys' A = -0.75, 4-d only"),
        Regime("5-d (trilinear)", lambda c: c.inputs["input"].ndim == 5, {"mode": "bilinear", "rank": 3}, "8 taps"),
        Regime("border", lambda c: c.params["padding_mode"] == "border", {"padding_mode": "border"}, "clamped"),
        Regime("reflection", lambda c: c.params["padding_mode"] == "reflection", {"padding_mode": "reflection"},
               "reflected"),
        Regime("align_corners=True", lambda c: c.params["align_corners"] is True, {"align_corners": True},
               "±1 at the corner pixels' centres"),
        Regime("align_corners=None", lambda c: c.params["align_corners"] is None, {"align_corners": None},
               "the default: False"),
        Regime("grid on pixel centres", N.on_pixel_centres,
               {"grid.kind": "pixel centres", "in[*]": 4, "align_corners": False, "empty grid": False},
               "the kinks: the derivative is taken from the right"),
        Regime("grid halfway between pixels", lambda c: c.params["mode"] == "bilinear",
               {"grid.kind": "pixel edges", "mode": "bilinear"}, "weights ½"),
        Regime("grid outside [-1, 1]", N.beyond_border, {"grid.kind": "outside", "empty grid": False},
               "padding at work"),
        Regime("reflection folding more than once", N.folds_twice,
               {"grid.kind": "far outside", "padding_mode": "reflection", "empty grid": False},
               "|c| beyond two spans"),
        Regime("grid on the corners ±1",
               lambda c: c.inputs["grid"].size > 0 and bool(np.all(np.abs(c.inputs["grid"]) == 1)),
               {"grid.kind": "corners", "empty grid": False}, "the image's corners"),
        Regime("input size 1", lambda c: 1 in c.inputs["input"].shape[2:], {"in[0]": 1}, "(S - 1)/2 = 0"),
        Regime("empty grid", lambda c: c.inputs["grid"].size == 0, {"empty grid": True}, "no sampling point"),
    ),
    notes=("Pixel coordinate c = (g + 1)/2·(S - 1) (align_corners) or ((g + 1)·S - 1)/2, padding zeros (taps outside "
           "read 0), border (clamp to [0, S - 1]) or reflection (about the corner pixels' centres, or outer edges "
           "without align_corners, repeatedly, then clamp); bilinear taps ⌊c⌋, ⌊c⌋ + 1; bicubic Keys' A = -0.75 on "
           "the unpadded c, each tap mapped by the padding (reference.sampling). Grid gradient: from the right at "
           "integer c, 0 at and beyond a clamp, sign-flipped on odd folds. torch computes in the input's dtype "
           "(float16 and bfloat16 included): judged by reference.sampling.grid_sample_error, which lets a coordinate "
           "within its rounding of a kink take either side."),
))

declare(grid_sample(
    "grid_sample", variant="nearest", modes=("nearest",), nearest=True, smooth_at=N.grid_smooth,
    regimes=(
        Regime("ties (exactly halfway)", N.has_tie,
               {"grid.kind": "pixel edges", "in[*]": 4, "align_corners": False, "padding_mode": "zeros",
                "empty grid": False},
               "rounded half to even by torch"),
        Regime("5-d", lambda c: c.inputs["input"].ndim == 5, {"rank": 3}, "(N, C, D, H, W)"),
        Regime("border", lambda c: c.params["padding_mode"] == "border", {"padding_mode": "border"}, "clamped"),
        Regime("reflection", lambda c: c.params["padding_mode"] == "reflection", {"padding_mode": "reflection"},
               "reflected"),
        Regime("grid outside [-1, 1]", N.beyond_border, {"grid.kind": "outside", "empty grid": False},
               "padding at work"),
        Regime("align_corners=True", lambda c: c.params["align_corners"] is True, {"align_corners": True}, ""),
        Regime("non-finite values", lambda c: not np.isfinite(c.inputs["input"]).all(),
               {"tier": "float", "input.kind": "special"}, "NaN and ±inf are copied"),
    ),
    notes=("The pixel round(c) (c as for bilinear, after padding), 0 outside the input; torch rounds a coordinate "
           "exactly halfway to even, rounding half up is accepted too (consistently for output and gradient). Grid "
           "values lie on the lattice k/8 so that every dtype computes c exactly. Output bit-exact; the input "
           "gradient sums the cotangents (bit-exact in the exact tier); the grid gradient is 0."),
))

declare(affine_grid(
    "affine_grid",
    regimes=(
        Regime("5-d", lambda c: len(c.params["size"]) == 5, {"rank": 3}, "theta (N, 3, 4)"),
        Regime("align_corners=True", lambda c: c.params["align_corners"] is True, {"align_corners": True}, ""),
        Regime("align_corners=None", lambda c: c.params["align_corners"] is None, {"align_corners": None},
               "the default: False"),
        Regime("size 1", lambda c: 1 in c.params["size"][2:], {"unit size": True}, "the one coordinate is 0"),
        Regime("identity theta", lambda c: bool(np.all(c.inputs["theta"] == np.eye(*c.inputs["theta"].shape[1:]))),
               {"identity theta": True}, "the base grid itself"),
    ),
    notes=("Base coordinates -1 + 2i/(S - 1) (align_corners) or (2i + 1)/S - 1, 0 for S = 1; grid = theta @ (x, y[, "
           "z], 1) per point, x along the last dim. The gradient sums g·base over the grid points. Judged by "
           "reference.sampling.affine_grid_error (torch's linspace and the batched product in the dtype). torch has "
           "no float16/bfloat16 kernel for a unit size (NotImplementedError: reported unsupported)."),
))
