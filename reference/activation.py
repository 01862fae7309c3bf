"""Elementwise activations and the softmax family.

Gradient conventions at kinks follow PyTorch's documented/implemented choice and are stated per
function (e.g. ReLU'(0) = 0).
"""

from __future__ import annotations

import numpy as np


def relu(x: np.ndarray) -> np.ndarray:
    """y = max(x, 0), elementwise; any shape. NaN propagates."""
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))


def relu_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g·[x > 0]; the derivative at the kink x = 0 is taken as 0."""
    return np.where(x > 0, g, 0.0)


def softmax_implicit_dim(ndim: int) -> int:
    """The dimension ``torch.nn.Softmax(dim=None)`` picks (deprecated): 0 for 0-, 1- and 3-d
    inputs, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


def softmax_axis(ndim: int, dim: int | None) -> int:
    """Normalise ``dim`` (negative, or None for the implicit choice) to a NumPy axis."""
    if dim is None:
        dim = softmax_implicit_dim(ndim)
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise ValueError(f"softmax dim {dim} out of range for a {ndim}-d input")
    return dim % rank


def softmax(x: np.ndarray, dim: int | None) -> np.ndarray:
    """y = exp(x - max) / sum(exp(x - max)) along ``dim``; same shape as ``x`` (0-d allowed).

    Subtracting the maximum keeps exp from overflowing. Entries of -inf get 0; a slice whose
    entries are all -inf (or that holds +inf) has no defined maximum shift and gives NaN, as
    IEEE arithmetic does (-inf - -inf).
    """
    axis = softmax_axis(x.ndim, dim)
    x1 = np.atleast_1d(x)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x1 - np.max(x1, axis=axis, keepdims=True))
        y = e / np.sum(e, axis=axis, keepdims=True)
    return y.reshape(x.shape)


def softmax_vjp(y: np.ndarray, g: np.ndarray, dim: int | None) -> np.ndarray:
    """dL/dx = y·(g - sum(y·g)) along ``dim``, from the softmax output ``y``."""
    axis = softmax_axis(y.ndim, dim)
    y1, g1 = np.atleast_1d(y), np.atleast_1d(g)
    return (y1 * (g1 - np.sum(y1 * g1, axis=axis, keepdims=True))).reshape(y.shape)
