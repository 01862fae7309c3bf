"""ATen's ordering of a tensor's dimensions by stride, shared by the predicates that replay how torch
lays out a tensor it allocates (``clone``/``empty_like`` of a tensor that is not dense, the output of a
TensorIterator): plain Python, no project imports."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def stride_order(ndim: int, should_swap: Callable[[int, int], int]) -> list[int]:
    """The dims innermost first, as ATen sorts them (``infer_dense_strides``, TensorIterator's
    ``reorder_dimensions``): an insertion sort starting from the reversed dims, under
    ``should_swap(d0, d1)`` (1 swap, -1 stop, 0 ambiguous: keep going without swapping)."""
    perm = list(reversed(range(ndim)))
    for i in range(1, ndim):
        d1 = i
        for d0 in reversed(range(i)):
            c = should_swap(perm[d0], perm[d1])
            if c > 0:
                perm[d0], perm[d1] = perm[d1], perm[d0]
                d1 = d0
            elif c < 0:
                break
    return perm


def dims_by_stride(shape: Sequence[int], strides: Sequence[int]) -> list[int]:
    """``stride_order`` under ATen's comparison of two dims: a stride of 0 is ambiguous, a larger
    stride goes outside, and of equal strides the larger size goes outside."""

    def should_swap(d0: int, d1: int) -> int:
        s0, s1 = strides[d0], strides[d1]
        if s0 == 0 or s1 == 0:
            return 0
        if s0 != s1:
            return 1 if s0 > s1 else -1
        return 1 if shape[d0] > shape[d1] else 0

    return stride_order(len(shape), should_swap)
