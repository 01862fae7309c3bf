"""Distances: the pairwise p-norm distance of torch.nn.PairwiseDistance.

As torch implements it (not as the documentation's formula reads): d = x1 - x2 + eps (eps added
to every entry of the broadcast difference), and the distance is the p-norm of d over the last
axis of the broadcast shape (``keepdim`` keeps that axis with size 1). So the distance is not
symmetric, and d(x, x) = eps·D^(1/p) for D entries.

The p-"norm" of a vector a = |d|:
- p = 0: the number of non-zero entries; p = inf: max a; p = -inf: min a;
- otherwise (Σ a^p)^(1/p), for negative p too (an entry a = 0 then gives 0).

Gradient convention (torch's ``norm_backward``), with N the norm and s = sign(d):
- p = 0: zero;
- p = ±inf: s·g/m on the m entries with a == N (ties share the gradient equally), 0 elsewhere;
- otherwise s·g·(a/N)^(p-1), which is 0 where d = 0 (the kink of |d|, and where (a/N)^(p-1) is
  infinite for p < 1) and 0 where N = 0 (all of d zero, or a zero entry with p < 0).
The gradient of x2 is minus that of x1; each is summed over the axes it was broadcast along.
"""

from __future__ import annotations

import numpy as np


def difference(x1: np.ndarray, x2: np.ndarray, eps: float) -> np.ndarray:
    """d = x1 - x2 + eps, broadcast."""
    return x1 - x2 + eps


def vector_norm(d: np.ndarray, p: float, keepdim: bool = False, precise: bool = True) -> np.ndarray:
    """The p-norm of ``d`` over its last axis (see the module docstring).

    Finite p ∉ {0, 1}: (Σ a^p)^(1/p), scaled by the largest (p > 0) or smallest (p < 0) |d| where
    the direct sum would leave the range. ``precise``: in extended precision (``np.longdouble``;
    the result is then rounded once to float64, so the reference adds no error of its own where
    that type is wider than float64) — needed when float64 itself is under test, slow otherwise.
    p = 1 is the plain sum (exact on integers)."""
    a = np.abs(d)
    if p == 0:
        out = np.count_nonzero(a, axis=-1, keepdims=True).astype(np.float64)
    elif np.isposinf(p):
        out = a.max(axis=-1, keepdims=True)
    elif np.isneginf(p):
        out = a.min(axis=-1, keepdims=True)
    elif p == 1:
        out = a.sum(axis=-1, keepdims=True)
    else:
        x = a.astype(np.longdouble if precise else np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            total = (x ** p).sum(axis=-1, keepdims=True)
            direct = total ** (1 / x.dtype.type(p))
            tiny = np.finfo(x.dtype).tiny
            has_zero = (x == 0).any(axis=-1, keepdims=True)
            degenerate = has_zero if p < 0 else (x == 0).all(axis=-1, keepdims=True)  # the norm is 0
            safe = (np.isfinite(total) & (total > tiny * 2**64)) | degenerate
            scale = x.max(axis=-1, keepdims=True) if p > 0 else x.min(axis=-1, keepdims=True)
            ratio = np.where(scale > 0, x / np.where(scale > 0, scale, 1), 0)
            powers = np.where(ratio > 0, ratio ** p, 0)
            scaled = scale * powers.sum(axis=-1, keepdims=True) ** (1 / x.dtype.type(p))
            out = np.where(safe, np.where(np.isfinite(direct), direct, 0), scaled).astype(np.float64)
    return out if keepdim else out[..., 0]


def sensitivity(d: np.ndarray, norm: np.ndarray, p: float, precise: bool = True) -> np.ndarray:
    """|∂N/∂d_i| as torch's backward defines it: (a/N)^(p-1) for finite p ≠ 0 (1 for every
    non-zero entry at p = 1), 1/m on the m maximal (minimal) entries for p = inf (-inf), 0 for
    p = 0; 0 where d = 0 or N = 0. ``norm`` has keepdim shape. ``precise`` as above."""
    a = np.abs(d)
    if p == 0:
        return np.zeros_like(a)
    if np.isinf(p):
        mask = a == norm
        return mask / np.maximum(mask.sum(axis=-1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        ratio = ((a.astype(np.longdouble if precise else np.float64) / norm) ** (p - 1)).astype(np.float64)
    return np.where((a > 0) & (norm > 0), ratio, 0.0)


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to ``shape`` (leading axes added by broadcasting, and axes
    of size 1 that were expanded)."""
    extra = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(extra))) if extra else g
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def pairwise_distance(x1: np.ndarray, x2: np.ndarray, p: float, eps: float, keepdim: bool,
                      precise: bool = True) -> np.ndarray:
    """‖x1 - x2 + eps‖_p over the last axis of the broadcast shape."""
    return vector_norm(difference(x1, x2, eps), p, keepdim, precise)


def pairwise_distance_vjp(x1: np.ndarray, x2: np.ndarray, p: float, eps: float, keepdim: bool,
                          g: np.ndarray, precise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx1, dL/dx2) for the output cotangent ``g`` (shape of the output)."""
    d = difference(x1, x2, eps)
    norm = vector_norm(d, p, keepdim=True, precise=precise)
    g = g if keepdim else g[..., None]
    grad_d = np.sign(d) * g * sensitivity(d, norm, p, precise)
    return sum_to_shape(grad_d, x1.shape), -sum_to_shape(grad_d, x2.shape)
