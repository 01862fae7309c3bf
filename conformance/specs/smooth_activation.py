"""Smooth activations: Sigmoid, Tanh, LogSigmoid, Softplus, Tanhshrink, Softsign, GELU.

Each is a single transcendental evaluation per element; its tolerance is the first-order error
analysis beside its reference (``reference.smooth_activation``): a few-ulp libm, one rounding per
operation, bounds in the magnitude of the terms where the textbook formula cancels, and an
underflow allowance (see ``_activations.transcendental_tolerance``). NaN propagates through the
forward and the gradient; at ±inf results and gradients are limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, TorchMapping, declare, result_reference
from conformance.specs._activations import (
    compare_alternatives,
    elementwise_case,
    smooth_at,
    transcendental_tolerance,
    value_regimes,
)
from reference import smooth_activation as ref

FAMILY = "activation"
FLOAT = ("float",)


def _no_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    return {}


def _unary_reference(fwd, vjp):
    def reference(case: Case, backward: bool) -> Result:
        x = case.inputs["input"]
        y = fwd(x, **case.params)
        out = Result(outputs={"output": y})
        if backward:
            out.grads["input"] = vjp(x, S.output_gradient(case, "output", y), **case.params)
        return out

    return reference


def _declare_unary(name: str, fwd, vjp, error_fn, notes: str, **extra: Any) -> None:
    """A parameterless smooth activation (float tier only, value regimes without kinks)."""
    declare(LayerSpec(
        name=name,
        family=FAMILY,
        cases=lambda dtype: elementwise_case(name, dtype, _no_params, tiers=FLOAT),
        reference=result_reference(_unary_reference(fwd, vjp)),
        torch=TorchMapping(f"torch.nn.{name}"),
        tolerance=transcendental_tolerance(error_fn),
        smooth_at=smooth_at(),
        regimes=value_regimes(),
        notes=notes,
        **extra,
    ))


_declare_unary(
    "Sigmoid", lambda x: ref.sigmoid(x), ref.sigmoid_vjp, ref.sigmoid_error,
    "1/(1 + exp(-x)): 0 and 1 at ∓inf, no overflow for large |x|. The backward may be formed from the output, "
    "g·y·(1 - y) (PyTorch), whose error near y = 1 is absolute (≈ (L + 2)·u·|g|). Results in the subnormal range "
    "may be flushed to zero (PyTorch float32 returns 0 below x ≈ -88.7).")

_declare_unary(
    "Tanh", lambda x: np.tanh(x), ref.tanh_vjp, ref.tanh_error,
    "tanh(x), ±1 at ±inf; the backward may be formed from the output, g·(1 - y²) (PyTorch).")

_declare_unary(
    "LogSigmoid", ref.log_sigmoid, ref.log_sigmoid_vjp, ref.log_sigmoid_error,
    "log σ(x) = min(x, 0) - log1p(exp(-|x|)): must not overflow for large negative or positive x (-inf only at "
    "-inf); gradient σ(-x), g at -inf.")

_declare_unary(
    "Tanhshrink", ref.tanhshrink, ref.tanhshrink_vjp, ref.tanhshrink_error,
    "x - tanh(x). Computed directly (PyTorch) it cancels near 0, where y ≈ x³/3: the bound is in the magnitude of "
    "tanh(x) (relative error ≈ 3L/x² there), and the backward's g - g·(1 - tanh²) in the magnitude of g.")

_declare_unary(
    "Softsign", ref.softsign, ref.softsign_vjp, ref.softsign_error,
    "x/(1 + |x|); ±1 at ±inf (the limits; x/(1 + |x|) evaluated literally is inf/inf = NaN). The backward as "
    "autograd forms it, g/b - g·(x/b)/b, cancels for large |x|: bound in the magnitude of the terms.")


# -- Softplus --------------------------------------------------------------------------------------

SOFTPLUS_BETAS = (1.0, 2.0, 0.5, 0.1, 10.0, 100.0, 3.0)
SOFTPLUS_THRESHOLDS = (20.0, 1.0, 0.5, 5.0, 0.0, 100.0, 1000.0)


def _softplus_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    return {"beta": d.choice(SOFTPLUS_BETAS, "beta"), "threshold": d.choice(SOFTPLUS_THRESHOLDS, "threshold")}


def _softplus_kinks(params: Mapping[str, Any], dtype: str) -> tuple[float, ...]:
    """The switch point: threshold/β rounded to the dtype."""
    return (float(DTYPES[dtype].round(np.asarray(params["threshold"] / params["beta"]))),)


def softplus_branch_ambiguous(case: Case) -> np.ndarray:
    """Elements whose branch depends on how β·x is computed: exactly (the reference), or rounded
    once to the dtype or to float32 (PyTorch's arithmetic for float16/bfloat16), with β rounded to
    that format first. The candidates disagree on β·x > threshold only within one rounding of the
    switch point."""
    x = case.inputs["input"]
    beta, th = case.params["beta"], case.params["threshold"]
    formats = {case.dtype, "float32"} if case.dtype in ("float16", "bfloat16") else {case.dtype}
    with np.errstate(over="ignore", invalid="ignore"):
        exact = ref.softplus_product(x, beta)
        linear = [exact > th]
        for name in formats:
            r = DTYPES[name].round
            rb = float(r(np.asarray(beta)))
            rth = float(r(np.asarray(th)))
            linear += [r(exact) > rth, r(rb * x) > rth]
    stacked = np.stack(linear)
    return stacked.any(axis=0) & ~stacked.all(axis=0)


def _softplus_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Within one rounding of the switch point either branch is accepted (element by element)."""
    ambiguous = softplus_branch_ambiguous(case)
    if not ambiguous.any():
        return compare_alternatives(spec, case, name, result, got, ())
    x, beta, th = case.inputs["input"], case.params["beta"], case.params["threshold"]
    linear = ref.softplus_product(x, beta) > th
    expected = result.tensors()[name]
    if name == "output":
        other = np.where(linear, ref.softplus_log_branch(x, beta), x)
    else:
        g = case.cotangents["output"]
        other = np.where(linear, g * ref.sigmoid(ref.softplus_product(x, beta)), g)
    return compare_alternatives(spec, case, name, result, got, (np.where(ambiguous, other, expected),))


def softplus_overflows(case: Case) -> bool:
    """Known-discrepancy predicate: β·x > threshold fails but exp(β·x) overflows the format PyTorch
    computes in (float32 for float32, float16 and bfloat16; float64 for float64)."""
    compute = "float64" if case.dtype == "float64" else "float32"
    t = ref.softplus_product(case.inputs["input"], case.params["beta"])
    with np.errstate(invalid="ignore"):
        return bool(((t > math.log(DTYPES[compute].max_value)) & (t <= case.params["threshold"])).any())


def _softplus_error(x, y, g, u, beta, threshold):
    return ref.softplus_error(x, y, g, u, beta, threshold)


declare(LayerSpec(
    name="Softplus",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("Softplus", dtype, _softplus_params, _softplus_kinks, tiers=FLOAT),
    reference=result_reference(_unary_reference(lambda x, beta, threshold: ref.softplus(x, beta, threshold),
                               lambda x, g, beta, threshold: ref.softplus_vjp(x, g, beta, threshold))),
    torch=TorchMapping("torch.nn.Softplus"),
    tolerance=transcendental_tolerance(_softplus_error, lambda case: dict(case.params)),
    comparators={"output": _softplus_comparator, "grad.input": _softplus_comparator},
    smooth_at=smooth_at(_softplus_kinks),
    regimes=(*value_regimes(_softplus_kinks, "at the switch point",
                            "inputs at threshold/β and its neighbours, where the branch changes"),
             Regime("small threshold at the switch point",
                    holds=lambda c: c.params["threshold"] <= 1 and bool(
                        np.isin(c.inputs["input"], _softplus_kinks(c.params, c.dtype)).any()),
                    pins={"threshold": 0.5, "tier": "float", "input.kind": "corner", "input.corner": "at the kink"},
                    description="the linear branch differs visibly from log1p(exp(β·x))/β"),
             Regime("large threshold", holds=lambda c: c.params["threshold"] >= 100,
                    pins={"threshold": 1000.0, "tier": "float", "input.kind": "corner", "input.corner": "large"},
                    description="no linear branch below β·x = 1000: exp(β·x) must not overflow")),
    notes="y = x where β·x > threshold (documented: the linear branch), else log1p(exp(β·x))/β; gradient 1 and σ(β·x). "
          "β small, large, below 1 and not representable (0.1); thresholds 0 to 1000. At the switch point the branch "
          "is that of the exact β·x > threshold; within one rounding of it (β·x rounded to the dtype or to float32, "
          "β rounded first) either branch is accepted. Below the threshold the result must not overflow.",
))


# -- GELU ------------------------------------------------------------------------------------------

def _gelu_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    return {"approximate": d.choice(("none", "tanh"), "approximate")}


def gelu_tanh_grad_overflows(case: Case) -> bool:
    """Known-discrepancy predicate: the tanh approximation's backward squares x in the format
    PyTorch computes in (float32 below float64) and x² overflows."""
    compute = "float64" if case.dtype == "float64" else "float32"
    x = case.inputs["input"]
    with np.errstate(invalid="ignore"):
        big = np.isfinite(x) & (np.abs(x) > math.sqrt(DTYPES[compute].max_value))
    return case.params["approximate"] == "tanh" and bool(big.any())


def _gelu_error(x, y, g, u, approximate):
    return ref.gelu_error(x, y, g, u, approximate)


declare(LayerSpec(
    name="GELU",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("GELU", dtype, _gelu_params, tiers=FLOAT),
    reference=result_reference(_unary_reference(lambda x, approximate: ref.gelu(x, approximate),
                               lambda x, g, approximate: ref.gelu_vjp(x, g, approximate))),
    torch=TorchMapping("torch.nn.GELU"),
    tolerance=transcendental_tolerance(_gelu_error, lambda case: dict(case.params)),
    invalid_cases=lambda dtype: elementwise_case(
        "GELU", dtype, lambda d, ndim, tier: {"approximate": d.choice(("Tanh", "erf", "sigmoid"), "approximate")},
        tiers=FLOAT, invalid="approximate is neither 'none' nor 'tanh'"),
    smooth_at=smooth_at(),
    regimes=(*value_regimes(),
             Regime("tanh approximation", holds=lambda c: c.params["approximate"] == "tanh",
                    pins={"approximate": "tanh"}, description="approximate='tanh'")),
    notes="x·Φ(x) (approximate='none') or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) ('tanh'); limits +inf and 0 at "
          "±inf, gradients 1 and 0. The textbook 1 + erf (and 1 + tanh) cancels for negative x: the bound is in the "
          "magnitude of the terms (absolute error ≈ L·u·|x|/2), so PyTorch's formulas conform. The tanh and erf "
          "evaluations must return exactly ±1 once saturated (otherwise the tanh backward's x³ factor amplifies a "
          "one-ulp error).",
))
