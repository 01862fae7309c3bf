"""Piecewise activations (ReLU, ReLU6, Hardtanh, Threshold, LeakyReLU, PReLU, Softshrink) and the
exponential-linear units (ELU, SELU).

Conventions every declaration states (PyTorch's): the gradient at each kink; NaN propagates through
the forward; at a NaN input the gradient is NaN in the reference, and the cotangent times the slope
of any branch is accepted too (PyTorch's branch tests are false at NaN, so it passes g·slope
through: an implementation accident, not documented); at ±inf results and gradients are limits.
Parameters are drawn from values every dtype represents exactly, except the documented defaults
that none does (LeakyReLU's 0.01), whose rounding to the dtype the tolerance allows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from conformance.specs._activations import (
    INPLACE_REGIME,
    activation_values,
    compare_alternatives,
    elementwise_case,
    nan_slopes_comparator,
    product_tolerance,
    rounding_tolerance,
    smooth_at,
    transcendental_tolerance,
    value_regimes,
)
from reference import activation as ref

FAMILY = "activation"
SELECTION = Tolerance(magnitude="ref", exact="always")  # no arithmetic: values are selected


def _inplace(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    return {"inplace": d.flag("inplace")}


def _kinks(*points: float):
    return lambda params, dtype: points


def _selection_reference(fwd, vjp):
    """Reference of a one-input layer: ``fwd(x, params)``, ``vjp(x, g, params)``."""

    def reference(case: Case, backward: bool) -> Result:
        x = case.inputs["input"]
        y = fwd(x, case.params)
        out = Result(outputs={"output": y})
        if backward and "input" in case.differentiable:
            out.grads["input"] = vjp(x, S.output_gradient(case, "output", y), case.params)
        return out

    return reference


# -- ReLU, ReLU6 -----------------------------------------------------------------------------------

declare(LayerSpec(
    name="ReLU",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("ReLU", dtype, _inplace, _kinks(0.0)),
    reference=result_reference(_selection_reference(lambda x, p: ref.relu(x), lambda x, g, p: ref.relu_vjp(x, g))),
    torch=TorchMapping("torch.nn.ReLU", inplace="input"),
    tolerance=SELECTION,
    comparators={"grad.input": nan_slopes_comparator(lambda case: (0.0, 1.0))},
    smooth_at=smooth_at(_kinks(0.0)),
    regimes=(*value_regimes(_kinks(0.0)), INPLACE_REGIME),
    notes="Gradient 0 at the kink x = 0. NaN propagates; the gradient at NaN may be NaN, 0 or g (PyTorch: g). "
          "Bit-exact in every tier (selection only). inplace=True must mutate the input.",
))

declare(LayerSpec(
    name="ReLU6",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("ReLU6", dtype, _inplace, _kinks(0.0, 6.0)),
    reference=result_reference(_selection_reference(lambda x, p: ref.hardtanh(x, 0.0, 6.0),
                                   lambda x, g, p: ref.hardtanh_vjp(x, g, 0.0, 6.0))),
    torch=TorchMapping("torch.nn.ReLU6", inplace="input"),
    tolerance=SELECTION,
    comparators={"grad.input": nan_slopes_comparator(lambda case: (0.0, 1.0))},
    smooth_at=smooth_at(_kinks(0.0, 6.0)),
    regimes=(*value_regimes(_kinks(0.0, 6.0)), INPLACE_REGIME),
    notes="min(max(x, 0), 6). Gradient 0 at both kinks x = 0 and x = 6. NaN propagates; the gradient at NaN may "
          "be NaN, 0 or g (PyTorch: g). Bit-exact in every tier.",
))

# -- Hardtanh --------------------------------------------------------------------------------------

# (min_val, max_val), default first: narrow (one bfloat16 step apart near 1, 1/64 apart), wide, one-sided.
HARDTANH_RANGES = ((-1.0, 1.0), (-2.0, 3.0), (0.0, 6.0), (0.5, 0.515625), (1.0, 1.0078125), (-32768.0, 32768.0),
                   (-0.25, -0.125))
NARROW = (1.0, 1.0078125)
# min_val >= max_val: the module refuses (it asserts max_val > min_val; equal bounds included).
HARDTANH_INVALID_RANGES = ((1.0, 1.0), (0.0, 0.0), (2.0, -2.0), (0.5, -0.5))


def _hardtanh_params(ranges):
    def draw(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
        lo, hi = d.choice(ranges, "range")
        return {"min_val": lo, "max_val": hi, "inplace": d.flag("inplace")}

    return draw


def _hardtanh_kinks(params: Mapping[str, Any], dtype: str) -> tuple[float, ...]:
    return (params["min_val"], params["max_val"])


declare(LayerSpec(
    name="Hardtanh",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("Hardtanh", dtype, _hardtanh_params(HARDTANH_RANGES), _hardtanh_kinks),
    reference=result_reference(_selection_reference(lambda x, p: ref.hardtanh(x, p["min_val"], p["max_val"]),
                                   lambda x, g, p: ref.hardtanh_vjp(x, g, p["min_val"], p["max_val"]))),
    torch=TorchMapping("torch.nn.Hardtanh", inplace="input"),
    tolerance=SELECTION,
    invalid_cases=lambda dtype: elementwise_case("Hardtanh", dtype, _hardtanh_params(HARDTANH_INVALID_RANGES),
                                                 invalid="min_val >= max_val"),
    comparators={"grad.input": nan_slopes_comparator(lambda case: (0.0, 1.0))},
    smooth_at=smooth_at(_hardtanh_kinks),
    regimes=(*value_regimes(_hardtanh_kinks), INPLACE_REGIME,
             Regime("narrow range", holds=lambda c: c.params["max_val"] - c.params["min_val"] < 0.01,
                    pins={"range": NARROW, "tier": "float", "input.kind": "corner", "input.corner": "at the kink"},
                    description="max_val - min_val one bfloat16 step, inputs at and around both bounds")),
    notes="Gradient 0 at both boundaries x = min_val and x = max_val. min_val == max_val is invalid: the module "
          "asserts max_val > min_val (torch.nn.functional.hardtanh accepts it). NaN propagates; the gradient at NaN "
          "may be NaN, 0 or g (PyTorch: g). Bit-exact in every tier.",
))

# -- Threshold -------------------------------------------------------------------------------------

THRESHOLDS = (0.0, 1.0, -1.5, 0.5, 6.0, 100.0)
# value relative to the threshold: above and below it (near and far), zero and -inf
THRESHOLD_VALUES = ("zero", "above", "below", "far above", "far below", "-inf")


def _threshold_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    th = d.choice(THRESHOLDS, "threshold")
    where = d.choice(THRESHOLD_VALUES, "value")
    value = {"zero": 0.0, "above": th + 2.0, "below": th - 2.5, "far above": 1000.0, "far below": -1000.0,
             "-inf": -math.inf}[where]
    return {"threshold": th, "value": value, "inplace": d.flag("inplace")}


def _threshold_kinks(params: Mapping[str, Any], dtype: str) -> tuple[float, ...]:
    return (params["threshold"],)


declare(LayerSpec(
    name="Threshold",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("Threshold", dtype, _threshold_params, _threshold_kinks),
    reference=result_reference(_selection_reference(lambda x, p: ref.threshold(x, p["threshold"], p["value"]),
                                   lambda x, g, p: ref.threshold_vjp(x, g, p["threshold"]))),
    torch=TorchMapping("torch.nn.Threshold", inplace="input"),
    tolerance=SELECTION,
    comparators={"grad.input": nan_slopes_comparator(lambda case: (0.0, 1.0))},
    smooth_at=smooth_at(_threshold_kinks),
    regimes=(*value_regimes(_threshold_kinks), INPLACE_REGIME),
    notes="y = x if x > threshold else value: x == threshold gives value, with gradient 0. value above and below "
          "the threshold, 0 and -inf. NaN propagates (the documented formula read literally would give value). "
          "The gradient at NaN may be NaN, 0 or g (PyTorch: g). Bit-exact in every tier.",
))

# -- LeakyReLU -------------------------------------------------------------------------------------

LEAKY_SLOPES = (0.01, 0.2, 0.5, 0.0, -0.5, -0.01, 1.0, 2.0, 0.3)
LEAKY_EXACT_SLOPES = (0.5, 0.25, 0.0, -0.5, 1.0, 2.0, -2.0)  # powers of two: exact on small integers


def _leaky_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    slope = d.choice(LEAKY_EXACT_SLOPES if tier == "exact" else LEAKY_SLOPES, "negative_slope")
    return {"negative_slope": slope, "inplace": d.flag("inplace")}


def _leaky_invalid_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    return {"negative_slope": d.choice((-0.5, -0.01, -2.0), "negative_slope"), "inplace": True}


def _inplace_negative(name: str):
    """Forward only: inplace with a negative parameter cannot be differentiated (the backward
    reconstructs the input's sign from the output)."""
    return lambda params: bool(params.get("inplace")) and params[name] < 0


def _leaky_reference(case: Case, backward: bool) -> Result:
    x, s = case.inputs["input"], case.params["negative_slope"]
    if case.invalid:
        raise ValueError("inplace LeakyReLU with a negative slope cannot be differentiated")
    y = ref.leaky_relu(x, s)
    out = Result(outputs={"output": y})
    if backward and "input" in case.differentiable:
        out.grads["input"] = ref.leaky_relu_vjp(x, S.output_gradient(case, "output", y), s)
    return out


def zero_slope_at_minus_inf(case: Case) -> bool:
    """Known-discrepancy predicate: a zero negative_slope and a -inf input."""
    return case.params["negative_slope"] == 0 and bool((case.inputs["input"] == -np.inf).any())


declare(LayerSpec(
    name="LeakyReLU",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("LeakyReLU", dtype, _leaky_params, _kinks(0.0),
                                         forward_only=_inplace_negative("negative_slope")),
    reference=result_reference(_leaky_reference),
    torch=TorchMapping("torch.nn.LeakyReLU", inplace="input"),
    tolerance=product_tolerance(lambda case: case.params["negative_slope"]),
    invalid_cases=lambda dtype: elementwise_case("LeakyReLU", dtype, _leaky_invalid_params,
                                                 invalid="inplace with a negative slope, input requires grad"),
    comparators={"grad.input": nan_slopes_comparator(lambda case: (1.0, case.params["negative_slope"]))},
    smooth_at=smooth_at(_kinks(0.0)),
    regimes=(*value_regimes(_kinks(0.0)), INPLACE_REGIME,
             Regime("negative slope", holds=lambda c: c.params["negative_slope"] < 0,
                    pins={"negative_slope": -0.5}, description="a negative negative_slope (non-monotone)"),
             Regime("zero slope, infinite inputs", holds=lambda c: c.params["negative_slope"] == 0
                    and bool(np.isinf(c.inputs["input"]).any()),
                    pins={"negative_slope": 0.0, "tier": "float", "input.kind": "corner", "input.corner": "inf"},
                    description="negative_slope 0 at ±inf: 0·(-inf) must give the limit 0")),
    notes="y = x if x > 0 else negative_slope·x; the gradient at the kink x = 0 is the slope. Slopes negative, zero, "
          "above 1 and the non-representable default 0.01 (its rounding to the dtype is allowed). A zero slope gives "
          "0 at -inf (the limit). inplace with a negative slope is forward-only (its backward is refused: an invalid "
          "case when the input requires grad). The gradient at NaN may be NaN, g or slope·g (PyTorch: slope·g). "
          "Exact tier: power-of-two slopes, bit-exact.",
))

# -- PReLU -----------------------------------------------------------------------------------------

PRELU_WEIGHTS = (0.25, 0.0, -0.5, 1.0, 2.0, -1.0)
PRELU_EXACT_WEIGHTS = (1.0, 0.0, -1.0, 2.0, -2.0)  # the exact tier's inputs are integers


def _prelu_channels(shape: tuple[int, ...]) -> int:
    return shape[1] if len(shape) >= 2 else 1


@st.composite
def _prelu_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """Input of rank 0-4; weight (num_parameters,) with num_parameters 1 or the channel count
    (dim 1; 1 below rank 2). Invalid: any other count."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    ndim = d.integer(0, 4, "ndim")
    shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape"))
    channels = _prelu_channels(shape)
    if invalid:
        n = channels + d.integer(1, 3, "num_parameters excess")
    else:
        n = channels if d.flag("per channel") else 1
    layout = S.layouts(d, ndim, "layout.input", expanded=True)
    x = activation_values(d, shape, dtype, tier, layout, (0.0,))
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "weight.seed"))
    kind = "drawn" if tier == "exact" else d.choice(("default", "drawn", "normal"), "weight.kind")
    if kind == "default":
        w = np.full(n, 0.25)
    elif kind == "drawn":
        w = rng.choice(PRELU_EXACT_WEIGHTS if tier == "exact" else PRELU_WEIGHTS, n)
    else:
        w = rng.standard_normal(n) * 0.5
    w = DTYPES[dtype].round(w)
    seed = S.seed(d)
    return Case(op="PReLU", dtype=dtype, params={"num_parameters": int(n)},
                inputs={"input": x, "weight": w}, differentiable=("input", "weight"),
                layouts={"input": layout}, tier=tier, cotangent_seed=seed, invalid=invalid,
                note=f"{n} parameters for {channels} channels" if invalid else "")


def _prelu_reference(case: Case, backward: bool) -> Result:
    x, w = case.inputs["input"], case.inputs["weight"]
    y = ref.prelu(x, w)
    out = Result(outputs={"output": y})
    if backward:
        gx, gw = ref.prelu_vjp(x, w, S.output_gradient(case, "output", y))
        out.grads.update(input=gx, weight=gw)
    return out


def _prelu_weight_view(case: Case) -> np.ndarray:
    return ref.prelu_weight_view(case.inputs["weight"], case.inputs["input"].ndim)


def _prelu_weight_reduction(case: Case, tensor: str) -> int:
    """K of dL/dw: the elements sharing one weight."""
    return max(case.inputs["input"].size // case.inputs["weight"].size, 1)


def _prelu_weight_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    return {"grad.weight": ref.prelu_weight_grad_magnitude(case.inputs["input"], case.inputs["weight"],
                                                           case.cotangents["output"])}


def _prelu_weight_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """A weight whose channel holds a NaN input: NaN (the reference) or the sum over the other
    elements (NaN taken down the x > 0 branch, which contributes nothing)."""
    x = case.inputs["input"]
    if not np.isnan(x).any() or "output" not in case.cotangents:
        return compare_alternatives(spec, case, name, result, got, ())
    _, without = ref.prelu_vjp(np.where(np.isnan(x), 1.0, x), case.inputs["weight"], case.cotangents["output"])
    return compare_alternatives(spec, case, name, result, got, (without,))


def prelu_zero_weight_at_minus_inf(case: Case) -> bool:
    """Known-discrepancy predicate: a -inf input in a channel whose weight is 0."""
    x = case.inputs["input"]
    w = np.broadcast_to(_prelu_weight_view(case), x.shape)
    return bool(((x == -np.inf) & (w == 0)).any())


declare(LayerSpec(
    name="PReLU",
    family=FAMILY,
    cases=lambda dtype: _prelu_case(dtype),
    reference=result_reference(_prelu_reference),
    torch=TorchMapping("torch.nn.PReLU", parameters=("weight",)),
    tolerance={"grad.weight": Tolerance(reduction=_prelu_weight_reduction, magnitude=_prelu_weight_magnitude,
                                        exact="bitwise"),
               "*": product_tolerance(_prelu_weight_view)},
    invalid_cases=lambda dtype: _prelu_case(dtype, invalid=True),
    comparators={"grad.input": nan_slopes_comparator(lambda case: (1.0, _prelu_weight_view(case))),
                 "grad.weight": _prelu_weight_comparator},
    smooth_at=smooth_at(_kinks(0.0)),
    regimes=(*value_regimes(_kinks(0.0)),
             Regime("rank below 2", holds=lambda c: c.inputs["input"].ndim < 2, pins={"ndim": 1},
                    description="0-d and 1-d inputs: no channel dim, num_parameters must be 1"),
             Regime("per-channel weights", holds=lambda c: c.params["num_parameters"] > 1,
                    pins={"per channel": True, "ndim": 3, "shape[1]": 3},
                    description="num_parameters = C > 1, weights broadcast along dim 1")),
    notes="y = x if x > 0 else w[c]·x, c the channel (dim 1). Below rank 2 there is no channel dim (PyTorch: the "
          "channel count is 1) and num_parameters must be 1; any count other than 1 or C is invalid. The weight is "
          "an input (init only sets its first value). Gradient at the kink x = 0: the weight. A zero weight gives 0 "
          "at -inf (the limit). At NaN inputs the input gradient may be NaN, g or w·g (PyTorch: w·g) and a weight "
          "gradient NaN or the sum without the NaN elements (PyTorch: NaN). dL/dw sums g·x over x <= 0: bit-exact in "
          "the exact tier while Σ|g·x| <= 2^p.",
))

# -- Softshrink ------------------------------------------------------------------------------------

SOFTSHRINK_LAMBDAS = (0.5, 0.0, 1.0, 0.25, 2.0, 1000.0)


def _softshrink_params(lambdas):
    return lambda d, ndim, tier: {"lambd": d.choice(lambdas, "lambd")}


def _softshrink_kinks(params: Mapping[str, Any], dtype: str) -> tuple[float, ...]:
    return (-params["lambd"], params["lambd"])


declare(LayerSpec(
    name="Softshrink",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("Softshrink", dtype, _softshrink_params(SOFTSHRINK_LAMBDAS),
                                         _softshrink_kinks),
    reference=result_reference(_selection_reference(lambda x, p: ref.softshrink(x, p["lambd"]),
                                   lambda x, g, p: ref.softshrink_vjp(x, g, p["lambd"]))),
    torch=TorchMapping("torch.nn.Softshrink"),
    tolerance=rounding_tolerance(),
    invalid_cases=lambda dtype: elementwise_case("Softshrink", dtype, _softshrink_params((-0.5, -1.0)),
                                                 invalid="negative lambd"),
    comparators={"grad.input": nan_slopes_comparator(lambda case: (0.0, 1.0))},
    smooth_at=smooth_at(_softshrink_kinks),
    regimes=value_regimes(_softshrink_kinks, kink_description="inputs exactly at ±lambd and their neighbours"),
    notes="y = x - lambd if x > lambd, x + lambd if x < -lambd, else 0; gradient 0 at ±lambd. lambd 0 (the "
          "identity with gradient 0 at 0) and positive; negative lambd is invalid. One rounding (x ± lambd): bit-exact "
          "in the exact tier. The gradient at NaN may be NaN, 0 or g (PyTorch: g).",
))

# -- ELU, SELU -------------------------------------------------------------------------------------

ELU_ALPHAS = (1.0, 0.5, 2.0, 0.0, -1.0, -0.5, 0.1, 1.5)


def _elu_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    return {"alpha": d.choice(ELU_ALPHAS, "alpha"), "inplace": d.flag("inplace")}


def _elu_invalid_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    return {"alpha": d.choice((-1.0, -0.5), "alpha"), "inplace": True}


def _elu_reference(case: Case, backward: bool) -> Result:
    if case.invalid:
        raise ValueError("inplace ELU with a negative alpha cannot be differentiated")
    x, alpha = case.inputs["input"], case.params["alpha"]
    y = ref.elu(x, alpha)
    out = Result(outputs={"output": y})
    if backward and "input" in case.differentiable:
        out.grads["input"] = ref.elu_vjp(x, S.output_gradient(case, "output", y), alpha)
    return out


def _elu_error(x, y, g, u, alpha, scale=1.0):
    return ref.elu_error(x, y, g, alpha, scale)


declare(LayerSpec(
    name="ELU",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("ELU", dtype, _elu_params, _kinks(0.0), tiers=("float",),
                                         forward_only=_inplace_negative("alpha")),
    reference=result_reference(_elu_reference),
    torch=TorchMapping("torch.nn.ELU", inplace="input"),
    tolerance=transcendental_tolerance(_elu_error, lambda case: {"alpha": case.params["alpha"]}),
    invalid_cases=lambda dtype: elementwise_case("ELU", dtype, _elu_invalid_params, tiers=("float",),
                                                 invalid="inplace with a negative alpha, input requires grad"),
    comparators={"grad.input": nan_slopes_comparator(lambda case: (1.0,))},
    smooth_at=smooth_at(_kinks(0.0)),
    regimes=(*value_regimes(_kinks(0.0)), INPLACE_REGIME,
             Regime("negative alpha", holds=lambda c: c.params["alpha"] < 0, pins={"alpha": -1.0},
                    description="alpha < 0: the negative branch rises to -alpha")),
    notes="y = x if x > 0 else alpha·(exp(x) - 1); the gradient at the kink x = 0 is alpha (the exponential "
          "branch). alpha negative, zero and non-representable (0.1). Error bound in the magnitude of the terms "
          "alpha·(exp(x) + 1): the textbook exp(x) - 1, which cancels for small |x|, conforms (PyTorch uses expm1), "
          "and the backward may be formed from the output, g·(y + alpha), as PyTorch does in place. inplace with a "
          "negative alpha is forward-only (invalid when the input requires grad). The gradient at NaN may be NaN or "
          "g (PyTorch: g).",
))


def _selu_reference(case: Case, backward: bool) -> Result:
    x = case.inputs["input"]
    y = ref.elu(x, ref.SELU_ALPHA, ref.SELU_SCALE)
    out = Result(outputs={"output": y})
    if backward:
        out.grads["input"] = ref.elu_vjp(x, S.output_gradient(case, "output", y), ref.SELU_ALPHA, ref.SELU_SCALE)
    return out


declare(LayerSpec(
    name="SELU",
    family=FAMILY,
    cases=lambda dtype: elementwise_case("SELU", dtype, _inplace, _kinks(0.0), tiers=("float",)),
    reference=result_reference(_selu_reference),
    torch=TorchMapping("torch.nn.SELU", inplace="input"),
    tolerance=transcendental_tolerance(_elu_error, lambda case: {"alpha": ref.SELU_ALPHA, "scale": ref.SELU_SCALE}),
    comparators={"grad.input": nan_slopes_comparator(lambda case: (ref.SELU_SCALE,))},
    smooth_at=smooth_at(_kinks(0.0)),
    regimes=(*value_regimes(_kinks(0.0)), INPLACE_REGIME),
    notes="scale·ELU(x, alpha) with PyTorch's constants (rounded once to the dtype: allowed); the gradient at the "
          "kink x = 0 is scale·alpha. Error analysis as ELU's. The gradient at NaN may be NaN or scale·g "
          "(PyTorch: scale·g).",
))
