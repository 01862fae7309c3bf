"""Predicates of the known initialiser discrepancies of compiled torch (``conformance/known/torch_compile.toml``)."""

from __future__ import annotations

from backends.base import Case
from conformance import strategies as S


def out_tensor_not_contiguous(case: Case) -> bool:
    """The initialiser's ``tensor`` (written through ``out=``) is valid, not empty and not contiguous to
    torch (dynamo refuses a non-contiguous ``out=`` tensor)."""
    if case.invalid or "tensor" not in case.inputs:
        return False
    shape = tuple(int(n) for n in case.inputs["tensor"].shape)
    if 0 in shape:
        return False  # torch calls an empty tensor contiguous
    return not S.is_torch_contiguous(shape, S.torch_strides(shape, case.layout("tensor")))
