"""Predicates of onnxruntime known entries (``conformance/known/onnxruntime_layers.toml``) that read the
attention reference's masks (``conformance.numerics.attention``), or judge a model of LocalResponseNorm against
the reference's bound: they live in ``conformance``, since ``backends`` imports nothing of it."""

from __future__ import annotations

import numpy as np

from backends.base import Case, Result
from backends.onnxruntime_known_layers import transformer_detects_causal_mask
from backends.torch_compile import runs_dynamic_graph
from conformance.dtypes import DTYPES
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


# -- LocalResponseNorm of 5 or more dims in float16 ----------------------------------------------------------
# (Here rather than in backends/: the predicate judges the model against the reference's bound.)


def _lrn_window_average(x: np.ndarray, size: int) -> np.ndarray:
    """The window average of x² over channels (dim 1), zero padded, as the exported Pad + AveragePool
    (count_include_pad) computes it, in float64."""
    from reference.normalization_lrn import window_sum

    return window_sum(x * x, size, size // 2, (size - 1) // 2) / size


def lrn_float16_5d_ort_output(case: Case) -> np.ndarray:
    """What onnxruntime computes for a float16 LocalResponseNorm of 5 or more dims exported by the dynamo
    exporter: its CPU provider runs the float16 Mul, AveragePool, Mul, Add, Pow and Div in float32 (inserted
    Casts), but the Squeeze and Reshape between AveragePool and the next Mul stay float16, so the window
    average of x² is rounded to float16 there (inf beyond 65504, 0 or a coarse subnormal for tiny values);
    α, k and β are float16 constants of the graph. The rest is evaluated in float64 and rounded to float16."""
    p = case.params
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    f16 = DTYPES["float16"].round
    alpha, k, beta = (float(np.float16(p[n])) for n in ("alpha", "k", "beta"))
    with np.errstate(all="ignore"):
        average = f16(_lrn_window_average(x, int(p["size"])))
        return f16(x / (alpha * average + k) ** beta)


def lrn_float16_5d_ort_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """Model of ort-lrn-float16-5d-average-rounded-to-float16: ``lrn_float16_5d_ort_output``."""
    return {"output": lrn_float16_5d_ort_output(case)}


def lrn_float16_5d_ort_shows(case: Case) -> bool:
    """A valid float16 LocalResponseNorm of 5 or more dims (one torch can view: not ``lrn_view_fails``)
    where onnxruntime's result (``lrn_float16_5d_ort_output``) fails against the reference: non-finite where
    the reference is finite or the reverse, or beyond the bound."""
    from conformance.numerics.elementwise import shows_against_reference
    from conformance.numerics.normalization import lrn_view_fails

    x = case.inputs.get("input")
    if case.invalid or case.dtype != "float16" or x is None or np.ndim(x) < 5 or np.size(x) == 0:
        return False
    if lrn_view_fails(case):
        return False  # raises (ort-lrn-5d-view-raises)
    return shows_against_reference(case, {"output": lrn_float16_5d_ort_output(case)})


def lrn_float32_composite_ort_output(case: Case) -> dict[str, np.ndarray]:
    """The output of the exported float32 LocalResponseNorm: the composite x·x, window average, α·avg + k, d^β,
    x/d^β, each rounded to float32 (``conformance.numerics.normalization.lrn_composite_result``, torch's own
    composite), so an intermediate overflows or underflows as in torch."""
    from conformance.numerics.normalization import lrn_composite_result

    return {"output": lrn_composite_result(case)["output"]}


def lrn_float32_composite_ort_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """Model of ort-lrn-composite-out-of-range-float32: ``lrn_float32_composite_ort_output``."""
    return lrn_float32_composite_ort_output(case)


def lrn_float32_composite_ort_shows(case: Case) -> bool:
    """A valid float32 LocalResponseNorm (one torch can view: not ``lrn_view_fails``) whose composite rounded op
    by op to float32 (``lrn_float32_composite_ort_output``) fails against the reference."""
    from conformance.numerics.elementwise import shows_against_reference
    from conformance.numerics.normalization import lrn_view_fails

    x = case.inputs.get("input")
    if case.invalid or case.dtype != "float32" or x is None or np.size(x) == 0 or lrn_view_fails(case):
        return False
    return shows_against_reference(case, lrn_float32_composite_ort_output(case))
