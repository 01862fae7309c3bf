"""Classification losses over class scores: cross entropy and negative log-likelihood, registered
as ``reference.functional.cross_entropy`` and ``nll_loss`` (torch's signatures) with their VJPs.

Scores are (C), (N, C) or (N, C, d1, ..., dK) with classes on axis 0 of an unbatched input and
axis 1 otherwise; class-index targets have the scores' shape without the class axis. The
log-softmax is ``reference.softmax.log_softmax``.
"""

from __future__ import annotations

import numpy as np

from reference.loss import apply_reduction, legacy_reduction, reduced_error, scaled_cotangent
from reference.registry import functional
from reference.softmax import log_softmax


def class_axis(ndim: int) -> int:
    """Classes are axis 0 of an unbatched (C,) input, else axis 1 of (N, C, d1, ..., dK)."""
    return 0 if ndim == 1 else 1


def _class_vector(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A (C,) vector shaped to broadcast along the class axis of ``x``."""
    shape = [1] * x.ndim
    shape[class_axis(x.ndim)] = -1
    return v.reshape(shape)


def _check_probability_target(x: np.ndarray, t: np.ndarray, ignore_index: int) -> None:
    if t.shape != x.shape:
        raise ValueError(f"cross_entropy: probability target shape {t.shape} != input shape {x.shape}")
    if ignore_index >= 0:
        # ignore_index applies to class indices only; torch rejects a value that could be a class.
        raise ValueError("cross_entropy: a non-negative ignore_index with probability targets")


def _check_index_target(x: np.ndarray, t: np.ndarray, ignore_index: int) -> np.ndarray:
    """The mask of counted (not ignored) positions; raises for shapes or classes out of range."""
    ax = class_axis(x.ndim)
    expected = x.shape[:ax] + x.shape[ax + 1:]
    if t.shape != expected:
        raise ValueError(f"cross_entropy: index target shape {t.shape} != {expected}")
    counted = t != ignore_index
    bad = counted & ((t < 0) | (t >= x.shape[ax]))
    if bad.any():
        raise ValueError(f"cross_entropy: target class {int(t[bad].flat[0])} out of range [0, {x.shape[ax]})")
    return counted


def smoothed_class_weights(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
                           ignore_index: int, label_smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """(q, normaliser): the loss per position is l = -sum_c q_c·log softmax(x)_c.

    The targets become the mixture (1 - ε)·target + ε/C (a one-hot vector for class indices),
    scaled per class by the weight w_c (1 when None): q = w·((1 - ε)·target + ε/C). Ignored
    index positions get q = 0. The 'mean' normaliser is sum of w[target] over the counted
    positions for class indices, the number of positions for probabilities.
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    ax = class_axis(x.ndim)
    n_classes = x.shape[ax]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    if w.shape != (n_classes,):
        raise ValueError(f"cross_entropy: weight shape {w.shape} != ({n_classes},)")
    if target.dtype.kind in "iu":
        counted = _check_index_target(x, target, ignore_index)
        safe = np.where(counted, target, 0)
        one_hot = np.moveaxis(np.eye(n_classes)[safe], -1, ax)
        mask = np.expand_dims(counted, ax).astype(np.float64)
        q = _class_vector(w, x) * ((1.0 - label_smoothing) * one_hot + label_smoothing / n_classes) * mask
        return q, float(np.sum(w[safe] * counted))
    _check_probability_target(x, target, ignore_index)
    q = _class_vector(w, x) * ((1.0 - label_smoothing) * target + label_smoothing / n_classes)
    return q, float(x.size // n_classes)


def _cross_entropy_vjp(cotangent, input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                       reduction="mean", label_smoothing=0.0):
    """{"input"(, "target")}: with ĝ the cotangent per position (g, or g/normaliser for 'mean'),
    dL/dx = ĝ·(softmax(x)·Σ_c q_c - q), 0 at positions without target weight (q = 0: an ignored
    index, even when every target is ignored); for probability targets also
    dL/dtarget_c = -ĝ·(1 - ε)·w_c·log softmax(x)_c. A 'mean' over class indices whose normaliser
    Σ w[target] is 0 while some position counts has no defined gradient: NaN at counted positions."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x, g = input, cotangent
    q, normaliser = smoothed_class_weights(x, target, weight, ignore_index, label_smoothing)
    ax = class_axis(x.ndim)
    logp = log_softmax(x, ax)
    total = np.sum(q, axis=ax, keepdims=True)
    weighted = np.any(q != 0, axis=ax, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            g_pos = np.expand_dims(g, ax)
        else:
            g_pos = g / normaliser if reduction == "mean" else g
        grad_x = np.where(weighted, g_pos * (np.exp(logp) * total - q), 0.0)
    indices = target.dtype.kind in "iu"
    if indices and reduction == "mean" and normaliser == 0:
        counted = np.expand_dims(target != ignore_index, ax)
        grad_x = np.where(counted, np.nan, 0.0) * np.ones_like(x)
    if indices:
        return {"input": grad_x}
    n_classes = x.shape[ax]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    grad_t = -g_pos * (1.0 - label_smoothing) * _class_vector(w, x) * logp
    return {"input": grad_x, "target": grad_t}


def _cross_entropy_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    x = rng.standard_normal((3, 4, 2))
    return (x, rng.random((3, 4, 2))), {"weight": rng.uniform(0.5, 2.0, 4), "label_smoothing": 0.2}


@functional(vjp=_cross_entropy_vjp, example=_cross_entropy_example)
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Cross entropy of logits ``input`` ((C), (N, C) or (N, C, d1, ..., dK)) against class
    indices (int, the input's shape without the class axis) or class probabilities (float, the
    input's shape).

    l = -Σ_c q_c·log softmax(x)_c per position with q = w·((1 - ε)·target + ε/C) (a one-hot
    target for class indices, q = 0 at positions whose index is ``ignore_index``; see
    ``smoothed_class_weights``). 'mean' divides the sum by Σ w[target] over the counted positions
    (class indices; 0/0 = NaN when every target is ignored) or by the number of positions
    (probabilities). Weights may be zero or negative. label_smoothing ε must lie in [0, 1].
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    q, normaliser = smoothed_class_weights(input, target, weight, ignore_index, label_smoothing)
    ax = class_axis(input.ndim)
    losses = -np.sum(q * log_softmax(input, ax), axis=ax)
    return apply_reduction(losses, reduction, normaliser)


# -- negative log-likelihood ------------------------------------------------------------------------

def nll_counted(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
                ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(counted mask, w[target] with 0 at ignored positions), checking shapes and classes.

    Raises ValueError for shapes, IndexError for a counted class outside [0, C) (torch's check;
    on CUDA the same case is a device-side assert).
    """
    if x.ndim < 1:
        raise ValueError("nll_loss: the input needs a class dimension")
    ax = class_axis(x.ndim)
    classes = x.shape[ax]
    expected = x.shape[:ax] + x.shape[ax + 1:]
    if target.shape != expected:
        raise ValueError(f"nll_loss: target shape {target.shape} != {expected}")
    w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
    if w.shape != (classes,):
        raise ValueError(f"nll_loss: weight shape {w.shape} != ({classes},)")
    counted = target != ignore_index
    bad = counted & ((target < 0) | (target >= classes))
    if bad.any():
        raise IndexError(f"nll_loss: target {int(target[bad].flat[0])} is out of bounds [0, {classes})")
    safe = np.where(counted, target, 0)
    return counted, np.where(counted, w[safe], 0.0)


def _picked(x: np.ndarray, target: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """x at the target class of every position (0 where not counted)."""
    ax = class_axis(x.ndim)
    safe = np.expand_dims(np.where(counted, target, 0), ax)
    return np.where(counted, np.take_along_axis(x, safe, axis=ax).squeeze(ax), 0.0)


def _nll_loss_vjp(cotangent, input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean"):
    """{"input"}: -w[t]·ĝ at the target class of every counted position, 0 elsewhere."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    x = input
    counted, wt = nll_counted(x, target, weight, ignore_index)
    ax = class_axis(x.ndim)
    ghat = scaled_cotangent(cotangent, wt.shape, reduction, float(np.sum(wt)))
    with np.errstate(invalid="ignore"):
        per_position = np.where(counted, -wt * ghat, 0.0)
    classes = np.arange(x.shape[ax]).reshape([-1 if i == ax else 1 for i in range(x.ndim)])
    hit = np.expand_dims(np.where(counted, target, -1), ax) == classes
    return {"input": np.where(hit, np.expand_dims(per_position, ax), 0.0)}


def _nll_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    target = np.array([[0, 2], [1, 3], [3, 3]])
    return (rng.standard_normal((3, 4, 2)), target), {"weight": rng.uniform(0.5, 2.0, 4), "ignore_index": 1}


@functional(vjp=_nll_loss_vjp, example=_nll_example)
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of scores ``input`` ((C), (N, C) or (N, C, d1, ..., dK)) at class
    indices ``target`` (the input's shape without the class axis): ℓ = -w[t]·x[t] per position, 0
    where t = ignore_index (any value: a class, negative, or above the classes); 'mean' divides
    the sum by Σ w[t] over the counted positions (0/0 = NaN when none counts). Weights may be zero
    or negative. A counted target outside [0, C) raises IndexError; shapes ValueError."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    counted, wt = nll_counted(input, target, weight, ignore_index)
    terms = -wt * _picked(input, target, counted)
    return apply_reduction(terms, reduction, float(np.sum(wt)))


def nll_errors(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str,
               ignore_index: int = -100) -> tuple[np.ndarray, float]:
    """(output error in u, relative error of the 'mean' normaliser W = Σ w[t]).

    Each term -w[t]·x[t] is one product (u·|ℓ|); W is a sum of M weights: 2√M·Σ|w[t]|/|W|.
    """
    counted, wt = nll_counted(x, target, weight, ignore_index)
    terms = -wt * _picked(x, target, counted)
    total = float(np.sum(wt))
    with np.errstate(divide="ignore", invalid="ignore"):
        count_err = 2 * np.sqrt(max(wt.size, 1)) * float(np.sum(np.abs(wt))) / abs(total) if total else 0.0
    return reduced_error(terms, np.abs(terms), reduction, total, count_err), float(count_err)
