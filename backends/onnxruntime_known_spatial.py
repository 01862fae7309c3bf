"""Predicates of the onnxruntime backend's known entries for convolution, pooling, folding, padding and
vision layers (``conformance/known/onnxruntime_spatial.toml``).

NumPy only (``backends`` imports nothing of ``conformance``): each takes the ``Case``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph


def _nd(case: Case) -> int:
    """The layer's spatial dimensionality, from its name (``...1d``, ``...2d``, ``...3d``)."""
    m = re.search(r"([123])d", case.op)
    return int(m.group(1)) if m else 1


def _per_dim(value: Any, nd: int) -> tuple[Any, ...]:
    """A per-dimension parameter as a tuple of ``nd`` entries (an int, or None, is repeated)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * nd


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
    ``_symbolic_strides``) while dim d + 1's stride is derived: the trace then keeps an aten.sym_stride
    node (no ONNX function). Fitted on 48 fresh exports (every one agreed); a later case may reuse a
    graph exported from another example and pass."""
    from backends.onnxruntime_known import _symbolic_strides, example_strides

    if case.invalid or not runs_dynamic_graph(case):
        return False
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if len(shape) != 3 or 0 not in shape:
        return False
    strides = example_strides(case, "input")
    if strides[-1] != 1:
        return False
    sym = _symbolic_strides(shape, strides)

    def free(d: int) -> bool:
        return any(s.startswith("t") for s in sym[d][1])

    return any(free(d) and shape[d + 1] >= 2 and not free(d + 1) for d in range(len(shape) - 1))

