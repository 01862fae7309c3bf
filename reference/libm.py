"""Accurate float64 special functions for the activation references, and the libm accuracy model
of their error analyses.

- ``LIBM_ULPS``: a good libm evaluates exp, expm1, log, log1p, tanh and erf to within this many
  units of u, relative to the value (SLEEF's u10 functions and glibc are within 1 ulp; CUDA documents
  2 ulps for expf, tanhf, erff). An ulp is up to 2u relative (just above a power of two), so 2 ulps
  are 4u: an H200 run found tanhf 1.63 ulps (3.3u) from the exact value, within CUDA's 2 ulps.
- Saturating functions (tanh, erf, sigmoid near ±1): once the exact value lies within half an ulp
  of ±1 the libm returns ±1 (it never overshoots); see ``saturating_error``.
"""

from __future__ import annotations

import math

import numpy as np

from reference.registry import functional

LIBM_ULPS = 4.0

_ERFC = np.frompyfunc(math.erfc, 1, 1)  # NumPy has no erfc; math.erfc is accurate to ~1 ulp


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function, elementwise (float64; NaN and ±inf handled by libm)."""
    return np.asarray(_ERFC(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def _sigmoid_vjp(cotangent: np.ndarray, input: np.ndarray) -> dict[str, np.ndarray]:
    """{"input": g·σ(x)·σ(-x)}: 0 at ±inf, NaN at NaN."""
    return {"input": cotangent * sigmoid(input) * sigmoid(-input)}


@functional(vjp=_sigmoid_vjp, example=lambda rng: ((rng.standard_normal((3, 4)) * 4,), {}))
def sigmoid(input: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + exp(-x)), elementwise on any shape (0-d too), without overflow: exp of a
    non-positive argument only. 0 and 1 at ∓inf; NaN propagates. The one sigmoid of the
    reference (losses and recurrent cells import it)."""
    x = input
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def exp_neg_half_square(x: np.ndarray) -> np.ndarray:
    """exp(-x²/2) without the rounding of x² (split x = hi + lo so that hi² is exact)."""
    x = np.asarray(x, dtype=np.float64)
    small = np.where(np.abs(x) < 40.0, x, 0.0)  # beyond 40 the result underflows to 0
    c = 134217729.0 * small  # 2^27 + 1: Dekker's split
    hi = c - (c - small)
    lo = small - hi
    out = np.exp(-0.5 * hi * hi) * np.exp(-(hi * lo + 0.5 * lo * lo))
    return np.where(np.abs(x) < 40.0, out, np.where(np.isnan(x), np.nan, 0.0))


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) = erfc(-x/√2)/2, accurate in both tails (no 1 + erf cancellation)."""
    return 0.5 * erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0))


def normal_pdf(x: np.ndarray) -> np.ndarray:
    """φ(x) = exp(-x²/2)/√(2π)."""
    return exp_neg_half_square(x) / math.sqrt(2.0 * math.pi)


def saturating_error(value: np.ndarray, distance: np.ndarray, u: float) -> np.ndarray:
    """Error (units of u) of a libm evaluation of a function saturating at ±1 (tanh, erf), given
    its exact value and the exact ``distance`` = 1 - |value|: LIBM_ULPS·|value| in general, and
    ``distance``/u once the exact value is within half an ulp of ±1, where the libm must return ±1.

    Without the saturation rule a faithful tanh could return 1 - u for a huge argument; formulas
    that multiply 1 - tanh² by x³ (GELU's tanh approximation) would then be off by O(x³·u).
    """
    with np.errstate(invalid="ignore"):
        return np.where(distance < u / 2, distance / u, LIBM_ULPS * np.abs(value))
