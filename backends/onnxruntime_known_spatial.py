"""Predicates of the onnxruntime backend's known entries for convolution, pooling, folding, padding and
vision layers (``conformance/known/onnxruntime_spatial.toml``).

NumPy only (``backends`` imports nothing of ``conformance``): each takes the ``Case``, and those reading the
declaration's spatial dimensionality its LayerSpec as ``spec`` (``spec.dims``; never parsed from a name).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.base import Case
from backends.export_strides import elementwise_perm_divides_by_zero, example_strides, symbolic_strides
from backends.onnxruntime_known import _per_dim
from backends.torch_compile import runs_dynamic_graph


def adaptive_avg_pool3d_not_global(case: Case) -> bool:
    """A valid AdaptiveAvgPool3d whose output size, with None read as the input's size, is not 1 x 1 x 1:
    torch then calls aten._adaptive_avg_pool3d (a 1 x 1 x 1 output is a mean), which torchlib does not
    translate."""
    if case.invalid:
        return False
    spatial = np.shape(case.inputs["input"])[-3:]
    out = _per_dim(case.params["output_size"], 3)
    return any((s if o is None else o) != 1 for s, o in zip(spatial, out))


def adaptive_avg_pool3d_none_dynamic(case: Case) -> bool:
    """A valid AdaptiveAvgPool3d with some output size None (the input's own size) run by a dynamic-shape
    graph: a graph exported where every such size was 1 is a global mean (ReduceMean), which the exported
    program declares valid at other sizes."""
    if case.invalid or not runs_dynamic_graph(case):
        return False
    return any(o is None for o in _per_dim(case.params["output_size"], 3))


def lazy_weight_dynamic(case: Case) -> bool:
    """A valid lazy convolution run by a dynamic-shape graph: the adapter calls the materialised module
    through ``functional_call`` with the weight as a call argument, so the kernel's sizes are symbols."""
    return not case.invalid and runs_dynamic_graph(case)


def lazy_conv_same_padding_dynamic(case: Case) -> bool:
    """A valid lazy convolution with padding='same' and padding_mode='zeros' run by a dynamic-shape graph
    (symbolic kernel sizes): the padding torch derives from the kernel is symbolic and torchlib passes it as
    Conv's ``pads`` attribute, which must be constant. (Another padding_mode pads with F.pad by amounts
    fixed at construction, and the convolution itself has no padding.)"""
    return (lazy_weight_dynamic(case) and case.params.get("padding") == "same"
            and case.params.get("padding_mode", "zeros") == "zeros")


def fold_empty_strided_sym_stride(case: Case) -> bool:
    """A dynamic-shape export of Fold on an empty batched input (N, C·Πk, L) whose example (the adapter's
    clone, ``example_strides``) has last stride 1 and, on some dim d whose next dim has size >= 2, a
    stride that torch.export gives a symbol of its own (not a product of the sizes and strides after it,
    ``symbolic_strides``) while dim d + 1's stride is derived: the trace then keeps an aten.sym_stride
    node (no ONNX function). Fitted on 48 fresh exports (every one agreed); a later case may reuse a
    graph exported from another example and pass."""
    if case.invalid or not runs_dynamic_graph(case):
        return False
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if len(shape) != 3 or 0 not in shape:
        return False
    strides = example_strides(case, "input")
    if strides[-1] != 1:
        return False
    sym = symbolic_strides(shape, strides)

    def free(d: int) -> bool:
        return any(s.startswith("t") for s in sym[d][1])

    return any(free(d) and shape[d + 1] >= 2 and not free(d + 1) for d in range(len(shape) - 1))



# -- circular padding: ONNX Pad with mode 'wrap' ---------------------------------------------------------------------

def _circular_pads(case: Case, nd: int) -> list[tuple[int, int, int]] | None:
    """(before, after, input size) of each of the last ``nd`` dims of a CircularPad case (``spec.dims``), first
    padded dim first (F.pad lists the last dim first); None for an unreadable padding."""
    shape = np.shape(case.inputs.get("input"))
    pad = case.params.get("padding")
    if len(shape) < nd:
        return None
    flat = [int(pad)] * (2 * nd) if isinstance(pad, (int, np.integer)) else [int(p) for p in pad]
    if len(flat) != 2 * nd:
        return None
    dims = []
    for k in range(nd):  # k-th from the last dim
        dims.append((flat[2 * k], flat[2 * k + 1], int(shape[len(shape) - 1 - k])))
    return dims[::-1]


def _remainder(before: int, after: int, size: int) -> int:
    """What is left of a dim of ``size`` after the negative pads (crops)."""
    return size + min(before, 0) + min(after, 0)


def circular_pad_empty_input(case: Case, spec: Any) -> bool:
    """A valid circular pad of an input with a dim of size 0: ONNX Runtime's Pad refuses mode 'wrap' on an empty
    input ("Unexpected mode of 3"), where torch returns the (empty) padded tensor."""
    dims = _circular_pads(case, spec.dims)
    return dims is not None and not case.invalid and 0 in np.shape(case.inputs["input"])


def circular_pad_cropped_away(case: Case, spec: Any) -> bool:
    """A valid circular pad of a non-empty input whose crops leave nothing of some padded dim: ONNX Runtime's Pad
    refuses mode 'wrap' with a zero effective input extent, where torch returns an empty output (or, padding the
    other side, raises: torch's own remainder overrun)."""
    dims = _circular_pads(case, spec.dims)
    if dims is None or case.invalid or 0 in np.shape(case.inputs["input"]):
        return False
    return any(_remainder(b, a, n) <= 0 for b, a, n in dims)


def circular_pad_dynamic_export_fails(case: Case, spec: Any) -> bool:
    """A valid circular pad exported with dynamic shapes, of an empty input or cropping one side of a dim and
    padding the other: torch's _pad_circular slices with sizes whose symbols torch.export cannot bound or keep
    (PendingUnbackedSymbolNotFound, "False != True", "n not in VR[a, b]", "Invalid ranges")."""
    dims = _circular_pads(case, spec.dims)
    if dims is None or case.invalid or not runs_dynamic_graph(case):
        return False
    return 0 in np.shape(case.inputs["input"]) or any(min(b, a) < 0 < max(b, a) for b, a, _ in dims)


def circular_pad_remainder_wrapped(case: Case, spec: Any) -> bool:
    """A valid circular pad of a non-empty input that crops one side of a dim and pads the other by more than the
    remainder: ONNX Pad ('wrap') pads the cropped remainder periodically, where the circular extension of the input
    repeats the whole dim (torch's own kernel overruns: padding.toml circular-pad-remainder-overrun). A
    dynamic-shape export often fails first (circular_pad_dynamic_export_fails)."""
    dims = _circular_pads(case, spec.dims)
    if dims is None or case.invalid or 0 in np.shape(case.inputs["input"]):
        return False
    if any(_remainder(b, a, n) <= 0 for b, a, n in dims):
        return False
    return any(min(b, a) < 0 and max(b, a) > _remainder(b, a, n) for b, a, n in dims)


def circular_pad_wrap_model(case: Case, reference: Any, got: Any, spec: Any) -> dict[str, np.ndarray]:
    """What ONNX Pad (mode 'wrap') computes: each padded dim cropped, then padded periodically with the
    remainder."""
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    dims = _circular_pads(case, spec.dims) or []
    lead = x.ndim - len(dims)
    index = tuple([slice(None)] * lead + [slice(max(-b, 0), n - max(-a, 0)) for b, a, n in dims])
    cropped = x[index]
    widths = [(0, 0)] * lead + [(max(b, 0), max(a, 0)) for b, a, _ in dims]
    return {"output": np.pad(cropped, widths, mode="wrap")}


# -- grid_sample, mode 'nearest', padding_mode 'reflection' ------------------------------------------------------

def _unnormalise(g: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    """grid_sample's pixel coordinate of normalised ``g`` along a dim of ``size`` (float64)."""
    g = np.asarray(g, dtype=np.float64)
    return (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2


def _out_of_range_ties(case: Case) -> bool:
    """Some grid coordinate lies outside [-0.5, size - 0.5] exactly halfway between two pixels."""
    x, grid = np.asarray(case.inputs["input"]), np.asarray(case.inputs["grid"], dtype=np.float64)
    sizes = x.shape[2:][::-1]  # grid[..., 0] indexes the last dim
    for k, size in enumerate(sizes):
        c = _unnormalise(grid[..., k], size, False)
        if np.any(((c < -0.5) | (c > size - 0.5)) & (c - np.floor(c) == 0.5)):
            return True
    return False


def grid_sample_nearest_reflection_tie(case: Case) -> bool:
    """grid_sample with mode 'nearest', padding_mode 'reflection', align_corners False (float64, float32, float16;
    a finite grid) and a coordinate outside the image exactly halfway between two pixels: ONNX Runtime rounds the
    coordinate (to even) before reflecting it about the half-pixel border, torch reflects first and then rounds, so
    the two pick neighbouring pixels."""
    if case.invalid or case.dtype not in ("float32", "float64", "float16"):
        return False
    if case.params.get("mode") != "nearest" or case.params.get("padding_mode") != "reflection":
        return False
    if case.params.get("align_corners", False) or not np.isfinite(np.asarray(case.inputs["grid"])).all():
        return False
    return np.ndim(case.inputs["input"]) in (4, 5) and _out_of_range_ties(case)


def _reflect_index(r: np.ndarray, size: int) -> np.ndarray:
    """ONNX Runtime's reflection of (integer) coordinates ``r`` about [-0.5, size - 0.5], as indices."""
    lo, hi = -0.5, size - 0.5
    span = hi - lo
    out = r.astype(np.float64).copy()
    below, above = out < lo, out > hi
    d = np.where(below, lo - out, np.where(above, out - hi, 0.0))
    n = np.floor(d / span)
    rem = d - n * span
    even = n % 2 == 0
    out = np.where(below, np.where(even, lo + rem, hi - rem), out)
    out = np.where(above, np.where(even, hi - rem, lo + rem), out)
    return np.clip(np.rint(out), 0, size - 1).astype(np.int64)


def grid_sample_nearest_reflection_model(case: Case, reference: Any, got: Any) -> dict[str, np.ndarray]:
    """What ONNX Runtime's GridSample (nearest, reflection, align_corners 0) computes: each coordinate rounded half
    to even, then reflected about the half-pixel border, then the pixel read."""
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    grid = np.asarray(case.inputs["grid"], dtype=np.float64)
    spatial = x.shape[2:]
    idx = []
    for k, size in enumerate(spatial[::-1]):  # grid[..., k] indexes spatial dim -1 - k
        idx.append(_reflect_index(np.rint(_unnormalise(grid[..., k], size, False)), size))
    idx = idx[::-1]  # in the order of the spatial dims
    n = np.arange(x.shape[0]).reshape((-1,) + (1,) * (grid.ndim - 2))
    out = np.empty((x.shape[0], x.shape[1]) + grid.shape[1:-1], dtype=np.float64)
    for c in range(x.shape[1]):
        out[:, c] = x[(n, c) + tuple(idx)]
    return {"output": out}


def affine_grid_unit_size(case: Case) -> bool:
    """affine_grid with a spatial size of 1 (its base coordinate is 0): torch's decomposition builds it with
    torch.tensor(0), whose in-place detach_ the exporter's functionalisation rejects."""
    return not case.invalid and 1 in tuple(case.params["size"])[2:]


def _ort_base_coords(n: int, align_corners: bool | None) -> np.ndarray:
    """torchlib's linspace(-a, a, n) in float64 with a = (n - 1)/n (or 1 with align_corners) passed as a float32
    constant: forward from -a below n/2, backward from a from there on."""
    a = 1.0 if align_corners else float(np.float32((n - 1) / n))
    i = np.arange(n, dtype=np.float64)
    step = (a - -a) / (n - 1)
    return np.where(i < n / 2, -a + step * i, a - step * (n - 1 - i))


def affine_grid_float32_bound(case: Case) -> bool:
    """float64 affine_grid without a unit size where some spatial size's (n - 1)/n (align_corners False) is not a
    float32 number: the exported base grid starts from float32 ends."""
    size = tuple(case.params["size"])[2:]
    if case.invalid or case.dtype != "float64" or 1 in size or case.params.get("align_corners"):
        return False
    return any(float(np.float32((n - 1) / n)) != (n - 1) / n for n in size)


def affine_grid_float32_bound_model(case: Case, reference: Any, got: Any) -> dict[str, np.ndarray]:
    """The exported grid: the base grid from float32 ends (x along the last dim, then y[, z], then 1), each point
    (base * theta^T) summed over the 3 (or 4) coordinates in float64."""
    size = tuple(case.params["size"])
    theta = np.asarray(case.inputs["theta"], dtype=np.float64)
    coords = [_ort_base_coords(n, case.params.get("align_corners")) for n in size[2:]]
    mesh = np.meshgrid(*coords, indexing="ij")  # in the order of the spatial dims
    base = np.stack([*mesh[::-1], np.ones(mesh[0].shape)], axis=-1)  # (*spatial, rank + 1)
    prods = base[None, ..., None, :] * theta.reshape((theta.shape[0],) + (1,) * len(coords) + theta.shape[1:])
    out = prods[..., 0]
    for k in range(1, prods.shape[-1]):
        out = out + prods[..., k]
    return {"output": out}



def _unit_dim_stride_over_kernel(size: int, kernel: int, stride: int, pad: int, out_pad: int, dil: int) -> bool:
    """A transposed-convolution dim 1 in and 1 out with dilation 1 and a stride above the kernel."""
    out = (size - 1) * stride - 2 * pad + dil * (kernel - 1) + out_pad + 1
    return size == 1 and out == 1 and dil == 1 and stride > kernel


def conv_transpose3d_unit_dim_symbol_range(case: Case, spec: Any) -> bool:
    """A 3-d transposed convolution exported with dynamic shapes (weight too) where the depth (or, for an unbatched
    input, the depth or the width) is 1 in and 1 out with dilation 1 and a stride above the kernel: torch.export's
    shape environment replaces the kernel symbol by 1 + 2·padding - output_padding + stride·(1 - size), whose range
    reaches below 0, and asserts."""
    if case.invalid or spec.dims != 3 or case.forward_kwargs.get("output_size") or not runs_dynamic_graph(case):
        return False
    x = np.shape(case.inputs["input"])
    if len(x) not in (4, 5) or "weight" not in case.inputs:
        return False
    kernel = np.shape(case.inputs["weight"])[2:]
    geometry = zip(x[-3:], kernel, *(_per_dim(case.params.get(k, v), 3) for k, v in
                                     (("stride", 1), ("padding", 0), ("output_padding", 0), ("dilation", 1))))
    hits = [_unit_dim_stride_over_kernel(*g) for g in geometry]
    return hits[0] or (len(x) == 4 and hits[2])


def grid_sample_half_upcast_divides_by_zero(case: Case) -> bool:
    """A dynamic-shape export of a 4-d float16/bfloat16 grid_sample with an empty ``input`` or ``grid``: torch's
    grid_sampler_2d decomposition upcasts both to float32 (aten._to_copy), and laying out that copy divides by the
    empty dim's size ("integer modulo by zero": ``elementwise_perm_divides_by_zero`` on the adapter's example
    strides, ``example_strides``). 5-d (grid_sampler_3d) has no such decomposition."""
    if case.invalid or case.dtype not in ("float16", "bfloat16") or np.ndim(case.inputs["input"]) != 4:
        return False
    if not runs_dynamic_graph(case):
        return False
    for name in ("input", "grid"):
        shape = tuple(int(s) for s in np.shape(case.inputs[name]))
        if 0 in shape and elementwise_perm_divides_by_zero(shape, list(example_strides(case, name)), [0] * len(shape)):
            return True
    return False
