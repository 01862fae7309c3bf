"""Case strategies of the gradient utilities of torch.nn.utils: clip_grad_norm_, get_total_norm,
clip_grads_with_norm_, clip_grad_value_, parameters_to_vector and vector_to_parameters, and the
regimes that name their forms (list, tuple, single tensor, no gradients) and non-finite gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.numerics import containers as N
from conformance.spec import Regime
from reference import clip as clip_ref

FORMS = ("list", "tuple", "single tensor", "no gradients", "empty list")
NORM_TYPES = (2.0, 1.0, float("inf"), 0.5, 3.0, 1.5, 10.0, 100.0)
MAX_NORM_KINDS = ("above", "below", "at", "zero", "far below")
NONFINITE = ("none", "nan", "inf", "-inf")
BUDGET = 1024


@st.composite
def _clip_norm_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
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
    _plant_nonfinite(d, inputs, with_grad, form, invalid)
    params = {"form": form, "count": count, "norm_type": norm_type, "norm_type_as": "float",
              "error_if_nonfinite": invalid or d.flag("error_if_nonfinite"),
              "foreach": d.choice((None, True, False), "foreach")}
    if np.isinf(norm_type) and d.flag("norm_type as the string 'inf'"):
        params["norm_type_as"] = "string"
    case = Case(op="clip_grad_norm_", dtype=dtype, params=params, inputs=inputs, tier="float",
                invalid=invalid, note="error_if_nonfinite with a non-finite total norm" if invalid else "")
    total = N.dtype_total(case)
    if not invalid and not np.isfinite(total):  # a valid case with a non-finite norm must not ask to raise
        case = replace(case, params={**params, "error_if_nonfinite": False})
        params = case.params
    return replace(case, params={**params, "max_norm": _max_norm(d, total)})


def _plant_nonfinite(d: S.Drawer, inputs: dict[str, np.ndarray], with_grad: list[int], form: str,
                     invalid: bool, layouts: dict[str, Any] | None = None) -> None:
    """One NaN or ±inf in one of the gradients passed (always, for an invalid case); in a tensor
    with stride-0 (expanded) dims, in its stored elements (so every copy of it holds it)."""
    nonfinite = d.choice(NONFINITE[1:] if invalid else NONFINITE, "non-finite")
    with_grad = [i for i in with_grad if inputs[f"grad{i}"].size]  # (an empty tensor holds nothing)
    if nonfinite != "none" and with_grad and form != "empty list":
        i = with_grad[d.integer(0, len(with_grad) - 1, "non-finite grad")]
        layout = (layouts or {}).get(f"grad{i}")
        full = inputs[f"grad{i}"]
        stored = full[tuple(slice(0, 1) if layout is not None and layout.kind == "expanded" and k in layout.dims
                            else slice(None) for k in range(full.ndim))]
        g = stored.copy().reshape(-1)
        if g.size:
            g[d.integer(0, g.size - 1, "non-finite position")] = float(nonfinite)
        inputs[f"grad{i}"] = np.broadcast_to(g.reshape(stored.shape), full.shape).copy()


def _max_norm(d: S.Drawer, total: float) -> float:
    """max_norm above, below, at, far below the total norm, or 0."""
    kind = d.choice(MAX_NORM_KINDS, "max_norm")
    if kind == "zero" or not np.isfinite(total):
        return 0.0 if kind == "zero" else 1.0
    if kind == "at":
        return float(total)
    factor = d.choice((0.5, 0.9, 0.999) if kind == "below" else (2.0, 1.1, 1.001) if kind == "above"
                      else (1e-3, 1e-6), "max_norm factor")
    return float(total) * factor if total > 0 else factor


def clip_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_norm_case(dtype)


def invalid_clip_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_norm_case(dtype, invalid=True)


def _tensors(d: S.Drawer, dtype: str, count: int, prefix: str, *, tier: str = "float", scale: float = 1.0,
             missing: bool = False, empty: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any], list[Any]]:
    """``count`` tensors ``<prefix><i>`` of several shapes (0 to 3 dims, within the budget, a dim of
    size 0 now and then), each in a drawn memory layout; with ``missing``, tensors after the first
    may be left out (a parameter without a gradient). (inputs, layouts, every tensor's shape)."""
    inputs: dict[str, np.ndarray] = {}
    layouts: dict[str, Any] = {}
    shapes = []
    for i in range(count):
        ndim = d.integer(0, 3, f"{prefix}{i}.ndim")
        shape = tuple(S.sizes_within(d, ndim, BUDGET // count, hi=12, label=f"{prefix}{i}.shape"))
        if empty and ndim and d.flag(f"{prefix}{i}.empty"):
            shape = (0,) + shape[1:]
        shapes.append(shape)
        if missing and i and not d.choice((True, False), f"{prefix}{i}.present"):
            continue
        layout = S.layouts(d, ndim, f"layout.{prefix}{i}", expanded=True)
        inputs[f"{prefix}{i}"] = S.values(d, shape, dtype, tier, f"{prefix}{i}", scale=scale, layout=layout)
        layouts[f"{prefix}{i}"] = layout
    return inputs, layouts, shapes


def _present(inputs: dict[str, np.ndarray], prefix: str, count: int) -> list[int]:
    return [i for i in range(count) if f"{prefix}{i}" in inputs]


def _norm_params(d: S.Drawer, invalid: bool) -> dict[str, Any]:
    norm_type = d.choice(NORM_TYPES, "norm_type")
    params = {"norm_type": norm_type, "norm_type_as": "float", "error_if_nonfinite": invalid or d.flag(
        "error_if_nonfinite"), "foreach": d.choice((None, True, False), "foreach")}
    if np.isinf(norm_type) and d.flag("norm_type as the string 'inf'"):
        params["norm_type_as"] = "string"
    return params


@st.composite
def _total_norm_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """get_total_norm: tensors in a list, a tuple, alone, or none at all."""
    d = S.Drawer(draw)
    form = d.choice(("list", "tuple", "single tensor") + (() if invalid else ("empty list",)), "form")
    count = 1 if form == "single tensor" else d.integer(1, 5, "tensors")
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    inputs, layouts, _ = _tensors(d, dtype, count, "grad", scale=scale, empty=not invalid)
    _plant_nonfinite(d, inputs, _present(inputs, "grad", count), form, invalid, layouts)
    params = {"form": form, "count": count, **_norm_params(d, invalid)}
    case = Case(op="get_total_norm", dtype=dtype, params=params, inputs=inputs, layouts=layouts, invalid=invalid,
                note="error_if_nonfinite with a non-finite total norm" if invalid else "")
    if not invalid and not np.isfinite(N.dtype_total(case)):
        case.params["error_if_nonfinite"] = False
    return case


def total_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _total_norm_case(dtype)


def invalid_total_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _total_norm_case(dtype, invalid=True)


def _parameters_with_grads(d: S.Drawer, dtype: str, tier: str, scale: float, invalid: bool = False
                           ) -> tuple[str, int, dict[str, np.ndarray], dict[str, Any], list[int]]:
    """Parameters (``param<i>``, values unused) and their gradients (``grad<i>``; some missing)."""
    form = d.choice(FORMS[:3] if invalid else FORMS, "form")
    count = 1 if form == "single tensor" else d.integer(1, 5, "parameters")
    grads, layouts, shapes = _tensors(d, dtype, count, "grad", tier=tier, scale=scale, missing=True)
    if form == "no gradients":
        grads, layouts = {}, {}
    params = {f"param{i}": np.zeros(shape) for i, shape in enumerate(shapes)}
    return form, count, {**params, **grads}, layouts, _present(grads, "grad", count)


TOTAL_NORM_KINDS = ("the gradients' norm", "given", "zero", "negative", "nan", "inf")


@st.composite
def _clip_with_norm_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """clip_grads_with_norm_: parameters with gradients (some without), a given total norm (the
    gradients' 2-norm, another value, 0, negative, NaN, inf) and max_norm around it."""
    d = S.Drawer(draw)
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    form, count, inputs, layouts, present = _parameters_with_grads(d, dtype, "float", scale, invalid)
    kind = d.choice(TOTAL_NORM_KINDS, "total_norm")
    rounded = DTYPES[dtype].round
    norm = float(rounded(np.float64(clip_ref.total_norm([inputs[f"grad{i}"] for i in present], 2.0))))
    total = {"the gradients' norm": norm, "zero": 0.0, "nan": float("nan"), "inf": float("inf"),
             "given": float(rounded(np.float64(d.choice((1.0, 0.25, 8.0), "total_norm value")))),
             "negative": -float(rounded(np.float64(d.choice((1.0, 0.25), "total_norm value"))))}[kind]
    inputs["total_norm"] = np.array(total)
    params = {"form": form, "count": count, "max_norm": _max_norm(d, abs(total)),
              "total_norm_as": "float" if invalid else "tensor", "foreach": d.choice((None, True, False), "foreach")}
    return Case(op="clip_grads_with_norm_", dtype=dtype, params=params, inputs=inputs, layouts=layouts,
                invalid=invalid, note="total_norm passed as a Python float, not a tensor" if invalid else "")


def clip_with_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_with_norm_case(dtype)


def invalid_clip_with_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_with_norm_case(dtype, invalid=True)


CLIP_VALUE_KINDS = ("cuts", "above every gradient", "zero", "negative", "inf")


@st.composite
def _clip_value_case(draw: Any, dtype: str) -> Case:
    """clip_grad_value_: parameters with gradients (some without), non-finite elements now and
    then, clip_value inside the gradients' range, above it, 0, negative or inf."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    form, count, inputs, layouts, present = _parameters_with_grads(d, dtype, tier, scale)
    _plant_nonfinite(d, inputs, present, form, False, layouts)
    finite = [np.abs(g[np.isfinite(g)]) for n, g in inputs.items() if n.startswith("grad")]
    top = max((float(f.max()) for f in finite if f.size), default=1.0) or 1.0
    kind = d.choice(CLIP_VALUE_KINDS, "clip_value")
    if kind == "cuts":
        fraction = d.choice((0.5, 0.25, 0.9), "clip_value fraction")
        value = max(top - 1, 0.5) if tier == "exact" else top * fraction
    else:
        value = {"above every gradient": 2 * top, "zero": 0.0, "negative": -0.5 * top, "inf": float("inf")}[kind]
    params = {"form": form, "count": count, "clip_value": value, "foreach": d.choice((None, True, False), "foreach")}
    return Case(op="clip_grad_value_", dtype=dtype, params=params, inputs=inputs, layouts=layouts, tier=tier)


def clip_value_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_value_case(dtype)


@st.composite
def _to_vector_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """parameters_to_vector: parameters of several shapes (0-d, empty, up to 3 dims) in a list, a
    tuple or an iterator (as ``module.parameters()`` is); invalid: no parameter at all."""
    d = S.Drawer(draw)
    form = "list" if invalid else d.choice(("list", "tuple", "iterator"), "form")
    count = 0 if invalid else d.integer(1, 5, "parameters")
    tier = S.tier(d)
    inputs, layouts, _ = _tensors(d, dtype, count, "param", tier=tier)
    if invalid:  # torch.cat of nothing; the case still carries a (unused) tensor
        inputs = {"unused": np.zeros(1)}
    return Case(op="parameters_to_vector", dtype=dtype, params={"form": form, "count": count}, inputs=inputs,
                layouts=layouts, differentiable=tuple(n for n in inputs if n.startswith("param")), tier=tier,
                cotangent_seed=S.seed(d), invalid=invalid, note="no parameters" if invalid else "")


def to_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _to_vector_case(dtype)


def invalid_to_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _to_vector_case(dtype, invalid=True)


VEC_ERRORS = ("shorter", "longer", "a Python list")


@st.composite
def _from_vector_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """vector_to_parameters: parameters of several shapes and a vector of exactly their total
    length (in any layout); invalid: a vector one element short or long, or a Python list."""
    d = S.Drawer(draw)
    count = d.integer(1, 5, "parameters")
    tier = S.tier(d)
    inputs, layouts, _ = _tensors(d, dtype, count, "param", tier=tier)
    total = sum(a.size for a in inputs.values())
    error = d.choice(VEC_ERRORS, "invalid vector") if invalid else ""
    if error == "shorter" and not total:
        error = "longer"  # no element to leave out
    length = total - 1 if error == "shorter" else total + 1 if error == "longer" else total
    layout = S.layouts(d, 1, "layout.vec", expanded=True)
    inputs["vec"] = S.values(d, (length,), dtype, tier, "vec", layout=layout)
    layouts["vec"] = layout
    params = {"count": count, "vec_as": "list" if error == "a Python list" else "tensor"}
    return Case(op="vector_to_parameters", dtype=dtype, params=params, inputs=inputs, layouts=layouts, tier=tier,
                invalid=invalid, note=f"vector: {error}" if invalid else "")


def from_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _from_vector_case(dtype)


def invalid_from_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _from_vector_case(dtype, invalid=True)


# -- regimes of the gradient utilities ----------------------------------------------------------------

def _clips(kind: str) -> Callable[[Case], bool]:
    def holds(case: Case) -> bool:
        total, mx = N.used_total(case), case.params["max_norm"]
        if kind == "clipped":
            return bool(np.isfinite(total) and total > 0 and mx < total)
        return bool(np.isfinite(total) and mx > total)
    return holds


_FINITE = {"non-finite": "none", "form": "list"}


def _nonfinite(test: Callable[[np.ndarray], np.ndarray]) -> Callable[[Case], bool]:
    return lambda c: any(test(g).any() for g in N.grads(c))


def norm_regimes(clip: bool) -> tuple[Regime, ...]:
    """The regimes of clip_grad_norm_ (``clip``) and get_total_norm."""
    clipping = (
        Regime("max_norm below the total norm", _clips("clipped"), {"max_norm": "below", **_FINITE}),
        Regime("max_norm above the total norm", _clips("unclipped"),
               {"max_norm": "above", "max_norm factor": 2.0, **_FINITE},
               "the coefficient is clamped to 1: gradients unchanged bit for bit"),
        Regime("max_norm at the total norm", lambda c: c.params["max_norm"] == N.dtype_total(c) > 0,
               {"max_norm": "at", **_FINITE, "grad.scale": 1.0}),
    ) if clip else ()
    return clipping + (
        Regime("inf norm", lambda c: np.isinf(c.params["norm_type"]), {"norm_type": float("inf")}),
        Regime("norm_type as the string 'inf'", lambda c: c.params["norm_type_as"] == "string",
               {"norm_type": float("inf"), "norm_type as the string 'inf'": True}),
        Regime("fractional norm", lambda c: c.params["norm_type"] == 0.5, {"norm_type": 0.5, **_FINITE}),
        Regime("large norm", lambda c: c.params["norm_type"] >= 10 and np.isfinite(c.params["norm_type"]),
               {"norm_type": 10.0, "grad.scale": 1.0, **_FINITE}),
        Regime("1-norm", lambda c: c.params["norm_type"] == 1.0, {"norm_type": 1.0}),
        Regime("NaN gradient", _nonfinite(np.isnan),
               {"non-finite": "nan", "error_if_nonfinite": False, "form": "list"}),
        Regime("infinite gradient", _nonfinite(np.isinf),
               {"non-finite": "-inf", "error_if_nonfinite": False, "form": "list"}),
        Regime("error_if_nonfinite with finite gradients",
               lambda c: c.params["error_if_nonfinite"] and np.isfinite(N.dtype_total(c)),
               {"error_if_nonfinite": True, "norm_type": 2.0, **_FINITE}),
    ) + ((Regime("some parameters without a gradient", lambda c: len(N.grad_names(c)) < c.params["count"],
                 {"form": "list", "parameters": 4, "param*.has grad": False}),) if clip else ()) + (
        Regime("single tensor", lambda c: c.params["form"] == "single tensor", {"form": "single tensor"}),
        Regime("empty iterable", lambda c: c.params["form"] == "empty list", {"form": "empty list"}),
        Regime("foreach=True", lambda c: c.params["foreach"] is True, {"foreach": True}),
        Regime("foreach=False", lambda c: c.params["foreach"] is False, {"foreach": False}),
    ) + (() if clip else (
        Regime("non-contiguous tensors", lambda c: any(v.kind != "contiguous" for v in c.layouts.values()),
               {"layout.grad0": "strided", "grad*.ndim": 2, "grad*.empty": False}),
        Regime("empty tensor", lambda c: any(g.size == 0 for g in N.grads(c)),
               {"grad0.ndim": 2, "grad0.empty": True, "form": "list"}),
    ))
