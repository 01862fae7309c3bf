"""The comparison engine: one backend result against the reference, tensor by tensor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.elementwise import judge_exact, judge_floats
from conformance.spec import LayerSpec
from conformance.tolerance import accumulated_offset, bound_for, magnitudes

WORST_SHOWN = 5


@dataclass
class Comparison:
    """The verdict and error metrics of one compared tensor."""

    tensor: str
    ok: bool
    shape: list[int]
    size: int = 0
    mismatches: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    max_ulp: float = 0.0
    utilisation: float = 0.0
    worst_index: list[int] | None = None
    exact_elements: int = 0
    reduction_length: int = 1
    worst: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    # What is wrong, when not ok (``known.TENSOR_SYMPTOMS``): "value", "nonfinite", "index", "shape".
    symptoms: list[str] = field(default_factory=list)
    # The largest error / bound among elements where both sides are finite.
    finite_utilisation: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("max_abs_err", "max_rel_err", "max_ulp", "utilisation", "finite_utilisation"):
            d[key] = _finite_or_str(d[key])
        return d


def _finite_or_str(x: float) -> float | str:
    return float(x) if np.isfinite(x) else repr(float(x))


def _expected_dtype(case: Case, ref: np.ndarray) -> str:
    return "bool" if ref.dtype.kind == "b" else "int64" if ref.dtype.kind in "iu" else case.dtype


def compare_tensor(
    spec: LayerSpec, case: Case, name: str, ref: np.ndarray, got: np.ndarray | None,
    got_dtype: str | None, absref: np.ndarray,
) -> Comparison:
    """Compare one tensor: presence, shape, dtype, NaN/inf pattern, then values within the bound."""
    ref = np.asarray(ref)
    cmp = Comparison(tensor=name, ok=False, shape=list(ref.shape), size=int(ref.size))
    cmp.symptoms = ["shape"]
    if got is None:
        cmp.message = "missing from the backend result"
        return cmp
    got = np.asarray(got)
    if tuple(got.shape) != tuple(ref.shape):
        cmp.message = f"shape {list(got.shape)} != expected {list(ref.shape)}"
        return cmp
    expected = _expected_dtype(case, ref)
    if got_dtype is not None and got_dtype != expected:
        cmp.message = f"dtype {got_dtype} != expected {expected}"
        return cmp
    cmp.symptoms = []
    if ref.dtype.kind in "iub":
        return _compare_integers(cmp, ref, got)
    return _compare_floats(spec, case, cmp, ref.astype(np.float64), got.astype(np.float64), absref)


def _compare_integers(cmp: Comparison, ref: np.ndarray, got: np.ndarray) -> Comparison:
    bad = judge_exact(ref, got)
    cmp.mismatches = int(bad.sum())
    cmp.exact_elements = cmp.size
    if cmp.mismatches:
        idx = np.argwhere(bad)[:WORST_SHOWN]
        cmp.worst_index = [int(i) for i in idx[0]]
        cmp.worst = [{"index": [int(i) for i in ix], "ref": int(ref[tuple(ix)]), "got": int(got[tuple(ix)]),
                      "err": float(abs(int(ref[tuple(ix)]) - int(got[tuple(ix)]))), "bound": 0.0} for ix in idx]
        cmp.max_abs_err = max(w["err"] for w in cmp.worst)
        cmp.utilisation = float("inf")
        cmp.message = f"{cmp.mismatches} of {cmp.size} integer elements differ"
        cmp.symptoms = ["index"]
    cmp.ok = cmp.mismatches == 0
    return cmp


def _compare_floats(
    spec: LayerSpec, case: Case, cmp: Comparison, ref: np.ndarray, got: np.ndarray, absref: np.ndarray
) -> Comparison:
    dt = DTYPES[case.dtype]
    bound = bound_for(spec, case, cmp.tensor, ref, absref)
    cmp.reduction_length = bound.reduction_length
    cmp.exact_elements = int(bound.exact.sum())
    j = judge_floats(ref, got, bound.allowed, dt.max_value, dt.unit_roundoff)
    ref_cmp, err, ratio, bad = j["ref"], j["err"], j["ratio"], j["bad"]
    nan_bad, inf_bad, value_bad, sign_bad = j["nan_bad"], j["inf_bad"], j["value_bad"], j["zero_sign_bad"]
    offset = accumulated_offset(case, cmp.tensor, ref.shape)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        finite = np.isfinite(ref_cmp) & np.isfinite(got)
        rel = np.where(finite & (np.abs(ref_cmp) > 0), err / np.abs(ref_cmp), np.where(err > 0, np.inf, 0.0))
        # An accumulated gradient is measured in ulps of the value the backend held, G + grad.
        held = ref_cmp if offset is None else np.abs(ref_cmp) + np.abs(offset)
        ulps = np.where(finite, err / dt.ulp(held), 0.0)
    cmp.mismatches = int(bad.sum())
    if ref.size:
        cmp.max_abs_err = float(err.max())
        cmp.max_rel_err = float(rel.max())
        cmp.max_ulp = float(ulps.max())
        cmp.utilisation = float(ratio.max())
        cmp.finite_utilisation = float(np.where(finite & ~sign_bad, ratio, 0.0).max())
        order = np.argsort(-ratio, axis=None, kind="stable")[:WORST_SHOWN]
        worst = [np.unravel_index(i, ref.shape) for i in order]
        cmp.worst_index = [int(i) for i in worst[0]]
        cmp.worst = [
            {"index": [int(i) for i in ix], "ref": _num(ref[ix]), "got": _num(got[ix]),
             "err": _num(abs(got[ix] - ref[ix]) if np.isfinite(got[ix]) and np.isfinite(ref[ix]) else np.inf),
             "bound": _num(bound.allowed[ix])}
            for ix in worst if ratio[ix] > 0
        ]
    cmp.ok = cmp.mismatches == 0
    if not cmp.ok:
        kinds = [label for label, mask in (("NaN pattern", nan_bad), ("inf pattern", inf_bad),
                                           ("value", value_bad), ("sign of zero", sign_bad)) if mask.any()]
        cmp.message = f"{cmp.mismatches} of {cmp.size} elements out of bound ({', '.join(kinds)})"
        cmp.symptoms = [symptom for symptom, mask in (("nonfinite", nan_bad | inf_bad), ("value", value_bad),
                                                      ("signed-zero", sign_bad)) if mask.any()]
    return cmp


def _num(x: Any) -> float | str:
    x = float(x)
    return x if np.isfinite(x) else repr(x)


def without_accumulation(case: Case, got: Result) -> Result:
    """The backend's result with the preset ``.grad`` of an accumulating case subtracted from each
    gradient (exact in float64), so that every comparator judges the gradient itself; the bound
    carries the sum's extra rounding (``tolerance.bound_for``)."""
    if not (case.call or {}).get("grad_init"):
        return got
    grads = dict(got.grads)
    for name, value in got.grads.items():
        value = np.asarray(value)
        offset = accumulated_offset(case, f"grad.{name}", value.shape)
        if offset is not None and value.dtype.kind == "f":
            grads[name] = value - offset
    return Result(outputs=got.outputs, grads=grads, state=got.state, choices=got.choices, dtypes=got.dtypes,
                  meta=got.meta)


def judged(name: str, case: Case, ref: np.ndarray, got: np.ndarray | None, allowed: np.ndarray,
           reduction_length: int = 1, got_dtype: str | None = None) -> Comparison:
    """A float comparison under an explicit per-element bound ``allowed`` (the derivative modes
    derive their own), with the usual metrics: presence, shape, NaN/inf pattern, values."""
    ref = np.asarray(ref, dtype=np.float64)
    cmp = Comparison(tensor=name, ok=False, shape=list(ref.shape), size=int(ref.size), symptoms=["shape"],
                     reduction_length=reduction_length)
    if got is None:
        cmp.message = "missing from the backend result"
        return cmp
    got = np.asarray(got, dtype=np.float64)
    if tuple(got.shape) != tuple(ref.shape):
        cmp.message = f"shape {list(got.shape)} != expected {list(ref.shape)}"
        return cmp
    if got_dtype is not None and got_dtype != case.dtype:
        cmp.message = f"dtype {got_dtype} != expected {case.dtype}"
        return cmp
    cmp.symptoms = []
    dt = DTYPES[case.dtype]
    allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), ref.shape)
    j = judge_floats(ref, got, allowed, dt.max_value, dt.unit_roundoff)
    err, ratio, bad = j["err"], j["ratio"], j["bad"]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        finite = np.isfinite(j["ref"]) & np.isfinite(got)
        rel = np.where(finite & (np.abs(ref) > 0), err / np.abs(ref), np.where(err > 0, np.inf, 0.0))
        ulps = np.where(finite, err / dt.ulp(ref), 0.0)
    cmp.mismatches = int(bad.sum())
    if ref.size:
        cmp.max_abs_err, cmp.max_rel_err = float(err.max()), float(rel.max())
        cmp.max_ulp, cmp.utilisation = float(ulps.max()), float(ratio.max())
        cmp.finite_utilisation = float(np.where(finite, ratio, 0.0).max())
        order = np.argsort(-ratio, axis=None, kind="stable")[:WORST_SHOWN]
        worst = [np.unravel_index(i, ref.shape) for i in order]
        cmp.worst_index = [int(i) for i in worst[0]]
        cmp.worst = [{"index": [int(i) for i in ix], "ref": _num(ref[ix]), "got": _num(got[ix]),
                      "err": _num(abs(got[ix] - ref[ix]) if np.isfinite(got[ix]) and np.isfinite(ref[ix]) else np.inf),
                      "bound": _num(allowed[ix])} for ix in worst if ratio[ix] > 0]
    cmp.ok = cmp.mismatches == 0
    if not cmp.ok:
        nonfinite = j["nan_bad"] | j["inf_bad"]
        kinds = [label for label, mask in (("NaN or inf pattern", nonfinite), ("value", j["value_bad"])) if mask.any()]
        cmp.message = f"{cmp.mismatches} of {cmp.size} elements out of bound ({', '.join(kinds)})"
        cmp.symptoms = [s for s, mask in (("nonfinite", nonfinite), ("value", j["value_bad"])) if mask.any()]
    return cmp


def compare_results(spec: LayerSpec, case: Case, ref: Result, got: Result) -> list[Comparison]:
    """Compare every tensor the reference produced (outputs, grads, state) with the backend's
    (an accumulating case's gradients with the preset ``.grad`` taken off: ``without_accumulation``)."""
    got = without_accumulation(case, got)
    ref_tensors = ref.tensors()
    got_tensors = got.tensors()
    absref = magnitudes(spec, case, ref)
    comparisons = []
    for name, ref_value in ref_tensors.items():
        custom = spec.comparators.get(name)
        if custom is not None:
            comparisons.append(custom(spec, case, name, ref, got))
            continue
        comparisons.append(
            compare_tensor(spec, case, name, ref_value, got_tensors.get(name), got.dtypes.get(name), absref[name])
        )
    extra = sorted(set(got_tensors) - set(ref_tensors))
    for name in extra:
        comparisons.append(Comparison(tensor=name, ok=False, shape=list(np.shape(got_tensors[name])),
                                      message="produced by the backend but not by the reference", symptoms=["shape"]))
    return comparisons
