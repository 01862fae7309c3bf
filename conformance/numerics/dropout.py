"""Tolerances, comparators, randomness and known-entry predicates of the dropout family.

- Masks. A dropout mask is read as the output's non-zero elements (random cases draw non-zero
  inputs); an alpha-dropout mask as the output's elements that are not the dropped value
  a·(−λα) + b (``alpha_keep``: random cases keep inputs away from −λα, so the two never come within
  rounding of each other). The conditional reference computes the output and gradient for the
  mask the backend reports, element by element, and returns the mask's canonical form (a unit
  kept only if all of it is): a mask of the wrong structure (an element mask from channel
  dropout) fails ``random.mask`` only.
- Statistics (``randomness``): the drop rate and the independence of the units, along the
  samples of a batch, the channels of a sample and consecutive elements
  (``conformance.stats.mask_checks``), within the target's false-alarm budget.
- Tolerances. Dropout: x·round(1/(1 − p)), two roundings (exact on the exact tier's integers, its
  p keep 1/(1 − p) a power of two). Alpha dropout: ``alpha_errors``, the first-order analysis of
  x·round(a) + round(b). The deterministic points (identity, input·0) are copies: bit for bit,
  the sign of zero included (``deterministic_exact``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Randomness, Tolerance
from conformance.stats import StatCheck, UnitMask, element_axes, mask_checks
from conformance.strategies.dropout import is_random
from conformance.tolerance import analysed_tolerance, magnitudes
from reference import dropout as ref

# Copies: bit for bit, the sign of zero included (the identity, input·0 at p = 1).
EXACT = Tolerance(magnitude="ref", exact="always")
# Dropout's random points: x·round(1/(1 - p)), two roundings of a single product: |δ| <= 2u·|ref|;
# exact on integers when 1/(1 - p) is a power of two (the exact tier draws only those p).
DROPOUT_TOLERANCE = Tolerance(magnitude="ref", out_ulps=1.0, c=1.0, exact="bitwise")
INDEPENDENCE_OF_ELEMENTS = ("samples", "channels", "consecutive elements")
INDEPENDENCE_OF_CHANNELS = ("samples", "channels")


def function_of(case: Case) -> str:
    """The ``reference.functional`` name of the case's layer (Dropout2d -> dropout2d)."""
    return {"AlphaDropout": "alpha_dropout", "FeatureAlphaDropout": "feature_alpha_dropout"}.get(
        case.op, case.op.lower())


def is_alpha(case: Case) -> bool:
    return case.op in ("AlphaDropout", "FeatureAlphaDropout")


def unit_dims(case: Case) -> int:
    """How many leading dims of the input index its independent units (``reference.dropout.unit_dims``)."""
    return ref.unit_dims(function_of(case), case.inputs["input"].ndim)


def deterministic(case: Case) -> bool:
    return not is_random(case)


# -- masks ----------------------------------------------------------------------------------------

def alpha_dropped_error(case: Case) -> float:
    """Bound (in units of u) on the error of the dropped value a·(−λα) + b as a backend computes
    it: λα·a and λα·a·p each rounded twice (a scalar in the op's format, then the dtype), the sum
    rounded once (see ``alpha_errors``)."""
    a, b, dropped = ref.alpha_dropout_coefficients(case.params["p"])
    return 2 * abs(ref.ALPHA_PRIME * a) + 2 * abs(b) + abs(dropped)


def alpha_keep(case: Case, values: np.ndarray) -> np.ndarray:
    """An alpha-dropout output read back as its keep mask: an element is dropped when it lies within
    four times the dropped value's error bound of a·(−λα) + b; a kept a·x + b lies at least
    a·ALPHA_MARGIN away (random cases draw |x + λα| >= ALPHA_MARGIN)."""
    dropped = ref.alpha_dropout_coefficients(case.params["p"])[2]
    tol = 4 * alpha_dropped_error(case) * DTYPES[case.dtype].unit_roundoff
    with np.errstate(invalid="ignore"):
        return ~(np.abs(np.asarray(values, dtype=np.float64) - dropped) <= tol)


def reported_keep(case: Case) -> np.ndarray:
    """The element keep mask the backend reported (all kept before anything is reported)."""
    x = case.inputs["input"]
    reported = case.choices.get("mask")
    if reported is None:
        return np.ones(x.shape, dtype=bool)
    return alpha_keep(case, reported) if is_alpha(case) else np.asarray(reported, dtype=bool)


def canonical_keep(case: Case, keep: np.ndarray) -> np.ndarray:
    return ref.canonical_mask(keep, unit_dims(case))


def sample(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Choices as a conforming backend reports them: each unit kept with probability 1 − p,
    independently; for alpha dropout, the output itself (rounded to the dtype)."""
    x = case.inputs["input"]
    units = rng.random(ref.unit_shape(x.shape, unit_dims(case))) >= case.params["p"]
    keep = np.broadcast_to(units, x.shape).copy()
    if not is_alpha(case):
        return {"mask": keep}
    y = getattr(ref, function_of(case))(x, case.params["p"], True, mask=keep)
    return {"mask": DTYPES[case.dtype].round(y)}


def _units(case: Case, keep: np.ndarray) -> UnitMask:
    """A case's mask reduced to its units (one value per unit), with its independence axes."""
    k = unit_dims(case)
    keep = np.asarray(keep, dtype=bool)
    units = keep[tuple([slice(None)] * k + [0] * (keep.ndim - k))]
    if k == keep.ndim:
        axes = element_axes(k)
    else:
        axes = {"samples": 0, "channels": 1} if k == 2 else {"channels": 0}
    return UnitMask(units, 1 - float(case.params["p"]), axes)


def randomness(op: str) -> Randomness:
    """How the entry's random choice is read back and judged: dropout masks as the output's
    non-zero elements, alpha-dropout masks as the output's values (``alpha_keep``)."""
    alpha = op in ("AlphaDropout", "FeatureAlphaDropout")
    how = (lambda case: {"rule": "value", "of": "output"}) if alpha else "output"
    tests = INDEPENDENCE_OF_ELEMENTS if op in ("Dropout", "AlphaDropout") else INDEPENDENCE_OF_CHANNELS

    def check(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], budget: float) -> list[StatCheck]:
        masks = [_units(case, reported_keep(replace(case, choices=dict(choices)))) for case, choices in samples]
        return mask_checks(masks, tests, budget, unit="units")

    return Randomness(choices={"mask": how}, sample=sample, check=check, deterministic=deterministic)


# -- tolerances -----------------------------------------------------------------------------------

def alpha_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """First-order error bound of alpha dropout's random points, in units of u (the output's own
    final rounding is the tolerance's out_ulps term):

    - kept, y = x·ã + b̃: a rounded twice (a scalar in the op's format, then the dtype: ã) and the
      product once, 3|a·x|; b rounded twice, 2|b|;
    - dropped, y = round(−round(λα·a) + round(λα·a·p)): ``alpha_dropped_error`` less its final
      rounding;
    - the gradient g·ã where kept: 3|a·g|; 0 where dropped.
    The float64 reference evaluates the same formulas in float64: float64 cases get the analysis
    twice. The deterministic points are judged exactly (``deterministic_exact``)."""
    x = case.inputs["input"]
    if not is_random(case):
        return {}
    a, b, dropped = ref.alpha_dropout_coefficients(case.params["p"])
    keep = np.broadcast_to(reported_keep(case), x.shape)
    twice = 2.0 if case.dtype == "float64" else 1.0
    out = twice * np.where(keep, 3 * np.abs(a * x) + 2 * abs(b), alpha_dropped_error(case) - abs(dropped))
    errors = {"output": out, "state.input": out}
    g = case.cotangents.get("output")
    if g is not None:
        errors["grad.input"] = twice * np.where(keep, 3 * np.abs(a * g), 0.0)
    return errors


ALPHA_TOLERANCE = analysed_tolerance(alpha_errors)


# -- comparators ----------------------------------------------------------------------------------

def _p_one_alternative(case: Case, expected: np.ndarray, got: np.ndarray | None) -> np.ndarray:
    """At p = 1 torch multiplies by 0, so a ±inf or NaN input gives NaN; 0 (what "zeroes the
    element" says, and alpha dropout's limit p → 1) is accepted there too."""
    x = case.inputs["input"]
    if case.train and case.params["p"] == 1.0 and got is not None and np.shape(got) == x.shape:
        either = ~np.isfinite(x) & (np.asarray(got) == 0)
        return np.where(either, np.asarray(got, dtype=np.float64), expected)
    return expected


def deterministic_exact(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """output, state.input and grad.input: the deterministic points are copies (the identity, or
    input·0 at p = 1, with 0 accepted at non-finite inputs), compared bit for bit with the sign of
    a zero (not in gradients); the random points under the declaration's tolerance."""
    expected = result.tensors()[name]
    value = got.tensors().get(name)
    if is_random(case):
        absref = magnitudes(spec, case, result)[name]
        return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)
    if name != "grad.input":
        expected = _p_one_alternative(case, expected, value)
    return compare_tensor(replace(spec, tolerance=EXACT), case, name, expected, value, got.dtypes.get(name),
                          np.abs(expected))


def inplace_state(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """state.input of an in-place call: as ``deterministic_exact``, except that an input left
    exactly as it was, where the result differs from it, is reported as the in-place write
    missing (symptom ``shape``: the state lacks the result), not as wrong values."""
    value = got.tensors().get(name)
    x = case.inputs["input"]
    expected = result.tensors()[name]
    if value is not None and np.shape(value) == x.shape and x.size:
        same = np.array_equal(np.asarray(value, dtype=np.float64), x, equal_nan=True)
        if same and not np.array_equal(np.asarray(expected), x, equal_nan=True):
            return Comparison(tensor=name, ok=False, shape=list(x.shape), size=int(x.size), mismatches=int(x.size),
                              utilisation=float("inf"), symptoms=["shape"],
                              message="the input was left unchanged: the in-place write is missing")
    return deterministic_exact(spec, case, name, result, got)


def alpha_mask(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """random.mask of alpha dropout: the reported output values read as a keep mask
    (``alpha_keep``), against the canonical mask (a unit kept only if all of it is)."""
    value = got.tensors().get(name)
    keep = None if value is None else alpha_keep(case, value)
    return compare_tensor(spec, case, name, result.choices["mask"], keep, None, np.zeros(np.shape(keep)))


# -- known-entry predicates -----------------------------------------------------------------------

def unbatched_mask_per_depth(case: Case) -> bool:
    """FeatureAlphaDropout on an unbatched (C, D, H, W) input reported a mask constant over each
    input[j, d] (torch's units: the first two dims, as if the input were (N, C, H, W)) but not
    over some channel input[j]: the mask of torch's feature dropout of a 4-d input."""
    if case.op != "FeatureAlphaDropout" or case.inputs["input"].ndim != 4 or "mask" not in case.choices:
        return False
    keep = alpha_keep(case, case.choices["mask"])
    per_depth = np.array_equal(keep, ref.canonical_mask(keep, 2))
    return per_depth and not np.array_equal(keep, ref.canonical_mask(keep, 1))

