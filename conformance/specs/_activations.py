"""Building blocks shared by the activation declarations (``activation``, ``smooth_activation``,
``softmax``): the elementwise case strategy, its value kinds and corner regimes, the tolerance of
single transcendental evaluations, and comparators that accept documented alternatives.

Value kinds of the float tier (label ``input.kind``), simplest first: ``normal``, ``uniform``,
``mixed`` (log-uniform over ±8 binades) and ``corner``, one of (label ``input.corner``) ``at the
kink`` (the layer's kinks and switch points and their neighbours in the dtype, the first element
exactly at one), ``large`` (log-uniform magnitudes from 2 up to the dtype's largest binade),
``inf`` (±inf mixed into normals) and ``nan``. The exact tier draws small integers. Each corner
is a regime that pins ``tier``, ``input.kind`` and ``input.corner``, so the ci profile reaches it
in every dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance
from conformance.tolerance import magnitudes
from reference.libm import LIBM_ULPS

FLOAT_KINDS = ("normal", "uniform", "mixed", "corner")
CORNERS = ("at the kink", "large", "inf", "nan")  # label ``input.corner``
LARGE = 1024.0  # the "large magnitudes" regime: some finite |x| >= LARGE
KINK_FRACTION = 0.4
SPECIAL_FRACTION = 0.3

KinksFn = Callable[[Mapping[str, Any], str], Sequence[float]]
ParamsFn = Callable[[S.Drawer, int, str], dict[str, Any]]
ErrorFn = Callable[..., tuple[np.ndarray, np.ndarray | None]]


# -- values ----------------------------------------------------------------------------------------

def neighbours(points: Iterable[float], dtype: str) -> np.ndarray:
    """The representable values of ``dtype`` just below and just above each point (finite points)."""
    dt = DTYPES[dtype]
    p = np.asarray([v for v in points if np.isfinite(v)], dtype=np.float64)
    a = np.abs(p)
    ulp = np.where(a > 0, dt.ulp(a), dt.min_subnormal)  # DType.ulp(0) is the spacing at 1
    with np.errstate(divide="ignore"):
        power_of_two = (a >= dt.min_normal) & (np.exp2(np.floor(np.log2(np.where(a > 0, a, 1.0)))) == a)
    up_mag, down_mag = a + ulp, np.where(power_of_two, a - ulp / 2, a - ulp)
    # next toward +inf and toward -inf, by sign (0 goes to ± the smallest subnormal)
    above = np.where(p >= 0, up_mag, -down_mag)
    below = np.where(p > 0, down_mag, -up_mag)
    out = dt.round(np.concatenate([above, below]))
    return out[np.isfinite(out)]


def kink_points(kinks: Sequence[float], dtype: str) -> np.ndarray:
    """The kinks themselves (representable in ``dtype``) and their neighbours."""
    exact = np.asarray([k for k in kinks if np.isfinite(k)], dtype=np.float64)
    return np.concatenate([exact, neighbours(exact, dtype)])


def _large(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Half the elements in [2, 2^10), half in [2^10, the dtype's largest binade]; random signs."""
    top = np.log2(DTYPES[dtype].max_value) - 1
    moderate = np.exp2(rng.uniform(1, 10, shape))
    huge = np.exp2(rng.uniform(10, top, shape))
    mags = np.where(rng.random(shape) < 0.5, moderate, huge)
    mags.flat[0] = huge.flat[0]
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0) * mags


def activation_values(d: S.Drawer, shape: Sequence[int], dtype: str, tier: str, layout: Layout,
                      kinks: Sequence[float] = (), *, int_limit: int = 8, scale: float = 1.0,
                      label: str = "input") -> np.ndarray:
    """An input for an elementwise activation (see the module docstring for the value kinds).

    Values are generated on the layout's source shape (constant along expanded dims) and rounded
    to ``dtype``; every special kind puts its special value at the first element, so a case of
    that kind always contains one.
    """
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, f"{label}.seed"))
    gen_shape = S.source_shape(shape, layout)
    dt = DTYPES[dtype]
    if tier == "exact":
        arr = rng.integers(-int_limit, int_limit + 1, size=gen_shape).astype(np.float64)
    else:
        finite_kinks = [k for k in kinks if np.isfinite(k)]
        kind = d.choice(FLOAT_KINDS, f"{label}.kind")
        if kind == "corner":
            corners = CORNERS if finite_kinks else CORNERS[1:]
            kind = d.choice(corners, f"{label}.corner")
        if kind in ("normal", "uniform", "mixed"):
            arr = S.float_array(rng, gen_shape, kind, scale)
        elif kind == "large":
            arr = _large(rng, gen_shape, dtype)
        else:
            arr = rng.standard_normal(gen_shape) * scale
            size = max(int(np.prod(gen_shape)), 1)
            if kind == "at the kink":
                points, exact = kink_points(finite_kinks, dtype), np.asarray(finite_kinks)
                fraction = KINK_FRACTION
            else:
                points = np.array([np.inf, -np.inf]) if kind == "inf" else np.array([np.nan])
                exact, fraction = points, SPECIAL_FRACTION
            flat = arr.reshape(size)
            pick = rng.random(size) < fraction
            flat[pick] = rng.choice(points, size=int(pick.sum()))
            flat[0] = rng.choice(exact)
            arr = flat.reshape(gen_shape)
    arr = dt.round(arr)
    return np.array(np.broadcast_to(arr, tuple(shape)))  # a contiguous copy; 0-d stays 0-d


def elementwise_case(op: str, dtype: str, params_fn: ParamsFn, kinks_fn: KinksFn | None = None,
                     tiers: Sequence[str] = S.TIERS,
                     forward_only: Callable[[Mapping[str, Any]], bool] | None = None,
                     invalid: str = "") -> st.SearchStrategy[Case]:
    """Any-shape input (0-d to 4-d, bounded), any layout, one tensor argument.

    ``params_fn(d, ndim, tier)`` draws the constructor parameters; ``kinks_fn(params, dtype)`` lists
    the layer's kinks (representable in the dtype); ``forward_only(params)`` marks cases whose
    input does not require grad (an in-place call PyTorch cannot differentiate). ``invalid``: the
    note of an invalid case (its params break a rule); such a case carries its cotangents, so that
    a rule enforced by the backward pass is exercised too.
    """

    @st.composite
    def build(draw: Any) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, tiers)
        ndim = d.integer(0, 4, "ndim")
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape"))
        layout = S.layouts(d, ndim, "layout.input", expanded=True)
        params = params_fn(d, ndim, tier)
        if params.get("inplace") and layout.kind == "expanded":
            layout = S.CONTIGUOUS  # torch forbids writing into overlapping memory
        kinks = kinks_fn(params, dtype) if kinks_fn else ()
        x = activation_values(d, shape, dtype, tier, layout, kinks)
        differentiable = () if forward_only and forward_only(params) else ("input",)
        case = Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=differentiable,
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid),
                    note=invalid)
        if invalid:  # the reference refuses the case, so the runner attaches no cotangents
            case.cotangents["output"] = S.output_cotangent(case, "output", x.shape)
        return case

    return build()


# -- regimes ---------------------------------------------------------------------------------------

def _x(case: Case) -> np.ndarray:
    return case.inputs["input"]


def at_kink(kinks_fn: KinksFn) -> Callable[[Case], bool]:
    """Predicate: some input lies exactly at one of the case's kinks."""
    return lambda case: bool(np.isin(_x(case), np.asarray(kinks_fn(case.params, case.dtype), dtype=float)).any())


def _float_pins(corner: str) -> dict[str, Any]:
    return {"tier": "float", "input.kind": "corner", "input.corner": corner}


def value_regimes(kinks_fn: KinksFn | None = None, kink_name: str = "at the kink",
                  kink_description: str = "inputs exactly at a kink and its neighbours") -> tuple[Regime, ...]:
    """The value corners every elementwise activation has: its kinks (when it has some), large
    magnitudes, ±inf and NaN."""
    regimes = []
    if kinks_fn is not None:
        regimes.append(Regime(kink_name, holds=at_kink(kinks_fn), pins=_float_pins("at the kink"),
                              description=kink_description))
    regimes += [
        Regime("large magnitudes", holds=lambda c: bool((np.abs(_x(c)[np.isfinite(_x(c))]) >= LARGE).any()),
               pins=_float_pins("large"), description=f"finite inputs of magnitude >= {LARGE:g} up to the "
                                                      "largest binade of the dtype"),
        Regime("infinite inputs", holds=lambda c: bool(np.isinf(_x(c)).any()), pins=_float_pins("inf"),
               description="±inf among the inputs: results and gradients are the limits"),
        Regime("NaN inputs", holds=lambda c: bool(np.isnan(_x(c)).any()), pins=_float_pins("nan"),
               description="NaN among the inputs: it propagates through the forward"),
    ]
    return tuple(regimes)


INPLACE_REGIME = Regime("inplace", holds=lambda c: bool(c.params.get("inplace")), pins={"inplace": True},
                        description="inplace=True: the input is overwritten with the output")


def smooth_at(kinks_fn: KinksFn | None = None, limit: float = 100.0) -> Callable[[Case], bool]:
    """Finite-difference safe: every input within ±limit and at least 2e-5 from every kink (the
    finite-difference steps are 1e-6 times a standard normal direction)."""

    def check(case: Case) -> bool:
        x = _x(case)
        if not np.all(np.abs(x) <= limit):
            return False
        if kinks_fn is None:
            return True
        kinks = np.asarray([k for k in kinks_fn(case.params, case.dtype) if np.isfinite(k)], dtype=float)
        return bool(kinks.size == 0 or np.all(np.abs(x[..., None] - kinks) > 2e-5))

    return check


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


def transcendental_tolerance(error_fn: ErrorFn, params_fn: Callable[[Case], dict[str, Any]] | None = None) -> Tolerance:
    """The tolerance of a single transcendental evaluation, from its first-order error analysis.

    bound = u·|ref| (the final rounding) + u·E, with E = ``error_fn(x, y, g, u, **params)`` in units
    of the dtype's u, plus an underflow allowance of the smallest normal number: a result below the
    normal range may be flushed to zero (PyTorch's float32 sigmoid returns 0 where the exact value
    is a subnormal). float16 and bfloat16 are judged with their own u: a backend may compute in the
    format itself; PyTorch computes in float32 and rounds once, using about half an ulp. In float64
    the reference's own error is added (``with_reference_error``).
    """

    def magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
        dt = DTYPES[case.dtype]
        u = dt.unit_roundoff
        g = case.cotangents.get("output") if "input" in result.grads else None
        params = params_fn(case) if params_fn else {}
        with np.errstate(all="ignore"):
            e_out, e_grad = error_fn(_x(case), result.outputs["output"], g, u, **params)
        under = dt.min_normal / u
        out = {"output": with_reference_error(case, e_out, result.outputs["output"]) + under}
        if "input" in result.state:
            out["state.input"] = out["output"]
        if e_grad is not None:
            out["grad.input"] = with_reference_error(case, e_grad, result.grads["input"]) + under
        return out

    return Tolerance(magnitude=magnitude, c=1.0, out_ulps=1.0, exact="none")


def rounding_tolerance(exact: str = "bitwise") -> Tolerance:
    """One correctly rounded operation per element (x - lambd, w·x with w in the dtype): u·|ref|,
    exact in the exact tier."""

    def magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
        return {name: np.zeros(np.shape(value)) for name, value in result.tensors().items()}

    return Tolerance(magnitude=magnitude, c=1.0, out_ulps=1.0, exact=exact)


def product_tolerance(slope_of: Callable[[Case], np.ndarray | float]) -> Tolerance:
    """LeakyReLU-style y = slope·x on x <= 0: one rounding (u·|ref|), plus |y| where the slope, a
    Python float, is not representable in the dtype and may be rounded first. Exact in the exact
    tier (power-of-two slopes on small integers)."""

    def magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
        x = _x(case)
        slope = np.asarray(slope_of(case), dtype=np.float64)
        rounded = np.broadcast_to(DTYPES[case.dtype].round(slope) != slope, np.shape(x)) & ~(x > 0)
        out = {"output": np.where(rounded, np.abs(result.outputs["output"]), 0.0)}
        if "input" in result.state:
            out["state.input"] = out["output"]
        if "input" in result.grads:
            out["grad.input"] = np.where(rounded, np.abs(result.grads["input"]), 0.0)
        return out

    return Tolerance(magnitude=magnitude, c=1.0, out_ulps=1.0, exact="bitwise")


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


def nan_slopes_comparator(slopes: Callable[[Case], Sequence[np.ndarray | float]]) -> Callable[..., Comparison]:
    """grad.input at NaN inputs: NaN (the reference: propagation) or the cotangent times the slope
    of one of the layer's branches (``slopes(case)``, broadcast against the input). PyTorch passes
    g·slope through, its branch tests being false at NaN. Elsewhere the reference, unchanged."""

    def compare(spec: LayerSpec, case: Case, name: str, ref: Result, got: Result) -> Comparison:
        x = _x(case)
        g = case.cotangents.get("output")
        if g is None or not np.isnan(x).any():
            return compare_alternatives(spec, case, name, ref, got, ())
        expected = ref.tensors()[name]
        with np.errstate(invalid="ignore", over="ignore"):
            alts = [np.where(np.isnan(x), g * np.asarray(s, dtype=np.float64), expected) for s in slopes(case)]
        return compare_alternatives(spec, case, name, ref, got, alts, rounded=True)

    return compare


def has_infinite_input(case: Case) -> bool:
    """Known-discrepancy predicate: some input is ±inf."""
    return bool(np.isinf(_x(case)).any())
