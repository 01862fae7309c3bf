"""Likelihood losses: the Gaussian and the Poisson negative log-likelihood, registered as
``reference.functional.gaussian_nll_loss`` and ``poisson_nll_loss`` (torch's signatures) with their
VJPs, and their first-order error analyses (units of u).

Conventions, following torch's documentation and implementation:
- Gaussian: var is clamped to max(var, eps) in the forward, and the clamp is ignored by autograd:
  the gradient of var is the derivative evaluated at the clamped value, passed through unchanged
  (documented: "the gradients are unaffected by it"). var may be a tensor of the input's shape,
  of that shape with one dimension 1, with the last dimension dropped, or a Python float.
- Poisson: the Stirling term t·log t - t + ½·log(2πt) of ``full`` is added only where t > 1; below
  it contributes nothing, so its derivative there is 0 (at t = 0 too, where t·log t has none).
"""

from __future__ import annotations

import math

import numpy as np

from reference.libm import LIBM_ULPS
from reference.loss import REDUCTIONS, apply_reduction, legacy_reduction, scaled_cotangent, sum_to_shape
from reference.registry import functional

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


# -- GaussianNLLLoss ---------------------------------------------------------------------------------

def gaussian_var(input: np.ndarray, var: np.ndarray | float) -> np.ndarray:
    """``var`` shaped to broadcast against ``input`` as torch accepts it (ValueError otherwise):
    the input's shape; its shape without the last dim (unsqueezed); the same rank with exactly one
    mismatched dim, of size 1; or a Python float (every element). Negative entries raise."""
    if isinstance(var, float) and not isinstance(var, np.generic):  # (a NumPy scalar is a 0-d tensor's value)
        if var < 0:
            raise ValueError("gaussian_nll_loss: var has negative entry/entries")
        return np.full(input.shape, var)
    var = np.asarray(var, dtype=np.float64)
    if np.any(var < 0):
        raise ValueError("gaussian_nll_loss: var has negative entry/entries")
    if var.shape == input.shape:
        return var
    if input.shape[:-1] == var.shape:
        return var[..., None]
    if input.ndim == var.ndim and sum(v for i, v in zip(input.shape, var.shape) if i != v) == 1:
        return var
    raise ValueError(f"gaussian_nll_loss: var of shape {var.shape} is of incorrect size for input {input.shape}")


def _gaussian_parts(input, target, var, eps, reduction):
    legacy_reduction(None, None, reduction, REDUCTIONS)
    v = gaussian_var(input, var)
    try:
        d = np.subtract(input, target)
        shape = np.broadcast_shapes(d.shape, v.shape)
    except ValueError as exc:
        raise ValueError(f"gaussian_nll_loss: shapes {input.shape}, {np.shape(target)}, {v.shape} "
                         "do not broadcast") from exc
    return d, v, np.maximum(v, eps), shape


def gaussian_nll_terms(input: np.ndarray, target: np.ndarray, var: np.ndarray | float, full: bool = False,
                       eps: float = 1e-6) -> np.ndarray:
    """½·(log max(var, eps) + (x - t)²/max(var, eps)) (+ ½·log 2π with ``full``), over the
    broadcast shape of input, target and var."""
    d, _, v, shape = _gaussian_parts(input, target, var, eps, "none")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = 0.5 * (np.log(v) + d * d / v)
    return np.broadcast_to(terms + (HALF_LOG_TWO_PI if full else 0.0), shape)


def _gaussian_nll_vjp(cotangent, input, target, var, full=False, eps=1e-6, reduction="mean"):
    """{"input", "target"(, "var")}: with v = max(var, eps) and d = x - t, ±d/v·ĝ and
    ½·(1/v - d²/v²)·ĝ (passed through the clamp), each summed back onto its operand's shape (var
    as given: its dropped last dim or its size-1 dim). A Python float var gets no gradient."""
    d, v0, v, shape = _gaussian_parts(input, target, var, eps, reduction)
    ghat = scaled_cotangent(cotangent, shape, reduction)
    with np.errstate(divide="ignore", invalid="ignore"):
        gx = np.broadcast_to(d / v, shape) * ghat
        gv = np.broadcast_to(0.5 * (1 / v - d * d / (v * v)), shape) * ghat
    out = {"input": sum_to_shape(gx, input.shape), "target": sum_to_shape(-gx, np.shape(target))}
    if not isinstance(var, float) or isinstance(var, np.generic):
        out["var"] = sum_to_shape(gv, v0.shape).reshape(np.shape(var))
    return out


def _gaussian_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    x = rng.standard_normal((3, 4))
    return (x, rng.standard_normal((3, 1)), rng.uniform(0.5, 2.0, 3)), {"full": True, "eps": 0.1}


@functional(vjp=_gaussian_nll_vjp, example=_gaussian_example)
def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Gaussian negative log-likelihood: ℓ = ½·(log max(var, eps) + (x - t)²/max(var, eps)),
    plus ½·log 2π with ``full``, over the broadcast shape of input, target and var, reduced ('mean'
    over every element). var: the input's shape, with one dim 1, without the last dim, or a Python
    float; a negative entry, a var of another shape or an unknown reduction raise ValueError. The
    clamp is invisible to autograd: var's gradient is ½·(1/v - d²/v²) at v = max(var, eps)."""
    legacy_reduction(None, None, reduction, REDUCTIONS)
    return apply_reduction(np.array(gaussian_nll_terms(input, target, var, full, eps)), reduction)


def gaussian_nll_errors(input: np.ndarray, target: np.ndarray, var: np.ndarray | float, full: bool, eps: float,
                        var_err: np.ndarray) -> tuple[np.ndarray, ...]:
    """(term error, dx error, dvar error) in u over the broadcast shape; ``var_err`` is the
    relative error of the clamped variance in u (0 for a var taken as given, more where the clamp
    substitutes eps rounded to the format).

    d = x - t (u·|d|), q = d²/v: the rounded d (2u), the square and the division, and v's own error:
    E_q = q·(3 + var_err); log v: L·|log v| + var_err; the sum and the halving: ℓ' = ½·(log v + q)
    carries ½·(L·|log v| + var_err + E_q) + |ℓ'|; ``full`` adds ½·log 2π (rounded) and a sum.
    dℓ/dx = d/v (0.5·ĝ, ÷v, ·2d): |d/v|·(4 + var_err). dℓ/dvar = ½/v - ½·d²/v²: ½/v·(2 + var_err)
    and ½·q/v·(6 + 2·var_err) for the two terms autograd adds, plus that addition.
    """
    d, _, v, shape = _gaussian_parts(input, target, var, eps, "none")
    lib = LIBM_ULPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = d * d / v
        logv = np.log(v)
        half = 0.5 * (logv + q)
        term_err = 0.5 * (lib * np.abs(logv) + var_err + q * (3 + var_err)) + np.abs(half)
        if full:
            term_err = term_err + HALF_LOG_TWO_PI + np.abs(half + HALF_LOG_TWO_PI)
        dx = np.abs(d / v)
        dx_err = dx * (4 + var_err)
        dv = 0.5 * (1 / v - q / v)
        dv_err = 0.5 / v * (2 + var_err) + 0.5 * q / v * (6 + 2 * var_err) + np.abs(dv)
    return tuple(np.broadcast_to(e, shape) for e in (term_err, dx_err, dv_err))


# -- PoissonNLLLoss ----------------------------------------------------------------------------------

def stirling_term(target: np.ndarray) -> np.ndarray:
    """t·log t - t + ½·log(2πt) where t > 1, else 0 (torch masks it at t <= 1)."""
    t = np.asarray(target, dtype=np.float64)
    safe = np.where(t > 1, t, 2.0)
    return np.where(t > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * math.pi * safe), 0.0)


def stirling_derivative(target: np.ndarray) -> np.ndarray:
    """d/dt of ``stirling_term``: log t + 1/(2t) where t > 1, else 0."""
    t = np.asarray(target, dtype=np.float64)
    safe = np.where(t > 1, t, 2.0)
    return np.where(t > 1, np.log(safe) + 0.5 / safe, 0.0)


def poisson_nll_terms(input: np.ndarray, target: np.ndarray, log_input: bool = True, full: bool = False,
                      eps: float = 1e-8) -> np.ndarray:
    """exp(x) - t·x (log_input) or x - t·log(x + eps), plus the Stirling term where t > 1 with
    ``full``; over the broadcast shape of input and target."""
    try:
        np.broadcast_shapes(input.shape, target.shape)
    except ValueError as exc:
        raise ValueError(f"poisson_nll_loss: shapes {input.shape} and {target.shape} do not broadcast") from exc
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = np.exp(input) - target * input if log_input else input - target * np.log(input + eps)
    return terms + stirling_term(target) if full else terms


def poisson_nll_derivatives(input: np.ndarray, target: np.ndarray, log_input: bool = True, full: bool = False,
                            eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """(dℓ/dx, dℓ/dt): exp(x) - t and -x (log_input), or 1 - t/(x + eps) and -log(x + eps); ``full``
    adds log t + 1/(2t) to dℓ/dt where t > 1 (0 elsewhere, t = 0 included)."""
    shape = np.broadcast_shapes(input.shape, target.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if log_input:
            dx, dt = np.exp(input) - target, -input + np.zeros_like(target)
        else:
            dx, dt = 1 - target / (input + eps), -np.log(input + eps) + np.zeros_like(target)
    if full:
        dt = dt + stirling_derivative(target)
    return np.broadcast_to(dx, shape), np.broadcast_to(dt, shape)


def _poisson_nll_vjp(cotangent, input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    """{"input", "target"}: ĝ times ``poisson_nll_derivatives``, summed back over broadcast dims."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    dx, dt = poisson_nll_derivatives(input, target, log_input, full, eps)
    ghat = scaled_cotangent(cotangent, dx.shape, reduction)
    return {"input": sum_to_shape(dx * ghat, input.shape), "target": sum_to_shape(dt * ghat, target.shape)}


def _poisson_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    target = np.array([[0.0, 0.5, 2.0, 3.5], [1.5, 4.0, 0.25, 6.0]])
    return (rng.uniform(0.5, 3.0, (2, 4)), target), {"log_input": False, "full": True, "reduction": "sum"}


@functional(vjp=_poisson_nll_vjp, example=_poisson_example)
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    """Poisson negative log-likelihood of the target given the rate: ℓ = exp(x) - t·x (input the
    log-rate, ``log_input``) or x - t·log(x + eps) (input the rate), plus with ``full`` the Stirling
    approximation t·log t - t + ½·log(2πt) of log(t!) where t > 1 (0 for t <= 1); over the
    broadcast shape of input and target, reduced. Target gradients are defined: -x or
    -log(x + eps), plus log t + 1/(2t) where t > 1."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(poisson_nll_terms(input, target, log_input, full, eps), reduction)


def poisson_nll_errors(input: np.ndarray, target: np.ndarray, log_input: bool, full: bool, eps: float,
                       sum_err: np.ndarray | float = 0.0) -> tuple[np.ndarray, ...]:
    """(term error, dx error, dt error) in u over the broadcast shape; ``sum_err`` is the relative
    error of s = x + eps in u beyond its own rounding (an s below the normal range loses up to half
    a subnormal spacing: tiny/(2u·s)).

    log_input: exp(x) (L) and t·x, their difference: L·e^x + |t·x| + |ℓ|; dℓ/dx = e^x - t from two
    products (autograd) and a sum: (L + 1)·e^x + |t| + |dℓ/dx|; dℓ/dt = -x exact.
    Rate input: s = x + eps rounded (1 + sum_err), log s: L·|log s| + (1 + sum_err), the product by
    t and the difference: |t|·(L·|log s| + 1 + sum_err) + |t·log s| + |ℓ|; dℓ/dx = 1 - t/s:
    |t/s|·(3 + sum_err) + |dℓ/dx|; dℓ/dt = -log s: L·|log s| + 1 + sum_err.
    ``full`` where t > 1: t·log t (L + 1), -t, ½·log(2πt) (2π·t rounded, L), three sums: (L + 3)·
    (|t·log t| + t + |½ log(2πt)|) + the loss's sum; its derivative log t + t/t + ½·(2π)/(2πt):
    (L + 2)·|log t| + 2 + 4·½/t + the accumulation of the parts.
    """
    shape = np.broadcast_shapes(input.shape, target.shape)
    x, t = input, target
    lib = LIBM_ULPS
    terms = poisson_nll_terms(x, t, log_input, full, eps)
    dx, dt = poisson_nll_derivatives(x, t, log_input, full, eps)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if log_input:
            e = np.exp(x)
            term_err = lib * e + np.abs(t * x) + np.abs(terms)
            dx_err = (lib + 1) * e + np.abs(t) + np.abs(dx)
            dt_err = np.zeros(shape)
        else:
            s = x + eps
            logs = np.abs(np.log(s))
            log_err = lib * logs + 1 + sum_err
            term_err = np.abs(t) * log_err + np.abs(t * np.log(s)) + np.abs(terms)
            dx_err = np.abs(t / s) * (3 + sum_err) + np.abs(dx)
            dt_err = log_err + np.zeros(shape)
        if full:
            big = t > 1
            safe = np.where(big, t, 2.0)
            parts = np.abs(safe * np.log(safe)) + safe + 0.5 * np.abs(np.log(2 * math.pi * safe))
            term_err = term_err + np.where(big, (lib + 3) * parts, 0.0)
            deriv_parts = np.abs(np.log(safe)) + 1 + 0.5 / safe
            dt_err = dt_err + np.where(big, (lib + 2) * np.abs(np.log(safe)) + 2 + 2 / safe + 2 * deriv_parts, 0.0)
    return tuple(np.broadcast_to(np.asarray(e, dtype=np.float64), shape) for e in (term_err, dx_err, dt_err))
