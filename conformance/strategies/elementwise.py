"""Case strategies of the elementwise family: the one-input elementwise case (any rank, any layout,
parameters described as data), PReLU's (an input and a weight), GLU's (a dim to halve), the softmax
family's (a dim to normalise over), their value kinds and their corner regimes.

Value kinds of the float tier (label ``input.kind``), simplest first: ``normal``, ``uniform``,
``mixed`` (log-uniform over ±8 binades) and ``corner``, one of (label ``input.corner``) ``at the
kink`` (the layer's kinks and switch points and their neighbours in the dtype, the first element
exactly at one), ``large`` (log-uniform magnitudes from 2 up to the dtype's largest binade),
``inf`` (±inf mixed into normals) and ``nan``; with ``edges`` also ``signed zeros`` (±0),
``exp overflow`` (|x| within 4 of log(max) of the format the backend computes in, where exp
overflows), ``huge`` (the top binades, up to the largest finite value) and ``tiny`` (subnormals
and the smallest normals). The exact tier draws small integers. Each corner is a regime that pins
``tier``, ``input.kind`` and ``input.corner``, so the ci profile reaches it in every dtype.

Parameters are data (``ParamSpec``): a mapping from a draw's label to its options, simplest first:
a tuple (drawn), ``PerTier(float=..., exact=...)`` (options by tier), ``Joint(names, options)``
(one draw setting several parameters) or a plain value (fixed, no draw); or a callable
``(drawer, ndim, tier) -> params`` for parameters that depend on each other. A layer with
``inplace`` draws the flag last. ``edges=False`` keeps the draws of the entries declared before the
edge corners and empty inputs existed (and so their ci case ids).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import Regime
from reference.softmax import softmax_axis

FLOAT_KINDS = ("normal", "uniform", "mixed", "corner")
CORNERS = ("at the kink", "large", "inf", "nan")  # label ``input.corner``
EDGE_CORNERS = CORNERS + ("signed zeros", "exp overflow", "huge", "tiny")
LARGE = 1024.0  # the "large magnitudes" regime: some finite |x| >= LARGE
HUGE_BINADES = 6  # the "huge" corner: |x| >= max/2^6
KINK_FRACTION = 0.4
SPECIAL_FRACTION = 0.3
FLOAT = ("float",)

KinksFn = Callable[[Mapping[str, Any], str], Sequence[float]]


@dataclass(frozen=True)
class PerTier:
    """Options of a parameter by tier: the exact tier's keep products exact on small integers."""

    float: tuple[Any, ...]
    exact: tuple[Any, ...]


@dataclass(frozen=True)
class Joint:
    """One labelled draw among ``options`` (tuples) setting the parameters ``names``."""

    names: tuple[str, ...]
    options: tuple[tuple[Any, ...], ...]


ParamSpec = Mapping[str, Any] | Callable[[S.Drawer, int, str], dict[str, Any]]


def draw_params(d: S.Drawer, spec: ParamSpec | None, ndim: int, tier: str, inplace: bool) -> dict[str, Any]:
    """The parameters of a case (see the module docstring), then the ``inplace`` flag."""
    if callable(spec):
        params = dict(spec(d, ndim, tier))
    else:
        params = {}
        for label, options in (spec or {}).items():
            if isinstance(options, Joint):
                params.update(zip(options.names, d.choice(options.options, label)))
            elif isinstance(options, PerTier):
                params[label] = d.choice(options.exact if tier == "exact" else options.float, label)
            elif isinstance(options, (tuple, list)):
                params[label] = d.choice(options, label)
            else:
                params[label] = options
    if inplace and "inplace" not in params:
        params["inplace"] = d.flag("inplace")
    return params


def kinks_of(kinks: Sequence[float] | Callable[[Mapping[str, Any]], Sequence[float]] | None) -> KinksFn | None:
    """A declaration's kinks (points, or a function of the parameters) as ``(params, dtype) ->
    points`` rounded to the dtype (a switch point such as threshold/β may not be representable)."""
    if kinks is None or (not callable(kinks) and not kinks):
        return None

    def points(params: Mapping[str, Any], dtype: str) -> tuple[float, ...]:
        raw = kinks(params) if callable(kinks) else kinks
        return tuple(float(v) for v in DTYPES[dtype].round(np.asarray(raw, dtype=np.float64)).reshape(-1))

    return points


# -- values ------------------------------------------------------------------------------------------

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


def compute_format(dtype: str) -> str:
    """The format a backend computes ``dtype`` in, at the least: float64 for float64, float32 for
    the others (PyTorch computes float16 and bfloat16 elementwise functions in float32)."""
    return "float64" if dtype == "float64" else "float32"


def exp_overflow_point(dtype: str) -> float:
    """log(max) of the compute format: exp overflows beyond it (88.72 in float32, 709.78 in float64)."""
    return math.log(DTYPES[compute_format(dtype)].max_value)


def _signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def _large(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Half the elements in [2, 2^10), half in [2^10, the dtype's largest binade]; random signs."""
    top = np.log2(DTYPES[dtype].max_value) - 1
    moderate = np.exp2(rng.uniform(1, 10, shape))
    huge = np.exp2(rng.uniform(10, top, shape))
    mags = np.where(rng.random(shape) < 0.5, moderate, huge)
    if mags.size:
        mags.flat[0] = huge.flat[0]
    return _signs(rng, shape) * mags


def _edge(kind: str, rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(candidates of the edge corner ``kind`` for every element, the values of its first element)."""
    dt = DTYPES[dtype]
    if kind == "signed zeros":
        zeros = np.where(rng.random(shape) < 0.5, -0.0, 0.0)
        return zeros, zeros
    if kind == "exp overflow":
        values = _signs(rng, shape) * (exp_overflow_point(dtype) + rng.uniform(-4, 4, shape))
        return values, values
    if kind == "huge":
        top = math.log2(dt.max_value)
        values = _signs(rng, shape) * np.minimum(np.exp2(rng.uniform(top - HUGE_BINADES, top, shape)), dt.max_value)
        return values, values
    low = math.log2(dt.min_subnormal)
    values = _signs(rng, shape) * np.exp2(rng.uniform(low, math.log2(dt.min_normal) + 2, shape))  # "tiny"
    return values, values


def activation_values(d: S.Drawer, shape: Sequence[int], dtype: str, tier: str, layout: Layout,
                      kinks: Sequence[float] = (), *, int_limit: int = 8, scale: float = 1.0,
                      label: str = "input", edges: bool = False) -> np.ndarray:
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
            corners = EDGE_CORNERS if edges else CORNERS
            kind = d.choice(corners if finite_kinks else corners[1:], f"{label}.corner")
        size = max(int(np.prod(gen_shape)), 1)
        if kind in ("normal", "uniform", "mixed"):
            arr = S.float_array(rng, gen_shape, kind, scale)
        elif kind == "large":
            arr = _large(rng, gen_shape, dtype)
        else:
            arr = rng.standard_normal(gen_shape) * scale
            if kind == "at the kink":
                points, exact = kink_points(finite_kinks, dtype), np.asarray(finite_kinks)
                fraction = KINK_FRACTION
            elif kind in ("inf", "nan"):
                points = np.array([np.inf, -np.inf]) if kind == "inf" else np.array([np.nan])
                exact, fraction = points, SPECIAL_FRACTION
            else:
                points, exact = _edge(kind, rng, (size,), dtype)
                fraction = SPECIAL_FRACTION
            if arr.size:  # (an empty input holds no value to place)
                flat = arr.reshape(size)
                pick = rng.random(size) < fraction
                flat[pick] = rng.choice(points, size=int(pick.sum()))
                flat[0] = rng.choice(exact)
                arr = flat.reshape(gen_shape)
    arr = dt.round(arr)
    return np.array(np.broadcast_to(arr, tuple(shape)))  # a contiguous copy; 0-d stays 0-d


OBSERVABLE_LOW = 2.0**-10


def observable(x: np.ndarray, dtype: str) -> np.ndarray:
    """x with zeros, non-finite values and magnitudes below 2^-10 replaced by 1 and magnitudes
    capped at max/8, so that a slope s (|s| <= 8) applied to it can be read back as the ratio
    s·x / x, to within one rounding."""
    cap = DTYPES[dtype].max_value / 8
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(x) & (np.abs(x) >= OBSERVABLE_LOW)
        return np.where(keep, np.clip(x, -cap, cap), 1.0)


# -- the elementwise case ------------------------------------------------------------------------------

def _shape(d: S.Drawer, edges: bool, lo_ndim: int = 0) -> list[int]:
    """A shape of rank lo_ndim-4 within the budget; with ``edges``, sometimes with an empty dim."""
    ndim = d.integer(lo_ndim, 4, "ndim")
    shape = S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape")
    if edges and ndim and d.flag("empty"):
        shape[d.integer(0, ndim - 1, "empty dim")] = 0
    return shape


@dataclass(frozen=True)
class Elementwise:
    """How an elementwise entry's cases are drawn: any-shape input (0-d to 4-d, bounded), any
    layout, one tensor argument.

    ``params`` draws the parameters (``ParamSpec``), ``kinks(params, dtype)`` lists the kinks,
    ``forward_only(params, train)`` marks cases whose input does not require grad (an in-place call
    PyTorch cannot differentiate), ``train`` draws the module's train flag (label ``train``, True
    first) and ``random(params, train)`` marks cases that make random choices (their inputs are
    drawn ``observable``). ``invalid`` maps the note of each rule an invalid case breaks to the
    parameter options that break it (replacing the valid options by label; ``"train"`` fixes the
    train flag); an invalid case carries its cotangents, so that a rule enforced by the backward
    pass is exercised too. ``backward_rules`` names the rules of ``invalid`` that torch enforces
    only in its backward pass (their cases say ``backward_rule``: a forward-only backend cannot
    reject them).
    """

    op: str
    params: ParamSpec | None = None
    kinks: KinksFn | None = None
    tiers: tuple[str, ...] = S.TIERS
    inplace: bool = False
    forward_only: Callable[[Mapping[str, Any], bool], bool] | None = None
    edges: bool = True
    train: bool = False
    random: Callable[[Mapping[str, Any], bool], bool] | None = None
    invalid: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    backward_rules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.backward_rules) - set(self.invalid)
        if unknown:
            raise ValueError(f"{self.op}: backward_rules name no invalid rule: {sorted(unknown)}")

    def valid(self, dtype: str) -> st.SearchStrategy[Case]:
        return S.case_strategy(lambda d, dt: self.build(d, dt, None))(dtype)

    def rejected(self, dtype: str) -> st.SearchStrategy[Case]:
        return S.case_strategy(lambda d, dt: self.build(d, dt, self._rule(d)))(dtype)

    def _rule(self, d: S.Drawer) -> str:
        rules = list(self.invalid)
        return rules[0] if len(rules) == 1 else d.choice(rules, "invalid rule")

    def _params(self, rule: str | None) -> ParamSpec | None:
        if rule is None or callable(self.params):
            return self.params
        return {**(self.params or {}), **self.invalid[rule]}

    def build(self, d: S.Drawer, dtype: str, rule: str | None) -> Case:
        tier = S.tier(d, self.tiers)
        shape = tuple(_shape(d, self.edges))
        layout = S.layouts(d, len(shape), "layout.input", expanded=True)
        params = draw_params(d, self._params(rule), len(shape), tier, self.inplace)
        if "train" in params:  # fixed by an invalid rule
            train = bool(params.pop("train"))
        else:
            train = d.choice((True, False), "train") if self.train else True
        if params.get("inplace") and layout.kind == "expanded":
            layout = S.CONTIGUOUS  # torch forbids writing into overlapping memory
        valid = rule is None
        kinks = self.kinks(params, dtype) if self.kinks and valid else ()  # invalid cases: no kink values
        x = activation_values(d, shape, dtype, tier, layout, kinks, edges=self.edges)
        random = valid and self.random is not None and self.random(params, train)
        if random:
            x = observable(x, dtype)
        differentiable = () if valid and self.forward_only and self.forward_only(params, train) else ("input",)
        case = Case(op=self.op, dtype=dtype, params=params, inputs={"input": x}, differentiable=differentiable,
                    layouts={"input": layout}, train=train, tier=tier, cotangent_seed=S.seed(d),
                    invalid=rule is not None, backward_rule=rule in self.backward_rules,
                    note=rule or ("random" if random else ""))
        if rule is not None:  # the reference refuses the case, so the runner attaches no cotangents
            case.cotangents["output"] = S.output_cotangent(case, "output", x.shape)
        return case


def threshold_params(d: S.Drawer, ndim: int, tier: str) -> dict[str, Any]:
    """Threshold's parameters: a threshold, then a value above or below it (near and far), 0 or -inf."""
    th = d.choice((0.0, 1.0, -1.5, 0.5, 6.0, 100.0), "threshold")
    where = d.choice(("zero", "above", "below", "far above", "far below", "-inf"), "value")
    value = {"zero": 0.0, "above": th + 2.0, "below": th - 2.5, "far above": 1000.0, "far below": -1000.0,
             "-inf": -math.inf}[where]
    return {"threshold": th, "value": value}


def inplace_negative(slope: str | Callable[[Mapping[str, Any]], float],
                     train: bool | None = None) -> Callable[[Mapping[str, Any], bool], bool]:
    """Forward only: in place with a negative slope (the parameter ``slope``, or a function of
    the parameters; only in the train mode ``train`` when given) cannot be differentiated (the
    backward reconstructs the input's sign from the output)."""
    value = slope if callable(slope) else (lambda params: params[slope])
    return lambda params, mode: (bool(params.get("inplace")) and value(params) < 0
                                 and (train is None or mode == train))


# -- PReLU -----------------------------------------------------------------------------------------

PRELU_WEIGHTS = (0.25, 0.0, -0.5, 1.0, 2.0, -1.0)
PRELU_EXACT_WEIGHTS = (1.0, 0.0, -1.0, 2.0, -2.0)  # the exact tier's inputs are integers


def prelu_cases(invalid: bool = False) -> Callable[[str], st.SearchStrategy[Case]]:
    """Input of rank 0-4; weight (num_parameters,) with num_parameters 1 or the channel count
    (dim 1; 1 below rank 2). Invalid: any other count."""

    def build(d: S.Drawer, dtype: str) -> Case:
        tier = S.tier(d)
        ndim = d.integer(0, 4, "ndim")
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape"))
        channels = shape[1] if len(shape) >= 2 else 1
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
        return Case(op="PReLU", dtype=dtype, params={"num_parameters": int(n)},
                    inputs={"input": x, "weight": DTYPES[dtype].round(w)}, differentiable=("input", "weight"),
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d), invalid=invalid,
                    note=f"{n} parameters for {channels} channels" if invalid else "")

    return S.case_strategy(build)


# -- GLU -------------------------------------------------------------------------------------------

GLU_INVALID = ("odd size along dim", "0-d input", "dim out of range")


def glu_cases(invalid: bool = False) -> Callable[[str], st.SearchStrategy[Case]]:
    """Input of rank 1-4 whose size along ``dim`` (every dim, negative spellings too) is even: the
    halves' sizes are drawn, then doubled along dim. Invalid: an odd size along dim, a 0-d input,
    a dim one past either end."""

    def build(d: S.Drawer, dtype: str) -> Case:
        rule = d.choice(GLU_INVALID, "invalid rule") if invalid else ""
        tier = S.tier(d)
        ndim = 0 if rule == "0-d input" else d.integer(1, 4, "ndim")
        rank = max(ndim, 1)
        if rule == "dim out of range":
            dim = d.choice((rank, -rank - 1), "dim")
        else:
            dim = d.choice((-1, *range(rank), *range(-rank, -1)), "dim")
        shape = S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 2, lo=1, hi=8, label="shape")
        if ndim:
            shape[dim % ndim if -ndim <= dim < ndim else 0] *= 2
            if rule == "odd size along dim":
                shape[dim % ndim] -= 1
            elif not rule and d.flag("empty"):
                shape[d.integer(0, ndim - 1, "empty dim")] = 0
        layout = S.layouts(d, ndim, "layout.input", expanded=True)
        x = activation_values(d, shape, dtype, tier, layout, edges=True)
        return Case(op="GLU", dtype=dtype, params={"dim": dim}, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d), invalid=bool(rule), note=rule)

    return S.case_strategy(build)


# -- the softmax family ----------------------------------------------------------------------------

# Input scales, simplest first; the last one makes exp(x) overflow without the max shift.
SCALES = (1.0, 16.0, 1000.0)
# Non-finite content, simplest first: -inf entries (probability 0), a slice of -inf only (NaN), and
# NaN / +inf entries (NaN slice; for Softmin +inf is the harmless end).
SPECIALS = ("none", "-inf entries", "all -inf slice", "NaN and +inf")
SOFTMAX2D_INVALID_RANKS = (2, 5, 1, 0)


def softmax_axis_of(case: Case) -> int:
    """The axis the case normalises over (Softmax2d: dim -3, which has no ``dim`` parameter)."""
    x = case.inputs["input"]
    return softmax_axis(x.ndim, case.params["dim"] if "dim" in case.params else -3)


def softmax_length(case: Case, tensor: str = "") -> int:
    """K, the length of the slices a softmax case normalises (1 for a 0-d input)."""
    x = case.inputs["input"]
    return 1 if x.ndim == 0 else x.shape[softmax_axis_of(case)]


def _slice_index(shape: tuple[int, ...], axis: int | None, layout: Layout) -> tuple[Any, ...]:
    """The first slice along ``axis`` (the first element when None), taking all of every expanded
    dim, whose values are shared."""
    expanded = layout.dims if layout.kind == "expanded" else ()
    return tuple(slice(None) if (i == axis or i in expanded) else 0 for i in range(len(shape)))


def has_all_minus_inf_slice(case: Case) -> bool:
    """Some slice along the softmax dim holds only -inf."""
    x = case.inputs["input"]
    return bool(np.all(np.atleast_1d(x) == -np.inf, axis=softmax_axis_of(case)).any())


def _softmax_values(d: S.Drawer, shape: tuple[int, ...], dtype: str, layout: Layout, axis: int) -> np.ndarray:
    """Float values at a drawn scale (finite in the dtype), with drawn non-finite content."""
    scale = d.choice(SCALES, "input.scale")
    x = np.array(S.values(d, shape, dtype, "float", "input", layout=layout, scale=scale)).reshape(shape)
    half_max = DTYPES[dtype].max_value / 2
    x = np.array(np.clip(x, -half_max, half_max))  # 'mixed' magnitudes may round to ±inf in float16
    first = _slice_index(shape, None, layout)
    if scale == SCALES[-1] and x.size:
        x[first] = DTYPES[dtype].round(np.asarray(scale * np.sign(x[first] + 0.5)))  # a large entry, always
    special = d.choice(SPECIALS, "input.special")
    if special == "-inf entries":
        fraction = d.choice((0.25, 0.75), "input.-inf fraction")
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "input.-inf seed"))
        mask = np.broadcast_to(rng.random(S.source_shape(shape, layout)) < fraction, shape).copy()
        if x.size:
            mask[first] = True
        x = np.where(mask, -np.inf, x)
    elif special == "all -inf slice" and x.ndim and x.size:
        x[_slice_index(shape, axis, layout)] = -np.inf
    elif special == "all -inf slice" and not x.ndim:
        x = np.asarray(-np.inf)
    elif special == "NaN and +inf" and x.size:
        x[first] = np.nan
        last = tuple(s - 1 for s in shape)
        if layout.kind != "expanded" and x.size > 1:
            x[last] = np.inf
    return x


def softmax_cases(op: str, invalid: bool = False) -> Callable[[str], st.SearchStrategy[Case]]:
    """Any input of rank 0-4, any layout; dim drawn among every dim, negative spellings and None
    (invalid: one past either end)."""

    def build(d: S.Drawer, dtype: str) -> Case:
        ndim = d.integer(0, 4, "ndim")
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape"))
        layout = S.layouts(d, ndim, "layout.input", expanded=True)
        rank = max(ndim, 1)
        if invalid:
            dim, axis = d.choice((rank, -rank - 1), "dim"), 0
        else:
            dim = d.choice([*range(rank), *range(-rank, 0), None], "dim")
            axis = softmax_axis(ndim, dim)
        x = _softmax_values(d, shape, dtype, layout, axis)
        return Case(op=op, dtype=dtype, params={"dim": dim}, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier="float", cotangent_seed=S.seed(d), invalid=invalid,
                    note="dim out of range" if invalid else "")

    return S.case_strategy(build)


def softmax2d_cases(invalid: bool = False) -> Callable[[str], st.SearchStrategy[Case]]:
    """(C, H, W) or (N, C, H, W) inputs (softmax over C, dim -3), any layout, an empty dim at
    times; invalid: ranks 0, 1, 2 and 5."""

    def build(d: S.Drawer, dtype: str) -> Case:
        ndim = d.choice(SOFTMAX2D_INVALID_RANKS, "ndim") if invalid else d.choice((4, 3), "ndim")
        shape = S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=8, label="shape")
        if not invalid and d.flag("empty"):
            shape[d.integer(0, ndim - 1, "empty dim")] = 0
        layout = S.layouts(d, ndim, "layout.input", expanded=True)
        x = _softmax_values(d, tuple(shape), dtype, layout, ndim - 3 if ndim >= 3 else 0)
        return Case(op="Softmax2d", dtype=dtype, params={}, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier="float", cotangent_seed=S.seed(d), invalid=invalid,
                    note=f"a {ndim}-d input" if invalid else "")

    return S.case_strategy(build)


# -- regimes ---------------------------------------------------------------------------------------

def _x(case: Case) -> np.ndarray:
    return case.inputs["input"]


def _corner(corner: str) -> dict[str, Any]:
    return {"tier": "float", "input.kind": "corner", "input.corner": corner, "empty": False}


def _finite_abs(case: Case) -> np.ndarray:
    x = _x(case)
    return np.abs(x[np.isfinite(x)])


def value_regimes(kinks: KinksFn | None = None, kink_name: str = "at the kink",
                  kink_description: str = "inputs exactly at a kink and its neighbours",
                  edges: bool = False, shapes: bool = True,
                  pins: Mapping[str, Any] | None = None) -> tuple[Regime, ...]:
    """The value corners every elementwise activation has: its kinks (when it has some), large
    magnitudes, ±inf and NaN; with ``edges`` also ±0, the exp overflow region, huge and tiny
    magnitudes and, with ``shapes``, empty inputs and size-1 dims. ``pins`` are added to every
    regime's (a stochastic layer's deterministic point, where every value is observable)."""
    regimes = []
    if kinks is not None:
        at_kinks = lambda c: bool(np.isin(_x(c), np.asarray(kinks(c.params, c.dtype))).any())  # noqa: E731
        regimes.append(Regime(kink_name, holds=at_kinks, pins=_corner("at the kink"), description=kink_description))
    regimes += [
        Regime("large magnitudes", holds=lambda c: bool((_finite_abs(c) >= LARGE).any()), pins=_corner("large"),
               description=f"finite inputs of magnitude >= {LARGE:g} up to the largest binade of the dtype"),
        Regime("infinite inputs", holds=lambda c: bool(np.isinf(_x(c)).any()), pins=_corner("inf"),
               description="±inf among the inputs: results and gradients are the limits"),
        Regime("NaN inputs", holds=lambda c: bool(np.isnan(_x(c)).any()), pins=_corner("nan"),
               description="NaN among the inputs: it propagates through the forward"),
    ]
    if edges:
        regimes += edge_regimes(shapes)
    return tuple(Regime(r.name, r.holds, {**r.pins, **pins}, r.description) if pins else r for r in regimes)


def edge_regimes(shapes: bool = True) -> list[Regime]:
    """±0, the exp overflow region, huge and tiny magnitudes; with ``shapes`` empty inputs and
    all-size-1 shapes."""
    regimes = [
        Regime("signed zeros", holds=lambda c: bool((_x(c) == 0).any()), pins=_corner("signed zeros"),
               description="+0 and -0 among the inputs"),
        # (the predicates allow for the rounding of the drawn values to the dtype)
        Regime("exp overflow region", holds=lambda c: bool(
            (np.abs(_finite_abs(c) - exp_overflow_point(c.dtype)) <= 5).any()), pins=_corner("exp overflow"),
            description="|x| within 4 of log(max) of the compute format, where exp(±x) overflows"),
        Regime("huge magnitudes", holds=lambda c: bool(
            (_finite_abs(c) >= DTYPES[c.dtype].max_value / 2 ** (HUGE_BINADES + 1)).any()), pins=_corner("huge"),
            description=f"|x| in the top {HUGE_BINADES} binades, up to the largest finite value"),
        Regime("tiny magnitudes", holds=lambda c: bool(
            ((_finite_abs(c) > 0) & (_finite_abs(c) <= 4 * DTYPES[c.dtype].min_normal)).any()), pins=_corner("tiny"),
            description="subnormal inputs and the smallest normal ones"),
    ]
    if shapes:
        regimes += [
            Regime("empty input", holds=lambda c: _x(c).size == 0, pins={"ndim": 2, "empty": True},
                   description="a dim of size 0"),
            Regime("size-1 dims", holds=lambda c: _x(c).ndim >= 2 and _x(c).size == 1,
                   pins={"ndim": 3, "shape[*]": 1, "empty": False}, description="every dim of size 1"),
        ]
    return regimes


INPLACE_REGIME = Regime("inplace", holds=lambda c: bool(c.params.get("inplace")), pins={"inplace": True},
                        description="inplace=True: the input is overwritten with the output")


def softmax_regimes() -> tuple[Regime, ...]:
    """Large magnitudes, -inf entries, an all -inf slice, NaN and +inf, and dim=None (never an empty
    input: Softmax2d draws one at times)."""
    x = _x
    regimes = (
        Regime("large magnitudes", holds=lambda c: bool((np.abs(x(c)[np.isfinite(x(c))]) >= 1000).any()),
               pins={"input.scale": 1000.0, "input.special": "none"},
               description="entries of ±1000 and beyond: exp overflows unshifted"),
        Regime("-inf entries", holds=lambda c: bool((x(c) == -np.inf).any()), pins={"input.special": "-inf entries"},
               description="-inf entries: probability 0, log-probability -inf"),
        Regime("all -inf slice", holds=has_all_minus_inf_slice, pins={"input.special": "all -inf slice"},
               description="a slice holding only -inf: no max shift is defined, NaN"),
        Regime("NaN and +inf", holds=lambda c: bool((np.isnan(x(c)) | (x(c) == np.inf)).any()),
               pins={"input.special": "NaN and +inf"}, description="NaN and +inf entries: their slice is NaN"),
        Regime("dim=None", holds=lambda c: c.params.get("dim", 0) is None, pins={"dim": None},
               description="the deprecated implicit dim: 0 for 0-, 1- and 3-d inputs, else 1"),
    )
    return tuple(Regime(r.name, r.holds, {**r.pins, "empty": False}, r.description) for r in regimes)


def at_kink(kinks: Sequence[float] | Callable[[Mapping[str, Any]], Sequence[float]]) -> Callable[[Case], bool]:
    """Predicate: some input lies exactly at one of the case's kinks (rounded to its dtype)."""
    points = kinks_of(kinks)
    return lambda case: bool(np.isin(_x(case), np.asarray(points(case.params, case.dtype))).any()) if points else False


def softplus_switch(params: Mapping[str, Any]) -> tuple[float]:
    """Softplus's switch point threshold/β (rounded to the dtype by ``kinks_of``)."""
    return (params["threshold"] / params["beta"],)


def smooth_at(kinks: KinksFn | None = None, limit: float = 100.0) -> Callable[[Case], bool]:
    """Finite-difference safe: every input within ±limit and at least 2e-5 from every kink (the
    finite-difference steps are 1e-6 times a standard normal direction)."""

    def check(case: Case) -> bool:
        x = _x(case)
        if not np.all(np.abs(x) <= limit):
            return False
        if kinks is None:
            return True
        points = np.asarray([k for k in kinks(case.params, case.dtype) if np.isfinite(k)], dtype=float)
        return bool(points.size == 0 or np.all(np.abs(x[..., None] - points) > 2e-5))

    return check


# -- RReLU -----------------------------------------------------------------------------------------

def rrelu_random(params: Mapping[str, Any], train: bool) -> bool:
    """RReLU draws slopes: training with lower < upper."""
    return train and params["lower"] < params["upper"]


def rrelu_slope(params: Mapping[str, Any]) -> float:
    """RReLU's deterministic slope (lower + upper)/2 (evaluation; training with lower == upper)."""
    return (params["lower"] + params["upper"]) / 2


def rrelu_regimes() -> tuple[Regime, ...]:
    """Evaluation, lower == upper, random slopes in place, negative slopes, slopes above 1, many
    slopes (1728 elements in training: samples for the statistics) and a zero slope at ±inf."""
    random = lambda c: rrelu_random(c.params, c.train)  # noqa: E731
    return (
        Regime("evaluation", holds=lambda c: not c.train, pins={"train": False},
               description="the slope (lower + upper)/2, deterministic"),
        Regime("lower == upper", holds=lambda c: c.params["lower"] == c.params["upper"],
               pins={"bounds": (0.25, 0.25), "train": True}, description="training draws the slope lower itself"),
        Regime("random, in place", holds=lambda c: bool(c.params.get("inplace")) and random(c),
               pins={"inplace": True, "train": True, "bounds": (1 / 8, 1 / 3)},
               description="random slopes written into the input"),
        Regime("negative slopes", holds=lambda c: c.params["upper"] < 0, pins={"bounds": (-0.5, -0.1), "train": True},
               description="U(-0.5, -0.1): negative inputs map to positive outputs"),
        Regime("slopes above 1", holds=lambda c: c.params["upper"] > 1, pins={"bounds": (0.5, 2.0), "train": True},
               description="U(0.5, 2)"),
        Regime("many slopes", holds=lambda c: _x(c).size >= 1000 and random(c),
               pins={"train": True, "bounds": (1 / 8, 1 / 3), "ndim": 3, "shape[*]": 12, "empty": False,
                     "tier": "float", "input.kind": "normal"},
               description="1728 elements in training: the statistics' samples"),
        Regime("zero slope, infinite inputs",
               holds=lambda c: rrelu_slope(c.params) == 0 and bool(np.isinf(_x(c)).any()),
               pins={"bounds": (0.0, 0.0), "train": False, **_corner("inf")},
               description="slope 0 at ±inf: 0·(-inf) must give the limit 0"),
    )
