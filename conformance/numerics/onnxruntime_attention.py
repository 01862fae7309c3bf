"""Predicates of onnxruntime known entries (``conformance/known/onnxruntime_layers.toml``) that read the
attention reference's masks (``conformance.numerics.attention``), or judge a model of LocalResponseNorm against
the reference's bound, or replay LSTM/LSTMCell with the recurrent strategies' configuration: they live in
``conformance``, since ``backends`` imports nothing of it."""

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



def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64).astype(np.float32)


def _m1_transpose_b_rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """MLAS's SGEMM for one row of A and a B given transposed at run time (SgemmKernelM1TransposeBAvx): 8 lanes,
    lane j summing the rounded products of k ≡ j (mod 8) with rounded adds, then per row, by the row's place in
    blocks of 4, 2 and 1 rows: ((l0+l1)+l2)+l3 + ((l4+l5)+l6)+l7, ((l0+l2)+(l4+l6)) + ((l1+l3)+(l5+l7)), or
    ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7))."""
    f = np.float32
    n, k = w.shape
    lanes = np.zeros((n, 8), f)
    for c in range(0, k, 8):
        chunk = np.zeros((n, 8), f)
        chunk[:, :min(8, k - c)] = (x[c:c + 8] * w[:, c:c + 8]).astype(f)
        lanes = (lanes + chunk).astype(f)
    l = [lanes[:, j] for j in range(8)]  # noqa: E741
    four = (((l[0] + l[1]) + l[2]) + l[3]) + (((l[4] + l[5]) + l[6]) + l[7])
    two = ((l[0] + l[2]) + (l[4] + l[6])) + ((l[1] + l[3]) + (l[5] + l[7]))
    one = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
    rows = np.arange(n)
    block4 = n - n % 4
    return np.where(rows < block4, four, np.where(rows < block4 + (n % 4 & 2), two, one)).astype(f)


def _mlas_dot(x: np.ndarray, w: np.ndarray, acc: np.ndarray | None = None) -> np.ndarray:
    """float32 x W^T (W given at run time, as the adapter feeds parameters) as MLAS's SGEMM computes it: with one
    row of x, ``_m1_transpose_b_rows``; otherwise over k in order, a fused multiply-add into an accumulator from 0.
    Then added to ``acc`` (the output of a GEMM with beta = 1, or Gemm's C) with one rounding."""
    from backends.onnxruntime_known_elementwise import _fma32

    x, w = _f32(x), _f32(w)
    if int(np.prod(x.shape[:-1])) == 1:
        out = _m1_transpose_b_rows(x.reshape(-1), w).reshape(*x.shape[:-1], w.shape[0])
    else:
        out = np.zeros((*x.shape[:-1], w.shape[0]), np.float32)
        for k in range(x.shape[-1]):
            out = _fma32(x[..., k:k + 1], w[:, k], out) if k else _f32(x[..., :1].astype(np.float64) * w[:, 0])
    return out if acc is None else _f32(out.astype(np.float64) + _f32(acc))


def _lstm_gates(a: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h', c') from the float32 pre-activations ``a`` (blocks i, f, g, o): MLAS's Sigmoid/Tanh, each product and
    sum rounded to float32 (c' = f·c + i·g, no fused multiply-add; h' = o·tanh(c'))."""
    from backends.onnxruntime_known_elementwise import mlas_logistic, mlas_tanh

    ai, af, ag, ao = np.split(a, 4, axis=-1)
    i, f, g, o = mlas_logistic(ai), mlas_logistic(af), mlas_tanh(ag), mlas_logistic(ao)
    c1 = _f32((f * _f32(c)).astype(np.float64) + (i * g).astype(np.float64))
    return (o * mlas_tanh(c1)).astype(np.float32), c1


def _ort_lstm_cell(case: Case) -> dict[str, np.ndarray]:
    """LSTMCell's exported graph on ONNX Runtime: Gemm(hx, W_hh, b_hh) + Gemm(x, W_ih, b_ih), then ``_lstm_gates``."""
    ins = case.inputs
    x = np.atleast_2d(ins["input"])
    hidden = ins["weight_hh"].shape[-1]
    h0 = np.atleast_2d(ins["h0"]) if "h0" in ins else np.zeros((x.shape[0], hidden))
    c0 = np.atleast_2d(ins["c0"]) if "c0" in ins else np.zeros((x.shape[0], hidden))
    a = _f32(_mlas_dot(h0, ins["weight_hh"], ins.get("bias_hh")).astype(np.float64)
             + _mlas_dot(x, ins["weight_ih"], ins.get("bias_ih")))
    h, c = _lstm_gates(a, h0, c0)
    drop = (lambda v: v[0]) if np.ndim(ins["input"]) == 1 else (lambda v: v)
    return {"h": drop(h), "c": drop(c)}


def _ort_lstm(case: Case) -> dict[str, np.ndarray]:
    """LSTM's ONNX LSTM node on ONNX Runtime (deep_cpu_lstm): per layer and direction, X W^T for every step, then
    at each step H R^T accumulated onto it (GEMM with beta = 1) plus the summed bias (b_ih + b_hh, in float32),
    then ``_lstm_gates``; the inter-layer dropout is not exported (eval)."""
    from conformance.strategies import recurrent as SR
    from reference import recurrent as ref

    cfg, form, ins = SR.config_of(case), SR.form_of(case), SR.module_inputs(case)
    x = _f32(ins["input"])
    if form.unbatched:
        x = x[:, None]
    elif form.batch_first:
        x = x.transpose(1, 0, 2)
    steps, batch = x.shape[:2]
    layers = cfg.num_layers * cfg.directions
    states = {}
    for name in ("h0", "c0"):
        v = ins.get(name)
        states[name] = np.zeros((layers, batch, cfg.hidden_size), np.float32) if v is None else _f32(
            v[:, None] if form.unbatched else v)
    h_n, c_n = [], []
    for layer in range(cfg.num_layers):
        outs = []
        for d in range(cfg.directions):
            s = ref.suffix(layer, d)
            bias = _f32(ins[f"bias_ih{s}"].astype(np.float64) + _f32(ins[f"bias_hh{s}"])) if cfg.bias else None
            xw = _mlas_dot(x, ins[f"weight_ih{s}"])
            h, c = states["h0"][layer * cfg.directions + d], states["c0"][layer * cfg.directions + d]
            out = np.zeros((steps, batch, cfg.hidden_size), np.float32)
            for t in (reversed(range(steps)) if d else range(steps)):
                a = _mlas_dot(h, ins[f"weight_hh{s}"], xw[t])
                if bias is not None:
                    a = _f32(a.astype(np.float64) + bias)
                h, c = _lstm_gates(a, h, c)
                out[t] = h
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        x = np.concatenate(outs, axis=-1)
    if form.unbatched:
        return {"output": x[:, 0], "h_n": np.stack(h_n)[:, 0], "c_n": np.stack(c_n)[:, 0]}
    return {"output": x.transpose(1, 0, 2) if form.batch_first else x, "h_n": np.stack(h_n), "c_n": np.stack(c_n)}


def lstm_mlas_activation_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """LSTM / LSTMCell (float32) as ONNX Runtime computes them, bit for bit where its kernels allow: MLAS's SGEMM
    order of accumulation, its Sigmoid and Tanh, float32 rounding of every step (``_ort_lstm``, ``_ort_lstm_cell``)."""
    return _ort_lstm_cell(case) if case.op == "LSTMCell" else _ort_lstm(case)
