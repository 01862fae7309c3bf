"""Predicates and models of the known torch.compile discrepancies of the transformer layers
(conformance/known/torch_compile*.toml, torch_compile*.toml): the compiled TransformerEncoder never takes eager's
nested-tensor path."""

from __future__ import annotations

import dataclasses

import numpy as np

from backends.base import Case, Result
from conformance.numerics import attention as NA
from conformance.spec import LayerSpec
from conformance.tolerance import magnitudes


def compiled_encoder_skips_nested_path(case: Case) -> bool:
    """A TransformerEncoder case on which eager takes the nested-tensor fast path (``takes_nested_path``) with
    mask_check on and some padded position: compiled, the encoder runs the dense path instead, whose output at a
    padded position is that position's own attention result where eager's is 0 (before the final norm)."""
    if case.op != "TransformerEncoder" or not case.params.get("mask_check", True):
        return False
    kpm = case.inputs.get("src_key_padding_mask")
    return NA.takes_nested_path(case) and kpm is not None and bool(np.any(kpm != 0))


def compiled_nested_path_does_not_compile(case: Case) -> bool:
    """A TransformerEncoder case on eager's nested-tensor path (``takes_nested_path``) with mask_check off: compiled,
    the encoder calls torch._nested_tensor_from_mask, which dynamo does not trace (the call does not compile)."""
    return NA.takes_nested_path(case) and not case.params.get("mask_check", True)


def compiled_encoder_leaves_nested_path(case: Case) -> bool:
    """A case on eager's nested-tensor path that compiled torch does not run as eager does: it runs the dense path
    (``compiled_encoder_skips_nested_path``) or does not compile (``compiled_nested_path_does_not_compile``)."""
    return compiled_encoder_skips_nested_path(case) or compiled_nested_path_does_not_compile(case)


def compiled_fast_path_tanh_gelu_only(case: Case) -> bool:
    """``fast_path_tanh_gelu_only`` outside ``compiled_encoder_leaves_nested_path`` (those cases are explained by
    dynamo-transformer-encoder-nested-path-not-taken, whose model has the exact GELU, or do not compile)."""
    return NA.fast_path_tanh_gelu_only(case) and not compiled_encoder_leaves_nested_path(case)


def compiled_fast_path_exact_gelu_beyond_bound(case: Case) -> bool:
    """``fast_path_exact_gelu_beyond_bound`` outside ``compiled_encoder_leaves_nested_path`` (as
    ``compiled_fast_path_tanh_gelu_only``)."""
    return not compiled_encoder_leaves_nested_path(case) and NA.fast_path_exact_gelu_beyond_bound(case)


def compiled_dense_encoder_model(case: Case, reference: Result, got: Result, spec: LayerSpec) -> dict[str, object]:
    """The output of ``compiled_encoder_skips_nested_path``'s cases as compiled torch computes it: the reference of
    the same case with enable_nested_tensor off (the dense computation at every position; the layers' eval fast
    path, which compiled torch takes too, computes the exact GELU for GELU(approximate='tanh'):
    ``swapped_activation_result``), with that case's magnitudes for its rounding bound (the nested case's are
    those of a constant at the padded positions)."""
    dense = dataclasses.replace(case, params={**case.params, "enable_nested_tensor": False})
    result = spec.evaluate(dense, dense.cotangents)
    with np.errstate(all="ignore"):
        scale = magnitudes(spec, dense, result)["output"]
    return {"output": (NA.swapped_activation_result(dense)["output"], scale)}


def compiled_encoder_fast_path_dead_query(case: Case) -> bool:
    """``attention.encoder_fast_path_dead_query`` under torch.compile, which does not take the nested-tensor path
    (with mask_check it traces the dense one), so a fully padded sequence reaches the encoder layer's kernel there
    too; a case whose nested path does not compile (mask_check off) never runs."""
    return NA.encoder_kernel_dead_query(case) and not compiled_nested_path_does_not_compile(case)
