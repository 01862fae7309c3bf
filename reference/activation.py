"""Piecewise activations (ReLU, ReLU6, Hardtanh, Threshold, LeakyReLU, PReLU, Softshrink) and the
exponential-linear units (ELU, SELU), with their VJPs and first-order error analyses.

Shapes: every function is elementwise on an array of any shape (0-d allowed); PReLU's weight
broadcasts along dim 1 (the channel dim) of inputs of rank >= 2 and is a single value below.

Conventions (PyTorch's, stated once here and in each declaration):
- Gradients at kinks: ReLU'(0) = 0; ReLU6 and Hardtanh have derivative 0 at both boundaries;
  Threshold's is 0 at x == threshold; LeakyReLU and PReLU use the negative slope at 0;
  Softshrink's is 0 at ±lambd; ELU's is alpha at 0 and SELU's scale·alpha.
- NaN propagates through the forward and, in the reference, through the gradient (a backend may
  instead return the cotangent times the slope of one of the branches: see the declarations).
- At ±inf every function and derivative takes its limit (0·x with a zero slope is 0 at -inf).

Error analyses (``*_error``) return per-element bounds in units of the unit roundoff u of the
format the backend computes in, EXCLUDING the final rounding of the result (the tolerance engine
adds u·|ref| for it). Every libm evaluation (exp, expm1, log1p, tanh, erf) is taken to be accurate
to ``LIBM_ULPS`` units of u; a parameter given as a Python float may be rounded once to the format
(relative error u). The tolerance engine sets error terms at non-finite inputs aside: there the
result must be exact.
"""

from __future__ import annotations

import numpy as np

from reference.libm import LIBM_ULPS
from reference.softmax import softmax, softmax_axis, softmax_implicit_dim, softmax_vjp  # noqa: F401 (re-exported)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _nan_to(x: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``value`` with NaN wherever ``x`` is NaN (NaN propagation)."""
    return np.where(np.isnan(x), np.nan, value)


# -- ReLU, ReLU6, Hardtanh, Threshold ----------------------------------------------------------

def relu(x: np.ndarray) -> np.ndarray:
    """y = max(x, 0), elementwise; any shape. NaN propagates."""
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))


def relu_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g·[x > 0]; 0 at the kink x = 0; NaN at NaN."""
    return _nan_to(x, np.where(x > 0, g, 0.0))


def hardtanh(x: np.ndarray, min_val: float, max_val: float) -> np.ndarray:
    """y = min(max(x, min_val), max_val) (min_val < max_val); NaN propagates. ReLU6 is (0, 6)."""
    if not min_val < max_val:
        raise ValueError(f"Hardtanh needs min_val < max_val, got {min_val} and {max_val}")
    return np.clip(x, min_val, max_val)


def hardtanh_vjp(x: np.ndarray, g: np.ndarray, min_val: float, max_val: float) -> np.ndarray:
    """dL/dx = g·[min_val < x < max_val]: 0 at both boundaries; NaN at NaN."""
    return _nan_to(x, np.where((x > min_val) & (x < max_val), g, 0.0))


def threshold(x: np.ndarray, threshold: float, value: float) -> np.ndarray:
    """y = x if x > threshold else value; NaN propagates (the documented formula read literally
    would give ``value`` at NaN; PyTorch propagates)."""
    return np.where(x > threshold, x, np.where(np.isnan(x), x, value))


def threshold_vjp(x: np.ndarray, g: np.ndarray, threshold: float) -> np.ndarray:
    """dL/dx = g·[x > threshold]: 0 at x == threshold; NaN at NaN."""
    return _nan_to(x, np.where(x > threshold, g, 0.0))


# -- LeakyReLU, PReLU ----------------------------------------------------------------------------

def leaky_relu(x: np.ndarray, slope: np.ndarray | float) -> np.ndarray:
    """y = x if x > 0 else slope·x (slope broadcast against x). A zero slope gives 0 at -inf
    (the limit), not 0·(-inf) = NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        neg = np.where(np.asarray(slope) == 0, 0.0, slope * x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, neg))


def leaky_relu_vjp(x: np.ndarray, g: np.ndarray, slope: np.ndarray | float) -> np.ndarray:
    """dL/dx = g if x > 0 else slope·g: the slope at the kink x = 0; NaN at NaN."""
    return _nan_to(x, np.where(x > 0, g, slope * g))


def prelu_weight_view(w: np.ndarray, ndim: int) -> np.ndarray:
    """PReLU's weight (num_parameters,) shaped to broadcast along dim 1 of a rank-``ndim`` input
    (a single value for num_parameters = 1 or ranks below 2)."""
    if w.size == 1:
        return w.reshape(())
    if ndim < 2:
        raise ValueError(f"PReLU with {w.size} parameters needs an input of rank >= 2 (channel dim 1)")
    return w.reshape((w.size,) + (1,) * (ndim - 2))


def prelu_check(x: np.ndarray, w: np.ndarray) -> None:
    """num_parameters is 1 or the channel count: x.shape[1] for rank >= 2, else 1 (PyTorch: an
    input of rank < 2 has no channel dim; a 0-d input needs num_parameters = 1)."""
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.ndim != 1 or w.size not in (1, channels):
        raise ValueError(f"PReLU: {w.size} parameters for {channels} channels")


def prelu(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """y = x if x > 0 else w[c]·x, c the channel (dim 1)."""
    prelu_check(x, w)
    return leaky_relu(x, prelu_weight_view(w, x.ndim))


def prelu_vjp(x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dw): dL/dx = g if x > 0 else w[c]·g; dL/dw[c] = Σ over the channel of g·x where
    x <= 0 (all elements when num_parameters = 1). NaN inputs make both NaN."""
    wv = prelu_weight_view(w, x.ndim)
    gx = leaky_relu_vjp(x, g, wv)
    with np.errstate(invalid="ignore"):
        terms = np.where(x > 0, 0.0, g * x)
    if w.size == 1:
        gw = np.atleast_1d(np.sum(terms))
    else:
        gw = np.sum(terms, axis=tuple(i for i in range(x.ndim) if i != 1))
    return gx, gw.reshape(w.shape)


def prelu_weight_grad_magnitude(x: np.ndarray, w: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Σ|g·x| over x <= 0 per weight: the magnitude of the sum dL/dw (its absref)."""
    _, gw = prelu_vjp(np.where(x > 0, x, -np.abs(x)), w, np.abs(g))
    return np.abs(gw)


# -- Softshrink ------------------------------------------------------------------------------------

def softshrink(x: np.ndarray, lambd: float) -> np.ndarray:
    """y = x - lambd if x > lambd, x + lambd if x < -lambd, else 0 (lambd >= 0); NaN propagates."""
    if not lambd >= 0:
        raise ValueError(f"Softshrink needs lambd >= 0, got {lambd}")
    y = np.where(x > lambd, x - lambd, np.where(x < -lambd, x + lambd, 0.0))
    return _nan_to(x, y)


def softshrink_vjp(x: np.ndarray, g: np.ndarray, lambd: float) -> np.ndarray:
    """dL/dx = g·[|x| > lambd]: 0 at ±lambd; NaN at NaN."""
    return _nan_to(x, np.where(np.abs(x) > lambd, g, 0.0))


# -- ELU, SELU -------------------------------------------------------------------------------------

def elu(x: np.ndarray, alpha: float, scale: float = 1.0) -> np.ndarray:
    """y = scale·x if x > 0 else scale·alpha·(exp(x) - 1); SELU is (SELU_ALPHA, SELU_SCALE).
    Limits: -scale·alpha at -inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x > 0, scale * x, scale * alpha * np.expm1(np.minimum(x, 0.0)))


def elu_vjp(x: np.ndarray, g: np.ndarray, alpha: float, scale: float = 1.0) -> np.ndarray:
    """dL/dx = scale·g if x > 0 else scale·alpha·exp(x)·g: scale·alpha at the kink x = 0, 0 at -inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _nan_to(x, np.where(x > 0, scale * g, scale * alpha * np.exp(np.minimum(x, 0.0)) * g))


def elu_error(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, alpha: float,
              scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """First-order error bounds (units of u, final rounding excluded) of ELU/SELU and its VJP.

    Negative branch y = c·(e - 1), c = scale·alpha (a constant rounded once, possibly formed from
    two rounded factors), e = exp(x): exp contributes L·|c|·e^x, the subtraction u·|e^x - 1| times
    |c|, the constant 2|y|. The textbook exp(x) - 1 cancels for small |x| (torch uses expm1);
    the bound is in the magnitude of the terms, |c|·(L·e^x + |e^x - 1|) + 2|y|, so a backend
    using either form conforms. Positive branch: scale·x, |y| for a rounded scale (0 for ELU).

    Gradient, negative branch: directly g·c·e^x (L + 2 roundings: (L + 2)|grad|) or, as torch does
    in place, from the output, g·(y + c): the computed y (E_y + |y|), the constant |c| and the
    addition |y + c|, times |g|. A backend may use either: the larger bound applies.
    """
    lib = LIBM_ULPS
    c = abs(scale * alpha)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(np.minimum(x, 0.0))
        pos_out = np.abs(y) if scale != 1.0 else np.zeros_like(y)
        neg_out = c * (lib * e + np.abs(np.expm1(np.minimum(x, 0.0)))) + 2 * np.abs(y)
        e_out = np.where(x > 0, pos_out, neg_out)
        if g is None:
            return e_out, None
        ag = np.abs(g)
        grad = np.abs(elu_vjp(x, g, alpha, scale))
        direct = (lib + 2) * grad
        from_output = ag * (neg_out + np.abs(y) + c + np.abs(y + scale * alpha))
        pos_grad = grad if scale != 1.0 else np.zeros_like(grad)
        e_grad = np.where(x > 0, pos_grad, np.maximum(direct, from_output))
    return e_out, e_grad

