"""Tolerance glue, comparators, known-entry predicates and RReLU's randomness for the elementwise
family.

- Tolerances: selections are bit-exact; one correctly rounded operation is u·|ref| (exact in the
  exact tier); a product by a Python-float slope allows the slope's own rounding; everything else
  is the layer's first-order error analysis beside its reference (``analysed``: the family's
  one analysis signature turned into the engine's ``ErrorFn``).
- Comparators accept the alternatives the documentation leaves open, element by element: the
  cotangent times a branch slope at NaN inputs, either one-sided derivative at a kink, either
  branch within one rounding of Softplus's switch point, PReLU's weight gradient without the NaN
  elements.
- RReLU in training is judged through a conditional reference: the slopes the backend drew (read
  back as output/input, inputs drawn finite and non-zero) give the exact output and gradient, and
  Dvoretzky–Kiefer–Wolfowitz tests (``conformance.stats``) check the slopes against U(lower, upper)
  and their independence (consecutive slopes, channels, samples), with a stated false-alarm rate.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Randomness, Tolerance, spec_of
from conformance.stats import StatCheck, dkw_test, element_axes, neighbour_pairs
from conformance.strategies.elementwise import OBSERVABLE_LOW, compute_format, rrelu_random
from conformance.tolerance import analysed_tolerance, bound_for, magnitudes
from reference import functional as RF
from reference.activation import prelu_weight_grad_magnitude, prelu_weight_view
from reference.libm import LIBM_ULPS, sigmoid
from reference.smooth_activation import glu_halves, softplus_log_branch, softplus_product

Analysis = Callable[..., "tuple[np.ndarray, np.ndarray | None]"]
SELECTION = Tolerance(magnitude="ref", exact="always")  # no arithmetic: values are selected


def _x(case: Case) -> np.ndarray:
    return case.inputs["input"]


# -- tolerances ------------------------------------------------------------------------------------

def with_reference_error(case: Case, err: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Two terms the per-format analysis leaves out.

    - float64: the reference is itself a float64 evaluation of the same quantities, by formulas at
      least as accurate as the analysed ones; its error is added, so the float64 bound is the
      analysis twice (the tolerance engine adds the reference's final rounding).
    - float16, bfloat16: a backend computing in float32 and rounding once (PyTorch) carries the
      float32 error, L·u32·|y|, into that rounding; near a tie it may tip the result across.
    """
    err = np.asarray(err, dtype=np.float64)
    if case.dtype == "float64":
        return 2 * err
    if case.dtype in ("float16", "bfloat16"):
        return err + LIBM_ULPS * DTYPES["float32"].unit_roundoff / DTYPES[case.dtype].unit_roundoff * np.abs(ref)
    return err


def parameters_of(fn: Callable[..., Any], skip: int = 0) -> frozenset[str]:
    """The names of ``fn``'s parameters after the first ``skip``."""
    return frozenset(list(inspect.signature(fn).parameters)[skip:])


def analysed(analysis: Analysis, length: Callable[[Case, str], int] | int = 1, underflow: bool = True) -> Tolerance:
    """The tolerance of a layer from its first-order error analysis (``analysis(input, output,
    cotangent, u, tiny, **parameters)``, the family's one signature): bound = u·|ref| (the final
    rounding) + u·E, with E the analysis in units of the dtype's u for the output (and the input
    overwritten in place) and for the input's gradient, plus, with ``underflow``, the smallest
    normal number: a result below the normal range may be flushed to zero (PyTorch's float32
    sigmoid returns 0 where the exact value is a subnormal). float16 and bfloat16 are judged with
    their own u: a backend may compute in the format itself; PyTorch computes in float32 and
    rounds once, using about half an ulp. In float64 the reference's own error is added
    (``with_reference_error``). ``length``: the reduction length K of each tensor."""
    names = parameters_of(analysis, 5)

    def errors(case: Case, result: Result) -> dict[str, np.ndarray]:
        dt = DTYPES[case.dtype]
        u = dt.unit_roundoff
        y = result.outputs["output"]
        g = case.cotangents.get("output") if "input" in result.grads else None
        params = {k: v for k, v in case.params.items() if k in names}
        with np.errstate(all="ignore"):  # (a bound past float64's range is carried as its largest value: see bound_for)
            e_out, e_grad = analysis(_x(case), y, g, u, dt.min_subnormal, **params)
            under = dt.min_normal / u if underflow else 0.0
            out = {"output": with_reference_error(case, e_out, y) + under}
            if "input" in result.state:
                out["state.input"] = out["output"]
            if e_grad is not None:
                out["grad.input"] = with_reference_error(case, e_grad, result.grads["input"]) + under
        return out

    return analysed_tolerance(errors, length)


def rounding_tolerance(exact: str = "bitwise") -> Tolerance:
    """One correctly rounded operation per element (x - lambd, w·x with w in the dtype): u·|ref|,
    exact in the exact tier."""

    def magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
        return {name: np.zeros(np.shape(value)) for name, value in result.tensors().items()}

    return Tolerance(magnitude=magnitude, c=1.0, out_ulps=1.0, exact=exact)


def slope_rounding(case: Case, result: Result, slope: np.ndarray | float) -> dict[str, np.ndarray]:
    """|ref| where y = slope·x on x <= 0 with a slope the dtype does not represent (it may be
    rounded first), else 0; for the output, the input overwritten in place and the gradient."""
    x = _x(case)
    slope = np.asarray(slope, dtype=np.float64)
    rounded = np.broadcast_to(DTYPES[case.dtype].round(slope) != slope, np.shape(x)) & ~(x > 0)
    out = {"output": np.where(rounded, np.abs(result.outputs["output"]), 0.0)}
    if "input" in result.state:
        out["state.input"] = out["output"]
    if "input" in result.grads:
        out["grad.input"] = np.where(rounded, np.abs(result.grads["input"]), 0.0)
    return out


def product_tolerance(slope_of: Callable[[Case], np.ndarray | float]) -> Tolerance:
    """LeakyReLU-style y = slope·x on x <= 0: one rounding (u·|ref|), plus |y| where the slope, a
    Python float, is not representable in the dtype and may be rounded first. Exact in the exact
    tier (power-of-two slopes on small integers)."""
    return Tolerance(magnitude=lambda case, result: slope_rounding(case, result, slope_of(case)), c=1.0,
                     out_ulps=1.0, exact="bitwise")


def tolerance_of(kind: str | Tolerance | Mapping[str, Tolerance]) -> Tolerance | Mapping[str, Tolerance]:
    """A declaration's tolerance: ``"selection"`` (bit-exact), ``"rounding"`` (one rounding), or
    a Tolerance (mapping) as is."""
    if kind == "selection":
        return SELECTION
    if kind == "rounding":
        return rounding_tolerance()
    return kind  # type: ignore[return-value]


# -- comparators -----------------------------------------------------------------------------------

def _distance(got: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        same = (np.isnan(got) & np.isnan(candidate)) | (got == candidate)
        d = np.abs(got - candidate)
    return np.where(same, 0.0, np.where(np.isnan(d), np.inf, d))


def compare_alternatives(spec: LayerSpec, case: Case, name: str, ref: Result, got: Result,
                         alternatives: Sequence[np.ndarray], rounded: bool = False) -> Comparison:
    """Compare ``name`` against, element by element, whichever of the reference and the
    ``alternatives`` (arrays of its shape, NaN allowed) lies nearest the backend's value. With
    ``rounded``, an element where an alternative was taken may carry one more rounding (its value
    is formed from a Python-float slope the backend may round first)."""
    expected = np.asarray(ref.tensors()[name], dtype=np.float64)
    value = got.tensors().get(name)
    absref = magnitudes(spec, case, ref)[name]
    if value is None or np.shape(value) != expected.shape or not alternatives:
        return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)
    got_arr = np.asarray(value, dtype=np.float64)
    candidates = np.stack([expected, *[np.broadcast_to(a, expected.shape) for a in alternatives]])
    best = np.argmin(np.stack([_distance(got_arr, c) for c in candidates]), axis=0)
    chosen = np.take_along_axis(candidates, best[None], axis=0)[0]
    if rounded:
        with np.errstate(invalid="ignore"):
            taken = (best > 0) & np.isfinite(chosen)
            absref = np.where(taken, np.where(np.isfinite(absref), absref, 0.0) + np.abs(chosen), absref)
    return compare_tensor(spec, case, name, chosen, value, got.dtypes.get(name), absref)


Slopes = Sequence[float] | Callable[[Case], Sequence["np.ndarray | float"]]
OneSided = Callable[[Mapping[str, Any]], Mapping[float, tuple[float, float]]]


def gradient_comparator(nan_slopes: Slopes = (), one_sided: OneSided | None = None) -> Callable[..., Comparison]:
    """grad.input, with the alternatives the documentation leaves open:

    - at NaN inputs: NaN (the reference: propagation) or the cotangent times the slope of one of
      the layer's branches (``nan_slopes``, numbers or a function of the case broadcast against
      the input). PyTorch passes g·slope through, its branch tests being false at NaN.
    - at a kink ``k`` of ``one_sided(params) = {k: (left, right)}``: the cotangent times either
      one-sided derivative (the reference gives PyTorch's choice).

    Elsewhere the reference, unchanged."""

    def compare(spec: LayerSpec, case: Case, name: str, ref: Result, got: Result) -> Comparison:
        x = _x(case)
        g = case.cotangents.get("output")
        expected = ref.tensors()[name]
        alternatives = []
        if g is not None:
            with np.errstate(invalid="ignore", over="ignore"):
                if np.isnan(x).any():
                    slopes = nan_slopes(case) if callable(nan_slopes) else nan_slopes
                    alternatives += [np.where(np.isnan(x), g * np.asarray(s, dtype=np.float64), expected)
                                     for s in slopes]
                for point, sides in (one_sided(case.params) if one_sided else {}).items():
                    if (x == point).any():
                        alternatives += [np.where(x == point, g * side, expected) for side in sides]
        return compare_alternatives(spec, case, name, ref, got, alternatives, rounded=bool(alternatives))

    return compare


def softplus_branch_ambiguous(case: Case) -> np.ndarray:
    """Elements whose branch depends on how β·x is computed: exactly (the reference), or rounded
    once to the dtype or to float32 (PyTorch's arithmetic for float16/bfloat16), with β rounded to
    that format first. The candidates disagree on β·x > threshold only within one rounding of the
    switch point."""
    x = _x(case)
    beta, th = case.params["beta"], case.params["threshold"]
    formats = {case.dtype, "float32"} if case.dtype in ("float16", "bfloat16") else {case.dtype}
    with np.errstate(over="ignore", invalid="ignore"):
        exact = softplus_product(x, beta)
        linear = [exact > th]
        for name in formats:
            r = DTYPES[name].round
            rb = float(r(np.asarray(beta)))
            rth = float(r(np.asarray(th)))
            linear += [r(exact) > rth, r(rb * x) > rth]
    stacked = np.stack(linear)
    return stacked.any(axis=0) & ~stacked.all(axis=0)


def softplus_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Within one rounding of the switch point either branch is accepted (element by element)."""
    ambiguous = softplus_branch_ambiguous(case)
    if not ambiguous.any():
        return compare_alternatives(spec, case, name, result, got, ())
    x, beta, th = _x(case), case.params["beta"], case.params["threshold"]
    linear = softplus_product(x, beta) > th
    expected = result.tensors()[name]
    if name == "output":
        other = np.where(linear, softplus_log_branch(x, beta), x)
    else:
        g = case.cotangents["output"]
        other = np.where(linear, g * sigmoid(softplus_product(x, beta)), g)
    return compare_alternatives(spec, case, name, result, got, (np.where(ambiguous, other, expected),))


def prelu_weight(case: Case) -> np.ndarray:
    """PReLU's weight broadcast along the input's channel dim."""
    return prelu_weight_view(case.inputs["weight"], _x(case).ndim)


def prelu_weight_reduction(case: Case, tensor: str) -> int:
    """K of dL/dw: the elements sharing one weight."""
    return max(_x(case).size // case.inputs["weight"].size, 1)


def prelu_weight_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """absref of dL/dw: Σ|g·x| over x <= 0 per weight."""
    return {"grad.weight": prelu_weight_grad_magnitude(_x(case), case.inputs["weight"], case.cotangents["output"])}


def prelu_weight_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """A weight whose channel holds a NaN input: NaN (the reference) or the sum over the other
    elements (NaN taken down the x > 0 branch, which contributes nothing)."""
    x = _x(case)
    if not np.isnan(x).any() or "output" not in case.cotangents:
        return compare_alternatives(spec, case, name, result, got, ())
    without = RF.vjp("prelu", np.where(np.isnan(x), 1.0, x), case.inputs["weight"],
                     cotangent=case.cotangents["output"])["weight"]
    return compare_alternatives(spec, case, name, result, got, (without,))


PRELU_TOLERANCE = {"grad.weight": Tolerance(reduction=prelu_weight_reduction, magnitude=prelu_weight_magnitude,
                                            exact="bitwise"),
                   "*": product_tolerance(prelu_weight)}


# -- known-discrepancy predicates --------------------------------------------------------------------

def has_infinite_input(case: Case) -> bool:
    """Some input is ±inf."""
    return bool(np.isinf(_x(case)).any())


def has_minus_inf_input(case: Case) -> bool:
    """Some input is -inf."""
    return bool((_x(case) == -np.inf).any())


def zero_slope_at_minus_inf(case: Case) -> bool:
    """A zero negative slope (LeakyReLU's negative_slope, RReLU's bounds in evaluation) and a
    -inf input."""
    params = case.params
    slope = params["negative_slope"] if "negative_slope" in params else (params["lower"] + params["upper"]) / 2
    return slope == 0 and has_minus_inf_input(case)


def prelu_zero_weight_at_minus_inf(case: Case) -> bool:
    """A -inf input in a channel whose weight is 0."""
    x = _x(case)
    w = np.broadcast_to(prelu_weight(case), x.shape)
    return bool(((x == -np.inf) & (w == 0)).any())


def gelu_tanh_grad_overflows(case: Case) -> bool:
    """The tanh approximation's backward squares x in the format PyTorch computes in (float32
    below float64) and x² overflows."""
    x = _x(case)
    with np.errstate(invalid="ignore"):
        big = np.isfinite(x) & (np.abs(x) > math.sqrt(DTYPES[compute_format(case.dtype)].max_value))
    return case.params["approximate"] == "tanh" and bool(big.any())


def softplus_overflows(case: Case) -> bool:
    """β·x > threshold fails but exp(β·x) overflows the format PyTorch computes in (float32 for
    float32, float16 and bfloat16; float64 for float64)."""
    t = softplus_product(_x(case), case.params["beta"])
    with np.errstate(invalid="ignore"):
        overflow = t > math.log(DTYPES[compute_format(case.dtype)].max_value)
        return bool((overflow & (t <= case.params["threshold"])).any())


def hardswish_overflows(case: Case) -> bool:
    """Some finite x > 3 with 6·x beyond the largest value of the compute format (PyTorch forms
    x·relu6(x + 3) before dividing by 6)."""
    x = _x(case)
    with np.errstate(invalid="ignore"):
        return bool((np.isfinite(x) & (x > DTYPES[compute_format(case.dtype)].max_value / 6)).any())


def beyond_bound(case: Case, alternatives: Mapping[str, np.ndarray]) -> bool:
    """Whether a backend returning ``alternatives`` (by tensor name; NaN where it returns the
    reference) would be outside the case's bound somewhere: a known entry's predicate that holds
    exactly where the discrepancy it records shows."""
    spec = spec_of(case)
    with np.errstate(all="ignore"):
        ref = spec.evaluate(case, case.cotangents)
        mags = magnitudes(spec, case, ref)
        tensors = ref.tensors()
        for name, alternative in alternatives.items():
            if name not in tensors:
                continue
            value = np.asarray(tensors[name], dtype=np.float64)
            allowed = bound_for(spec, case, name, value, mags[name]).allowed
            if (np.isfinite(alternative) & np.isfinite(value) & (np.abs(alternative - value) > allowed)).any():
                return True
    return False


def _exp_overflows(case: Case, z: np.ndarray) -> np.ndarray:
    """exp(z) overflows the format PyTorch computes the case's dtype in (finite z)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(z) & (z > math.log(DTYPES[compute_format(case.dtype)].max_value))


def _where(mask: np.ndarray, value: np.ndarray | float) -> np.ndarray:
    return np.where(mask, value, np.nan)


def silu_sigmoid_overflows(case: Case) -> bool:
    """PyTorch's SiLU is x/(1 + exp(-x)) and its backward uses σ = 1/(1 + exp(-x)): where exp(-x)
    overflows both are 0 (so is the input overwritten in place); the case is beyond its bound."""
    zero = _where(_exp_overflows(case, -_x(case)), 0.0)
    return bool(np.isfinite(zero).any()) and beyond_bound(case, {"output": zero, "state.input": zero,
                                                                 "grad.input": zero})


def mish_sigmoid_overflows(case: Case) -> bool:
    """PyTorch's Mish backward is g·(t + x·σ·(1 - t²)) with σ = 1/(1 + exp(-x)): where exp(-x)
    overflows it is g·t; the case is beyond its bound."""
    x, g = _x(case), case.cotangents.get("output")
    window = _exp_overflows(case, -x)
    if g is None or not window.any():
        return False
    with np.errstate(all="ignore"):
        t = np.tanh(np.log1p(np.exp(x)))
    return beyond_bound(case, {"grad.input": _where(window, g * t)})


def glu_sigmoid_overflows(case: Case) -> bool:
    """PyTorch's GLU computes σ(b) = 1/(1 + exp(-b)): where exp(-b) overflows the output and both
    halves of the gradient are 0; the case is beyond its bound."""
    _, b, axis = glu_halves(_x(case), case.params["dim"])
    window = _exp_overflows(case, -b)
    if not window.any():
        return False
    zero = _where(window, 0.0)
    return beyond_bound(case, {"output": zero, "grad.input": np.concatenate([zero, zero], axis=axis)})


def hardsigmoid_float32_sixth(case: Case) -> bool:
    """PyTorch's float64 Hardsigmoid backward multiplies by 1/6 rounded to float32: the case is
    beyond its bound."""
    x, g = _x(case), case.cotangents.get("output")
    if g is None:
        return False
    inside = (x > -3) & (x < 3)
    return beyond_bound(case, {"grad.input": _where(inside, g * float(np.float32(1 / 6)))})


def celu_float32_reciprocal(case: Case) -> bool:
    """PyTorch's CELU backward uses 1/float32(alpha) (its forward 1/alpha): g·alpha·s·exp(s·x)
    with s = 1/float32(alpha) where x <= 0; the case is beyond its bound (float64: alpha not a
    float32 value)."""
    x, g, alpha = _x(case), case.cotangents.get("output"), float(case.params["alpha"])
    if g is None or alpha == 0:
        return False
    s = 1.0 / float(np.float32(alpha))
    with np.errstate(all="ignore"):
        grad = g * alpha * s * np.exp(s * np.minimum(x, 0.0))
    return beyond_bound(case, {"grad.input": _where(np.isfinite(x) & (x <= 0), grad)})


def celu_exp_overflows(case: Case) -> bool:
    """CELU with a negative alpha: its gradient g·exp(x/alpha) is a finite number of the dtype
    where exp(x/alpha) alone overflows the compute format (PyTorch then returns ±inf)."""
    alpha, g = float(case.params["alpha"]), case.cotangents.get("output")
    if alpha >= 0 or g is None:
        return False
    x = _x(case)
    fmt = DTYPES[case.dtype]
    with np.errstate(all="ignore"):
        z = np.where(np.isfinite(x) & (x <= 0), x / alpha, 0.0)
        finite = np.log(np.abs(g)) + z <= math.log(fmt.max_value * (1 + fmt.unit_roundoff))
    return bool((_exp_overflows(case, z) & finite & (g != 0)).any())


# -- RReLU -----------------------------------------------------------------------------------------

def _rrelu_deterministic(case: Case) -> bool:
    return not rrelu_random(case.params, case.train) or _x(case).size == 0


def canonical_noise(case: Case) -> np.ndarray:
    """The slopes in canonical form: 1 where x > 0 (no slope is drawn there), the reported slope
    clipped into [lower, upper] elsewhere (the midpoint before anything is reported)."""
    lower, upper = case.params["lower"], case.params["upper"]
    reported = case.choices.get("noise")
    x = _x(case)
    drawn = np.full(x.shape, (lower + upper) / 2) if reported is None else np.clip(reported, lower, upper)
    return np.where(x > 0, 1.0, drawn)


def rrelu_reference(case: Case) -> tuple[Result, Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]]:
    """RReLU: deterministic (evaluation; training with lower == upper, whose slope is lower) by
    ``rrelu``; random by ``rrelu_with_noise`` given the canonical slopes, returned as the case's
    choices. Invalid cases are refused."""
    x, lower, upper = _x(case), case.params["lower"], case.params["upper"]
    if _rrelu_deterministic(case):
        kw = {"lower": lower, "upper": upper, "training": case.train and x.size > 0}  # (empty: nothing drawn)
        result = Result(outputs={"output": RF.rrelu(x, **kw)})
        if case.invalid:  # a rule of autograd (in place with a negative slope): the module's call succeeds
            raise ValueError(f"invalid case: {case.note}")
        return result, lambda cot: RF.vjp("rrelu", x, cotangent=cot["output"], **kw)
    kw = {"noise": canonical_noise(case), "lower": lower, "upper": upper, "training": True}
    result = Result(outputs={"output": RF.rrelu_with_noise(x, **kw)}, choices={"noise": kw["noise"]})
    return result, lambda cot: RF.vjp("rrelu_with_noise", x, cotangent=cot["output"], **kw)


def _rrelu_sample(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Slopes as a conforming backend draws them: U(lower, upper) rounded to the dtype where x <= 0."""
    x, lower, upper = _x(case), case.params["lower"], case.params["upper"]
    return {"noise": np.where(x > 0, 1.0, DTYPES[case.dtype].round(rng.uniform(lower, upper, x.shape)))}


def slope_error(case: Case) -> float:
    """Bound on |read-back slope - drawn slope| for the case's slopes: the slope rounded to the
    dtype (u·|s|) and the product s·x rounded (u·|s|, or half the subnormal spacing over |x| where
    it underflows; inputs of random cases have |x| >= 2^-10)."""
    fmt = DTYPES[case.dtype]
    top = max(abs(case.params["lower"]), abs(case.params["upper"]))
    return 2 * fmt.unit_roundoff * top + fmt.min_subnormal / OBSERVABLE_LOW


def rrelu_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """Deterministic cases: a product by the Python-float slope (lower + upper)/2. Random ones: the
    reported slope differs from the drawn one by ``slope_error`` (so the output and gradient formed
    from it, and a slope clipped into [lower, upper]): |x|·δ, |g|·δ and δ, in units of u."""
    if "noise" not in result.choices:
        return slope_rounding(case, result, (case.params["lower"] + case.params["upper"]) / 2)
    delta = slope_error(case) / DTYPES[case.dtype].unit_roundoff
    x = _x(case)
    out = {"output": np.abs(x) * delta, "random.noise": np.full(x.shape, delta)}
    if "input" in result.state:
        out["state.input"] = out["output"]
    if "input" in result.grads:
        out["grad.input"] = np.abs(case.cotangents["output"]) * delta
    return out


RRELU_TOLERANCE = Tolerance(magnitude=rrelu_magnitude, c=1.0, out_ulps=1.0, exact="none")


def noise_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """The read-back slopes against their canonical form (1 at x > 0, within [lower, upper]
    elsewhere); they travel in float64 (a ratio of two values of the dtype), so the dtype is not
    compared."""
    return compare_tensor(spec, case, name, result.choices["noise"], got.tensors().get(name), None,
                          magnitudes(spec, case, result)[name])


def _uniform_cdf(t: np.ndarray) -> np.ndarray:
    return np.clip(t, 0.0, 1.0)


def _difference_cdf(t: np.ndarray) -> np.ndarray:
    """The distribution of |U - V| for independent U, V uniform on [0, 1]: 1 - (1 - t)²."""
    c = np.clip(t, 0.0, 1.0)
    return 1 - (1 - c) ** 2


def rrelu_check(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], alpha: float) -> list[StatCheck]:
    """The slopes read back at negative inputs, normalised to t = (s - lower)/(upper - lower):
    uniform on [0, 1] (DKW test); and independent: |t_a - t_b| over disjoint pairs of neighbouring
    slopes distributed as for independent uniforms, 1 - (1 - d)² (a slope shared by several
    elements gives differences of 0), for consecutive slopes of a case (in order, over the negative
    inputs), for neighbouring channels (dim 1 of inputs of 3 dims or more) and neighbouring samples
    (dim 0 of inputs of 2 dims or more), both elements negative (``conformance.stats.element_axes``).
    Each read-back slope is within ``slope_error`` of the one drawn; the rate alpha is split
    equally over the four tests (union bound)."""
    normalised, widths = [], [0.0]
    differences: dict[str, list[np.ndarray]] = {"consecutive": [], "channels": [], "samples": []}
    for case, choices in samples:
        lower, upper = case.params["lower"], case.params["upper"]
        x = _x(case)
        t_all = np.where(x < 0, (np.asarray(choices["noise"], dtype=np.float64) - lower) / (upper - lower), np.nan)
        t = t_all.reshape(-1)[x.reshape(-1) < 0]
        normalised.append(t)
        pairs = t.size // 2
        differences["consecutive"].append(np.abs(t[0:2 * pairs:2] - t[1:2 * pairs:2]))
        for test in ("channels", "samples"):
            axis = element_axes(x.ndim).get(test)
            if axis is not None:
                first, second = neighbour_pairs(t_all, axis)
                d = np.abs(first - second).reshape(-1)
                differences[test].append(d[~np.isnan(d)])
        widths.append(slope_error(case) / (upper - lower))
    width = max(widths)
    share = alpha / 4

    def pooled(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    return [dkw_test("uniform slopes", "slopes at negative inputs, against U(lower, upper)", pooled(normalised),
                     _uniform_cdf, width, share),
            dkw_test("independent slopes", "differences of consecutive slopes, against independent draws",
                     pooled(differences["consecutive"]), _difference_cdf, 2 * width, share),
            dkw_test("independent channels", "differences of the slopes of neighbouring channels",
                     pooled(differences["channels"]), _difference_cdf, 2 * width, share),
            dkw_test("independent samples", "differences of the slopes of neighbouring samples",
                     pooled(differences["samples"]), _difference_cdf, 2 * width, share)]


RRELU_RANDOMNESS = Randomness(choices={"noise": lambda case: {"rule": "ratio", "of": "output", "over": "input"}},
                              sample=_rrelu_sample, check=rrelu_check, deterministic=_rrelu_deterministic)


# -- derivative modes (issue #24): forward-mode predicates -------------------------------------------

def hardsigmoid_has_linear_part(case: Case) -> bool:
    """Some input lies in -3 < x < 3, where Hardsigmoid's derivative is 1/6 (its forward-mode rule,
    like its backward, multiplies by a float32 1/6 in float64)."""
    x = _x(case)
    return bool(np.any((x > -3) & (x < 3)))


def celu_float32_alpha_at_nonpositive_input(case: Case) -> bool:
    """CELU's alpha is not a float32 value and some finite input is <= 0 with exp(x/alpha) not
    underflowing: where its forward-mode rule (like its backward) scales by alpha/float32(alpha)."""
    x, alpha = _x(case), float(case.params["alpha"])
    if alpha == 0 or float(np.float32(alpha)) == alpha:
        return False
    with np.errstate(all="ignore"):
        return bool(np.any(np.isfinite(x) & (x <= 0) & (x / alpha > -700)))


# The oneDNN GELU backward (approximate='none', bfloat16) returns 0 for every x ≤ -6.15625 (measured
# over all bfloat16 values, torch 2.13: -6.125 still gets -3e-8): the cut between the largest bfloat16
# it flushes and the smallest it does not.
ONEDNN_BF16_GELU_GRAD_FLUSH = -6.140625


def onednn_gelu_path(case: Case) -> bool:
    """torch's CPU GELU (approximate='none') takes the oneDNN kernel, forward and backward, for an
    input of 2 or more elements that is contiguous by torch's strides (``is_contiguous()``: a
    channels-last, permuted or expanded input whose moved dims have size 1 is too); 0-d, 1-element
    and other inputs take the native kernel."""
    from conformance.strategies import is_torch_contiguous, torch_strides

    x = _x(case)
    return (case.params.get("approximate") == "none" and x.size > 1
            and is_torch_contiguous(x.shape, torch_strides(x.shape, case.layout("input"))))


def onednn_bfloat16_gelu_grad_flushed(case: Case) -> bool:
    """The oneDNN path (``onednn_gelu_path``) and some input its bfloat16 GELU backward flushes
    (x ≤ -6.15625) where the zero gradient is beyond the case's bound: exactly where
    ``gelu-bfloat16-onednn-inaccurate`` shows."""
    x = np.asarray(_x(case), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        flushed = np.isfinite(x) & (x < ONEDNN_BF16_GELU_GRAD_FLUSH)
    if not flushed.any() or not onednn_gelu_path(case):
        return False
    return beyond_bound(case, {"grad.input": _where(flushed, 0.0)})


def shows_against_reference(case: Case, alternatives: Mapping[str, np.ndarray]) -> bool:
    """Whether a backend returning ``alternatives`` (by tensor name) would fail the case: finite
    where the reference is not, or the reverse, or finite and beyond the bound (``beyond_bound``)."""
    return any_shows_against_reference(case, [alternatives])


def any_shows_against_reference(case: Case, candidates: Iterable[Mapping[str, np.ndarray]]) -> bool:
    """Whether some candidate's tensors would fail the case (``shows_against_reference``), with the
    reference, its magnitudes and its bounds evaluated once for all the candidates (a predicate that
    tries every buffer layout a compiler may pick)."""
    spec = spec_of(case)
    with np.errstate(all="ignore"):
        ref = spec.evaluate(case, case.cotangents)
        mags = magnitudes(spec, case, ref)
        tensors = {name: np.asarray(value, dtype=np.float64) for name, value in ref.tensors().items()}
        allowed: dict[str, Any] = {}
        for candidate in candidates:
            for name, value in candidate.items():
                if name not in tensors:
                    continue
                expected = tensors[name]
                if np.shape(value) == np.shape(expected) and np.any(np.isfinite(value) != np.isfinite(expected)):
                    return True
                if name not in allowed:
                    allowed[name] = bound_for(spec, case, name, expected, mags[name]).allowed
                if (np.isfinite(value) & np.isfinite(expected) & (np.abs(value - expected) > allowed[name])).any():
                    return True
    return False

# -- PReLU weight gradient: per-element products rounded before the reduction ---------------------------


def prelu_weight_product_overflows(case: Case) -> bool:
    """torch's PReLU backward rounds each weight-gradient term x·g (x < 0) to the case dtype before
    summing them per channel: where one term overflows, the channel's sum is ±inf (NaN from terms
    of both signs) although the true sum may be representable. True where some term overflows and
    the result is not the correctly rounded one anyway (the true sum rounding to the same infinity
    as every overflowing term)."""
    x, w = case.inputs.get("input"), case.inputs.get("weight")
    g = case.cotangents.get("output")
    if x is None or w is None or g is None or case.dtype == "float64" or x.size == 0:
        return False
    dtype = DTYPES[case.dtype]
    with np.errstate(all="ignore"):
        terms = np.where(x < 0, np.asarray(x, dtype=np.float64) * np.asarray(g, dtype=np.float64), 0.0)
    if w.size > 1:  # one slope per channel: dim 1, or dim 0 of a 1-D input
        axis = 1 if x.ndim >= 2 else 0
        terms = np.moveaxis(terms, axis, 0).reshape(terms.shape[axis], -1)
    else:
        terms = terms.reshape(1, -1)
    rounded = dtype.round(terms)
    for row, rrow in zip(terms, rounded):
        over = np.isinf(rrow)
        if not np.any(over):
            continue
        signs = set(np.sign(rrow[over]).tolist())
        exact = dtype.round(np.array([math.fsum(row.tolist())]))[0]
        if len(signs) > 1 or not (np.isinf(exact) and np.sign(exact) in signs):
            return True
    return False


# -- second-order error terms (the vjp2 mode: LayerSpec.second_order_error) ------------------------

def celu_second_order_error(case: Case, v: Mapping[str, np.ndarray], g: Mapping[str, np.ndarray]
                            ) -> dict[str, np.ndarray]:
    """The vjp2 error of CELU's gradient formed from the output (torch in place: g·s·(y + c), s =
    1/alpha, c = alpha): differentiated as torch does, dy/dx = s·(y + c) from the rounded y again,
    so H·v = g·v·s²·(y + c) carries the first-order from-output error times s·|v| (the first-order
    bound's own terms, ``A._exp_linear_error``): exact zeros are not owed where y saturates."""
    from reference import activation as A

    x = np.asarray(case.inputs["input"], dtype=np.float64)
    cot = g.get("output")
    if cot is None or "input" not in v:
        return {}
    alpha = float(case.params["alpha"])
    u = DTYPES[case.dtype].unit_roundoff
    y = A.celu(x, alpha)
    s = 1.0 / abs(alpha)
    with np.errstate(all="ignore"):
        e = np.exp(np.minimum(x, 0.0) / alpha)
        neg_out = abs(alpha) * (4 * e + np.abs(np.expm1(np.minimum(x, 0.0) / alpha)) + 2 * np.abs(x / alpha) * e) \
            + 2 * np.abs(y)
        from_output = s * np.abs(cot) * (neg_out + np.abs(y) + abs(alpha) + np.abs(y + alpha))
        out = np.where(x > 0, 0.0, u * s * np.abs(v["input"]) * from_output)
    return {"d2.input": np.where(np.isfinite(out), out, 0.0)}
