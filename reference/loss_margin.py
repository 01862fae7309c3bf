"""Margin losses: margin ranking, hinge embedding, multi-class and multi-label margin, cosine
embedding; forward and VJP (registered as ``reference.functional`` with torch's signatures) and
first-order error analysis (units of u).

Kink conventions follow torch: a loss written with clamp_min(z, 0) (margin ranking, hinge
embedding, cosine embedding) passes the gradient at z = 0; the multi-class and multi-label margin
kernels test z > 0 and pass none there. Where a kink's position is itself computed with rounding
errors (z from two roundings), a computed z within its error of 0 may fall on either side: the
error analysis then allows either one-sided derivative (``kink_jump``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from reference.loss import apply_reduction, legacy_reduction, reduced_error, scaled_cotangent, sum_to_shape
from reference.registry import functional

Rounding = Callable[[np.ndarray], np.ndarray]


def near_kink(z: np.ndarray, z_err_in_u: np.ndarray, u: float, exact: np.ndarray | bool = False) -> np.ndarray:
    """Where |z| <= u·z_err and z is not computed exactly, the kink test on the computed z may go
    either way (a z that every format computes exactly, e.g. from small dyadic values, may not)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.abs(z) <= u * z_err_in_u) & ~np.asarray(exact, dtype=bool)


def kink_jump(z: np.ndarray, z_err_in_u: np.ndarray, jump: np.ndarray, u: float,
              exact: np.ndarray | bool = False) -> np.ndarray:
    """Near a kink (``near_kink``) the derivative may differ by ``jump`` (in units of u; 0 elsewhere)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(near_kink(z, z_err_in_u, u, exact), np.abs(jump) / u, 0.0)


def computed_exactly(rnd: Rounding, *steps: np.ndarray) -> np.ndarray:
    """Each intermediate value is representable in the format (so every step is exact)."""
    out = np.ones(np.broadcast_shapes(*(np.shape(s) for s in steps)), dtype=bool)
    for step in steps:
        out &= rnd(step) == step
    return out


# -- MarginRankingLoss -------------------------------------------------------------------------------

def margin_ranking_z(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """z = -y·(x1 - x2) + margin over the broadcast shape (the inputs must have one rank)."""
    if not x1.ndim == x2.ndim == y.ndim:
        raise ValueError(f"margin_ranking_loss: ranks {x1.ndim}, {x2.ndim}, {y.ndim} differ")
    try:
        return -y * (x1 - x2) + margin
    except ValueError as exc:
        raise ValueError("margin_ranking_loss: shapes do not broadcast") from exc


def _margin_ranking_vjp(cotangent, input1, input2, target, margin=0, size_average=None, reduce=None,
                        reduction="mean"):
    """{"input1", "input2", "target"} = (-y, y, -(x1 - x2))·ĝ where z >= 0 (clamp_min passes the
    gradient at z = 0), 0 elsewhere; each summed over the dims its operand was broadcast along."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x1, x2, y = input1, input2, target
    z = margin_ranking_z(x1, x2, y, margin)
    active = (z >= 0) * scaled_cotangent(cotangent, z.shape, reduction)
    return {"input1": sum_to_shape(-y * active, x1.shape), "input2": sum_to_shape(y * active, x2.shape),
            "target": sum_to_shape(-(x1 - x2) * active, y.shape)}


def _ranking_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    x1 = rng.standard_normal((3, 4))
    y = np.where(rng.random((3, 4)) < 0.5, -1.0, 1.0)
    # z = -y·(x1 - x2) + margin at least 0.2 away from the kink
    z = np.where(rng.random((3, 4)) < 0.5, -1.0, 1.0) * rng.uniform(0.2, 1.0, (3, 4))
    return (x1, x1 + y * (z - 0.5), y), {"margin": 0.5}


@functional(vjp=_margin_ranking_vjp, example=_ranking_example)
def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """ℓ = max(0, -y·(x1 - x2) + margin) over the broadcast shape of input1, input2 and target
    (the three must have one rank; ValueError otherwise), reduced. The gradient at the kink
    z = 0 is the active side's (torch's clamp_min passes it at equality)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(np.maximum(margin_ranking_z(input1, input2, target, margin), 0.0), reduction)


def margin_ranking_errors(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, margin: float, u: float,
                          rnd: Rounding) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(term error, error of dℓ/dx1 = -dℓ/dx2, error of dℓ/dy) in u.

    z: the rounded x1 - x2 and the addition of the margin: u·(|x1 - x2| + |z|) (the clamp keeps it
    where z may be positive). Derivatives: ±y exact, x1 - x2 rounded once; near the kink either
    side (a jump of |y| and |x1 - x2|).
    """
    z = margin_ranking_z(x1, x2, y, margin)
    d = np.abs(np.broadcast_to(x1 - x2, z.shape))
    z_err = d + np.abs(z) + abs(margin)
    exact = computed_exactly(rnd, x1 - x2, z)
    term_err = np.where(exact, 0.0, z_err)
    dx_err = kink_jump(z, z_err, np.broadcast_to(y, z.shape), u, exact)
    dy_err = np.where(computed_exactly(rnd, x1 - x2), 0.0, d) + kink_jump(z, z_err, d, u, exact)
    return term_err, dx_err, dy_err


# -- HingeEmbeddingLoss ------------------------------------------------------------------------------

def hinge_embedding_terms(x: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """x where y = 1, max(0, margin - x) where y = -1 (torch's where(y != 1, ·) + where(y != -1, ·):
    any other y adds both), over the broadcast shape."""
    try:
        return np.where(y != 1, np.maximum(margin - x, 0.0), 0.0) + np.where(y != -1, x, 0.0)
    except ValueError as exc:
        raise ValueError("hinge_embedding_loss: shapes do not broadcast") from exc


def hinge_embedding_derivative(x: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """dℓ/dx: 1 where y != -1, minus 1 where y != 1 and margin - x >= 0 (clamp_min passes the
    gradient at the kink x = margin)."""
    return np.where(y != -1, 1.0, 0.0) - np.where((y != 1) & (margin - x >= 0), 1.0, 0.0)


def _hinge_embedding_vjp(cotangent, input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    """{"input"}: ĝ·``hinge_embedding_derivative`` summed over the dims x was broadcast along (the
    target, a ±1 label, gets no gradient)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    shape = np.broadcast_shapes(input.shape, target.shape)
    d = np.broadcast_to(hinge_embedding_derivative(input, target, margin), shape)
    return {"input": sum_to_shape(d * scaled_cotangent(cotangent, shape, reduction), input.shape)}


def _hinge_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    x = rng.uniform(-2.0, 0.75, (3, 4))  # margin 1: at least 0.25 below the kink
    return (x, np.where(rng.random((3, 4)) < 0.5, -1.0, 1.0)), {"margin": 1.0, "reduction": "sum"}


@functional(vjp=_hinge_embedding_vjp, example=_hinge_example)
def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    """ℓ = x where y = 1, max(0, margin - x) where y = -1 (targets ±1; torch adds both terms for
    any other value), over the broadcast shape of input and target, reduced."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(hinge_embedding_terms(input, target, margin), reduction)


# -- MultiMarginLoss ---------------------------------------------------------------------------------

def _mm_check(x: np.ndarray, target: np.ndarray, p: int, weight: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """(x as (N, C), target as (N,), weight (C,)) after torch's checks."""
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: only p == 1 and p == 2 are supported, got {p}")
    if x.ndim not in (1, 2) or target.ndim != x.ndim - 1 or (x.ndim == 2 and target.shape[0] != x.shape[0]):
        raise ValueError(f"multi_margin_loss: input {x.shape} and target {target.shape} do not match")
    classes = x.shape[-1]
    w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
    if w.shape != (classes,):
        raise ValueError(f"multi_margin_loss: weight shape {w.shape} != ({classes},)")
    if np.any((target < 0) | (target >= classes)):
        raise IndexError(f"multi_margin_loss: target out of range [0, {classes})")
    return x.reshape(-1, classes), target.reshape(-1), w


def _mm_parts(x2: np.ndarray, t: np.ndarray, w: np.ndarray, margin: float) -> tuple[np.ndarray, ...]:
    """(z = margin - x[y] + x[i], the mask of i != y, w[y]) per sample (N, C)."""
    xy = np.take_along_axis(x2, t[:, None], axis=1)
    others = np.arange(x2.shape[1])[None, :] != t[:, None]
    return margin - xy + x2, others, w[t][:, None], xy


def _multi_margin_vjp(cotangent, input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """{"input"}: dL/dx[i] = w[y]·p·z_i^(p-1)·ĝ/C for i != y with z_i > 0 (none at z = 0: the kernel
    tests z > 0); dL/dx[y] = -Σ of those."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x2, t, w = _mm_check(input, target, p, weight)
    z, others, wy, _ = _mm_parts(x2, t, w, margin)
    ghat = scaled_cotangent(cotangent, target.shape, reduction).reshape(-1, 1)
    d = np.where(others & (z > 0), wy * p * np.maximum(z, 0.0) ** (p - 1), 0.0) / x2.shape[1] * ghat
    d = d - (~others) * np.sum(d, axis=1, keepdims=True)
    return {"input": d.reshape(input.shape)}


def _multi_margin_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    # dyadic scores k/8 with margin 0.3: every z = margin - x[y] + x[i] is at least 0.05 from 0
    x = rng.integers(-16, 17, (5, 4)) / 8
    return (x, rng.integers(0, 4, 5)), {"p": 2, "margin": 0.3, "weight": rng.uniform(-1.0, 2.0, 4)}


@functional(vjp=_multi_margin_vjp, example=_multi_margin_example)
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """ℓ_n = Σ_{i != y} w[y]·max(0, margin - x[y] + x[i])^p / C over the classes of input (C) or
    (N, C) with class targets () or (N,), reduced over the samples. p ∈ {1, 2} (ValueError
    otherwise); weights may be zero or negative; a target outside [0, C) raises IndexError."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x2, t, w = _mm_check(input, target, p, weight)
    z, others, wy, _ = _mm_parts(x2, t, w, margin)
    losses = np.sum(np.where(others & (z > 0), wy * np.maximum(z, 0.0) ** p, 0.0), axis=1) / x2.shape[1]
    return apply_reduction(losses.reshape(target.shape), reduction)


def multi_margin_errors(x: np.ndarray, target: np.ndarray, p: int, margin: float, weight: np.ndarray | None,
                        reduction: str, g: np.ndarray | None, u: float,
                        rnd: Rounding) -> tuple[np.ndarray, np.ndarray | None]:
    """(output error, input-gradient error) in u.

    z from two roundings: E_z = |margin - x[y]| + |z|; h = z^p: E_h = p·|z|^(p-1)·E_z + (p - 1)·h;
    times w[y] (u), the sum of C - 1 terms (2√C), the division by C (u). Gradient elements: p = 1
    exact up to the division and ĝ, p = 2 carries 2|w|·E_z/C; the target column sums C - 1 of them;
    near a kink of p = 1 either side (a jump of |w[y]|·|ĝ|/C).
    """
    x2, t, w = _mm_check(x, target, p, weight)
    z, others, wy, xy = _mm_parts(x2, t, w, margin)
    classes = x2.shape[1]
    active = others & (z > 0)
    zp = np.where(active, np.maximum(z, 0.0), 0.0)
    e_z = np.abs(margin - xy) + np.abs(z)
    h = zp**p
    e_h = np.where(active, p * zp ** (p - 1) * e_z + (p - 1) * h, 0.0)
    near = others & near_kink(z, e_z, u, computed_exactly(rnd, margin - xy, z))
    e_h = np.where(near & ~active, p * (u * e_z) ** (p - 1) * e_z, e_h)  # a z that may round positive
    aw = np.abs(wy)
    terms = wy * h / classes
    losses = np.sum(terms, axis=1)
    loss_err = (np.sum(aw * (e_h + h), axis=1) + 2 * math.sqrt(classes) * np.sum(aw * h, axis=1)) / classes + np.abs(
        losses)
    out_err = reduced_error(losses.reshape(target.shape), loss_err.reshape(target.shape), reduction)
    if g is None:
        return out_err, None
    ghat = np.abs(scaled_cotangent(g, target.shape, reduction).reshape(-1, 1))
    ghat_err = 2.0 if reduction == "mean" else 0.0
    d = np.where(active, aw * p * zp ** (p - 1), 0.0) / classes * ghat
    e_d = (np.where(active, aw * 2 * e_z * (p - 1), 0.0) / classes * ghat + d * (2 + ghat_err)
           + (p == 1) * np.where(near & others, aw / classes * ghat / u, 0.0))
    column = np.sum(e_d, axis=1, keepdims=True) + 2 * math.sqrt(classes) * np.sum(d, axis=1, keepdims=True)
    return out_err, np.where(others, e_d, column).reshape(x.shape)


# -- MultiLabelMarginLoss ----------------------------------------------------------------------------

def _mlm_parts(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x (N, C), labels (N, C), valid label slots (N, C), is-target mask (N, C)).

    Only the labels before the first -1 count (repeats count again); torch checks every entry,
    padding included, to lie in [-1, C).
    """
    if x.ndim not in (1, 2) or target.shape != x.shape:
        raise ValueError(f"multilabel_margin_loss: target shape {target.shape} != input shape {x.shape}")
    classes = x.shape[-1]
    if np.any((target < -1) | (target >= classes)):
        raise ValueError(f"multilabel_margin_loss: a target is out of range [-1, {classes})")
    x2, t2 = x.reshape(-1, classes), target.reshape(-1, classes)
    valid = np.cumprod(t2 >= 0, axis=1).astype(bool)
    labels = np.where(valid, t2, 0)
    onehot = (labels[:, :, None] == np.arange(classes)[None, None, :]) & valid[:, :, None]
    return x2, labels, valid, onehot.any(axis=1), onehot


def _mlm_z(x2: np.ndarray, labels: np.ndarray, valid: np.ndarray, is_target: np.ndarray) -> tuple[np.ndarray, ...]:
    """z[n, j, i] = 1 - x[y_j] + x[i] and the mask of counted pairs (label slot j valid, i not a target)."""
    xy = np.take_along_axis(x2, labels, axis=1)
    z = 1.0 - xy[:, :, None] + x2[:, None, :]
    pairs = valid[:, :, None] & ~is_target[:, None, :]
    return z, pairs, xy


def _multilabel_margin_vjp(cotangent, input, target, size_average=None, reduce=None, reduction="mean"):
    """{"input"}: dL/dx[i] = ĝ/C per counted pair with z > 0 (none at z = 0), dL/dx[y_j] = -ĝ/C
    per such pair."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x2, labels, valid, is_target, onehot = _mlm_parts(input, target)
    z, pairs, _ = _mlm_z(x2, labels, valid, is_target)
    active = (pairs & (z > 0)).astype(np.float64)
    ghat = scaled_cotangent(cotangent, input.shape[:-1], reduction).reshape(-1, 1) / x2.shape[1]
    d = np.sum(active, axis=1) - np.einsum("nj,njc->nc", np.sum(active, axis=2), onehot.astype(np.float64))
    return {"input": (d * ghat).reshape(input.shape)}


def _multilabel_margin_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    # k/8 plus 0.01 per class: z = 1 - x[y] + x[i] is a multiple of 1/8 plus ±0.01..0.03, never 0
    x = rng.integers(-16, 17, (5, 4)) / 8 + 0.01 * np.arange(4)
    target = np.array([[1, 3, -1, 0], [2, 2, 0, -1], [0, 1, 2, 3], [-1, 0, 0, 0], [3, -1, 3, 3]])
    return (x, target), {"reduction": "none"}


@functional(vjp=_multilabel_margin_vjp, example=_multilabel_margin_example)
def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """ℓ_n = Σ_j Σ_{i not a label} max(0, 1 - (x[y_j] - x[i])) / C over the labels y_j of the row
    before its first -1 (a repeated label counts again), for input (C) or (N, C) and an int
    target of the same shape, every entry (padding included) in [-1, C) (ValueError otherwise);
    reduced over the samples. No gradient at z = 0 (the kernel tests z > 0)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x2, labels, valid, is_target, _ = _mlm_parts(input, target)
    z, pairs, _ = _mlm_z(x2, labels, valid, is_target)
    losses = np.sum(np.where(pairs & (z > 0), z, 0.0), axis=(1, 2)) / x2.shape[1]
    return apply_reduction(losses.reshape(input.shape[:-1]), reduction)


def multilabel_margin_errors(x: np.ndarray, target: np.ndarray, reduction: str, g: np.ndarray | None, u: float,
                             rnd: Rounding) -> tuple[np.ndarray, np.ndarray | None]:
    """(output error, input-gradient error) in u: each z from two roundings (E_z = |1 - x[y_j]| +
    |z|), the sum of up to C² terms (2·C·Σ), the division by C; gradient elements count ±1/C per
    pair (exact up to ĝ and the division, summed: 2√(C²)), with either side allowed near a kink."""
    x2, labels, valid, is_target, onehot = _mlm_parts(x, target)
    z, pairs, xy = _mlm_z(x2, labels, valid, is_target)
    classes = x2.shape[1]
    active = pairs & (z > 0)
    e_z = np.abs(1.0 - xy)[:, :, None] + np.abs(z)
    near = pairs & near_kink(z, e_z, u, computed_exactly(rnd, (1.0 - xy)[:, :, None], z))
    zp = np.where(active, z, 0.0)
    losses = np.sum(zp, axis=(1, 2)) / classes
    loss_err = (np.sum(np.where(active | near, e_z, 0.0), axis=(1, 2)) + 2 * classes * np.sum(zp, axis=(1, 2))
                ) / classes + np.abs(losses)
    out_err = reduced_error(losses.reshape(x.shape[:-1]), loss_err.reshape(x.shape[:-1]), reduction)
    if g is None:
        return out_err, None
    ghat = np.abs(scaled_cotangent(g, x.shape[:-1], reduction)).reshape(-1, 1) / classes
    ghat_err = 3.0 if reduction == "mean" else 1.0
    onehot_f = onehot.astype(np.float64)
    count = np.sum(active, axis=1) + np.einsum("nj,njc->nc", np.sum(active, axis=2), onehot_f)
    ambiguous = np.sum(near, axis=1) + np.einsum("nj,njc->nc", np.sum(near, axis=2), onehot_f)
    err = ghat * (count * (ghat_err + 2 * classes) + ambiguous / u)
    return out_err, err.reshape(x.shape)


# -- CosineEmbeddingLoss -----------------------------------------------------------------------------

COSINE_EPSILON = float(np.float32(1e-12))  # torch's EPSILON, a single-precision constant


def _cos_parts(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(cos, p = Σ x1·x2, m1 = Σ x1² + ε, m2 = Σ x2² + ε) over the last dim."""
    if x1.shape != x2.shape or x1.ndim not in (1, 2) or y.shape != x1.shape[:-1]:
        raise ValueError(f"cosine_embedding_loss: shapes {x1.shape}, {x2.shape}, {y.shape} do not match")
    p = np.sum(x1 * x2, axis=-1)
    m1 = np.sum(x1 * x1, axis=-1) + COSINE_EPSILON
    m2 = np.sum(x2 * x2, axis=-1) + COSINE_EPSILON
    return p / np.sqrt(m1 * m2), p, m1, m2


def cosine_embedding_terms(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """1 - cos where y = 1, max(0, cos - margin) where y = -1, 0 for any other y; the cosine over
    the last dim with ε = 1e-12 added to each squared norm (a zero vector has cosine 0)."""
    cos = _cos_parts(x1, x2, y)[0]
    return np.where(y == 1, 1 - cos, 0.0) + np.where(y == -1, np.maximum(cos - margin, 0.0), 0.0)


def _cos_grads(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(∂cos/∂x1, ∂cos/∂x2, cos, p, m1, m2): ∂cos/∂x1 = x2/√(m1·m2) - cos·x1/m1 and symmetrically."""
    cos, p, m1, m2 = _cos_parts(x1, x2, y)
    r = (1 / np.sqrt(m1 * m2))[..., None]
    c = cos[..., None]
    return x2 * r - c * x1 / m1[..., None], x1 * r - c * x2 / m2[..., None], cos, p, m1, m2


def _cosine_embedding_vjp(cotangent, input1, input2, target, margin=0, size_average=None, reduce=None,
                          reduction="mean"):
    """{"input1", "input2"}: dL/dx_k = s·∂cos/∂x_k·ĝ with s = -1 where y = 1, 1 where y = -1 and
    cos - margin >= 0 (the target, a ±1 label, gets no gradient)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    y = target
    d1, d2, cos, *_ = _cos_grads(input1, input2, y)
    s = np.where(y == 1, -1.0, 0.0) + np.where((y == -1) & (cos - margin >= 0), 1.0, 0.0)
    ghat = (s * scaled_cotangent(cotangent, y.shape, reduction))[..., None]
    return {"input1": d1 * ghat, "input2": d2 * ghat}


@functional(vjp=_cosine_embedding_vjp,
            example=lambda rng: ((rng.standard_normal((4, 3)), rng.standard_normal((4, 3)),
                                  np.array([1.0, -1.0, 1.0, -1.0])), {"margin": -1.5}))
def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """ℓ = 1 - cos(x1, x2) where y = 1, max(0, cos - margin) where y = -1 (0 for any other y), with
    cos = Σx1·x2/√((Σx1² + ε)(Σx2² + ε)) over the last dim and ε = 1e-12 (torch's EPSILON: a zero
    vector has cosine 0); inputs (N, D) with y (N), or (D) with y (); reduced. The gradient at
    cos = margin (y = -1) passes (clamp_min)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(cosine_embedding_terms(input1, input2, target, margin), reduction)


def cosine_embedding_errors(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, margin: float, reduction: str,
                            g: np.ndarray | None, u: float) -> tuple[np.ndarray, ...]:
    """(output error, dx1 error, dx2 error) in u.

    cos = p/√(m1·m2): the dot product 2√D·Σ|x1·x2| + its final rounding, each squared norm 2√D + 1
    relative (positive terms), the product, the square root and the division: E_cos = (2√D + 2)·
    Σ|x1·x2|/√(m1·m2) + |cos|·(2√D + 6). The loss adds one subtraction. ∂cos/∂x1 = x2·r - cos·x1/m1:
    r carries 2√D + 3; the second term cos·x1/m1 = x1·p·m2/(m1·m2)^(3/2) as reverse mode evaluates it,
    with p, m1·m2, the root, its square and m2 each rounded: 5·E_cos relative to |x1|/m1 (≈ 10√D + 12
    roundings, as the reverse-mode chain p/D², /(2D), ·m2, ·2x1 counts them). Near the clamp
    (|cos - margin| <= u·E_cos) either side: a jump of |∂cos|.
    """
    d1, d2, cos, p, m1, m2 = _cos_grads(x1, x2, y)
    dim = x1.shape[-1]
    root = 2 * math.sqrt(dim)
    r = 1 / np.sqrt(m1 * m2)
    e_cos = (root + 2) * np.sum(np.abs(x1 * x2), axis=-1) * r + np.abs(cos) * (root + 6)
    terms = cosine_embedding_terms(x1, x2, y, margin)
    counted = (y == 1) | ((y == -1) & (cos - margin >= -u * e_cos))
    out_err = reduced_error(terms, np.where(counted, e_cos + np.abs(terms), 0.0), reduction)
    if g is None:
        return out_err, None, None
    ghat = np.abs(scaled_cotangent(g, y.shape, reduction))
    ghat_err = 2.0 if reduction == "mean" else 0.0
    s = (np.where(y == 1, 1.0, 0.0) + np.where((y == -1) & (cos - margin >= 0), 1.0, 0.0)) * ghat
    near = (y == -1) & (np.abs(cos - margin) <= u * e_cos)
    out = [out_err]
    for d, own, other, m_own in ((d1, x1, x2, m1), (d2, x2, x1, m2)):
        e = (np.abs(other) * (r * (root + 4))[..., None]
             + np.abs(own / m_own[..., None]) * (5 * e_cos)[..., None] + np.abs(d))
        own_err = e + np.abs(d) * (ghat_err + 1)
        out.append(s[..., None] * own_err + np.where(near, ghat, 0.0)[..., None] * (np.abs(d) / u + own_err))
    return tuple(out)
