"""torch.nn.utils.clip_grad_norm_: the total p-norm of a set of gradients and their rescaling.

The total norm is the p-norm of all gradient elements taken together (equal to the p-norm of the
per-tensor p-norms): T = (Σ |g|^p)^(1/p), max |g| for p = inf. Every gradient is multiplied by
c = min(max_norm / (T + 1e-6), 1): scaled down when T exceeds max_norm (slightly below it too,
because of the 1e-6), left unchanged otherwise. A NaN anywhere makes T NaN (and c NaN: every
gradient becomes NaN); an infinite element makes T inf and c 0 (finite elements become 0, infinite
ones NaN). No gradient at all gives T = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-6  # torch adds it to the total norm before dividing


def total_norm(grads: Sequence[np.ndarray], norm_type: float) -> float:
    """The p-norm of every element of ``grads`` together (p > 0 or inf), computed with a scaling
    by the largest magnitude so that |g|^p neither overflows nor underflows in float64."""
    flat = np.concatenate([np.abs(np.asarray(g, dtype=np.float64)).reshape(-1) for g in grads]) if grads \
        else np.zeros(0)
    if flat.size == 0:
        return 0.0
    if np.isnan(flat).any():
        return float("nan")
    top = float(flat.max())
    if np.isinf(top) or top == 0.0 or np.isinf(norm_type):
        return top
    return top * float(np.sum((flat / top) ** norm_type)) ** (1.0 / norm_type)


def power_sum(grads: Sequence[np.ndarray], norm_type: float) -> float:
    """Σ |g|^p in float64 (may overflow to inf): the quantity an unscaled implementation forms."""
    if not grads or np.isinf(norm_type):
        return 0.0
    with np.errstate(over="ignore", under="ignore"):
        return float(sum(np.sum(np.abs(np.asarray(g, dtype=np.float64)) ** norm_type) for g in grads))


def clip_coefficient(max_norm: float, total: float) -> float:
    """min(max_norm / (total + 1e-6), 1); NaN stays NaN (torch.clamp propagates it)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        coef = np.float64(max_norm) / (np.float64(total) + EPS)
    return float(coef) if np.isnan(coef) else float(min(coef, 1.0))


def clip(grads: Sequence[np.ndarray], coef: float) -> list[np.ndarray]:
    """Every gradient times the coefficient (IEEE: inf·0 = NaN)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return [np.asarray(g, dtype=np.float64) * coef for g in grads]
