"""The element-by-element verdict of one compared tensor, given its bound.

NumPy only, no other import: the comparison engine uses it, and every repro script carries its
source verbatim, so a repro judges exactly as the suite did.

Floats: NaN positions must match; ±inf positions and signs must match, where a finite reference
beyond the format's largest value legitimately overflows to inf of its sign; finite values must
lie within ``allowed`` (per element). An allowed error of -0.0 (negative zero) marks an element
that must be bit-exact including the sign of a zero (copies and selections keep it: torch's
ReLU(-0.0) is -0.0). Integers and booleans must be equal.
"""

from __future__ import annotations

import numpy as np


def judge_floats(ref: np.ndarray, got: np.ndarray, allowed: np.ndarray, max_value: float,
                 unit_roundoff: float) -> dict[str, np.ndarray]:
    """Masks and errors of a float comparison (all arrays of ``ref``'s shape).

    Returns ``nan_bad``, ``inf_bad``, ``value_bad``, ``zero_sign_bad`` (a zero of the wrong sign
    where ``allowed`` is -0.0), ``bad`` (their union), ``err`` (|got - ref| at finite positions,
    else 0), ``ratio`` (err / allowed; inf at a pattern or sign mismatch or a non-zero error where
    nothing is allowed) and ``ref`` (the reference with overflow applied).
    """
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    allowed = np.asarray(allowed, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        overflow = np.isfinite(ref) & (np.abs(ref) > max_value * (1 + unit_roundoff))
        ref = np.where(overflow, np.sign(ref) * np.inf, ref)
        nan_bad = np.isnan(ref) != np.isnan(got)
        inf_bad = (np.isinf(ref) | np.isinf(got)) & ~(np.isnan(ref) | np.isnan(got)) & (ref != got)
        finite = np.isfinite(ref) & np.isfinite(got)
        err = np.where(finite, np.abs(got - ref), 0.0)
        value_bad = finite & (err > allowed)
        ratio = np.where(allowed > 0, err / np.where(allowed > 0, allowed, 1.0), np.where(err > 0, np.inf, 0.0))
        signed = (allowed == 0) & np.signbit(allowed)
        zero_sign_bad = signed & (ref == 0) & (got == 0) & (np.signbit(ref) != np.signbit(got))
        ratio = np.where(nan_bad | inf_bad | zero_sign_bad, np.inf, ratio)
    return {"nan_bad": nan_bad, "inf_bad": inf_bad, "value_bad": value_bad, "zero_sign_bad": zero_sign_bad,
            "bad": nan_bad | inf_bad | value_bad | zero_sign_bad, "err": err, "ratio": ratio, "ref": ref}


def judge_exact(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Mismatch mask of an integer or boolean comparison."""
    ref = np.asarray(ref)
    return ref != np.asarray(got).astype(ref.dtype)
