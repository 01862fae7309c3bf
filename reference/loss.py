"""Loss functions: mean squared error and cross entropy, forward and VJP."""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("mean", "none", "sum")


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str = "mean") -> str:
    """The reduction a loss uses given the deprecated ``size_average`` / ``reduce`` flags.

    When either flag is given it overrides ``reduction``: reduce=False → 'none'; otherwise
    size_average=False → 'sum'; otherwise 'mean' (a flag left None counts as True).
    """
    if size_average is None and reduce is None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"{reduction!r} is not a valid value for reduction")
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def _reduce(values: np.ndarray, reduction: str, count: float | None = None) -> np.ndarray:
    if reduction == "none":
        return values
    total = np.sum(values)
    if reduction == "sum":
        return np.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 = NaN when every target is ignored
        return np.asarray(total / (values.size if count is None else count))


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back onto an operand of ``shape``."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


# -- mean squared error -----------------------------------------------------------------------

def mse_loss(x: np.ndarray, t: np.ndarray, reduction: str) -> np.ndarray:
    """(x - t)² elementwise over the broadcast shape of x and t, then reduced ('none', 'sum', or
    'mean' over every element of the broadcast shape)."""
    try:
        d = np.subtract(x, t)
    except ValueError as exc:
        raise ValueError(f"mse_loss: shapes {x.shape} and {t.shape} do not broadcast") from exc
    return _reduce(d * d, reduction)


def mse_loss_vjp(x: np.ndarray, t: np.ndarray, g: np.ndarray, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dt): ±2·(x - t)·ĝ with ĝ = g ('none', 'sum') or g/numel ('mean'), summed back
    over the dims each operand was broadcast along."""
    d = np.subtract(x, t)
    scale = g / d.size if reduction == "mean" else g
    grad = 2.0 * d * scale
    return sum_to_shape(grad, x.shape), sum_to_shape(-grad, t.shape)


# -- cross entropy ----------------------------------------------------------------------------

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
