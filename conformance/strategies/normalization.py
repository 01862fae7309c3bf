"""Case strategies of the normalisation family, and the geometry and value helpers they share.

Every strategy is valid by construction (a layer that needs more than one value per statistic gets
it from the sizes it draws), bounded while drawing (``S.sizes_within``), labelled, and lists the
simplest option first. Values are normals (or the other float kinds) moved by a drawn offset (a
large mean against a small spread makes a one-pass variance cancel), scaled to huge or tiny
magnitudes, and with some statistic slices made constant (variance 0) when drawn so.

The BatchNorm strategies keep their draws and labels exactly (their ci case ids are fixed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.dtypes import DTYPES

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
EPS = (1e-5, 1e-3, 0.1, 1.0)
MOMENTA = (0.1, None, 0.0, 0.5, 1.0)
OFFSETS = (0.0, 8.0, 64.0, 1024.0)
# |x| of the "huge" and "tiny" scales: squares overflow / underflow the dtype, never the format
# torch computes statistics in (float32 for float16 and bfloat16).
HUGE = {"float64": 2.0**400, "float32": 2.0**40, "bfloat16": 2.0**40, "float16": 2.0**10}
TINY = {name: dt.min_normal**0.5 / 4 for name, dt in DTYPES.items()}  # 2^-513, 2^-65, 2^-9
CONSTANT = ("none", "one slice", "every slice", "one zero slice")
SPECIALS = ("none", "nan", "inf", "-inf")


def batch_ranks(dims: int) -> tuple[int, ...]:
    """Input ranks a BatchNorm of ``dims`` spatial dims accepts: (N, C) and (N, C, L) for 1d."""
    return (2, 3) if dims == 1 else (dims + 2,)


def uses_batch_stats(train: bool, track_running_stats: bool) -> bool:
    """Batch (or instance) statistics normalise in training mode, and in both modes without
    running statistics."""
    return train or not track_running_stats


# -- BatchNorm (draws frozen) -------------------------------------------------------------------

def _bn_params(d: S.Drawer) -> tuple[dict[str, Any], bool]:
    params = {
        "num_features": d.integer(1, 8, "num_features"),
        "eps": d.choice(EPS, "eps"),
        "momentum": d.choice(MOMENTA, "momentum"),
        "affine": d.choice((True, False), "affine"),
        "track_running_stats": d.choice((True, False), "track_running_stats"),
    }
    return params, d.choice((True, False), "train")


def _bn_shape(d: S.Drawer, dims: int, channels: int, batch_stats: bool) -> tuple[int, ...]:
    """(N, C, *spatial); BatchNorm1d draws its spatial rank (0: (N, C), 1: (N, C, L)). With batch
    statistics N·prod(spatial) >= 2 by construction (torch needs > 1 value per channel)."""
    rank = d.choice((0, 1), "spatial rank") if dims == 1 else dims
    spatial = S.sizes_within(d, rank, S.DEFAULT_BUDGET // channels, hi=8 if dims < 3 else 4, label="spatial")
    volume = int(np.prod(spatial, dtype=np.int64))
    n_lo = 2 if batch_stats and volume == 1 else 1
    n = d.integer(n_lo, max(n_lo, min(8, S.DEFAULT_BUDGET // (channels * volume))), "N")
    return (n, channels, *spatial)


def channel_parameters(d: S.Drawer, dtype: str, params: dict[str, Any], channels: int,
                       inputs: dict[str, np.ndarray], layouts: dict[str, Layout]) -> None:
    """weight and bias (C,) when affine (bias unless ``params["bias"]`` is False), then the running
    statistics and num_batches_tracked when tracked, into ``inputs`` / ``layouts``."""
    if params["affine"]:
        for name in ("weight", "bias"):
            if name == "bias" and not params.get("bias", True):
                continue
            layouts[name] = S.layouts(d, 1, f"layout.{name}")
            inputs[name] = S.values(d, (channels,), dtype, "float", name, layout=layouts[name])
    if params["track_running_stats"]:
        inputs["running_mean"] = S.values(d, (channels,), dtype, "float", "running_mean")
        inputs["running_var"] = S.values(d, (channels,), dtype, "float", "running_var", positive=True)
        inputs["num_batches_tracked"] = np.array(d.integer(0, 5, "num_batches_tracked"), dtype=np.int64)


def _bn_inputs(d: S.Drawer, dtype: str, params: dict[str, Any], x_shape: tuple[int, ...],
               channels: int) -> tuple[dict[str, np.ndarray], dict[str, Layout]]:
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True)}
    x = S.values(d, x_shape, dtype, "float", "input", layout=layouts["input"])
    # An offset far from the spread makes the variance ill-conditioned (catastrophic cancellation
    # in a one-pass E[x²] - E[x]²).
    offset = d.choice((0.0, 8.0, 64.0), "input.offset")
    inputs = {"input": DTYPES[dtype].round(x + offset)}
    channel_parameters(d, dtype, params, channels, inputs, layouts)
    return inputs, layouts


def _differentiable(inputs: dict[str, np.ndarray]) -> tuple[str, ...]:
    return tuple(k for k in ("input", "weight", "bias") if k in inputs)


def batch_norm_cases(name: str, dims: int):
    """The case strategy of BatchNorm{dims}d: every constructor parameter, train and eval mode,
    buffers as inputs, any input layout (channels_last / channels_last_3d included)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, ("float",))
        params, train = _bn_params(d)
        channels = params["num_features"]
        shape = _bn_shape(d, dims, channels, uses_batch_stats(train, params["track_running_stats"]))
        inputs, layouts = _bn_inputs(d, dtype, params, shape, channels)
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=_differentiable(inputs),
                    layouts=layouts, train=train, tier=tier, cotangent_seed=S.seed(d))

    return cases


def invalid_batch_norm_cases(name: str, dims: int):
    """What torch rejects: one value per channel with batch statistics, an input of a rank the
    layer does not take, a channel count that differs from num_features (checked against weight
    or running stats)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        params, train = _bn_params(d)
        kind = d.choice(("one value per channel", "wrong rank", "channel mismatch"), "invalid kind")
        channels = params["num_features"]
        valid_rank = batch_ranks(dims)[-1]
        if kind == "one value per channel":
            params["track_running_stats"] = params["track_running_stats"] and train
            shape: tuple[int, ...] = (1, channels) + (1,) * (valid_rank - 2)
        elif kind == "wrong rank":
            rank = d.choice(tuple(r for r in range(1, 7) if r not in batch_ranks(dims)), "wrong rank")
            shape = (2, channels, 2, 2, 2, 2)[:rank] if rank > 1 else (channels,)
        else:
            if not (params["affine"] or params["track_running_stats"]):
                params["affine"] = True
            shape = (2, channels + d.integer(1, 3, "extra channels")) + (2,) * (valid_rank - 2)
        inputs, layouts = _bn_inputs(d, dtype, params, (2, channels) + (2,) * (valid_rank - 2), channels)
        inputs["input"] = S.values(d, shape, dtype, "float", "input")
        layouts.pop("input")  # drawn for the valid shape; the invalid input stays contiguous
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=_differentiable(inputs),
                    layouts=layouts, train=train, invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- values of the newer layers -------------------------------------------------------------------

def magnitude(dtype: str, scale: str, offset: float) -> float:
    """The factor of a drawn ``input.scale``: 1, or a power of two making the squares overflow
    (huge) or underflow (tiny) the dtype, reduced so that the offset values stay finite."""
    if scale == "tiny":
        return TINY[dtype]
    if scale == "unit":
        return 1.0
    limit = DTYPES[dtype].max_value / (4 * (abs(offset) + 8))
    return min(HUGE[dtype], 2.0 ** np.floor(np.log2(limit)))


def statistic_values(d: S.Drawer, shape: tuple[int, ...], dtype: str, layout: Layout,
                     slices: Callable[[tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]] | None,
                     label: str = "input") -> np.ndarray:
    """Input values: a float kind moved by ``input.offset`` and scaled by ``input.scale``; with
    ``slices`` (shape -> (view shape, statistic axes)) the draw ``constant`` makes one or every
    statistic slice constant (its first value repeated: variance 0), or one slice all zeros; last,
    ``input.special`` may put a NaN or an infinity in the first element."""
    x = S.values(d, shape, dtype, "float", label, layout=layout)
    offset = d.choice(OFFSETS, f"{label}.offset")
    scale = d.choice(("unit", "huge", "tiny"), f"{label}.scale")
    if scale != "unit":  # magnitudes in [1/8, 8] before scaling: the scale is the magnitude
        x = np.where(x < 0, -1.0, 1.0) * np.clip(np.abs(x), 0.125, 8.0)
    x = DTYPES[dtype].round((x + offset) * magnitude(dtype, scale, offset))
    if x.size == 0:
        return x
    if slices is not None:
        x = _constant_slices(d, x, slices(shape))
    special = d.choice(SPECIALS, f"{label}.special")
    if special != "none":
        x = x.copy()
        x.flat[0] = float(special)
    return along_layout(x, layout)


def _constant_slices(d: S.Drawer, x: np.ndarray, view: tuple[tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    constant = d.choice(CONSTANT, "constant")
    if constant == "none":
        return x
    view_shape, axes = view
    v = x.reshape(view_shape).copy()
    first = v[tuple(slice(0, 1) if a in axes else slice(None) for a in range(v.ndim))]
    if constant == "every slice":
        return np.broadcast_to(first, v.shape).reshape(x.shape).copy()
    lead = tuple(0 if a not in axes else slice(None) for a in range(v.ndim))
    v[lead] = 0.0 if constant == "one zero slice" else np.broadcast_to(first, v.shape)[lead]
    return v.reshape(x.shape)


def along_layout(x: np.ndarray, layout: Layout) -> np.ndarray:
    """``x`` made constant again along an expanded layout's stride-0 dims (from index 0), after
    edits that may have broken it."""
    if layout.kind != "expanded":
        return x
    source = tuple(slice(0, 1) if i in layout.dims else slice(None) for i in range(x.ndim))
    return np.broadcast_to(x[source], x.shape).copy()


def _spatial(d: S.Drawer, rank: int, budget: int, hi: int, min_volume: int = 1) -> list[int]:
    """Spatial sizes within ``budget``; the last one is raised to make the volume at least
    ``min_volume`` (2 at most) when the others leave it at 1."""
    sizes = S.sizes_within(d, rank, budget, hi=hi, label="spatial")
    if rank and min_volume > 1 and int(np.prod(sizes)) < min_volume:
        sizes[-1] = min_volume
    return sizes


# -- InstanceNorm ---------------------------------------------------------------------------------

def instance_norm_cases(name: str, dims: int):
    """InstanceNorm{dims}d: num_features, eps, momentum (None included), affine (with or without
    bias), track_running_stats in train and eval (buffers compared), batched (N, C, *spatial) and
    unbatched (C, *spatial) inputs in any layout; input statistics need > 1 spatial element, which
    the sizes guarantee. Without affine and running statistics num_features is not used (torch
    warns): a drawn channel count may then differ from it."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, ("float",))
        params = {"num_features": d.integer(1, 6, "num_features"), "eps": d.choice(EPS, "eps"),
                  "momentum": d.choice(MOMENTA, "momentum"), "affine": d.choice((False, True), "affine"),
                  "track_running_stats": d.choice((False, True), "track_running_stats")}
        if params["affine"]:
            params["bias"] = d.choice((True, False), "bias")
        train = d.choice((True, False), "train")
        channels = params["num_features"]
        if not (params["affine"] or params["track_running_stats"]):
            channels += d.integer(0, 2, "channels beyond num_features")
        batched = d.choice((True, False), "batched")
        min_volume = 2 if uses_batch_stats(train, params["track_running_stats"]) else 1
        spatial = _spatial(d, dims, S.DEFAULT_BUDGET // (channels * 4), hi=8 if dims < 3 else 4, min_volume=min_volume)
        volume = int(np.prod(spatial))
        n = d.integer(1, max(1, min(6, S.DEFAULT_BUDGET // (channels * volume))), "N") if batched else 1
        shape = (n, channels, *spatial) if batched else (channels, *spatial)
        layouts = {"input": S.layouts(d, len(shape), "layout.input", expanded=True)}
        first = 2 if batched else 1
        inputs = {"input": statistic_values(d, shape, dtype, layouts["input"],
                                            lambda s: (s, tuple(range(first, len(s)))))}
        channel_parameters(d, dtype, params, params["num_features"], inputs, layouts)
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=_differentiable(inputs),
                    layouts=layouts, train=train, tier=tier, cotangent_seed=S.seed(d))

    return cases


def invalid_instance_norm_cases(name: str, dims: int):
    """What torch rejects: an input of a rank other than dims + 1 or dims + 2; one spatial element
    with input statistics; a channel count other than num_features with affine parameters (a
    ValueError) or running statistics (their size)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(("one spatial element", "wrong rank", "channel mismatch"), "invalid kind")
        train = d.choice((True, False), "train")
        params = {"num_features": d.integer(1, 4, "num_features"), "eps": 1e-5, "momentum": 0.1,
                  "affine": d.choice((False, True), "affine"),
                  "track_running_stats": d.choice((False, True), "track_running_stats")}
        c = params["num_features"]
        if kind == "one spatial element":
            params["track_running_stats"] = params["track_running_stats"] and train
            shape: tuple[int, ...] = (2, c) + (1,) * dims
        elif kind == "wrong rank":
            rank = d.choice(tuple(r for r in range(1, 7) if r not in (dims + 1, dims + 2)), "wrong rank")
            shape = (2, c, 3, 3, 3, 3)[:rank]
        else:
            if not (params["affine"] or params["track_running_stats"]):
                params["affine"] = True
            shape = (2, c + d.integer(1, 2, "extra channels")) + (3,) * dims
        inputs: dict[str, np.ndarray] = {"input": S.values(d, shape, dtype, "float", "input")}
        layouts: dict[str, Layout] = {}
        channel_parameters(d, dtype, params, c, inputs, layouts)
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=_differentiable(inputs),
                    layouts=layouts, train=train, invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- GroupNorm ------------------------------------------------------------------------------------

def group_view_of(num_groups: int) -> Callable[[tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]]:
    """GroupNorm's statistic slices: the (N, G, C/G·prod(spatial)) view, statistics over axis 2."""
    return lambda s: ((s[0], num_groups, int(np.prod(s[1:], dtype=np.int64)) // num_groups), (2,))


def group_norm_cases(name: str):
    """GroupNorm: num_groups 1, C and in between (C = num_groups·channels per group), eps, affine
    (with or without bias), inputs of rank 2 to 5 in any layout. torch rejects N·(C/G)·prod(spatial)
    = 1, so a group of one element comes with N >= 2. Without affine num_channels is not used: a
    drawn channel count may differ from it (a multiple of num_groups)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, ("float",))
        groups = d.integer(1, 4, "num_groups")
        per_group = d.integer(1, 4, "channels per group")
        params = {"num_groups": groups, "num_channels": groups * per_group, "eps": d.choice(EPS, "eps"),
                  "affine": d.choice((True, False), "affine")}
        if params["affine"]:
            params["bias"] = d.choice((True, False), "bias")
        else:
            per_group += d.integer(0, 1, "channels per group beyond num_channels")
        channels = groups * per_group
        rank = d.choice((3, 4, 2, 5), "rank")
        spatial = S.sizes_within(d, rank - 2, S.DEFAULT_BUDGET // (channels * 4), hi=6 if rank < 5 else 4,
                                 label="spatial")
        volume = int(np.prod(spatial))
        n_lo = 2 if per_group * volume == 1 else 1
        n = d.integer(n_lo, max(n_lo, min(6, S.DEFAULT_BUDGET // (channels * volume))), "N")
        shape = (n, channels, *spatial)
        layouts = {"input": S.layouts(d, rank, "layout.input", expanded=True)}
        inputs = {"input": statistic_values(d, shape, dtype, layouts["input"], group_view_of(groups))}
        channel_parameters(d, dtype, {**params, "track_running_stats": False}, params["num_channels"], inputs,
                           layouts)
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=_differentiable(inputs),
                    layouts=layouts, tier=tier, cotangent_seed=S.seed(d))

    return cases


def invalid_group_norm_cases(name: str):
    """What torch rejects: C not divisible by num_groups (at construction), an input of rank 1, a
    single value per group in all (N·(C/G)·prod(spatial) = 1), an input whose channels differ from
    num_channels with affine parameters."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(("one value in all", "rank 1", "groups do not divide channels", "channel mismatch"),
                        "invalid kind")
        groups = d.integer(1, 3, "num_groups")
        params = {"num_groups": groups, "num_channels": groups, "eps": 1e-5,
                  "affine": d.choice((True, False), "affine")}
        shape: tuple[int, ...] = (1, groups, 1)
        if kind == "rank 1":
            shape = (groups,)
        elif kind == "groups do not divide channels":
            params["num_groups"] = groups + 1
            params["num_channels"] = 2 * (groups + 1) + 1
            shape = (2, params["num_channels"], 2)
        elif kind == "channel mismatch":
            params["affine"] = True
            shape = (2, groups * 2, 3)
        inputs: dict[str, np.ndarray] = {"input": S.values(d, shape, dtype, "float", "input")}
        layouts: dict[str, Layout] = {}
        channel_parameters(d, dtype, {**params, "track_running_stats": False}, params["num_channels"], inputs, layouts)
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=_differentiable(inputs),
                    layouts=layouts, invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- LayerNorm and RMSNorm -----------------------------------------------------------------------

def rows_view(lead: int) -> Callable[[tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]]:
    """LayerNorm's / RMSNorm's statistic slices: the (leading, normalised) rows view, statistics over axis 1."""
    return lambda s: ((int(np.prod(s[:lead], dtype=np.int64)), int(np.prod(s[lead:], dtype=np.int64))), (1,))


def _trailing_shape(d: S.Drawer) -> tuple[tuple[int, ...], int]:
    """An input shape of rank 1 to 4 (a leading size may be drawn 0: an empty batch) and how many
    trailing dims are normalised (1 to all)."""
    rank = d.integer(1, 4, "rank")
    shape = S.sizes_within(d, rank, S.DEFAULT_BUDGET // 4, hi=8, label="shape")
    normalised = d.integer(1, rank, "normalized dims")
    if normalised < rank and d.flag("empty batch"):
        shape[0] = 0
    return tuple(shape), normalised


def _normalized_shape(d: S.Drawer, trailing: tuple[int, ...]) -> int | tuple[int, ...] | list[int]:
    """normalized_shape as torch takes it: an int (one dim), a tuple or a list."""
    spelling = d.choice(("int", "tuple", "list") if len(trailing) == 1 else ("tuple", "list"),
                        "normalized_shape spelled as")
    return trailing[0] if spelling == "int" else tuple(trailing) if spelling == "tuple" else list(trailing)


def trailing_norm_cases(name: str, rms: bool):
    """LayerNorm (``rms`` False) and RMSNorm: normalized_shape over 1 to all trailing dims (an int,
    a tuple or a list), eps (RMSNorm: None first, the dtype's eps), elementwise_affine and
    LayerNorm's bias, inputs of rank 1 to 4 (an unbatched input is normalised whole) in any layout,
    empty batches, constant or all-equal rows, huge and tiny magnitudes."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, ("float",))
        shape, normalised = _trailing_shape(d)
        trailing = shape[len(shape) - normalised:]
        params: dict[str, Any] = {"normalized_shape": _normalized_shape(d, trailing),
                                  "eps": d.choice(((None,) + EPS) if rms else EPS, "eps"),
                                  "elementwise_affine": d.choice((True, False), "elementwise_affine")}
        if not rms:
            params["bias"] = d.choice((True, False), "bias")
        layouts = {"input": S.layouts(d, len(shape), "layout.input", expanded=True)}
        inputs = {"input": statistic_values(d, shape, dtype, layouts["input"], rows_view(len(shape) - normalised))}
        if params["elementwise_affine"]:
            names = ("weight",) if rms or not params["bias"] else ("weight", "bias")
            for p in names:
                layouts[p] = S.layouts(d, normalised, f"layout.{p}")
                inputs[p] = S.values(d, trailing, dtype, "float", p, layout=layouts[p])
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=_differentiable(inputs),
                    layouts=layouts, tier=tier, cotangent_seed=S.seed(d))

    return cases


def invalid_trailing_norm_cases(name: str, rms: bool):
    """What torch rejects: an input that does not end in normalized_shape (a size differs, or it
    has fewer dims), and an empty normalized_shape."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(("trailing size differs", "fewer dims than normalized_shape", "empty normalized_shape"),
                        "invalid kind")
        trailing = (d.integer(1, 4, "size"), 3)
        shape: tuple[int, ...] = (2, trailing[0], 4) if kind == "trailing size differs" else (3,)
        normalized = () if kind == "empty normalized_shape" else trailing
        params: dict[str, Any] = {"normalized_shape": normalized, "eps": None if rms else 1e-5,
                                  "elementwise_affine": False}
        if not rms:
            params["bias"] = True
        inputs = {"input": S.values(d, shape, dtype, "float", "input")}
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=("input",), invalid=True,
                    note=kind, cotangent_seed=S.seed(d))

    return cases


# -- LocalResponseNorm and CrossMapLRN2d ----------------------------------------------------------

def local_response_cases(name: str, ranks: tuple[int, ...]):
    """LocalResponseNorm (``ranks`` 3 to 5) and CrossMapLRN2d (4): size odd, even and larger than
    C, alpha, beta, k (0 included: an all-zero window then gives 0/0), in any layout; channels
    drawn all-zero on purpose."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, ("float",))
        rank = d.choice(ranks, "rank")
        channels = d.integer(1, 8, "channels")
        params = {"size": d.integer(1, channels + 3, "size"), "alpha": d.choice((1e-4, 1.0, 10.0), "alpha"),
                  "beta": d.choice((0.75, 0.5, 1.0, 2.0, 0.0), "beta"), "k": d.choice((1.0, 2.0, 0.0), "k")}
        spatial = S.sizes_within(d, rank - 2, S.DEFAULT_BUDGET // (channels * 4), hi=6, label="spatial")
        n = d.integer(1, max(1, min(4, S.DEFAULT_BUDGET // (channels * int(np.prod(spatial))))), "N")
        shape = (n, channels, *spatial)
        layouts = {"input": S.layouts(d, rank, "layout.input", expanded=True)}
        x = statistic_values(d, shape, dtype, layouts["input"], None)
        zero = d.choice(("none", "one channel", "every channel"), "zero channels")
        if zero != "none":  # the last channel (input.special sits in the first)
            x = x.copy()
            x[:, -1 if zero == "one channel" else 0:] = 0.0
            x = along_layout(x, layouts["input"])
        return Case(op=name, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    layouts=layouts, tier=tier, cotangent_seed=S.seed(d))

    return cases


def invalid_local_response_cases(name: str, ranks: tuple[int, ...]):
    """What torch rejects: an input of another rank (below 3, or other than 4 for CrossMapLRN2d),
    and size 0."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        kind = d.choice(("wrong rank", "size 0"), "invalid kind")
        rank = d.choice(tuple(r for r in range(1, 6) if r not in ranks), "wrong rank") if kind == "wrong rank" \
            else ranks[0]
        size = 0 if kind == "size 0" else d.integer(1, 3, "size")
        shape = (2, 3, 2, 2, 2)[:rank]
        params = {"size": size, "alpha": 1e-4, "beta": 0.75, "k": 1.0}
        inputs = {"input": S.values(d, shape, dtype, "float", "input")}
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=("input",), invalid=True,
                    note=kind, cotangent_seed=S.seed(d))

    return cases
