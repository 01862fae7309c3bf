"""Value predicates and models of the onnxruntime backend's known entries for activations, losses,
distances, linear layers, embeddings and dropout (``conformance/known/onnxruntime_elementwise.toml``).

NumPy only (``backends`` imports nothing of ``conformance``): predicates take the ``Case``; models
take ``(case, reference, got)`` and return ``{tensor name: predicted value}``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from backends.base import Case
from backends.export_strides import elementwise_perm_divides_by_zero, example_strides
from backends.onnxruntime_known import loss_reduction, ort_pairwise, reduce_loss
from backends.torch_compile import runs_dynamic_graph

# MLAS's logistic kernel (onnxruntime/core/mlas/lib/logistic.cpp): the input clamped to [-18, 18], an odd
# polynomial over an even one in x² (Horner with fused multiply-adds), plus 1/2, clamped to [0, 1].
_LOGISTIC_RANGE = (-18.0, 18.0)
_LOGISTIC_P = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03,
               2.48287947061529e-01)
_LOGISTIC_Q = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
               1.16817656904453e-01, 9.93151921023180e-01)


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray | float) -> np.ndarray:
    """float32 a·b + c rounded once (a float32 product is exact in float64; the sum rounds twice only
    in ties of no consequence here)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.float64(np.float32(c))).astype(np.float32)


def _mlas_rational(v: np.ndarray, p_coeffs: tuple[float, ...], q_coeffs: tuple[float, ...]) -> np.ndarray:
    """MLAS's odd rational kernel in float32: v·P(v²) / Q(v²), each polynomial by Horner's rule with fused
    multiply-adds (the shape of its logistic and tanh approximations)."""
    f = np.float32
    v2 = (v * v).astype(f)
    p = _fma32(v2, f(p_coeffs[0]), p_coeffs[1])
    for c in p_coeffs[2:]:
        p = _fma32(p, v2, c)
    p = (p * v).astype(f)
    q = _fma32(v2, f(q_coeffs[0]), q_coeffs[1])
    for c in q_coeffs[2:]:
        q = _fma32(q, v2, c)
    return (p / q).astype(f)


def mlas_logistic(x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's float32 Sigmoid (MLAS's rational approximation, AVX2 FMA path): absolute error up to
    ~1e-7, so 0 below x = -18 and a relative error of O(1) below about -15."""
    f = np.float32
    with np.errstate(all="ignore"):
        v = np.clip(np.asarray(x, f), f(_LOGISTIC_RANGE[0]), f(_LOGISTIC_RANGE[1]))
        r = _mlas_rational(v, _LOGISTIC_P, _LOGISTIC_Q) + f(0.5)
        r = np.where(np.isnan(v), v, np.clip(r, f(0), f(1)))
    return r.astype(f)


# MLAS's tanh kernel (onnxruntime/core/mlas/lib/tanh.cpp, Eigen's coefficients): the input clamped to [-9, 9], an
# odd polynomial in x² of degree 13 over an even one of degree 6, each by Horner's scheme with fused multiply-adds
# (the AVX2 kernel; bit-exact with onnxruntime 1.32's Tanh over 3e5 float32 inputs, the scalar tail included).
_TANH_ALPHA = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
               1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_TANH_BETA = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def mlas_tanh(x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's float32 Tanh (MLAS's rational approximation, FMA path): a few ulps off near ±1 (absolute
    error up to ~2.6e-7); NaN stays NaN."""
    f = np.float32
    with np.errstate(all="ignore"):
        v = np.clip(np.asarray(x, f), f(-9.0), f(9.0))
        return np.where(np.isnan(v), v, _mlas_rational(v, _TANH_ALPHA, _TANH_BETA)).astype(f)


def ort_sigmoid(x: np.ndarray, dtype: str) -> np.ndarray:
    """ONNX Runtime's CPU Sigmoid in ``dtype``: float64 as 1 - 1/(1 + exp(x)) for x < 0 (cancellation: an
    absolute error of ~1e-16, 0 below x ≈ -37), 1/(1 + exp(-x)) otherwise; float32 MLAS's approximation;
    float16 MLAS's in float32, rounded to float16."""
    if dtype == "float64":
        x = np.asarray(x, np.float64)
        with np.errstate(all="ignore"):
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1.0 / (1.0 + e), 1.0 - 1.0 / (1.0 + e))
    out = mlas_logistic(np.asarray(x, np.float32))
    return out.astype(np.float16) if dtype == "float16" else out


def silu_ort_model(case: Case, reference, got) -> dict:
    """SiLU as its export computes it on ONNX Runtime: Mul(x, Sigmoid(x)) in the case's dtype with ONNX
    Runtime's Sigmoid (``ort_sigmoid``); NaN at -inf (-inf·0). For the output and, in place, the input."""
    fmt = {"float64": np.float64, "float32": np.float32, "float16": np.float16}[case.dtype]
    x = np.asarray(case.inputs["input"], fmt)
    with np.errstate(all="ignore"):
        y = (x * ort_sigmoid(x, case.dtype).astype(fmt)).astype(fmt)
        # float64: ONNX Runtime's exp (Eigen's vectorised one on large tensors) is a few ulps off NumPy's, and
        # 1 - 1/(1 + e) turns that into a few ulps of 1 in the sigmoid (seen: 14 ulps of the result at
        # x = -0.5): judge the prediction at 8·|x|. float32/float16 replay MLAS exactly: at |y|.
        scale = np.abs(y.astype(np.float64))
        if case.dtype == "float64":
            scale = 8.0 * np.abs(x.astype(np.float64))
    y = (y, scale)
    out = {"output": y}
    if case.params.get("inplace"):
        out["state.input"] = y
    return out


def reduction_sum_or_none(case: Case) -> bool:
    """The loss's reduction is 'sum' or 'none' (given as reduction or by size_average/reduce)."""
    return loss_reduction(case.params) in ("sum", "none")


class _PairCase:
    """The fields of a PairwiseDistance case that ``backends.onnxruntime_known.ort_pairwise`` reads."""

    def __init__(self, dtype: str, x1: np.ndarray, x2: np.ndarray, p: float, eps: float) -> None:
        self.dtype = dtype
        self.inputs = {"x1": x1, "x2": x2}
        self.params = {"p": p, "eps": eps, "keepdim": False}


def triplet_margin_ort_model(case: Case, reference, got) -> dict:
    """TripletMarginLoss as its float64 export computes it on ONNX Runtime: each distance as the exported
    PairwiseDistance graph (``ort_pairwise``: eps and 1/p float32 constants, unscaled powers), the
    margin a float32 constant, max(margin + d(a, p) - d(a, n), 0) (with swap, d(a, n) replaced by
    min(d(a, n), d(p, n))), then the reduction."""

    params = case.params
    p, eps = float(params.get("p", 2.0)), float(params.get("eps", 1e-6))
    a, pos, neg = (np.asarray(case.inputs[k], np.float64) for k in ("anchor", "positive", "negative"))

    def dist(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        x1, x2 = np.broadcast_arrays(x1, x2)
        out = ort_pairwise(_PairCase(case.dtype, x1, x2, p, eps))
        if out is None:
            raise ValueError("no distance")
        return out

    with np.errstate(all="ignore"):
        d_ap, d_an = dist(a, pos), dist(a, neg)
        if params.get("swap", False):
            d_an = np.minimum(d_an, dist(pos, neg))
        margin = float(np.float32(params.get("margin", 1.0)))
        loss = np.maximum(d_ap + margin - d_an, 0.0)
        return {"output": reduce_loss(loss, loss_reduction(case.params))}


def hardswish_ort_model(case: Case, reference, got) -> dict:
    """Hardswish as its export (ONNX HardSwish) computes it on ONNX Runtime: x·clip(x·α + 1/2, 0, 1) with
    α = float32(1/6), rounded to float32 after each step (float16: computed in float32, then rounded); NaN at
    -inf (-inf·0), x itself beyond 3. For the output and, in place, the input."""
    f = np.float32
    x = np.asarray(case.inputs["input"], f)
    with np.errstate(all="ignore"):
        y = (x * np.clip((f(1.0 / 6.0) * x).astype(f) + f(0.5), f(0), f(1)).astype(f)).astype(f)
    if case.dtype == "float16":
        y = y.astype(np.float16)
    out = {"output": y}
    if case.params.get("inplace"):
        out["state.input"] = y
    return out


_FMT = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def bce_with_logits_ort_model(case: Case, reference, got) -> dict:
    """BCEWithLogitsLoss as its export computes it on ONNX Runtime: (1 - t)·x - lw·Log(Sigmoid(x)) with
    lw = (pos_weight - 1)·t + 1 (1 without pos_weight), times weight, then the reduction, each step rounded
    to the case's format, with ONNX Runtime's Sigmoid (``ort_sigmoid``: 0 below -18 in float32/float16, below
    about -37 in float64, so the loss is inf there). Judged at the magnitude of the terms (the difference
    cancels), and in float64 below 0 at |lw|/sigmoid(x) too (the cancelling sigmoid is known to a few ulps of 1)."""
    fmt = _FMT[case.dtype]
    inputs = case.inputs
    x = np.asarray(inputs["input"], fmt)
    t = np.asarray(inputs["target"], fmt)
    one = fmt(1)
    with np.errstate(all="ignore"):
        sig = ort_sigmoid(x, case.dtype).astype(fmt)
        log_sig = np.log(sig.astype(np.float64)).astype(fmt)
        if inputs.get("pos_weight") is not None:
            lw = ((np.asarray(inputs["pos_weight"], fmt) - one).astype(fmt) * t).astype(fmt) + one
        else:
            lw = np.ones_like(t)
        a = ((one - t).astype(fmt) * x).astype(fmt)
        b = (lw * log_sig).astype(fmt)
        loss = (a - b).astype(fmt)
        mag = np.abs(a.astype(np.float64)) + np.abs(b.astype(np.float64))
        if case.dtype == "float64":
            mag = mag + np.where(x < 0, np.abs(lw) / sig, 0.0)
        if inputs.get("weight") is not None:
            w = np.asarray(inputs["weight"], fmt)
            loss = (loss * w).astype(fmt)
            mag = mag * np.abs(w.astype(np.float64))
        reduction = loss_reduction(case.params)
        out = reduce_loss(loss.astype(np.float64), reduction)
        scale = reduce_loss(mag, "none" if reduction == "none" else "sum")
    return {"output": (out, np.broadcast_to(scale, np.shape(out)))}


# -- cross entropy: torchlib's aten.cross_entropy_loss is ONNX SoftmaxCrossEntropyLoss ------------------------
def _lce_chunked(case: Case) -> bool:
    """LinearCrossEntropyLoss taking torch's chunked path (options given, label_smoothing 0, int64 class
    targets, no out_features): a custom op with no ONNX function."""
    p = case.params
    target = np.asarray(case.inputs["target"])
    return (case.op == "LinearCrossEntropyLoss" and p.get("options") is not None
            and float(p.get("label_smoothing", 0.0)) == 0.0 and target.dtype.kind in "iu" and not p.get("out_features"))


def _class_target(case: Case) -> np.ndarray | None:
    """The class-index target of a CrossEntropyLoss/LinearCrossEntropyLoss case exported as
    SoftmaxCrossEntropyLoss (None for probability targets or LinearCrossEntropyLoss's chunked path)."""
    target = np.asarray(case.inputs["target"])
    if target.dtype.kind not in "iu" or _lce_chunked(case):
        return None
    return target


def lce_chunked(case: Case) -> bool:
    """LinearCrossEntropyLoss on torch's chunked path (``_lce_chunked``)."""
    return _lce_chunked(case)


def cross_entropy_unbatched(case: Case) -> bool:
    """Class-index cross entropy of an unbatched input (a 0-d target, logits (C,)): SoftmaxCrossEntropyLoss
    needs (N, C, ...), and ONNX Runtime's function body refuses the model; with dynamic shapes torch's
    decomposition fails first (a data-dependent size), which is the only failure of NLLLoss (its static
    export unsqueezes the input and runs)."""

    target = _class_target(case)
    if target is None or target.ndim != 0:
        return False
    return runs_dynamic_graph(case) if case.op == "NLLLoss" else True


def cross_entropy_empty(case: Case) -> bool:
    """Class-index cross entropy of a batched input with no element to classify (an empty target: N = 0 or
    an empty spatial dim): SoftmaxCrossEntropyLoss reshapes to (N, C, -1), which ONNX Runtime refuses."""
    target = _class_target(case)
    return target is not None and target.ndim >= 1 and target.size == 0


def cross_entropy_probabilities(case: Case) -> bool:
    """Cross entropy with probability (floating-point) targets: SoftmaxCrossEntropyLoss takes only class
    indices, so ONNX Runtime refuses the model (a type error)."""
    return np.asarray(case.inputs["target"]).dtype.kind == "f"


def cross_entropy_smoothing_dropped(case: Case) -> bool:
    """Class-index cross entropy with label_smoothing > 0 where smoothing changes the loss: a batched,
    non-empty target with some target not ignored, and at least 2 classes (torchlib drops the smoothing)."""
    target = _class_target(case)
    p = case.params
    if target is None or target.ndim == 0 or target.size == 0 or float(p.get("label_smoothing", 0.0)) <= 0:
        return False
    if case.op == "LinearCrossEntropyLoss":
        classes = int(p["num_classes"])
        ignore = p.get("ignore_index")
    else:
        classes = int(np.shape(case.inputs["input"])[1])
        ignore = p.get("ignore_index", -100)
    ignore = -100 if ignore is None else int(ignore)
    return classes >= 2 and bool(np.any(target != ignore))


def nll_negative_target_wraps(case: Case) -> bool:
    """A class-index NLL/cross-entropy case whose targets (those not equal to ignore_index) all lie in
    [-C, C) and some in [-C, 0): torch refuses a negative class; ONNX Runtime's GatherElements (in the
    NegativeLogLikelihoodLoss/SoftmaxCrossEntropyLoss function bodies) wraps it to C + t (a target >= C
    raises there too)."""
    target = np.asarray(case.inputs["target"])
    if target.dtype.kind not in "iu" or target.size == 0:
        return False
    shape = np.shape(case.inputs["input"])
    classes = int(shape[1] if len(shape) >= 2 else shape[0])
    ignore = case.params.get("ignore_index", -100)
    ignore = -100 if ignore is None else int(ignore)
    t = target[target != ignore]
    if target.ndim == 0 and (case.op != "NLLLoss" or cross_entropy_unbatched(case)):
        return False  # an unbatched case whose export or model is refused first (cross_entropy_unbatched)
    return t.size > 0 and bool(np.all((t >= -classes) & (t < classes))) and bool(np.any(t < 0))


def broadcast_size_one_dynamic(case: Case) -> bool:
    """A dynamic-shape export (the adapter's graph kind: odd case ids) of two inputs where a size-1 dim
    meets a dim of size >= 2 (shapes aligned from the right): torch.onnx exports with backed_size_oblivious,
    so the size-1 dim is a symbol not known to be 1 and the broadcast check fails."""

    if case.invalid or not runs_dynamic_graph(case):
        return False
    shapes = [np.shape(v) for v in case.inputs.values()]
    for i, a in enumerate(shapes):
        for b in shapes[i + 1:]:
            for k in range(1, min(len(a), len(b)) + 1):
                if (a[-k] == 1 and b[-k] >= 2) or (b[-k] == 1 and a[-k] >= 2):
                    return True
    return False


def elementwise_layout_divides_by_zero(case: Case) -> bool:
    """A dynamic-shape export of an elementwise op on an empty ``input`` whose example strides
    (``backends.export_strides.example_strides``) make torch's elementwise output layout divide by the
    empty dim's size (``elementwise_perm_divides_by_zero``: "integer modulo by zero" in torch.export)."""

    shape = tuple(int(s) for s in np.shape(case.inputs["input"]))
    if case.invalid or 0 not in shape or not runs_dynamic_graph(case):
        return False
    return elementwise_perm_divides_by_zero(shape, list(example_strides(case, "input")), [0] * len(shape))


def multilabel_soft_margin_ort_model(case: Case, reference, got) -> dict:
    """MultiLabelSoftMarginLoss as its export computes it on ONNX Runtime: each log_sigmoid as
    Log(Sigmoid(·)) with ONNX Runtime's Sigmoid (``ort_sigmoid``), -(t·log σ(x) + (1 - t)·log σ(-x)) (NaN
    where a 0 weight meets log σ = -inf), times weight, summed over the classes (float16: in float32), / C,
    then the reduction. Judged at the magnitude of the terms, and in float64 at |t|/σ(x) and |1 - t|/σ(-x)
    where these cancel (as ``bce_with_logits_ort_model``)."""
    fmt = _FMT[case.dtype]
    x = np.asarray(case.inputs["input"], fmt)
    t = np.asarray(case.inputs["target"], fmt)
    one = fmt(1)
    with np.errstate(all="ignore"):
        sp, sn = ort_sigmoid(x, case.dtype).astype(fmt), ort_sigmoid(-x, case.dtype).astype(fmt)
        a = (t * np.log(sp.astype(np.float64)).astype(fmt)).astype(fmt)
        b = ((one - t).astype(fmt) * np.log(sn.astype(np.float64)).astype(fmt)).astype(fmt)
        loss = (-(a + b).astype(fmt)).astype(fmt)
        mag = np.abs(a.astype(np.float64)) + np.abs(b.astype(np.float64))
        if case.dtype == "float64":
            mag = mag + np.where(x < 0, np.abs(t) / sp, 0.0) + np.where(x > 0, np.abs(1.0 - t) / sn, 0.0)
        if case.inputs.get("weight") is not None:
            w = np.asarray(case.inputs["weight"], fmt)
            loss = (loss * w).astype(fmt)
            mag = mag * np.abs(w.astype(np.float64))
        classes = x.shape[-1] if x.ndim else 1
        per_sample = loss.astype(np.float64).sum(axis=-1) / classes
        mag = mag.sum(axis=-1) / classes
        reduction = loss_reduction(case.params)
        out = reduce_loss(per_sample, reduction)
        scale = reduce_loss(mag, "none" if reduction == "none" else "sum")
    return {"output": (out, np.broadcast_to(scale, np.shape(out)))}


def kl_div_reduces_by_sum(case: Case) -> bool:
    """KLDivLoss whose reduction ends with a sum: 'sum' (or size_average=False), or 'batchmean' of a 0-d
    input (torch divides by the batch size only when input.dim() != 0)."""
    reduction = loss_reduction(case.params)
    return reduction == "sum" or (reduction == "batchmean" and np.ndim(case.inputs["input"]) == 0)


def half_broadcast_dynamic(case: Case) -> bool:
    """float16, a dynamic-shape graph (the adapter's graph kind), and inputs of different shapes (a
    broadcast): ONNX Runtime's float16 Cast insertion then reuses a buffer of another size."""

    if case.invalid or case.dtype != "float16" or not runs_dynamic_graph(case):
        return False
    return len({tuple(np.shape(v)) for v in case.inputs.values()}) > 1


def cosine_similarity_ort_model(case: Case, reference, got) -> dict:
    """CosineSimilarity as its float64 export computes it on ONNX Runtime: x1 and x2 broadcast, each divided
    by its L2 norm over ``dim`` clipped below at eps held as a float32 constant (9.99999993922529e-09 for
    1e-8), multiplied and summed over ``dim``."""
    x1 = np.asarray(case.inputs["x1"], np.float64)
    x2 = np.asarray(case.inputs["x2"], np.float64)
    x1, x2 = np.broadcast_arrays(x1, x2)
    dim = int(case.params.get("dim", 1))
    eps = float(np.float32(case.params.get("eps", 1e-8)))
    with np.errstate(all="ignore"):
        n1 = np.maximum(np.sqrt(np.sum(x1 * x1, axis=dim, keepdims=True)), eps)
        n2 = np.maximum(np.sqrt(np.sum(x2 * x2, axis=dim, keepdims=True)), eps)
        out = np.sum((x1 / n1) * (x2 / n2), axis=dim)
    return {"output": out}


def nll_spatial_sum(case: Case) -> bool:
    """NLL loss of a K-dimensional input (N, C, d1, ...) reduced by 'sum' (or size_average=False): its float16
    export ends with a float32 ReduceSum (a 2-d input's sum stays float16)."""
    return loss_reduction(case.params) == "sum" and np.ndim(case.inputs["input"]) >= 3


# -- margin losses: torch's decompositions of multilabel_margin_loss_forward and multi_margin_loss -------------
def _unbatched_none(case: Case) -> bool:
    """A valid case of a 1-d input (C) reduced by 'none': torch returns a 0-d loss, the decompositions (which
    run on atleast_2d(input)) a loss of shape (1,)."""
    return not case.invalid and np.ndim(case.inputs["input"]) == 1 and loss_reduction(case.params) == "none"


def _mlm_rows(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MultiLabelMarginLoss's input and target as (N, C) rows, and each row's label mask (the slots before
    its first -1)."""
    x = np.atleast_2d(np.asarray(case.inputs["input"], np.float64))
    t = np.atleast_2d(np.asarray(case.inputs["target"], np.int64))
    slot = np.arange(x.shape[-1])
    end = np.where(t == -1, slot, x.shape[-1]).min(axis=-1, keepdims=True)
    return x, t, slot < end


def mlm_decomposition_differs(case: Case) -> bool:
    """A valid MultiLabelMarginLoss case whose export (torch's decomposition) differs from torch: a row
    padded with -1 (the slots after its last label gather x[0] and count as labels) or a 1-d input reduced
    by 'none' (a loss of shape (1,))."""
    if case.invalid:
        return False
    _, _, labels = _mlm_rows(case)
    return _unbatched_none(case) or not bool(labels.all())


def mlm_decomposition_model(case: Case, reference, got) -> dict:
    """MultiLabelMarginLoss as torch's decomposition computes it (torch/_decomp/decompositions.py
    multilabel_margin_loss_forward): u[n, j] = x[n, t[n, j]] for the label slots j and x[n, 0] for every
    padded slot, z[j, n, i] = max(0, 1 - u[n, j] + x[n, i]) / C where i is no label, summed over j and i per
    sample (so each padded slot adds x[n, 0]'s hinge terms), then the reduction; 'none' has shape (N,), (1,)
    for a 1-d input. Judged at the magnitude of the counted terms (1 + |u| + |x|)/C."""
    x, t, labels = _mlm_rows(case)
    classes = x.shape[-1]
    u = np.take_along_axis(x, np.where(labels, t, 0), axis=-1)
    is_label = np.zeros(x.shape, bool)
    for n, j in zip(*np.nonzero(labels & (t >= 0) & (t < classes))):
        is_label[n, t[n, j]] = True
    with np.errstate(all="ignore"):
        z = np.maximum(1.0 - u[:, :, None] + x[:, None, :], 0.0) / classes
        counted = np.broadcast_to(~is_label[:, None, :], z.shape)
        z = np.where(counted, z, 0.0)
        mag = np.where(counted, (1.0 + np.abs(u)[:, :, None] + np.abs(x)[:, None, :]) / classes, 0.0)
        per_sample, mag = z.sum(axis=(1, 2)), mag.sum(axis=(1, 2))
        reduction = loss_reduction(case.params)
        out = reduce_loss(per_sample, reduction)
        scale = reduce_loss(mag, reduction)
    return {"output": (out, np.broadcast_to(scale, np.shape(out)))}


def mlm_out_of_range_target_unchecked(case: Case) -> bool:
    """An invalid MultiLabelMarginLoss case (a target outside [-1, C), which torch refuses) that its export
    runs: every such target lies after its row's first -1 (masked before the GatherElements) or in
    [-C, -1) (GatherElements wraps it); one >= C or < -C before the first -1 raises in GatherElements."""
    if not case.invalid:
        return False
    x, t, labels = _mlm_rows(case)
    if t.shape != x.shape:
        return False
    classes = x.shape[-1]
    bad = (t < -1) | (t >= classes)
    raises = bad & labels & ((t >= classes) | (t < -classes))
    return bool(bad.any()) and not bool(raises.any())


def mm_unbatched_none(case: Case) -> bool:
    """A valid MultiMarginLoss case of a 1-d input (C) with a 0-d target reduced by 'none': torch returns a
    0-d loss, its decomposition (on atleast_2d(input)) shape (1,)."""
    return _unbatched_none(case) and np.ndim(case.inputs["target"]) == 0


def mm_negative_target_wraps(case: Case) -> bool:
    """An invalid MultiMarginLoss case whose only fault is a target in [-C, 0) (torch refuses it): the
    decomposition's GatherElements (and the weight's Gather) wrap it to C + t, so its export runs (a target
    >= C or < -C raises there)."""
    if not case.invalid:
        return False
    params, inputs = case.params, case.inputs
    x, t = np.asarray(inputs["input"]), np.asarray(inputs["target"])
    classes = x.shape[-1] if x.ndim else 0
    weight = inputs.get("weight")
    if params.get("p", 1) not in (1, 2) or classes == 0 or np.shape(t) != x.shape[:-1]:
        return False
    if weight is not None and np.size(weight) != classes:
        return False
    if params.get("reduction", "mean") not in ("none", "mean", "sum"):
        return False
    return bool(np.all((t >= -classes) & (t < classes))) and bool(np.any(t < 0))


def gelu_tanh_float64_ort_model(case: Case, reference, got) -> dict:
    """GELU(approximate='tanh') as ONNX Runtime computes its float64 Gelu (the ONNX function body, float32
    constants cast to float64): 0.5·x·(1 + tanh(√c·(x + k·x³))) with c = float32(2/π) and k = float32(0.044715),
    NaN at -inf (-inf·0). Judged at the magnitude of the terms before 1 + tanh cancels (|x|)."""
    x = np.asarray(case.inputs["input"], np.float64)
    c, k = float(np.float32(2.0 / np.pi)), float(np.float32(0.044715))
    with np.errstate(all="ignore"):
        y = (0.5 * x) * (1.0 + np.tanh(np.sqrt(c) * (x + k * x**3)))
    return {"output": (y, np.abs(x))}


def _sigmoid_scale(x: np.ndarray, y: np.ndarray, dtype: str) -> np.ndarray:
    """The magnitude a replayed ``ort_sigmoid`` is judged at: float64's 1 - 1/(1 + exp(x)) carries a few ulps
    of 1 (ONNX Runtime's exp is a few ulps off NumPy's), so 8 there; float32/float16 replay MLAS exactly."""
    if dtype == "float64":
        return np.full(np.shape(y), 8.0)
    return np.abs(np.asarray(y, np.float64))


def sigmoid_ort_model(case: Case, reference, got) -> dict:
    """Sigmoid as ONNX Runtime's CPU Sigmoid computes it (``ort_sigmoid``), judged at ``_sigmoid_scale``."""
    x = np.asarray(case.inputs["input"], _FMT[case.dtype])
    with np.errstate(all="ignore"):
        y = ort_sigmoid(x, case.dtype).astype(_FMT[case.dtype])
    return {"output": (y, _sigmoid_scale(x, y, case.dtype))}


def glu_ort_model(case: Case, reference, got) -> dict:
    """GLU as its export computes it on ONNX Runtime: Split the input in halves a, b along ``dim``, then
    Mul(a, Sigmoid(b)) in the case's dtype with ONNX Runtime's Sigmoid (``ort_sigmoid``), judged at
    |a|·``_sigmoid_scale``."""
    fmt = _FMT[case.dtype]
    x = np.asarray(case.inputs["input"], fmt)
    a, b = np.split(x, 2, axis=int(case.params.get("dim", -1)))
    with np.errstate(all="ignore"):
        s = ort_sigmoid(b, case.dtype).astype(fmt)
        y = (a * s).astype(fmt)
        scale = np.abs(a.astype(np.float64)) * _sigmoid_scale(b, s, case.dtype)
    return {"output": (y, scale)}


def logsigmoid_ort_model(case: Case, reference, got) -> dict:
    """LogSigmoid as its export computes it on ONNX Runtime: Log(Sigmoid(x)) in the case's dtype with ONNX
    Runtime's Sigmoid (``ort_sigmoid``: -inf once it gives 0, 0 once it gives 1). float64 is judged at the
    uncertainty of the replayed sigmoid (a few ulps of 1, ``_sigmoid_scale``) divided by sigmoid(x), which
    log turns into an absolute error; float32/float16 replay MLAS exactly: at |y|. float16 runs both nodes in
    float32 (ONNX Runtime's inserted casts surround the pair), rounded once at the end."""
    fmt = _FMT[case.dtype]
    x = np.asarray(case.inputs["input"], fmt)
    with np.errstate(all="ignore"):
        s = ort_sigmoid(x, "float32" if case.dtype == "float16" else case.dtype)
        y = np.log(s.astype(np.float64)).astype(s.dtype).astype(fmt)
        scale = np.abs(y.astype(np.float64))
        if case.dtype == "float64":
            scale = np.maximum(scale, _sigmoid_scale(x, s, case.dtype) / s)
    return {"output": (y, scale)}


_LOG_SOFTMAX_FLOOR = float(np.float32(1e-20))  # softmax_shared.cc: std::log(std::fmax(sum, 1e-20f))


def _softmax_dim(case: Case, ndim: int) -> int:
    """The softmax dim of a case: ``dim``, or for None torch's legacy choice (0 for 0-, 1- and 3-d inputs, else 1)."""
    dim = case.params.get("dim")
    if dim is None:
        return 0 if ndim in (0, 1, 3) else 1
    return int(dim) % max(ndim, 1)


def _log_softmax_row_float64(row: np.ndarray, got: np.ndarray) -> np.ndarray:
    """One slice of ONNX Runtime's float64 LogSoftmax: x - m - log(fmax(Σ exp(x - m), 1e-20f)), which is torch's
    where the sum is a number; where it is NaN (a NaN or +inf in the slice) fmax drops it (log 1e-20 = -46.05),
    and m, Eigen's vectorised row max, is NaN or one of the slice's values depending on where the NaN sits: the
    candidate agreeing best with ``got`` is taken (as a model reads back indices a backend chose)."""
    with np.errstate(all="ignore"):
        m = np.max(row)
        total = np.sum(np.exp(row - m))
        if not np.isnan(total):
            return row - m - np.log(total)
        best, best_bad = None, None
        for cand in [np.nan, *np.unique(row[~np.isnan(row)])]:
            s = np.sum(np.exp(row - cand))
            pred = row - cand - np.log(_LOG_SOFTMAX_FLOOR if np.isnan(s) else max(s, _LOG_SOFTMAX_FLOOR))
            same = (np.isnan(pred) & np.isnan(got)) | np.isclose(pred, got, rtol=1e-9, atol=0.0)
            bad = int(np.count_nonzero(~same))
            if best_bad is None or bad < best_bad:
                best, best_bad = pred, bad
        return best


def log_softmax_float64_ort_model(case: Case, reference, got) -> dict:
    """LogSoftmax as ONNX Runtime's float64 kernel computes it (``_log_softmax_row_float64`` over every slice
    along the softmax dim): torch's result, except in slices holding NaN or +inf, where torch gives NaN and ONNX
    Runtime finite values or -inf."""
    x = np.asarray(case.inputs["input"], np.float64)
    x1 = x.reshape(1) if x.ndim == 0 else x
    dim = _softmax_dim(case, x.ndim)
    theirs = np.asarray(got.tensors()["output"], np.float64).reshape(x1.shape)
    rows = np.moveaxis(x1, dim, -1)
    flat, flat_got = rows.reshape(-1, rows.shape[-1]), np.moveaxis(theirs, dim, -1).reshape(-1, rows.shape[-1])
    out = np.array([_log_softmax_row_float64(r, g) for r, g in zip(flat, flat_got)]).reshape(rows.shape)
    return {"output": np.moveaxis(out, -1, dim).reshape(x.shape)}


def log_softmax_nan_slice(case: Case) -> bool:
    """Some slice along the softmax dim holds NaN or +inf (so Σ exp(x - max) is NaN and torch's slice is NaN)."""
    x = np.asarray(case.inputs["input"], np.float64)
    if x.size == 0:
        return False
    x1 = x.reshape(1) if x.ndim == 0 else x
    return bool(np.any(np.isnan(x1) | (x1 == np.inf)))


def bilinear_sym_stride_dynamic(case: Case) -> bool:
    """A valid Bilinear case on a dynamic-shape graph where the example the adapter exports from
    (``backends.export_strides.example_strides``) of input1 or input2 has last-dim stride 1 but is not
    row-major (torch.empty's strides for its shape) in a dim of size other than 1: bilinear's flattening view keeps
    an aten.sym_stride node. (A size-1 dim's stride does not matter: (1, 6) with strides (1, 1) exports.)"""

    if case.invalid or not runs_dynamic_graph(case):
        return False
    for name in ("input1", "input2"):
        shape = tuple(int(s) for s in np.shape(case.inputs[name]))
        strides = tuple(example_strides(case, name))
        row_major = tuple(int(np.prod([max(s, 1) for s in shape[i + 1:]], dtype=np.int64)) for i in range(len(shape)))
        if shape and strides[-1] == 1 and any(n != 1 and s != r for n, s, r in zip(shape, strides, row_major)):
            return True
    return False


def triplet_margin_with_distance_ort_model(case: Case, reference, got) -> dict:
    """TripletMarginWithDistanceLoss with a pairwise distance (None: torch's default p = 2, eps = 1e-6; a
    torch.nn.PairwiseDistance module; functools.partial(pairwise_distance, p=..., eps=...)) as its float64
    export computes it on ONNX Runtime: ``triplet_margin_ort_model`` with that distance's p and eps."""
    node = case.params.get("distance_function")
    init = {} if node is None else (node.get("module", {}).get("init") or node.get("call", {}).get("kwargs") or {})
    params = {"p": float(init.get("p", 2.0)), "eps": float(init.get("eps", 1e-6)),
              "margin": case.params.get("margin", 1.0), "swap": case.params.get("swap", False),
              "reduction": case.params.get("reduction", "mean")}
    return triplet_margin_ort_model(dataclasses.replace(case, params=params), reference, got)
