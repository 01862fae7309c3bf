"""The window geometry every window operator shares (convolution, pooling, Fold/Unfold), and the
case strategies of Fold and Unfold.

Per spatial dim a window operator has a kernel k, a dilation d (span e = d·(k-1) + 1), a stride
s and a padding p; ``n`` windows (output positions, blocks) cover a padded extent

    E = (n - 1)·s + e + r,    0 <= r < s  (r: the extent the stride leaves over),

of an input of length L = E - 2p. Strategies draw n and r (and p up to what the operator
accepts) and derive L, so every case is valid by construction; ceil_mode and torch's drop rule
are corners of r (``conformance.strategies.pooling``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.numerics.window import fold_geometry, fold_image_size, pool_kind
from conformance.spec import Regime
from reference import fold as fold_ref


@dataclass(frozen=True)
class WindowDim:
    """One spatial dim of a window operator: kernel, stride, padding, dilation and the remainder
    r of the padded extent (see the module docstring)."""

    kernel: int
    dilation: int = 1
    padding: int = 0
    stride: int = 1
    remainder: int = 0

    @property
    def effective(self) -> int:
        """The span of one dilated window, d·(k-1) + 1."""
        return self.dilation * (self.kernel - 1) + 1

    def extent(self, windows: int) -> int:
        """The padded extent E that holds ``windows`` windows (and the remainder)."""
        return window_extent(windows, self.stride, self.effective, self.remainder)

    def input_length(self, windows: int) -> int:
        """L = E - 2p."""
        return self.extent(windows) - 2 * self.padding

    def windows(self, length: int) -> int:
        """Windows along an input of ``length`` (floor mode): (L + 2p - e) // s + 1."""
        return (length + 2 * self.padding - self.effective) // self.stride + 1


def window_extent(windows: int, stride: int, span: int, remainder: int = 0) -> int:
    """E = (n - 1)·s + e + r."""
    return (windows - 1) * stride + span + remainder


# ---------------------------------------------------------------------------------------------
# Fold / Unfold
# ---------------------------------------------------------------------------------------------

ZEROS_AND_SPECIALS = (0.0, -0.0, np.inf, -np.inf, np.nan)
FOLD_EXTENT = 32  # the largest padded image extent per dim
# Per dim: blocks that overlap (s < e), that tile (s = e), that leave gaps (s > e).
BLOCK_SPACINGS = ("any", "overlap", "tile", "gaps")


def _draw_fold_dim(d: S.Drawer, i: int) -> WindowDim:
    """Kernel, dilation and stride of one dim, the stride set by the drawn block spacing."""
    k = d.integer(1, 4, f"kernel_size[{i}]")
    dil = d.integer(1, 3, f"dilation[{i}]")
    e = dil * (k - 1) + 1
    spacing = d.choice(BLOCK_SPACINGS, f"spacing[{i}]")
    if spacing == "overlap" and e > 1:
        s = d.integer(1, e - 1, f"stride[{i}]")
    elif spacing == "tile":
        s = e
    elif spacing == "gaps":
        s = e + d.integer(1, 2, f"gap[{i}]")
    else:
        s = d.integer(1, 4, f"stride[{i}]")
    return WindowDim(k, dil, 0, s)


@dataclass(frozen=True)
class FoldDraft:
    """The structure of one Fold/Unfold case: batch (None: unbatched), channels, per-dim
    geometry, the image size and the blocks per dim."""

    batch: int | None
    channels: int
    dims: tuple[WindowDim, ...]
    image: tuple[int, ...]
    blocks: tuple[int, ...]

    @property
    def taps(self) -> int:
        return math.prod(dim.kernel for dim in self.dims)

    def params(self, d: S.Drawer, output_size: bool) -> dict[str, Any]:
        """Constructor arguments, each an int when equal per dim (sometimes) or a pair."""
        params: dict[str, Any] = {}
        if output_size:
            params["output_size"] = S.as_param(self.image, d, "output_size")
        for name, values in (("kernel_size", [x.kernel for x in self.dims]),
                             ("dilation", [x.dilation for x in self.dims]),
                             ("padding", [x.padding for x in self.dims]), ("stride", [x.stride for x in self.dims])):
            params[name] = S.as_param(tuple(values), d, name)
        return params


def draw_fold_draft(d: S.Drawer) -> FoldDraft:
    """Batch (or unbatched, or an empty batch), channels, then per dim the geometry, the blocks n
    (at most 6, within ``FOLD_EXTENT``), the remainder r and a padding up to the largest that
    leaves an image of >= 1 element (at most 3)."""
    unbatched = d.flag("unbatched")
    batch = None if unbatched else d.integer(1, 2, "batch")
    if batch is not None and d.flag("empty batch"):
        batch = 0
    channels = d.integer(1, 3, "channels")
    image, blocks, geometry = [], [], []
    for i, dim in enumerate([_draw_fold_dim(d, i) for i in range(2)]):
        # at most 6 blocks, and a padded extent of at most FOLD_EXTENT (reached by one block at least)
        n = d.integer(1, max(1, min(6, (FOLD_EXTENT - dim.effective - dim.stride + 1) // dim.stride + 1)),
                      f"blocks[{i}]")
        r = d.integer(0, dim.stride - 1, f"remainder[{i}]")
        p = d.integer(0, min(3, (window_extent(n, dim.stride, dim.effective, r) - 1) // 2), f"padding[{i}]")
        dim = WindowDim(dim.kernel, dim.dilation, p, dim.stride, r)
        geometry.append(dim)
        image.append(dim.input_length(n))
        blocks.append(n)
    return FoldDraft(batch, channels, tuple(geometry), tuple(image), tuple(blocks))


def _exact_limit(dtype: str, draft: FoldDraft) -> int:
    """The largest integer whose sums over the most (block, tap) pairs reading one position stay exact."""
    geo = fold_ref.fold_geometry(*(tuple(getattr(x, name) for x in draft.dims)
                                   for name in ("kernel", "dilation", "padding", "stride")))
    return S.exact_int_limit(dtype, fold_ref.max_overlap(draft.image, geo), factors=1)


def _fold_cases(op: str, fold: bool):
    """Unfold: an image (N, C, H, W) or (C, H, W); Fold: its columns (N, C·Π k, L) or (C·Π k, L)
    and the output_size. Every layout; float values with ±0, ±inf and NaN mixed in."""
    def build(d: S.Drawer, dtype: str) -> Case:
        draft = draw_fold_draft(d)
        lead = () if draft.batch is None else (draft.batch,)
        if fold:
            shape = lead + (draft.channels * draft.taps, math.prod(draft.blocks))
        else:
            shape = lead + (draft.channels,) + draft.image
        tier = S.tier(d)
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        x = S.values(d, shape, dtype, tier, "input", int_limit=_exact_limit(dtype, draft), layout=layout,
                     specials=ZEROS_AND_SPECIALS, some_special=True)
        return Case(op=op, dtype=dtype, params=draft.params(d, output_size=fold), inputs={"input": x},
                    differentiable=("input",), layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return S.case_strategy(build)


def fold_cases(op: str):
    return _fold_cases(op, fold=True)


def unfold_cases(op: str):
    return _fold_cases(op, fold=False)


FOLD_VIOLATIONS = ("zero kernel", "zero stride", "zero dilation", "negative padding", "no block")
UNFOLD_VIOLATIONS = (*FOLD_VIOLATIONS, "5-d input", "empty channels")
FOLD_ONLY_VIOLATIONS = ("channels not divisible by the kernel", "block count mismatch", "4-d input")


def _fold_invalid(op: str, fold: bool):
    """Parameters and shapes torch rejects (the reference raises ValueError): non-positive kernel,
    stride or dilation, negative padding, an image smaller than one block, the wrong rank, an
    empty channel dim; for Fold, rows not a multiple of Π kernel_size and a column count that is
    not the number of blocks."""
    violations = (*FOLD_VIOLATIONS, *FOLD_ONLY_VIOLATIONS) if fold else UNFOLD_VIOLATIONS

    def build(d: S.Drawer, dtype: str) -> Case:
        violation = d.choice(violations, "violation")
        kernel = [d.integer(1, 3, f"kernel[{i}]") for i in range(2)]
        image = [d.integer(k, k + 4, f"image[{i}]") for i, k in enumerate(kernel)]
        params: dict[str, Any] = {"kernel_size": tuple(kernel), "dilation": 1, "padding": 0, "stride": 1}
        dim = d.integer(0, 1, "violating dim")
        bad = [1, 1]
        if violation == "zero kernel":
            kernel[dim] = 0
            params["kernel_size"] = tuple(kernel)
        elif violation in ("zero stride", "zero dilation"):
            bad[dim] = 0
            params[violation.split()[1]] = tuple(bad)
        elif violation == "negative padding":
            params["padding"] = tuple(-1 if i == dim else 0 for i in range(2))
        elif violation == "no block":
            image[dim] = d.integer(1, kernel[dim], "short image") if kernel[dim] > 1 else 1
            kernel[dim] = max(kernel[dim], image[dim] + 1)
            params["kernel_size"] = tuple(kernel)
        rows = 2 * max(1, math.prod(kernel))
        blocks = max(1, math.prod(max(1, v - max(k, 1) + 1) for v, k in zip(image, kernel)))
        if fold:
            params = {"output_size": tuple(image), **params}
            shape: tuple[int, ...] = (1, rows, blocks)
            if violation == "channels not divisible by the kernel":
                shape = (1, rows + 1, blocks) if math.prod(kernel) > 1 else (1, 0, blocks)
            elif violation == "block count mismatch":
                shape = (1, rows, blocks + d.integer(1, 2, "extra blocks"))
            elif violation == "4-d input":
                shape = (1, 1, rows, blocks)
        else:
            shape = (1, 2, *image)
            if violation == "5-d input":
                shape = (1, 1, 2, *image)
            elif violation == "empty channels":
                shape = (1, 0, *image)
        x = DTYPES[dtype].round(np.random.default_rng(0).standard_normal(shape))
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    invalid=True, note=violation)

    return S.case_strategy(build)


def fold_invalid(op: str):
    return _fold_invalid(op, fold=True)


def unfold_invalid(op: str):
    return _fold_invalid(op, fold=False)


# -- regimes -------------------------------------------------------------------------------------

def _dims(case: Case) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    geo = fold_geometry(case)
    return geo.kernel, geo.stride, geo.dilation, tuple(p for p, _ in geo.pads)


def overlapping_blocks(case: Case) -> bool:
    """Some image position is read by several (block, tap) pairs: Fold sums them."""
    return fold_ref.max_overlap(fold_image_size(case), fold_geometry(case)) > 1


def gaps_between_blocks(case: Case) -> bool:
    """The stride is longer than a block's span: image positions no block reads (0 in Fold's
    output, 0 in Unfold's input gradient)."""
    kernel, stride, dilation, _ = _dims(case)
    return any(s > d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation))


def dilated_gaps(case: Case) -> bool:
    """Dilation > 1 with kernel > 1: the taps of one block skip positions."""
    kernel, _, dilation, _ = _dims(case)
    return any(d > 1 and k > 1 for k, d in zip(kernel, dilation))


def block_in_padding(case: Case) -> bool:
    """Some tap of some block lies in the padding (Unfold copies +0 there; Fold drops it)."""
    return any(p > 0 for p in _dims(case)[3])


def whole_block_in_padding(case: Case) -> bool:
    """Some block has every tap in the padding: an all-zero column (Unfold), a dropped one (Fold)."""
    geo = fold_geometry(case)
    image = fold_image_size(case)
    for size, k, s, d, (p, _) in zip(image, geo.kernel, geo.stride, geo.dilation, geo.pads):
        count = (size + 2 * p - d * (k - 1) - 1) // s + 1
        taps = np.arange(count)[:, None] * s - p + np.arange(k)[None, :] * d
        if (~((taps >= 0) & (taps < size)).any(axis=1)).any():
            return True
    return False


def unbatched(case: Case) -> bool:
    """Fold's input without a batch dim is (C·Π k, L), Unfold's (C, H, W)."""
    return case.inputs["input"].ndim == (2 if pool_kind(case) == "fold" else 3)


def empty_batch(case: Case) -> bool:
    return not unbatched(case) and case.inputs["input"].shape[0] == 0


def size_one_image(case: Case) -> bool:
    return 1 in fold_image_size(case)


def zeros_or_non_finite(case: Case) -> bool:
    """A zero (of either sign) or a non-finite value among the inputs (normals are never 0)."""
    x = case.inputs["input"]
    return bool(((x == 0) | ~np.isfinite(x)).any())


def fold_regimes(image_input: bool) -> tuple[Regime, ...]:
    """Corners of Fold (``image_input`` False) and Unfold (True)."""
    specials = {"tier": "float", "input.kind": "special", "empty batch": False}
    regimes = [
        Regime("overlapping blocks", overlapping_blocks,
               {"spacing[*]": "overlap", "kernel_size[*]": 3, "dilation[*]": 1, "blocks[*]": 2},
               "stride < d·(k-1)+1: positions read by several blocks (Fold sums them)"),
        Regime("gaps between blocks", gaps_between_blocks, {"spacing[0]": "gaps"},
               "stride > d·(k-1)+1: positions no block reads"),
        Regime("dilated taps", dilated_gaps, {"kernel_size[*]": 2, "dilation[*]": 3},
               "dilation > 1: the taps of a block skip positions"),
        Regime("block wholly in the padding", whole_block_in_padding,
               {"kernel_size[*]": 1, "spacing[*]": "tile", "blocks[*]": 3, "remainder[*]": 0, "padding[*]": 1},
               "a block whose taps are all padding: a zero column (Unfold), dropped (Fold)"),
        Regime("padding", block_in_padding, {"kernel_size[*]": 3, "blocks[*]": 2, "padding[*]": 1},
               "taps in the zero padding"),
        Regime("size-1 image dim", size_one_image,
               {"kernel_size[0]": 1, "blocks[0]": 1, "remainder[0]": 0, "padding[0]": 0},
               "an image 1 high: one block row"),
        Regime("empty batch", empty_batch, {"unbatched": False, "empty batch": True}, "N = 0"),
        Regime("signed zeros, ±inf and NaN", zeros_or_non_finite, specials,
               "-0 copied as -0 (Unfold); NaN and ±inf propagate through the sums (Fold)"),
        Regime("unbatched", unbatched, {"unbatched": True},
               "an unbatched input: (C, H, W)" if image_input else "an unbatched input: (C·Π k, L)"),
    ]
    if image_input:
        regimes.append(Regime("channels_last", lambda c: c.layout("input").kind == "channels_last",
                              {"unbatched": False, "empty batch": False, "layout.input": "channels_last"},
                              "an image stored channels-last"))
    return tuple(regimes)
