"""The tolerance model: per-element error bounds derived from unit roundoff and reduction length.

For a tensor computed by reductions of length K in a format of unit roundoff u (the backend may
accumulate in that format, in any order), the forward error of each element is bounded by

    |got - ref| <= out_ulps·u·|ref| + c·√K·u·absref + K·tiny + u₆₄·|ref|

where absref is the same computation carried out on absolute values (|W|·|X| for a matrix
product), tiny the format's smallest subnormal (underflow) and u₆₄·|ref| the float64 reference's
own final rounding (it matters for float64 cases only). The √K growth is the standard
probabilistic bound for rounding errors in a sum (Higham & Mary 2019); c covers the product
rounding and the final rounding. No tolerance in nnconform is a free-standing number: each one is
this formula, with K and absref taken from the layer's declaration.

A result below the smallest normal number may also be flushed to zero (hardware FTZ modes), so
there the bound is at least |ref|.

In the exact tier, inputs and cotangents are small integers. Wherever absref <= 2^p (p the
precision), every partial sum in every order is an integer that the format represents exactly, so
the result must be bit-exact ("bitwise") or exact up to one final rounding ("rounded").

Gradient accumulation: a case whose call presets ``.grad`` to G (``call["grad_init"]``) gets back
fl(G + grad). The comparison judges got - G (exact in float64) against the reference gradient, and
the bound of each element grows by the one extra rounding of the sum, u·(|G + ref| + |ref|)
(the second term covers the float64 subtraction of G), except where the gradient is exact and
G + ref is representable: there the accumulated value is exact too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Tolerance

# The reference computes in float64: its results carry their own final rounding.
REFERENCE_ROUNDOFF = 2.0**-53
_FLOAT64_MAX = float(np.finfo(np.float64).max)


@dataclass
class Bound:
    """Allowed absolute error per element, and whether the bound is an exactness claim."""

    allowed: np.ndarray
    exact: np.ndarray  # bool mask: elements that must match exactly (up to ``rounded``)
    reduction_length: int


def _abs_case(case: Case, tol: Tolerance) -> Case:
    names = tol.abs_inputs
    inputs = {
        k: (np.abs(v) if v.dtype.kind == "f" and (names is None or k in names) else v)
        for k, v in case.inputs.items()
    }
    return replace(case, inputs=inputs, cotangents={k: np.abs(v) for k, v in case.cotangents.items()})


def magnitudes(spec: LayerSpec, case: Case, ref: Result) -> dict[str, np.ndarray]:
    """absref for every tensor of ``ref``, as each tensor's policy asks."""
    tensors = ref.tensors()
    out: dict[str, np.ndarray] = {}
    abs_results: dict[tuple[str, ...] | None, dict[str, np.ndarray]] = {}
    for name, value in tensors.items():
        tol = spec.tolerance_for(name)
        if callable(tol.magnitude):
            custom = tol.magnitude(case, ref)
            out[name] = np.abs(np.asarray(custom[name], dtype=np.float64))
        elif tol.magnitude == "abs":
            key = tol.abs_inputs
            if key not in abs_results:
                abs_case = _abs_case(case, tol)
                abs_results[key] = spec.evaluate(abs_case, abs_case.cotangents).tensors()
            out[name] = np.abs(abs_results[key].get(name, value)).astype(np.float64)
        elif tol.magnitude == "ref":
            out[name] = np.abs(value).astype(np.float64)
        else:
            raise ValueError(f"{spec.name}: unknown magnitude policy {tol.magnitude!r}")
    return out


def accumulated_offset(case: Case, tensor: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """G, the ``.grad`` an accumulating case presets on the input of gradient ``tensor``
    (``grad.<input>``), when the case accumulates into it; else None."""
    grad_init = (case.call or {}).get("grad_init")
    if not grad_init or not tensor.startswith("grad."):
        return None
    name = tensor[len("grad."):]
    if name not in grad_init.get("scale", {}):
        return None
    from backends.torch_call import initial_grad

    return initial_grad(grad_init, name, shape)


def bound_for(spec: LayerSpec, case: Case, tensor: str, ref: np.ndarray, absref: np.ndarray) -> Bound:
    """The per-element bound for one compared tensor (see the module docstring)."""
    tol = spec.tolerance_for(tensor)
    dt = DTYPES[case.dtype]
    u = dt.unit_roundoff
    k = max(tol.reduction_length(case, tensor), 1)
    with np.errstate(invalid="ignore", over="ignore"):
        aref = np.where(np.isfinite(ref), np.abs(ref), 0.0)
        # A magnitude past float64's range (|W|·|X| or an analysed bound in units of u overflowed) is
        # carried as the largest float64: a bound at most the analysed one, never looser.
        amag = np.where(np.isnan(absref), 0.0, np.minimum(np.abs(absref), _FLOAT64_MAX))
        rounding = tol.out_ulps * u * aref
        # + the reference's own final rounding (it computes in float64): negligible below float64,
        # one more ulp for float64 cases, where both sides round alike.
        allowed = rounding + tol.c * np.sqrt(k) * u * amag + k * dt.min_subnormal + REFERENCE_ROUNDOFF * aref
    if tol.exact == "always":
        exact = np.ones(ref.shape, dtype=bool)
    elif tol.exact in ("bitwise", "rounded") and case.tier == "exact":
        limit = dt.exact_integer_limit
        scale = amag if tol.exact == "bitwise" else amag * k
        exact = scale <= limit
    else:
        exact = np.zeros(ref.shape, dtype=bool)
    exact_allowed = rounding if tol.exact == "rounded" else np.zeros_like(allowed)
    allowed = np.where(exact, exact_allowed, allowed)
    # A result in the subnormal range may be flushed to zero (FTZ: oneDNN, GPUs): |ref| is allowed.
    allowed = np.where(aref < dt.min_normal, np.maximum(allowed, aref), allowed)
    if tol.exact == "always" and not tensor.startswith("grad."):
        # Copies and selections keep the sign of a zero (ReLU(-0.0) is -0.0): -0.0 tells the judge.
        # A gradient's zeros are g·0 or a literal 0 by formulation, an undocumented choice: not compared.
        allowed = np.where(allowed == 0, -0.0, allowed)
    offset = accumulated_offset(case, tensor, np.shape(ref))
    if offset is not None:  # accumulated into a preset .grad: one more rounding (module docstring)
        with np.errstate(invalid="ignore", over="ignore"):
            total = ref + offset
            part = total - ref  # TwoSum: the float64 sum itself is exact when its error term is 0
            exact_sum = ((ref - (total - part)) + (offset - part)) == 0
            representable = np.isfinite(total) & exact_sum & (dt.round(total) == total)
            extra = u * (np.where(np.isfinite(total), np.abs(total), 0.0) + aref)
        exact = exact & representable
        allowed = allowed + np.where(exact, 0.0, extra)
    return Bound(allowed=allowed, exact=exact, reduction_length=k)


def bound_as_magnitude(err_in_u: np.ndarray, k: int) -> np.ndarray:
    """The absref that makes the tolerance engine's term c·√K·u·absref (with c = 1) equal to
    u·err_in_u, for layers whose magnitude function carries out its own error analysis and
    states the whole first-order bound in units of the unit roundoff u."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(err_in_u, dtype=np.float64) / math.sqrt(max(int(k), 1))


# An error analysis: ``errors(case, result) -> {tensor name: first-order bound of |computed - exact|
# in units of the dtype's unit roundoff u}`` (elementwise, broadcastable to the tensor), for the
# tensors it analyses. Every analysed tolerance in nnconform has this one signature.
ErrorFn = Callable[[Case, Result], Mapping[str, np.ndarray]]


def analysed_tolerance(errors: ErrorFn, length: Callable[[Case, str], int] | int = 1,
                       out_ulps: float = 1.0) -> Tolerance:
    """A float-tier tolerance whose bound is the layer's own first-order error analysis:

        bound = out_ulps·u·|ref| + u·E + K·tiny (+ the reference's own rounding, see ``bound_for``)

    with E = ``errors(case, result)[tensor]`` in units of u, and K (``length``) sizing only the
    underflow allowance K·tiny. A tensor the analysis does not name gets E = 0 (one rounding)."""

    def magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
        analysed = errors(case, result)
        out = {}
        for name, value in result.tensors().items():
            k = length(case, name) if callable(length) else length
            err = analysed.get(name)
            out[name] = np.zeros(np.shape(value)) if err is None else np.broadcast_to(
                bound_as_magnitude(err, k), np.shape(value))
        return out

    return Tolerance(reduction=length, magnitude=magnitude, c=1.0, out_ulps=out_ulps, exact="none")
