"""Predicates of the CUDA-only known discrepancies of pooling, padding, ChannelShuffle and
upsampling (``conformance/known/cuda_pooling.toml`` and the ``cuda-*`` entries of
``pooling.toml``): each mirrors what torch's CUDA code does, so the entry's trigger is exact.

- ``avgpool_nhwc_backward_wrong``: ``avg_pool2d_backward_out_cuda_frame_nhwc`` (the kernel torch
  takes when the input's suggested memory format is ChannelsLast) locates the windows of an input
  element from its unpadded position (``w = (index / channels) % width``, no ``+ pad_w``; the NCHW
  kernel adds the padding), and sums every window of that range without checking that it covers the
  element. AvgPool1d is avg_pool2d of ``input.unsqueeze(-2)``, so a (N, C, L) input whose strides
  make that 4-d view channels-last-like takes the same kernel.
- ``channel_shuffle_view_fails``: CUDA's channel_shuffle is ``math_channel_shuffle``, which starts
  with ``self.view({N, groups, C / groups, -1})`` (the CPU has its own kernel).
"""

from __future__ import annotations

import numpy as np

from backends.base import Case
from conformance import strategies as S
from conformance.numerics.window import per_dim_param, pool_kind, spatial_dims


def _unsqueezed_strides(shape: tuple[int, ...], strides: tuple[int, ...],
                        dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """torch's unsqueeze: the new dim's stride is size * stride of the dim it displaces (1 at the end)."""
    new_stride = shape[dim] * strides[dim] if dim < len(shape) else 1
    return shape[:dim] + (1,) + shape[dim:], strides[:dim] + (new_stride,) + strides[dim:]


def avgpool_cuda_channels_last(case: Case) -> bool:
    """The 4-d tensor CUDA's avg_pool2d sees has ChannelsLast as its suggested memory format
    (``suggest_memory_format``: torch's is_channels_last_strides_2d, no contiguity test)."""
    x = case.inputs["input"]
    shape = tuple(int(s) for s in x.shape)
    strides = S.torch_strides(shape, case.layout("input"))
    nd = spatial_dims(case)
    if nd == 1:
        if len(shape) != 3:  # unbatched: a 3-d tensor reaches avg_pool2d, never channels-last
            return False
        shape, strides = _unsqueezed_strides(shape, strides, 2)
    elif nd != 2 or len(shape) != 4:
        return False
    return S.channels_last_like(shape, strides)


def _windows(n_in: int, n_out: int, k: int, s: int, p: int) -> list[tuple[int, int, int]]:
    """Per output position: (start, end) clipped to the input and the unclipped size with padding."""
    out = []
    for o in range(n_out):
        start = o * s - p
        end = min(start + k, n_in + p)
        size = end - start
        out.append((max(start, 0), min(end, n_in), size))
    return out


def _ranges(n_in: int, n_out: int, k: int, s: int, pad: int) -> list[range]:
    """The output positions the CUDA kernels visit for each input position (pad = 0: the NHWC
    kernel's bug; pad = p: the NCHW kernel)."""
    out = []
    for i in range(n_in):
        h = i + pad
        start = 0 if h < k else (h - k) // s + 1
        end = min(h // s + 1, n_out)
        out.append(range(start, end))
    return out


def avgpool_nhwc_gradient(case: Case, nhwc: bool) -> np.ndarray:
    """The input gradient (batched, (N, C, H, W); 1-d with H = 1) that CUDA's avg_pool2d backward
    computes for the case's cotangent, in float64: the NHWC kernel (``nhwc``) or the NCHW one."""
    x = case.inputs["input"]
    nd = spatial_dims(case)
    p = case.params
    kernel = per_dim_param(p["kernel_size"], nd)
    stride = per_dim_param(p.get("stride"), nd) or kernel
    padding = per_dim_param(p.get("padding", 0), nd)
    if nd == 1:
        kernel, stride, padding = (1,) + kernel, (1,) + stride, (0,) + padding
    g = np.asarray(case.cotangents["output"], dtype=np.float64)
    xb = x if x.ndim == nd + 2 else x[None]
    gb = g if g.ndim == nd + 2 else g[None]
    if nd == 1:
        xb, gb = xb[:, :, None, :], gb[:, :, None, :]
    n, c, hi, wi = xb.shape
    ho, wo = gb.shape[2:]
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    override = p.get("divisor_override")
    include = bool(p.get("count_include_pad", True))
    hwin, wwin = _windows(hi, ho, kh, sh, ph), _windows(wi, wo, kw, sw, pw)
    hr = _ranges(hi, ho, kh, sh, 0 if nhwc else ph)
    wr = _ranges(wi, wo, kw, sw, 0 if nhwc else pw)
    grad = np.zeros((n, c, hi, wi))
    for h in range(hi):
        for w in range(wi):
            acc = np.zeros((n, c))
            for oh in hr[h]:
                hs, he, hsize = hwin[oh]
                for ow in wr[w]:
                    ws, we, wsize = wwin[ow]
                    if hs >= he or ws >= we:
                        continue
                    if override is not None:
                        div = override
                    elif include:
                        div = hsize * wsize
                    else:
                        div = (he - hs) * (we - ws)
                    acc += gb[:, :, oh, ow] / div
            grad[:, :, h, w] = acc
    return grad


def avgpool_nhwc_backward_wrong(case: Case) -> bool:
    """CUDA's avg_pool2d backward takes the NHWC kernel (``avgpool_cuda_channels_last``) and its
    gradient for the case's cotangent differs from the NCHW kernel's (the right one): some padding
    and a cotangent that does not hide the windows it misplaces."""
    if pool_kind(case) != "avg" or spatial_dims(case) not in (1, 2) or not avgpool_cuda_channels_last(case):
        return False
    pads = per_dim_param(case.params.get("padding", 0), spatial_dims(case))
    if not any(pads) or "output" not in case.cotangents or case.inputs["input"].size == 0:
        return False
    wrong, right = avgpool_nhwc_gradient(case, True), avgpool_nhwc_gradient(case, False)
    scale = max(float(np.max(np.abs(right), initial=0.0)), float(np.max(np.abs(wrong), initial=0.0)), 1e-300)
    return bool(np.any(np.abs(wrong - right) > 2.0**-7 * scale))


def channel_shuffle_view_fails(case: Case) -> bool:
    """A non-empty ChannelShuffle input whose strides do not allow ``view(N, groups, C/groups, -1)``
    (CUDA's math_channel_shuffle raises "view size is not compatible with input tensor's size and
    stride"). torch's view rule, checked on a tensor of the case's shape and strides."""
    import torch

    x = case.inputs["input"]
    shape = tuple(int(s) for s in x.shape)
    if len(shape) < 3 or x.size == 0:
        return False
    groups = int(case.params["groups"])
    if groups <= 0 or shape[1] % groups:
        return False
    strides = S.torch_strides(shape, case.layout("input"))
    t = torch.empty_strided(shape, strides, dtype=torch.uint8)
    try:
        t.view(shape[0], groups, shape[1] // groups, -1)
    except RuntimeError:
        return True
    return False


def unpool_index_outside_plane(case: Case) -> bool:
    """MaxUnpool with an output size torch accepts and some index outside its channel's plane
    [0, plane): CUDA's max_unpooling kernels check it with CUDA_KERNEL_ASSERT (a device-side
    assert, which loses the CUDA context) where the CPU raises "Found an invalid max index"."""
    import math

    from conformance.numerics.window import batched_input, unpool_geometry
    from reference import pooling as ref

    if pool_kind(case) != "unpool":
        return False
    kernel, stride, padding = unpool_geometry(case)
    x, idx = batched_input(case), batched_input(case, "indices")
    out = ref.unpool_output_size(x.shape[2:], kernel, stride, padding, case.forward_kwargs.get("output_size"))
    plane = math.prod(out)
    return bool(idx.size) and bool(np.any((idx < 0) | (idx >= plane)))


def _p_range(x: int, pad: int, k: int, dilation: int, stride: int, pooled: int) -> tuple[int, int]:
    """CUDA's p_start/p_end (MaxPooling2d.cu): the output positions whose window may hold input
    position x, as its gather-style backward visits them."""
    span = (k - 1) * dilation + 1
    start = 0 if x + pad < span else (x + pad - span) // stride + 1
    return start, min((x + pad) // stride + 1, pooled)


def maxpool_gather_empty_window_model(case: Case, reference, got) -> dict[str, np.ndarray]:
    """What CUDA's max_pool2d (and max_pool1d, through it) computes for windows with no tap inside
    the input (``has_empty_window``): the reference's results, except that such a window's index is
    the flat in-plane position of its first tap past the low padding edge (``hstart`` / ``wstart``
    advanced by the dilation until >= 0, then ``hstart * W + wstart``, outside the window) and its
    cotangent reaches the input element at that position only when the window is among those the
    gather-style backward visits for that element (p_start <= o < p_end in every dim); it is
    dropped otherwise (and when the position lies past the plane). Under the channels-last kernels
    (``maxpool_cuda_nhwc``) an empty window's index is 0 (max_pool_forward_nhwc keeps the index it
    resets its cache to), so only element 0 of a plane can receive such a cotangent."""
    from conformance.numerics.window import batched_like, like_input, sliding
    from conformance.numerics.window_known import _empty_window_starts

    out = batched_like(case, np.asarray(reference.outputs["output"]))
    empty, first, _ = _empty_window_starts(case, out.shape[2:])
    if maxpool_cuda_nhwc(case):
        first = np.zeros_like(first)
    predicted: dict[str, np.ndarray] = {}
    if "indices" in reference.outputs:
        ref_idx = batched_like(case, np.asarray(reference.outputs["indices"]))
        predicted["indices"] = like_input(case, np.where(empty, first, ref_idx))
    cot = case.cotangents.get("output")
    if cot is None or "input" not in reference.grads:
        return predicted
    g = sliding(case)
    grad = batched_like(case, np.asarray(reference.grads["input"], dtype=np.float64)).copy()
    cot = np.broadcast_to(batched_like(case, np.asarray(cot, dtype=np.float64)), out.shape)
    spatial, pooled = grad.shape[2:], out.shape[2:]
    plane = int(np.prod(spatial, dtype=np.int64))
    added = np.zeros_like(grad)
    count = np.zeros(grad.shape[2:])
    for pos in zip(*np.nonzero(empty)):
        index = int(first[pos])
        if not 0 <= index < plane:
            continue
        coords = np.unravel_index(index, spatial)
        if all(lo <= o < hi for o, (lo, hi) in zip(pos, (
                _p_range(int(x), g.padding[d], g.kernel[d], g.dilation[d], g.stride[d], pooled[d])
                for d, x in enumerate(coords)))):
            grad[(slice(None), slice(None), *coords)] += cot[(slice(None), slice(None), *pos)]
            added[(slice(None), slice(None), *coords)] += np.abs(cot[(slice(None), slice(None), *pos)])
            count[coords] += 1
    reference_grad = batched_like(case, np.asarray(reference.grads["input"], dtype=np.float64))
    magnitude = (1 + count) * (np.abs(reference_grad) + added)
    predicted["grad.input"] = (like_input(case, grad), like_input(case, magnitude))
    return predicted


def _last_pow2(n: int) -> int:
    """LaunchUtils.h lastPow2: the largest power of 2 <= n, at least 1."""
    return 1 << (int(n).bit_length() - 1) if n > 0 else 1


def maxpool_cuda_nhwc(case: Case) -> bool:
    """CUDA's max_pool2d (MaxPool2d; MaxPool1d as max_pool2d of ``input.unsqueeze(-2)``) takes its
    channels-last kernels (max_pool_forward_nhwc / max_pool_backward_nhwc) when the 4-d input's
    suggested memory format is ChannelsLast, as avg_pool2d does (``avgpool_cuda_channels_last``)."""
    return spatial_dims(case) in (1, 2) and avgpool_cuda_channels_last(case)


def maxpool_nhwc_float64_misaligned(case: Case) -> bool:
    """max_pool_forward_nhwc places its scalar_t cache after kernel_size_C·block_x·block_y·block_z
    ints of dynamic shared memory: a float64 cache is misaligned when that count is odd ("CUDA
    error: misaligned address"). block_x = lastPow2(C) (<= 32), block_y = lastPow2(out_W),
    block_z = lastPow2(out_H) (capped by 1024 threads), kernel_size_C = ceil(C / (block_x ·
    ceil(C / (4·block_x)))): the count is odd exactly when C == 1 and the output plane is 1 x 1
    (the launch is skipped for an empty output)."""
    from conformance.numerics.window import batched_input, case_taps

    if case.dtype != "float64" or not maxpool_cuda_nhwc(case):
        return False
    x = batched_input(case)
    n, c = x.shape[:2]
    taps = case_taps(case, x.shape[2:])
    out_h, out_w = (1, int(taps[0].out)) if len(taps) == 1 else (int(taps[0].out), int(taps[1].out))
    if n * c * out_h * out_w == 0:
        return False
    bx = min(_last_pow2(c), 32)
    by = min(_last_pow2(out_w), 1024 // bx)
    bz = min(64, _last_pow2(out_h), 1024 // bx // by)
    bx = min(_last_pow2(c), 1024 // by // bz)
    stride_c = -(-c // (bx * 4))
    size_c = -(-c // (bx * stride_c))
    return (size_c * bx * by * bz) % 2 == 1


def maxpool2d_empty_window(case: Case) -> bool:
    """MaxPool1d/MaxPool2d (CUDA's max_pool2d kernels) with a window that has no tap inside the
    input (dilation > 1 with padding) where CUDA's result shows it. Such a window's index is the
    flat position of its first tap past the low padding edge (NCHW kernel) or 0 (channels-last
    kernel, ``maxpool_cuda_nhwc``); the comparator accepts any index outside the plane for an empty
    window, so the case fails exactly when some empty window's index lies in the plane and either
    the indices are returned or the window has a nonzero cotangent and is among those the
    gather-style backward visits for that element (``maxpool_gather_empty_window_model``);
    otherwise the cotangent is dropped, which is the reference's gradient. Cases that crash first
    (``maxpool_nhwc_float64_misaligned``) are left to that entry."""
    from conformance.numerics.window import batched_input, batched_like, case_taps, has_empty_window, sliding
    from conformance.numerics.window_known import _empty_window_starts

    if spatial_dims(case) not in (1, 2) or not has_empty_window(case):
        return False
    if maxpool_nhwc_float64_misaligned(case):
        return False
    x = batched_input(case)
    if x.size == 0:
        return False
    spatial = x.shape[2:]
    taps = case_taps(case, spatial)
    pooled = tuple(int(t.out) for t in taps)
    empty, first, _ = _empty_window_starts(case, pooled)
    if maxpool_cuda_nhwc(case):
        first = np.zeros_like(first)
    plane = int(np.prod(spatial, dtype=np.int64))
    in_plane = empty & (first >= 0) & (first < plane)
    if not in_plane.any():
        return False
    if case.params.get("return_indices"):
        return True
    cot = case.cotangents.get("output")
    if cot is None:
        return False
    cot = batched_like(case, np.asarray(cot, dtype=np.float64))
    g = sliding(case)
    for pos in zip(*np.nonzero(in_plane)):
        if not np.any(cot[(slice(None), slice(None), *pos)] != 0):
            continue
        coords = np.unravel_index(int(first[pos]), spatial)
        if all(lo <= o < hi for o, (lo, hi) in zip(pos, (
                _p_range(int(c), g.padding[d], g.kernel[d], g.dilation[d], g.stride[d], pooled[d])
                for d, c in enumerate(coords)))):
            return True
    return False


def nearest2d_one_dim_same_size(case: Case) -> bool:
    """Upsample(mode='nearest') of a 4-d input with a given factor where some spatial length stays
    the same under a factor other than 1 while another changes, and the gradient shows CUDA's
    inconsistency. CUDA's forward copies a dim whose length is unchanged (the copy convention the
    comparator accepts, ``vision.shortcut_case``) but reads the other dims by the factor
    (floor(dst/factor), no dst >> 1 shortcut); its backward follows the factor in every dim
    (ceil(i·factor) ranges: the VJP of the documented rule). The comparator judges the gradient under
    the convention the output follows: when the output differs from the documented one and equals the
    copy convention's, the documented VJP is judged against the copy convention's VJP and fails where
    the two differ for the case's cotangent. (Derived from the 60 records: they agree with this in every
    element shown; an output following neither convention fails on its own, not explained here.)"""
    from conformance.numerics.vision import resize_arguments, resize_dims, resize_taps, shortcut_case

    x = case.inputs["input"]
    if resize_arguments(case).get("mode") != "nearest" or x.ndim != 4 or x.size == 0:
        return False
    dims = resize_dims(case)
    same = [o == i and s is not None and s != 1.0 for i, o, s in dims]
    if not any(same) or all(o == i for i, o, _ in dims):
        return False
    cot = case.cotangents.get("output")
    alt = shortcut_case(case)
    if cot is None or alt is None:
        return False
    doc, other = [t.matrix() for t in resize_taps(case)], [t.matrix() for t in resize_taps(alt)]
    cuda = [np.eye(m.shape[1]) if keep else m for m, keep in zip(doc, same)]

    def forward(m: list[np.ndarray]) -> np.ndarray:
        return np.einsum("ha,wb,ncab->nchw", m[0], m[1], x)

    def backward(m: list[np.ndarray]) -> np.ndarray:
        return np.einsum("ha,wb,nchw->ncab", m[0], m[1], np.asarray(cot, dtype=np.float64))

    with np.errstate(all="ignore"):
        out = forward(cuda)
        if np.array_equal(out, forward(doc), equal_nan=True) or not np.array_equal(out, forward(other), equal_nan=True):
            return False
        wrong, right = backward(doc), backward(other)
    scale = max(float(np.nanmax(np.abs(right), initial=0.0)), 1e-300)
    return bool(np.any(np.abs(np.nan_to_num(wrong - right)) > 2.0**-7 * scale))


def maxpool3d_empty_window_visible(case: Case) -> bool:
    """MaxPool3d (CUDA's max_pool3d kernels) with a window that has no tap inside the input where
    CUDA's result shows it. Such a window's index is the flat in-plane position of its first tap
    past the low padding edge (``_empty_window_starts``), and the backward scatters its cotangent
    to that offset of the input gradient's memory (an atomic add at slice * plane + index; NDHWC
    offsets (n * plane + index) * C + c for a 5-d channels-last input), where an offset past the
    buffer is lost. The comparator accepts any index outside the plane for an empty window (and then
    the reference gradient), so a case fails exactly when the indices are returned and some empty
    window's index lies inside the plane, or some empty window with a nonzero cotangent lands inside
    the buffer."""
    from conformance.numerics.window import batched_input, batched_like, case_taps, has_empty_window
    from conformance.numerics.window_known import _empty_window_starts

    if spatial_dims(case) != 3 or not has_empty_window(case):
        return False
    x = batched_input(case)
    if x.size == 0:
        return False
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    pooled = tuple(int(t.out) for t in case_taps(case, spatial))
    empty, first, _ = _empty_window_starts(case, pooled)
    plane = int(np.prod(spatial, dtype=np.int64))
    if case.params.get("return_indices") and bool(np.any(empty & (first < plane))):
        return True
    cot = case.cotangents.get("output")
    if cot is None:
        return False
    cot = np.broadcast_to(batched_like(case, np.asarray(cot, dtype=np.float64)), (n, c, *pooled))
    raw = case.inputs["input"]
    shape = tuple(int(s) for s in raw.shape)
    channels_last = len(shape) == 5 and S.channels_last_like(shape, S.torch_strides(shape, case.layout("input")))
    ns = np.arange(n).reshape(n, 1, *([1] * len(pooled)))
    cs = np.arange(c).reshape(1, c, *([1] * len(pooled)))
    idx = first[None, None]
    offset = (ns * plane + idx) * c + cs if channels_last else (ns * c + cs) * plane + idx
    hit = np.broadcast_to(empty, cot.shape) & (cot != 0) & (offset < n * c * plane)
    return bool(hit.any())
