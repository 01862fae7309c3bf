"""Case strategies, geometry and regimes of the copies family: padding (ZeroPad, ConstantPad,
ReflectionPad, ReplicationPad, CircularPad in 1-3 dims), Flatten, Unflatten and ChannelShuffle.

Padding cases draw the input's rank kind and sizes first, then the amounts, each side from the
range the mode accepts given the dim's length L (and, for the second side, the first side's
amount), so every case is valid by construction:

    constant   left in [-L, P],                     right in [-(L - crop_left), P]
    reflect    left in [max(2 - 2L, -L - 1), L - 1],  right in [max(1 - L - left, -L - 1), L - 1]
    replicate  left in [max(1 - L - P, -L - 1), P],  right in [max(1 - L - left, -L - 1), P]
    circular   left in [max(-2L, -L - 1), L],        right in [max(-L - left, -L - 1), L]

(P = ``PAD_MAX``): constant crops at most L in all, reflect pads below L, reflect and replicate
keep at least one element, circular wraps at most once and never goes below empty. Amounts are
labelled by spatial dim, first spatial dim first (``left[i]``); the flat tuple torch takes
lists the last dim first (``flat_padding``). Invalid cases break one rule each (``padding_invalid``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import Regime, spec_of

PAD_MAX = 4  # the largest positive amount drawn
SIZE_MAX = 5  # the largest padded dim drawn
SPATIAL_BUDGET = 100  # elements of the padded dims together
SPECIALS = (-0.0, np.inf, -np.inf, np.nan)  # copied as they are, the sign of zero included
# Value kinds of ConstantPad, simplest first: the value drawn for each (``constant_value``).
VALUE_KINDS = ("plain", "zero", "negative zero", "infinite", "NaN", "not representable", "tiny negative",
               "double rounding", "largest finite")
# Just above the half-way point between 1 and the next float16 / bfloat16 value: correctly rounded
# up, but rounded down when converted through float32 first.
DOUBLE_ROUNDING = (1 + 2.0**-11 + 2.0**-40, 1 + 2.0**-8 + 2.0**-40)
TINY_NEGATIVE = -(2.0**-25)  # half of float16's smallest subnormal: rounds to -0.0 there


def rare(d: S.Drawer, options: Sequence[Any], label: str, weight: int = 8) -> Any:
    """A choice whose first option (the plain one: no empty dim) comes ``weight`` times as often as
    each corner, so that the random search mostly draws cases with elements; a regime pins the
    corners."""
    return d.choice((options[0],) * weight + tuple(options[1:]), label)


# -- geometry ---------------------------------------------------------------------------------------

def mode_of(case: Case) -> str:
    """The padding mode of a case (ZeroPad and ConstantPad: constant)."""
    return PAD_MODES[case.op]


def pad_dims(case: Case) -> int:
    """The number of padded dims (the module's 1d/2d/3d: its declaration's dims)."""
    return spec_of(case).dims


def flat_padding(case: Case) -> tuple[int, ...]:
    """torch's flat padding tuple of a module case (an int pads every side by it)."""
    padding = case.params["padding"]
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * (2 * pad_dims(case))
    return tuple(int(p) for p in padding)


def pad_pairs(case: Case) -> list[tuple[int, int]]:
    """(left, right) per padded dim, first padded dim first."""
    flat = flat_padding(case)
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)][::-1]


def padded_sizes(case: Case) -> list[tuple[int, int, int, int]]:
    """(L, left, right, padded length) per padded dim, first padded dim first."""
    shape = case.inputs["input"].shape
    pairs = pad_pairs(case)
    sizes = shape[len(shape) - len(pairs):]
    return [(size, left, right, size + left + right) for size, (left, right) in zip(sizes, pairs)]


def is_batched(case: Case) -> bool:
    return case.inputs["input"].ndim == pad_dims(case) + 2


def remainder_overrun(case: Case) -> bool:
    """Some padded dim crops on one side and pads on the other by more than the crop leaves
    (L - crop), where wrapping around the remainder, as torch's circular kernel does, is undefined."""
    for size, left, right, _ in padded_sizes(case):
        remainder = size - max(-left, 0) - max(-right, 0)
        if min(left, right) < 0 < max(left, right) and max(left, right) > remainder:
            return True
    return False


def readings_differ(case: Case) -> bool:
    """Some padded dim crops on one side and pads on the other within the remainder: both readings
    of circular padding are defined and (generally) differ."""
    return any(min(left, right) < 0 < max(left, right) for _, left, right, _ in padded_sizes(case)) and \
        not remainder_overrun(case)


def _side_range(mode: str, size: int, left: int | None) -> tuple[int, int]:
    """The amounts a side may take (the module docstring's table); ``left`` is None for the first
    side, else the first side's amount."""
    if mode == "constant":
        return (-size, PAD_MAX) if left is None else (-(size - max(-left, 0)), PAD_MAX)
    if mode == "reflect":
        return (max(2 - 2 * size, -size - 1), size - 1) if left is None else \
            (max(1 - size - left, -size - 1), size - 1)
    if mode == "replicate":
        return (max(1 - size - PAD_MAX, -size - 1), PAD_MAX) if left is None else \
            (max(1 - size - left, -size - 1), PAD_MAX)
    return (max(-2 * size, -size - 1), size) if left is None else (max(-size - left, -size - 1), size)


def _int_range(mode: str, sizes: Sequence[int]) -> tuple[int, int]:
    """The amounts p an int padding may take: (p, p) valid on every padded dim."""
    lo, hi = -10**9, 10**9
    for size in sizes:
        if mode == "constant":
            lo, hi = max(lo, -(size // 2)), min(hi, PAD_MAX)
        elif mode == "reflect":
            lo, hi = max(lo, -((size - 1) // 2)), min(hi, size - 1)
        elif mode == "replicate":
            lo, hi = max(lo, -((size - 1) // 2)), min(hi, PAD_MAX)
        else:
            lo, hi = max(lo, -(size // 2)), min(hi, size)
    return lo, hi


def draw_padding(d: S.Drawer, mode: str, sizes: Sequence[int]) -> int | tuple[int, ...]:
    """The module's padding: an int (every side) or a flat tuple, last dim first, each amount from
    the range the mode accepts."""
    if d.choice(("int", "tuple"), "padding form") == "int":
        return d.integer(*_int_range(mode, sizes), "padding")
    pairs = []
    for i, size in enumerate(sizes):
        left = d.integer(*_side_range(mode, size, None), f"left[{i}]")
        pairs.append((left, d.integer(*_side_range(mode, size, left), f"right[{i}]")))
    return tuple(v for pair in reversed(pairs) for v in pair)


def constant_value(d: S.Drawer, dtype: str) -> float:
    """ConstantPad's value, by kind (``VALUE_KINDS``): signed zeros, ±inf, NaN, values the dtype
    rounds (0.1, 1/3, a double-rounding trap, -2^-25 which float16 rounds to -0.0) and the
    dtype's largest finite value."""
    kind = d.choice(VALUE_KINDS, "value kind")
    options: dict[str, Sequence[float]] = {
        "plain": (1.5, -2.0, 0.5), "zero": (0.0,), "negative zero": (-0.0,), "infinite": (math.inf, -math.inf),
        "NaN": (math.nan,), "not representable": (0.1, 1 / 3, 1e-5), "tiny negative": (TINY_NEGATIVE,),
        "double rounding": DOUBLE_ROUNDING, "largest finite": (DTYPES[dtype].max_value, -DTYPES[dtype].max_value),
    }
    return d.choice(options[kind], "value")


# -- padding cases ---------------------------------------------------------------------------------

PAD_MODES = {f"{prefix}Pad{n}d": mode for n in (1, 2, 3) for prefix, mode in (
    ("Zero", "constant"), ("Constant", "constant"), ("Reflection", "reflect"), ("Replication", "replicate"),
    ("Circular", "circular"))}


def rank_kinds(mode: str) -> tuple[str, ...]:
    """(N, C, *) and (C, *) inputs; constant padding takes any leading dims (none, or more)."""
    return ("batched", "unbatched") + (("no channel dim", "extra leading dims") if mode == "constant" else ())


def empty_kinds(mode: str) -> tuple[str, ...]:
    """Which dim may be empty: reflect and replicate need every dim but the batch non-empty."""
    return ("none", "batch") + (("channel", "padded dim") if mode in ("constant", "circular") else ())


def _leading(d: S.Drawer, rank: str, empty: str) -> tuple[int, ...]:
    n = 0 if empty == "batch" else d.integer(1, 2, "N")
    c = 0 if empty == "channel" else d.integer(1, 3, "C")
    return {"batched": lambda: (n, c), "unbatched": lambda: (c,), "no channel dim": lambda: (),
            "extra leading dims": lambda: (d.integer(1, 2, "A"), n, c)}[rank]()


def padding_cases(op: str, mode: str, dims: int, value: bool) -> Callable[[str], Any]:
    """Valid cases of padding module ``op`` (``value``: ConstantPad's value is drawn)."""

    def build(d: S.Drawer, dtype: str) -> Case:
        tier = S.tier(d)
        rank = d.choice(rank_kinds(mode), "rank")
        empty = rare(d, empty_kinds(mode) if rank in ("batched", "extra leading dims") else
                     tuple(k for k in empty_kinds(mode) if k != "batch"), "empty")
        if rank == "no channel dim" and empty == "channel":
            empty = "none"
        sizes = S.sizes_within(d, dims, SPATIAL_BUDGET, hi=SIZE_MAX, label="size")
        if empty == "padded dim":
            sizes[d.integer(0, dims - 1, "empty dim")] = 0
        shape = (*_leading(d, rank, empty), *sizes)
        params: dict[str, Any] = {"padding": draw_padding(d, mode, sizes)}
        if value:
            params["value"] = constant_value(d, dtype)
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", layout=layout, specials=SPECIALS, some_special=True)
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return S.case_strategy(build)


def _invalid_kinds(mode: str, dims: int, value: bool, dtype: str) -> tuple[str, ...]:
    kinds = ["odd-length padding"]
    if mode == "constant":
        kinds += ["input rank below the padded dims", "crop more than the dim holds"]
        if value and dtype != "float64":
            kinds.append("value overflows the dtype")
    else:
        kinds += ["wrong rank"]
    if mode == "reflect":
        kinds += ["padding equal to the size", "padding larger than the size"]
    if mode == "circular":
        kinds += ["padding larger than the size (wraps twice)", "crop below empty"]
    if mode in ("reflect", "replicate"):
        kinds += ["crop to empty", "crop below empty", "empty non-batch dim"] + (["crop every dim to empty"] if dims > 1
                                                                                else [])
    return tuple(kinds)


def padding_invalid(op: str, mode: str, dims: int, value: bool) -> Callable[[str], Any]:
    """Cases breaking one rule torch enforces each (``reference.padding.check_pad``; ConstantPad's
    value must lie in the dtype's finite range): an odd number of amounts, a rank the mode does not
    take, a constant crop removing more than the dim holds, a reflection as long as the dim or
    longer, a circular pad wrapping twice, a reflect/replicate dim cropped to empty (one dim, or
    every dim), any dim cropped below empty, an empty non-batch dim, a value that overflows."""

    def build(d: S.Drawer, dtype: str) -> Case:
        kind = d.choice(_invalid_kinds(mode, dims, value, dtype), "invalid kind")
        sizes = [d.integer(2, 4, f"size[{i}]") for i in range(dims)]
        # an empty batch only where torch's check of the padded sizes is the last one (reflect crops)
        n_lo = 0 if mode == "reflect" and kind.startswith("crop") else 1
        lead = (d.integer(n_lo, 2, "N"), 2) if d.flag("batched") else (2,)
        pairs = [(d.integer(0, 1, f"left[{i}]"), d.integer(0, 1, f"right[{i}]")) for i in range(dims)]
        target = d.integer(0, dims - 1, "broken dim")
        size, right_side = sizes[target], d.flag("on the right")
        extra: tuple[int, ...] = ()
        if kind == "odd-length padding":
            extra = (1,)
        elif kind in ("padding equal to the size", "padding larger than the size",
                      "padding larger than the size (wraps twice)"):
            amount = size + (0 if kind == "padding equal to the size" else d.integer(1, 2, "excess"))
            pairs[target] = (pairs[target][0], amount) if right_side else (amount, pairs[target][1])
        elif kind == "crop more than the dim holds":  # one side, the other may pad
            crop, other = -(size + d.integer(1, 2, "excess")), d.integer(0, PAD_MAX, "other side")
            pairs[target] = (other, crop) if right_side else (crop, other)
        elif kind == "crop below empty":
            total = size + d.integer(1, 2, "excess")  # removed in all: the padded size is negative
            left = d.integer(0, total, "crop.left")
            pairs[target] = (-left, -(total - left))
        elif kind in ("crop to empty", "crop every dim to empty"):
            for i in range(dims) if kind == "crop every dim to empty" else (target,):
                left = d.integer(0, sizes[i], f"crop[{i}].left")
                pairs[i] = (-left, -(sizes[i] - left))
        shape: tuple[int, ...] = (*lead, *sizes)
        if kind == "input rank below the padded dims":
            shape = tuple(sizes[1:])
        elif kind == "wrong rank":
            shape = tuple(sizes) if not d.flag("too many dims") else (1, 2, 2, *sizes)
        elif kind == "empty non-batch dim":
            sizes[target] = 0
            shape = (*lead, *sizes)
        params: dict[str, Any] = {"padding": tuple(v for pair in reversed(pairs) for v in pair) + extra}
        if value:
            huge = 1e6 if dtype == "float16" else 1e39
            params["value"] = (-huge if d.flag("negative") else huge) if kind == "value overflows the dtype" else 1.5
        x = S.values(d, shape, dtype, "float", "input")
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    invalid=True, note=kind, cotangent_seed=S.seed(d))

    return S.case_strategy(build)


def padding_regimes(mode: str, dims: int, value: bool) -> tuple[Regime, ...]:
    """The corners of a padding module (pins on ``padding_cases``' labels)."""
    def regime(name: str, holds: Callable[[Case], bool], pins: dict[str, Any], description: str) -> Regime:
        return Regime(name, holds, pins, description)

    tuple_of = {"padding form": "tuple", "empty": "none"}
    sides = lambda c: [s for _, left, right, _ in padded_sizes(c) for s in (left, right)]  # noqa: E731
    regimes = [
        regime("unbatched", lambda c: c.inputs["input"].ndim == dims + 1, {"rank": "unbatched"}, "(C, *) input"),
        regime("padding given as an int", lambda c: isinstance(c.params["padding"], int), {"padding form": "int"},
               "the same amount on every side"),
        regime("negative int padding", lambda c: isinstance(c.params["padding"], int) and c.params["padding"] < 0,
               {"padding form": "int", "padding": -1, "size[*]": 3, "empty": "none"}, "an int crop on every side"),
        regime("crop on one side", lambda c: min(sides(c)) < 0,
               {**tuple_of, "size[*]": 3, "left[0]": -1}, "a negative amount removes elements"),
        regime("all-negative padding", lambda c: max(sides(c)) < 0,
               {**tuple_of, "size[*]": 3, "left[*]": -1, "right[*]": -1}, "every side crops"),
        regime("padding = size - 1", lambda c: any(s == n - 1 > 0 for n, l, r, _ in padded_sizes(c) for s in (l, r)),
               {**tuple_of, "size[*]": 3, "left[*]": 2, "right[*]": 2}, "the largest reflection"),
        regime("size-1 dims", lambda c: any(n == 1 for n, *_ in padded_sizes(c)), {"size[*]": 1, "empty": "none"},
               "one element along the padded dims"),
        regime("empty batch", lambda c: is_batched(c) and c.inputs["input"].shape[0] == 0,
               {"rank": "batched", "empty": "batch"}, "N = 0"),
        regime("non-finite values and signed zeros", lambda c: bool(np.any(~np.isfinite(c.inputs["input"]))
                                                                    | np.any(np.signbit(c.inputs["input"]))),
               {"tier": "float", "input.kind": "special", "empty": "none"},
               "NaN, ±inf and -0.0 are copied as they are"),
    ]
    if dims > 1:
        regimes.append(regime("channels_last", lambda c: c.layout("input").kind == "channels_last",
                              {"rank": "batched", "layout.input": "channels_last"}, "channels-last strides"))
    if mode in ("constant", "replicate"):
        regimes.append(regime("padding larger than the input", lambda c: any(
            max(left, right) > n for n, left, right, _ in padded_sizes(c)),
            {**tuple_of, "size[*]": 2, "left[*]": 3, "right[*]": 3}, "more padding than input elements"))
    if mode == "constant":
        regimes += [
            regime("no channel dim", lambda c: c.inputs["input"].ndim == dims, {"rank": "no channel dim"},
                   "only the padded dims (torch pads any tensor of enough dims)"),
            regime("extra leading dims", lambda c: c.inputs["input"].ndim == dims + 3, {"rank": "extra leading dims"},
                   "(A, N, C, *)")]
    if mode in ("constant", "circular"):
        regimes += [
            regime("crop to empty", lambda c: any(out == 0 < n for n, _, _, out in padded_sizes(c)),
                   {**tuple_of, "size[*]": 2, "left[0]": -1, "right[0]": -1}, "a padded dim cropped away"),
            regime("empty padded dim", lambda c: any(n == 0 for n, *_ in padded_sizes(c)),
                   {"empty": "padded dim"}, "L = 0"),
            regime("empty channel dim", lambda c: 0 in c.inputs["input"].shape[:-dims] and pad_dims(c) == dims,
                   {"rank": "batched", "empty": "channel"}, "C = 0")]
    if mode == "circular":
        regimes += [
            regime("wrapping exactly once", lambda c: any(s == n > 0 for n, left, right, _ in padded_sizes(c)
                                                          for s in (left, right)),
                   {**tuple_of, "size[*]": 2, "left[*]": 2, "right[*]": 2}, "a pad as long as the dim"),
            regime("crop one side, pad the other", readings_differ,
                   {**tuple_of, "size[*]": 4, "left[*]": -1, "right[*]": 2},
                   "the two readings of circular padding with a crop differ"),
            regime("pad beyond the remainder", remainder_overrun,
                   {**tuple_of, "size[*]": 2, "left[0]": -1, "right[0]": 2},
                   "a pad longer than the crop leaves (torch's kernel fails: known)")]
    if mode in ("reflect", "replicate"):
        regimes.append(regime("crop past the edge", lambda c: any(s < -n for n, left, right, _ in padded_sizes(c)
                                                                  for s in (left, right)),
                              {**tuple_of, "size[*]": 4, "left[0]": -5, "right[0]": 3},
                              "a crop longer than the dim: only padding remains"))
    if value:
        regimes += [
            regime("value -0.0", lambda c: c.params["value"] == 0 and math.copysign(1, c.params["value"]) < 0,
                   {"value kind": "negative zero"}, "the padding is -0.0"),
            regime("value ±inf", lambda c: math.isinf(c.params["value"]), {"value kind": "infinite"}, ""),
            regime("value NaN", lambda c: math.isnan(c.params["value"]), {"value kind": "NaN"}, ""),
            regime("value rounded to the dtype", lambda c: c.params["value"] in (0.1, 1 / 3, 1e-5),
                   {"value kind": "not representable"}, "0.1, 1/3, 1e-5 as the dtype rounds them"),
            regime("value rounding to -0.0 in float16", lambda c: c.params["value"] == TINY_NEGATIVE,
                   {"value kind": "tiny negative"}, "-2^-25"),
            regime("value a double-rounding trap", lambda c: c.params["value"] in DOUBLE_ROUNDING,
                   {"value kind": "double rounding"}, "rounded up directly, down through float32"),
            regime("value the largest finite", lambda c: abs(c.params["value"]) == DTYPES[c.dtype].max_value,
                   {"value kind": "largest finite"}, "the dtype's largest finite value")]
    return tuple(regimes)


# -- reshaping: Flatten, Unflatten, ChannelShuffle -------------------------------------------------

SHAPE_BUDGET = 256  # input elements
SIZES_AS = ("tuple", "list", "torch.Size")  # the forms of unflattened_size torch accepts


def _shape(d: S.Drawer, rank: int, empty: bool, hi: int = 4) -> list[int]:
    """Sizes of a rank-``rank`` input within the budget; one of them 0 when ``empty``."""
    shape = S.sizes_within(d, rank, SHAPE_BUDGET, hi=hi, label="shape")
    if empty and rank:
        shape[d.integer(0, rank - 1, "empty dim")] = 0
    return shape


def _spell_dim(d: S.Drawer, index: int, ndim: int, label: str) -> int:
    """A dim index spelled as torch accepts it: positive, or negative (index - ndim)."""
    return index - max(ndim, 1) if d.flag(f"{label} negative") else index


def _finish(d: S.Drawer, op: str, dtype: str, tier: str, shape: Sequence[int], params: dict[str, Any]) -> Case:
    layout = S.layouts(d, len(shape), "layout.input", expanded=True)
    x = S.values(d, tuple(shape), dtype, tier, "input", layout=layout, specials=SPECIALS, some_special=True)
    return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))


def flatten_cases(op: str) -> Callable[[str], Any]:
    """nn.Flatten: the defaults (start_dim=1, end_dim=-1) on an input of 2+ dims, or both dims
    given, each spelled positive or negative, on any rank (a 0-d input flattens to (1,))."""

    def build(d: S.Drawer, dtype: str) -> Case:
        tier = S.tier(d)
        defaults = d.choice(("default dims", "dims given"), "arguments") == "default dims"
        rank = d.integer(2, 5, "rank") if defaults else d.integer(0, 5, "rank")
        shape = _shape(d, rank, rare(d, (False, True), "empty"))
        params: dict[str, Any] = {}
        if not defaults:
            span = max(rank, 1)
            start = d.integer(0, span - 1, "start")
            end = d.integer(start, span - 1, "end")
            params = {"start_dim": _spell_dim(d, start, rank, "start_dim"),
                      "end_dim": _spell_dim(d, end, rank, "end_dim")}
        return _finish(d, op, dtype, tier, shape, params)

    return S.case_strategy(build)


def flatten_invalid(op: str) -> Callable[[str], Any]:
    """start_dim after end_dim, a dim out of range, the default start_dim=1 on a 0-d or 1-d input."""

    def build(d: S.Drawer, dtype: str) -> Case:
        kind = d.choice(("start after end", "dim out of range", "default dims below 2-d"), "invalid kind")
        rank = d.integer(2, 4, "rank") if kind != "default dims below 2-d" else d.integer(0, 1, "rank")
        params: dict[str, Any] = {}
        if kind == "start after end":
            end = d.integer(0, rank - 2, "end")
            params = {"start_dim": _spell_dim(d, d.integer(end + 1, rank - 1, "start"), rank, "start_dim"),
                      "end_dim": _spell_dim(d, end, rank, "end_dim")}
        elif kind == "dim out of range":
            beyond = rank + d.integer(0, 1, "beyond")
            params = {"start_dim": 0, "end_dim": -1, d.choice(("start_dim", "end_dim"), "which"): (
                -beyond - 1 if d.flag("negative") else beyond)}
        x = S.values(d, tuple([2] * rank), dtype, "float", "input")
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",), invalid=True,
                    note=kind, cotangent_seed=S.seed(d))

    return S.case_strategy(build)


def unflatten_cases(op: str) -> Callable[[str], Any]:
    """nn.Unflatten(dim, unflattened_size): the dim's size is the product of 1-3 drawn factors
    (one may be 0: an empty dim), one factor sometimes -1, the sizes as a tuple, list or
    torch.Size (``sizes_as``), the dim positive or negative."""

    def build(d: S.Drawer, dtype: str) -> Case:
        tier = S.tier(d)
        rank = d.integer(1, 4, "rank")
        index = d.integer(0, rank - 1, "dim")
        factors = [d.integer(1, 3, f"factor[{i}]") for i in range(d.integer(1, 3, "factors"))]
        empty = rare(d, (False, True), "empty")
        if empty:
            factors[d.integer(0, len(factors) - 1, "zero factor")] = 0
        shape = S.sizes_within(d, rank, SHAPE_BUDGET // max(math.prod(factors), 1), hi=4, label="shape")
        shape[index] = math.prod(factors)
        sizes = list(factors)
        if d.flag("with -1"):  # where the 0 is, if any: a -1 beside a 0 is ambiguous
            sizes[factors.index(0) if empty else d.integer(0, len(sizes) - 1, "inferred")] = -1
        params = {"dim": _spell_dim(d, index, rank, "dim"), "unflattened_size": tuple(sizes),
                  "sizes_as": d.choice(SIZES_AS, "sizes as")}
        return _finish(d, op, dtype, tier, shape, params)

    return S.case_strategy(build)


def unflatten_invalid(op: str) -> Callable[[str], Any]:
    """Sizes that do not multiply up, two -1, empty sizes, a dim out of range, a 0-d input, a -1
    beside a 0, another negative size, an int instead of a tuple, a dim name (the named-tensor
    form, gone from torch 2.13)."""
    kinds = ("sizes do not multiply up", "two -1", "empty sizes", "dim out of range", "0-d input",
             "-1 beside a zero size", "negative size", "int unflattened_size", "dim given by name")

    def build(d: S.Drawer, dtype: str) -> Case:
        kind = d.choice(kinds, "invalid kind")
        shape: tuple[int, ...] = (2, 6, 3)
        dim: Any = 1
        sizes: Any = {"sizes do not multiply up": (4, 3), "two -1": (-1, -1), "empty sizes": (),
                      "dim out of range": (1, 3), "0-d input": (1,), "-1 beside a zero size": (-1, 0),
                      "negative size": (-2, -3), "int unflattened_size": 6, "dim given by name": (2, 3)}[kind]
        if kind == "dim out of range":
            dim = d.choice((3, -4), "dim")
        elif kind == "0-d input":
            shape, dim = (), 0
        elif kind == "-1 beside a zero size":
            shape = (2, 0, 3)
        elif kind == "dim given by name":
            dim = "C"
        x = S.values(d, shape, dtype, "float", "input")
        return Case(op=op, dtype=dtype, params={"dim": dim, "unflattened_size": sizes, "sizes_as": "tuple"},
                    inputs={"input": x}, differentiable=("input",), invalid=True, note=kind, cotangent_seed=S.seed(d))

    return S.case_strategy(build)


def shuffle_cases(op: str) -> Callable[[str], Any]:
    """nn.ChannelShuffle(groups): (N, C, *) with 1-3 trailing dims, C = groups·k (k = 0: no
    channels), an empty batch or trailing dim as a corner."""

    def build(d: S.Drawer, dtype: str) -> Case:
        tier = S.tier(d)
        rank = d.integer(3, 5, "rank")
        groups = d.integer(1, 4, "groups")
        per_group = d.integer(1, 3, "channels per group")
        empty = rare(d, ("none", "batch", "channels", "trailing dim"), "empty")
        rest = S.sizes_within(d, rank - 1, SHAPE_BUDGET // (groups * per_group), hi=4, label="shape")
        shape = [rest[0], groups * per_group, *rest[1:]]
        if empty != "none":
            shape[{"batch": 0, "channels": 1}.get(empty, rank - 1)] = 0
        return _finish(d, op, dtype, tier, shape, {"groups": groups})

    return S.case_strategy(build)


def shuffle_invalid(op: str) -> Callable[[str], Any]:
    """groups not dividing C, groups <= 0, an input of 2 dims or fewer, a float groups."""

    def build(d: S.Drawer, dtype: str) -> Case:
        kind = d.choice(("groups not dividing C", "groups not positive", "2 dims or fewer", "float groups"),
                        "invalid kind")
        groups: Any = d.integer(2, 4, "groups")
        shape: tuple[int, ...] = (2, 2 * groups, 3)
        if kind == "groups not dividing C":
            shape = (2, groups * d.integer(1, 2, "k") + d.integer(1, groups - 1, "extra"), 3)
        elif kind == "groups not positive":
            groups = d.choice((0, -1), "bad groups")
        elif kind == "2 dims or fewer":
            shape = shape[:d.integer(1, 2, "rank")]
        else:
            groups = float(groups)
        x = S.values(d, shape, dtype, "float", "input")
        return Case(op=op, dtype=dtype, params={"groups": groups}, inputs={"input": x}, differentiable=("input",),
                    invalid=True, note=kind, cotangent_seed=S.seed(d))

    return S.case_strategy(build)


def _size_of(case: Case, tensor: str = "input") -> tuple[int, ...]:
    return tuple(case.inputs[tensor].shape)


def _values_regimes(empty: Any) -> tuple[Regime, ...]:
    """Non-finite values and signed zeros, and a non-contiguous input (``empty``: the pin that
    keeps every dim non-empty)."""
    return (
        Regime("non-finite values and signed zeros", lambda c: bool(np.any(~np.isfinite(c.inputs["input"]))
                                                                    | np.any(np.signbit(c.inputs["input"]))),
               {"tier": "float", "input.kind": "special", "empty": empty, "rank": 3},
               "NaN, ±inf and -0.0 are copied as they are"),
        Regime("non-contiguous input", lambda c: c.layout("input").kind in ("permuted", "strided", "expanded"),
               {"layout.input": "strided", "rank": 3}, "a reshape that cannot be a view"),
    )


def shape_regimes(kind: str) -> tuple[Regime, ...]:
    """The corners of Flatten, Unflatten and ChannelShuffle."""
    if kind == "flatten":
        return _values_regimes(False) + (
            Regime("empty dim", lambda c: 0 in _size_of(c), {"empty": True, "rank": 3}, "a dim of size 0"),
            Regime("0-d input", lambda c: len(_size_of(c)) == 0, {"arguments": "dims given", "rank": 0},
                   "flattens to (1,)"),
            Regime("negative dims", lambda c: "start_dim" in c.params and min(c.params["start_dim"],
                                                                              c.params["end_dim"]) < 0,
                   {"arguments": "dims given", "rank": 3, "start_dim negative": True, "end_dim negative": True},
                   "start_dim and end_dim counted from the end"),
            Regime("start_dim = end_dim", lambda c: "start_dim" in c.params and len(_size_of(c)) > 0 and (
                c.params["start_dim"] % len(_size_of(c)) == c.params["end_dim"] % len(_size_of(c))),
                {"arguments": "dims given", "rank": 3, "start": 1, "end": 1}, "a single dim: the shape is kept"),
            Regime("size-1 dims", lambda c: 1 in _size_of(c), {"shape[*]": 1, "rank": 3}, "dims of size 1"),
        )
    if kind == "unflatten":
        return _values_regimes(False) + (
            Regime("empty dim", lambda c: 0 in _size_of(c), {"empty": True, "with -1": False}, "a dim of size 0"),
            Regime("-1 inferred", lambda c: -1 in c.params["unflattened_size"], {"with -1": True}, ""),
            Regime("-1 inferring 0", lambda c: -1 in c.params["unflattened_size"] and 0 in _size_of(c),
                   {"with -1": True, "empty": True}, "(-1, k) of a dim of size 0"),
            Regime("sizes as a list", lambda c: c.params["sizes_as"] == "list", {"sizes as": "list"}, ""),
            Regime("sizes as torch.Size", lambda c: c.params["sizes_as"] == "torch.Size",
                   {"sizes as": "torch.Size"}, ""),
            Regime("negative dim", lambda c: c.params["dim"] < 0, {"dim negative": True}, ""),
            Regime("one size", lambda c: len(c.params["unflattened_size"]) == 1, {"factors": 1}, "no split"))
    return _values_regimes("none") + (
        Regime("groups = 1", lambda c: c.params["groups"] == 1, {"groups": 1}, "the identity"),
        Regime("groups = C", lambda c: c.params["groups"] == _size_of(c)[1] > 1,
               {"channels per group": 1, "groups": 3, "empty": "none"}, "the identity too"),
        Regime("3-d input", lambda c: len(_size_of(c)) == 3, {"rank": 3}, "(N, C, L)"),
        Regime("5-d input", lambda c: len(_size_of(c)) == 5, {"rank": 5}, "(N, C, D, H, W)"),
        Regime("channels_last", lambda c: c.layout("input").kind == "channels_last",
               {"rank": 4, "layout.input": "channels_last", "empty": "none"}, "channels-last strides"),
        Regime("empty batch", lambda c: _size_of(c)[0] == 0, {"empty": "batch"}, "N = 0"),
        Regime("no channels", lambda c: _size_of(c)[1] == 0, {"empty": "channels"}, "C = 0"),
    )
