"""Loss functions, shared part and regression losses.

- Reductions: 'none', 'sum', 'mean' (and 'batchmean' for KL divergence); the deprecated
  ``size_average`` / ``reduce`` flags resolved to one of them (``legacy_reduction``).
- The first-order error model of a reduced loss (``reduced_error``, ``cotangent_error``,
  ``grad_error``): every bound is in units of the unit roundoff u, so that the conformance layer
  turns it into a tolerance with ``conformance.tolerance.analysed_tolerance``.
- Regression losses over the broadcast shape of input and target, registered as
  ``reference.functional`` with torch's signatures and their VJPs: ``mse_loss``, ``l1_loss``,
  ``smooth_l1_loss``, ``huber_loss`` and ``kl_div``, with their error analyses.

Classification losses live in ``reference.loss_classification``, the logistic ones in
``reference.loss_binary``, the margin ones in ``reference.loss_margin``, the likelihood ones in
``reference.loss_likelihood`` and the triplet ones in ``reference.loss_triplet``.
"""

from __future__ import annotations

import math

import numpy as np

from reference.libm import LIBM_ULPS
from reference.registry import functional

REDUCTIONS = ("mean", "none", "sum")


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str = "mean",
                     valid: tuple[str, ...] = REDUCTIONS) -> str:
    """The reduction a loss uses given the deprecated ``size_average`` / ``reduce`` flags.

    When either flag is given it overrides ``reduction``: reduce=False → 'none'; otherwise
    size_average=False → 'sum'; otherwise 'mean' (a flag left None counts as True). Neither given:
    ``reduction`` itself, which must be one of ``valid`` (ValueError otherwise).
    """
    if size_average is None and reduce is None:
        if reduction not in valid:
            raise ValueError(f"{reduction!r} is not a valid value for reduction")
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def apply_reduction(values: np.ndarray, reduction: str, count: float | None = None) -> np.ndarray:
    """'none': the values; 'sum': their sum; 'mean': the sum / ``count`` (default: the number of
    values; 0/0 = NaN when nothing counts)."""
    if reduction == "none":
        return values
    total = np.sum(values)
    if reduction == "sum":
        return np.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / (values.size if count is None else count))


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


def difference(x: np.ndarray, t: np.ndarray, name: str) -> np.ndarray:
    """x - t over the broadcast shape (ValueError naming the loss when the shapes do not broadcast)."""
    try:
        return np.subtract(x, t)
    except ValueError as exc:
        raise ValueError(f"{name}: shapes {x.shape} and {t.shape} do not broadcast") from exc


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


# -- optional elementwise weights (mse_loss, l1_loss, huber_loss) -----------------------------------

def _check_weight(name: str, weight: np.ndarray | None, input: np.ndarray) -> None:
    if weight is not None and np.shape(weight) != np.shape(input):
        raise ValueError(f"{name}: weights and input must have the same size ({np.shape(weight)} != {input.shape})")


def _weighted_reduce(terms: np.ndarray, weight: np.ndarray | None, reduction: str, by_weight: bool) -> np.ndarray:
    """Reduce ``terms`` (the broadcast shape) multiplied by ``weight`` (the input's shape, which
    broadcasts to it). 'mean' divides by Σ weight (``by_weight``: mse_loss, l1_loss) or by the
    number of terms (huber_loss), as torch's weighted forms do."""
    if weight is None:
        return apply_reduction(terms, reduction)
    weighted = terms * weight
    return apply_reduction(weighted, reduction, float(np.sum(weight)) if by_weight else None)


def _weighted_pullback(g: np.ndarray, terms: np.ndarray, weight: np.ndarray | None, reduction: str,
                       by_weight: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(the cotangent of each unweighted term, the gradient of ``weight``) of ``_weighted_reduce``."""
    if weight is None:
        return scaled_cotangent(g, terms.shape, reduction), None
    total = float(np.sum(weight))
    ghat = scaled_cotangent(g, terms.shape, reduction, total if by_weight else None)
    grad_w = sum_to_shape(terms * ghat, weight.shape)
    if reduction == "mean" and by_weight:  # d(Σ w·ℓ / Σ w)/dw = (ℓ - mean)/Σ w
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.sum(terms * weight) / total
            grad_w = grad_w - g * mean / total
    return ghat * weight, grad_w


def _difference_pullback(cotangent: np.ndarray, input: np.ndarray, target: np.ndarray, reduction: str, name: str,
                         terms, derivative, weight: np.ndarray | None = None, by_weight: bool = True) -> dict:
    """{"input", "target"(, "weight")} of a reduced loss ℓ(d) of d = x - t: ±ℓ'(d)·w·ĝ, each summed
    back over the dims its operand was broadcast along (``terms`` and ``derivative`` give ℓ, ℓ')."""
    d = difference(input, target, name)
    ghat, grad_w = _weighted_pullback(cotangent, terms(d), weight, reduction, by_weight)
    grad = derivative(d) * ghat
    out = {"input": sum_to_shape(grad, input.shape), "target": sum_to_shape(-grad, target.shape)}
    if grad_w is not None:
        out["weight"] = grad_w
    return out


def _regression_example(rng: np.random.Generator, **kwargs: object) -> tuple[tuple[np.ndarray, ...], dict]:
    """(3, 4) input against a (4,) target broadcast along the rows, away from every kink."""
    x = rng.standard_normal((3, 4))
    t = x[0] + np.where(rng.random(4) < 0.5, -1.0, 1.0) * rng.uniform(0.2, 0.4, 4)
    return (x, t), {"reduction": "mean", **kwargs}


# -- mean squared error ---------------------------------------------------------------------------

def _mse_loss_vjp(cotangent, input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """{"input", "target"(, "weight")}: ±2·(x - t)·w·ĝ with ĝ = g ('none', 'sum') or g/count
    ('mean'), summed back over the dims each operand was broadcast along."""
    return _difference_pullback(cotangent, input, target, legacy_reduction(size_average, reduce, reduction),
                                "mse_loss", lambda d: d * d, lambda d: 2.0 * d, weight)


@functional(vjp=_mse_loss_vjp, example=_regression_example)
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """ℓ = (x - t)² elementwise over the broadcast shape of input and target, reduced: 'none',
    'sum', or 'mean' over every element of the broadcast shape. An optional ``weight`` of the
    input's shape multiplies each term, and 'mean' then divides by Σ weight (torch's weighted form).
    The deprecated size_average/reduce override ``reduction`` (``legacy_reduction``)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_weight("mse_loss", weight, input)
    d = difference(input, target, "mse_loss")
    return _weighted_reduce(d * d, weight, reduction, by_weight=True)


# -- L1 -------------------------------------------------------------------------------------------

def _l1_loss_vjp(cotangent, input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """{"input", "target"(, "weight")}: ±sign(x - t)·w·ĝ, summed over broadcast dims; 0 at the kink
    x = t (the subgradient torch picks: sign(0) = 0)."""
    return _difference_pullback(cotangent, input, target, legacy_reduction(size_average, reduce, reduction),
                                "l1_loss", np.abs, np.sign, weight)


@functional(vjp=_l1_loss_vjp, example=_regression_example)
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """ℓ = |x - t| over the broadcast shape of input and target, reduced ('mean' over every
    element; weighted as ``mse_loss``). The gradient at x = t is 0 (sign(0))."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_weight("l1_loss", weight, input)
    return _weighted_reduce(np.abs(difference(input, target, "l1_loss")), weight, reduction, by_weight=True)


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


def _smooth_l1_loss_vjp(cotangent, input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """{"input", "target"}: ±smooth_l1_derivative(x - t)·ĝ, summed over broadcast dims."""
    return _difference_pullback(cotangent, input, target, legacy_reduction(size_average, reduce, reduction),
                                "smooth_l1_loss", np.abs, lambda d: smooth_l1_derivative(d, beta))


@functional(vjp=_smooth_l1_loss_vjp, example=lambda rng: _regression_example(rng, beta=0.7))
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """Smooth L1 of d = x - t over the broadcast shape, reduced: 0.5·d²/β where |d| < β, else
    |d| - 0.5·β (the Huber loss divided by β). β = 0 is the L1 loss; β < 0 raises ValueError.
    The gradient at |d| = β is sign(d) (both branches agree), at d = 0 it is 0."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return apply_reduction(smooth_l1_terms(difference(input, target, "smooth_l1_loss"), beta), reduction)


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


# -- Huber ------------------------------------------------------------------------------------------

def _check_delta(delta: float) -> None:
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")


def huber_terms(d: np.ndarray, delta: float) -> np.ndarray:
    """0.5·d² where |d| < δ, else δ·(|d| - 0.5·δ) (continuous, with a continuous derivative at |d| = δ)."""
    _check_delta(delta)
    ad = np.abs(d)
    return np.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))


def huber_derivative(d: np.ndarray, delta: float) -> np.ndarray:
    """d where |d| < δ, else δ·sign(d): the derivative is continuous (δ at |d| = δ either way)."""
    return np.where(np.abs(d) < delta, d, delta * np.sign(d))


def _huber_loss_vjp(cotangent, input, target, reduction="mean", delta=1.0, weight=None):
    """{"input", "target"(, "weight")}: ±huber_derivative(x - t)·w·ĝ, summed over broadcast dims."""
    return _difference_pullback(cotangent, input, target, legacy_reduction(None, None, reduction), "huber_loss",
                                lambda d: huber_terms(d, delta), lambda d: huber_derivative(d, delta), weight,
                                by_weight=False)


@functional(vjp=_huber_loss_vjp, example=lambda rng: _regression_example(rng, delta=0.3))
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Huber loss of d = x - t over the broadcast shape, reduced: 0.5·d² where |d| < δ, else
    δ·(|d| - 0.5·δ) (δ times smooth_l1 with β = δ). δ must be > 0 (ValueError). An optional
    ``weight`` of the input's shape multiplies each term; weighted 'mean' divides by the number of
    terms (torch's weighted form). No deprecated size_average/reduce."""
    reduction = legacy_reduction(None, None, reduction)
    _check_weight("huber_loss", weight, input)
    return _weighted_reduce(huber_terms(difference(input, target, "huber_loss"), delta), weight, reduction,
                            by_weight=False)


def huber_errors(d: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(term error, derivative error) in u for d = x - t (one rounding, u·|d|).

    Quadratic branch 0.5·d²: the rounded d (2u relative on d²) and the square: 3u·ℓ; its
    derivative d: u·|d|. Linear branch δ·(|d| - 0.5δ): u·δ·|d| for d, δ² for a δ rounded to the
    format (used twice), the subtraction and the product: δ·|d| + δ² + 2ℓ; its derivative ±δ:
    u·δ. The branches agree in value and derivative at |d| = δ, so a branch test decided by
    rounding moves either by second-order terms only (covered by u·|d|).
    """
    ad = np.abs(d)
    quadratic = ad < delta
    term = huber_terms(d, delta)
    term_err = np.where(quadratic, 3 * term, delta * ad + delta * delta + 2 * term)
    deriv_err = np.where(quadratic, ad, delta)
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
    difference(x, t, "kl_div")
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            return np.exp(t) * (t - x)
        tlogt = np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))
        return tlogt - t * x


def _kl_div_vjp(cotangent, input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """{"input", "target"}: -t·ĝ and (log t + 1 - x)·ĝ for probabilities (NaN at t = 0, where
    t·log t has no derivative), or -exp(t)·ĝ and exp(t)·(t - x + 1)·ĝ for log-probabilities."""
    reduction = legacy_reduction(size_average, reduce, reduction, KL_REDUCTIONS)
    x, t = input, target
    shape = np.broadcast_shapes(x.shape, t.shape)
    red, count = ("mean", kl_count(x, reduction, math.prod(shape))) if reduction == "batchmean" else (reduction, None)
    ghat = scaled_cotangent(cotangent, shape, red, count)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            e = np.exp(t)
            dx, dt = -e * np.ones(shape), e * (t - x + 1)
        else:
            dx = -t * np.ones(shape)
            dt = np.where(t == 0, np.nan, np.log(np.where(t == 0, 1.0, t)) + 1 - x)
        return {"input": sum_to_shape(dx * ghat, x.shape), "target": sum_to_shape(dt * ghat, t.shape)}


def _kl_example(rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict]:
    return (rng.standard_normal((3, 4)), rng.uniform(0.1, 1.0, (3, 4))), {"reduction": "batchmean"}


@functional(vjp=_kl_div_vjp, example=_kl_example)
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Kullback-Leibler divergence of input log-probabilities x from the target: pointwise
    t·(log t - x) with 0·log 0 = 0 (t probabilities; torch: xlogy(t, t) - t·x), or
    exp(t)·(t - x) (log_target=True), over the broadcast shape, reduced: 'batchmean' divides the
    sum by input.shape[0] (a 0-d input: the sum), 'mean' by every element. dℓ/dt is NaN at t = 0
    (t·log t has no derivative there)."""
    reduction = legacy_reduction(size_average, reduce, reduction, KL_REDUCTIONS)
    terms = kl_div_terms(input, target, log_target)
    if reduction == "batchmean":
        return apply_reduction(terms, "mean", kl_count(input, reduction, terms.size))
    return apply_reduction(terms, reduction)


def kl_div_errors(x: np.ndarray, t: np.ndarray, log_target: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(term error, dx error, dt error) in u; log and exp count L = LIBM_ULPS (2 ulps) relative.

    Probabilities: xlogy(t, t) - t·x: (L + 1)u·|t log t| (log, product), u·|t x|, u·ℓ (subtraction);
    dt = log t + 1 - x: (L + 1)u·|log t| (log, its rounding) + the two additions u·(|log t + 1| + |dt|)
    + u·|x| + 2u for the 1, which the derivative of xlogy(t, t) forms as (ĝ·t)/t (two roundings).
    dx = -t exact.
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
        dt_err = (lib + 1) * np.abs(logt) + np.abs(logt + 1) + np.abs(dt) + np.abs(x) + 2
        return term_err, np.zeros(shape), np.broadcast_to(dt_err, shape)
