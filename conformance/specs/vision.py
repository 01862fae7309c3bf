"""Vision layers: PixelShuffle, PixelUnshuffle, UpsamplingNearest2d, UpsamplingBilinear2d.

PixelUnshuffle is declared as a catalogue entry of its own (not as a variant of PixelShuffle): it
is a distinct torch.nn class with its own constructor argument (``downscale_factor``), listed on
its own in the documentation, whereas a variant is one entry called on different forms of input
(LSTM on padded or packed sequences). The two share one case strategy and one reference, bound
to a direction at declaration time: the forward of one is the VJP of the other.

Pixel shuffle: upscale factors 1 to 4, batched (N, C·r², H, W), unbatched (C·r², H, W) and one
or two extra leading dims (A, N, C·r², H, W); every memory layout; any values (NaN and ±inf are permuted like
the rest). Output and gradient are permutations: bit-exact in every tier.

Upsampling (N, C, H, W): ``size`` (an int or a pair, smaller or larger than the input, 1
included) or ``scale_factor`` (integer, fractional or < 1; one value or a different one per dim;
spelled as an int, a float or a tuple). UpsamplingNearest2d follows torch's index rule (see
``reference.vision.nearest_source_index``: floor(dst·s) in float32, clamped, with s = 1/factor
when a factor is given and in/out when a size is given — they differ for fractional factors —
and torch's copy shortcuts out = in and out = 2·in). UpsamplingBilinear2d is align_corners=True:
src = dst·(in - 1)/(out - 1), 0 when out = 1; the factor only sets the output size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference, spec_of
from conformance.tolerance import bound_as_magnitude
from reference import vision as ref

SPECIALS = (math.inf, -math.inf, math.nan)
PIXEL_BUDGET = 2048


# =============================================================================================
# PixelShuffle / PixelUnshuffle
# =============================================================================================

def _factor_name(shuffle: bool) -> str:
    return "upscale_factor" if shuffle else "downscale_factor"


def _is_shuffle(case: Case) -> bool:
    return spec_of(case).kind == "shuffle"


def _pixel_cases(name: str, shuffle: bool):
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
        return Case(op=name, dtype=dtype, params={_factor_name(shuffle): r}, inputs={"input": x},
                    differentiable=("input",), layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return cases


def _pixel_invalid(name: str, shuffle: bool):
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
        return Case(op=name, dtype=dtype, params={_factor_name(shuffle): r}, inputs={"input": x},
                    differentiable=("input",), invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


def _pixel_reference(case: Case, backward: bool) -> Result:
    x = case.inputs["input"]
    shuffle = _is_shuffle(case)
    r = int(case.params[_factor_name(shuffle)])
    if x.ndim < 3:
        raise ValueError(f"pixel (un)shuffle needs an input of at least 3 dims, got {x.ndim}")
    if r < 1:
        raise ValueError(f"the factor must be positive, got {r}")
    forward, inverse = (ref.pixel_shuffle, ref.pixel_unshuffle) if shuffle else (ref.pixel_unshuffle, ref.pixel_shuffle)
    out = Result(outputs={"output": forward(x, r)})
    if backward:
        out.grads["input"] = inverse(case.cotangents["output"], r)
    return out


def five_d_channels_last_3d_strides(case: Case) -> bool:
    """torch's pixel_(un)shuffle rejects a 5-d input whose strides it reads as channels_last_3d
    ("Unsupported memory format. Supports only ChannelsLast, Contiguous"), although any leading
    dims are documented; exact over every permutation of several 5-d shapes."""
    x = case.inputs["input"]
    return x.ndim == 5 and S.channels_last_like(x.shape, S.torch_strides(x.shape, case.layout("input")))


def _pixel_regimes(shuffle: bool) -> tuple[Regime, ...]:
    factor = _factor_name(shuffle)
    spatial = 3
    return (
        Regime("factor 1", lambda c: c.params[factor] == 1, pins={"factor": 1}, description="the identity"),
        Regime("factor 4", lambda c: c.params[factor] == 4, pins={"factor": 4}, description="the largest factor"),
        Regime("unbatched", lambda c: c.inputs["input"].ndim == spatial, pins={"leading": "unbatched"},
               description="(C, H, W) input"),
        Regime("extra leading dims", lambda c: c.inputs["input"].ndim > spatial + 1,
               pins={"leading": "extra leading dims"}, description="(A, N, C, H, W): any leading dims"),
        Regime("channels_last", lambda c: c.layout("input").kind == "channels_last",
               pins={"leading": "batched", "layout.input": "channels_last"}, description="NHWC strides"),
        Regime("non-finite values", lambda c: not np.isfinite(c.inputs["input"]).all(),
               pins={"tier": "float", "input.kind": "special"}, description="NaN and ±inf are permuted too"),
    )


for _name, _shuffle in (("PixelShuffle", True), ("PixelUnshuffle", False)):
    declare(LayerSpec(
        name=_name, family="vision", dims=2, kind="shuffle" if _shuffle else "unshuffle",
        cases=_pixel_cases(_name, _shuffle),
        reference=result_reference(_pixel_reference),
        torch=TorchMapping(f"torch.nn.{_name}"),
        tolerance=Tolerance(magnitude="ref", exact="always"),
        invalid_cases=_pixel_invalid(_name, _shuffle),
        regimes=_pixel_regimes(_shuffle),
        notes=("out[..., c, h·r + i, w·r + j] = in[..., c·r² + i·r + j, h, w] (shuffle); unshuffle is the inverse. "
               "Any number of leading dims (>= 3-d input). The gradient is the inverse permutation of the "
               "cotangent. Declared as two entries (PixelUnshuffle is its own torch.nn class), one mechanism. "
               "torch discrepancy: a 5-d input with channels_last_3d-like strides raises 'Unsupported memory "
               "format' (five_d_channels_last_3d_strides)."),
    ))


# =============================================================================================
# UpsamplingNearest2d / UpsamplingBilinear2d
# =============================================================================================

INTEGER_FACTORS = (2.0, 1.0, 3.0, 4.0)
FRACTIONAL_FACTORS = (1.5, 2.5, 1.25, 1.3, 1.75, 1.1, 3.3, 2.05)
DOWN_FACTORS = (0.5, 0.75, 0.6, 0.3)
MAX_IN = 8


def _min_input(scale: float) -> int:
    """The smallest input length whose output floor(in·scale) is at least 1."""
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
    options = {"integer": INTEGER_FACTORS, "fractional": FRACTIONAL_FACTORS, "downsampling": DOWN_FACTORS}[kind]
    first = d.choice(options, "scale[0]")
    differs = d.flag("scale differs per dim")
    second = d.choice(tuple(o for o in options if o != first), "scale[1]") if differs else first
    scales: tuple[Any, Any] = (first, second)
    if kind == "integer" and d.flag("scale spelled as int"):
        scales = (int(first), int(second))
    hin = d.integer(_min_input(first), MAX_IN, "in[0]")
    win = d.integer(_min_input(second), MAX_IN, "in[1]")
    return {"scale_factor": _spell(d, scales, differs, "scale")}, (hin, win)


def _upsample_cases(name: str, nearest: bool):
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


def _upsample_invalid(name: str):
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


def _pair(value: Any) -> tuple[Any, Any]:
    return (value[0], value[1]) if isinstance(value, (list, tuple)) else (value, value)


def geometry(case: Case) -> list[tuple[int, int, float | None]]:
    """Per spatial dim (H, W): (input length, output length, the scale factor given or None).

    Raises ValueError as torch does: both or neither of size / scale_factor (a factor of 0 counts
    as not given), a non-positive input or output length."""
    size, scale = case.params.get("size"), case.params.get("scale_factor")
    if size is not None and scale is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is None and not scale:
        raise ValueError("either size or scale_factor should be defined")
    x = case.inputs["input"]
    if x.ndim != 4:
        raise ValueError(f"expected a 4-d input, got {x.ndim}-d")
    sizes = _pair(size) if size is not None else (None, None)
    scales = _pair(scale) if scale is not None else (None, None)
    return [(x.shape[2 + i], ref.output_size(x.shape[2 + i], sizes[i], scales[i]),
             None if scales[i] is None else float(scales[i])) for i in range(2)]


def _nearest_reference(case: Case, backward: bool) -> Result:
    (hin, hout, hs), (win, wout, ws) = geometry(case)
    ih, iw = ref.nearest_source_index(hin, hout, hs), ref.nearest_source_index(win, wout, ws)
    out = Result(outputs={"output": ref.upsample_nearest2d(case.inputs["input"], ih, iw)})
    if backward:
        a_h, a_w = ref.nearest_matrix(hin, hout, hs), ref.nearest_matrix(win, wout, ws)
        out.grads["input"] = ref.separable_vjp(case.cotangents["output"], a_h, a_w)
    return out


def _bilinear_reference(case: Case, backward: bool) -> Result:
    (hin, hout, _), (win, wout, _) = geometry(case)
    taps_h, taps_w = ref.bilinear_taps(hin, hout), ref.bilinear_taps(win, wout)
    out = Result(outputs={"output": ref.upsample_bilinear2d(case.inputs["input"], taps_h, taps_w)})
    if backward:
        out.grads["input"] = ref.separable_vjp(case.cotangents["output"], ref.bilinear_matrix(hin, hout),
                                               ref.bilinear_matrix(win, wout))
    return out


def _nearest_overlap(case: Case, tensor: str) -> int:
    """K of the gradient: the most outputs reading one input element."""
    count = 1
    for in_size, out_size, scale in geometry(case):
        count *= int(np.bincount(ref.nearest_source_index(in_size, out_size, scale), minlength=in_size).max())
    return count


def _bilinear_overlap(case: Case, tensor: str) -> int:
    """K: 4 taps per output; for the gradient the most outputs whose taps reach one input element."""
    if tensor == "output":
        return 4
    count = 1
    for in_size, out_size, _ in geometry(case):
        count *= int((ref.bilinear_matrix(in_size, out_size) != 0).sum(axis=0).max())
    return count


def _position_error(in_size: int, out_size: int) -> np.ndarray:
    """(out × in) bound, in units of u, on how far a backend's interpolation weights may move: the
    source position dst·(in-1)/(out-1) is evaluated with a rounded scale and product (relative 2u)
    and λ = src - i0, 1 - λ add one rounding each: |δλ| <= (2·src + 2)·u. A floor that flips at an
    integer src moves weight to the neighbour below, so the bound covers columns i0 - 1 .. i0 + 1."""
    i0, _, _, src = ref.bilinear_taps(in_size, out_size)
    p = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    for shift in (-1, 0, 1):
        p[rows, np.clip(i0 + shift, 0, in_size - 1)] = 2 * src + 2
    return p


def _bilinear_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """First-order bounds in units of u: y = A_h·x·A_wᵀ with weight errors P (``_position_error``)
    and 4 roundings per tap path (two products, two sums; float16/bfloat16 compute in float32 and
    round once, covered by the 1-ulp output term):
    E_y = P_h|x||A_w|ᵀ + |A_h||x|P_wᵀ + 4·|A_h||x||A_w|ᵀ;
    the gradient A_hᵀ·g·A_w: E = P_hᵀ|g||A_w| + |A_h|ᵀ|g|P_w + (4 + 2√K)·|A_h|ᵀ|g||A_w|."""
    (hin, hout, _), (win, wout, _) = geometry(case)
    a_h, a_w = ref.bilinear_matrix(hin, hout), ref.bilinear_matrix(win, wout)
    p_h, p_w = _position_error(hin, hout), _position_error(win, wout)
    ax = np.abs(case.inputs["input"])

    def forward(mh: np.ndarray, mw: np.ndarray) -> np.ndarray:
        return mh @ ax @ mw.T

    err = forward(p_h, a_w) + forward(a_h, p_w) + 4 * forward(a_h, a_w)
    out = {"output": bound_as_magnitude(err, _bilinear_overlap(case, "output"))}
    if "input" in result.grads:
        ag = np.abs(case.cotangents["output"])
        k = _bilinear_overlap(case, "grad.input")
        grad_err = (ref.separable_vjp(ag, p_h, a_w) + ref.separable_vjp(ag, a_h, p_w)
                    + (4 + 2 * math.sqrt(k)) * ref.separable_vjp(ag, a_h, a_w))
        out["grad.input"] = bound_as_magnitude(grad_err, k)
    return out


def _scale_matters(size_in: int, size_out: int, scale: float | None) -> bool:
    """Whether nearest's source index floor(dst/scale) differs from floor(dst·in/out) somewhere
    (out = in and out = 2·in take torch's shortcuts, which use neither)."""
    if scale is None or size_out in (size_in, 2 * size_in):
        return False
    dst = np.arange(size_out)
    return bool(np.any(np.floor(dst / scale) != (dst * size_in) // size_out))


def _geometry_regimes(bilinear: bool) -> tuple[Regime, ...]:
    def outs(c: Case) -> list[tuple[int, int, float | None]]:
        return geometry(c)

    regimes = [
        Regime("size given", lambda c: c.params.get("size") is not None, pins={"by": "size"},
               description="s = in/out" + ("" if bilinear else " (not 1/factor)")),
        Regime("fractional scale", lambda c: any(s is not None and s != int(s) for _, _, s in outs(c)),
               pins={"by": "scale_factor", "scale kind": "fractional"},
               description="a non-integer factor: " + ("the output size is floor(in·factor)" if bilinear else
                                                       "s = 1/factor, not in/out")),
        Regime("downsampling", lambda c: any(o < i for i, o, _ in outs(c)),
               pins={"by": "scale_factor", "scale kind": "downsampling"}, description="factor < 1"),
        Regime("per-dim factors", lambda c: isinstance(c.params.get("scale_factor"), tuple)
               and len(set(c.params["scale_factor"])) == 2,
               pins={"by": "scale_factor", "scale differs per dim": True}, description="(s_h, s_w), s_h != s_w"),
        Regime("channels_last", lambda c: c.layout("input").kind == "channels_last",
               pins={"layout.input": "channels_last"}, description="NHWC strides"),
    ]
    if bilinear:
        regimes += [
            Regime("out = 1 (align_corners)", lambda c: any(o == 1 for _, o, _ in outs(c)),
                   pins={"by": "size", "size[0]": 1}, description="(in - 1)/(out - 1) undefined: src = 0"),
            Regime("input size 1", lambda c: any(i == 1 for i, _, _ in outs(c)),
                   pins={"by": "size", "in[0]": 1}, description="every output copies the one input row"),
        ]
    else:
        regimes += [
            Regime("out = in with factor 1.1 (copy shortcut)",
                   lambda c: any(o == i and s is not None and s != 1 for i, o, s in outs(c)),
                   pins={"by": "scale_factor", "scale kind": "fractional", "scale[0]": 1.1},
                   description="torch copies when out = in, although floor(dst/1.1) would differ"),
            Regime("1/factor differs from in/out", lambda c: any(_scale_matters(i, o, s) for i, o, s in outs(c)),
                   pins={"by": "scale_factor", "scale kind": "fractional", "scale[0]": 3.3, "in[0]": 2},
                   description="floor(dst/3.3) != floor(dst·in/out): the source index uses the factor"),
            Regime("non-finite values", lambda c: not np.isfinite(c.inputs["input"]).all(),
                   pins={"tier": "float", "input.kind": "special"}, description="NaN and ±inf are copied"),
        ]
    return tuple(regimes)


declare(LayerSpec(
    name="UpsamplingNearest2d", family="vision", dims=2, kind="nearest",
    cases=_upsample_cases("UpsamplingNearest2d", nearest=True),
    reference=result_reference(_nearest_reference),
    torch=TorchMapping("torch.nn.UpsamplingNearest2d"),
    tolerance={
        "output": Tolerance(magnitude="ref", exact="always"),  # a gather: bit-exact
        "grad.input": Tolerance(reduction=_nearest_overlap, magnitude="abs", exact="bitwise"),
    },
    invalid_cases=_upsample_invalid("UpsamplingNearest2d"),
    regimes=_geometry_regimes(bilinear=False),
    notes=("src = min(floor(dst·s), in - 1) per dim, evaluated in float32 as torch does; s = 1/scale_factor when a "
           "factor is given, in/out when a size is given (they differ for fractional factors); out = in copies and "
           "out = 2·in takes dst >> 1 whatever the factor. Output size floor(in·factor). The gradient sums the "
           "cotangents of the outputs reading each input element."),
))

declare(LayerSpec(
    name="UpsamplingBilinear2d", family="vision", dims=2, kind="bilinear",
    cases=_upsample_cases("UpsamplingBilinear2d", nearest=False),
    reference=result_reference(_bilinear_reference),
    torch=TorchMapping("torch.nn.UpsamplingBilinear2d"),
    tolerance=Tolerance(reduction=_bilinear_overlap, magnitude=_bilinear_magnitude, c=1.0, exact="none"),
    invalid_cases=_upsample_invalid("UpsamplingBilinear2d"),
    regimes=_geometry_regimes(bilinear=True),
    notes=("align_corners=True: src = dst·(in - 1)/(out - 1) (0 when out = 1), i0 = floor(src), i1 = min(i0 + 1, "
           "in - 1), weights 1 - λ and λ per dim. A scale factor only sets the output size floor(in·factor). The "
           "backward scatters each cotangent to the four taps and sums. Finite values only (0·inf at a zero weight "
           "is NaN in torch, and whether a weight is exactly 0 depends on the rounding of src)."),
))
