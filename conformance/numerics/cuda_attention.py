"""Known-entry predicates and models of ``conformance/known/cuda_attention.toml``: torch 2.11 on CUDA.

- The encoder layer's eval fast path (``torch._transformer_encoder_layer_fwd``, also inside
  TransformerEncoder's nested-tensor path and nn.Transformer's encoder) computes its feed-forward
  ``linear1`` and activation as ``at::_addmm_activation(b1, x, w1.t(), 1, 1, use_gelu)``
  (``native/transformers/transformer.cpp: linear_for_ffn``; the nested path through
  ``NestedTensor_times_Tensor_plus_Tensor_addmm``). On CUDA that op's GELU is the tanh
  approximation in every dtype (``native/cuda/Blas.cpp: addmm_out_cuda_impl``: the cuBLASLt
  ``GELU_BIAS`` epilogue, else ``at::gelu_(result, "tanh")`` after the GEMM). An encoder configured
  with the exact GELU (``activation='gelu'``) therefore computes GELU(approximate='tanh') there.
"""

from __future__ import annotations

import numpy as np

from backends.base import Case, Result
from conformance.numerics.attention import (
    _layer_counts,
    _SwappedActivations,
    encoder_layer_fast_path,
    fast_path_dead_query,
    fast_path_float_mask,
    transformer_call,
)
from conformance.strategies.attention import ACTIVATIONS


def fast_path_exact_gelu(case: Case) -> bool:
    """An encoder layer on the eval fast path configured with the exact GELU (``activation='gelu'``)."""
    return case.params.get("activation") == "gelu" and encoder_layer_fast_path(case)


def tanh_gelu_fast_path_result(case: Case) -> dict[str, np.ndarray]:
    """The compared tensors as CUDA computes them: the reference's composition with the encoder
    layers' activation replaced by GELU(approximate='tanh') (the decoder layers keep theirs)."""
    configured = ACTIVATIONS.get(case.params["activation"], case.params["activation"])
    n_enc, n_dec = _layer_counts(case)
    with np.errstate(all="ignore"):
        output, _, _ = transformer_call(case, _SwappedActivations(["gelu_tanh"] * n_enc + [configured] * n_dec))
    return {"output": np.asarray(output, dtype=np.float64)}


def tanh_gelu_fast_path_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """Model of ``cuda-transformer-fast-path-gelu-is-tanh-*``."""
    return tanh_gelu_fast_path_result(case)


def fast_path_tanh_gelu_beyond_bound(case: Case) -> bool:
    """``fast_path_exact_gelu`` without a fully masked query or a float mask (both give NaN on the
    fast path, other entries) and with the tanh GELU moving the output beyond its bound."""
    from conformance.numerics.elementwise import beyond_bound

    if not fast_path_exact_gelu(case) or fast_path_dead_query(case) or fast_path_float_mask(case):
        return False
    return beyond_bound(case, tanh_gelu_fast_path_result(case))


def fast_path_dead_query_and_exact_gelu(case: Case) -> bool:
    """``fast_path_exact_gelu`` where the fast path also meets a fully masked query
    (``conformance.numerics.attention.fast_path_dead_query``: NaN rows): both in the same output."""
    return fast_path_exact_gelu(case) and fast_path_dead_query(case)


def encoder_fast_path_configured_tanh_gelu(case: Case) -> bool:
    """An encoder (TransformerEncoderLayer, TransformerEncoder; not nn.Transformer, whose cloned
    decoder's ReLU has its own entry) on the eval fast path configured with
    nn.GELU(approximate='tanh'), without a fully masked query or a float mask (NaN, other entries):
    CUDA computes the tanh GELU asked for, but its float64 result is ~1e-10 off."""
    return (case.op in ("TransformerEncoderLayer", "TransformerEncoder")
            and case.params.get("activation") == "GELU(tanh)" and encoder_layer_fast_path(case)
            and not fast_path_dead_query(case) and not fast_path_float_mask(case))
