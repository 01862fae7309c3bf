"""Linear (affine) layers: y = x·Wᵀ + b over the last dimension of an input of any rank."""

from __future__ import annotations

import numpy as np


def _check_features(x: np.ndarray, weight: np.ndarray) -> None:
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not end in in_features={weight.shape[1]}")


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y[..., o] = sum_i x[..., i]·W[o, i] + b[o].

    Shapes: x (*, in_features) with any number of leading dims (none: a 1-d input), W
    (out_features, in_features), b (out_features,) or None; y (*, out_features).
    """
    _check_features(x, weight)
    y = x @ weight.T
    return y if bias is None else y + bias


def linear_vjp(
    x: np.ndarray, weight: np.ndarray, g: np.ndarray, with_bias: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dL/dx, dL/dW, dL/db) for the output cotangent ``g`` of shape (*, out_features).

    dL/dx = g·W; dL/dW = sum over the leading dims of gᵀ·x; dL/db = sum over the leading dims of g.
    """
    _check_features(x, weight)
    g_rows = g.reshape(-1, weight.shape[0])
    x_rows = x.reshape(-1, weight.shape[1])
    grad_x = g @ weight
    grad_w = g_rows.T @ x_rows
    grad_b = g_rows.sum(axis=0) if with_bias else None
    return grad_x, grad_w, grad_b
