"""Smooth activations: Sigmoid, Tanh, LogSigmoid, Softplus, Tanhshrink, Softsign and GELU (exact
and tanh approximation), with their VJPs and first-order error analyses.

Every function is elementwise on an array of any shape (0-d allowed). The references are computed
in forms that neither overflow nor cancel in float64 (sigmoid by the sign of x, log-sigmoid as
min(x, 0) - log1p(exp(-|x|)), GELU's Φ through erfc), so that they stay accurate where the
textbook formulas a backend may use do not. At ±inf every function and derivative takes its limit
(GELU(-inf) = 0, Softsign(±inf) = ±1); NaN propagates through both.

Error analyses (``*_error(x, y, g, u, ...)``) return per-element bounds in units of u (the unit
roundoff of the format the backend computes in), EXCLUDING the final rounding of the result, which
the tolerance engine adds as u·|ref|. They model the formula a backend computes (PyTorch's unless
stated): each libm call within ``LIBM_ULPS`` units of u and exact ±1 once saturated
(``libm.saturating_error``), each arithmetic operation rounded once, and each constant or Python
float parameter rounded once to the format. Where a formula cancels, the bound is in the magnitude
of the cancelling terms, so the textbook formula conforms: the declaration says so.
"""

from __future__ import annotations

import math

import numpy as np

from reference.libm import LIBM_ULPS, erfc, normal_cdf, normal_pdf, saturating_error, sigmoid

_L = LIBM_ULPS


def _limits(x: np.ndarray, value: np.ndarray, at_pos_inf: float, at_neg_inf: float) -> np.ndarray:
    """``value`` with the limits of the function at ±inf."""
    return np.where(x == np.inf, at_pos_inf, np.where(x == -np.inf, at_neg_inf, value))


def _tanh_distance(x: np.ndarray) -> np.ndarray:
    """1 - |tanh(x)| = 2σ(-2|x|), without cancellation."""
    return 2.0 * sigmoid(-2.0 * np.abs(x))


# -- Sigmoid ---------------------------------------------------------------------------------------

def sigmoid_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g·σ(x)·σ(-x) (0 at ±inf)."""
    return g * sigmoid(x) * sigmoid(-x)


def sigmoid_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, u: float) -> tuple[np.ndarray, np.ndarray | None]:
    """y = 1/(1 + exp(-x)): exp (L), the addition and the division: E_y = (L + 1)·|y|.

    Backward from the output, g·y·(1 - y) (PyTorch): the computed y (E_y + |y|) moves y·(1 - y)
    by |1 - 2y| times that, plus two products: E = |g|·|1 - 2y|·(E_y + |y|) + 2|grad|. Near y = 1,
    1 - y cancels: the bound is absolute there (≈ (L + 2)·u·|g|), so a backend computing the
    derivative from x (relative error (L + 3)) conforms as well.
    """
    e_y = (_L + 1) * np.abs(y)
    if g is None:
        return e_y, None
    grad = np.abs(sigmoid_vjp(x, g))
    from_output = np.abs(g) * np.abs(1 - 2 * y) * (e_y + np.abs(y)) + 2 * grad
    return e_y, np.maximum(from_output, (_L + 3) * grad)


# -- Tanh ------------------------------------------------------------------------------------------

def sech2(x: np.ndarray) -> np.ndarray:
    """sech²(x) to about one ulp: 1 - tanh² where tanh² < 1/4 (no cancellation there), else
    4σ(2x)σ(-2x) (no cancellation either; 0 at ±inf)."""
    t = np.tanh(x)
    return np.where(np.abs(x) < 0.5, 1 - t * t, 4 * sigmoid(2 * x) * sigmoid(-2 * x))


def tanh_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g·sech²(x) (0 at ±inf)."""
    return g * sech2(x)


def tanh_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, u: float) -> tuple[np.ndarray, np.ndarray | None]:
    """y = tanh(x): one libm call, E_y = L·|y| (exactly ±1 once saturated).

    Backward from the output, g·(1 - y²): the computed y moves 1 - y² by 2|y|·(E_y + |y|), plus the
    roundings of y² and of the subtraction: E = |g|·(2|y|·(E_y + |y|) + y² + |1 - y²|).
    """
    e_y = saturating_error(y, _tanh_distance(x), u)
    if g is None:
        return e_y, None
    ay = np.abs(y)
    return e_y, np.abs(g) * (2 * ay * (e_y + ay) + ay * ay + np.abs(1 - y * y))


# -- LogSigmoid ------------------------------------------------------------------------------------

def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """y = log σ(x) = min(x, 0) - log1p(exp(-|x|)): no overflow at either end (-inf at -inf)."""
    with np.errstate(invalid="ignore"):
        return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def log_sigmoid_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g·σ(-x) (g at -inf, 0 at +inf)."""
    return g * sigmoid(-x)


def log_sigmoid_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None,
                      u: float) -> tuple[np.ndarray, np.ndarray | None]:
    """y = min(x, 0) - log1p(e), e = exp(-|x|): exp (L, propagated by e/(1 + e) ≤ 1) and log1p
    (L·ℓ, ℓ = log1p(e)); both terms are ≤ 0, so the subtraction does not cancel:
    E_y = L·(ℓ + e/(1 + e)).

    Backward g·(m - s·e/(1 + e)) (PyTorch: m = 1, s = 1 for x < 0, else m = 0, s = -1): the
    quotient carries (L + 2) roundings and the subtraction one, in the magnitude of its terms:
    E = |g|·(m + (L + 2)·e/(1 + e)).
    """
    with np.errstate(invalid="ignore"):
        e = np.exp(-np.abs(x))
        q = e / (1 + e)
        e_y = _L * (np.log1p(e) + q)
    if g is None:
        return e_y, None
    return e_y, np.abs(g) * (np.where(x < 0, 1.0, 0.0) + (_L + 2) * q)


# -- Softplus --------------------------------------------------------------------------------------

def softplus_product(x: np.ndarray, beta: float) -> np.ndarray:
    """t = β·x, the quantity compared with the threshold (exact in float64 for inputs of up to 45
    significant bits and a β of up to 8)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return beta * x


def softplus_log_branch(x: np.ndarray, beta: float) -> np.ndarray:
    """log1p(exp(β·x))/β, computed as (max(t, 0) + log1p(exp(-|t|)))/β (no overflow)."""
    t = softplus_product(x, beta)
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))) / beta


def softplus(x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    """y = x where β·x > threshold (the linear branch, as documented), else log1p(exp(β·x))/β."""
    t = softplus_product(x, beta)
    return np.where(t > threshold, x, softplus_log_branch(x, beta))


def softplus_vjp(x: np.ndarray, g: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    """dL/dx = g where β·x > threshold, else g·σ(β·x)."""
    t = softplus_product(x, beta)
    return np.where(t > threshold, g, g * sigmoid(t))


def softplus_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, u: float, beta: float,
                   threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Linear branch: y = x exactly, E = 0 (gradient g exactly). Log branch, y = log1p(exp(t))/β:
    the rounding of t = β·x moves y by σ(t)·|x|, a rounded β by σ(t)·|x| + |y|, exp by L·σ(t)/β and
    log1p by L·|y|: E_y = 2σ(t)·|x| + (L + 1)·|y| + L·σ(t)/β (relative 2|t| where y ≈ e^t/β).

    Backward g·z/(z + 1), z = exp(t): the roundings of t and β move it by 2|t|·(1 - σ(t)) relatively,
    exp by L·(1 - σ(t)), the addition, division and product by 3: E = |grad|·((2|t| + L)·(1 - σ(t)) + 3).

    Near the switch point the branch itself depends on how β·x was rounded: the declaration
    accepts either branch there, so within 4u·|threshold| of it the log branch's bound applies.
    """
    t = softplus_product(x, beta)
    s = sigmoid(t)
    with np.errstate(invalid="ignore"):
        linear = (t > threshold) & ~(np.abs(t - threshold) <= 4 * u * abs(threshold))
    ay = np.abs(y)
    with np.errstate(invalid="ignore", over="ignore"):
        e_y = np.where(linear, 0.0, 2 * s * np.abs(x) + (_L + 1) * ay + _L * s / beta)
        if g is None:
            return e_y, None
        grad = np.abs(softplus_vjp(x, g, beta, threshold))
        e_g = np.where(linear, 0.0, grad * ((2 * np.abs(t) + _L) * sigmoid(-t) + 3))
    return e_y, e_g


# -- Tanhshrink ------------------------------------------------------------------------------------

def tanhshrink(x: np.ndarray) -> np.ndarray:
    """y = x - tanh(x) (exact subtraction by Sterbenz where it cancels; ±inf at ±inf)."""
    return x - np.tanh(x)


def tanhshrink_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g·tanh²(x)."""
    return g * np.tanh(x) ** 2


def tanhshrink_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None,
                     u: float) -> tuple[np.ndarray, np.ndarray | None]:
    """y = x - tanh(x) computed directly (PyTorch): the error of tanh, E = L·|tanh(x)|, in the
    magnitude of the term: near 0, where y ≈ x³/3, the relative error is ≈ 3L/x² and conforms.

    Backward as autograd forms it, g - g·(1 - t²), t = tanh(x): the computed t moves 1 - t² by
    2|t|·(E_t + |t|), plus the roundings of t², of the subtraction and of the product; the final
    subtraction cancels near 0 (its terms are ≈ |g|): E = |g|·(2|t|·(E_t + |t|) + t² + 2|1 - t²|).
    """
    t = np.tanh(x)
    e_t = saturating_error(t, _tanh_distance(x), u)
    if g is None:
        return e_t, None
    at = np.abs(t)
    return e_t, np.abs(g) * (2 * at * (e_t + at) + at * at + 2 * np.abs(1 - t * t))


# -- Softsign --------------------------------------------------------------------------------------

def softsign(x: np.ndarray) -> np.ndarray:
    """y = x/(1 + |x|); ±1 at ±inf."""
    with np.errstate(invalid="ignore"):
        return _limits(x, x / (1 + np.abs(x)), 1.0, -1.0)


def softsign_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g/(1 + |x|)² (0 at ±inf)."""
    with np.errstate(over="ignore"):
        return g / (1 + np.abs(x)) ** 2


def softsign_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None,
                   u: float) -> tuple[np.ndarray, np.ndarray | None]:
    """y = x/b, b = 1 + |x|: E_y = |y| (the rounding of b).

    Backward as autograd forms it (PyTorch's softsign is x/(|x| + 1)): g/b - sign(x)·g·(x/b)/b, two
    terms T1 = |g|/b (2 roundings) and T2 = |g|·|y|/b (4 roundings) that cancel for large |x|:
    E = 2·T1 + 4·T2; the direct g/b² (3 roundings) is within it.
    """
    e_y = np.abs(y)
    if g is None:
        return e_y, None
    with np.errstate(over="ignore"):
        b = 1 + np.abs(x)
        ag = np.abs(g)
        return e_y, 2 * ag / b + 4 * ag * np.abs(y) / b


# -- GELU ------------------------------------------------------------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_KAPPA = 0.044715


def gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    """GELU: x·Φ(x) ("none") or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) ("tanh"), the latter as
    x·σ(2·inner) (no cancellation for negative x). Limits: +inf at +inf, 0 at -inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            value = x * sigmoid(2 * _gelu_inner(x))
        elif approximate == "none":
            value = x * normal_cdf(x)
        else:
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
    return _limits(x, value, np.inf, -0.0)


def _gelu_inner(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return _SQRT_2_OVER_PI * (x + _KAPPA * x ** 3)


def gelu_vjp(x: np.ndarray, g: np.ndarray, approximate: str) -> np.ndarray:
    """dL/dx = g·(Φ(x) + x·φ(x)) ("none") or g·(σ(2w) + 2x·σ(2w)σ(-2w)·w'(x)), w the tanh
    argument ("tanh"). Limits: g at +inf, 0 at -inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            w = _gelu_inner(x)
            s, sn = sigmoid(2 * w), sigmoid(-2 * w)
            dw = _SQRT_2_OVER_PI * (1 + 3 * _KAPPA * x * x)
            flat = s * sn
            deriv = s + np.where(flat > 0, 2 * x * flat * dw, 0.0)
        else:
            deriv = normal_cdf(x) + np.where(np.isfinite(x), x * normal_pdf(x), 0.0)
    return g * _limits(x, deriv, 1.0, 0.0)


def gelu_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, u: float,
               approximate: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Bounds for the textbook forms PyTorch computes: ``_gelu_erf_error`` or ``_gelu_tanh_error``."""
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            return _gelu_tanh_error(x, y, g, u)
        return _gelu_erf_error(x, y, g, u)


def _gelu_erf_error(x, y, g, u):
    """y = 0.5·x·(1 + erf(z)), z = x·(1/√2): z carries 2 roundings, moving erf by (4/√π)·|z|·e^(-z²);
    erf adds its own error E_erf; 1 + erf one rounding. All in the magnitude of the terms, so the
    cancellation of 1 + erf for negative x (absolute error ≈ L·u·|x|/2) conforms:

        E_y = |x|/2·(E_erf + (4/√π)·|z|·e^(-z²) + (1 + erf z)) + |y|   (the product).

    Backward g·(cdf + x·pdf), cdf = 0.5·(1 + erf z) (error as above, halved), pdf = exp(-x²/2)·k:
    the rounding of x² moves exp by x²/2 relatively, exp adds L, the constant and the product by x
    2 more; then the sum and the product by g:
    E = |g|·(E_cdf + |x|·φ(x)·(x²/2 + L + 2) + |cdf + x·pdf|).
    """
    z = x / math.sqrt(2.0)
    tail = erfc(np.abs(z))
    erf_z = np.sign(z) * (1 - tail)
    e_erf = saturating_error(erf_z, tail, u) + 4 / math.sqrt(math.pi) * np.abs(z) * np.exp(-z * z)
    e_cdf = 0.5 * (e_erf + (1 + erf_z))
    e_y = np.abs(x) * e_cdf + np.abs(y)
    if g is None:
        return e_y, None
    xpdf = np.abs(x) * normal_pdf(x)
    e_pdf = np.where(xpdf > 0, xpdf * (x * x / 2 + _L + 2), 0.0)
    return e_y, np.abs(g) * (e_cdf + e_pdf + np.abs(normal_cdf(x) + np.where(xpdf > 0, x * normal_pdf(x), 0.0)))


def _gelu_tanh_error(x, y, g, u):
    """y = 0.5·x·(1 + t), t = tanh(w), w = k·(x + κ·x³): x³, κ·x³ and the constant carry 4 roundings
    (relative to |κx³|), the sum and k·(...) 3 more relative to |w|: δw = 4k|κx³| + 3|w|; tanh adds
    its own error E_t (exact ±1 once saturated) and 1 + t one rounding:

        E_y = |x|/2·(E_t + (1 - t²)·δw + (1 + t)) + |y|.

    Backward (PyTorch): g·(0.5·(1 + t) + 0.5x·(1 - t²)·w'), w' = k·(1 + 3κx²), with 1 - t² formed
    from the computed t (2|t|·δt + t² + |1 - t²|), w' carrying 5 roundings and two products:
    E = |g|·(0.5·(δt + (1 + t)) + |x|/2·(δ(1-t²)·|w'| + (1 - t²)·5|w'|) + 2|R| + |LD + R|),
    with R = 0.5x·(1 - t²)·w' and LD = 0.5·(1 + t). Once t saturates, 1 - t² is computed as 0 and
    its error is the exact (tiny) 1 - t², so the x³ growth of w' does not blow the bound up.
    """
    w = _gelu_inner(x)
    s, sn = sigmoid(2 * w), sigmoid(-2 * w)
    t = s - sn
    one_minus_t2 = 4 * s * sn
    dw = 4 * _SQRT_2_OVER_PI * np.abs(_KAPPA * x ** 3) + 3 * np.abs(w)
    distance = 2 * np.minimum(s, sn)
    saturated = distance < u / 2
    e_t = saturating_error(t, distance, u) + np.where(one_minus_t2 > 0, one_minus_t2 * dw, 0.0)
    one_plus_t = 2 * s
    e_ld = 0.5 * (e_t + one_plus_t)
    e_y = np.abs(x) * e_ld + np.abs(y)
    if g is None:
        return e_y, None
    at = np.abs(t)
    wp = _SQRT_2_OVER_PI * (1 + 3 * _KAPPA * x * x)
    e_td = np.where(saturated, one_minus_t2 / u, 2 * at * e_t + at * at + one_minus_t2)
    r = np.where(one_minus_t2 > 0, 0.5 * x * one_minus_t2 * wp, 0.0)
    e_r = 0.5 * np.abs(x) * np.where(e_td > 0, e_td * wp, 0.0) + np.where(
        one_minus_t2 > 0, 0.5 * np.abs(x) * one_minus_t2 * 5 * wp, 0.0) + 2 * np.abs(r)
    return e_y, np.abs(g) * (e_ld + e_r + np.abs(0.5 * one_plus_t + r))
