"""Case strategies of the convolutions (Conv1d/2d/3d, ConvTranspose1d/2d/3d) and their corner
regimes.

- channels first: groups and channels per group (small counts, or 16/32/64 channels with groups
  1, 2, 4, 8 or depthwise), output channels as a per-group multiplier (or 16/32/64 in total);
  then batched/unbatched and the batch size, kernel and dilation (ints or per-dim tuples), stride
  (possibly larger than the kernel) and the padding: an int/tuple, ``'valid'`` or ``'same'``
  (stride 1; even kernels and dilations give torch's right-heavy split), with every padding mode.
- Convolution: per dim, the output length and the stride remainder give the padded length
  E = (O-1)·s + d·(k-1) + 1 + r (``strategies.window``); the padding is drawn up to the largest
  value torch accepts for the mode (zeros/replicate: the input keeps >= 1 element, reflect: p < L,
  circular: p <= L), and the input length is L = E - 2p. O = 1, r = 0 gives a kernel as large as
  the padded input.
- Transposed convolution: the input length, the output padding (< stride, or < dilation when the
  dilation is larger) and a padding up to the largest leaving an output of >= 1 element; sometimes
  the forward ``output_size`` argument (spatial sizes, or with the batch/channel sizes in front),
  which selects an output padding < stride (torch.nn's rule) and overrides the constructor's.
- The product of padded extents is kept within the element budget left by the batch and channel
  counts; kernel and dilation are reduced (dilation first) when they alone would exceed it.
- Layouts are drawn for the input, the weight and the bias.
- Exact tier: integers bounded by ``exact_int_limit`` for the longest reduction of the case, so
  every sum is exact wherever absref <= 2^p; float tier: normal/uniform/mixed values (scaled by
  1/4 in float16 so that products of mixed magnitudes stay in range).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.numerics.window import conv_reduction_lengths, per_dim_param
from conformance.spec import Regime, spec_of
from conformance.strategies.window import window_extent
from reference import conv as ref

IN_BUDGET = 4096  # elements of the input (and of the padded input)
OUT_BUDGET = 8192  # elements of the output (and of the uncropped transposed output)
WEIGHT_BUDGET = 8192
KERNEL_MAX = {1: 7, 2: 5, 3: 3}
DILATION_MAX = {1: 4, 2: 3, 3: 2}
STRIDE_MAX = {1: 4, 2: 3, 3: 3}
LENGTH_MAX = {1: 32, 2: 16, 3: 8}  # per-dim count of output positions (conv) / input length (transposed)
EXACT_INT_MAX = 1 << 12
WIDE_CHANNELS = (16, 32, 64)


@dataclass
class Draft:
    """The structure of one case, drawn before any value."""

    nd: int
    transposed: bool
    batched: bool = True
    n: int = 1
    groups: int = 1
    in_per_group: int = 1
    out_per_group: int = 1
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    padding_kind: str = "numeric"  # numeric | valid | same
    padding_mode: str = "zeros"
    pads: tuple[int, ...] = ()  # numeric per-dim padding
    output_padding: tuple[int, ...] = ()  # constructor argument (transposed)
    spatial: tuple[int, ...] = ()  # input lengths
    out: tuple[int, ...] = ()  # output lengths
    bias: bool = True
    output_size: list[int] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return self.groups * self.in_per_group

    @property
    def out_channels(self) -> int:
        return self.groups * self.out_per_group

    @property
    def span(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def input_shape(self) -> tuple[int, ...]:
        lead = (self.n,) if self.batched else ()
        return lead + (self.in_channels,) + self.spatial

    def weight_shape(self) -> tuple[int, ...]:
        if self.transposed:
            return (self.in_channels, self.out_per_group) + self.kernel
        return (self.out_channels, self.in_per_group) + self.kernel


# -- drawing the structure -----------------------------------------------------------------------

def _draw_channels(d: S.Drawer, draft: Draft) -> None:
    if d.choice(("small", "small", "small", "wide"), "channel regime") == "wide":
        cin = d.choice(WIDE_CHANNELS, "in_channels")
        groups = d.choice(sorted({1, 2, 4, 8, cin}), "groups")
        draft.groups, draft.in_per_group = groups, cin // groups
    else:
        draft.groups = d.integer(1, 4, "groups")
        draft.in_per_group = d.integer(1, 4, "in_channels per group")
    draft.batched = not d.flag("unbatched")
    n_cap = max(1, min(3, 64 // draft.in_channels))
    draft.n = d.integer(1, n_cap, "batch") if draft.batched else 1


def _draw_out_channels(d: S.Drawer, draft: Draft) -> None:
    cap = max(1, WEIGHT_BUDGET // (draft.groups * draft.in_per_group * math.prod(draft.kernel)))
    if d.choice(("small", "small", "small", "wide"), "out_channels regime") == "wide":
        options = [c // draft.groups for c in WIDE_CHANNELS if c % draft.groups == 0 and c // draft.groups <= cap]
        if options:
            draft.out_per_group = d.choice(options, "out_channels per group")
            return
    draft.out_per_group = d.integer(1, min(4, cap), "out_channels per group")


def _same_min_length(total: int, mode: str) -> int:
    """Smallest input length torch accepts for 'same' padding of ``total`` (right = total - total//2)."""
    right = total - total // 2
    if mode == "reflect":
        return right + 1
    if mode == "circular":
        return max(1, right)
    return 1


def _min_extent(draft: Draft, i: int) -> int:
    """Smallest padded extent (conv) / uncropped output (transposed) along dim i."""
    span = draft.dilation[i] * (draft.kernel[i] - 1) + 1
    if draft.padding_kind == "same":
        total = span - 1
        return total + _same_min_length(total, draft.padding_mode)
    return span


def _fit_kernel(draft: Draft, budget: int) -> None:
    """Shrink dilation, then kernel, of the dim with the largest extent until the smallest extents
    fit the spatial budget (a deterministic repair: keeps the strategy valid by construction)."""
    while math.prod(_min_extent(draft, i) for i in range(draft.nd)) > budget:
        i = max(range(draft.nd), key=lambda j: _min_extent(draft, j))
        k, dil = list(draft.kernel), list(draft.dilation)
        if dil[i] > 1:
            dil[i] -= 1
        else:
            k[i] -= 1
        draft.kernel, draft.dilation = tuple(k), tuple(dil)


def _spatial_budget(draft: Draft) -> int:
    return max(1, min(IN_BUDGET // (draft.n * draft.in_channels), OUT_BUDGET // (draft.n * draft.out_channels)))


def _draw_extents(d: S.Drawer, draft: Draft, draw_dim: Callable[[S.Drawer, int, int], int]) -> None:
    """Draw dims in order; each gets the largest extent the budget leaves after reserving the
    smallest extents of the dims still to draw. ``draw_dim(d, i, max_extent)`` returns the extent."""
    remaining = _spatial_budget(draft)
    for i in range(draft.nd):
        reserve = math.prod(_min_extent(draft, j) for j in range(i + 1, draft.nd))
        extent = draw_dim(d, i, remaining // reserve)
        remaining //= extent


def _max_conv_pad(extent: int, mode: str) -> int:
    """Largest symmetric padding p torch accepts for a padded extent E (input L = E - 2p >= 1)."""
    if mode == "reflect":  # p < L
        return (extent - 1) // 3
    if mode == "circular":  # p <= L
        return extent // 3
    return (extent - 1) // 2


def _draw_conv_geometry(d: S.Drawer, draft: Draft) -> None:
    nd = draft.nd
    draft.padding_kind = d.choice(("numeric", "numeric", "numeric", "valid", "same"), "padding kind")
    draft.padding_mode = d.choice(ref.PADDING_MODES, "padding_mode")
    draft.kernel = S.per_dim(d, nd, 1, KERNEL_MAX[nd], "kernel_size")
    draft.dilation = S.per_dim(d, nd, 1, DILATION_MAX[nd], "dilation")
    if draft.padding_kind == "same":
        draft.stride = (1,) * nd
    else:
        draft.stride = S.per_dim(d, nd, 1, STRIDE_MAX[nd], "stride")
    _draw_out_channels(d, draft)
    _fit_kernel(draft, _spatial_budget(draft))
    at_limit = draft.padding_kind == "numeric" and d.flag("padding at torch's limit")
    spatial, out, pads = [], [], []

    def draw_dim(d: S.Drawer, i: int, max_extent: int) -> int:
        span, s = draft.span[i], draft.stride[i]
        if draft.padding_kind == "same":
            total = span - 1
            lo = _same_min_length(total, draft.padding_mode)
            length = d.integer(lo, min(max(lo, LENGTH_MAX[nd]), max_extent - total), f"input_size[{i}]")
            spatial.append(length)
            out.append(length)
            return length + total
        o = d.integer(1, min(LENGTH_MAX[nd], (max_extent - span) // s + 1), f"output_size[{i}]")
        r = d.integer(0, min(s - 1, max_extent - span - (o - 1) * s), f"stride remainder[{i}]")
        extent = window_extent(o, s, span, r)
        p = 0
        if draft.padding_kind == "numeric":
            p_max = _max_conv_pad(extent, draft.padding_mode)
            p = p_max if at_limit else d.integer(0, p_max, f"padding[{i}]")
        pads.append(p)
        spatial.append(extent - 2 * p)
        out.append(o)
        return extent

    _draw_extents(d, draft, draw_dim)
    draft.spatial, draft.out, draft.pads = tuple(spatial), tuple(out), tuple(pads)
    if draft.padding_kind == "numeric":
        padding: Any = S.as_param(draft.pads, d, "padding")
    else:
        padding = draft.padding_kind
    draft.params = {
        "in_channels": draft.in_channels, "out_channels": draft.out_channels,
        "kernel_size": S.as_param(draft.kernel, d, "kernel_size"),
        "stride": S.as_param(draft.stride, d, "stride"), "padding": padding,
        "dilation": S.as_param(draft.dilation, d, "dilation"), "groups": draft.groups,
        "bias": draft.bias, "padding_mode": draft.padding_mode,
    }


def _draw_transposed_geometry(d: S.Drawer, draft: Draft) -> None:
    nd = draft.nd
    draft.kernel = S.per_dim(d, nd, 1, KERNEL_MAX[nd], "kernel_size")
    draft.dilation = S.per_dim(d, nd, 1, DILATION_MAX[nd], "dilation")
    draft.stride = S.per_dim(d, nd, 1, STRIDE_MAX[nd], "stride")
    _draw_out_channels(d, draft)
    _fit_kernel(draft, _spatial_budget(draft))
    use_output_size = d.flag("forward output_size")
    at_limit = d.flag("padding at torch's limit")
    spatial, out, pads, effective_op = [], [], [], []

    def draw_dim(d: S.Drawer, i: int, max_extent: int) -> int:
        span, s, dil = draft.span[i], draft.stride[i], draft.dilation[i]
        length = d.integer(1, min(LENGTH_MAX[nd], (max_extent - span) // s + 1), f"input_size[{i}]")
        base = (length - 1) * s + span
        op_cap = (s if use_output_size else max(s, dil)) - 1
        op = d.integer(0, min(op_cap, max_extent - base), f"output_padding[{i}]")
        extent = base + op
        p_max = (extent - 1) // 2
        p = p_max if at_limit else d.integer(0, p_max, f"padding[{i}]")
        spatial.append(length)
        effective_op.append(op)
        pads.append(p)
        out.append(extent - 2 * p)
        return extent

    _draw_extents(d, draft, draw_dim)
    draft.spatial, draft.out, draft.pads = tuple(spatial), tuple(out), tuple(pads)
    if use_output_size:
        # The constructor's output_padding is ignored when output_size is given: draw any valid one.
        draft.output_padding = tuple(
            d.integer(0, max(s, dil) - 1, f"ctor output_padding[{i}]")
            for i, (s, dil) in enumerate(zip(draft.stride, draft.dilation)))
        size = list(draft.out)
        if d.flag("output_size with leading dims"):
            size = ([draft.n] if draft.batched else []) + [draft.out_channels] + size
        draft.output_size = size
    else:
        draft.output_padding = tuple(effective_op)
    draft.params = {
        "in_channels": draft.in_channels, "out_channels": draft.out_channels,
        "kernel_size": S.as_param(draft.kernel, d, "kernel_size"),
        "stride": S.as_param(draft.stride, d, "stride"),
        "padding": S.as_param(draft.pads, d, "padding"),
        "output_padding": S.as_param(draft.output_padding, d, "output_padding"),
        "groups": draft.groups, "bias": draft.bias,
        "dilation": S.as_param(draft.dilation, d, "dilation"),
    }


def _draw_structure(d: S.Drawer, nd: int, transposed: bool) -> Draft:
    draft = Draft(nd=nd, transposed=transposed)
    _draw_channels(d, draft)
    draft.bias = not d.flag("bias=False")
    if transposed:
        _draw_transposed_geometry(d, draft)
    else:
        _draw_conv_geometry(d, draft)
    return draft


# -- cases --------------------------------------------------------------------------------------------

def _draw_arrays(d: S.Drawer, draft: Draft, op: str,
                 dtype: str) -> tuple[dict[str, np.ndarray], dict[str, Layout], str]:
    tier = S.tier(d)
    shapes = {"input": draft.input_shape(), "weight": draft.weight_shape()}
    if draft.bias:
        shapes["bias"] = (draft.out_channels,)
    layouts = {name: S.layouts(d, len(shape), f"layout.{name}") for name, shape in shapes.items()}
    int_limit = 3
    if tier == "exact":
        probe = {name: np.zeros(shape) for name, shape in shapes.items()}
        forward_kwargs = {"output_size": draft.output_size} if draft.output_size is not None else {}
        terms = max(conv_reduction_lengths(draft.transposed, draft.params, probe, forward_kwargs).values())
        int_limit = min(EXACT_INT_MAX, S.exact_int_limit(dtype, terms))
    scale = 0.25 if dtype == "float16" else 1.0
    arrays = {name: S.values(d, shape, dtype, tier, name, int_limit=int_limit, scale=scale, layout=layouts[name])
              for name, shape in shapes.items()}
    return arrays, layouts, tier


def _draft_cases(nd: int, transposed: bool,
                 finish: Callable[[S.Drawer, Draft, str], Case]) -> Callable[[str], st.SearchStrategy[Case]]:
    """The per-dtype case strategy: draws a valid draft, then ``finish(drawer, draft, dtype)`` builds the case."""
    def cases(dtype: str) -> st.SearchStrategy[Case]:
        @st.composite
        def build(draw) -> Case:
            d = S.Drawer(draw)
            return finish(d, _draw_structure(d, nd, transposed), dtype)

        return build()

    return cases


def conv_cases(op: str, nd: int, transposed: bool) -> Callable[[str], st.SearchStrategy[Case]]:
    def finish(d: S.Drawer, draft: Draft, dtype: str) -> Case:
        arrays, layouts, tier = _draw_arrays(d, draft, op, dtype)
        forward_kwargs = {"output_size": draft.output_size} if draft.output_size is not None else {}
        return Case(op=op, dtype=dtype, params=draft.params, inputs=arrays, differentiable=tuple(arrays),
                    layouts=layouts, forward_kwargs=forward_kwargs, tier=tier, cotangent_seed=S.seed(d))

    return _draft_cases(nd, transposed, finish)


# -- invalid cases ------------------------------------------------------------------------------------

CONV_INVALID = ("negative padding", "zero stride", "zero dilation", "groups do not divide in_channels",
                "groups do not divide out_channels", "same with stride > 1", "reflect padding >= input",
                "circular padding > input", "kernel larger than padded input", "zero kernel")
TRANSPOSED_INVALID = ("negative padding", "zero stride", "zero dilation", "groups do not divide in_channels",
                      "groups do not divide out_channels", "output_padding too large", "output_size out of range",
                      "non-zeros padding_mode", "output too small", "negative output_padding")


GROUP_VIOLATIONS = ("groups do not divide in_channels", "groups do not divide out_channels")
PAD_TOO_LARGE = {"reflect padding >= input": ("reflect", 0), "circular padding > input": ("circular", 1)}


def _bump(values: tuple[int, ...], i: int, new: int) -> tuple[int, ...]:
    return values[:i] + (new,) + values[i + 1:]


def _break_groups(params: dict[str, Any], draft: Draft, kind: str) -> None:
    """One more group than the draft's, so that it no longer divides in_channels or out_channels (``kind``)."""
    params["groups"] = draft.groups + 1
    if kind == "groups do not divide in_channels":
        params["in_channels"] = draft.groups + 2 if draft.groups > 1 else 3
        params["out_channels"] = params["groups"] * draft.out_per_group
    else:
        params["in_channels"] = params["groups"] * draft.in_per_group
        params["out_channels"] = params["groups"] * draft.out_per_group + 1


def _invalid_conv(d: S.Drawer, draft: Draft, kind: str) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """Params and input shapes of a convolution torch rejects, derived from a valid draft."""
    params = dict(draft.params)
    shapes = {"input": draft.input_shape(), "weight": draft.weight_shape()}
    i = d.integer(0, draft.nd - 1, "invalid dim")
    pads = draft.pads if draft.padding_kind == "numeric" else (0,) * draft.nd
    if kind == "negative padding":
        params.update(padding=_bump(pads, i, -d.integer(1, 3, "negative pad")), padding_mode="zeros")
    elif kind == "zero stride":
        params.update(stride=_bump(draft.stride, i, 0), padding=pads)
    elif kind == "zero dilation":
        params["dilation"] = _bump(draft.dilation, i, 0)
    elif kind in GROUP_VIOLATIONS:
        _break_groups(params, draft, kind)
    elif kind == "same with stride > 1":
        params.update(padding="same", stride=_bump((1,) * draft.nd, i, d.integer(2, 3, "stride")))
    elif kind in PAD_TOO_LARGE:
        mode, extra = PAD_TOO_LARGE[kind]  # the least padding torch rejects: L (reflect), L + 1 (circular)
        params.update(padding=_bump(pads, i, draft.spatial[i] + extra + d.integer(0, 2, "excess")),
                      padding_mode=mode)
    elif kind == "kernel larger than padded input":
        k = draft.spatial[i] + 2 * pads[i] + d.integer(1, 2, "excess")
        params.update(kernel_size=_bump(draft.kernel, i, k), padding=pads, dilation=1)
        shapes["weight"] = _bump(shapes["weight"], 2 + i, k)
    elif kind == "zero kernel":
        params["kernel_size"] = _bump(draft.kernel, i, 0)
        shapes["weight"] = _bump(shapes["weight"], 2 + i, 0)
    return params, shapes


def _invalid_transposed(d: S.Drawer, draft: Draft, kind: str) -> tuple[dict[str, Any], dict[str, Any], dict]:
    params = dict(draft.params)
    shapes = {"input": draft.input_shape(), "weight": draft.weight_shape()}
    forward_kwargs: dict[str, Any] = {}
    i = d.integer(0, draft.nd - 1, "invalid dim")
    s, dil = draft.stride[i], draft.dilation[i]
    if kind == "negative padding":
        params["padding"] = _bump(draft.pads, i, -d.integer(1, 3, "negative pad"))
    elif kind == "zero stride":
        params.update(stride=_bump(draft.stride, i, 0), output_padding=0)
    elif kind == "zero dilation":
        params.update(dilation=_bump(draft.dilation, i, 0), output_padding=0)
    elif kind in GROUP_VIOLATIONS:
        _break_groups(params, draft, kind)
    elif kind == "output_padding too large":
        params["output_padding"] = _bump(draft.output_padding, i, max(s, dil) + d.integer(0, 1, "excess"))
    elif kind == "output_size out of range":
        low = ref.transposed_min_size(draft.spatial, draft.kernel, draft.stride, draft.pads, draft.dilation)
        size = list(low)
        size[i] = low[i] - 1 if (d.flag("below the range") and low[i] > 1) else low[i] + s
        forward_kwargs["output_size"] = size
    elif kind == "non-zeros padding_mode":
        params["padding_mode"] = d.choice(("reflect", "replicate", "circular"), "padding_mode")
    elif kind == "output too small":
        low = ref.transposed_min_size(draft.spatial, draft.kernel, draft.stride, (0,) * draft.nd, draft.dilation)
        params.update(padding=_bump(draft.pads, i, (low[i] + 1) // 2 + d.integer(0, 2, "excess")),
                      output_padding=0)
    elif kind == "negative output_padding":
        params["output_padding"] = _bump(draft.output_padding, i, -1)
    return params, shapes, forward_kwargs


def conv_invalid(op: str, nd: int, transposed: bool) -> Callable[[str], st.SearchStrategy[Case]]:
    def finish(d: S.Drawer, draft: Draft, dtype: str) -> Case:
        forward_kwargs: dict[str, Any] = {}
        if transposed:
            kind = d.choice(TRANSPOSED_INVALID, "invalid kind")
            # the draft's output_size is dropped: it would override an invalid output_padding
            params, shapes, forward_kwargs = _invalid_transposed(d, draft, kind)
        else:
            kind = d.choice(CONV_INVALID, "invalid kind")
            params, shapes = _invalid_conv(d, draft, kind)
        if params["bias"]:
            shapes["bias"] = (params["out_channels"],)
        inputs = {name: np.zeros(shape) for name, shape in shapes.items()}
        return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=tuple(inputs),
                    forward_kwargs=forward_kwargs, invalid=True, note=kind, cotangent_seed=S.seed(d))

    return _draft_cases(nd, transposed, finish)


# -- regimes --------------------------------------------------------------------------------------------

def _geometry(case: Case) -> tuple[tuple[int, ...], ...]:
    """(kernel, stride, dilation, per-dim total padding) of a case (torch's 'same' split summed)."""
    p, nd = case.params, spec_of(case).dims or 1
    kernel, stride, dilation = (per_dim_param(p[k], nd) for k in ("kernel_size", "stride", "dilation"))
    padding = p["padding"]
    if padding == "same":
        total = tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    elif padding == "valid":
        total = (0,) * nd
    else:
        total = tuple(2 * v for v in per_dim_param(padding, nd))
    return kernel, stride, dilation, total


def _same_uneven(case: Case) -> bool:
    """padding='same' whose total d·(k-1) is odd: torch puts the extra element on the right."""
    kernel, _, dilation, _ = _geometry(case)
    return case.params["padding"] == "same" and any(d * (k - 1) % 2 for k, d in zip(kernel, dilation))


def _padding_mode(mode: str) -> Callable[[Case], bool]:
    return lambda case: case.params.get("padding_mode") == mode and any(_geometry(case)[3])


def _depthwise(case: Case) -> bool:
    return case.params["groups"] == case.params["in_channels"] > 1


def _dilated_with_padding(case: Case) -> bool:
    _, _, dilation, total = _geometry(case)
    return any(d > 1 and t > 0 for d, t in zip(dilation, total))


def _stride_skips(case: Case) -> bool:
    """A stride longer than the dilated kernel: input elements no window reads (direct), output
    elements no input writes (transposed)."""
    kernel, stride, dilation, _ = _geometry(case)
    return any(s > d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation))


def _transposed_gaps(case: Case) -> bool:
    """Output positions that no input element reaches (between strided or dilated taps, or in
    the output padding): they hold the bias alone."""
    kernel, stride, dilation, total = _geometry(case)
    x, nd = case.inputs["input"], len(kernel)
    spatial, pads = x.shape[-nd:], tuple(t // 2 for t in total)
    size = case.forward_kwargs.get("output_size")
    if size is None:
        extra = _output_padding(case)
    else:
        extra = ref.output_padding_for_size(size, spatial, x.ndim == nd + 2, kernel, stride, pads, dilation)
    for length, k, s, d, p, o in zip(spatial, kernel, stride, dilation, pads, extra):
        out = (length - 1) * s - 2 * p + d * (k - 1) + 1 + o
        written = (np.arange(length)[:, None] * s + np.arange(k)[None, :] * d - p).ravel()
        if np.unique(written[(written >= 0) & (written < out)]).size < out:
            return True
    return False


def _unbatched(case: Case) -> bool:
    return case.inputs["input"].ndim == case.inputs["weight"].ndim - 1


def _channels_last(case: Case) -> bool:
    return case.layout("input").kind == "channels_last"


def _output_padding(case: Case) -> tuple[int, ...]:
    return per_dim_param(case.params["output_padding"], spec_of(case).dims or 1)


def _has_output_padding(case: Case) -> bool:
    return "output_size" not in case.forward_kwargs and any(_output_padding(case))


def _output_padding_past_stride(case: Case) -> bool:
    """output_padding >= stride, valid because the dilation is larger."""
    _, stride, _, _ = _geometry(case)
    return "output_size" not in case.forward_kwargs and any(o >= s for o, s in zip(_output_padding(case), stride))


def _output_size_selects(case: Case) -> bool:
    """A forward output_size above the smallest output: it selects an output padding > 0."""
    size = case.forward_kwargs.get("output_size")
    if size is None:
        return False
    kernel, stride, dilation, total = _geometry(case)
    spatial = case.inputs["input"].shape[-len(kernel):]
    low = ref.transposed_min_size(spatial, kernel, stride, tuple(t // 2 for t in total), dilation)
    return tuple(size[-len(kernel):]) != tuple(low)


def _output_size_with_leading(case: Case) -> bool:
    size = case.forward_kwargs.get("output_size")
    return size is not None and len(size) > len(_geometry(case)[0])


SMALL = {"channel regime": "small", "out_channels regime": "small"}
# Padding drawn at torch's limit on padded extents of >= 4 (output 4, kernel 2): some padding > 0.
PADDED = {**SMALL, "padding kind": "numeric", "padding at torch's limit": True, "output_size[*]": 4,
          "kernel_size[*]": 2, "dilation[*]": 1}


def _layout_regimes(nd: int) -> list[Regime]:
    regimes = [Regime("unbatched", _unbatched, {"unbatched": True}, "input without a batch dim: (C, *spatial)")]
    if nd > 1:
        regimes.append(Regime("channels_last", _channels_last, {"unbatched": False, "layout.input": "channels_last"},
                              "input stored channels-last"))
    return regimes


DEPTHWISE = Regime("depthwise", _depthwise, {"channel regime": "small", "groups": 3, "in_channels per group": 1},
                   "groups = in_channels > 1: one filter bank per input channel")


def conv_regimes(nd: int) -> tuple[Regime, ...]:
    return (
        Regime("'same' padding split unevenly", _same_uneven,
               {"padding kind": "same", "kernel_size[*]": 2, "dilation[*]": 1},
               "padding='same' with an odd d·(k-1): the extra element goes on the right"),
        *(Regime(f"{mode} padding", _padding_mode(mode), {**PADDED, "padding_mode": mode},
                 f"padding_mode='{mode}' with padding > 0")
          for mode in ("reflect", "replicate", "circular")),
        Regime("dilation with padding", _dilated_with_padding,
               {**PADDED, "dilation[*]": 2, "output_size[*]": 2},
               "dilated taps reaching into the padding"),
        DEPTHWISE,
        Regime("stride longer than the kernel", _stride_skips,
               {"padding kind": "numeric", "stride[*]": 3, "kernel_size[*]": 2, "dilation[*]": 1},
               "stride > d·(k-1)+1: input elements no window reads"),
        *_layout_regimes(nd),
    )


def transposed_regimes(nd: int) -> tuple[Regime, ...]:
    return (
        Regime("output_padding", _has_output_padding,
               {**SMALL, "forward output_size": False, "stride[*]": 2, "output_padding[*]": 1},
               "output_padding > 0: extra elements on the output's high end"),
        Regime("output_padding >= stride", _output_padding_past_stride,
               {**SMALL, "forward output_size": False, "stride[*]": 1, "dilation[*]": 3, "output_padding[*]": 2},
               "output_padding at least the stride, valid because it is below the dilation"),
        Regime("output_size selecting output padding", _output_size_selects,
               {**SMALL, "forward output_size": True, "stride[*]": 2, "output_padding[*]": 1},
               "a forward output_size above the smallest output (it overrides the constructor's output_padding)"),
        Regime("output_size with batch and channels", _output_size_with_leading,
               {"forward output_size": True, "output_size with leading dims": True},
               "output_size given with the batch/channel sizes in front: only the spatial sizes count"),
        DEPTHWISE,
        Regime("output positions no input reaches", _transposed_gaps,
               {"stride[*]": 3, "kernel_size[*]": 2, "dilation[*]": 1, "input_size[*]": 2,
                "padding at torch's limit": False, "padding[*]": 0},
               "gaps between strided taps (stride > d·(k-1)+1): they hold the bias alone"),
        *_layout_regimes(nd),
    )
