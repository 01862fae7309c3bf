"""Predicates of the known torch.compile discrepancies of the utilities (conformance/known/torch_compile_utils.toml):
which calls dynamo cannot capture as one graph."""

from __future__ import annotations

from backends.base import Case
from conformance.numerics.containers import grads, inf_norm_of_an_empty_tensor


def total_norm_checks_nonfinite(case: Case) -> bool:
    """get_total_norm with error_if_nonfinite over at least one tensor, reaching the check on the total's value
    (not the infinity norm with an empty tensor, which raises while tracing the norm, before the check)."""
    return bool(case.params.get("error_if_nonfinite")) and bool(grads(case)) and not inf_norm_of_an_empty_tensor(case)
