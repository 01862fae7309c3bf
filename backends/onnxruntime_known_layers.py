"""Predicates and models of the onnxruntime known entries of the normalisation, recurrent and attention
layers (``conformance/known/onnxruntime_layers.toml``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.base import Case
from backends.export_strides import example_strides
from backends.onnxruntime_known_elementwise import ort_sigmoid
from backends.torch_compile import runs_dynamic_graph

# onnxscript's rewriter (run by torch.onnx.export's default optimize=True) removes ``x + c`` for a constant
# c within abs_tol=1e-8 of 0 (onnxscript/rewriter/_pattern_ir.py Constant(rel_tol=1e-5, abs_tol=1e-8)).
_NOOP_ABS_TOL = 1e-8


def _f32(value: float) -> float:
    """``value`` rounded to float32 (what an ONNX FLOAT attribute or a float32 constant holds)."""
    return float(np.float32(value))


def _uses_running_stats(case: Case, spec: Any) -> bool:
    """Whether a BatchNorm/InstanceNorm case (``spec.kind`` "batch" or "instance", lazy forms included)
    normalises with its running statistics (eval with track_running_stats)."""
    return (not case.train) and bool(case.params.get("track_running_stats", spec.kind == "batch"))


def exported_eps(case: Case, spec: Any) -> float | None:
    """The eps the exported float64 graph computes with, when it differs from the eps torch uses, else None.

    BatchNorm (eval, or without running statistics: ONNX BatchNormalization), InstanceNorm in eval with
    running statistics (BatchNormalization) and LayerNorm (LayerNormalization) take eps as an ONNX FLOAT
    attribute, float32; RMSNorm adds eps as a float32 constant, which the optimiser removes when it is
    within 1e-8 of 0 (eps None is float64's 2^-52 there)."""
    if case.dtype != "float64":
        return None
    kind = spec.kind  # the normalisation (a lazy BatchNorm/InstanceNorm declares its eager form's)
    p = case.params
    if kind == "batch":
        if case.train and p.get("track_running_stats", True):
            return None  # ort-dynamo-export-training-batchnorm-as-inference
    elif kind == "instance":
        if not _uses_running_stats(case, spec):
            return None  # InstanceNormalization: no float64 kernel (unsupported)
    elif kind == "rms":
        eps = float(np.finfo(np.float64).eps) if p.get("eps") is None else float(p["eps"])
        new = 0.0 if abs(eps) <= _NOOP_ABS_TOL else _f32(eps)
        return new if new != eps else None
    elif kind != "layer":
        return None
    eps = float(p.get("eps", 1e-5))
    return _f32(eps) if _f32(eps) != eps else None


def norm_eps_differs(case: Case, spec: Any) -> bool:
    """A float64 normalisation whose exported graph computes with another eps (``exported_eps``); not a lazy
    InstanceNorm's unbatched input whose dims 0 and 1 differ, which torch itself rejects (it infers num_features
    from dim 1: ort-lazy-instancenorm-unbatched-infers-num-features-from-dim-1)."""
    shape = np.shape(case.inputs["input"])
    if spec.family == "lazy" and spec.kind == "instance" and len(shape) == spec.dims + 1 and shape[0] != shape[1]:
        return False
    return exported_eps(case, spec) is not None


def _bn_stats(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Biased mean and variance over ``axes`` (kept)."""
    mean = x.mean(axis=axes, keepdims=True)
    return mean, ((x - mean) ** 2).mean(axis=axes, keepdims=True)


def norm_eps_model(case: Case, reference: Any, got: Any, spec: Any) -> dict[str, Any]:
    """What the float64 graph computes with ``exported_eps``: the normalisation evaluated in float64 with
    that eps (statistics as torch takes them: running statistics in eval, batch or instance statistics
    otherwise; LayerNorm's and RMSNorm's over the trailing normalized_shape dims)."""
    eps = exported_eps(case, spec)
    if eps is None:
        return {}
    p = case.params
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    kind = spec.kind
    w = case.inputs.get("weight")
    b = case.inputs.get("bias")
    with np.errstate(all="ignore"):
        if kind in ("layer", "rms"):
            shape = p["normalized_shape"]
            k = 1 if isinstance(shape, (int, np.integer)) else len(shape)
            axes = tuple(range(x.ndim - k, x.ndim))
            if kind == "layer":
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
        unbatched = kind == "instance" and x.ndim == spec.dims + 1
        if unbatched:
            x = x[None]
        c_shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if _uses_running_stats(case, spec):
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


def batch_statistics_size_check_only(case: Case, spec: Any) -> bool:
    """An invalid BatchNorm/InstanceNorm case whose only fault is the size check of batch/instance statistics,
    run on a dynamic-shape graph: BatchNorm in training with one value per channel (N·prod(spatial) == 1),
    InstanceNorm using instance statistics (training, or no running statistics) with one spatial element.
    torch.onnx.export traces dynamic sizes size-obliviously, so an exported program carries no such check and
    declares itself valid for these sizes (range constraints from 0): a graph exported for an earlier valid
    case of the same signature runs the invalid one."""

    if not case.invalid or not runs_dynamic_graph(case):
        return False
    kind, dims = spec.kind, spec.dims
    x = case.inputs.get("input")
    if x is None:
        return False
    shape = tuple(np.shape(x))
    if len(shape) < 2:
        return False
    channels = shape[0] if len(shape) == dims + 1 and kind == "instance" else shape[1]
    if channels != case.params.get("num_features", channels):
        return False  # (a wrong channel count is another fault; a lazy module's is inferred)
    if kind == "instance":
        if len(shape) not in (dims + 1, dims + 2):
            return False
        uses_input_stats = case.train or not case.params.get("track_running_stats", False)
        return uses_input_stats and int(np.prod(shape[-dims:])) == 1
    if kind == "batch":
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
    stride other than 0 and 1 (``backends.export_strides.example_strides``: the adapter exports from a
    clone that keeps an empty tensor's strides): the trace keeps an aten.sym_stride node."""

    x = case.inputs.get("input")
    if case.invalid or x is None or 0 not in np.shape(x) or not runs_dynamic_graph(case):
        return False
    return case.layout("input").kind == "strided" and example_strides(case, "input")[-1] not in (0, 1)


def runs_static_graph(case: Case) -> bool:
    """Whether ``case`` runs a static-shape graph (exported at its exact sizes)."""

    return not runs_dynamic_graph(case)




def sdpa_mask_broadcast_dynamic(case: Case) -> bool:
    """scaled_dot_product_attention[flash] on a dynamic-shape graph whose attn_mask broadcasts a size-1 dim
    against a query/key size other than 1 (dims -2, -1 against L and S; of a 4-d mask also dims 0, 1 against
    batch and heads). torch.onnx.export captures with backed_size_oblivious, so a size-1 dim stays a symbol;
    the flash kernel's mask check wants each mask dim statically equal to its target or the integer 1, and
    rejects the call (no kernel)."""

    mask, q, k = (case.inputs.get(n) for n in ("attn_mask", "query", "key"))
    if mask is None or q is None or k is None or np.ndim(q) != 4 or np.ndim(mask) not in (2, 4):
        return False
    if not runs_dynamic_graph(case):
        return False
    qs, ms = np.shape(q), np.shape(mask)
    targets = (qs[-2], np.shape(k)[-2]) if len(ms) == 2 else (qs[0], qs[1], qs[-2], np.shape(k)[-2])
    return any(m == 1 and t != 1 for m, t in zip(ms, targets))


def sdpa_math_mask_broadcast_dynamic(case: Case) -> bool:
    """scaled_dot_product_attention[math] on a dynamic-shape graph whose attn_mask broadcasts a size-1 dim of its
    own in a way the capture cannot trace. torch.onnx.export captures with backed_size_oblivious: every size-1 dim
    of the inputs is one (duck-sized) symbol not known to be 1, so adding the mask to the scores records that
    symbol == the broadcast size as a deferred assertion, which contradicts the symbol's other uses. Found by trying
    shapes (scores (*B, L, S): B the broadcast batch dims of query and key): it fails where the mask's last dim is 1
    against S != 1 with batch dims present, or where one of the mask's own batch dims is 1 against a B dim != 1
    while the key side holds the symbol or broadcasts too (E == 1, S == 1, or a batch dim of query and key that
    differ: a broadcast key, or grouped-query heads); a mask broadcasting L only, or a missing leading mask dim,
    exports."""

    if case.invalid or case.params.get("kernel") != "math":
        return False
    q, k, mask = (case.inputs.get(n) for n in ("query", "key", "attn_mask"))
    if q is None or k is None or mask is None or np.ndim(q) < 2 or np.ndim(k) < 2:
        return False
    qs, ks, ms = np.shape(q), np.shape(k), np.shape(mask)
    n = max(len(qs), len(ks)) - 2
    qb, kb = (1,) * (n - len(qs) + 2) + tuple(qs[:-2]), (1,) * (n - len(ks) + 2) + tuple(ks[:-2])
    target = tuple(max(a, b) for a, b in zip(qb, kb)) + (qs[-2], ks[-2])
    if len(ms) > len(target) or not runs_dynamic_graph(case):
        return False
    own = tuple(zip(ms, target[len(target) - len(ms):]))  # the mask's own dims against their targets
    last = n > 0 and ms[-1] == 1 and ks[-2] != 1
    batch = any(m == 1 and t != 1 for m, t in own[:-2])
    key_side = qs[-1] == 1 or ks[-2] == 1 or qb != kb
    return last or (batch and key_side)


def transformer_strict_capture_fast_path(case: Case) -> bool:
    """TransformerEncoder or Transformer whose encoder detects a causal mask (a 2-d mask, its is_causal hint
    None: the non-strict capture fails on bool() of it) while nothing else needs a data-dependent branch (no
    decoder tgt_mask to detect), with its encoder layers on the eval fast path (eval, batch_first, batched,
    bias, even heads; every activation drawn is relu or gelu). torch.onnx.export then captures with
    strict=True, where dynamo never branches on the detected value (the fast path ignores it) and records
    torch._transformer_encoder_layer_fwd, which has no ONNX translation."""
    fk, p = case.forward_kwargs, case.params

    def detects(mask: str, hint: str) -> bool:
        x = case.inputs.get(mask)
        return x is not None and np.ndim(x) == 2 and fk.get(hint) is None

    if case.op == "TransformerEncoder":
        encoder = detects("mask", "is_causal")
    elif case.op == "Transformer":
        encoder = detects("src_mask", "src_is_causal") and not detects("tgt_mask", "tgt_is_causal")
    else:
        return False
    src = case.inputs.get("src")
    return (encoder and not case.train and bool(p.get("batch_first")) and bool(p.get("bias", True))
            and src is not None and np.ndim(src) == 3 and int(p["nhead"]) % 2 == 0
            and p.get("activation") in ("relu", "gelu", "ReLU()", "GELU(tanh)"))


def _onnx_recurrent_node(case: Case) -> bool:
    """A GRU or LSTM case (no packing) whose export holds an ONNX GRU/LSTM node: every one but those with h0 on a
    dynamic-shape graph, which fail to export (ort-dynamo-export-gru-lstm-dynamic-hidden-size-attribute). RNN is
    decomposed (no ONNX RNN node)."""

    if case.op not in ("GRU", "LSTM") or case.variant:
        return False
    return not ("h0" in case.inputs and runs_dynamic_graph(case))


def lstm_projection_exported(case: Case) -> bool:
    """An LSTM case with proj_size > 0 whose export holds an ONNX LSTM node (``_onnx_recurrent_node``): torchlib's
    aten_lstm ignores the projection (no weight_hr_l*, hidden_size read from h0's last dim, which is proj_size)."""
    return case.op == "LSTM" and _onnx_recurrent_node(case) and int(case.params.get("proj_size", 0) or 0) > 0


def recurrent_runs_in_ort(case: Case) -> bool:
    """A recurrent case whose graph exports and runs to its end on onnxruntime: RNN, or a GRU/LSTM with an
    ONNX GRU/LSTM node (``_onnx_recurrent_node``) that is not float64 (its CPU kernels refuse double when they run:
    the adapter reports the case unsupported), not bfloat16 (ONNX GRU/LSTM take no bfloat16: the model does not load,
    unsupported) and not an LSTM with a projection (``lstm_projection_exported``)."""
    if case.op not in ("GRU", "LSTM"):
        return True
    return (_onnx_recurrent_node(case) and case.dtype not in ("float64", "bfloat16")
            and not lstm_projection_exported(case))


# torch's alpha-dropout constant (ATen's _dropout_impl: alpha = 1.7580993408473766, i.e. -α')
_ALPHA = 1.7580993408473766


def alpha_dropout_float32_constants(p: float) -> tuple[float, float, float]:
    """(a, α·a, α·a·p) of alpha dropout as the exported graph holds them: ATen's decomposition passes them to
    aten.scalar_tensor(dtype=float64) as Python floats, and torchlib's aten_scalar_tensor makes each a float32
    constant before casting it to float64."""
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1.0) * (1.0 - p))
    return _f32(a), _f32(_ALPHA * a), _f32(_ALPHA * a * p)


def alpha_dropout_float32_constants_model(case: Case, reference: Any, got: Any) -> dict[str, Any]:
    """What the float64 graph of AlphaDropout/FeatureAlphaDropout computes in training: x·a + α·a·p where
    kept, α·a·p - α·a where dropped, with the float32-rounded constants (``alpha_dropout_float32_constants``).
    The backend's own output tells the dropped elements (those equal to that dropped value)."""
    y = got.tensors().get("output")
    if y is None:
        return {}
    a, alpha_a, alpha_a_p = alpha_dropout_float32_constants(float(case.params["p"]))
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    dropped = -alpha_a + alpha_a_p
    with np.errstate(all="ignore"):
        kept = x * a + alpha_a_p
        y = np.asarray(y, dtype=np.float64)
        if y.shape != kept.shape:
            return {}
        return {"output": np.where(y == dropped, dropped, kept)}


def feature_alpha_dropout_empty_channels_dynamic(case: Case) -> bool:
    """A FeatureAlphaDropout case on a dynamic-shape graph whose input of 3 or more dims has no channel (dim 1 of
    size 0) and at least 2 entries in dim 0: torch.export's trace of the feature noise (N, C, 1, ...) fails an
    assertion. Found by trying shapes, with all-zero strides (the adapter's example of an empty contiguous input)
    and with contiguous ones: (2, 0, 2), (6, 0, 2, 2), (2, 0, 1, 2), (2, 0, 3, 1) fail; (1, 0, 2, 2), (0, 0, 2, 2),
    (2, 3, 0, 2) and, with zero strides, (2, 0) export."""

    x = case.inputs.get("input")
    if x is None or case.op != "FeatureAlphaDropout" or not runs_dynamic_graph(case):
        return False
    shape = np.shape(x)
    return len(shape) >= 3 and shape[1] == 0 and shape[0] >= 2


def lstm_cell_float64_model(case: Case, reference: Any, got: Any) -> dict[str, Any]:
    """LSTMCell's float64 graph on ONNX Runtime: Gemm(hx, W_hh, b_hh) + Gemm(x, W_ih, b_ih) in float64, then the
    Sigmoid nodes as ONNX Runtime's float64 Sigmoid computes them (``ort_sigmoid``: 1 - 1/(1 + e^x) for x < 0,
    whose cancellation leaves an absolute error of ~1e-16, large relative to a saturated gate), Tanh, and
    c' = f·c + i·g, h' = o·tanh(c') (Mul, Mul, Add: no fused multiply-add)."""

    ins = case.inputs
    if case.dtype != "float64" or "input" not in ins:
        return {}
    x = np.atleast_2d(np.asarray(ins["input"], np.float64))
    w_ih, w_hh = (np.asarray(ins[n], np.float64) for n in ("weight_ih", "weight_hh"))
    zeros = np.zeros((x.shape[0], w_hh.shape[-1]))
    h0, c0 = (np.atleast_2d(np.asarray(ins[n], np.float64)) if n in ins else zeros for n in ("h0", "c0"))
    with np.errstate(all="ignore"):
        a = x @ w_ih.T
        if "bias_ih" in ins:
            a = a + np.asarray(ins["bias_ih"], np.float64)
        r = h0 @ w_hh.T
        if "bias_hh" in ins:
            r = r + np.asarray(ins["bias_hh"], np.float64)
        ai, af, ag, ao = np.split(r + a, 4, axis=-1)
        i, f, o = (ort_sigmoid(v, "float64") for v in (ai, af, ao))
        c = f * c0 + i * np.tanh(ag)
        h = o * np.tanh(c)
    if np.ndim(ins["input"]) == 1:
        h, c = h[0], c[0]
    return {"h": h, "c": c}
