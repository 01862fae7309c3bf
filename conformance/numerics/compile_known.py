"""Predicates of the known torch.compile discrepancies (``conformance/known/torch_compile.toml``)
that an expression over the case's parameters and shapes cannot state: conditions on the strides
that a case's layouts give its tensors.
"""

from __future__ import annotations

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph
from conformance import strategies as S
from conformance.numerics.window import per_dim_param

_CHANNELS_LAST_ORDER = (0, 2, 3, 1)  # a 4-d tensor's dims, outermost first, in the channels_last format


def _channels_last_contiguous(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """torch's ``is_contiguous(memory_format=torch.channels_last)`` of a 4-d tensor: row-major in
    N, H, W, C order, dims of size 1 ignored."""
    return S.is_torch_contiguous(tuple(shape[d] for d in _CHANNELS_LAST_ORDER),
                                 tuple(strides[d] for d in _CHANNELS_LAST_ORDER))


def grouped_conv2d_ambiguous_channels_last_input(case: Case) -> bool:
    """Whether inductor's Conv2d backward hits eager's grouped slow-conv weight gradient with a
    channels_last weight and an input whose strides are channels_last only up to a size-1 dim."""
    p = case.params
    if case.invalid or "weight" not in case.inputs:
        return False
    weight = tuple(int(n) for n in case.inputs["weight"].shape)
    x = tuple(int(n) for n in case.inputs["input"].shape)
    if len(weight) != 4 or len(x) not in (3, 4) or 0 in x or 0 in weight:
        return False
    kernel = weight[2:]
    if int(p.get("groups", 1)) < 2 or weight[1] < 2 or kernel[0] * kernel[1] < 2:
        return False  # ungrouped, depthwise or 1x1: both weight orders hold the same sequence
    if p.get("padding_mode", "zeros") != "zeros" or any(d != 1 for d in per_dim_param(p.get("dilation", 1), 2)):
        return False  # an explicit pad makes a fresh tensor; dilation runs another kernel
    padding = p.get("padding", 0)
    if padding == "same" and any(k % 2 == 0 for k in kernel):
        return False  # uneven 'same' padding pads explicitly
    if len(x) == 3 and x[1] > 1 and x[2] > 1 and runs_dynamic_graph(case):
        return False  # does not compile (inductor-unbatched-conv2d-dynamic-shape-compile-error)
    strides = S.torch_strides(x, case.layout("input"))
    if len(x) == 3:  # F.conv2d unsqueezes an unbatched input: the new dim's stride is C * stride(C)
        x, strides = (1, *x), (x[0] * strides[0], *strides)
    w_strides = S.torch_strides(weight, case.layout("weight"))
    return (_channels_last_contiguous(x, strides) and not S.channels_last_like(x, strides)
            and not _channels_last_contiguous(weight, w_strides))
