"""softmax, softmin and log_softmax along one dimension, and softmax2d (Softmax2d's functional form:
softmax over the channel dim -3), their VJPs and error analyses, registered under their
``torch.nn.functional`` names.

Shapes: any input (0-d allowed, treated as one slice of length 1); the output has the input's
shape. ``dim`` may be negative, or None for the deprecated implicit choice.

Non-finite entries follow IEEE arithmetic after the max shift: -inf entries get probability 0
(log-probability -inf); a slice whose entries are all -inf, or that holds +inf or NaN, has no
defined shift (-inf - -inf, inf - inf) and is NaN throughout. Softmin(x) = Softmax(-x), so for it
the roles of +inf and -inf swap.

Error analyses (``*_error(input, output, cotangent, u, tiny, **parameters)``, the family's one
signature, see ``reference.activation``) return per-element bounds in units of u over the K
entries of a slice (K the slice length), final rounding excluded.
"""

from __future__ import annotations

import math

import numpy as np

from reference.libm import LIBM_ULPS
from reference.registry import functional

Array = np.ndarray


def _example(**params):
    """A registry example: a 3×4 input of normals times 3."""
    return lambda rng: ((rng.standard_normal((3, 4)) * 3,), dict(params))


def softmax_implicit_dim(ndim: int) -> int:
    """The dimension ``torch.nn.Softmax(dim=None)`` picks (deprecated): 0 for 0-, 1- and 3-d
    inputs, else 1 (the same for Softmin and LogSoftmax)."""
    return 0 if ndim in (0, 1, 3) else 1


def softmax_axis(ndim: int, dim: int | None) -> int:
    """Normalise ``dim`` (negative, or None for the implicit choice) to a NumPy axis."""
    if dim is None:
        dim = softmax_implicit_dim(ndim)
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise ValueError(f"softmax dim {dim} out of range for a {ndim}-d input")
    return dim % rank


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    """z = x - max along ``axis`` (of the input made at least 1-d; an empty input stays empty)."""
    x1 = np.atleast_1d(x)
    if x1.size == 0:
        return x1.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return x1 - np.max(x1, axis=axis, keepdims=True)


def _softmax_vjp(cotangent: Array, input: Array, dim: int | None = None) -> dict[str, Array]:
    """{"input": y·(g - Σ y·g)} along ``dim``, y = softmax(x)."""
    return {"input": softmax_vjp(softmax(input, dim), cotangent, dim)}


@functional(vjp=_softmax_vjp, example=_example(dim=-1))
def softmax(input: Array, dim: int | None = None) -> Array:
    """y = exp(x - max) / sum(exp(x - max)) along ``dim``; same shape as ``x`` (0-d allowed).

    Subtracting the maximum keeps exp from overflowing. Entries of -inf get 0; a slice whose
    entries are all -inf (or that holds +inf) has no defined maximum shift and gives NaN, as
    IEEE arithmetic does (-inf - -inf).
    """
    x = input
    axis = softmax_axis(x.ndim, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(_shifted(x, axis))
        y = e / np.sum(e, axis=axis, keepdims=True)
    return y.reshape(x.shape)


def softmax_vjp(y: np.ndarray, g: np.ndarray, dim: int | None) -> np.ndarray:
    """dL/dx = y·(g - sum(y·g)) along ``dim``, from the softmax output ``y`` (the VJP's formula;
    also softmin's, negated)."""
    axis = softmax_axis(y.ndim, dim)
    y1, g1 = np.atleast_1d(y), np.atleast_1d(g)
    return (y1 * (g1 - np.sum(y1 * g1, axis=axis, keepdims=True))).reshape(y.shape)


def _softmin_vjp(cotangent: Array, input: Array, dim: int | None = None) -> dict[str, Array]:
    """{"input": -y·(g - Σ y·g)} along ``dim``, y = softmin(x)."""
    return {"input": -softmax_vjp(softmin(input, dim), cotangent, dim)}


@functional(vjp=_softmin_vjp, example=_example(dim=0))
def softmin(input: Array, dim: int | None = None) -> Array:
    """y = softmax(-x) along ``dim``: +inf entries get 0; same shape as ``x``."""
    return softmax(-input, dim)


def _softmax2d_check(x: Array) -> None:
    if x.ndim not in (3, 4):
        raise ValueError(f"Softmax2d: expected input to be 3D or 4D, got {x.ndim}D instead")


def _softmax2d_vjp(cotangent: Array, input: Array) -> dict[str, Array]:
    """{"input": y·(g - Σ y·g)} along dim -3."""
    _softmax2d_check(input)
    return _softmax_vjp(cotangent, input, -3)


@functional(vjp=_softmax2d_vjp, example=lambda rng: ((rng.standard_normal((2, 3, 2, 2)) * 3,), {}))
def softmax2d(input: Array) -> Array:
    """torch.nn.Softmax2d's functional form: softmax over the channels, dim -3, of a (C, H, W) or
    (N, C, H, W) input; any other rank raises."""
    _softmax2d_check(input)
    return softmax(input, -3)


def _log_softmax_vjp(cotangent: Array, input: Array, dim: int | None = None) -> dict[str, Array]:
    """{"input": g - exp(y)·Σg} along ``dim``, y = log_softmax(x)."""
    return {"input": log_softmax_vjp(log_softmax(input, dim), cotangent, dim)}


@functional(vjp=_log_softmax_vjp, example=_example(dim=1))
def log_softmax(input: Array, dim: int | None = None) -> Array:
    """y = (x - max) - log(sum(exp(x - max))) along ``dim``: never overflows; -inf entries give
    -inf; slices without a defined shift give NaN. The one log_softmax of the reference (losses
    import it)."""
    x = input
    axis = softmax_axis(x.ndim, dim)
    z = _shifted(x, axis)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        y = z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
    return y.reshape(x.shape)


def log_softmax_vjp(y: np.ndarray, g: np.ndarray, dim: int | None) -> np.ndarray:
    """dL/dx = g - exp(y)·sum(g) along ``dim``, from the log-softmax output ``y``."""
    axis = softmax_axis(y.ndim, dim)
    y1, g1 = np.atleast_1d(y), np.atleast_1d(g)
    with np.errstate(invalid="ignore"):
        return (g1 - np.exp(y1) * np.sum(g1, axis=axis, keepdims=True)).reshape(y.shape)


def softmax_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
                  dim: int | None = None) -> tuple[Array, Array | None]:
    """First-order error bounds of softmax and its VJP, in units of u, over the K entries of a slice.

    With z = x - max (|z| = |x - max|), the rounding of z perturbs exp(z) by u·|z| relatively, exp
    and the division add 2u, the sum of the K exponentials √K-probabilistically 2√K·u plus the
    propagated errors of its terms, Σ y·|z| (≤ log K), so

        |δy| ≤ u·E_y,  E_y = y·(|z| + Σ y·|z| + 2√K + 3)   (+ u·|y| for the final rounding).

    The backward y·(g - S), S = Σ y·g, uses the computed y (error F = E_y + y): with the rounding of
    the sum (2√K·Σ|y·g|), the subtraction and the product (2·y·(|g| + |S|)),

        E_grad = F·(|g| + |S|) + y·(Σ F·|g| + 2√K·Σ|y·g|) + 2y·(|g| + |S|) + (tiny/u)·(|g| + |S| + y·Σ|g|),

    the last term being subnormal spacing in y. Entries with y = 0 (x = -inf) get no error term.
    Softmin is this analysis applied to -x (``softmin_error``).
    """
    x, y, g, tiny_over_u = input, output, cotangent, tiny / u
    axis = softmax_axis(x.ndim, dim)
    shape = x.shape
    x1, y1 = np.atleast_1d(x), np.atleast_1d(y)
    root_k = math.sqrt(x1.shape[axis])
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.abs(_shifted(x, axis))
        yz = np.where(y1 > 0, y1 * z, 0.0)
        err_y = np.where(y1 > 0, y1 * (z + np.sum(yz, axis=axis, keepdims=True) + 2 * root_k + 3), 0.0)
        if g is None:
            return err_y.reshape(shape), None
        ag = np.abs(np.atleast_1d(g))
        f = err_y + y1
        s_abs = np.sum(y1 * ag, axis=axis, keepdims=True)
        err_g = (f * (ag + s_abs) + y1 * (np.sum(f * ag, axis=axis, keepdims=True) + 2 * root_k * s_abs)
                 + 2 * y1 * (ag + s_abs)
                 + tiny_over_u * (ag + s_abs + y1 * np.sum(ag, axis=axis, keepdims=True)))
    return err_y.reshape(shape), err_g.reshape(shape)


def softmin_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
                  dim: int | None = None) -> tuple[Array, Array | None]:
    """Softmin's bounds: ``softmax_error`` on -x."""
    return softmax_error(-input, output, cotangent, u, tiny, dim)


def softmax2d_error(input: Array, output: Array, cotangent: Array | None, u: float,
                    tiny: float) -> tuple[Array, Array | None]:
    """Softmax2d's bounds: ``softmax_error`` along dim -3."""
    return softmax_error(input, output, cotangent, u, tiny, -3)


def log_softmax_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
                      dim: int | None = None) -> tuple[Array, Array | None]:
    """First-order error bounds of log-softmax and its VJP, in units of u, over a slice of K entries.

    With m = max, z = x - m, p = softmax(x), S = Σ exp(z) ≥ 1 and ℓ = log S: the rounding of z
    perturbs exp(z) by u·|z| relatively, exp adds L·u, the sum 2√K·u, so δS/S ≤ u·(Σ p·(|z| + L)
    + 2√K) and log adds L·u·ℓ. The result is formed either as z - ℓ (rounding of z: u·|z|) or as
    x - (m + ℓ) (rounding of m + ℓ: u·|m + ℓ|); a backend may do either:

        E_y = |z| + |m + ℓ| + Σ p·(|z| + L) + 2√K + L·ℓ          (+ u·|y| final rounding).

    Backward g - exp(y)·Σg: exp of the computed y has relative error (E_y + |y| + L)·u, the sum
    2√K·Σ|g|, the product u:

        E_grad = p·(|Σg|·(E_y + |y| + L + 1) + 2√K·Σ|g|) + (tiny/u)·|Σg|   (+ final rounding),

    the last term being subnormal spacing in exp(y). Entries of -inf (p = 0) get g exactly.
    """
    x, y, g, tiny_over_u = input, output, cotangent, tiny / u
    axis = softmax_axis(x.ndim, dim)
    shape = x.shape
    x1, y1 = np.atleast_1d(x), np.atleast_1d(y)
    root_k = math.sqrt(x1.shape[axis])
    lib = LIBM_ULPS
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(x1, axis=axis, keepdims=True) if x1.size else np.zeros_like(x1)
        z = x1 - m
        p = np.exp(y1)
        ell = np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
        finite = np.isfinite(z)
        spread = np.sum(np.where(finite, p * (np.abs(z) + lib), 0.0), axis=axis, keepdims=True)
        err_y = np.where(finite, np.abs(z) + np.abs(m + ell) + spread + 2 * root_k + lib * ell, 0.0)
        if g is None:
            return err_y.reshape(shape), None
        g1 = np.atleast_1d(g)
        s = np.abs(np.sum(g1, axis=axis, keepdims=True))
        s_abs = np.sum(np.abs(g1), axis=axis, keepdims=True)
        err_g = np.where(finite, p * (s * (err_y + np.abs(y1) + lib + 1) + 2 * root_k * s_abs) + tiny_over_u * s,
                         0.0)
    return err_y.reshape(shape), err_g.reshape(shape)
