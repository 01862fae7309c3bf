"""Loss functions, shared part and regression losses.

- Reductions: 'none', 'sum', 'mean' (and 'batchmean' for KL divergence); the deprecated
  ``size_average`` / ``reduce`` flags resolved to one of them (``legacy_reduction``).
- The first-order error model of a reduced loss (``reduced_error``, ``cotangent_error``,
  ``grad_error``): every bound is in units of the unit roundoff u, so that the conformance layer
  turns it into a tolerance with ``conformance.tolerance.bound_as_magnitude``.
- Regression losses over the broadcast shape of input and target: mean squared error, L1, smooth
  L1 and the Kullback-Leibler divergence, forward, VJP and error analysis.

Classification losses live in ``reference.loss_classification``, the logistic ones in
``reference.loss_binary`` and the margin ones in ``reference.loss_margin``.
"""

from __future__ import annotations

import math

import numpy as np

from reference.libm import LIBM_ULPS

REDUCTIONS = ("mean", "none", "sum")


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str = "mean",
                     valid: tuple[str, ...] = REDUCTIONS) -> str:
    """The reduction a loss uses given the deprecated ``size_average`` / ``reduce`` flags.

    When either flag is given it overrides ``reduction``: reduce=False → 'none'; otherwise
    size_average=False → 'sum'; otherwise 'mean' (a flag left None counts as True).
    """
    if size_average is None and reduce is None:
        if reduction not in valid:
            raise ValueError(f"{reduction!r} is not a valid value for reduction")
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def reduce(values: np.ndarray, reduction: str, count: float | None = None) -> np.ndarray:
    """'none': the values; 'sum': their sum; 'mean': the sum / ``count`` (default: the number of
    values; 0/0 = NaN when nothing counts)."""
    if reduction == "none":
        return values
    total = np.sum(values)
    if reduction == "sum":
        return np.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / (values.size if count is None else count))


_reduce = reduce  # the name the first slice used


def scaled_cotangent(g: np.ndarray, shape: tuple[int, ...], reduction: str, count: float | None = None) -> np.ndarray:
    """ĝ, the cotangent of each term of a reduced loss, broadcast to the terms' ``shape``: g itself
    ('none'), the scalar g ('sum') or g / count ('mean', count defaulting to the number of terms)."""
    if reduction == "none":
        return np.broadcast_to(g, shape)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            g = g / (math.prod(shape) if count is None else count)
    return np.broadcast_to(g, shape)


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back onto an operand of ``shape``."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


# -- the error model ------------------------------------------------------------------------------
# Each function returns a first-order bound in units of u: |computed - exact| <= u·err.

def reduced_error(terms: np.ndarray, term_err: np.ndarray, reduction: str, count: float | None = None,
                  count_err: float = 0.0) -> np.ndarray:
    """Error of reducing terms ℓ each computed with error u·term_err.

    'none': term_err. 'sum': Σ term_err + 2√M·Σ|ℓ| (the M-term sum, probabilistically). 'mean':
    the sum's error / |count| plus |mean|·(2 + count_err) (the division, or the multiplication by
    a rounded 1/count, and the count's own relative error count_err).
    """
    if reduction == "none":
        return np.asarray(term_err, dtype=np.float64)
    m = max(terms.size, 1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        total = np.sum(term_err) + 2 * math.sqrt(m) * np.sum(np.abs(terms))
        if reduction == "sum":
            return np.asarray(total)
        n = terms.size if count is None else count
        return np.asarray(total / abs(n) + abs(np.sum(terms) / n) * (2 + count_err))


def cotangent_error(reduction: str, count_err: float = 0.0) -> float:
    """Relative error of ĝ: exact for 'none' and 'sum'; 'mean' rounds g/count once (or g·(1/count)
    twice) on top of the count's own error."""
    return 2.0 + count_err if reduction == "mean" else 0.0


def grad_error(ghat: np.ndarray, deriv: np.ndarray, deriv_err: np.ndarray, ghat_err: float,
               operations: int = 1, tiny_over_u: float = 0.0) -> np.ndarray:
    """Error of ĝ·d, with d computed with error u·deriv_err and ĝ with relative error u·ghat_err:
    |ĝ|·deriv_err + |ĝ·d|·(ghat_err + operations) (the products), plus ``operations`` subnormal
    spacings (a product that underflows loses up to one, in units of u: tiny/u)."""
    with np.errstate(invalid="ignore", over="ignore"):
        ag = np.abs(ghat)
        return ag * deriv_err + np.abs(ghat * deriv) * (ghat_err + operations) + operations * tiny_over_u


# -- mean squared error ---------------------------------------------------------------------------

def _difference(x: np.ndarray, t: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.subtract(x, t)
    except ValueError as exc:
        raise ValueError(f"{name}: shapes {x.shape} and {t.shape} do not broadcast") from exc


def mse_loss(x: np.ndarray, t: np.ndarray, reduction: str) -> np.ndarray:
    """(x - t)² elementwise over the broadcast shape of x and t, then reduced ('none', 'sum', or
    'mean' over every element of the broadcast shape)."""
    d = _difference(x, t, "mse_loss")
    return reduce(d * d, reduction)


def mse_loss_vjp(x: np.ndarray, t: np.ndarray, g: np.ndarray, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dt): ±2·(x - t)·ĝ with ĝ = g ('none', 'sum') or g/numel ('mean'), summed back
    over the dims each operand was broadcast along."""
    d = np.subtract(x, t)
    grad = 2.0 * d * scaled_cotangent(g, d.shape, reduction)
    return sum_to_shape(grad, x.shape), sum_to_shape(-grad, t.shape)


# -- L1 -------------------------------------------------------------------------------------------

def l1_loss(x: np.ndarray, t: np.ndarray, reduction: str) -> np.ndarray:
    """|x - t| over the broadcast shape, reduced."""
    return reduce(np.abs(_difference(x, t, "l1_loss")), reduction)


def l1_loss_vjp(x: np.ndarray, t: np.ndarray, g: np.ndarray, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dt) = ±sign(x - t)·ĝ, summed over broadcast dims; 0 at the kink x = t (the
    subgradient torch picks: sign(0) = 0)."""
    d = np.subtract(x, t)
    grad = np.sign(d) * scaled_cotangent(g, d.shape, reduction)
    return sum_to_shape(grad, x.shape), sum_to_shape(-grad, t.shape)


# -- smooth L1 ------------------------------------------------------------------------------------

def _check_beta(beta: float) -> None:
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")


def smooth_l1_terms(d: np.ndarray, beta: float) -> np.ndarray:
    """0.5·d²/β where |d| < β, else |d| - 0.5·β (β = 0: |d|, the L1 loss)."""
    _check_beta(beta)
    ad = np.abs(d)
    if beta == 0:
        return ad
    return np.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta)


def smooth_l1_derivative(d: np.ndarray, beta: float) -> np.ndarray:
    """d/β where |d| < β, else sign(d) (0 at d = 0 when β = 0)."""
    if beta == 0:
        return np.sign(d)
    return np.where(np.abs(d) < beta, d / beta, np.sign(d))


def smooth_l1_loss(x: np.ndarray, t: np.ndarray, reduction: str, beta: float = 1.0) -> np.ndarray:
    """Smooth L1 (Huber divided by β) of x - t over the broadcast shape, reduced."""
    return reduce(smooth_l1_terms(_difference(x, t, "smooth_l1_loss"), beta), reduction)


def smooth_l1_loss_vjp(x: np.ndarray, t: np.ndarray, g: np.ndarray, reduction: str,
                       beta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dt) = ±smooth_l1_derivative(x - t)·ĝ, summed over broadcast dims."""
    d = np.subtract(x, t)
    grad = smooth_l1_derivative(d, beta) * scaled_cotangent(g, d.shape, reduction)
    return sum_to_shape(grad, x.shape), sum_to_shape(-grad, t.shape)


def smooth_l1_errors(d: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(term error, derivative error) in u for d = x - t (one rounding, u·|d|).

    Quadratic branch 0.5·d²/β: the rounded d (2u relative on d²), the square, the division and β
    rounded to the format: 5u·ℓ; its derivative d/β: 3u relative. Linear branch |d| - 0.5β: u·|d|
    for d, u·β/2 for β, u·ℓ for the subtraction; its derivative ±1 is exact. The branch test on
    rounded values may pick the other branch only where both agree to second order.
    """
    ad = np.abs(d)
    if beta == 0:
        return ad, np.zeros_like(ad)
    quadratic = ad < beta
    term = smooth_l1_terms(d, beta)
    term_err = np.where(quadratic, 5 * term, ad + 0.5 * beta + term)
    deriv_err = np.where(quadratic, 3 * ad / beta, 0.0)
    return term_err, deriv_err


# -- Kullback-Leibler divergence --------------------------------------------------------------------

KL_REDUCTIONS = ("mean", "batchmean", "none", "sum")


def kl_count(x: np.ndarray, reduction: str, numel: int) -> int:
    """The 'mean' / 'batchmean' divisor: every element, or the batch size x.shape[0] (a 0-d input has
    no batch: 'batchmean' is then the sum)."""
    if reduction == "batchmean":
        return x.shape[0] if x.ndim else 1
    return numel


def kl_div_terms(x: np.ndarray, t: np.ndarray, log_target: bool) -> np.ndarray:
    """Pointwise KL: t·(log t - x) with 0·log 0 = 0 (t probabilities), or exp(t)·(t - x) (t
    log-probabilities); over the broadcast shape of x and t."""
    _difference(x, t, "kl_div")
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            return np.exp(t) * (t - x)
        tlogt = np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))
        return tlogt - t * x


def kl_div(x: np.ndarray, t: np.ndarray, reduction: str, log_target: bool = False) -> np.ndarray:
    """KL divergence of input log-probabilities x from target t, reduced ('batchmean' divides the
    sum by x.shape[0])."""
    terms = kl_div_terms(x, t, log_target)
    if reduction == "batchmean":
        return reduce(terms, "mean", kl_count(x, reduction, terms.size))
    return reduce(terms, reduction)


def kl_div_vjp(x: np.ndarray, t: np.ndarray, g: np.ndarray, reduction: str,
               log_target: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dt): -t·ĝ and (log t + 1 - x)·ĝ for probabilities (NaN at t = 0, where t·log t
    has no derivative), or -exp(t)·ĝ and exp(t)·(t - x + 1)·ĝ for log-probabilities."""
    shape = np.broadcast_shapes(x.shape, t.shape)
    red, count = ("mean", kl_count(x, reduction, math.prod(shape))) if reduction == "batchmean" else (reduction, None)
    ghat = scaled_cotangent(g, shape, red, count)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            e = np.exp(t)
            dx, dt = -e * np.ones(shape), e * (t - x + 1)
        else:
            dx = -t * np.ones(shape)
            dt = np.where(t == 0, np.nan, np.log(np.where(t == 0, 1.0, t)) + 1 - x)
        return sum_to_shape(dx * ghat, x.shape), sum_to_shape(dt * ghat, t.shape)


def kl_div_errors(x: np.ndarray, t: np.ndarray, log_target: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(term error, dx error, dt error) in u; log and exp count L = LIBM_ULPS (2 ulps) relative.

    Probabilities: xlogy(t, t) - t·x: (L + 1)u·|t log t| (log, product), u·|t x|, u·ℓ (subtraction);
    dt = log t + 1 - x: (L + 1)u·|log t| (log, its rounding) + the two additions u·(|log t + 1| + |dt|)
    + u·|x|. dx = -t exact.
    Log-probabilities: exp(t)·(t - x): (L + 2)u·ℓ; dx = -exp(t): L·u·e^t; dt = e^t·(t - x + 1):
    e^t·((L + 2)|t - x| + L + 1) covers exp, the two additions and the product.
    """
    shape = np.broadcast_shapes(x.shape, t.shape)
    terms = kl_div_terms(x, t, log_target)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lib = LIBM_ULPS
        if log_target:
            e = np.exp(t)
            return ((lib + 2) * np.abs(terms), np.broadcast_to(lib * e, shape),
                    e * ((lib + 2) * np.abs(t - x) + lib + 1))
        logt = np.log(np.where(t > 0, t, 1.0))
        term_err = (lib + 1) * np.abs(t * logt) + np.abs(t * x) + np.abs(terms)
        dt = logt + 1 - x
        dt_err = (lib + 1) * np.abs(logt) + np.abs(logt + 1) + np.abs(dt) + np.abs(x)
        return term_err, np.zeros(shape), np.broadcast_to(dt_err, shape)
