"""Predicates of onnxruntime known entries (``conformance/known/onnxruntime_layers.toml``) that read the
attention reference's masks (``conformance.numerics.attention``): they live in ``conformance``, since
``backends`` imports nothing of it."""

from __future__ import annotations

from backends.base import Case
from backends.onnxruntime_known_layers import transformer_detects_causal_mask
from backends.torch_compile import runs_dynamic_graph
from conformance.numerics.attention import has_dead_sdpa_row, has_fully_masked_query


def fully_masked_query_without_weights(case: Case) -> bool:
    """Some query attends no key (its merged masks exclude every key) in an attention block that torch runs
    without weights (sdpa's convention: a zero attention row): every transformer module, and
    MultiheadAttention with need_weights=False."""
    if case.op == "MultiheadAttention" and case.forward_kwargs.get("need_weights", True):
        return False
    if transformer_detects_causal_mask(case):
        return False  # does not export (ort-dynamo-export-transformer-detect-causal-mask-data-dependent)
    if case.train and float(case.params.get("dropout", 0) or 0) > 0:
        return False  # random: unsupported
    return has_fully_masked_query(case)


def sdpa_dead_row_exported(case: Case) -> bool:
    """scaled_dot_product_attention whose attn_mask leaves some query no key
    (``conformance.numerics.attention.has_dead_sdpa_row``), in a graph that exports (not enable_gqa on a
    dynamic-shape graph: ort-dynamo-export-sdpa-gqa-dynamic-heads)."""
    if case.params.get("enable_gqa") and runs_dynamic_graph(case):
        return False
    return has_dead_sdpa_row(case)
