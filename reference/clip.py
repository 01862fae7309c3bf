"""torch.nn.utils' gradient clipping: total norms, clipping by norm and by value.

The total norm is the p-norm of all gradient elements taken together (equal to the p-norm of the
per-tensor p-norms): T = (Σ |g|^p)^(1/p), max |g| for p = inf. ``clip_grads_with_norm_`` multiplies
every gradient by c = min(max_norm / (T + 1e-6), 1): scaled down when T exceeds max_norm (slightly
below it too, because of the 1e-6), left unchanged otherwise; ``clip_grad_norm_`` is
``get_total_norm`` followed by it. A NaN anywhere makes T NaN (and c NaN: every gradient becomes
NaN); an infinite element makes T inf and c 0 (finite elements become 0, infinite ones NaN). No
gradient at all gives T = 0. ``clip_grad_value_`` clamps every element into [-clip_value,
clip_value] (NaN stays NaN; a negative clip_value sets every element to clip_value, torch.clamp's
rule for min > max).

torch modifies gradients in place and returns None (or the total norm); these functions return
the new gradients instead. A parameter's gradient is an array, or None for a parameter without
one (it is left as it is and takes no part in the norm).

The error analyses of the norm (in units of the unit roundoff u of the gradients' format) sit at
the end of this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from reference.registry import functional

EPS = 1e-6  # torch adds it to the total norm before dividing

Grads = Sequence["np.ndarray | None"]


def _present(grads: Grads | np.ndarray) -> list[np.ndarray]:
    """The gradients that exist (a single array is a list of one, as torch takes a single tensor)."""
    if isinstance(grads, np.ndarray):
        return [grads]
    return [np.asarray(g, dtype=np.float64) for g in grads if g is not None]


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


def _norm_type(norm_type: float | str) -> float:
    """torch's ``float(norm_type)``: the string 'inf' is the infinity norm."""
    p = float(norm_type)
    if not (p > 0):
        raise ValueError(f"norm_type must be positive (or inf), got {norm_type!r}")
    return p


def _tensors_example(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal((2, 3)), rng.standard_normal(4)]


@functional(example=lambda rng: ((_tensors_example(rng),), {"norm_type": 3.0}))
def get_total_norm(tensors: Grads | np.ndarray, norm_type: float | str = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> np.ndarray:
    """torch.nn.utils.get_total_norm: T = ‖all elements of ``tensors``‖_p as a 0-d array.

    ``tensors``: arrays (or one array) of any shapes; ``norm_type`` p > 0, or inf / 'inf' (max |g|).
    T = (Σ |g|^p)^(1/p) over every element of every tensor (the p-norm of the per-tensor p-norms);
    no tensor at all gives 0. NaN anywhere gives NaN, an infinite element (with no NaN) inf.
    ``error_if_nonfinite``: a NaN or infinite T raises ValueError. ``foreach`` selects torch's
    implementation only."""
    grads = _present(tensors)
    total = total_norm(grads, _norm_type(norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise ValueError(f"the total norm of order {norm_type} is non-finite and error_if_nonfinite is set")
    return np.array(total)


@functional(example=lambda rng: (([rng.standard_normal(3), None, rng.standard_normal((2, 2))], 0.5,
                                  np.array(2.0)), {}))
def clip_grads_with_norm_(parameters: Grads, max_norm: float, total_norm: np.ndarray,
                          foreach: bool | None = None) -> list[np.ndarray | None]:
    """torch.nn.utils.clip_grads_with_norm_: every gradient times c = min(max_norm / (T + 1e-6), 1)
    with the given total norm T (a 0-d array; any value: a negative T or max_norm gives a negative
    c, NaN gives NaN gradients, inf gives c = 0 and inf·0 = NaN).

    ``parameters``: the gradients (None: a parameter without one, returned as None). Returns the
    gradients after the call, same shapes. A ``total_norm`` that is not an array raises TypeError."""
    if not isinstance(total_norm, np.ndarray):
        raise TypeError(f"total_norm must be an array (a tensor), got {type(total_norm).__name__}")
    coef = clip_coefficient(float(max_norm), float(total_norm))
    return [None if g is None else clip([g], coef)[0] for g in parameters]


@functional(example=lambda rng: (([rng.standard_normal(3), rng.standard_normal((2, 2))], 0.5), {"norm_type": 2.0}))
def clip_grad_norm_(parameters: Grads, max_norm: float, norm_type: float | str = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None
                    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """torch.nn.utils.clip_grad_norm_: ``get_total_norm`` of the gradients that exist, then
    ``clip_grads_with_norm_`` with it. Returns (T as a 0-d array, the gradients after the call);
    ``parameters`` as for ``clip_grads_with_norm_``."""
    total = get_total_norm(_present(parameters), norm_type, error_if_nonfinite)
    return total, clip_grads_with_norm_(parameters, max_norm, total)


@functional(example=lambda rng: (([rng.standard_normal(5), None], 0.5), {}))
def clip_grad_value_(parameters: Grads, clip_value: float, foreach: bool | None = None) -> list[np.ndarray | None]:
    """torch.nn.utils.clip_grad_value_: every gradient element clamped into [-clip_value, clip_value]
    (torch.clamp's rules: NaN stays NaN; with clip_value < 0, min > max and every element becomes
    clip_value; clip_value = inf changes nothing). ``parameters`` as for ``clip_grads_with_norm_``;
    returns the gradients after the call."""
    c = float(clip_value)
    out: list[np.ndarray | None] = []
    for g in parameters:
        if g is None:
            out.append(None)
            continue
        g = np.asarray(g, dtype=np.float64)
        clamped = np.where(g < -c, -c, g)  # clamp_min, then clamp_max (NaN compares false: kept)
        out.append(np.where(clamped > c, c, clamped))
    return out


# -- error analysis of the total norm (units of u) --------------------------------------------------

def level_error(p: float, k: int, s: float) -> float:
    """Relative error bound (units of u) of one norm level over k terms whose p-th powers sum to s:
    the p-th powers (exact for p = 1, one rounding for p = 2, pow's <= 2 ulps otherwise), the sum
    (2√k), the root (divides a relative error by p, adds one rounding, and |ln s|/p for an exponent
    1/p that is not a power of two), and the rounding of the level's result."""
    c_pow = 0.0 if p == 1 else 1.0 if p == 2 else 2.0
    exponent = 0.0 if p in (1.0, 2.0) or not (s > 0 and np.isfinite(s)) else abs(math.log(s)) / p
    return (2 * math.sqrt(max(k, 1)) + c_pow) / p + 2 + exponent


def norm_error(grads: Sequence[np.ndarray], norm_type: float, u: float, tiny: float, accumulation_tiny: float
               ) -> float:
    """E_T: the relative error bound of the total norm in units of u (the gradients' format, whose
    smallest subnormal is ``tiny``; p-th powers accumulate in a format whose smallest subnormal is
    ``accumulation_tiny``).

    torch forms each tensor's norm n_i (one level over its K_i elements), rounds it, then the norm
    of the m per-tensor norms (a second level). Rounding n_i perturbs T relatively by the same
    amount (T is monotone and homogeneous of degree 1 in the n_i). Gradual underflow of the powers
    adds (1/p)·K·tiny_acc/S, and a T below the normal range half a subnormal spacing relative to T.
    p = inf is exact (a max)."""
    p = norm_type
    if np.isinf(p) or not grads:
        return 0.0
    sizes = [g.size for g in grads]
    s = power_sum(grads, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        underflow = sum(sizes) * accumulation_tiny / s / p if s > 0 else 0.0
    total = total_norm(grads, p)
    subnormal = tiny / total if total > 0 else 0.0  # T rounded below the normal range
    return level_error(p, max(sizes), s) + level_error(p, len(grads), s) + (float(underflow) + subnormal) / u


def coefficient_error(err_total: float, coef: float, u: float, tiny: float) -> float:
    """E_c: the clipping coefficient's relative error bound in units of u: E_T, three roundings (the
    addition of 1e-6, max_norm's conversion, the division), and the rounding of a coefficient below
    the normal range (absolute: half a subnormal spacing)."""
    return err_total + 3 + (tiny / coef / u if coef > 0 else 0.0)
