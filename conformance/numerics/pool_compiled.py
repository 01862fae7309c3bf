"""Models and predicates for pooling discrepancies of torch.compile (inductor, CPU).

Inductor lowers a max-pooling window of more than 25 taps (``window > 25``: not unrolled) to an
``argmax`` reduction over the kernel taps whose result, an *offset* into the kernel, is turned into
torch's flat index afterwards. The offset is computed from the reduction's loop variables after
inductor has reordered and vectorised those loops, and two steps get it wrong:

- the reduction loops are reordered by the input's strides (the largest stride outermost,
  ``pick_loop_order``), but the offset is the row-major flattening over the *reordered* loops,
  while it is decoded in the kernel's own order (depth, height, width);
- when the loop vectorised is a reduction loop with unit stride that is not the innermost one
  (a size-1 input dim after it has stride 0 and stays inside), lane ``i`` gets offset ``base + i``
  instead of ``base + i * (product of the sizes of the loops inside it)``.

The wrong offset names another tap (or one in the padding, or outside the input plane), which the
indices return and the backward scatters to (3-d: eager's ``max_pool3d_with_indices_backward``,
unchecked). Independently of the window's size, taps in the padding take part in the argmax as -inf, so a
window whose input taps are all -inf can pick a padding tap before them (eager: its first input
tap). ``inductor_maxpool_indices`` replays all that from the case: the geometry, the input's strides
and its values.

MaxPool1d and MaxPool2d get the same indices (same lowering, the same model). Their backward is
inductor's own, a ``scatter_reduce`` over each input plane that checks its indices: an index outside
the plane (the padding, -1 included) raises "index ... is out of bounds" instead of writing; the
3-d backward is eager's kernel, which checks nothing.

LPPool1d/2d/3d with norm_type ±inf are ±max_pool(±|x|): the same lowering on ±|x|, whose input
gradient is sign(x) times the max-pool gradient (the 3-d entries take them; ``_pooled_input``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np

from backends.base import Case, Result
from backends.torch_compile import runs_dynamic_graph
from conformance import strategies as S
from conformance.numerics import analysis_cache as AC
from conformance.numerics.vision import area_accepts_empty, resize_arguments, resize_geometry
from conformance.numerics.window import (
    Sliding,
    adaptive_output,
    batched_input,
    fractional3d_windows_fit_exactly,
    fractional_output,
    fractional_sample_shape,
    fractional_samples,
    has_empty_window,
    is_unbatched,
    maxpool3d_unbatched_channels_last_strides,
    per_dim_param,
    pool_kind,
    round_fn,
    sliding,
    spatial_dims,
)
from reference import pooling as ref

# inductor unrolls a max-pooling window of at most this many taps (no argmax reduction, no bug)
UNROLLED_WINDOW = 25


def _effective_strides(case: Case, g: Sliding | None = None) -> tuple[int, ...]:
    """The stride of each kernel loop in inductor's read of the input: the input's stride times the
    dilation, 0 for a size-1 dim (inductor's indexing drops size-1 dims); ``g``: the geometry (default the case's)."""
    x = case.inputs["input"]
    strides = S.torch_strides(tuple(x.shape), case.layout("input"))
    nd = spatial_dims(case)
    g = g or sliding(case)
    shape, strides = x.shape[-nd:], strides[-nd:]
    return tuple(int(st) * d if n > 1 else 0 for n, st, d in zip(shape, strides, g.dilation))


def inductor_reduction_loops(kernel: Sequence[int], strides: Sequence[int]) -> list[int]:
    """The kernel dims inductor loops over, outermost first: its loop-order comparator (a smaller
    stride inside; a tie, or a zero stride, keeps the later dim inside; size-1 loops outermost, then
    dropped) applied to the reduction loops."""

    def inner_first(a: int, b: int) -> int:
        if kernel[a] == 1 or kernel[b] == 1:
            return (kernel[a] == 1) - (kernel[b] == 1)
        a_first = strides[b] == 0 or strides[a] < strides[b]
        b_first = strides[a] == 0 or strides[b] < strides[a]
        if a_first != b_first:
            return -1 if a_first else 1
        return (b > a) - (b < a)

    order = sorted(reversed(range(len(kernel))), key=functools.cmp_to_key(inner_first))
    return [d for d in reversed(order) if kernel[d] > 1]


def inductor_tap_offsets(kernel: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """The offset inductor's argmax records for each kernel tap (row-major over ``kernel``): the tap's
    own row-major offset in an unrolled window (at most 25 taps)."""
    if int(np.prod(kernel)) <= UNROLLED_WINDOW:
        return np.arange(int(np.prod(kernel)), dtype=np.int64)
    return _reduction_tap_offsets(kernel, strides)


def _reduction_tap_offsets(kernel: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """The offset inductor's argmax reduction (not unrolled) records for each kernel tap (row-major over
    ``kernel``): row-major over its reordered loops, the vectorised unit-stride loop's lane i adding i."""
    loops = inductor_reduction_loops(kernel, strides)
    inner = {d: int(np.prod([kernel[e] for e in loops[i + 1:]], dtype=np.int64)) for i, d in enumerate(loops)}
    unit = [d for d in loops if strides[d] == 1]
    offsets = np.zeros(tuple(kernel), dtype=np.int64)
    for tap in itertools.product(*(range(k) for k in kernel)):
        offsets[tap] = sum(inner[d] * tap[d] for d in loops)
        if unit:  # the vectorised loop: lane i gets base + i
            offsets[tap] += tap[unit[0]] - inner[unit[0]] * tap[unit[0]]
    return offsets.reshape(-1)


def _axis_shape(axis: int, nd: int = 3) -> tuple[int, ...]:
    """The shape that lays a 1-d array along spatial axis ``axis`` of an ``nd``-d grid."""
    return tuple(-1 if a == axis else 1 for a in range(nd))


def _infinite_lp(case: Case) -> bool:
    """LPPool with norm_type ±inf: F.lp_pool*d is then ±max_pool*d(±|x|), the same lowering."""
    return pool_kind(case) == "lp" and math.isinf(float(case.params["norm_type"]))


def _applies(case: Case) -> bool:
    """A valid max-pooling case (MaxPool1d, 2d or 3d, or LPPool with norm_type ±inf)."""
    return (pool_kind(case) == "max" or _infinite_lp(case)) and not case.invalid


def _pooled_input(case: Case) -> np.ndarray:
    """The batched tensor max_pool reads: the input, or ±|input| for LPPool with norm_type ±inf."""
    x = batched_input(case)
    if not _infinite_lp(case):
        return x
    return np.abs(x) if float(case.params["norm_type"]) > 0 else -np.abs(x)


def inductor_maxpool_indices(case: Case) -> np.ndarray:
    """The flat indices (into each input plane, batched shape) inductor returns for a max-pooling
    case: per window the tap of the largest value (NaN largest; taps in the padding count as -inf;
    ties to the smallest recorded offset), its recorded offset decoded in the kernel's order. Computed
    once per case (the entries' predicates and their model all read it); not to be modified."""
    return AC.per_case(AC.case_key(case, "inductor max-pool indices"), lambda: _inductor_maxpool_indices(case))


def _inductor_maxpool_indices(case: Case, g: Sliding | None = None) -> np.ndarray:
    x = _pooled_input(case).astype(np.float64)
    g = g or sliding(case)
    spatial = x.shape[2:]
    nd = len(spatial)
    taps = ref.pool_taps(spatial, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
    offsets = inductor_tap_offsets(g.kernel, _effective_strides(case, g))
    n, c = x.shape[:2]
    outs = [t.out for t in taps]
    # values of every tap of every window: (N, C, *outs, taps) in row-major tap order
    vals = np.full((n, c, *outs, *g.kernel), -np.inf)
    for tap in itertools.product(*(range(k) for k in g.kernel)):
        grid = [np.clip(t.index[0][:, k], 0, s - 1).reshape(_axis_shape(a, nd)) for a, (t, k, s) in
                enumerate(zip(taps, tap, spatial))]
        inside = functools.reduce(np.logical_and, [t.valid[0][:, k].reshape(_axis_shape(a, nd))
                                                   for a, (t, k) in enumerate(zip(taps, tap))])
        got = x[(slice(None), slice(None), *grid)]
        vals[(Ellipsis, *tap)] = np.where(inside, got, -np.inf)
    vals = vals.reshape(n, c, *outs, -1)
    order = np.argsort(offsets, kind="stable")
    ranked = vals[..., order]
    nan = np.isnan(ranked)
    best = np.where(nan.any(axis=-1), nan.argmax(axis=-1), np.nanargmax(np.where(nan, -np.inf, ranked), axis=-1))
    chosen = offsets[order][best]
    decoded = np.unravel_index(chosen, tuple(g.kernel))
    flat = np.zeros((), dtype=np.int64)
    for axis, (t, k) in enumerate(zip(taps, decoded)):
        start = (np.arange(t.out) * g.stride[axis] - g.padding[axis]).reshape(_axis_shape(axis, nd))
        flat = flat * spatial[axis] + start + k * g.dilation[axis]
    return flat


def _eager_indices(case: Case) -> np.ndarray:
    g = sliding(case)
    with np.errstate(all="ignore"):
        _, idx = ref.max_pool(_pooled_input(case).astype(np.float64), g.kernel, g.stride, g.padding, g.dilation,
                              g.ceil_mode)
    return idx


def _scatter(case: Case, idx: np.ndarray, cotangent: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Eager's max-pool backward with indices ``idx``, which skips only the index -1 (its mark of an
    empty window) and checks no other: each window's cotangent added at its index in its plane's
    (contiguous) gradient buffer, wherever in the whole buffer that lands (outside it: lost); the
    sums, their magnitudes, and whether some index left the buffer."""
    x = batched_input(case)
    n, c = x.shape[:2]
    plane = int(np.prod(x.shape[2:], dtype=np.int64))
    base = (np.arange(n * c, dtype=np.int64) * plane).reshape(n, c, *(1,) * (x.ndim - 2))
    flat = (idx + base).reshape(-1)
    g = cotangent.astype(np.float64).reshape(-1)
    written = idx.reshape(-1) != -1
    inside = (flat >= 0) & (flat < n * c * plane) & written
    total = np.zeros(n * c * plane)
    mag = np.zeros(n * c * plane)
    np.add.at(total, flat[inside], g[inside])
    np.add.at(mag, flat[inside], np.abs(g[inside]))
    return total.reshape(x.shape), mag.reshape(x.shape), bool((written & ~inside).any())


def _cotangent(case: Case) -> np.ndarray | None:
    cot = case.cotangents.get("output")
    if cot is None:
        return None
    return cot[None] if is_unbatched(case) else cot


def _lp_sign(case: Case) -> np.ndarray:
    """d|x|/dx as torch's abs backward takes it (sign(x), 0 at 0): the factor LPPool ±inf's gradient
    puts on the max-pool gradient scattered to each input element."""
    return np.sign(batched_input(case).astype(np.float64))


def _wrong_index_shows(case: Case, idx: np.ndarray) -> bool:
    """Whether inductor's indices ``idx`` differ from eager's for some window and the difference shows:
    the indices are returned, or that window's cotangent is not 0 (LPPool ±inf: the input gradients,
    sign(x) times the scattered cotangents, differ)."""
    eager = _eager_indices(case)
    if _infinite_lp(case):
        cot = _cotangent(case)
        if cot is None or np.array_equal(idx, eager):
            return False
        sign = _lp_sign(case)
        return not np.array_equal(sign * _scatter(case, idx, cot)[0], sign * _scatter(case, eager, cot)[0])
    wrong = idx != eager
    if case.params.get("return_indices"):
        return bool(wrong.any())
    cot = _cotangent(case)
    return cot is not None and bool((wrong & (cot != 0)).any())


def _index_leaves_buffer(case: Case, idx: np.ndarray) -> bool:
    """Whether some index in ``idx`` lies outside the whole gradient buffer of a differentiable case."""
    return bool(case.differentiable) and _scatter(case, idx, np.zeros(idx.shape))[2]  # (-1 is skipped)


def inductor_maxpool3d_wrong_index_inside_buffer(case: Case) -> bool:
    """MaxPool3d or LPPool3d ±inf (whose backward is eager's unchecked kernel) where inductor's index (see the module
    docstring) differs from eager's where it shows, and every index stays inside the gradient buffer
    (the backward corrupts nothing)."""
    if not _applies(case) or spatial_dims(case) != 3:
        return False
    idx = inductor_maxpool_indices(case)
    return _wrong_index_shows(case, idx) and not _index_leaves_buffer(case, idx)


def inductor_maxpool3d_index_outside_buffer(case: Case) -> bool:
    """MaxPool3d or LPPool3d ±inf where some index inductor computes lies outside the whole gradient buffer: the
    backward writes out of bounds (heap corruption, or a crash)."""
    return (_applies(case) and spatial_dims(case) == 3 and bool(case.differentiable)
            and _index_leaves_buffer(case, inductor_maxpool_indices(case)))


def inductor_maxpool3d_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What inductor returns for MaxPool3d: its indices, and the input gradient
    eager's backward scatters from them (see the module docstring); for LPPool3d ±inf that gradient
    times sign(x) (the backward of ±|x|)."""
    idx = inductor_maxpool_indices(case)
    out: dict[str, object] = {}
    if case.params.get("return_indices"):
        out["indices"] = idx[0] if is_unbatched(case) else idx
    cot = _cotangent(case)
    if cot is not None:
        total, mag, _ = _scatter(case, idx, cot)
        if _infinite_lp(case):
            sign = _lp_sign(case)
            total, mag = sign * total, np.abs(sign) * mag
        if is_unbatched(case):
            total, mag = total[0], mag[0]
        out["grad.input"] = (total, mag)
    return out


def inductor_pool3d_unbatched_channels_last_strides_backward(case: Case) -> bool:
    """``maxpool3d_unbatched_channels_last_strides`` (MaxPool3d, LPPool3d ±inf) with a differentiable
    input: inductor lowers a forward without gradient itself and raises only when the backward is traced."""
    return maxpool3d_unbatched_channels_last_strides(case) and "input" in case.differentiable


def unpool3d_dynamic_offset_output_sizes(case: Case) -> bool:
    """A valid MaxUnpool3d case in a dynamic graph without output_size whose batch or channel size and
    every spatial size are symbolic (above 1) and at least two unpooled sizes carry an offset
    ((n - 1)·stride - 2·padding + kernel = n·stride + c, c ≠ 0): the products of such sizes are
    where inductor's value-range analysis fails (a superset: sympy simplifies some of them)."""
    if case.invalid or pool_kind(case) != "unpool" or spatial_dims(case) != 3 or not runs_dynamic_graph(case):
        return False
    if case.forward_kwargs.get("output_size") is not None:
        return False
    shape = batched_input(case).shape
    if max(shape[0], shape[1]) < 2 or min(shape[2:]) < 2:
        return False
    g = sliding(case)
    offsets = [k - 2 * p - s != 0 for k, s, p in zip(g.kernel, g.stride, g.padding)]
    return sum(offsets) >= 2


def _index_leaves_plane(case: Case, idx: np.ndarray) -> bool:
    """Whether some index in ``idx`` lies outside its input plane [0, plane size) (-1 included)."""
    plane = int(np.prod(batched_input(case).shape[2:], dtype=np.int64))
    return bool(((idx < 0) | (idx >= plane)).any())


def _applies_1d_2d(case: Case) -> bool:
    """A valid MaxPool1d/2d case without an empty window (entry compiled-maxpool-empty-window)."""
    return _applies(case) and spatial_dims(case) in (1, 2) and not has_empty_window(case)


def inductor_maxpool_1d_2d_wrong_index_inside_plane(case: Case) -> bool:
    """MaxPool1d/2d where inductor's index (see the module docstring) differs from eager's where it
    shows, and the backward, if any, runs: every index lies inside its plane (inductor's own backward
    scatters per plane, with a bounds check)."""
    if not _applies_1d_2d(case):
        return False
    idx = inductor_maxpool_indices(case)
    return _wrong_index_shows(case, idx) and not (case.differentiable and _index_leaves_plane(case, idx))


def inductor_maxpool_1d_2d_backward_index_outside_plane(case: Case) -> bool:
    """Differentiable MaxPool1d/2d where some index inductor computes lies outside its input plane:
    inductor's backward (scatter_reduce over each plane) raises "index ... is out of bounds"."""
    return (_applies_1d_2d(case) and bool(case.differentiable)
            and _index_leaves_plane(case, inductor_maxpool_indices(case)))


def inductor_maxpool_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What inductor returns for MaxPool1d/2d/3d: its indices, and the input gradient scattered from
    them (the same for the 3-d entries: ``inductor_maxpool3d_model``)."""
    return inductor_maxpool3d_model(case, reference, got)



def bicubic_backward_scatters_one_column(case: Case) -> bool:
    """A non-empty bicubic upsampling, not channels_last, whose input gradient is computed and whose innermost output
    dim of two or more elements (``size``, or ``floor(input size * scale_factor)``) comes from an input dim of size 1:
    the dim inductor vectorises the backward's scatter-add along (every tap lands on the one input element)."""
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if len(shape) != 4 or 0 in shape[:2] or "input" not in case.differentiable:
        return False
    if case.layout("input").kind == "channels_last":
        return False
    size, scale = case.params.get("size"), case.params.get("scale_factor")
    if size is not None:
        out = list(size) if isinstance(size, (list, tuple)) else [size, size]
    else:
        factors = list(scale) if isinstance(scale, (list, tuple)) else [scale, scale]
        out = [math.floor(n * float(f)) for n, f in zip(shape[2:], factors)]
    wide = [d for d in (0, 1) if int(out[d]) >= 2]
    return bool(wide) and shape[2 + wide[-1]] == 1


def bicubic_dynamic_empty_width(case: Case) -> bool:
    """An invalid bicubic upsampling run on a dynamic graph whose factor (not recomputed) floors an input width of two
    or more (a symbolic size: 0 and 1 are specialised) to an empty output width: the decomposition checks no output
    size, and inductor's lowering of that empty width asserts (eager raises "sizes should be greater than 0")."""
    scale = case.params.get("scale_factor")
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if (not case.invalid or scale is None or case.params.get("size") is not None
            or case.params.get("recompute_scale_factor") or len(shape) != 4):
        return False
    width_factor = float(scale[-1] if isinstance(scale, (tuple, list)) else scale)
    return (runs_dynamic_graph(case) and width_factor > 0 and shape[3] >= 2
            and math.floor(shape[3] * width_factor) == 0)


def bicubic_factor_empties_output(case: Case) -> bool:
    """An invalid bicubic upsampling of an input with channels whose nonzero factors (not recomputed) floor some output
    length to 0: the decomposition torch.compile traces checks no output size (eager raises "Input and output sizes
    should be greater than 0"; a recomputed factor, a size of 0 or no channel fail or are judged elsewhere)."""
    scale = case.params.get("scale_factor")
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if (not case.invalid or scale is None or case.params.get("size") is not None
            or case.params.get("recompute_scale_factor") or len(shape) != 4 or shape[1] == 0):
        return False
    factors = [float(f) for f in scale] if isinstance(scale, (tuple, list)) else [float(scale)] * 2
    return all(f > 0 for f in factors) and any(math.floor(n * f) == 0 for n, f in zip(shape[2:], factors))


def inductor_accepts_bicubic_empty_output(case: Case) -> bool:
    """``bicubic_factor_empties_output`` where inductor compiles the call (not ``bicubic_dynamic_empty_width``)."""
    return bicubic_factor_empties_output(case) and not bicubic_dynamic_empty_width(case)


# -- FractionalMaxPool2d/3d: inductor's windows and argmax --------------------------------------------------------
# Inductor's lowering of aten.fractional_max_pool2d/3d (``_fractional_pooling_offsets``) differs from eager's kernel in
# three ways. (1) It reads the sample of spatial dim d at ``[..., nd - 1 - d]``: torch's 2-d order (width, height) but
# reversed for 3-d, whose order is depth, height, width. (2) It evaluates the window starts trunc((i + u)·alpha) -
# trunc(u·alpha) with alpha = (L - k)/(n - 1) in float64 and i + u in the sample's opmath type (float32 for float32,
# float16 and bfloat16), where eager rounds every step to the input's dtype. (3) Its argmax over a window is a
# reduction (unless the window has fewer than 25 taps and the output more than one element) whose loops are reordered
# by the input's strides, its offset decoded in kernel order (MaxPool's bug, ``_reduction_tap_offsets``).


def _fractional_parts(case: Case, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(output, flat indices), batched, of eager's FractionalMaxPool pooling of the case with ``samples`` (N, C, nd)."""
    x = batched_input(case).astype(np.float64)
    kernel = per_dim_param(case.params["kernel_size"], spatial_dims(case))
    with np.errstate(all="ignore"):
        return ref.fractional_max_pool(x, kernel, fractional_output(case, x), samples, round_fn(case))


def _applies_fractional(case: Case) -> bool:
    """A valid, non-empty FractionalMaxPool2d/3d case whose windows torch accepts (3-d: out + k - 1 < in per dim; else
    it raises first: compiled-fractional-max-pool3d-rejects-windows-that-fit-exactly)."""
    if case.invalid or pool_kind(case) != "fractional" or spatial_dims(case) not in (2, 3):
        return False
    if batched_input(case).size == 0:
        return False
    return spatial_dims(case) == 2 or not fractional3d_windows_fit_exactly(case)


def _inductor_fractional_starts(case: Case, x: np.ndarray, kernel: Sequence[int],
                                out: Sequence[int]) -> list[np.ndarray]:
    """Inductor's window starts (planes, out_d) per spatial dim d: sample [..., nd - 1 - d], i + u in the opmath
    type, alpha and the products in float64, truncated; the last window at L - k."""
    nd = len(kernel)
    u = fractional_samples(case).reshape(fractional_sample_shape(case)).reshape(-1, nd).astype(np.float64)
    opmath = np.float64 if case.dtype == "float64" else np.float32
    starts = []
    for d in range(nd):
        size, k, o = int(x.shape[2 + d]), int(kernel[d]), int(out[d])
        ud = u[:, nd - 1 - d]
        st = np.full((u.shape[0], o), size - k, dtype=np.int64)
        if o > 1:
            alpha = np.float64(size - k) / np.float64(o - 1)
            s = (np.arange(o - 1).astype(opmath)[None, :] + ud.astype(opmath)[:, None]).astype(np.float64)
            st[:, :-1] = (np.trunc(s * alpha) - np.trunc(ud * alpha)[:, None]).astype(np.int64)
        starts.append(st)
    return starts


def _inductor_fractional(case: Case) -> dict[str, np.ndarray]:
    """What inductor's FractionalMaxPool2d/3d returns (batched): output and indices of its windows and argmax (see
    above), and the input gradient (with its magnitudes) that eager's backward (an inductor fallback) scatters."""
    x = batched_input(case).astype(np.float64)
    n, c, *spatial = x.shape
    nd = len(spatial)
    kernel = per_dim_param(case.params["kernel_size"], nd)
    out = fractional_output(case, x)
    starts = _inductor_fractional_starts(case, x, kernel, out)
    size = int(np.prod(kernel))
    if size < UNROLLED_WINDOW and n * c * int(np.prod(out)) != 1:
        offsets = np.arange(size, dtype=np.int64)
    else:
        strides = S.torch_strides(tuple(case.inputs["input"].shape), case.layout("input"))[-nd:]
        offsets = _reduction_tap_offsets(kernel, [int(st) if sz > 1 else 0 for sz, st in zip(spatial, strides)])
    lay = lambda d, first, second: (n * c, *(first if a == d else 1 for a in range(nd)),  # noqa: E731
                                    *(second if a == d else 1 for a in range(nd)))
    grid = [np.clip(starts[d][:, :, None] + np.arange(kernel[d])[None, None, :], 0, spatial[d] - 1).reshape(
        lay(d, out[d], kernel[d])) for d in range(nd)]
    p = np.arange(n * c).reshape((-1,) + (1,) * (2 * nd))
    vals = x.reshape(n * c, *spatial)[(p, *grid)].reshape(n * c, *out, size)
    nan = np.isnan(vals)
    with np.errstate(all="ignore"):
        output = np.where(nan.any(axis=-1), np.nan, np.max(np.where(nan, -np.inf, vals), axis=-1))
    order = np.argsort(offsets, kind="stable")
    ranked, rnan = vals[..., order], nan[..., order]
    best = np.where(rnan.any(axis=-1), rnan.argmax(axis=-1), np.argmax(np.where(rnan, -np.inf, ranked), axis=-1))
    decoded = np.unravel_index(offsets[order][best], tuple(kernel))
    flat = np.zeros((), dtype=np.int64)
    for d in range(nd):
        flat = flat * spatial[d] + starts[d].reshape(lay(d, out[d], 1)[:nd + 1]) + decoded[d]
    idx = flat.reshape(n, c, *out)
    got: dict[str, np.ndarray] = {"output": output.reshape(n, c, *out), "indices": idx}
    cot = _cotangent(case)
    if cot is not None:
        got["grad.input"], got["grad.magnitude"], _ = _scatter(case, idx, cot)
    return got


def inductor_fractional_wrong_windows(case: Case) -> bool:
    """FractionalMaxPool2d/3d whose result as inductor computes it (``_inductor_fractional``) differs from eager's
    where it shows: the output, the indices when returned, or the input gradient when computed."""
    if not _applies_fractional(case):
        return False
    got = _inductor_fractional(case)
    out, idx = _fractional_parts(case, fractional_samples(case).reshape(fractional_sample_shape(case)))
    if not np.array_equal(got["output"], out, equal_nan=True):
        return True
    if case.params.get("return_indices") and not np.array_equal(got["indices"], idx):
        return True
    cot = _cotangent(case)
    if "grad.input" not in got or cot is None:
        return False
    return not np.array_equal(got["grad.input"], _scatter(case, idx, cot)[0])


def inductor_fractional_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What inductor returns for FractionalMaxPool2d/3d (``_inductor_fractional``)."""
    pred = _inductor_fractional(case)
    strip = (lambda a: a[0]) if is_unbatched(case) else (lambda a: a)
    out: dict[str, object] = {"output": strip(pred["output"])}
    if case.params.get("return_indices"):
        out["indices"] = strip(pred["indices"])
    if "grad.input" in pred:
        out["grad.input"] = (strip(pred["grad.input"]), strip(pred["grad.magnitude"]))
    return out


def _strides_follow_sizes(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether every stride, size-1 dims included, is the product of the sizes of the dims with smaller strides (the
    dims sorted by stride, size-1 dims first among equals): strides a dynamic graph expresses through the sizes."""
    order = sorted(range(len(shape)), key=lambda d: (strides[d], shape[d] != 1))
    expected = 1
    for d in order:
        if strides[d] != expected:
            return False
        expected *= shape[d]
    return True


def fractional3d_dynamic_non_dense_backward(case: Case) -> bool:
    """FractionalMaxPool3d on a dynamic graph with a differentiable input whose strides do not follow from its sizes
    (a strided view, even one stepping only along a size-1 dim): its backward, aten.fractional_max_pool3d_backward,
    has no meta kernel, and the fake tensor's fallback (running the real kernel) needs concrete strides, which such
    an input's stride symbols are not."""
    if not _applies_fractional(case) or spatial_dims(case) != 3 or "input" not in case.differentiable:
        return False
    if not runs_dynamic_graph(case):
        return False
    shape = tuple(int(n) for n in case.inputs["input"].shape)
    return not _strides_follow_sizes(shape, S.torch_strides(shape, case.layout("input")))


def adaptive_avg2d_dynamic_none_output(case: Case) -> bool:
    """A valid AdaptiveAvgPool2d case on a dynamic graph whose output_size is None along a spatial dim of two or more
    (a symbol: 0 and 1 are specialised): the output size there is the input's symbolic size, and inductor's lowering
    of aten._adaptive_avg_pool2d asks sympy whether its symbolic window (> 25) needs the fallback, which raises."""
    if case.invalid or pool_kind(case) != "adaptive-avg" or spatial_dims(case) != 2 or not runs_dynamic_graph(case):
        return False
    out = case.params.get("output_size")
    if not isinstance(out, (tuple, list)) or 0 in out:
        return False
    spatial = case.inputs["input"].shape[-2:]
    return any(o is None and int(n) >= 2 for o, n in zip(out, spatial))


def bicubic_antialias_dynamic_symbolic_backward(case: Case) -> bool:
    """A valid bicubic antialiased resize whose input gradient is traced on a dynamic graph with some symbolic size
    (an input size, or a ``size`` argument, of two or more: 0 and 1 are specialised; outputs from a factor on
    specialised sizes are constants): the C++ meta of aten._upsample_bicubic2d_aa_backward takes int lists only."""
    p = case.params
    if (case.invalid or p.get("mode") != "bicubic" or not p.get("antialias") or "input" not in case.differentiable
            or not runs_dynamic_graph(case)):
        return False
    size = p.get("size")
    sizes = [] if size is None else list(size) if isinstance(size, (tuple, list)) else [size]
    return any(int(n) >= 2 for n in np.shape(case.inputs["input"])) or any(int(s) >= 2 for s in sizes)


# -- AdaptiveMaxPool: inductor's decomposition (torch/_decomp adaptive_max_pool2d/3d) -------------------------------
# Output size 0: empty tensors; global pooling (every output size 1): amax and argmax; every input size a multiple of
# its output size: max_pool{2,3}d_with_indices with kernel = stride = input // output (the lowering above);
# otherwise 3-d runs eager's kernel (fallback), 2-d (and 1-d, which torch runs as 2-d on (N, C, 1, L)) inductor's
# own adaptive lowering when the largest window, ceil((in + out - 1) / out) per dim, has at most 25 taps, else
# eager's kernel. The backward is eager's adaptive_max_pool{2,3}d_backward on inductor's indices.


def _adaptive_sizes(case: Case) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input spatial sizes, output sizes) of an AdaptiveMaxPool case as torch runs it (1-d as 2-d: (1, L), (1, o))."""
    spatial = tuple(int(n) for n in batched_input(case).shape[2:])
    out = tuple(int(o) for o in adaptive_output(case, spatial))
    if len(spatial) == 1:
        return (1, *spatial), (1, *out)
    return spatial, out


def _adaptive_max_applies(case: Case) -> bool:
    """A valid AdaptiveMaxPool case with a non-empty output."""
    return pool_kind(case) == "adaptive-max" and not case.invalid and 0 not in _adaptive_sizes(case)[1]


def _adaptive_decomposed_kernel(case: Case) -> tuple[int, ...] | None:
    """The kernel of the max pooling inductor's decomposition turns the case into (every input size a multiple of
    its output size, not global pooling); None where another path runs."""
    if not _adaptive_max_applies(case):
        return None
    spatial, out = _adaptive_sizes(case)
    if all(o == 1 for o in out) or any(s % o for s, o in zip(spatial, out)):
        return None
    return tuple(s // o for s, o in zip(spatial, out))[-spatial_dims(case):]


def _adaptive_inductor_indices(case: Case, kernel: tuple[int, ...]) -> np.ndarray:
    """The indices inductor's max-pool lowering computes for the decomposed AdaptiveMaxPool case (batched shape)."""
    nd = len(kernel)
    g = Sliding(kernel, kernel, (0,) * nd, (1,) * nd, False)
    return AC.per_case(AC.case_key(case, "inductor adaptive max-pool indices"),
                       lambda: _inductor_maxpool_indices(case, g))


def _channels_last_read_as_contiguous(idx: np.ndarray) -> np.ndarray:
    """What a kernel that reads a channels_last_3d (N, D, H, W, C in memory) index tensor as contiguous sees."""
    return np.ascontiguousarray(idx.transpose(0, 2, 3, 4, 1)).reshape(idx.shape)


def _adaptive3d_channels_last_indices(case: Case) -> np.ndarray | None:
    """The indices of a decomposed AdaptiveMaxPool3d case on a channels_last_3d-like (5-d) input; None otherwise."""
    kernel = _adaptive_decomposed_kernel(case)
    x = case.inputs["input"]
    if kernel is None or spatial_dims(case) != 3 or x.ndim != 5:
        return None
    if not S.channels_last_like(tuple(x.shape), S.torch_strides(tuple(x.shape), case.layout("input"))):
        return None
    return _adaptive_inductor_indices(case, kernel)


def inductor_adaptive_max3d_channels_last_backward(case: Case) -> bool:
    """AdaptiveMaxPool3d decomposed into a max pooling (see above) of a 5-d input whose strides torch takes for
    channels_last_3d: inductor's index tensor is channels_last too, and eager's adaptive_max_pool3d_backward reads
    it as contiguous, which sends some cotangent (not 0) elsewhere."""
    idx = _adaptive3d_channels_last_indices(case)
    cot = _cotangent(case)
    if idx is None or cot is None or "input" not in case.differentiable:
        return False
    misread = _channels_last_read_as_contiguous(idx)
    return not np.array_equal(_scatter(case, misread, cot)[0], _scatter(case, idx, cot)[0])


def inductor_adaptive_max3d_channels_last_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """The input gradient of ``inductor_adaptive_max3d_channels_last_backward``: the cotangents scattered to the
    channels_last indices read in contiguous order."""
    idx = _adaptive3d_channels_last_indices(case)
    cot = _cotangent(case)
    if idx is None or cot is None:
        return {}
    total, mag, _ = _scatter(case, _channels_last_read_as_contiguous(idx), cot)
    return {"grad.input": (total, mag)}


def inductor_adaptive_max_nan_index(case: Case) -> bool:
    """AdaptiveMaxPool1d/2d on inductor's own adaptive lowering (uneven windows, not global pooling, at most 25 taps
    in the largest window) with a window holding a NaN and a number whose first tap is not NaN, where the index
    shows (returned, or a cotangent not 0 there): the lowering keeps the first largest tap before the first NaN."""
    if not _adaptive_max_applies(case) or spatial_dims(case) not in (1, 2):
        return False
    spatial, out = _adaptive_sizes(case)
    if all(o == 1 for o in out) or all(s % o == 0 for s, o in zip(spatial, out)):
        return False  # amax/argmax, or a max pooling: a NaN's index
    if math.prod(-(-(s + o - 1) // o) for s, o in zip(spatial, out)) > UNROLLED_WINDOW:
        return False  # eager's kernel
    x = batched_input(case)
    nd = x.ndim - 2
    bounds = [ref.adaptive_bounds(s, o) for s, o in zip(spatial[-nd:], out[-nd:])]
    nan = np.isnan(x)
    cot = _cotangent(case)
    axes = tuple(range(2, x.ndim))
    for out_index in np.ndindex(*(len(b[0]) for b in bounds)):
        window = (Ellipsis, *(slice(b[0][i], b[1][i]) for b, i in zip(bounds, out_index)))
        first = (Ellipsis, *(int(b[0][i]) for b, i in zip(bounds, out_index)))
        wrong = nan[window].any(axis=axes) & ~nan[first]
        if not case.params.get("return_indices"):
            if cot is None:
                return False
            wrong = wrong & (cot[(Ellipsis, *out_index)] != 0)
        if wrong.any():
            return True
    return False


# -- Upsample(mode='area'): inductor's adaptive average pooling on symbolic sizes ---------------------------------


def inductor_area_symbolic_window_check(case: Case) -> bool:
    """A valid 4-d area resize (adaptive_avg_pool2d) by scale_factor on a dynamic graph with a spatial dim whose input
    length is at least 3 (a symbol: dynamo specialises 0 and 1) and output length at least 2: the output length is an
    expression of the input's symbol, and inductor's lowering cannot decide its window size against its unrolling
    limit (> 25) (measured: input length 2 and output length 1 compile; a given size compiled in the ci runs)."""
    args = resize_arguments(case)
    if case.invalid or args.get("mode") != "area" or args.get("scale_factor") is None or case.inputs["input"].ndim != 4:
        return False
    if not runs_dynamic_graph(case):
        return False
    g = resize_geometry(case)
    return any(n >= 3 and o >= 2 for n, o in zip(g.in_sizes, g.out_sizes))


def area_accepts_empty_backward_checked(case: Case) -> bool:
    """``vision.area_accepts_empty`` (eager's forward returns the empty tensor) in a case whose input requires a
    gradient: AOTAutograd traces adaptive_avg_pool's backward while compiling, and its check of the empty output
    gradient raises there (eager would raise only when backward runs)."""
    return "input" in case.differentiable and area_accepts_empty(case)


def area_accepts_empty_forward_only(case: Case) -> bool:
    """``vision.area_accepts_empty`` in a case without gradients: compiled torch returns the empty tensor, as eager."""
    return "input" not in case.differentiable and area_accepts_empty(case)
