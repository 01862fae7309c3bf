"""What the known discrepancies of the window operators compute (conformance/known/pooling.toml,
torch_compile*.toml): the MaxPool empty-window model (the out-of-window index torch returns, and
the gradient it scatters there) and the geometry and value predicates of the compiled pooling
discrepancies. The window geometry itself is ``conformance.numerics.window``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from backends.base import Case, Result
from conformance.numerics.window import (
    _torch_memory_format_channels_last,
    batched_input,
    batched_like,
    case_taps,
    has_empty_window,
    like_input,
    pool_kind,
    sliding,
    unpool_geometry,
)
from reference import pooling as ref


def _empty_window_starts(case: Case, out_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(empty, first, shallow): over the output positions of a MaxPool case, whether the window
    has no tap inside the input, and the flat in-plane index of its first tap at or past the low
    padding edge (start + ceil(pad_excess / dilation)·dilation per dim, flattened row-major: torch's
    index for such a window, measured on the CPU); ``shallow`` is that index without a 3-d window's
    depth term (torch's channels-last 3-d kernel, as in ``maxpool3d_channels_last_neginf_window``)."""
    x = batched_input(case)
    spatial = x.shape[2:]
    g = sliding(case)
    empty = np.zeros(tuple(out_shape), dtype=bool)
    first = np.zeros(tuple(out_shape), dtype=np.int64)
    shallow = np.zeros(tuple(out_shape), dtype=np.int64)
    for d, size in enumerate(spatial):
        o = np.arange(out_shape[d])
        start = o * g.stride[d] - g.padding[d]
        step = g.dilation[d]
        valid_start = np.where(start < 0, start + (-start + step - 1) // step * step, start)
        end = np.minimum(start + (g.kernel[d] - 1) * step + 1, size)
        shape = [1] * len(spatial)
        shape[d] = out_shape[d]
        empty = empty | (valid_start >= end).reshape(shape)
        first = first * size + valid_start.reshape(shape)
        shallow = shallow * size + (0 if len(spatial) == 3 and d == 0 else valid_start.reshape(shape))
    return empty, first, shallow


def _scatter_empty(grad: np.ndarray, empty: np.ndarray, index: np.ndarray, cot: np.ndarray,
                   channels_last: bool) -> np.ndarray:
    """``grad`` (N, C, *spatial) plus each empty window's cotangent at its index within the memory
    of an (N, C, plane) or (N, plane, C) buffer; offsets past the buffer are dropped."""
    n, c = grad.shape[:2]
    plane = int(np.prod(grad.shape[2:], dtype=np.int64))
    mask = np.broadcast_to(empty, cot.shape)
    ones = [1] * (cot.ndim - 2)
    ns = np.broadcast_to(np.arange(n).reshape(n, 1, *ones), cot.shape)[mask]
    cs = np.broadcast_to(np.arange(c).reshape(1, c, *ones), cot.shape)[mask]
    idx, values = np.broadcast_to(index, cot.shape)[mask].astype(np.int64), cot[mask]
    offset = (ns * plane + idx) * c + cs if channels_last else (ns * c + cs) * plane + idx
    inside = (offset >= 0) & (offset < grad.size)
    if channels_last:
        n2, rest = np.divmod(offset[inside], plane * c)
        p2, c2 = np.divmod(rest, c)
    else:
        nc, p2 = np.divmod(offset[inside], plane)
        n2, c2 = np.divmod(nc, c)
    flat = grad.reshape(n, c, plane).copy()
    np.add.at(flat, (n2, c2, p2), values[inside])
    return flat.reshape(grad.shape)


def _nearest_scatter(grad: np.ndarray, empty: np.ndarray, indices: list[np.ndarray], cot: np.ndarray,
                     theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of the candidate scatters (each index rule, contiguous or channels-last memory), the one
    nearest the backend's gradient ``theirs``, with the magnitude of its accumulations: a sum of k
    terms has k·Σ|terms| (each addition rounds once, in any order)."""
    options = [(index, layout) for index in indices for layout in (False, True)]
    candidates = [_scatter_empty(grad, empty, index, cot, layout) for index, layout in options]
    with np.errstate(all="ignore"):
        distance = [float(np.nan_to_num(np.abs(c - theirs), nan=np.inf).max(initial=0.0)) for c in candidates]
    best = int(np.argmin(distance))
    zero = np.zeros_like(grad)
    terms = 1 + _scatter_empty(zero, empty, options[best][0], np.ones_like(cot), options[best][1])
    total = np.abs(grad) + _scatter_empty(zero, empty, options[best][0], np.abs(cot), options[best][1])
    return candidates[best], terms * total


def maxpool_empty_window_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """What ``maxpool-empty-window-out-of-window-index`` predicts torch computes: the reference's
    results, except that an empty window's index is free and its cotangent is added to the gradient
    at that index within the input's memory, which may be another element, another channel, or past
    the buffer (dropped here: torch may then crash). The index is torch's own when returned;
    otherwise the window's first tap past the low padding edge (``_empty_window_starts``, with or
    without the depth term of the channels-last 3-d kernel). The memory is contiguous or
    channels-last. Of these few candidates, the one nearest the backend's gradient is predicted,
    with the magnitude of its accumulations (``(value, magnitude)``): any other wrong value stays
    unexplained."""
    out = batched_like(case, np.asarray(reference.outputs["output"]))
    predicted: dict[str, np.ndarray] = {}
    empty, first, shallow = _empty_window_starts(case, out.shape[2:])
    returned = None
    if "indices" in got.outputs and "indices" in reference.outputs:
        returned = batched_like(case, np.asarray(got.outputs["indices"]))
        predicted["indices"] = like_input(case, np.where(empty, returned, batched_like(
            case, np.asarray(reference.outputs["indices"]))))
    cot = case.cotangents.get("output")
    if cot is None or "input" not in reference.grads or "input" not in got.grads:
        return predicted
    grad = batched_like(case, np.asarray(reference.grads["input"], dtype=np.float64))
    cot = np.broadcast_to(batched_like(case, np.asarray(cot, dtype=np.float64)), out.shape)
    indices = [returned] if returned is not None else [first, shallow]
    theirs = batched_like(case, np.asarray(got.grads["input"], dtype=np.float64))
    value, magnitude = _nearest_scatter(grad, empty, indices, cot, theirs)
    predicted["grad.input"] = (like_input(case, value), like_input(case, magnitude))
    return predicted


# ---------------------------------------------------------------------------------------------
# Predicates of known torch.compile discrepancies (conformance/known/torch_compile*.toml)
# ---------------------------------------------------------------------------------------------


def ceil_window_divisor_short(case: Case) -> bool:
    """AvgPool with ceil_mode and count_include_pad (no divisor_override), or LPPool with ceil_mode
    (an average pool of x^p without padding), where a window with a nonzero cotangent runs past
    input + padding: its divisor counts fewer positions than the kernel has (inductor's backward
    divides by the kernel's size)."""
    kind, p = pool_kind(case), case.params
    if kind not in ("avg", "lp") or not p.get("ceil_mode", False):
        return False
    if kind == "avg" and (not p.get("count_include_pad", True) or p.get("divisor_override") is not None):
        return False
    g = sliding(case)
    padding = g.padding if kind == "avg" else (0,) * len(g.kernel)
    divisor = ref.avg_divisor(batched_input(case).shape[2:], g.kernel, g.stride, padding, True, True)
    short = divisor < math.prod(g.kernel)
    cotangent = case.cotangents.get("output")
    return bool(short.any()) if cotangent is None else bool(np.any((np.asarray(cotangent) != 0) & short))


def unpool_index_outside_plane_inside_buffer(case: Case) -> bool:
    """MaxUnpool with an output size torch accepts and an index outside its channel's plane
    [0, plane) whose position in the whole output buffer, (n·C + c)·plane + index, still lies inside
    it, a negative position counting from the buffer's end (inductor checks and wraps an index
    against the buffer only)."""
    if pool_kind(case) != "unpool":
        return False
    kernel, stride, padding = unpool_geometry(case)
    x, idx = batched_input(case), batched_input(case, "indices")
    out = ref.unpool_output_size(x.shape[2:], kernel, stride, padding, case.forward_kwargs.get("output_size"))
    plane, planes = math.prod(out), x.shape[0] * x.shape[1]
    flat = idx.reshape(planes, -1)
    position = np.arange(planes)[:, None] * plane + flat
    return bool(np.any(((flat < 0) | (flat >= plane)) & (position >= -planes * plane) & (position < planes * plane)))


def empty_window_index_past_plane(case: Case) -> bool:
    """Some max-pooling window lies wholly in the padding and torch's index for it (the first tap
    at or past the low padding edge, ``_empty_window_starts``; without the depth term in the
    channels-last 3-d kernel) is past the input plane: gathering a tangent or a cotangent's
    derivative there raises (forward mode, double backward), where an index inside the plane
    gathers silently."""
    if pool_kind(case) != "max":
        return False
    empty, index, plane = _empty_window_index(case)  # (empty.any(): has_empty_window)
    return bool(np.any(empty & (index >= plane)))


def _empty_window_index(case: Case) -> tuple[np.ndarray, np.ndarray, int]:
    """(empty, index, plane size): torch's index for each output position's window (as in
    ``empty_window_index_past_plane``) and whether the window is empty."""
    spatial = batched_input(case).shape[2:]
    out = tuple(t.valid.shape[-2] for t in case_taps(case, spatial))
    empty, first, shallow = _empty_window_starts(case, out)
    index = shallow if len(spatial) == 3 and _torch_memory_format_channels_last(case) else first
    return empty, index, math.prod(spatial)


def empty_window_gradient_in_plane(case: Case) -> bool:
    """Double backward of a MaxPool case shows the empty-window bug in its first-order gradient:
    every empty window's index lies in the input plane (one past it raises first:
    ``empty_window_index_past_plane``) and some empty window has a non-zero cotangent, which the
    backward adds to the element at that index (an element of the same channel)."""
    cot = case.cotangents.get("output")
    if pool_kind(case) != "max" or cot is None:
        return False
    empty, index, plane = _empty_window_index(case)
    if not empty.any() or np.any(empty & (index >= plane)):
        return False
    cot = batched_like(case, np.asarray(cot))
    return bool(np.any(np.broadcast_to(empty, cot.shape) & (cot != 0)))


def empty_window_shows_in_forward_mode(case: Case) -> bool:
    """Forward mode or double backward of a MaxPool case shows the empty-window bug: the gather
    raises (``empty_window_index_past_plane``), or it does not and the out-of-window index is
    returned (``return_indices``) for the model to judge."""
    return has_empty_window(case) and (bool(case.params.get("return_indices"))
                                       or empty_window_index_past_plane(case))


# ---------------------------------------------------------------------------------------------
# The empty-window discrepancy under torch.func.vmap (conformance/known/pooling_modes.toml)
# ---------------------------------------------------------------------------------------------


def empty_window_under_vmap(case: Case) -> bool:
    """A vmap case of max pooling with a window entirely in the padding (``has_empty_window``: the
    geometry is the same in every slice)."""
    node = case.mode_node
    return node.get("kind") == "vmap" and has_empty_window(case)


def maxpool_empty_window_vmap_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """``maxpool_empty_window_model`` for a vmap case (``vmap[b].indices``, ``vmap[b].grad.input``),
    over the slices stacked as torch's batching rule runs them: one kernel call on the slices
    folded into the batch dim (slice-major), so an empty window's out-of-window index past the end
    of slice b's memory lands at the start of slice b + 1's (past the last slice: dropped). Each
    slice's reference is its own (``VmapMode.slices``); the index is torch's own when returned,
    otherwise the window's first tap past the low padding edge, with or without the 3-d depth
    term; the memory contiguous or channels-last. Of these candidates the one nearest the backend's
    gradients is predicted, with the magnitude of its accumulations; any other wrong value stays
    unexplained."""
    from conformance.modes import VmapMode
    from conformance.spec import spec_of

    slices = VmapMode().slices(spec_of(case), case, got)
    if not slices or any(isinstance(e, str) for _, _, e, _ in slices):
        return {}
    parts = [(c, e, p) for _, c, e, p in slices]
    c0, e0, _ = parts[0]
    out = batched_like(c0, np.asarray(e0.outputs["output"]))
    n = out.shape[0]
    empty, first, shallow = _empty_window_starts(c0, out.shape[2:])
    predicted: dict[str, np.ndarray] = {}
    returned = None
    if all("indices" in p.outputs and "indices" in e.outputs for _, e, p in parts):
        mine = [batched_like(c, np.asarray(p.outputs["indices"])) for c, _, p in parts]
        returned = np.concatenate(mine)
        for b, (c, e, _) in enumerate(parts):
            predicted[f"vmap[{b}].indices"] = like_input(c, np.where(empty, mine[b], batched_like(
                c, np.asarray(e.outputs["indices"]))))
    if any(c.cotangents.get("output") is None or "input" not in e.grads or "input" not in p.grads
           for c, e, p in parts):
        return predicted
    grad = np.concatenate([batched_like(c, np.asarray(e.grads["input"], dtype=np.float64)) for c, e, _ in parts])
    cot = np.concatenate([np.broadcast_to(batched_like(c, np.asarray(c.cotangents["output"], dtype=np.float64)),
                                          out.shape) for c, _, _ in parts])
    theirs = np.concatenate([batched_like(c, np.asarray(p.grads["input"], dtype=np.float64)) for c, _, p in parts])
    indices = [returned] if returned is not None else [first, shallow]
    value, magnitude = _nearest_scatter(grad, empty, indices, cot, theirs)
    for b, (c, _, _) in enumerate(parts):
        part = slice(b * n, (b + 1) * n)
        predicted[f"vmap[{b}].grad.input"] = (like_input(c, value[part]),
                                              like_input(c, magnitude[part]))
    return predicted
