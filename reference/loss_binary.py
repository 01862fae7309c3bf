"""Logistic losses: binary cross entropy (on probabilities and on logits), the soft margin loss and
the multi-label soft margin loss; forward, VJP and first-order error analysis (units of u).

Every log-sigmoid is evaluated stably, as -softplus(-x) with softplus(z) = max(z, 0) +
log1p(exp(-|z|)), so the reference has the true value wherever torch's formula overflows or
cancels. The error analyses bound a stable evaluation of the documented formula term by term
(each transcendental function 2u relative), never torch's own rewriting of it.
"""

from __future__ import annotations

import math

import numpy as np

from reference.libm import sigmoid
from reference.loss import apply_reduction, legacy_reduction, reduced_error, scaled_cotangent, sum_to_shape
from reference.registry import functional
from reference.smooth_activation import softplus as _softplus

# torch clamps each log of BCELoss at -100, and its backward divides by max(x·(1 - x), EPSILON),
# EPSILON being the single-precision constant 1e-12 (float32(1e-12) = 9.99999996e-13).
LOG_CLAMP = -100.0
BCE_EPSILON = float(np.float32(1e-12))


def softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow or cancellation: ``reference.smooth_activation.softplus``
    with β = 1 and no linear threshold (``sigmoid`` is ``reference.libm.sigmoid``)."""
    return _softplus(np.asarray(z, dtype=np.float64), 1.0, math.inf)


def _same_shape(name: str, x: np.ndarray, t: np.ndarray) -> None:
    if x.shape != t.shape:
        raise ValueError(f"{name}: target shape {t.shape} differs from input shape {x.shape}")


def _broadcast_to(name: str, w: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """A weight expanded to ``shape`` (1 when None); it may not enlarge the shape."""
    if w is None:
        return np.ones(shape)
    try:
        if np.broadcast_shapes(w.shape, shape) != shape:
            raise ValueError
        return np.broadcast_to(np.asarray(w, dtype=np.float64), shape)
    except ValueError:
        raise ValueError(f"{name}: weight shape {w.shape} does not broadcast to {shape}") from None


# -- BCELoss ----------------------------------------------------------------------------------------

def _bce_check(x: np.ndarray, t: np.ndarray) -> None:
    _same_shape("binary_cross_entropy", x, t)
    if np.any((x < 0) | (x > 1) | np.isnan(x)):
        raise ValueError("binary_cross_entropy: every input must lie in [0, 1]")
    if np.any((t < 0) | (t > 1) | np.isnan(t)):
        raise ValueError("binary_cross_entropy: every target must lie in [0, 1]")


def _bce_logs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max(log x, -100), max(log(1 - x), -100))."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(x), LOG_CLAMP), np.maximum(np.log1p(-x), LOG_CLAMP)


def bce_terms(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """-w·(t·max(log x, -100) + (1 - t)·max(log(1 - x), -100)) elementwise (x, t in [0, 1])."""
    _bce_check(x, t)
    w = _broadcast_to("binary_cross_entropy", weight, x.shape)
    l0, l1 = _bce_logs(x)
    return -w * (t * l0 + (1 - t) * l1)




def bce_derivatives(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(dℓ/dx, dℓ/dt) per element: w·(x - t)/max(x·(1 - x), 1e-12) (torch's documented "linear
    backward": the true derivative wherever x·(1 - x) >= 1e-12, and finite at x = 0 and 1) and
    w·(max(log(1 - x), -100) - max(log x, -100))."""
    _bce_check(x, t)
    w = _broadcast_to("binary_cross_entropy", weight, x.shape)
    l0, l1 = _bce_logs(x)
    return w * (x - t) / np.maximum(x * (1 - x), BCE_EPSILON), w * (l1 - l0)


def _bce_vjp(cotangent, input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """{"input", "target"}: ĝ times ``bce_derivatives`` (the weight is a constant, as in torch)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    dx, dt = bce_derivatives(input, target, weight)
    ghat = scaled_cotangent(cotangent, input.shape, reduction)
    return {"input": dx * ghat, "target": dt * ghat}


def _probabilities_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    x, t = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0.05, 0.95, (3, 4))
    return (x, t), {"weight": rng.uniform(0.5, 2.0, 4), "reduction": "mean"}


@functional(vjp=_bce_vjp, example=_probabilities_example)
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """ℓ = -w·(t·max(log x, -100) + (1 - t)·max(log(1 - x), -100)) elementwise, reduced. Input
    and target have one shape with every value in [0, 1] (ValueError otherwise); the weight
    broadcasts to it without enlarging it. Gradient (torch's documented 'linear backward'):
    dℓ/dx = w·(x - t)/max(x·(1 - x), 1e-12) (finite at x = 0 and 1), dℓ/dt = w·(max(log(1 - x),
    -100) - max(log x, -100))."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(bce_terms(input, target, weight), reduction)


def bce_errors(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """(term error, dx error, dt error) in u.

    ℓ: each log 2u relative (plus u absolute for a rounded 1 - x), the products by t and 1 - t
    (the latter rounded) and by w, the sum: |w|·(3|t·L0| + 4|(1 - t)·L1| + |1 - t|) + 2|ℓ|.
    dx: x - t, 1 - x, the product, the rounded 1e-12, the division and w: 6u relative.
    dt: two logs and their difference, times w: |w|·(2|L0| + 2|L1| + 1) + 2|dt|.
    """
    w = np.abs(_broadcast_to("binary_cross_entropy", weight, x.shape))
    l0, l1 = _bce_logs(x)
    terms = bce_terms(x, t, weight)
    dx, dt = bce_derivatives(x, t, weight)
    term_err = w * (3 * np.abs(t * l0) + 4 * np.abs((1 - t) * l1) + np.abs(1 - t)) + 2 * np.abs(terms)
    return term_err, 6 * np.abs(dx), w * (2 * np.abs(l0) + 2 * np.abs(l1) + 1) + 2 * np.abs(dt)


# -- BCEWithLogitsLoss -------------------------------------------------------------------------------

def _logits_parts(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None,
                  pos_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    _same_shape("binary_cross_entropy_with_logits", x, t)
    w = _broadcast_to("binary_cross_entropy_with_logits", weight, x.shape)
    pw = _broadcast_to("binary_cross_entropy_with_logits (pos_weight)", pos_weight, x.shape)
    return w, pw


def bce_logits_terms(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None,
                     pos_weight: np.ndarray | None) -> np.ndarray:
    """w·(pw·t·softplus(-x) + (1 - t)·softplus(x)) = -w·(pw·t·log σ(x) + (1 - t)·log(1 - σ(x))),
    pos_weight broadcast over the input (a (C,) vector along the last dim)."""
    w, pw = _logits_parts(x, t, weight, pos_weight)
    return w * (pw * t * softplus(-x) + (1 - t) * softplus(x))




def bce_logits_derivatives(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None,
                           pos_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(dℓ/dx, dℓ/dt) = (w·((1 - t)·σ(x) - pw·t·σ(-x)), w·(pw·softplus(-x) - softplus(x)))."""
    w, pw = _logits_parts(x, t, weight, pos_weight)
    return w * ((1 - t) * sigmoid(x) - pw * t * sigmoid(-x)), w * (pw * softplus(-x) - softplus(x))


def _bce_logits_vjp(cotangent, input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                    pos_weight=None):
    """{"input", "target"}: ĝ times ``bce_logits_derivatives`` (weight and pos_weight are constants)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    dx, dt = bce_logits_derivatives(input, target, weight, pos_weight)
    ghat = scaled_cotangent(cotangent, input.shape, reduction)
    return {"input": dx * ghat, "target": dt * ghat}


def _logits_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    x, t = rng.standard_normal((3, 4)) * 2, rng.random((3, 4))
    return (x, t), {"weight": rng.uniform(0.5, 2.0, (3, 1)), "pos_weight": rng.uniform(0.5, 2.0, 4)}


@functional(vjp=_bce_logits_vjp, example=_logits_example)
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """ℓ = -w·(pw·t·log σ(x) + (1 - t)·log(1 - σ(x))) = w·(pw·t·softplus(-x) + (1 - t)·softplus(x))
    elementwise (evaluated stably: finite for every finite x), reduced. Target of the input's
    shape; weight and pos_weight broadcast to it (pos_weight typically a (C,) vector along the last
    dim). dℓ/dx = w·((1 - t)·σ(x) - pw·t·σ(-x)), dℓ/dt = w·(pw·softplus(-x) - softplus(x))."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(bce_logits_terms(input, target, weight, pos_weight), reduction)


def bce_logits_errors(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None,
                      pos_weight: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """(term error, dx error, dt error) in u, for the log-sum-exp form the documentation names:
    ℓ = w·((1 - t)·x + lw·softplus(-x)) with lw = 1 + (pw - 1)·t, and dℓ/dx = w·(lw·σ(x) - pw·t).

    Each form is a sum of two terms whose magnitudes the bound carries (each softplus 3u relative,
    σ 4u, the products, lw's two roundings, the sum, w): where the terms cancel (confident hard
    labels: x ≪ 0 with t = 0 for ℓ, x ≫ 0 with t = 1 for dℓ/dx) the error is relative to |x|·u
    and 1·u rather than to ℓ. dℓ/dt = w·(pw·softplus(-x) - softplus(x)) likewise.
    """
    w, pw = _logits_parts(x, t, weight, pos_weight)
    aw = np.abs(w)
    lw = 1 + (pw - 1) * t
    terms = bce_logits_terms(x, t, weight, pos_weight)
    dx, dt = bce_logits_derivatives(x, t, weight, pos_weight)
    linear, log_part = np.abs((1 - t) * x), np.abs(lw) * softplus(-x)
    lw_err = np.abs(pw - 1) * np.abs(t) * 2 + 1
    term_err = aw * (2 * linear + 5 * log_part + lw_err * softplus(-x)) + 2 * np.abs(terms)
    dx_err = aw * (6 * np.abs(lw) * sigmoid(x) + lw_err * sigmoid(x) + 2 * np.abs(pw * t)) + 2 * np.abs(dx)
    dt_err = aw * (5 * np.abs(pw * softplus(-x)) + 4 * softplus(x) + np.abs(x)) + 2 * np.abs(dt)
    return term_err, dx_err, dt_err


# -- SoftMarginLoss ----------------------------------------------------------------------------------

def soft_margin_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log(1 + exp(-y·x)), over the broadcast shape of x and y (y = ±1)."""
    try:
        return softplus(-np.multiply(y, x))
    except ValueError as exc:
        raise ValueError(f"soft_margin_loss: shapes {x.shape} and {y.shape} do not broadcast") from exc


def _soft_margin_vjp(cotangent, input, target, size_average=None, reduce=None, reduction="mean"):
    """{"input", "target"}: -y·σ(-y·x)·ĝ and -x·σ(-y·x)·ĝ, each summed over the dims its operand
    was broadcast along."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x, y = input, target
    terms = soft_margin_terms(x, y)
    s = sigmoid(-y * x) * scaled_cotangent(cotangent, terms.shape, reduction)
    return {"input": sum_to_shape(-y * s, x.shape), "target": sum_to_shape(-x * s, y.shape)}


def _soft_margin_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    return (rng.standard_normal((3, 4)) * 3, np.where(rng.random(4) < 0.5, -1.0, 1.0)), {"reduction": "sum"}


@functional(vjp=_soft_margin_vjp, example=_soft_margin_example)
def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """ℓ = log(1 + exp(-y·x)) over the broadcast shape of input x and target y (y = ±1, not
    checked), evaluated stably (≈ -y·x where exp(-y·x) overflows), reduced."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(soft_margin_terms(input, target), reduction)


def soft_margin_errors(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(term error, dx error): softplus of the exact -y·x (3u), σ (4u) and the product by y."""
    terms = soft_margin_terms(x, y)
    return 3 * terms, 5 * np.abs(y * sigmoid(-y * x))


# -- MultiLabelSoftMarginLoss ------------------------------------------------------------------------

def _mlsm_parts(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    if x.ndim < 1:
        raise ValueError("multilabel_soft_margin_loss: the input needs a class dimension")
    _same_shape("multilabel_soft_margin_loss", x, t)
    return _broadcast_to("multilabel_soft_margin_loss", weight, x.shape)


def mlsm_terms(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """w·(t·softplus(-x) + (1 - t)·softplus(x)) / C per element (C the last dim)."""
    w = _mlsm_parts(x, t, weight)
    return w * (t * softplus(-x) + (1 - t) * softplus(x)) / x.shape[-1]




def mlsm_derivatives(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(dℓ_n/dx, dℓ_n/dt) = (w·((1 - t)·σ(x) - t·σ(-x))/C, w·(softplus(-x) - softplus(x))/C = -w·x/C)."""
    w = _mlsm_parts(x, t, weight)
    c = x.shape[-1]
    return w * ((1 - t) * sigmoid(x) - t * sigmoid(-x)) / c, -w * x / c


def _mlsm_vjp(cotangent, input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """{"input", "target"}: the per-sample cotangent times ``mlsm_derivatives`` (weight constant)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    dx, dt = mlsm_derivatives(input, target, weight)
    ghat = np.expand_dims(scaled_cotangent(cotangent, input.shape[:-1], reduction), -1)
    return {"input": dx * ghat, "target": dt * ghat}


def _mlsm_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    return (rng.standard_normal((3, 4)), rng.random((3, 4))), {"weight": rng.uniform(0.5, 2.0, 4), "reduction": "none"}


@functional(vjp=_mlsm_vjp, example=_mlsm_example)
def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """ℓ_n = -(1/C)·Σ_c w_c·(t·log σ(x) + (1 - t)·log σ(-x)) over the last dim C of input (C) or
    (N, C), then reduced over the samples ('mean' divides by N). Target of the input's shape, a
    (C,) weight; dℓ/dx = w·((1 - t)·σ(x) - t·σ(-x))/C, dℓ/dt = -w·x/C."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(np.sum(mlsm_terms(input, target, weight), axis=-1), reduction)


def mlsm_errors(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None,
                reduction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output error, dx error, dt error) in u.

    Per element as BCE with logits (plus the division by C); the per-sample sum of C terms adds
    2√C·Σ|terms|, then the reduction over samples. dt is evaluated as the documented formula's
    log σ(x) - log σ(-x): 3u on each softplus and the difference, relative to their magnitudes.
    """
    w = np.abs(_mlsm_parts(x, t, weight))
    c = x.shape[-1]
    pos, neg = np.abs(t * softplus(-x)), np.abs((1 - t) * softplus(x))
    terms = mlsm_terms(x, t, weight)
    samples = np.sum(terms, axis=-1)
    sample_err = np.sum(w * 6 * (pos + neg) / c + 2 * np.abs(terms), axis=-1) + 2 * np.sqrt(c) * np.sum(
        np.abs(terms), axis=-1)
    out_err = reduced_error(samples, sample_err, reduction)
    dx, dt = mlsm_derivatives(x, t, weight)
    dx_err = w * 7 * (np.abs((1 - t) * sigmoid(x)) + np.abs(t * sigmoid(-x))) / c + 2 * np.abs(dx)
    dt_err = w * 4 * (softplus(-x) + softplus(x)) / c + 2 * np.abs(dt)
    return out_err, dx_err, dt_err
