"""Case strategies of the pooling declarations: valid by construction, every draw labelled. Their
corner regimes (what a case is, and the labelled draws that put a case there) are in
``strategies.pooling_regimes``.

Geometry is drawn per spatial dim (kernel, dilation, padding <= kernel // 2, stride — torch's
default ``None`` or explicit, up to kernel + 2), then a *ceil corner* that fixes the remainder
r = (in + 2p - e) mod s: ``fit`` (r = 0), ``overhang`` (ceil_mode adds a last window that runs
past the padded input and is clipped), ``drop`` (the extra ceil window would start in the right
padding or past it, so torch drops it), ``any``. The input length is derived from the output
length, so every case is valid by construction.

Values of max-type layers come in modes: ``distinct`` (no two equal values in a plane: a random
subset of a grid of representable values, or of the integers in the exact tier), ``negative``
(distinct, all negative: padding or a zero-initialised maximum must never win), ``ties`` (few
distinct values, so windows hold equal maxima) and ``special`` (distinct plus NaN and ±inf). The
last two force ``return_indices=True`` and are checked by rule, not by equality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.strategies.window import WindowDim
from reference import pooling as ref

BUDGET = 2048  # input elements
MAX_VALUE_MODES = ("distinct", "negative", "ties", "special")
TIE_MODES = ("ties", "special")
NON_FINITE = (np.nan, np.inf, -np.inf)
CEIL_CORNERS = ("fit", "overhang", "drop", "any")
# Max pooling: about one dim in eight gets a window whose taps all fall in the padding.
EMPTY_WINDOW_ODDS = (False,) * 7 + (True,)

# A max-pooling window whose dilated taps all fall in the padding (dilation > 1, small input) is
# valid: its output is -inf and no input element receives its gradient. torch mishandles it (an
# index past the window, a gradient written there — into another element or plane, or out of
# bounds, which can corrupt the heap and abort the process; the runner's worker isolation records
# that as a crash). Switch off to keep such cases out of a run.
ALLOW_EMPTY_WINDOWS = True


# ---------------------------------------------------------------------------------------------
# Value generation
# ---------------------------------------------------------------------------------------------


def _max_plane_cap(dtype: str) -> int:
    """Largest plane for which the exact tier can hold pairwise distinct integers."""
    return 2 * DTYPES[dtype].exact_integer_limit + 1


def _selection_values(d: S.Drawer, shape: Sequence[int], nd: int, dtype: str, tier: str,
                      modes: Sequence[str] = MAX_VALUE_MODES,
                      taps: Sequence[ref.Taps] | None = None) -> tuple[np.ndarray, str]:
    """Input values of a max-type layer and the value mode drawn (see the module docstring).

    ``ties``: few distinct values, and (given the windows' ``taps``) the first window of every
    plane with two taps inside the input holds its maximum twice. ``special``: at least one NaN
    or ±inf per case.
    """
    mode = d.choice(modes, "input.values")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "input.seed"))
    plane = int(np.prod(shape[-nd:]))
    planes = int(np.prod(shape[:-nd]))
    if mode == "ties":
        if tier == "exact":
            arr = rng.integers(-2, 3, size=tuple(shape)).astype(np.float64)
        else:
            arr = rng.standard_normal(3)[rng.integers(0, 3, size=tuple(shape))]
        if taps is not None:
            arr = _tie_first_window(arr.reshape(planes, plane), shape[-nd:], taps).reshape(shape)
    else:
        arr = S.distinct_values(rng, planes, plane, dtype, tier, negative=mode == "negative").reshape(shape)
    if mode == "special":
        pick = rng.random(tuple(shape)) < 0.15
        pick.flat[rng.integers(pick.size)] = True
        arr = np.where(pick, rng.choice(np.array([np.nan, np.inf, -np.inf]), size=tuple(shape)), arr)
    return DTYPES[dtype].round(arr), mode


def _tie_first_window(x: np.ndarray, spatial: Sequence[int], taps: Sequence[ref.Taps]) -> np.ndarray:
    """``x`` (planes, plane) with the first window (per plane) that has >= 2 taps inside the input
    holding its maximum at its first two such taps (planes without such a window are unchanged)."""
    flat, valid = ref.window_positions(spatial, taps)
    rows = flat.shape[0]
    flat = flat.reshape(rows, -1, int(np.prod(flat.shape[1 + len(taps):])))
    valid = valid.reshape(flat.shape)
    if flat.shape[-1] < 2:  # windows of one tap cannot tie
        return x
    multi = valid.sum(axis=-1) >= 2
    window = multi.argmax(axis=1)
    row = np.arange(x.shape[0]) % rows  # rows is 1 (shared windows) or one per plane
    keep = multi[row, window[row]]
    taps_flat, taps_ok = flat[row, window[row]], valid[row, window[row]]
    order = np.argsort(~taps_ok, axis=-1, kind="stable")[:, :2]  # the first two valid taps
    first, second = (np.take_along_axis(taps_flat, order[:, i:i + 1], axis=-1)[:, 0] for i in (0, 1))
    values = np.take_along_axis(x, taps_flat, axis=1)
    best = np.where(taps_ok, values, -np.inf).max(axis=-1)
    out = x.copy()
    planes = np.arange(x.shape[0])[keep]
    out[planes, first[keep]] = best[keep]
    out[planes, second[keep]] = best[keep]
    return out


def _lp_values(d: S.Drawer, shape: Sequence[int], dtype: str, tier: str, p: float, window: int,
               layout: Any) -> np.ndarray:
    """LPPool inputs whose powers stay inside the format, with sign modes valid for ``p``.

    Float tier: |x| log-uniform in [lo, hi] with x^p normal, and K·hi^p and p·hi^(p-1) well below
    the overflow threshold; signs all positive, all negative, or mixed — mixed only where the sum of powers
    cannot cancel (p = 1 is linear, even p has x^p >= 0, non-integer p turns negatives into NaN).
    Exact tier (integer p): integers with K·m^p <= 2^precision, so the sums of powers are exact.
    For p = ±inf: pairwise distinct magnitudes (no ties between |x| values).
    """
    fmt = DTYPES[dtype]
    rng_seed = d.integer(0, 2**32 - 1, "input.seed")
    rng = np.random.default_rng(rng_seed)
    gen_shape = tuple(1 if (layout.kind == "expanded" and i in layout.dims) else s for i, s in enumerate(shape))
    if np.isinf(p):
        mags = np.abs(S.distinct_values(rng, 1, int(np.prod(gen_shape)), dtype, tier, negative=True))
        signs = np.where(rng.random(mags.shape) < 0.5, -1.0, 1.0)
        arr = (mags * signs).reshape(gen_shape)
        return np.ascontiguousarray(np.broadcast_to(fmt.round(arr), tuple(shape)))
    odd_integer = float(p).is_integer() and int(p) % 2 == 1 and p != 1
    signs_allowed = ["positive", "negative", "mixed"]
    if odd_integer and tier == "float":
        signs_allowed = ["positive", "negative"]
    sign_mode = d.choice(signs_allowed, "input.signs")
    if tier == "exact":
        m = max(1, int(math.floor((fmt.exact_integer_limit / max(window, 1)) ** (1.0 / p))))
        arr = rng.integers(1 if sign_mode != "mixed" else -m, m + 1, size=gen_shape).astype(np.float64)
        if sign_mode == "negative":
            arr = -arr
    else:
        # log2 bounds, clipped to [-4, 4] before exponentiating (p < 1 would overflow otherwise)
        lo = 2.0 ** max(-4.0, math.log2(4 * fmt.min_normal) / p)
        hi = 2.0 ** min(4.0, math.log2(fmt.max_value / (8.0 * window)) / p)
        if p > 1:  # the backward's p·x^(p-1) is formed in the format too
            hi = min(hi, 2.0 ** min(4.0, math.log2(fmt.max_value / (8.0 * p)) / (p - 1)))
        arr = np.exp(rng.uniform(math.log(lo), math.log(max(hi, lo)), size=gen_shape))
        if sign_mode == "negative":
            arr = -arr
        elif sign_mode == "mixed":
            arr = arr * np.where(rng.random(gen_shape) < 0.5, -1.0, 1.0)
    return np.ascontiguousarray(np.broadcast_to(fmt.round(arr), tuple(shape)))


# ---------------------------------------------------------------------------------------------
# Geometry draws
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DimDraw(WindowDim):
    """One dim of a sliding pooling (``WindowDim``); ``single_output``: a window wholly in the
    padding, whose output length is fixed."""

    single_output: bool = False

    def min_output(self) -> int:
        base = self.input_length(1)
        return 1 if base >= 1 else 1 + -(-(1 - base) // self.stride)


def _draw_remainder(d: S.Drawer, label: str, corner: str, stride: int, effective: int, padding: int) -> int:
    """r = (in + 2p - e) mod s for the ceil corner (falls back to any r when infeasible)."""
    drop_hi = min(stride - 1, stride - effective + padding)
    if corner == "fit":
        return 0
    if corner == "drop" and drop_hi >= 1:
        return d.integer(1, drop_hi, f"{label}.remainder")
    over_lo = max(1, stride - effective + padding + 1)
    if corner == "overhang" and over_lo <= stride - 1:
        return d.integer(over_lo, stride - 1, f"{label}.remainder")
    return d.integer(0, stride - 1, f"{label}.remainder")


def _draw_dims(d: S.Drawer, nd: int, *, dilation: bool, padding: bool, explicit_stride: bool,
               max_kernel: int = 4) -> list[DimDraw]:
    """Per-dim geometry; the first choice repeats one geometry in every dim."""
    same = nd == 1 or not d.flag("geometry differs per dim")
    dims: list[DimDraw] = []
    for i in range(nd):
        if same and i > 0:
            dims.append(dims[0])
            continue
        label = f"dim[{i}]"
        if dilation and d.choice(EMPTY_WINDOW_ODDS, f"{label}.window in the padding only"):
            # k = 2, p = 1, d >= 2 on an input of d - 1: the taps -1 and d - 1 both miss the input
            stride = d.integer(1, 3, f"{label}.stride") if explicit_stride else 2
            dims.append(DimDraw(2, d.integer(2, 3, f"{label}.dilation"), 1, stride, 0, single_output=True))
            continue
        k = d.integer(1, max_kernel, f"{label}.kernel")
        corner = d.choice(CEIL_CORNERS, f"{label}.ceil corner")
        dil = d.integer(1, 3, f"{label}.dilation") if dilation else 1
        p = d.integer(0, k // 2, f"{label}.padding") if padding else 0
        e = dil * (k - 1) + 1
        if explicit_stride and corner == "drop":  # a dropped ceil window needs s > e - p
            s = d.integer(e - p + 1, e - p + 3, f"{label}.stride")
        else:
            s = d.integer(1, k + 2, f"{label}.stride") if explicit_stride else k
        r = _draw_remainder(d, label, corner, s, e, p)
        dims.append(DimDraw(k, dil, p, s, r))
    return dims


def _draw_outputs(d: S.Drawer, dims: Sequence[DimDraw], budget: int, hi: int = 8) -> list[int]:
    """Output lengths whose derived input lengths keep the plane within ``budget``."""
    outs: list[int] = []
    used = 1
    for i, dim in enumerate(dims):
        reserve = int(np.prod([dd.input_length(dd.min_output()) for dd in dims[i + 1:]] or [1]))
        room = budget // max(used * reserve, 1)
        lo = dim.min_output()
        cap = (room - dim.remainder - dim.effective + 2 * dim.padding) // dim.stride + 1
        o = lo if dim.single_output else d.integer(lo, max(lo, min(hi, cap)), f"dim[{i}].output")
        outs.append(o)
        used *= dim.input_length(o)
    return outs


def _without_empty_windows(dims: list[DimDraw], spatial: Sequence[int], ceil_mode: bool) -> list[DimDraw]:
    """Dilation 1 in any dim where a window would have no tap inside the input (input sizes kept)."""
    fixed = []
    for dim, size in zip(dims, spatial):
        out = ref.pool_output_size(size, dim.kernel, dim.stride, dim.padding, dim.dilation, ceil_mode)
        taps = ref.sliding_taps(size, out, dim.kernel, dim.stride, dim.padding, dim.dilation)
        if not taps.valid.any(axis=-1).all():
            dim = DimDraw(dim.kernel, 1, dim.padding, dim.stride, dim.remainder)
        fixed.append(dim)
    return fixed


def _batch_and_channels(d: S.Drawer) -> tuple[bool, int, int]:
    unbatched = d.flag("unbatched")
    n = 1 if unbatched else d.integer(1, 2, "batch")
    c = d.integer(1, 3, "channels")
    return unbatched, n, c


def _input_shape(unbatched: bool, n: int, c: int, spatial: Sequence[int]) -> tuple[int, ...]:
    return (c, *spatial) if unbatched else (n, c, *spatial)


def _sliding_params(d: S.Drawer, dims: Sequence[DimDraw], explicit_stride: bool, *, padding: bool = True,
                    dilation: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"kernel_size": S.as_param(tuple(x.kernel for x in dims), d, "kernel_size")}
    if explicit_stride:
        params["stride"] = S.as_param(tuple(x.stride for x in dims), d, "stride")
    elif d.flag("stride spelled as None"):
        params["stride"] = None
    if padding:
        params["padding"] = S.as_param(tuple(x.padding for x in dims), d, "padding")
    if dilation:
        params["dilation"] = S.as_param(tuple(x.dilation for x in dims), d, "dilation")
    return params


def _tier_for(d: S.Drawer, allowed: bool) -> str:
    return S.tier(d) if allowed else "float"


def _draw_sliding_geometry(d: S.Drawer, nd: int, n: int, c: int, *, dilation: bool, padding: bool,
                           ceil: bool = True) -> tuple[bool, bool, list[DimDraw], list[int]]:
    """Stride spelling, ceil_mode (drawn only where ``ceil``), per-dim geometry and the input's spatial sizes."""
    explicit = d.flag("explicit stride")
    ceil_mode = d.flag("ceil_mode") if ceil else False
    dims = _draw_dims(d, nd, dilation=dilation, padding=padding, explicit_stride=explicit)
    outs = _draw_outputs(d, dims, BUDGET // (n * c))
    spatial = [dim.input_length(o) for dim, o in zip(dims, outs)]
    return explicit, ceil_mode, dims, spatial


def _input_case(d: S.Drawer, op: str, dtype: str, params: dict[str, Any], x: np.ndarray, layout: Layout,
                tier: str, note: str = "") -> Case:
    """A case of one differentiable ``input``; draws the cotangent seed last."""
    return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d), note=note)


# ---------------------------------------------------------------------------------------------
# Case strategies
# ---------------------------------------------------------------------------------------------


def max_pool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        explicit, ceil_mode, dims, spatial = _draw_sliding_geometry(d, nd, n, c, dilation=True, padding=True)
        if not ALLOW_EMPTY_WINDOWS:
            dims = _without_empty_windows(dims, spatial, ceil_mode)
        tier = _tier_for(d, int(np.prod(spatial)) <= _max_plane_cap(dtype))
        shape = _input_shape(unbatched, n, c, spatial)
        taps = ref.pool_taps(spatial, [x.kernel for x in dims], [x.stride for x in dims],
                             [x.padding for x in dims], [x.dilation for x in dims], ceil_mode)
        x, mode = _selection_values(d, shape, nd, dtype, tier, taps=taps)
        params = _sliding_params(d, dims, explicit, dilation=True)
        params["ceil_mode"] = ceil_mode
        params["return_indices"] = True if mode in TIE_MODES else d.flag("return_indices")
        layout = S.layouts(d, len(shape), "layout.input")
        return _input_case(d, op, dtype, params, x, layout, tier, note=f"values={mode}")

    return S.case_strategy(build)


def avg_pool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        explicit, ceil_mode, dims, spatial = _draw_sliding_geometry(d, nd, n, c, dilation=False, padding=True)
        shape = _input_shape(unbatched, n, c, spatial)
        params = _sliding_params(d, dims, explicit)
        params["ceil_mode"] = ceil_mode
        params["count_include_pad"] = not d.flag("count_include_pad=False")
        window = int(np.prod([dim.kernel for dim in dims]))
        if nd > 1 and d.flag("divisor_override"):
            magnitude = d.integer(1, window + 2, "divisor_override.magnitude")
            params["divisor_override"] = -magnitude if d.flag("divisor_override negative") else magnitude
        tier = S.tier(d)
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", int_limit=S.exact_int_limit(dtype, window, factors=1),
                     layout=layout, specials=NON_FINITE, some_special=True)
        return _input_case(d, op, dtype, params, x, layout, tier)

    return S.case_strategy(build)


LP_NORMS = (2.0, 1.0, 3.0, 1.5, 4, 8.0, 0.5, 16.0, float("inf"), float("-inf"))


def lp_pool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        p = d.choice(LP_NORMS, "norm_type")
        explicit, ceil_mode, dims, spatial = _draw_sliding_geometry(d, nd, n, c, dilation=False, padding=False)
        shape = _input_shape(unbatched, n, c, spatial)
        params: dict[str, Any] = {"norm_type": p}
        params.update(_sliding_params(d, dims, explicit, padding=False))
        if nd == 1:  # LPPool1d takes an int kernel_size (it multiplies the result by it)
            params["kernel_size"] = dims[0].kernel
        params["ceil_mode"] = ceil_mode
        window = int(np.prod([dim.kernel for dim in dims]))
        exact_ok = float(p).is_integer() or (np.isinf(p) and int(np.prod(shape)) <= _max_plane_cap(dtype))
        tier = _tier_for(d, exact_ok)
        layout = S.layouts(d, len(shape), "layout.input", expanded=not np.isinf(p))
        x = _lp_values(d, shape, dtype, tier, float(p), window, layout)
        return _input_case(d, op, dtype, params, x, layout, tier)

    return S.case_strategy(build)


SAMPLE_KINDS = ("uniform", "extreme")


def fractional_samples(rng: np.random.Generator, shape: Sequence[int], dtype: str, kind: str = "uniform") -> np.ndarray:
    """FractionalMaxPool2d's ``_random_samples`` as ``torch.rand`` draws them in ``dtype`` (uniform
    on the dtype's grid k·2^-p of [0, 1)); ``extreme``: each sample 0 or the largest value below 1."""
    u = S.uniform_samples(rng, shape, dtype)
    if kind == "extreme":
        u = np.where(u < 0.5, 0.0, 1.0 - DTYPES[dtype].unit_roundoff)
    return u


FRACTIONAL_LIMITS = {2: (4, 8, 24), 3: (3, 4, 6)}  # per nd: largest kernel, output, input slack


def fractional_cases(op: str, nd: int, drawn: bool) -> Callable[[str], st.SearchStrategy[Case]]:
    """FractionalMaxPool2d/3d cases: with ``_random_samples`` as an input (default), or without
    (``drawn``: torch draws them and reports them as a random choice)."""
    max_kernel, max_output, max_slack = FRACTIONAL_LIMITS[nd]

    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        kernel = S.per_dim(d, nd, 1, max_kernel, "kernel_size")
        outs = [d.integer(1, max_output, f"output[{i}]") for i in range(nd)]
        minimal = [o + k - 1 for o, k in zip(outs, kernel)]
        room = BUDGET // (n * c)
        sizes: list[int] = []
        for i in range(nd):  # each dim's slack within what the budget leaves
            rest = int(np.prod(minimal[i + 1:])) * int(np.prod(sizes))
            sizes.append(minimal[i] + d.integer(0, max(0, min(max_slack, room // rest - minimal[i])),
                                                f"input slack[{i}]"))
        tier = _tier_for(d, int(np.prod(sizes)) <= _max_plane_cap(dtype))
        shape = _input_shape(unbatched, n, c, sizes)
        taps = samples = None
        if not drawn:
            kind = d.choice(SAMPLE_KINDS, "_random_samples.kind")
            rng = np.random.default_rng(d.integer(0, 2**32 - 1, "_random_samples.seed"))
            samples = fractional_samples(rng, (1 if unbatched else n, c, nd), dtype, kind)
            taps = ref.fractional_window_taps(sizes, kernel, outs, samples, DTYPES[dtype].round)
        x, mode = _selection_values(d, shape, nd, dtype, tier, taps=taps)
        params: dict[str, Any] = {"kernel_size": S.as_param(kernel, d, "kernel_size")}
        ratio_ok = all(o + 0.5 < s for o, s in zip(outs, sizes))
        if ratio_ok and d.flag("output_ratio"):
            ratio = tuple((o + 0.5) / s for o, s in zip(outs, sizes))
            params["output_ratio"] = ratio[0] if len(set(ratio)) == 1 and not d.flag("ratio as tuple") else ratio
        else:
            params["output_size"] = S.as_param(tuple(outs), d, "output_size")
        params["return_indices"] = True if mode in TIE_MODES else d.flag("return_indices")
        layout = S.layouts(d, len(shape), "layout.input")
        case = _input_case(d, op, dtype, params, x, layout, tier, note=f"values={mode}")
        return case if samples is None else case.with_inputs(_random_samples=samples)

    return S.case_strategy(build)


# Per dim: in = out·window; any sizes; out > in; None (keep the size, 2d and 3d); in % out != 0 with
# out < in (windows of unequal length that overlap).
ADAPTIVE_MODES = ("divides", "any", "larger", "none", "uneven")
# Per nd, the largest: output and window (divides), output and window (uneven), input and extra
# (larger), input and output (any).
ADAPTIVE_LIMITS = {1: (6, 4, 6, 3, 6, 6, 16, 10), 2: (6, 4, 6, 3, 6, 6, 16, 10), 3: (3, 3, 4, 2, 4, 3, 8, 6)}


def adaptive_cases(op: str, nd: int, selection: bool) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        modes = [m for m in ADAPTIVE_MODES if nd > 1 or m != "none"]
        div_out, div_win, un_out, un_win, lg_in, lg_extra, any_in, any_out = ADAPTIVE_LIMITS[nd]
        sizes, outs = [], []
        for i in range(nd):
            mode = d.choice(modes, f"dim[{i}].output mode")
            if mode == "divides":
                o = d.integer(1, div_out, f"dim[{i}].output")
                sizes.append(o * d.integer(1, div_win, f"dim[{i}].window"))
                outs.append(o)
            elif mode == "uneven":
                o = d.integer(2, un_out, f"dim[{i}].output")
                sizes.append(o * d.integer(1, un_win, f"dim[{i}].window") + d.integer(1, o - 1, f"dim[{i}].remainder"))
                outs.append(o)
            elif mode == "larger":
                size = d.integer(1, lg_in, f"dim[{i}].input")
                sizes.append(size)
                outs.append(size + d.integer(1, lg_extra, f"dim[{i}].extra"))
            else:
                sizes.append(d.integer(1, any_in, f"dim[{i}].input"))
                outs.append(None if mode == "none" else d.integer(1, any_out, f"dim[{i}].output"))
        shape = _input_shape(unbatched, n, c, sizes)
        if nd == 1:
            output_size: Any = outs[0] if not d.flag("output_size as tuple") else (outs[0],)
        elif len(set(outs)) == 1 and outs[0] is not None and not d.flag("output_size as tuple"):
            output_size = outs[0]
        else:
            output_size = tuple(outs)
        params: dict[str, Any] = {"output_size": output_size}
        layout = S.layouts(d, len(shape), "layout.input", expanded=not selection)
        if selection:
            tier = _tier_for(d, int(np.prod(sizes)) <= _max_plane_cap(dtype))
            taps = [ref.adaptive_taps(s, o if o is not None else s) for s, o in zip(sizes, outs)]
            x, mode = _selection_values(d, shape, nd, dtype, tier, taps=taps)
            params["return_indices"] = True if mode in TIE_MODES else d.flag("return_indices")
            note = f"values={mode}"
        else:
            tier = S.tier(d)
            window = int(np.prod([-(-s // max(o or s, 1)) + 1 for s, o in zip(sizes, outs)]))
            x = S.values(d, shape, dtype, tier, "input", int_limit=S.exact_int_limit(dtype, window, 1),
                         layout=layout, specials=NON_FINITE, some_special=True)
            note = ""
        return _input_case(d, op, dtype, params, x, layout, tier, note=note)

    return S.case_strategy(build)


# Indices from a max pooling (two draws in three), or random with duplicates (a regime of its own).
UNPOOL_INDEX_MODES = ("maxpool", "maxpool", "duplicates")


def unpool_cases(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        unbatched, n, c = _batch_and_channels(d)
        explicit, _, dims, original = _draw_sliding_geometry(d, nd, n, c, dilation=False, padding=True, ceil=False)
        kernel = tuple(dim.kernel for dim in dims)
        stride = tuple(dim.stride for dim in dims)
        padding = tuple(dim.padding for dim in dims)
        tier = _tier_for(d, int(np.prod(original)) <= _max_plane_cap(dtype))
        # The indices come from a max pooling of an input of the original size.
        source, _ = _selection_values(d, (n, c, *original), nd, dtype, tier, modes=("distinct", "ties"))
        values, indices = ref.max_pool(source, kernel, stride, padding, (1,) * nd, False)
        default = ref.unpool_output_size(values.shape[2:], kernel, stride, padding, None)
        index_mode = d.choice(UNPOOL_INDEX_MODES, "indices")
        size_mode = d.choice(("default", "original", "largest", "with N and C"), "output_size")
        target = list(original)
        if size_mode == "largest":
            target = [dflt + s - 1 for dflt, s in zip(default, stride)]
        elif size_mode == "default":
            target = list(default)
        plane = int(np.prod(target))
        if index_mode == "duplicates" and plane > 0:
            rng = np.random.default_rng(d.integer(0, 2**32 - 1, "indices.seed"))
            span = d.integer(1, plane, "indices.span")
            indices = rng.integers(0, span, size=indices.shape)
            rows = indices.reshape(n * c, -1)
            if rows.shape[1] > 1:  # at least one duplicate per plane
                rows[:, 1] = rows[:, 0]
            values = DTYPES[dtype].round(rng.standard_normal(values.shape) if tier == "float"
                                         else rng.integers(-4, 5, size=values.shape).astype(np.float64))
        elif int(indices.max(initial=-1)) >= plane:
            target, size_mode = list(original), "original"
        forward_kwargs: dict[str, Any] = {}
        if size_mode == "with N and C" and not unbatched:
            forward_kwargs["output_size"] = [n, c, *target]
        elif size_mode != "default":
            forward_kwargs["output_size"] = list(target)
        if unbatched:
            values, indices = values[0], indices[0]
        params = _sliding_params(d, dims, explicit)
        layout = S.layouts(d, values.ndim, "layout.input")
        return Case(op=op, dtype=dtype, params=params,
                    inputs={"input": values, "indices": indices.astype(np.int64)},
                    differentiable=("input",), layouts={"input": layout}, forward_kwargs=forward_kwargs,
                    tier=tier, cotangent_seed=S.seed(d), note=f"indices={index_mode}")

    return S.case_strategy(build)


# ---------------------------------------------------------------------------------------------
# Invalid cases
# ---------------------------------------------------------------------------------------------


SLIDING_VIOLATIONS = ("padding > kernel // 2", "zero stride", "zero kernel", "negative padding",
                      "empty output", "zero dilation", "zero divisor_override")


def sliding_invalid(op: str, nd: int, kind: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """Parameter combinations torch rejects: the reference raises ValueError, torch must raise."""
    violations = [v for v in SLIDING_VIOLATIONS
                  if (v != "zero dilation" or kind == "max")
                  and (v != "zero divisor_override" or (kind == "avg" and nd > 1))
                  and (v not in ("padding > kernel // 2", "negative padding") or kind != "lp")]

    def build(d: S.Drawer, dtype: str) -> Case:
        violation = d.choice(violations, "violation")
        kernel = [d.integer(1, 4, f"kernel[{i}]") for i in range(nd)]
        stride = [d.integer(1, 3, f"stride[{i}]") for i in range(nd)]
        padding = [0] * nd
        dilation = [1] * nd
        spatial = [d.integer(k + 1, k + 6, f"input[{i}]") for i, k in enumerate(kernel)]
        dim = d.integer(0, nd - 1, "violating dim")
        params: dict[str, Any] = {}
        if violation == "padding > kernel // 2":
            padding[dim] = kernel[dim] // 2 + d.integer(1, 2, "excess padding")
        elif violation == "zero stride":
            stride[dim] = 0
        elif violation == "zero kernel":
            kernel[dim] = 0
        elif violation == "negative padding":
            padding[dim] = -1
        elif violation == "zero dilation":
            dilation[dim] = 0
        elif violation == "empty output":
            kernel[dim] = max(kernel[dim], 2)
            spatial[dim] = d.integer(1, kernel[dim] - 1, "short input")
        elif violation == "zero divisor_override":
            params["divisor_override"] = 0
        if kind == "lp":
            params = {"norm_type": d.choice((2.0, 1.0, 3.0), "norm_type"), **params}
        params.update({"kernel_size": kernel[0] if kind == "lp" and nd == 1 else tuple(kernel),
                       "stride": tuple(stride)})
        if kind != "lp":
            params["padding"] = tuple(padding)
        if kind == "max":
            params["dilation"] = tuple(dilation)
        x = DTYPES[dtype].round(np.random.default_rng(0).standard_normal((1, 2, *spatial)))
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    invalid=True, note=violation)

    return S.case_strategy(build)


def unpool_invalid(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        violation = d.choice(("output_size too large", "output_size too small", "index past the end",
                              "negative index"), "violation")
        k = d.integer(2, 3, "kernel")
        s = d.integer(1, 3, "stride")
        pooled = [d.integer(1, 4, f"pooled[{i}]") for i in range(nd)]
        default = [(p - 1) * s + k for p in pooled]
        plane = int(np.prod(default))
        rng = np.random.default_rng(d.integer(0, 2**16, "seed"))
        indices = rng.integers(0, plane, size=(1, 2, *pooled))
        forward_kwargs: dict[str, Any] = {}
        dim = d.integer(0, nd - 1, "violating dim")
        if violation == "output_size too large":
            size = list(default)
            size[dim] += s
            forward_kwargs["output_size"] = size
        elif violation == "output_size too small":
            size = list(default)
            size[dim] -= s
            forward_kwargs["output_size"] = size
        elif violation == "index past the end":
            indices.flat[d.integer(0, indices.size - 1, "position")] = plane
        else:
            indices.flat[d.integer(0, indices.size - 1, "position")] = -1
        x = DTYPES[dtype].round(rng.standard_normal(indices.shape))
        return Case(op=op, dtype=dtype, params={"kernel_size": k, "stride": s},
                    inputs={"input": x, "indices": indices.astype(np.int64)}, differentiable=("input",),
                    forward_kwargs=forward_kwargs, invalid=True, note=violation)

    return S.case_strategy(build)


def fractional_invalid(op: str, nd: int, drawn: bool) -> Callable[[str], st.SearchStrategy[Case]]:
    """Parameters torch rejects (with ``_random_samples`` as an input unless ``drawn``)."""
    def build(d: S.Drawer, dtype: str) -> Case:
        violation = d.choice(("pool too large", "output_ratio >= 1", "output_ratio <= 0",
                              "both output_size and output_ratio", "neither output_size nor output_ratio"),
                             "violation")
        k = d.integer(1, 3, "kernel")
        size = d.integer(k + 1, k + 6, "input")
        out = d.integer(1, size - k + 1, "output")
        params: dict[str, Any] = {"kernel_size": k}
        if violation == "pool too large":
            params["output_size"] = size - k + 2
        elif violation == "output_ratio >= 1":
            params["output_ratio"] = d.choice((1.0, 1.5), "ratio")
        elif violation == "output_ratio <= 0":
            params["output_ratio"] = d.choice((0.0, -0.5), "ratio")
        elif violation == "both output_size and output_ratio":
            params.update(output_size=out, output_ratio=0.5)
        rng = np.random.default_rng(0)
        inputs = {"input": DTYPES[dtype].round(rng.standard_normal((1, 2) + (size,) * nd))}
        if not drawn:
            inputs["_random_samples"] = fractional_samples(rng, (1, 2, nd), dtype)
        return Case(op=op, dtype=dtype, params=params, inputs=inputs,
                    differentiable=("input",), invalid=True, note=violation)

    return S.case_strategy(build)


def adaptive_invalid(op: str, nd: int) -> Callable[[str], st.SearchStrategy[Case]]:
    def build(d: S.Drawer, dtype: str) -> Case:
        sizes = [d.integer(1, 6, f"input[{i}]") for i in range(nd)]
        outs = [d.integer(1, 4, f"output[{i}]") for i in range(nd)]
        outs[d.integer(0, nd - 1, "violating dim")] = -d.integer(1, 3, "negative output")
        x = DTYPES[dtype].round(np.random.default_rng(0).standard_normal((1, 2, *sizes)))
        return Case(op=op, dtype=dtype, params={"output_size": tuple(outs)}, inputs={"input": x},
                    differentiable=("input",), invalid=True, note="negative output_size")

    return S.case_strategy(build)
