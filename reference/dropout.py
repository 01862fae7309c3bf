"""Dropout, given its random choices: the conditional reference of a stochastic layer.

In training mode with 0 < p < 1 a dropout layer keeps each *unit* with probability 1 − p and
scales what it keeps by 1/(1 − p). A unit is an element (Dropout) or a whole channel (Dropout2d,
Dropout3d: the first two dims of a batched input). The reference does not draw: it is given the
keep mask the backend chose and computes the exact output and gradient for it. Its deterministic
points are exact too: p = 0 and eval mode are the identity; p = 1 multiplies by 0 (so ±inf and
NaN inputs give NaN, negative inputs −0, as IEEE multiplication does; torch computes input · 0).
"""

from __future__ import annotations

import numpy as np


def unit_shape(shape: tuple[int, ...], unit_dims: int) -> tuple[int, ...]:
    """Shape of the mask's independent units: ``shape`` itself for element dropout
    (``unit_dims`` = len(shape)), else its first ``unit_dims`` dims followed by ones."""
    return tuple(shape[:unit_dims]) + (1,) * (len(shape) - unit_dims)


def canonical_mask(mask: np.ndarray, unit_dims: int) -> np.ndarray:
    """The mask a conforming channel dropout can have given ``mask``: a unit is kept only if all
    of its elements are (so a mask that is not constant over a unit differs from its canonical
    form). Same shape as ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    axes = tuple(range(unit_dims, mask.ndim))
    if not axes or mask.size == 0:
        return mask.copy()
    return np.broadcast_to(mask.all(axis=axes, keepdims=True), mask.shape).copy()


def dropout(x: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """y = x / (1 − p) where kept, 0 where dropped (0 < p < 1); any shape."""
    with np.errstate(over="ignore"):
        return np.where(keep, x / (1.0 - p), 0.0)


def dropout_vjp(g: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """dL/dx = g / (1 − p) where kept, 0 where dropped: the forward's mask and scale."""
    with np.errstate(over="ignore"):
        return np.where(keep, g / (1.0 - p), 0.0)


def drop_all(x: np.ndarray) -> np.ndarray:
    """p = 1: x · 0 (0 with the sign of x; NaN for ±inf and NaN inputs)."""
    with np.errstate(invalid="ignore"):
        return x * 0.0
