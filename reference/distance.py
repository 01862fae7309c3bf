"""Distances: the pairwise p-norm distance of torch.nn.PairwiseDistance and the cosine similarity
of torch.nn.CosineSimilarity (at the end of this module).

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

from reference.registry import functional


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


def _pairwise_distance_vjp(cotangent: np.ndarray, x1: np.ndarray, x2: np.ndarray, p: float = 2.0,
                           eps: float = 1e-6, keepdim: bool = False, precise: bool = True) -> dict[str, np.ndarray]:
    """x1: sign(d)·g·(|d|/N)^(p-1) (the module docstring's convention), summed over broadcast axes;
    x2: minus that, summed over its own broadcast axes."""
    g1, g2 = pairwise_distance_vjp(x1, x2, p, eps, keepdim, np.asarray(cotangent, dtype=np.float64), precise)
    return {"x1": g1, "x2": g2}


def _pairwise_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((3, 4)), rng.standard_normal(4)), {"p": 3.0, "eps": 1e-3, "keepdim": True}


@functional(vjp=_pairwise_distance_vjp, example=_pairwise_example)
def pairwise_distance(x1: np.ndarray, x2: np.ndarray, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False,
                      precise: bool = True) -> np.ndarray:
    """‖x1 - x2 + eps‖_p over the last axis of the broadcast shape (*, D): shape (*) (or (*, 1)
    with keepdim). p = 0 counts non-zero entries, ±inf takes max/min |d| (module docstring)."""
    np.broadcast_shapes(np.shape(x1), np.shape(x2))  # ValueError when the shapes do not broadcast
    return vector_norm(difference(x1, x2, eps), p, keepdim, precise)


def pairwise_distance_vjp(x1: np.ndarray, x2: np.ndarray, p: float, eps: float, keepdim: bool,
                          g: np.ndarray, precise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx1, dL/dx2) for the output cotangent ``g`` (shape of the output)."""
    d = difference(x1, x2, eps)
    norm = vector_norm(d, p, keepdim=True, precise=precise)
    g = g if keepdim else g[..., None]
    grad_d = np.sign(d) * g * sensitivity(d, norm, p, precise)
    return sum_to_shape(grad_d, x1.shape), -sum_to_shape(grad_d, x2.shape)


# -- cosine similarity ----------------------------------------------------------------------------------


def _cosine_parts(x1: np.ndarray, x2: np.ndarray, dim: int, eps: float) -> tuple[np.ndarray, ...]:
    """(a1, a2, n1, n2, c1, c2, axis) on the broadcast shape: n = ‖x‖₂ over ``dim`` (kept),
    c = max(n, eps), a = x/c."""
    x1, x2 = np.broadcast_arrays(np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64))
    ndim = max(x1.ndim, 1)
    if not -ndim <= dim < ndim:
        raise IndexError(f"cosine_similarity: dim {dim} out of range for {x1.ndim}-d inputs")
    axis = dim % ndim
    x1, x2 = np.atleast_1d(x1), np.atleast_1d(x2)
    n1 = np.sqrt(np.sum(x1 * x1, axis=axis, keepdims=True))
    n2 = np.sqrt(np.sum(x2 * x2, axis=axis, keepdims=True))
    c1, c2 = np.maximum(n1, eps), np.maximum(n2, eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x1 / c1, x2 / c2, n1, n2, c1, c2, axis


def _cosine_similarity_vjp(cotangent: np.ndarray, x1: np.ndarray, x2: np.ndarray, dim: int = 1,
                           eps: float = 1e-8) -> dict[str, np.ndarray]:
    """The derivative of the forward as defined: with a = x/c and y = Σ a1·a2, where ‖x1‖ >= eps
    dL/dx1 = g·(a2 − y·x1/‖x1‖)/‖x1‖, and where ‖x1‖ < eps (c1 = eps, a constant) dL/dx1 = g·a2/eps;
    the same for x2; each summed over the axes it was broadcast along. NaN where the forward is
    (eps = 0 and a zero vector)."""
    a1, a2, n1, n2, c1, c2, axis = _cosine_parts(x1, x2, dim, eps)
    g = np.expand_dims(np.asarray(cotangent, dtype=np.float64), axis) if a1.ndim > np.ndim(cotangent) else cotangent
    y = np.sum(a1 * a2, axis=axis, keepdims=True)
    b1, b2 = np.broadcast_arrays(np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64))
    b1, b2 = np.atleast_1d(b1), np.atleast_1d(b2)
    with np.errstate(invalid="ignore", divide="ignore"):
        d1 = np.where((n1 >= eps) & (n1 > 0), (a2 - y * b1 / np.where(n1 > 0, n1, 1.0)) / c1, a2 / c1)
        d2 = np.where((n2 >= eps) & (n2 > 0), (a1 - y * b2 / np.where(n2 > 0, n2, 1.0)) / c2, a1 / c2)
    shape = np.broadcast_shapes(np.shape(x1), np.shape(x2))
    g1, g2 = (g * d1).reshape(shape), (g * d2).reshape(shape)
    return {"x1": sum_to_shape(g1, np.shape(x1)), "x2": sum_to_shape(g2, np.shape(x2))}


def _cosine_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 4, 3)), rng.standard_normal((4, 1))), {"dim": 1, "eps": 1e-8}


@functional(vjp=_cosine_similarity_vjp, example=_cosine_example)
def cosine_similarity(x1: np.ndarray, x2: np.ndarray, dim: int = 1, eps: float = 1e-8) -> np.ndarray:
    """Σ (x1/max(‖x1‖₂, eps))·(x2/max(‖x2‖₂, eps)) over ``dim`` of the broadcast shape, which is
    removed (torch's implementation, and F.cosine_similarity's documentation; nn.CosineSimilarity's
    docstring still shows the older x1·x2/max(‖x1‖₂·‖x2‖₂, eps)). A zero vector gives 0 (eps > 0);
    eps = 0 and a zero vector give NaN (0/0)."""
    a1, a2, *_, axis = _cosine_parts(x1, x2, dim, eps)
    out = np.sum(a1 * a2, axis=axis)
    return out.reshape(()) if np.ndim(x1) == 0 and np.ndim(x2) == 0 else out
