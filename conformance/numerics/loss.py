"""Numerics of the loss family: the tolerance glue over the error analyses that sit beside each
reference (``reference.loss*``; every bound in units of u, through
``conformance.tolerance.analysed_tolerance``), the exact-tier policies, and the predicates that
``conformance/known/loss.toml`` names."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import Tolerance
from conformance.strategies.loss import kl_reduction, reduction_of
from conformance.tolerance import analysed_tolerance, bound_as_magnitude
from reference import functional as RF
from reference import loss as ref
from reference import loss_binary as binary
from reference import loss_classification as classification
from reference import loss_likelihood as likelihood
from reference import loss_margin as margin
from reference import loss_triplet as triplet

# -- shared ---------------------------------------------------------------------------------------------

def tiny_over_u(case: Case) -> float:
    dt = DTYPES[case.dtype]
    return dt.min_subnormal / dt.unit_roundoff


def underflow(case: Case, values: np.ndarray, operations: int = 4) -> np.ndarray:
    """The underflow allowance (units of u) of values computed in ``operations`` steps: half a
    subnormal spacing per step, and where the exact value lies below the normal range the whole
    smallest normal (a formula such as 1/(1 + exp(-x)) flushes a subnormal result to 0)."""
    dt = DTYPES[case.dtype]
    with np.errstate(invalid="ignore"):
        flushed = np.where(np.abs(values) < dt.min_normal, dt.min_normal / dt.unit_roundoff, 0.0)
    return operations * tiny_over_u(case) / 2 + flushed


def unit_roundoff(case: Case) -> float:
    return DTYPES[case.dtype].unit_roundoff


def pointwise_errors(case: Case, terms: np.ndarray, term_err: np.ndarray, reduction: str,
                     derivs: Mapping[str, tuple[np.ndarray, np.ndarray]], count: float | None = None,
                     count_err: float = 0.0) -> dict[str, np.ndarray]:
    """Errors (units of u) of a reduced elementwise loss over the broadcast shape of its operands:
    the output, and for each differentiable operand the gradient ĝ·dℓ/d(operand) summed back over
    the dims it was broadcast along (2√B·Σ for a sum of B terms)."""
    term_err = term_err + underflow(case, terms)
    out = {"output": ref.reduced_error(terms, term_err, reduction, count, count_err)}
    if not case.cotangents:
        return out
    ghat = ref.scaled_cotangent(case.cotangents["output"], terms.shape, reduction, count)
    ghat_err = ref.cotangent_error(reduction, count_err)
    for name, (deriv, deriv_err) in derivs.items():
        if name not in case.differentiable:
            continue
        shape = case.inputs[name].shape
        deriv = np.broadcast_to(deriv, terms.shape)
        err = ref.grad_error(ghat, deriv, np.broadcast_to(deriv_err, terms.shape), ghat_err) + underflow(
            case, ghat * deriv)
        summed = ref.sum_to_shape(err, shape)
        factor = terms.size // max(1, math.prod(shape))
        if factor > 1:
            summed = summed + 2 * math.sqrt(factor) * ref.sum_to_shape(np.abs(ghat * deriv), shape)
        out[f"grad.{name}"] = summed
    return out


def broadcast_length(case: Case, tensor: str, names: Sequence[str] = ("input", "target")) -> int:
    """K: the terms summed into one output value (every term unless 'none') or into one gradient
    element (the broadcast factor of that operand)."""
    numel = math.prod(np.broadcast_shapes(*(case.inputs[n].shape for n in names)))
    if tensor == "output":
        return 1 if reduction_of(case) == "none" else numel
    return max(1, numel // max(1, case.inputs[tensor.removeprefix("grad.")].size))


def _broadcast_numel(case: Case) -> int:
    return math.prod(np.broadcast_shapes(case.inputs["input"].shape, case.inputs["target"].shape))


def _mse_output_length(case: Case, tensor: str) -> int:
    """K = elements summed into one output value: 1 for 'none', every element otherwise."""
    return 1 if reduction_of(case) == "none" else _broadcast_numel(case)


def _mse_grad_length(case: Case, tensor: str) -> int:
    """K = how many broadcast elements sum into one gradient element of the operand."""
    return max(1, _broadcast_numel(case) // max(1, case.inputs[tensor.removeprefix("grad.")].size))



# -- MSELoss, L1Loss, SmoothL1Loss, HuberLoss, KLDivLoss ----------------------------------------------------

def _grad_magnitude(function: str) -> Callable[[Case, Result], dict[str, Any]]:
    """absref of each gradient: the VJP of ``reference.functional.<function>`` evaluated on
    |x - t| (against 0) and |g|, summed over the broadcast dims (the sum of |terms| of every
    gradient element)."""

    def magnitude(case: Case, result: Result) -> dict[str, Any]:
        x, t = case.inputs["input"], case.inputs["target"]
        d = np.abs(np.subtract(x, t))
        terms = RF.vjp(function, d, np.zeros_like(d), reduction=reduction_of(case),
                       cotangent=np.abs(case.cotangents["output"]))["input"]
        return {"grad.input": ref.sum_to_shape(terms, x.shape), "grad.target": ref.sum_to_shape(terms, t.shape)}

    return magnitude


def smooth_l1_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, beta = case.inputs["input"], case.inputs["target"], case.params.get("beta", 1.0)
    d = np.subtract(x, t)
    term_err, deriv_err = ref.smooth_l1_errors(d, beta)
    deriv = ref.smooth_l1_derivative(d, beta)
    return pointwise_errors(case, ref.smooth_l1_terms(d, beta), term_err, reduction_of(case),
                            {"input": (deriv, deriv_err), "target": (-deriv, deriv_err)})


def kl_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, reduction = case.inputs["input"], case.inputs["target"], kl_reduction(case)
    log_target = bool(case.params.get("log_target", False))
    terms = ref.kl_div_terms(x, t, log_target)
    term_err, dx_err, dt_err = ref.kl_div_errors(x, t, log_target)
    with np.errstate(all="ignore"):
        if log_target:
            dx, dt = -np.exp(t), np.exp(t) * (t - x + 1)
        else:
            dx, dt = -t, np.log(np.where(t > 0, t, 1.0)) + 1 - x
    red, count = (("mean", ref.kl_count(x, reduction, terms.size)) if reduction == "batchmean"
                  else (reduction, None))
    if not log_target and case.cotangents:
        # The 1 in dt is formed as (ĝ·t)/t: where ĝ·t underflows, its absolute error tiny/2 is
        # divided by t. As a relative error of ĝ (pointwise_errors multiplies dt_err by |ĝ|):
        ghat = np.abs(ref.scaled_cotangent(case.cotangents["output"], terms.shape, red, count))
        with np.errstate(divide="ignore", invalid="ignore"):
            lost = np.where((t > 0) & (ghat > 0), tiny_over_u(case) / 2 / (t * ghat), 0.0)
        dt_err = dt_err + lost
    return pointwise_errors(case, terms, term_err, red, {"input": (dx, dx_err), "target": (dt, dt_err)}, count)


def kl_length(case: Case, tensor: str) -> int:
    return 1 if tensor != "output" or kl_reduction(case) == "none" else case.inputs["input"].size



MSE_TOLERANCE = {
    # d = x - t and d² are two roundings (3u relative on d²), the sum adds 2√K·u: c = 5 ≥ 3 + 2
    # with √K ≥ 1; all terms are >= 0, so |ref| is the magnitude. Exact tier: integer sums;
    # 'mean' (power-of-two counts there) one final rounding at most.
    "output": Tolerance(reduction=_mse_output_length, magnitude="ref", c=5.0, exact="rounded"),
    # 2·d·ĝ: roundings of d, of the 2/numel factor and of two products (4u), plus 2√K·u for the
    # sum over broadcast dims: c = 6. Exact tier: integers, or dyadic with power-of-two counts.
    "grad.*": Tolerance(reduction=_mse_grad_length, magnitude=_grad_magnitude("mse_loss"), c=6.0, exact="bitwise"),
}

L1_TOLERANCE = {
    # |x - t| is one rounding, the sum 2√K·u: c = 3, terms >= 0 so |ref| is the magnitude.
    "output": Tolerance(reduction=_mse_output_length, magnitude="ref", c=3.0, exact="rounded"),
    # ±ĝ (exact; 'mean' one rounding of g/numel, two for g·(1/numel)) summed over broadcast dims.
    "grad.*": Tolerance(reduction=_mse_grad_length, magnitude=_grad_magnitude("l1_loss"), c=4.0, exact="bitwise"),
}


def huber_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.loss.huber_errors`` per term, reduced (``pointwise_errors``)."""
    x, t, delta = case.inputs["input"], case.inputs["target"], case.params.get("delta", 1.0)
    d = np.subtract(x, t)
    term_err, deriv_err = ref.huber_errors(d, delta)
    deriv = ref.huber_derivative(d, delta)
    return pointwise_errors(case, ref.huber_terms(d, delta), term_err, case.params.get("reduction", "mean"),
                            {"input": (deriv, deriv_err), "target": (-deriv, deriv_err)})


SMOOTH_L1_TOLERANCE = analysed_tolerance(smooth_l1_errors, broadcast_length)
HUBER_TOLERANCE = analysed_tolerance(huber_errors, broadcast_length)
KL_TOLERANCE = analysed_tolerance(kl_errors, kl_length)

# -- BCELoss, BCEWithLogitsLoss, SoftMarginLoss, MultiLabelSoftMarginLoss -----------------------------------

def bce_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, w = case.inputs["input"], case.inputs["target"], case.inputs.get("weight")
    term_err, dx_err, dt_err = binary.bce_errors(x, t, w)
    dx, dt = binary.bce_derivatives(x, t, w)
    out = pointwise_errors(case, binary.bce_terms(x, t, w), term_err, reduction_of(case),
                           {"input": (dx, dx_err), "target": (dt, dt_err)})
    if "grad.input" in out:
        # ĝ·(x - t) may be formed first and fall below the normal range (half a subnormal
        # spacing lost), then be divided by x·(1 - x): that loss is amplified by 1/(x·(1 - x)).
        weight = np.abs(np.broadcast_to(1.0 if w is None else w, x.shape))
        out["grad.input"] = out["grad.input"] + weight * tiny_over_u(case) / 2 / np.maximum(x * (1 - x),
                                                                                           binary.BCE_EPSILON)
    return out


def bce_at_clamp(case: Case) -> bool:
    """Some input is exactly 0 or 1: x·(1 - x) = 0 < 1e-12, where the backward divides by the
    clamp 1e-12 (which rounds to 0 in float16)."""
    x = case.inputs["input"]
    return bool(np.any((x == 0) | (x == 1)))


def logits_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t = case.inputs["input"], case.inputs["target"]
    w, pw = case.inputs.get("weight"), case.inputs.get("pos_weight")
    term_err, dx_err, dt_err = binary.bce_logits_errors(x, t, w, pw)
    dx, dt = binary.bce_logits_derivatives(x, t, w, pw)
    return pointwise_errors(case, binary.bce_logits_terms(x, t, w, pw), term_err, reduction_of(case),
                            {"input": (dx, dx_err), "target": (dt, dt_err)})


def soft_margin_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, y = case.inputs["input"], case.inputs["target"]
    term_err, dx_err = binary.soft_margin_errors(x, y)
    return pointwise_errors(case, binary.soft_margin_terms(x, y), term_err, reduction_of(case),
                            {"input": (-y * binary.sigmoid(-y * x), dx_err)})


def soft_margin_overflows(case: Case) -> bool:
    """exp(-y·x) overflows the format for some element: -y·x > log(largest finite value)."""
    x, y = case.inputs["input"], case.inputs["target"]
    return bool(np.any(-y * x > math.log(DTYPES[case.dtype].max_value)))


def mlsm_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, w = case.inputs["input"], case.inputs["target"], case.inputs.get("weight")
    reduction = reduction_of(case)
    out_err, dx_err, dt_err = binary.mlsm_errors(x, t, w, reduction)
    out = {"output": out_err}
    if case.cotangents:
        dx, dt = binary.mlsm_derivatives(x, t, w)
        ghat = np.expand_dims(ref.scaled_cotangent(case.cotangents["output"], x.shape[:-1], reduction), -1)
        ghat_err = ref.cotangent_error(reduction)
        out["grad.input"] = ref.grad_error(ghat, dx, dx_err, ghat_err, tiny_over_u=tiny_over_u(case))
        out["grad.target"] = ref.grad_error(ghat, dt, dt_err, ghat_err, tiny_over_u=tiny_over_u(case))
    return out


def mlsm_length(case: Case, tensor: str) -> int:
    x = case.inputs["input"]
    if tensor != "output":
        return 1
    return x.shape[-1] * (1 if reduction_of(case) == "none" else max(1, x.size // x.shape[-1]))



BCE_TOLERANCE = analysed_tolerance(bce_errors, broadcast_length)
LOGITS_TOLERANCE = analysed_tolerance(logits_errors, broadcast_length)
SOFT_MARGIN_TOLERANCE = analysed_tolerance(soft_margin_errors, broadcast_length)
MLSM_TOLERANCE = analysed_tolerance(mlsm_errors, mlsm_length)

# -- CrossEntropyLoss, NLLLoss, NLLLoss2d --------------------------------------------------------------------


def _weight_cancellation(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None, ignore_index: int,
                         normaliser: float) -> float:
    """ρ = Σ|w[t]|/|W| over the counted positions: how much the 'mean' normaliser W = Σ w[t] cancels
    (1 without cancellation: no weights, weights of one sign, or probability targets)."""
    if weight is None or t.dtype.kind not in "iu" or not normaliser:
        return 1.0
    wt = weight[t[t != ignore_index]]
    if np.all(wt >= 0) or np.all(wt <= 0):
        return 1.0
    return float(np.sum(np.abs(wt))) / abs(normaliser)

def ce_args(case: Case) -> dict[str, Any]:
    p = case.params
    return {"weight": case.inputs.get("weight"), "reduction": reduction_of(case),
            "ignore_index": p.get("ignore_index", -100), "label_smoothing": p.get("label_smoothing", 0.0)}


def ce_reduction_length(case: Case, tensor: str) -> int:
    """K = the logits reduced into one value: C per position, times every position unless 'none'."""
    x = case.inputs["input"]
    return x.shape[classification.class_axis(x.ndim)] if reduction_of(case) == "none" else x.size


def ce_log_softmax(case: Case) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """The log_softmax terms of cross entropy's error analysis (``ce_errors``): the weighted,
    smoothed targets q and their normaliser, logp, y = exp(logp), and logp's relative error
    E_logp = |z| + |L| + E_s + |logp| + 1 (units of u), E_s = 2√C + Σ y·(|z| + 2) + 1."""
    x, t, args = case.inputs["input"], case.inputs["target"], ce_args(case)
    ax = classification.class_axis(x.ndim)
    q, normaliser = classification.smoothed_class_weights(x, t, args["weight"], args["ignore_index"],
                                                          args["label_smoothing"])
    z = x - np.max(x, axis=ax, keepdims=True)
    lse = np.log(np.sum(np.exp(z), axis=ax, keepdims=True))
    logp = z - lse
    y = np.exp(logp)
    err_s = 2 * math.sqrt(x.shape[ax]) + np.sum(y * (np.abs(z) + 2), axis=ax, keepdims=True) + 1
    return q, normaliser, logp, y, np.abs(z) + np.abs(lse) + err_s + np.abs(logp) + 1


def ce_errors(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """First-order error bounds of cross entropy, in units of u.

    log_softmax: with z = x - max, L = log Σ exp(z), logp = z - L, y = exp(logp), the relative
    error of the sum is E_s = 2√C + Σ y·(|z| + 2) + 1 (rounding of z amplified by exp, exp, the
    sum), so E_logp = |z| + |L| + E_s + |logp| + 1 (z, log, rounding of L, the subtraction).
    The weighted, smoothed target q = w·((1 - ε)·t + ε/C) costs 4 roundings (ε/C, two products,
    the sum). Per position l = -Σ q·logp: E_l = Σ|q|·(E_logp + 5|logp|) + 2√C·Σ|q·logp|.
    'sum': Σ E_l + 2√M·Σ|l| over M positions; 'mean' divides that by the normaliser W and adds
    |ref|·(2√M·ρ + 2) for the sum of W and the division, with ρ = Σ|w[t]|/|W| (1 when the counted
    weights have one sign, or for probability targets, whose W counts positions).
    Gradients, with ĝ the per-position cotangent (relative error E_ĝ = 2√M·ρ + 3 for 'mean', else 0)
    and Q = Σ|q|: the log_softmax backward gl - y·Σ gl with gl = -ĝ·q (6 roundings on q·ĝ: q,
    the product with ĝ, the subtraction) and y = exp(logp) (relative error E_logp + 1):
    grad.input: |ĝ|·(y·Q·(E_logp + 2√C + 8) + 6|q| + Q·tiny/u) + |ref|·E_ĝ;
    grad.target -ĝ·(1 - ε)·w·logp (three products): |ĝ·(1 - ε)·w|·(E_logp + 4|logp|) + |ref|·E_ĝ.
    """
    x, t, args = case.inputs["input"], case.inputs["target"], ce_args(case)
    ax = classification.class_axis(x.ndim)
    classes, positions = x.shape[ax], x.size // x.shape[ax]
    reduction = args["reduction"]
    dt = DTYPES[case.dtype]
    with np.errstate(all="ignore"):
        q, normaliser, logp, y, err_logp = ce_log_softmax(case)
        aq = np.abs(q)
        err_l = np.sum(aq * (err_logp + 5 * np.abs(logp)), axis=ax) + 2 * math.sqrt(classes) * np.sum(
            np.abs(q * logp), axis=ax)
        losses = np.abs(np.sum(q * logp, axis=ax))
        root_m = math.sqrt(positions)
        rho = _weight_cancellation(x, t, args["weight"], args["ignore_index"], normaliser)
        if reduction == "none":
            err_out = err_l
        else:
            err_out = np.sum(err_l) + 2 * root_m * np.sum(losses)
            if reduction == "mean":
                err_out = err_out / abs(normaliser) + np.abs(result.outputs["output"]) * (2 * root_m * rho + 2)
        out = {"output": err_out}
        if "input" not in result.grads:
            return out
        g = np.abs(case.cotangents["output"])
        g_pos = np.expand_dims(g, ax) if reduction == "none" else (g / abs(normaliser) if reduction == "mean" else g)
        err_ghat = 2 * root_m * rho + 3 if reduction == "mean" else 0.0
        big_q = np.sum(aq, axis=ax, keepdims=True)
        err_gx = (g_pos * (y * big_q * (err_logp + 2 * math.sqrt(classes) + 8) + 6 * aq
                           + big_q * dt.min_subnormal / dt.unit_roundoff)
                  + np.abs(result.grads["input"]) * err_ghat)
        out["grad.input"] = err_gx
        if "target" in result.grads:
            w = np.ones(classes) if args["weight"] is None else args["weight"]
            shape = [1] * x.ndim
            shape[ax] = -1
            wt = (1 - args["label_smoothing"]) * np.abs(w).reshape(shape)
            err_gt = g_pos * wt * (err_logp + 4 * np.abs(logp)) + np.abs(result.grads["target"]) * err_ghat
            out["grad.target"] = err_gt
    return out


def nll_args(case: Case) -> dict[str, Any]:
    return {"weight": case.inputs.get("weight"), "reduction": reduction_of(case),
            "ignore_index": case.params.get("ignore_index", -100)}


def nll_length(case: Case, tensor: str) -> int:
    """K = the positions summed into the output (1 for 'none' and for the gradient)."""
    x = case.inputs["input"]
    if tensor != "output" or reduction_of(case) == "none":
        return 1
    return x.size // x.shape[classification.class_axis(x.ndim)]


def nll_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """Exact tier: the sum of |w[t]·x[t]| spread over the K positions (so that K·absref, the
    largest partial sum, decides exactness: 'rounded', one final division for 'mean') and |grad|.
    Float tier: ``reference.loss_classification.nll_errors`` (a product per term, the sum, the
    division by W = Σ w[t] and W's own error), the gradient -w[t]·ĝ carrying ĝ's error."""
    x, t, args = case.inputs["input"], case.inputs["target"], nll_args(case)
    k = nll_length(case, "output")
    counted, wt = classification.nll_counted(x, t, args["weight"], args["ignore_index"])
    grads = {name: np.abs(v) for name, v in result.grads.items()}
    if case.tier == "exact":
        picked = classification.nll_loss(x, t, None, ignore_index=args["ignore_index"], reduction="none")
        terms = np.abs(wt * np.where(counted, np.abs(picked), 0.0))
        out = terms if args["reduction"] == "none" else np.sum(terms) / k
        return {"output": out, **{f"grad.{n}": v for n, v in grads.items()}}
    out_err, count_err = classification.nll_errors(x, t, args["weight"], args["reduction"], args["ignore_index"])
    result_err = {"output": bound_as_magnitude(out_err, k)}
    dt = DTYPES[case.dtype]
    ghat_err = 2.0 + count_err if args["reduction"] == "mean" else 0.0
    for name, g in grads.items():
        result_err[f"grad.{name}"] = g * (ghat_err + 1) + np.where(g > 0, dt.min_subnormal / dt.unit_roundoff, 0.0)
    return result_err


HALF_OVERFLOW = 65520.0  # the float16 rounding of anything at least this large is ±inf


def _half_totals(case: Case) -> tuple[float, float, float] | None:
    """(the total torch rounds to float16 inside NLLLoss / CrossEntropyLoss, the label-smoothing
    total, the loss) of a valid float16 case with a reduction, computed in float64; None otherwise.

    NLLLoss: Σ w[t]·(-x[t]). CrossEntropyLoss over class indices is (1 - ε)·nll(log_softmax) +
    ε/C·S: the nll's total Σ w[t]·(-logp[t]) and S = Σ_positions Σ_c w_c·(-logp_c) (counted
    positions) are each a float16 tensor before they are scaled; over probabilities the total
    Σ q·(-logp) is."""
    if case.op not in ("CrossEntropyLoss", "NLLLoss", "NLLLoss2d") or case.dtype != "float16" or case.invalid:
        return None
    reduction = reduction_of(case)
    if reduction == "none":
        return None
    x, t = case.inputs["input"], case.inputs["target"]
    with np.errstate(all="ignore"):
        if case.op != "CrossEntropyLoss":
            args = nll_args(case)
            loss = classification.nll_loss(x, t, **args)
            return float(classification.nll_loss(x, t, **{**args, "reduction": "sum"})), 0.0, float(loss)
        args = ce_args(case)
        loss = float(classification.cross_entropy(x, t, **args))
        ax = classification.class_axis(x.ndim)
        logp = classification.log_softmax(x, ax)
        if t.dtype.kind not in "iu":
            return float(classification.cross_entropy(x, t, **{**args, "reduction": "sum"})), 0.0, loss
        nll = float(classification.nll_loss(logp, t, args["weight"], ignore_index=args["ignore_index"],
                                            reduction="sum"))
        w = np.ones(x.shape[ax]) if args["weight"] is None else args["weight"]
        shape = [1] * x.ndim
        shape[ax] = -1
        per_position = -np.sum(logp * w.reshape(shape), axis=ax)
        smooth = float(np.sum(np.where(t != args["ignore_index"], per_position, 0.0)))
        return nll, smooth, loss


def half_mean_total_overflows(case: Case) -> bool:
    """A float16 NLLLoss / CrossEntropyLoss whose weighted total (see ``_half_totals``) rounds to
    ±inf in float16 although the loss is representable: torch rounds the total to float16 before
    dividing by Σ w ('mean') or scaling it by 1 - ε (a 'sum' with label smoothing)."""
    totals = _half_totals(case)
    if totals is None:
        return False
    total, _, loss = totals
    scaled = reduction_of(case) == "mean" or case.params.get("label_smoothing", 0.0) > 0
    return bool(scaled and np.isfinite(total) and abs(total) >= HALF_OVERFLOW and abs(loss) < HALF_OVERFLOW)


def half_smoothing_total_overflows(case: Case) -> bool:
    """A float16 CrossEntropyLoss over class indices with label smoothing whose smoothing total S
    (see ``_half_totals``) rounds to ±inf in float16 although the loss is representable."""
    totals = _half_totals(case)
    if totals is None or case.params.get("label_smoothing", 0.0) <= 0:
        return False
    _, smooth, loss = totals
    return bool(np.isfinite(smooth) and abs(smooth) >= HALF_OVERFLOW and abs(loss) < HALF_OVERFLOW)


def nll_4d_dense_non_contiguous_input(case: Case) -> bool:
    """A 4-D input stored dense but not contiguous (channels_last, or a permutation that is not
    the identity on its non-unit dims): torch's 4-D NLL backward rejects its grad_input."""
    x = case.inputs["input"]
    layout = case.layout("input")
    if x.ndim != 4 or layout.kind not in ("channels_last", "permuted") or x.size == 0:
        return False
    return not S.is_torch_contiguous(x.shape, layout.strides(x.shape))


NLL_TOLERANCE = {
    # Exact tier: 'none' and 'sum' are exact integer sums, 'mean' one division (two roundings
    # where the division is carried out in float and rounded again to a half format).
    "output": Tolerance(reduction=nll_length, magnitude=nll_magnitude, c=1.0, out_ulps=2.0, exact="rounded"),
    # -w·(g/W) for 'mean': two roundings, (1 + u)² - 1 <= 3u.
    "grad.*": Tolerance(reduction=nll_length, magnitude=nll_magnitude, c=1.0, out_ulps=3.0, exact="rounded"),
}



CE_TOLERANCE = analysed_tolerance(ce_errors, ce_reduction_length)

# -- MarginRankingLoss, HingeEmbeddingLoss, MultiLabelMarginLoss, MultiMarginLoss, CosineEmbeddingLoss ------

def _rounding(case: Case) -> Callable[[np.ndarray], np.ndarray]:
    return DTYPES[case.dtype].round


def exact_or_analysed(errors: Callable[[Case, Result], Mapping[str, np.ndarray]],
                       length: Callable[[Case, str], int]) -> Tolerance:
    """Exact tier (small integers, integer margins, power-of-two counts for 'mean'): every tensor
    bit-exact (|ref| is within 2^p by construction). Float tier: the loss's error analysis."""
    analysed = analysed_tolerance(errors, length).magnitude

    def magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
        if case.tier == "exact":
            return {name: np.abs(v) for name, v in result.tensors().items()}
        return analysed(case, result)  # type: ignore[operator]

    return Tolerance(reduction=length, magnitude=magnitude, c=1.0, exact="bitwise")


def ranking_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x1, x2, y = (case.inputs[n] for n in ("input1", "input2", "target"))
    m = case.params["margin"]
    z = margin.margin_ranking_z(x1, x2, y, m)
    term_err, dx_err, dy_err = margin.margin_ranking_errors(x1, x2, y, m, unit_roundoff(case), _rounding(case))
    active = (z >= 0).astype(np.float64)
    return pointwise_errors(case, np.maximum(z, 0.0), term_err, reduction_of(case),
                            {"input1": (-y * active, dx_err), "input2": (y * active, dx_err),
                             "target": (-(x1 - x2) * active, dy_err)})


def ranking_length(case: Case, tensor: str) -> int:
    return broadcast_length(case, tensor, ("input1", "input2", "target"))


def hinge_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """margin - x is one rounding where y = -1 (u·ℓ); x itself is exact; the derivative ±1 exact
    (the margin is exact, so the kink test on the rounded m - x is exact)."""
    x, y, m = case.inputs["input"], case.inputs["target"], case.params["margin"]
    terms = margin.hinge_embedding_terms(x, y, m)
    d = np.where(y != -1, 1.0, 0.0) - np.where((y != 1) & (m - x >= 0), 1.0, 0.0)
    return pointwise_errors(case, terms, np.where(y != 1, np.abs(terms), 0.0), reduction_of(case),
                            {"input": (d, np.zeros_like(d))})


def sample_length(case: Case, tensor: str) -> int:
    x = case.inputs["input"]
    per_sample = x.shape[-1] ** 2 if case.op == "MultiLabelMarginLoss" else x.shape[-1]
    if tensor != "output":
        return x.shape[-1]
    return per_sample * (1 if reduction_of(case) == "none" else max(1, x.size // x.shape[-1]))


def mlm_errors(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    x, t, reduction = case.inputs["input"], case.inputs["target"], reduction_of(case)
    out_err, grad_err = margin.multilabel_margin_errors(x, t, reduction, case.cotangents.get("output"),
                                                        unit_roundoff(case), _rounding(case))
    return {"output": out_err} if grad_err is None else {"output": out_err, "grad.input": grad_err}


def _mm_args(case: Case) -> dict[str, Any]:
    return {"p": case.params["p"], "margin": case.params["margin"], "weight": case.inputs.get("weight"),
            "reduction": reduction_of(case)}


def mm_errors(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    x, t, args = case.inputs["input"], case.inputs["target"], _mm_args(case)
    out_err, grad_err = margin.multi_margin_errors(x, t, g=case.cotangents.get("output"), u=unit_roundoff(case),
                                                   rnd=_rounding(case), **args)
    return {"output": out_err} if grad_err is None else {"output": out_err, "grad.input": grad_err}


def cosine_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x1, x2, y = (case.inputs[n] for n in ("input1", "input2", "target"))
    out_err, e1, e2 = margin.cosine_embedding_errors(x1, x2, y, case.params["margin"], reduction_of(case),
                                                  case.cotangents.get("output"), unit_roundoff(case))
    out = {"output": out_err}
    if e1 is not None:
        out.update({"grad.input1": e1, "grad.input2": e2})
    return out


def cosine_length(case: Case, tensor: str) -> int:
    x1 = case.inputs["input1"]
    if tensor != "output":
        return x1.shape[-1]
    return x1.shape[-1] * (1 if reduction_of(case) == "none" else max(1, x1.size // x1.shape[-1]))


def cosine_norm_product_out_of_range(case: Case) -> bool:
    """For some pair of non-zero vectors, (Σx1²)·(Σx2²) lies outside the normal range of the case's
    format (it overflows, or underflows into subnormals or to 0)."""
    m1, m2 = (np.sum(case.inputs[n] ** 2, axis=-1) for n in ("input1", "input2"))
    product = m1 * m2
    dt = DTYPES[case.dtype]
    return bool(np.any((product > dt.max_value) | ((product > 0) & (product < dt.min_normal))))


def cosine_zero_vector(case: Case) -> bool:
    """Some row of input1 or input2 is zero: its squared norm is ε = 1e-12, which rounds to 0 in
    float16 (0/0)."""
    return any(bool(np.any(np.all(case.inputs[n] == 0, axis=-1))) for n in ("input1", "input2"))



RANKING_TOLERANCE = exact_or_analysed(ranking_errors, ranking_length)
HINGE_TOLERANCE = exact_or_analysed(hinge_errors, broadcast_length)
MLM_TOLERANCE = analysed_tolerance(mlm_errors, sample_length)
MM_TOLERANCE = analysed_tolerance(mm_errors, sample_length)
COSINE_TOLERANCE = analysed_tolerance(cosine_errors, cosine_length)

# -- GaussianNLLLoss, PoissonNLLLoss --------------------------------------------------------------------------


def gaussian_var(case: Case) -> np.ndarray | float:
    """The case's var: the tensor input, or the Python float passed as a keyword."""
    return case.inputs["var"] if "var" in case.inputs else case.forward_kwargs["var"]


def gaussian_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.loss_likelihood.gaussian_nll_errors`` per term, reduced (``pointwise_errors``),
    with the clamped variance's own error: 0 for a var taken as given, the rounding of eps to the
    format where the clamp substitutes it (u·eps, or half a subnormal spacing below the normal
    range); and the underflow of d² (half a subnormal spacing) amplified by 1/v and 1/v²."""
    x, t, var = case.inputs["input"], case.inputs["target"], gaussian_var(case)
    full, eps = bool(case.params.get("full")), float(case.params["eps"])
    dt = DTYPES[case.dtype]
    shaped = likelihood.gaussian_var(x, var)
    with np.errstate(all="ignore"):
        clamp_err = (dt.unit_roundoff * eps + dt.min_subnormal / 2) / (eps * dt.unit_roundoff)
        var_err = np.where(shaped < eps, clamp_err, 0.0)
        v = np.maximum(shaped, eps)
        term_err, dx_err, dv_err = likelihood.gaussian_nll_errors(x, t, var, full, eps, var_err)
        t_u = tiny_over_u(case)
        term_err = term_err + t_u / v
        dv_err = dv_err + t_u / (v * v) + t_u / v
        d = np.subtract(x, t)
        dx = d / v
        dv = 0.5 * (1 / v - d * d / (v * v))
    terms = likelihood.gaussian_nll_terms(x, t, var, full, eps)
    derivs = {"input": (dx, dx_err), "target": (-dx, dx_err)}
    view = case
    if "var" in case.inputs:
        derivs["var"] = (dv, dv_err)
        view = replace(case, inputs={**case.inputs, "var": np.asarray(shaped)})
    out = pointwise_errors(view, terms, term_err, case.params.get("reduction", "mean"), derivs)
    if "grad.var" in out:
        out["grad.var"] = out["grad.var"].reshape(case.inputs["var"].shape)
    return out


def gaussian_length(case: Case, tensor: str) -> int:
    """K = the terms reduced into the output (the broadcast shape), or broadcast into one gradient
    element."""
    shape = likelihood.gaussian_nll_terms(case.inputs["input"], case.inputs["target"], gaussian_var(case),
                                          False, float(case.params["eps"])).shape
    numel = math.prod(shape)
    if tensor == "output":
        return 1 if case.params.get("reduction", "mean") == "none" else numel
    return max(1, numel // max(1, case.inputs[tensor.removeprefix("grad.")].size))


def poisson_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.loss_likelihood.poisson_nll_errors`` per term, reduced; the rate input's
    s = x + eps carries eps's conversion to the format (1u) and, below the normal range, half a
    subnormal spacing (tiny/(2u·s))."""
    x, t = case.inputs["input"], case.inputs["target"]
    log_input, full, eps = bool(case.params["log_input"]), bool(case.params["full"]), float(case.params["eps"])
    with np.errstate(all="ignore"):
        s = np.abs(x + eps)
        sum_err = 1.0 + np.where(s < DTYPES[case.dtype].min_normal, tiny_over_u(case) / 2 / s, 0.0)
    term_err, dx_err, dt_err = likelihood.poisson_nll_errors(x, t, log_input, full, eps, sum_err)
    dx, dt = likelihood.poisson_nll_derivatives(x, t, log_input, full, eps)
    return pointwise_errors(case, likelihood.poisson_nll_terms(x, t, log_input, full, eps), term_err,
                            reduction_of(case), {"input": (dx, dx_err), "target": (dt, dt_err)})


GAUSSIAN_TOLERANCE = analysed_tolerance(gaussian_errors, gaussian_length)


def _gaussian_half_parts(case: Case) -> dict[str, np.ndarray] | None:
    """For a valid float16 GaussianNLLLoss case, over the broadcast shape: the clamped variance v,
    d² = (x - t)² and the quotient q = d²/v, each rounded to float16 as torch holds it, and the
    elementwise losses (float64)."""
    if case.dtype != "float16" or case.invalid:
        return None
    x, t, var = case.inputs["input"], case.inputs["target"], gaussian_var(case)
    eps = float(case.params["eps"])
    half = DTYPES["float16"].round  # each intermediate as torch holds it
    with np.errstate(all="ignore"):
        v = half(np.maximum(likelihood.gaussian_var(x, var), eps))
        d2 = half(half(np.subtract(x, t)) ** 2)
        terms = likelihood.gaussian_nll_terms(x, t, var, bool(case.params["full"]), eps)
        return {"v": np.broadcast_to(v, terms.shape), "d2": np.broadcast_to(d2, terms.shape),
                "q": np.broadcast_to(half(d2 / v), terms.shape), "terms": terms}


def gaussian_half_intermediates_overflow(case: Case) -> bool:
    """A float16 case where an intermediate of the backward leaves the float16 range although the
    gradients are finite or of one sign: ½·ĝ/v (v = max(var, eps) below 1/65504, as the default
    eps = 1e-6 clamps a small var), (x - t)², q = (x - t)²/v or q/v (torch's division backward forms
    -ĝ·((d²/v)/v)). The input's gradient ĝ·d/v is then inf, or NaN where d = 0 (inf·0), and var's
    ½·ĝ/v - ½·ĝ·q/v is inf - inf = NaN or ±inf (NaN too where the true value is beyond the range)."""
    parts = _gaussian_half_parts(case)
    if parts is None or "output" not in case.cotangents:
        return False
    with np.errstate(all="ignore"):
        half = DTYPES["float16"].round
        ghat = half(ref.scaled_cotangent(case.cotangents["output"], parts["terms"].shape,
                                         case.params.get("reduction", "mean")))
        inverse = np.abs(half(0.5 * ghat) / parts["v"]) >= HALF_OVERFLOW
        quotients = (parts["q"] >= HALF_OVERFLOW) | (parts["q"] / parts["v"] >= HALF_OVERFLOW)
    return bool(np.any(inverse | (parts["d2"] >= HALF_OVERFLOW) | quotients))


def gaussian_half_terms_overflow(case: Case) -> bool:
    """A float16 case whose elementwise loss ½·(log v + q) or one of its intermediates (x - t)² and
    q = (x - t)²/v leaves the float16 range, where the loss (the element for 'none', the reduction
    otherwise) is representable: torch evaluates it elementwise in float16 before reducing it."""
    parts = _gaussian_half_parts(case)
    if parts is None:
        return False
    terms = parts["terms"]
    with np.errstate(all="ignore"):
        beyond = (parts["d2"] >= HALF_OVERFLOW) | (parts["q"] >= HALF_OVERFLOW) | (np.abs(terms) >= HALF_OVERFLOW)
        reduction = case.params.get("reduction", "mean")
        if reduction == "none":
            return bool(np.any(beyond & (np.abs(terms) < HALF_OVERFLOW)))
        loss = np.mean(terms) if reduction == "mean" else np.sum(terms)
        return bool(np.any(beyond) and abs(loss) < HALF_OVERFLOW)


def poisson_full_zero_target(case: Case) -> bool:
    """full=True with some target exactly 0, where torch's target gradient is NaN: the Stirling
    term is masked to 0 there, but its backward multiplies the mask's zero by log(0) = -inf."""
    return bool(case.params.get("full")) and bool(np.any(case.inputs["target"] == 0))


def poisson_eps_underflows(case: Case) -> bool:
    """A rate input whose x + eps rounds to 0 in the case's format (x = 0 with an eps below half the
    smallest subnormal: the default 1e-8 in float16), so torch's log(x + eps) is -inf."""
    if case.params.get("log_input", True):
        return False
    s = DTYPES[case.dtype].round(case.inputs["input"] + float(case.params["eps"]))
    return bool(np.any(s == 0))


# -- TripletMarginLoss, TripletMarginWithDistanceLoss --------------------------------------------------------


def triplet_distance(case: Case) -> tuple[float, float]:
    """(p, eps) of the case's pairwise distance: its parameters, or those of the distance_function
    node (a PairwiseDistance module or a partial of F.pairwise_distance; default 2 and 1e-6)."""
    if case.op == "TripletMarginLoss":
        return float(case.params.get("p", 2.0)), float(case.params.get("eps", 1e-6))
    node = case.params.get("distance_function") or {}
    init = node.get("module", {}).get("init") or node.get("call", {}).get("kwargs") or {}
    return float(init.get("p", 2.0)), float(init.get("eps", 1e-6))


def triplet_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.loss_triplet.triplet_errors`` for the case's distance and reduction."""
    a, p, n = (case.inputs[k] for k in ("anchor", "positive", "negative"))
    norm_p, eps = triplet_distance(case)
    dt = DTYPES[case.dtype]
    return triplet.triplet_errors(a, p, n, float(case.params.get("margin", 1.0)), norm_p, eps,
                                  bool(case.params.get("swap")), reduction_of(case), case.cotangents.get("output"),
                                  dt.unit_roundoff, dt.min_subnormal)


def triplet_length(case: Case, tensor: str) -> int:
    """K = the entries behind one output value: D per distance (two or three), times the triplets
    reduced; D·(distances) for a gradient element."""
    a = case.inputs["anchor"]
    per_row = a.shape[-1] * (3 if case.params.get("swap") else 2)
    if tensor != "output" or reduction_of(case) == "none":
        return per_row
    return per_row * max(1, a.size // max(1, a.shape[-1]))


TRIPLET_TOLERANCE = analysed_tolerance(triplet_errors, triplet_length)
