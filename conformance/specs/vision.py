"""Vision: pixel (un)shuffle, resizing (Upsampling layers, Upsample, F.interpolate), grid_sample, affine_grid."""

from __future__ import annotations

import numpy as np

from conformance.families.vision import pixel_layer, resize_layer
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
               "Any number of leading dims (>= 3-d input). The gradient is the inverse permutation of the "
               "cotangent. Declared as two entries (PixelUnshuffle is its own torch.nn class), one mechanism. "
               "torch discrepancy: a 5-d input with channels_last_3d-like strides raises 'Unsupported memory "
               "format' (five_d_channels_last_3d_strides)."),
    ))

# The regimes both Upsampling layers share, over (input length, output length, factor) per dim.
_SIZE_GIVEN = Regime("size given", lambda c: c.params.get("size") is not None, {"by": "size"}, "s = in/out")
_FRACTIONAL = Regime("fractional scale", lambda c: any(s is not None and s != int(s) for _, _, s in N.resize_dims(c)),
                     {"by": "scale_factor", "scale kind": "fractional"}, "a non-integer factor")
_DOWN = Regime("downsampling", lambda c: any(o < i for i, o, _ in N.resize_dims(c)),
               {"by": "scale_factor", "scale kind": "downsampling"}, "factor < 1")
_PER_DIM = Regime("per-dim factors", lambda c: isinstance(c.params.get("scale_factor"), tuple)
                  and len(set(c.params["scale_factor"])) > 1,
                  {"by": "scale_factor", "scale differs per dim": True}, "a factor per dim")

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
           "reference.interpolate, mode 'nearest'. torch's 2-d kernels copy when out = in and take dst >> 1 when "
           "out = 2·in whatever the factor, forward and backward alike: accepted as an alternative convention. "
           "Output size ⌊in·factor⌋. The gradient sums the cotangents of the outputs reading each input element."),
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
