"""The loss family's error models and known-entry predicates for the derivative modes (vjp2, vmap;
issue #24): second-order rounding the finite differences cannot see (``LayerSpec.second_order_error``)
and the triggers of torch's second-order and forward-mode discrepancies. The first-order models are
in ``conformance.numerics.loss``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.numerics.loss import (
    HALF_OVERFLOW,
    _gaussian_half_parts,
    ce_args,
    ce_log_softmax,
    cosine_norm_product_out_of_range,
    triplet_distance,
)
from conformance.strategies.loss import reduction_of
from reference import loss as ref
from reference import loss_classification as classification
from reference import loss_likelihood as likelihood
from reference import loss_margin as margin


def soft_margin_double_backward_square_overflows(case: Case) -> bool:
    """A vjp2 case of SoftMarginLoss some element of which has torch's double-backward denominator
    (1 + z)², z = exp(-y·x) finite, beyond the dtype's range: torch forms d2.input as
    (v·g)·y²·z / (1 + z)² (soft_margin_loss_double_backward), each op rounded to the dtype, so the
    square overflows once z > √max (float16: -y·x > 5.55; float32/bfloat16: > 44.4) and d2.input
    is 0 (or NaN where the numerator overflows too) where g·v·σ(1 - σ) is representable."""
    if case.mode_node.get("kind") != "vjp2" or "input" not in case.differentiable:
        return False
    dt = DTYPES[case.dtype]
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    y = np.asarray(case.inputs["target"], dtype=np.float64)
    with np.errstate(all="ignore"):
        z = dt.round(np.exp(dt.round(-y * x)))
        square = dt.round(dt.round(z + 1.0) ** 2)
        return bool(np.any(np.isfinite(z) & ~np.isfinite(square) & (y != 0)))


def bce_logits_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                                  g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vjp2 error of BCEWithLogitsLoss's second derivative formed from the output (as Sigmoid's
    backward: ``smooth_activation.sigmoid_error``): torch's double backward differentiates σ(x) in
    its first-order gradient w·((1 - t + pw·t)·σ(x) - pw·t) by sigmoid_backward(c, y) = c·y·(1 - y)
    with y = σ(x) rounded to the dtype (E_y = (L + 1)·u·y), so H·v's term ĝ·w·(1 - t + pw·t)·σ'(x)·v_x
    carries |1 - 2y|·E_y + 3u·y·(1 - y) times |ĝ·w|·(|1 - t| + |pw·t|)·|v_x| (either way of forming
    the coefficient). Near y = 1, 1 - y cancels: the error is absolute there (bfloat16 at x = 4.56:
    σ'(x) = 0.0102 with an error up to u·σ = 0.0039), which no difference of the exact problem shows."""
    from reference.libm import LIBM_ULPS, sigmoid

    cot = g.get("output")
    if cot is None or "input" not in v:
        return {}
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    t = np.asarray(case.inputs["target"], dtype=np.float64)
    w = np.asarray(case.inputs.get("weight", 1.0), dtype=np.float64)
    pw = np.asarray(case.inputs.get("pos_weight", 1.0), dtype=np.float64)
    u = DTYPES[case.dtype].unit_roundoff
    with np.errstate(all="ignore"):
        ghat = ref.scaled_cotangent(np.asarray(cot, dtype=np.float64), x.shape, reduction_of(case))
        y = sigmoid(x)
        factor = np.abs(1 - 2 * y) * (LIBM_ULPS + 1) * y + 3 * y * sigmoid(-x)
        coef = np.abs(ghat * w) * (np.abs(1 - t) + np.abs(pw * t))
        out = u * coef * factor * np.abs(np.asarray(v["input"], dtype=np.float64))
    return {"d2.input": np.where(np.isfinite(out), out, 0.0)}


def ce_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                          g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vjp2 error of CrossEntropyLoss's log_softmax Hessian as torch forms it: the first-order
    gradient is gl - y·Σgl (gl = -ĝ·q, constant in x), whose derivative along v is -y∘ẏ·Σgl with
    the log_softmax tangent ẏ = v - Σ_k y_k·v_k formed as a difference. Where y is near one-hot the
    exact ẏ_j = v_j·(1 - y_j) - Σ_{k≠j} y_k·v_k is tiny but its terms are of |v|'s size: ẏ carries
    u·(|v_j| + Σ_k y_k·|v_k|·(E_logp + C + 1)) (the subtraction; the sum of C products of y, whose
    relative error is E_logp, ``ce_errors``), and the products (E_logp + 3)·u·|ẏ_j|; times
    y_j·|Σgl| <= y_j·ĝ·Σ|q| (the sum of gl rounds at its terms' scale). No difference of the exact
    problem shows it: along v, on the absolute problem and along v∘s the Hessian is y_j·(1 - y_j)
    small alike. With probability targets the cross term along v_t, gl' - y·Σgl' (gl' = -ĝ·(1 - ε)·w·v_t),
    is formed the same way: u·ĝ·(2|w·v_t|·(1 - ε) + y·Σ|gl'|·(E_logp + C + 2))."""
    cot = g.get("output")
    if cot is None or "input" not in v:
        return {}
    x, t, args = case.inputs["input"], case.inputs["target"], ce_args(case)
    ax = classification.class_axis(x.ndim)
    classes = x.shape[ax]
    reduction = args["reduction"]
    u = DTYPES[case.dtype].unit_roundoff
    with np.errstate(all="ignore"):
        q, normaliser, _, y, err_logp = ce_log_softmax(case)
        gv = np.abs(np.asarray(cot, dtype=np.float64))
        g_pos = np.expand_dims(gv, ax) if reduction == "none" else (gv / abs(normaliser) if reduction == "mean" else gv)
        big_q = np.sum(np.abs(q), axis=ax, keepdims=True)
        vx = np.asarray(v["input"], dtype=np.float64)
        ydot = vx - np.sum(y * vx, axis=ax, keepdims=True)
        spread = np.sum(y * np.abs(vx) * (err_logp + classes + 1), axis=ax, keepdims=True)
        out = u * g_pos * big_q * y * (np.abs(vx) + spread + (err_logp + 3) * np.abs(ydot))
        if "target" in v and np.asarray(t).dtype.kind == "f":  # the cross term through probability targets
            w = np.ones(classes) if args["weight"] is None else np.asarray(args["weight"], dtype=np.float64)
            shape = [1] * x.ndim
            shape[ax] = -1
            wv = (1 - args["label_smoothing"]) * np.abs(w.reshape(shape) * np.asarray(v["target"], dtype=np.float64))
            out = out + u * g_pos * (2 * wv + y * np.sum(wv, axis=ax, keepdims=True) * (err_logp + classes + 2))
    return {"d2.input": np.where(np.isfinite(out), out, 0.0)}


def gaussian_zero_dim_under_func_jvp(case: Case) -> bool:
    """A GaussianNLLLoss vjp2 case composed with torch.func.jvp (forward-over-reverse,
    reverse-over-forward) in a dtype other than float64 whose elementwise loss is 0-d (input, target
    and var broadcast to ()): F.gaussian_nll_loss forms 0.5 * (log var + (x - t)²/var) with a Python
    float, whose product with a 0-d tensor torch.func.jvp promotes to a float64 tangent (see
    ``triplet_unbatched_under_func_jvp``), so J·v comes back float64."""
    if case.dtype == "float64" or case.mode_node.get("kind") != "vjp2" or not _under_func_transform(case):
        return False
    shapes = [np.shape(case.inputs[k]) for k in ("input", "target", "var") if k in case.inputs]
    return len(np.broadcast_shapes(*shapes)) == 0


def triplet_jvp_products_overflow(case: Case) -> bool:
    """A vjp2 case of a triplet loss (its pairwise distances) composed with torch.func.jvp
    (forward-over-reverse, reverse-over-forward) some pair of which (anchor-positive,
    anchor-negative, and positive-negative with swap), in any row, active or not, has a product
    |d_i|^(p-1)·|v1_i - v2_i| of the norm's forward-mode rule (Σ |d|^(p-1)·sign(d)·ḋ / N^(p-1), d = x1 - x2
    + eps, each op rounded to the dtype), or its row sum, beyond the dtype's range: the distance's
    tangent is ±inf although ḋ's projection is representable, J·v is ±inf on an active row and the
    reverse pass multiplies it by the hinge's 0 on an inactive one (NaN)."""
    from conformance.modes import mode_of

    if case.mode_node.get("kind") != "vjp2" or not _under_func_transform(case):
        return False
    norm_p, eps = triplet_distance(case)
    if not math.isfinite(norm_p) or norm_p <= 1.0:
        return False
    dt = DTYPES[case.dtype]
    v = mode_of("vjp2").directions(case)  # type: ignore[attr-defined]
    names = ("anchor", "positive", "negative")
    x = {n: np.asarray(case.inputs[n], dtype=np.float64) for n in names}
    dirs = {n: np.asarray(v.get(n, np.zeros(x[n].shape)), dtype=np.float64) for n in names}
    pairs = [("anchor", "positive"), ("anchor", "negative")]
    if case.params.get("swap"):
        pairs.append(("positive", "negative"))
    with np.errstate(all="ignore"):
        for first, second in pairs:
            d = dt.round(dt.round(x[first] - x[second]) + eps)
            dv = dt.round(dirs[first] - dirs[second])
            products = np.abs(d) ** (norm_p - 1) * np.abs(dv)
            if np.any(products > dt.max_value) or np.any(np.sum(products, axis=-1) > dt.max_value):
                return True
    return False


def gaussian_half_second_order_overflow(case: Case) -> bool:
    """A float16 vjp2 case of GaussianNLLLoss where a product of the second-order computation leaves
    the float16 range although the second-order results are representable: torch forms the
    unscaled products of d = x - t, d² and q = d²/v with the direction's differences (v_x - v_t) and
    v_var (d·(v_x - v_t), its quotient by v, d²·v_var and its quotients by v and v²), and J·v sums
    them before the mean's 1/N (d = -145, v_x = -700: d·v_x = 101491 while J·v = 13573 for N = 9),
    so d2.* are ±inf or NaN. (The first-order intermediates: ``gaussian_half_intermediates_overflow``.)"""
    from conformance.modes import mode_of

    parts = _gaussian_half_parts(case)
    if parts is None or case.mode_node.get("kind") != "vjp2":
        return False
    v = mode_of("vjp2").directions(case)  # type: ignore[attr-defined]
    shape = parts["terms"].shape
    x, t = case.inputs["input"], case.inputs["target"]
    with np.errstate(all="ignore"):
        zero = np.zeros(shape)
        dv = np.abs(np.broadcast_to(v.get("input", 0.0), shape) - np.broadcast_to(v.get("target", 0.0), shape) + zero)
        vv = likelihood.gaussian_var(x, np.abs(v["var"])) + zero if "var" in v else zero
        d = np.abs(np.broadcast_to(np.subtract(x, t), shape))
        vr = parts["v"]
        products = (d * dv, d * dv / vr, parts["d2"] * vv, parts["d2"] * vv / vr, parts["q"] * vv / vr)
        beyond = any(bool(np.any(p >= HALF_OVERFLOW)) for p in products)
        return beyond or bool(np.sum(d * dv / vr) >= HALF_OVERFLOW or np.sum(parts["q"] * vv / vr) >= HALF_OVERFLOW)


def cosine_half_second_order_out_of_range(case: Case) -> bool:
    """A float16 vjp2 case of CosineEmbeddingLoss where torch's double backward leaves the float16
    range: the forward's product m1·m2 of the squared norms (``cosine_norm_product_out_of_range``),
    or the sqrt backward's quotient differentiated again, ĝ·s/den²/(2·den)/(2·den) = ĝ·s/(4·den⁴)
    (s = Σx1·x2, den = √(m1·m2), ĝ the pair's cotangent: g, or g/N for the mean), which overflows for
    small norms (x1 = x2 = 0.12: s/(4·den⁴) = 0.12⁻⁶/4 = 83700): d2.* are then ±inf or NaN."""
    if case.dtype != "float16" or case.mode_node.get("kind") != "vjp2":
        return False
    if cosine_norm_product_out_of_range(case):
        return True
    g = case.cotangents.get("output")
    if g is None:
        return False
    x1, x2 = (np.asarray(case.inputs[n], dtype=np.float64) for n in ("input1", "input2"))
    with np.errstate(all="ignore"):
        s = np.sum(x1 * x2, axis=-1)
        den = np.sqrt((np.sum(x1 * x1, axis=-1) + 1e-12) * (np.sum(x2 * x2, axis=-1) + 1e-12))
        ghat = ref.scaled_cotangent(np.asarray(g, dtype=np.float64), np.shape(s), reduction_of(case))
        ratio = np.abs(ghat * s) / (4 * den**4)
    return bool(np.any(ratio >= HALF_OVERFLOW))


def cosine_embedding_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                                        g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vjp2 mode's declared second-order rounding of CosineEmbeddingLoss: on a pair that reads
    the cosine (y = 1, cotangent -ĝ; y = -1 with cos > margin, +ĝ; ĝ = g, or g/N for the mean) its
    second-order terms are the cosine similarity's (``distance.cosine_second_order_error``: terms
    that cancel where the cosine is constant in every direction, one-element vectors, whose exact
    second derivative is 0 but whose computed one is a rounding of terms of size ĝ/n²), the pair's
    vectors along the last dim."""
    from conformance.numerics import distance

    cot = g.get("output")
    if cot is None:
        return {}
    x1, x2, y = (np.asarray(case.inputs[n], dtype=np.float64) for n in ("input1", "input2", "target"))
    cos = np.asarray(margin.cosine_embedding_terms(x1, x2, np.ones(np.shape(y)), 0.0))
    cos = 1.0 - cos  # (y = 1 gives 1 - cos)
    ghat = ref.scaled_cotangent(np.asarray(cot, dtype=np.float64), np.shape(y), reduction_of(case))
    with np.errstate(invalid="ignore"):
        on = np.where(y == 1, -ghat, np.where((y == -1) & (cos > float(case.params["margin"])), ghat, 0.0))
    sub = replace(case, params={"dim": -1, "eps": 0.0}, inputs={"x1": x1, "x2": x2})
    dirs = {k: v[n] for k, n in (("x1", "input1"), ("x2", "input2")) if n in v}
    if not dirs:
        return {}
    terms = distance.cosine_second_order_error(sub, dirs, {"output": np.asarray(on)})
    return {f"d2.{n}": terms[f"d2.{k}"] for k, n in (("x1", "input1"), ("x2", "input2")) if f"d2.{k}" in terms}


# -- moved from conformance.numerics.loss: the modes' replays and predicates --------------------------

# torch's double-backward helper binary_cross_entropy_double_backward_grad_output (the derivative of
# binary_cross_entropy_backward in its grad argument, FunctionsManual.cpp) adds eps = 1e-12 to x and
# to 1 - x instead of clamping their product: (x - t)/((x + eps)·(1 - x + eps)).
BCE_DOUBLE_BACKWARD_EPS = 1e-12


def bce_input_gradient_through_forward_mode(case: Case) -> bool:
    """A vjp2 case of BCELoss composed reverse-over-forward: its first-order input gradient is the
    transpose of the forward-mode rule, i.e. torch's binary_cross_entropy_double_backward_grad_output."""
    node = case.mode_node
    return node.get("kind") == "vjp2" and node.get("composition") == "reverse-over-forward"


def bce_double_backward_eps_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """What torch computes for BCELoss's input gradient through its forward-mode rule: the exact
    gradient scaled by x·(1 - x)/((x + 1e-12)·(1 - x + 1e-12)) (a relative error 1e-12/(x·(1 - x))
    at least 4e-12: thousands of float64 ulps)."""
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    eps = BCE_DOUBLE_BACKWARD_EPS
    exact = np.asarray(reference.tensors()["grad.input"], dtype=np.float64)
    with np.errstate(all="ignore"):
        return {"grad.input": exact * (x * (1 - x)) / ((x + eps) * (1 - x + eps))}


def bce_logits_functorch_result(case: Case) -> dict[str, np.ndarray]:
    """BCEWithLogitsLoss as torch computes it under a torch.func transform (grad, vjp, jvp, vmap):
    functorch's own decomposition of binary_cross_entropy_with_logits, the pre-2.1 formula
    ``(1 - t)·x + lw·(m + log(exp(-m) + exp(-x - m)))`` with ``m = max(-x, 0)`` (lw = (pw - 1)·t + 1,
    1 without pos_weight), differentiated by autograd, each operation rounded to the case's dtype
    (as torch's CPU kernels round each op's float32 result for the 16-bit formats), in the order of
    the graph ``make_fx`` records for ``torch.func.vjp`` (torch 2.13): 1 - t and pw - 1 are rounded
    tensors of their own, and without pos_weight the loss is ((1 - t)·x + m) + log s and the
    gradient of m is (-ds·b - ds·a) + ĝ. Its loss rounds log(1 + tiny) to 0 (torch's eager formula,
    (1 - t)·x - lw·logsigmoid(x), keeps it) and its input gradient is a difference of terms near
    ĝ (cancellation where |x| is large)."""
    r = DTYPES[case.dtype].round
    x = r(np.asarray(case.inputs["input"], dtype=np.float64))
    t = r(np.asarray(case.inputs["target"], dtype=np.float64))
    w, pw = case.inputs.get("weight"), case.inputs.get("pos_weight")
    w = None if w is None else r(np.asarray(w, dtype=np.float64))
    pw = None if pw is None else r(np.asarray(pw, dtype=np.float64))
    reduction = reduction_of(case)
    with np.errstate(all="ignore"):
        m = np.maximum(-x, 0.0)
        omt = r(1.0 - t)
        a, b = r(np.exp(-m)), r(np.exp(r(-x - m)))
        s = r(a + b)
        log_s = r(np.log(s))
        if pw is None:
            pwm1 = lw = inner = None
            loss = r(r(r(omt * x) + m) + log_s)
        else:
            pwm1 = r(pw - 1.0)
            lw = r(r(pwm1 * t) + 1.0)
            inner = r(log_s + m)
            loss = r(r(omt * x) + r(lw * inner))
        if w is not None:
            loss = r(loss * w)
        if reduction == "mean":
            output = r(np.asarray(np.mean(loss)))
        elif reduction == "sum":
            output = r(np.asarray(np.sum(loss)))
        else:
            output = loss
        out = {"output": np.asarray(output, dtype=np.float64)}
        if not case.cotangents:
            return out
        g = r(np.asarray(case.cotangents["output"], dtype=np.float64))
        gl = np.broadcast_to(r(g / loss.size) if reduction == "mean" else g, loss.shape)
        if w is not None:
            gl = r(gl * w)
        if lw is None:
            ds = r(gl / s)
            p, q = r(ds * b), r(ds * a)
            dm = r(r(-p - q) + gl)  # through "+ m", exp(-m) and exp(-x - m)
        else:
            gin = r(gl * lw)
            ds = r(gin / s)
            p, q = r(ds * b), r(ds * a)
            dm = r(r(gin - p) - q)
        dx = r(r(-p + r(gl * omt)) - np.where(-x >= 0, dm, 0.0))
        out["grad.input"] = np.asarray(np.broadcast_to(dx, x.shape), dtype=np.float64)
        if "target" in case.differentiable:
            dtg = -r(gl * x) if lw is None else r(-r(gl * x) + r(r(gl * inner) * pwm1))
            out["grad.target"] = np.asarray(np.broadcast_to(dtg, t.shape), dtype=np.float64)
    return out


def _under_func_transform(case: Case) -> bool:
    node = case.mode_node
    if node.get("kind") == "vjp2":
        return node.get("composition") in ("forward-over-reverse", "reverse-over-forward")
    return node.get("kind") == "vmap"


def bce_logits_functorch_beyond_bound(case: Case) -> bool:
    """A vjp2 case composed with torch.func (forward-over-reverse, reverse-over-forward) or a vmap
    case, some slice of which torch's functorch decomposition of BCEWithLogitsLoss
    (``bce_logits_functorch_result``) moves beyond the case's bound."""
    from conformance.modes import BATCH, mode_of
    from conformance.numerics.elementwise import beyond_bound

    if not _under_func_transform(case):
        return False
    node = (case.call or {})["mode"]
    if node.get("kind") == "vmap":
        slices = [mode_of("vmap").slice_case(case, b) for b in range(int(node.get("batch", BATCH)))]  # type: ignore[attr-defined]
        return any(beyond_bound(s, bce_logits_functorch_result(s)) for s in slices)
    plain = replace(case, mode="vjp")
    return beyond_bound(plain, bce_logits_functorch_result(case))


def bce_logits_functorch_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """Model of ``bce-with-logits-functorch-decomposition`` (vjp2): torch's results under the
    torch.func transform."""
    return bce_logits_functorch_result(case)


def triplet_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                               g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vjp2 mode's declared second-order rounding of the triplet losses (``LayerSpec.
    second_order_error``): ℓ = max(margin + d(a, p) - d(a, n'), 0) is, on an active triplet, the
    difference of two pairwise distances, so its second-order terms are theirs
    (``distance.pairwise_second_order_error``: terms that cancel where the norm is homogeneous in
    every direction, e.g. one entry per row, N = |d|, whose exact second derivative is 0 but whose
    computed one is a rounding of (p-1)/N·(1 - d²/N²)), each with the triplet's cotangent (ĝ = g,
    or g/N for the mean; -ĝ on d(a, n')), summed onto anchor, positive and negative. An inactive
    triplet contributes nothing (the hinge's second derivative is 0 away from the kink, which the
    vjp2 domain excludes)."""
    from conformance.numerics import distance

    cot = g.get("output")
    if cot is None:
        return {}
    a, pos, neg = (np.asarray(case.inputs[k], dtype=np.float64) for k in ("anchor", "positive", "negative"))
    unbatched = a.ndim == 1
    a2, p2, n2 = (x.reshape(1, -1) if unbatched else x for x in (a, pos, neg))
    norm_p, eps = triplet_distance(case)
    if not math.isfinite(norm_p) or norm_p in (0.0, 1.0):
        return {}
    rows = a2.shape[0]
    reduction = reduction_of(case)
    gv = np.asarray(cot, dtype=np.float64)
    ghat = np.broadcast_to(gv / max(1, rows) if reduction == "mean" else gv, (rows,)).astype(np.float64)

    def dist(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.sum(np.abs(x1 - x2 + eps) ** norm_p, axis=-1) ** (1.0 / norm_p)

    d_ap, d_an = dist(a2, p2), dist(a2, n2)
    swap = bool(case.params.get("swap"))
    d_pn = dist(p2, n2) if swap else None
    use_pn = (d_pn < d_an) if swap else np.zeros(rows, dtype=bool)
    d_neg = np.where(use_pn, d_pn, d_an) if swap else d_an
    active = (float(case.params.get("margin", 1.0)) + d_ap - d_neg) > 0
    zero = {n: np.zeros((rows, a2.shape[-1])) for n in ("anchor", "positive", "negative")}
    vv = {n: (np.asarray(v[n], dtype=np.float64).reshape(1, -1) if unbatched else np.asarray(v[n], dtype=np.float64))
          for n in ("anchor", "positive", "negative") if n in v}
    params = {"p": norm_p, "eps": eps, "keepdim": False}
    pairs = (("anchor", "positive", active, 1.0), ("anchor", "negative", active & ~use_pn, -1.0),
             ("positive", "negative", active & use_pn, -1.0))
    x = {"anchor": a2, "positive": p2, "negative": n2}
    for first, second, mask, sign in pairs:
        if not mask.any():
            continue
        sub = replace(case, inputs={"x1": x[first], "x2": x[second]}, params=params)
        dirs = {k: vv[n] for k, n in (("x1", first), ("x2", second)) if n in vv}
        if not dirs:
            continue
        terms = distance.pairwise_second_order_error(sub, dirs, {"output": np.where(mask, sign * ghat, 0.0)})
        for k, n in (("x1", first), ("x2", second)):
            if f"d2.{k}" in terms:
                zero[n] = zero[n] + np.where(mask[:, None], terms[f"d2.{k}"], 0.0)
    return {f"d2.{n}": (e.reshape(-1) if unbatched else e) for n, e in zero.items() if n in v}


def gaussian_tensor_var_clamped(case: Case) -> bool:
    """GaussianNLLLoss with var a differentiable tensor some entry of which is below eps: torch clamps
    a clone of var in place under torch.no_grad(), which hides the clamp from reverse mode (the
    documented pass-through) but not from forward mode, whose tangent the in-place clamp_ zeroes."""
    var = case.inputs.get("var")
    return var is not None and "var" in case.differentiable and bool(np.any(np.asarray(var) < case.params["eps"]))


def triplet_unbatched_under_func_jvp(case: Case) -> bool:
    """An unbatched (D) TripletMarginWithDistanceLoss vjp2 case composed with torch.func.jvp
    (forward-over-reverse, reverse-over-forward) in a dtype other than float64: its loss is formed
    as ``margin + d(a, p) - d(a, n)`` on 0-d tensors, where torch.func.jvp promotes the Python
    float's tangent as a float64 0-d tensor (not as a wrapped number), so J·v comes back float64."""
    return (case.dtype != "float64" and np.ndim(case.inputs["anchor"]) == 1
            and _under_func_transform(case) and case.mode_node.get("kind") == "vjp2")


def triplet_powers_leave_range_second_order(case: Case) -> bool:
    """A vjp2 case of a triplet loss with torch's pairwise distance (TripletMarginLoss, or the default /
    PairwiseDistance / partial distance of TripletMarginWithDistanceLoss) some active pair of which
    (anchor-positive, anchor-negative) meets ``distance.unscaled_powers_leave_range_second_order``:
    the norm's double backward and forward-mode rules form unscaled powers N^(p-1)·v and N^(2p-2)
    that leave the dtype's range (float16: N^(2p-2) < 2^-14 for p = 3 already at N ≈ 0.06)."""
    from conformance.modes import mode_of
    from conformance.numerics import distance

    node = case.mode_node
    g = case.cotangents.get("output")
    if node.get("kind") != "vjp2" or g is None:
        return False
    a, pos, neg = (case.inputs[k] for k in ("anchor", "positive", "negative"))
    if not a.size:
        return False
    norm_p, eps = triplet_distance(case)
    if not math.isfinite(norm_p) or norm_p in (0.0, 1.0):
        return False
    swap = bool(case.params.get("swap"))
    active_cot = _active_row_cotangent(case, g, norm_p, eps, swap)
    if active_cot is None:
        return False
    v = mode_of("vjp2").directions(case)  # type: ignore[attr-defined]
    top = max((float(np.max(np.abs(x))) for x in v.values() if np.size(x)), default=1.0)
    cot = active_cot * max(1.0, top)
    params = {"p": norm_p, "eps": eps, "keepdim": False}
    for first, other in ((a, pos), (a, neg)) + (((pos, neg),) if swap else ()):
        sub = replace(case, params=params, inputs={"x1": first, "x2": other}, cotangents={"output": cot},
                      call={k: w for k, w in (case.call or {}).items() if k != "mode"})
        try:
            if distance.unscaled_powers_leave_range_second_order(sub):
                return True
        except Exception:
            continue
    return False


def bce_half_hessian_leaves_range(case: Case) -> bool:
    """A float16 vjp2 case of BCELoss with some element whose second-derivative factor
    w·(x² - 2xt + t)/(x·(1 - x))², or the square (x·(1 - x))²
    torch divides by, leaves the float16 range (> 65504, or below the smallest subnormal): torch's
    double backward forms that factor before multiplying by g and v, so d2.input is ±inf or NaN
    (or loses its digits) although g·H·v is representable."""
    if case.dtype != "float16":
        return False
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    t = np.asarray(case.inputs["target"], dtype=np.float64)
    w = case.inputs.get("weight")
    w = np.ones(x.shape) if w is None else np.broadcast_to(np.asarray(w, dtype=np.float64), x.shape)
    dt = DTYPES["float16"]
    with np.errstate(all="ignore"):
        q = (x * (1 - x)) ** 2
        h = np.abs(w) * np.abs(x * x - 2 * x * t + t) / q
        bad = (q < dt.min_normal) | (h > dt.max_value)
    return bool(np.any(bad & (w != 0)))


def _active_row_cotangent(case: Case, g: np.ndarray, norm_p: float, eps: float, swap: bool) -> np.ndarray | None:
    """The cotangent each triplet row's distances receive: g (divided by the row count for the mean
    reduction) on the rows whose hinge is active, 0 elsewhere; with ``swap``, any distance d(a, n)
    the loss may read (the swap's choice, either side of a tie). None when no active row has a
    non-zero cotangent."""
    from reference import distance as RD

    a, pos, neg = (case.inputs[k] for k in ("anchor", "positive", "negative"))
    with np.errstate(all="ignore"):
        d_ap = RD.vector_norm(RD.difference(a, pos, eps), norm_p, keepdim=False)
        d_an = RD.vector_norm(RD.difference(a, neg, eps), norm_p, keepdim=False)
        if swap:
            d_an = np.minimum(d_an, RD.vector_norm(RD.difference(pos, neg, eps), norm_p, keepdim=False))
        active = np.asarray(d_ap - d_an + float(case.params.get("margin", 1.0)) > 0)
    rows = max(1, a.size // max(1, a.shape[-1]))
    per_row = np.broadcast_to(np.asarray(g, dtype=np.float64) / (rows if reduction_of(case) == "mean" else 1),
                              active.shape)
    if not np.any(active & (per_row != 0)):
        return None
    return np.where(active, per_row, 0.0)


def triplet_pairwise_module_powers_leave_range(case: Case) -> bool:
    """TripletMarginWithDistanceLoss with torch's pairwise distance (a PairwiseDistance module, or a
    partial of F.pairwise_distance, or the default, which is p = 2): its
    unscaled powers (``distance.unscaled_powers_leave_range``) leave the dtype's range for the
    anchor-positive or anchor-negative pair (and, with swap, the positive-negative one, either side
    of the swap's choice) of a triplet whose hinge is active (loss > 0), judged with that triplet's
    cotangent (g, or g/N for the mean) on the distance."""
    from conformance.numerics import distance

    g = case.cotangents.get("output")
    a, pos, neg = (case.inputs[k] for k in ("anchor", "positive", "negative"))
    if g is None or not a.size:
        return False
    norm_p, eps = triplet_distance(case)
    swap = bool(case.params.get("swap"))
    cot = _active_row_cotangent(case, g, norm_p, eps, swap=swap)
    if cot is None:
        return False
    params = {"p": norm_p, "eps": eps, "keepdim": False}
    pairs = [(a, pos), (a, neg)] + ([(pos, neg)] if swap else [])
    return any(distance.unscaled_powers_leave_range(replace(case, params=params, inputs={"x1": x1, "x2": x2},
                                                            cotangents={"output": cot}))
               for x1, x2 in pairs)
