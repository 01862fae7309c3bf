"""Classification losses over class scores: cross entropy and negative log-likelihood.

Scores are (C), (N, C) or (N, C, d1, ..., dK) with classes on axis 0 of an unbatched input and
axis 1 otherwise; class-index targets have the scores' shape without the class axis.
"""

from __future__ import annotations

import numpy as np

from reference.loss import reduce as _reduce
from reference.loss import reduced_error, scaled_cotangent


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """log(softmax(x)) = (x - max) - log(sum(exp(x - max))) along ``axis``."""
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


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


def cross_entropy(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str,
                  ignore_index: int = -100, label_smoothing: float = 0.0) -> np.ndarray:
    """Cross entropy of logits ``x`` ((C), (N, C) or (N, C, d1, ..., dK)) against class indices
    (int, shape of x without the class axis) or class probabilities (float, shape of x).

    l = -sum_c q_c·log softmax(x)_c per position (see ``smoothed_class_weights``); 'mean' divides
    the sum by the normaliser (0/0 = NaN when every index target is ignored).
    """
    q, normaliser = smoothed_class_weights(x, target, weight, ignore_index, label_smoothing)
    ax = class_axis(x.ndim)
    losses = -np.sum(q * log_softmax(x, ax), axis=ax)
    return _reduce(losses, reduction, normaliser)


def cross_entropy_vjp(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str,
                      g: np.ndarray, ignore_index: int = -100,
                      label_smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """(dL/dx, dL/dtarget): with ĝ the cotangent per position (g, or g/normaliser for 'mean'),
    dL/dx = ĝ·(softmax(x)·sum_c q_c - q) (0 at ignored positions) and, for probability targets,
    dL/dtarget_c = -ĝ·(1 - ε)·w_c·log softmax(x)_c (None for class indices)."""
    q, normaliser = smoothed_class_weights(x, target, weight, ignore_index, label_smoothing)
    ax = class_axis(x.ndim)
    logp = log_softmax(x, ax)
    total = np.sum(q, axis=ax, keepdims=True)
    # A position without target weight (an ignored index) does not contribute, even when the
    # 'mean' normaliser is 0 (all ignored: the loss is 0/0 = NaN, its gradient 0).
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            g_pos = np.expand_dims(g, ax)
        else:
            g_pos = g / normaliser if reduction == "mean" else g
        grad_x = np.where(total != 0, g_pos * (np.exp(logp) * total - q), 0.0)
    if target.dtype.kind in "iu":
        return grad_x, None
    n_classes = x.shape[ax]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    grad_t = -g_pos * (1.0 - label_smoothing) * _class_vector(w, x) * logp
    return grad_x, grad_t


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


def nll_loss(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str,
             ignore_index: int = -100) -> np.ndarray:
    """ℓ = -w[t]·x[t] per position (0 where t = ignore_index); 'mean' divides the sum by Σ w[t]
    over the counted positions (0/0 = NaN when none counts)."""
    counted, wt = nll_counted(x, target, weight, ignore_index)
    terms = -wt * _picked(x, target, counted)
    return _reduce(terms, reduction, float(np.sum(wt)))


def nll_loss_vjp(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str, g: np.ndarray,
                 ignore_index: int = -100) -> np.ndarray:
    """dL/dx: -w[t]·ĝ at the target class of every counted position, 0 elsewhere."""
    counted, wt = nll_counted(x, target, weight, ignore_index)
    ax = class_axis(x.ndim)
    ghat = scaled_cotangent(g, wt.shape, reduction, float(np.sum(wt)))
    with np.errstate(invalid="ignore"):
        per_position = np.where(counted, -wt * ghat, 0.0)
    classes = np.arange(x.shape[ax]).reshape([-1 if i == ax else 1 for i in range(x.ndim)])
    hit = np.expand_dims(np.where(counted, target, -1), ax) == classes
    return np.where(hit, np.expand_dims(per_position, ax), 0.0)


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
