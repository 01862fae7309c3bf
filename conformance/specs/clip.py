"""torch.nn.utils.clip_grad_norm_: a function over parameters whose gradients it rescales in place.

A case is a set of parameters of mixed shapes, some with a gradient (``grad<i>``) and some without,
passed as a list, a tuple, a single tensor or an empty list, with max_norm below, at or above the
total norm (or 0), norm_type 1, 2, inf (also spelled as the string ``'inf'``), fractional and large,
error_if_nonfinite both ways and foreach None/True/False. The returned total norm is the output;
every gradient after the call is compared as ``state.grad<i>``.

- Non-finite gradients (NaN, ±inf) with error_if_nonfinite=False are valid: the norm is NaN or inf
  and the gradients become NaN or 0 (see ``reference.clip``). With error_if_nonfinite=True a
  non-finite total norm must raise: those are the invalid cases.
- The total norm is returned in the gradients' dtype, so a norm beyond that format's range is inf
  and clips every gradient to 0; with no gradient at all torch returns ``torch.tensor(0.0)``, in
  the default dtype (float32), which the output comparator accepts (as it does the case dtype).

Error model (in units of the case dtype's unit roundoff u): torch forms each tensor's norm
n_i = (Σ|g|^p)^(1/p) (p-th powers: exact for p = 1, one rounding for p = 2, pow's ≤ 2 ulps
otherwise; a sum of K_i terms, 2√K_i; the root divides a relative error by p and adds one rounding,
plus |ln S|/p for an exponent 1/p that is not a power of two), rounds it to the dtype, then the
norm of the m per-tensor norms in the same way. Rounding n_i perturbs T relatively by the same
amount (T is monotone and homogeneous of degree 1 in the n_i), so
E_T = Σ_levels [(2√K + c_pow)/p + 2 + |ln S|/p] + (1/p)·K·tiny_acc/S (gradual underflow of the
powers in the accumulation format), and p = inf is exact. The coefficient c = max_norm/(T + 1e-6):
E_T + 3 (the addition, max_norm's conversion, the division); each clipped gradient g·c: E_T + 4
relative to |g·c|, plus the subnormal roundings of T and c (half a spacing each, relative to the
value). Where max_norm/(T + 1e-6) exceeds 1 by more than that error the coefficient is
clamped to exactly 1 and the gradients must be unchanged bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from conformance.tolerance import bound_as_magnitude
from reference import clip as ref

TARGET = "torch.nn.utils.clip_grad_norm_"
FORMS = ("list", "tuple", "single tensor", "no gradients", "empty list")
NORM_TYPES = (2.0, 1.0, float("inf"), 0.5, 3.0, 1.5, 10.0, 100.0)
MAX_NORM_KINDS = ("above", "below", "at", "zero", "far below")
NONFINITE = ("none", "nan", "inf", "-inf")
BUDGET = 1024


# -- cases ------------------------------------------------------------------------------------------

def _grad_names(case: Case) -> list[str]:
    """The gradient inputs actually passed to torch (none for the 'empty list' form)."""
    if case.params["form"] == "empty list":
        return []
    return [f"grad{i}" for i in range(case.params["count"]) if f"grad{i}" in case.inputs]


def _grads(case: Case) -> list[np.ndarray]:
    return [case.inputs[n] for n in _grad_names(case)]


def _accumulation(dtype: str) -> str:
    """The format torch accumulates p-th powers in on the CPU: float64 for float64, else float32."""
    return "float64" if dtype == "float64" else "float32"


@st.composite
def _clip_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    d = S.Drawer(draw)
    form = d.choice(FORMS[:3] if invalid else FORMS, "form")
    count = 1 if form == "single tensor" else d.integer(1, 5, "parameters")
    norm_type = d.choice(NORM_TYPES, "norm_type")
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    inputs: dict[str, np.ndarray] = {}
    with_grad = []
    for i in range(count):
        shape = tuple(S.sizes_within(d, d.integer(0, 3, f"param{i}.ndim"), BUDGET // count, hi=12,
                                     label=f"param{i}.shape"))
        inputs[f"param{i}"] = np.zeros(shape)
        has_grad = form != "no gradients" and (i == 0 or d.choice((True, False), f"param{i}.has grad"))
        if has_grad:
            # (reshaped: strategies.values returns 1-d for a 0-d shape, np.ascontiguousarray's rule)
            inputs[f"grad{i}"] = S.values(d, shape, dtype, "float", f"grad{i}", scale=scale).reshape(shape)
            with_grad.append(i)
    nonfinite = d.choice(NONFINITE[1:] if invalid else NONFINITE, "non-finite")
    if nonfinite != "none" and with_grad and form != "empty list":
        i = with_grad[d.integer(0, len(with_grad) - 1, "non-finite grad")]
        g = inputs[f"grad{i}"].copy().reshape(-1)
        if g.size:
            g[d.integer(0, g.size - 1, "non-finite position")] = float(nonfinite)
        inputs[f"grad{i}"] = g.reshape(inputs[f"grad{i}"].shape)
    params = {"form": form, "count": count, "norm_type": norm_type, "norm_type_as": "float",
              "error_if_nonfinite": invalid or d.flag("error_if_nonfinite"),
              "foreach": d.choice((None, True, False), "foreach")}
    if np.isinf(norm_type) and d.flag("norm_type as the string 'inf'"):
        params["norm_type_as"] = "string"
    case = Case(op="clip_grad_norm_", dtype=dtype, params=params, inputs=inputs, tier="float",
                invalid=invalid, note="error_if_nonfinite with a non-finite total norm" if invalid else "")
    total = _dtype_total(case)
    if not invalid and not np.isfinite(total):  # a valid case with a non-finite norm must not ask to raise
        case = replace(case, params={**params, "error_if_nonfinite": False})
        params = case.params
    kind = d.choice(MAX_NORM_KINDS, "max_norm")
    if kind == "zero" or not np.isfinite(total):
        max_norm = 0.0 if kind == "zero" else 1.0
    elif kind == "at":
        max_norm = float(total)
    else:
        factor = d.choice((0.5, 0.9, 0.999) if kind == "below" else (2.0, 1.1, 1.001) if kind == "above"
                          else (1e-3, 1e-6), "max_norm factor")
        max_norm = float(total) * factor if total > 0 else factor
    return replace(case, params={**params, "max_norm": max_norm})


def _total(case: Case) -> float:
    return ref.total_norm(_grads(case), case.params["norm_type"])


def _dtype_total(case: Case) -> float:
    """The total norm as torch returns it: in the gradients' dtype, so beyond its range it is inf."""
    total = _total(case)
    dt = DTYPES[case.dtype]
    return float("inf") if np.isfinite(total) and total > dt.max_value * (1 + dt.unit_roundoff) else total


# -- reference --------------------------------------------------------------------------------------

def _reference(case: Case, backward: bool) -> Result:
    total = _dtype_total(case)
    if case.params["error_if_nonfinite"] and not np.isfinite(total):
        raise ValueError("the total norm is non-finite and error_if_nonfinite is set")
    coef = ref.clip_coefficient(case.params["max_norm"], total)
    names = _grad_names(case)
    clipped = ref.clip([case.inputs[n] for n in names], coef)
    return Result(outputs={"output": np.array(total)}, state=dict(zip(names, clipped)),
                  meta={"coefficient": coef})


# -- error model ------------------------------------------------------------------------------------

def _level_error(p: float, k: int, s: float) -> float:
    """Relative error (units of u) of one norm level over k terms with power sum s (see the module
    docstring)."""
    c_pow = 0.0 if p == 1 else 1.0 if p == 2 else 2.0
    exponent = 0.0 if p in (1.0, 2.0) or not (s > 0 and np.isfinite(s)) else abs(math.log(s)) / p
    return (2 * math.sqrt(max(k, 1)) + c_pow) / p + 2 + exponent


def total_error(case: Case) -> float:
    """E_T: the total norm's relative error bound in units of u."""
    p = case.params["norm_type"]
    grads = _grads(case)
    if np.isinf(p) or not grads:
        return 0.0
    sizes = [g.size for g in grads]
    s = ref.power_sum(grads, p)
    acc = DTYPES[_accumulation(case.dtype)]
    with np.errstate(divide="ignore", invalid="ignore"):
        underflow = sum(sizes) * acc.min_subnormal / s / p if s > 0 else 0.0
    dt = DTYPES[case.dtype]
    total = _total(case)
    subnormal = dt.min_subnormal / total if total > 0 else 0.0  # T rounded below the normal range
    return (_level_error(p, max(sizes), s) + _level_error(p, len(grads), s)
            + (float(underflow) + subnormal) / dt.unit_roundoff)


def coefficient_error(case: Case, err_total: float, coef: float) -> float:
    """E_c: the coefficient's relative error bound in units of u: E_T, three roundings, and the
    rounding of a coefficient below the normal range (absolute: half a subnormal spacing)."""
    dt = DTYPES[case.dtype]
    return err_total + 3 + (dt.min_subnormal / coef / dt.unit_roundoff if coef > 0 else 0.0)


def _clamped_exactly(case: Case, err: float) -> bool:
    """max_norm / (T + 1e-6) exceeds 1 by more than its rounding error: torch clamps it to 1."""
    total = _dtype_total(case)
    u = DTYPES[case.dtype].unit_roundoff
    with np.errstate(all="ignore"):
        ratio = case.params["max_norm"] / (total + ref.EPS)
    return bool(np.isfinite(total) and ratio * (1 - (err + 3) * u) > 1)


def _magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    err = total_error(case)
    k = _reduction(case, "")
    with np.errstate(invalid="ignore"):
        out = {"output": bound_as_magnitude(np.nan_to_num(np.abs(result.outputs["output"]) * err), k)}
    exact = _clamped_exactly(case, err)
    err_coef = coefficient_error(case, err, float(np.nan_to_num(result.meta.get("coefficient", 1.0))))
    for name, value in result.state.items():
        mag = np.zeros(value.shape) if exact else np.nan_to_num(np.abs(value)) * (err_coef + 1)
        out[f"state.{name}"] = bound_as_magnitude(mag, k)
    return out


def _reduction(case: Case, tensor: str) -> int:
    """K: every gradient element enters the total norm."""
    return max(1, sum(g.size for g in _grads(case)))


def _output_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """With no gradient at all there is no dtype to follow: torch returns torch.tensor(0.0) (the
    default dtype, float32); the case dtype is accepted too."""
    absref = _magnitude(case, result)[name]
    got_dtype = got.dtypes.get(name)
    if not _grads(case) and got_dtype in ("float32", case.dtype):
        got_dtype = None  # either is right
    return compare_tensor(spec, case, name, result.outputs[name], got.outputs.get(name), got_dtype, absref)


# -- the call ---------------------------------------------------------------------------------------

def _parameter(case: Case, i: int) -> dict[str, Any]:
    grad = f"grad{i}" if f"grad{i}" in case.inputs and case.params["form"] != "no gradients" else None
    return {"parameter": f"param{i}", "grad": grad}


def _args(case: Case) -> list[Any]:
    form = case.params["form"]
    nodes = [_parameter(case, i) for i in range(case.params["count"])]
    if form == "single tensor":
        return [nodes[0]]
    if form == "tuple":
        return [nodes]  # a JSON list is a tuple of nodes
    return [{"list": [] if form == "empty list" else nodes}]


def _kwargs(case: Case) -> dict[str, Any]:
    p = case.params
    norm_type = {"literal": "inf"} if p["norm_type_as"] == "string" else p["norm_type"]
    return {"max_norm": p["max_norm"], "norm_type": norm_type, "error_if_nonfinite": p["error_if_nonfinite"],
            "foreach": p["foreach"]}


def norm_sum_overflows(case: Case) -> bool:
    """The sum of p-th powers overflows the accumulation format (torch then returns inf)."""
    p = case.params["norm_type"]
    grads = _grads(case)
    if np.isinf(p) or not grads or not np.isfinite(_total(case)):
        return False
    acc = DTYPES[_accumulation(case.dtype)]
    return ref.power_sum([DTYPES[case.dtype].round(g) for g in grads], p) > acc.max_value


def norm_sum_underflows(case: Case) -> bool:
    """The sum of p-th powers lies within its own gradual-underflow error (2·K·tiny) of zero in the
    accumulation format."""
    p = case.params["norm_type"]
    grads = _grads(case)
    if np.isinf(p) or not grads or not np.isfinite(_total(case)) or _total(case) == 0:
        return False
    acc = DTYPES[_accumulation(case.dtype)]
    return ref.power_sum(grads, p) < 2 * sum(g.size for g in grads) * acc.min_subnormal


def float16_coefficient_overflows(case: Case) -> bool:
    """float16, and 1/(T + 1e-6) beyond float16's range while the gradients must be scaled down
    (torch evaluates max_norm / (T + 1e-6) as max_norm · reciprocal(T + 1e-6))."""
    if case.dtype != "float16" or not _grads(case):
        return False
    total = _dtype_total(case)
    return bool(np.isfinite(total) and total + ref.EPS < 1 / 65520 and case.params["max_norm"] < total + ref.EPS)


def _has(kind: str) -> Any:
    def holds(case: Case) -> bool:
        total = _dtype_total(case)
        mx = case.params["max_norm"]
        if kind == "clipped":
            return bool(np.isfinite(total) and total > 0 and mx < total)
        if kind == "unclipped":
            return bool(np.isfinite(total) and mx > total)
        return False
    return holds


_FINITE_PIN = {"non-finite": "none", "form": "list"}

declare(LayerSpec(
    name="clip_grad_norm_", family="utility", catalogue=TARGET, kind="function",
    cases=lambda dtype: _clip_case(dtype),
    reference=result_reference(_reference),
    torch=TorchMapping(TARGET, kind="function", args=_args, kwargs=_kwargs, outputs=("output",),
                       mutated=lambda case: tuple(_grad_names(case)) if case.params["form"] != "no gradients" else ()),
    tolerance=Tolerance(reduction=_reduction, magnitude=_magnitude, c=1.0, out_ulps=0.0, exact="none"),
    comparators={"output": _output_comparator},
    invalid_cases=lambda dtype: _clip_case(dtype, invalid=True),
    backward=False,
    regimes=(
        Regime("max_norm below the total norm", _has("clipped"), {"max_norm": "below", **_FINITE_PIN}),
        Regime("max_norm above the total norm", _has("unclipped"),
               {"max_norm": "above", "max_norm factor": 2.0, **_FINITE_PIN},
               "the coefficient is clamped to 1: gradients unchanged bit for bit"),
        Regime("max_norm at the total norm", lambda c: c.params["max_norm"] == _dtype_total(c) > 0,
               {"max_norm": "at", **_FINITE_PIN, "grad.scale": 1.0}),
        Regime("inf norm", lambda c: np.isinf(c.params["norm_type"]), {"norm_type": float("inf")}),
        Regime("norm_type as the string 'inf'", lambda c: c.params["norm_type_as"] == "string",
               {"norm_type": float("inf"), "norm_type as the string 'inf'": True}),
        Regime("fractional norm", lambda c: c.params["norm_type"] == 0.5, {"norm_type": 0.5, **_FINITE_PIN}),
        Regime("large norm", lambda c: c.params["norm_type"] >= 10 and np.isfinite(c.params["norm_type"]),
               {"norm_type": 10.0, "grad.scale": 1.0, **_FINITE_PIN}),
        Regime("1-norm", lambda c: c.params["norm_type"] == 1.0, {"norm_type": 1.0}),
        Regime("NaN gradient", lambda c: any(np.isnan(g).any() for g in _grads(c)),
               {"non-finite": "nan", "error_if_nonfinite": False, "form": "list"}),
        Regime("infinite gradient", lambda c: any(np.isinf(g).any() for g in _grads(c)),
               {"non-finite": "-inf", "error_if_nonfinite": False, "form": "list"}),
        Regime("error_if_nonfinite with finite gradients",
               lambda c: c.params["error_if_nonfinite"] and np.isfinite(_dtype_total(c)),
               {"error_if_nonfinite": True, "norm_type": 2.0, **_FINITE_PIN}),
        Regime("some parameters without a gradient", lambda c: len(_grad_names(c)) < c.params["count"],
               {"form": "list", "parameters": 4, "param*.has grad": False}),
        Regime("single tensor", lambda c: c.params["form"] == "single tensor", {"form": "single tensor"}),
        Regime("empty iterable", lambda c: c.params["form"] == "empty list", {"form": "empty list"}),
        Regime("foreach=True", lambda c: c.params["foreach"] is True, {"foreach": True}),
        Regime("foreach=False", lambda c: c.params["foreach"] is False, {"foreach": False}),
    ),
    notes=("Total norm T = ‖all gradient elements‖_p (NaN if any is NaN, inf if any is inf or T overflows the "
           "gradients' dtype); gradients multiplied by min(max_norm/(T + 1e-6), 1) in place (exactly 1 when "
           "max_norm clearly exceeds T). error_if_nonfinite=True with a non-finite T must raise (invalid cases). "
           "No gradient at all: T = torch.tensor(0.0) in the default dtype. The parameters' own values are not "
           "used; the 'empty list' form passes [] (the drawn tensors are not passed)."),
))
