"""Predicates and models of the onnxruntime known entries of the normalisation, recurrent and attention
layers (``conformance/known/onnxruntime_layers.toml``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.base import Case

# onnxscript's rewriter (run by torch.onnx.export's default optimize=True) removes ``x + c`` for a constant
# c within abs_tol=1e-8 of 0 (onnxscript/rewriter/_pattern_ir.py Constant(rel_tol=1e-5, abs_tol=1e-8)).
_NOOP_ABS_TOL = 1e-8


def _f32(value: float) -> float:
    """``value`` rounded to float32 (what an ONNX FLOAT attribute or a float32 constant holds)."""
    return float(np.float32(value))


def _lazy_or(op: str, *names: str) -> bool:
    """Whether ``op`` is one of ``names`` or its Lazy form."""
    return any(op in (n, "Lazy" + n) for n in names)


def _base_op(case: Case) -> str:
    """The case's layer name without a Lazy prefix and without its variant."""
    op = str(case.op).split("[")[0]
    return op[4:] if op.startswith("Lazy") else op


def _uses_running_stats(case: Case) -> bool:
    """Whether a BatchNorm/InstanceNorm case normalises with its running statistics (eval with
    track_running_stats)."""
    return (not case.train) and bool(case.params.get("track_running_stats", _base_op(case).startswith("Batch")))


def exported_eps(case: Case) -> float | None:
    """The eps the exported float64 graph computes with, when it differs from the eps torch uses, else None.

    BatchNorm (eval, or without running statistics: ONNX BatchNormalization), InstanceNorm in eval with
    running statistics (BatchNormalization) and LayerNorm (LayerNormalization) take eps as an ONNX FLOAT
    attribute, float32; RMSNorm adds eps as a float32 constant, which the optimiser removes when it is
    within 1e-8 of 0 (eps None is float64's 2^-52 there)."""
    if case.dtype != "float64":
        return None
    op = _base_op(case)
    p = case.params
    if op.startswith("BatchNorm"):
        if case.train and p.get("track_running_stats", True):
            return None  # dynamo-export-training-batchnorm-as-inference
    elif op.startswith("InstanceNorm"):
        if not _uses_running_stats(case):
            return None  # InstanceNormalization: no float64 kernel (unsupported)
    elif op == "RMSNorm":
        eps = float(np.finfo(np.float64).eps) if p.get("eps") is None else float(p["eps"])
        new = 0.0 if abs(eps) <= _NOOP_ABS_TOL else _f32(eps)
        return new if new != eps else None
    elif op != "LayerNorm":
        return None
    eps = float(p.get("eps", 1e-5))
    return _f32(eps) if _f32(eps) != eps else None


def norm_eps_differs(case: Case) -> bool:
    """A float64 normalisation whose exported graph computes with another eps (``exported_eps``)."""
    return exported_eps(case) is not None


def _bn_stats(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Biased mean and variance over ``axes`` (kept)."""
    mean = x.mean(axis=axes, keepdims=True)
    return mean, ((x - mean) ** 2).mean(axis=axes, keepdims=True)


def norm_eps_model(case: Case, reference: Any, got: Any) -> dict[str, Any]:
    """What the float64 graph computes with ``exported_eps``: the normalisation evaluated in float64 with
    that eps (statistics as torch takes them: running statistics in eval, batch or instance statistics
    otherwise; LayerNorm's and RMSNorm's over the trailing normalized_shape dims)."""
    eps = exported_eps(case)
    if eps is None:
        return {}
    p = case.params
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    op = _base_op(case)
    w = case.inputs.get("weight")
    b = case.inputs.get("bias")
    with np.errstate(all="ignore"):
        if op in ("LayerNorm", "RMSNorm"):
            shape = p["normalized_shape"]
            k = 1 if isinstance(shape, (int, np.integer)) else len(shape)
            axes = tuple(range(x.ndim - k, x.ndim))
            if op == "LayerNorm":
                mean, var = _bn_stats(x, axes)
                y = (x - mean) / np.sqrt(var + eps)
            else:
                y = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
            scale = np.abs(y)
            if w is not None:
                y = y * np.asarray(w, dtype=np.float64)
                scale = scale * np.abs(np.asarray(w, dtype=np.float64))
            if b is not None:
                y = y + np.asarray(b, dtype=np.float64)
                scale = scale + np.abs(np.asarray(b, dtype=np.float64))
            return {"output": (y, scale)}
        dims = int(op[-2]) if op[-2].isdigit() else 1
        unbatched = op.startswith("InstanceNorm") and x.ndim == dims + 1
        if unbatched:
            x = x[None]
        c_shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if _uses_running_stats(case):
            mean = np.asarray(case.inputs["running_mean"], dtype=np.float64).reshape(c_shape)
            var = np.asarray(case.inputs["running_var"], dtype=np.float64).reshape(c_shape)
        else:  # BatchNorm without running statistics: batch statistics
            mean, var = _bn_stats(x, tuple(d for d in range(x.ndim) if d != 1))
        y = (x - mean) / np.sqrt(var + eps)
        scale = np.abs(x) / np.sqrt(var + eps) + np.abs(mean) / np.sqrt(var + eps)
        if w is not None:
            wv = np.asarray(w, dtype=np.float64).reshape(c_shape)
            y, scale = y * wv, scale * np.abs(wv)
        if b is not None:
            bv = np.asarray(b, dtype=np.float64).reshape(c_shape)
            y, scale = y + bv, scale + np.abs(bv)
        if unbatched:
            y, scale = y[0], scale[0]
    return {"output": (y, scale)}


def mha_scale_not_float32(case: Case) -> bool:
    """A float64 MultiheadAttention with weights (need_weights, the default) whose scale √(1/head_dim)
    is not a float32: the exported graph multiplies the query by the float32-rounded scale."""
    if case.dtype != "float64" or not case.forward_kwargs.get("need_weights", True):
        return False
    head_dim = int(case.params["embed_dim"]) // int(case.params["num_heads"])
    scale = math.sqrt(1.0 / head_dim)
    return _f32(scale) != scale


def transformer_detects_causal_mask(case: Case) -> bool:
    """TransformerEncoder/TransformerDecoder (alone or inside Transformer) given a 2-d attention mask with
    its is_causal hint None: torch's _detect_is_causal_mask compares the mask with a causal one and takes
    bool() of the result, a data-dependent branch (encoder: mask / src_mask with is_causal / src_is_causal;
    decoder: tgt_mask with tgt_is_causal)."""
    fk = case.forward_kwargs

    def detects(mask: str, hint: str) -> bool:
        x = case.inputs.get(mask)
        return x is not None and np.ndim(x) == 2 and fk.get(hint) is None

    if case.op == "TransformerEncoder":
        return detects("mask", "is_causal")
    if case.op == "TransformerDecoder":
        return detects("tgt_mask", "tgt_is_causal")
    if case.op == "Transformer":
        return detects("src_mask", "src_is_causal") or detects("tgt_mask", "tgt_is_causal")
    return False


def batch_statistics_size_check_only(case: Case) -> bool:
    """An invalid BatchNorm/InstanceNorm case whose only fault is the size check of batch/instance statistics,
    run on a dynamic-shape graph: BatchNorm in training with one value per channel (N·prod(spatial) == 1),
    InstanceNorm using instance statistics (training, or no running statistics) with one spatial element.
    torch.onnx.export traces dynamic sizes size-obliviously, so an exported program carries no such check and
    declares itself valid for these sizes (range constraints from 0): a graph exported for an earlier valid
    case of the same signature runs the invalid one."""
    from backends.torch_compile import runs_dynamic_graph

    if not case.invalid or not runs_dynamic_graph(case):
        return False
    op = _base_op(case)
    x = case.inputs.get("input")
    if x is None:
        return False
    shape = tuple(np.shape(x))
    dims = int(op[-2]) if op[-2].isdigit() else 1
    if len(shape) < 2:
        return False
    channels = shape[0] if len(shape) == dims + 1 and op.startswith("InstanceNorm") else shape[1]
    if channels != case.params.get("num_features", channels):
        return False  # (a wrong channel count is another fault; a lazy module's is inferred)
    if op.startswith("InstanceNorm"):
        if len(shape) not in (dims + 1, dims + 2):
            return False
        uses_input_stats = case.train or not case.params.get("track_running_stats", False)
        return uses_input_stats and int(np.prod(shape[-dims:])) == 1
    if op.startswith("BatchNorm"):
        return case.train and len(shape) >= 2 and int(shape[0] * np.prod(shape[2:])) == 1
    return False


def transformer_layer_norm_eps_not_float32(case: Case) -> bool:
    """A float64 transformer module whose layer_norm_eps is not a float32: its LayerNorms export to ONNX
    LayerNormalization, whose epsilon attribute is float32."""
    eps = case.params.get("layer_norm_eps")
    if case.variant == "nested" and nested_padding(case):
        return False  # ort-dynamo-export-transformer-nested-padding-computed
    return case.dtype == "float64" and eps is not None and _f32(float(eps)) != float(eps)


def nested_padding(case: Case) -> bool:
    """TransformerEncoder's nested-tensor path with a bool src_key_padding_mask that pads some position: torch
    returns 0 there."""
    kpm = case.inputs.get("src_key_padding_mask")
    return kpm is not None and np.asarray(kpm).dtype.kind == "b" and bool(np.any(kpm))


def empty_strided_dynamic_last_stride(case: Case) -> bool:
    """A valid case run on a dynamic-shape graph whose input is empty and strided with an example last-dim
    stride other than 0 and 1 (``backends.onnxruntime_known.example_strides``: the adapter exports from a
    clone that keeps an empty tensor's strides): the trace keeps an aten.sym_stride node."""
    from backends.onnxruntime_known import example_strides
    from backends.torch_compile import runs_dynamic_graph

    x = case.inputs.get("input")
    if case.invalid or x is None or 0 not in np.shape(x) or not runs_dynamic_graph(case):
        return False
    return case.layout("input").kind == "strided" and example_strides(case, "input")[-1] not in (0, 1)


def runs_static_graph(case: Case) -> bool:
    """Whether ``case`` runs a static-shape graph (exported at its exact sizes)."""
    from backends.torch_compile import runs_dynamic_graph

    return not runs_dynamic_graph(case)


