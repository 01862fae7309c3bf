"""Softmax, Softmin and LogSoftmax along one dimension (every dim, negative spellings, and the
deprecated dim=None), with error analyses beside their references (``reference.softmax``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from conformance.specs._activations import with_reference_error
from conformance.tolerance import bound_as_magnitude
from reference import softmax as ref

FAMILY = "activation"
# Input scales, simplest first; the last one makes exp(x) overflow without the max shift.
SCALES = (1.0, 16.0, 1000.0)
# Non-finite content, simplest first: -inf entries (probability 0), a slice of -inf only (NaN), and
# NaN / +inf entries (NaN slice; for Softmin +inf is the harmless end).
SPECIALS = ("none", "-inf entries", "all -inf slice", "NaN and +inf")


def _axis_length(case: Case) -> int:
    x = case.inputs["input"]
    return 1 if x.ndim == 0 else x.shape[ref.softmax_axis(x.ndim, case.params.get("dim"))]


def _slice_index(shape: tuple[int, ...], axis: int | None, layout: Layout) -> tuple[Any, ...]:
    """The first slice along ``axis`` (the first element when None), taking all of every expanded
    dim, whose values are shared."""
    expanded = layout.dims if layout.kind == "expanded" else ()
    return tuple(slice(None) if (i == axis or i in expanded) else 0 for i in range(len(shape)))


def has_all_minus_inf_slice(case: Case) -> bool:
    """Some slice along the softmax dim holds only -inf."""
    x = case.inputs["input"]
    axis = ref.softmax_axis(x.ndim, case.params.get("dim"))
    return bool(np.all(np.atleast_1d(x) == -np.inf, axis=axis).any())


def _values(d: S.Drawer, shape: tuple[int, ...], dtype: str, layout: Layout, axis: int) -> np.ndarray:
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
    elif special == "all -inf slice" and x.ndim:
        x[_slice_index(shape, axis, layout)] = -np.inf
    elif special == "all -inf slice":
        x = np.asarray(-np.inf)
    elif special == "NaN and +inf" and x.size:
        x[first] = np.nan
        last = tuple(s - 1 for s in shape)
        if layout.kind != "expanded" and x.size > 1:
            x[last] = np.inf
    return x


@st.composite
def _softmax_case(draw: Any, op: str, dtype: str, invalid: bool = False) -> Case:
    """Any input of rank 0-4, any layout; dim drawn among every dim, negative spellings and None
    (invalid: one past either end)."""
    d = S.Drawer(draw)
    ndim = d.integer(0, 4, "ndim")
    shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape"))
    layout = S.layouts(d, ndim, "layout.input", expanded=True)
    rank = max(ndim, 1)
    if invalid:
        dim = d.choice((rank, -rank - 1), "dim")
        axis = 0
    else:
        dim = d.choice([*range(rank), *range(-rank, 0), None], "dim")
        axis = ref.softmax_axis(ndim, dim)
    x = _values(d, shape, dtype, layout, axis)
    return Case(op=op, dtype=dtype, params={"dim": dim}, inputs={"input": x}, differentiable=("input",),
                layouts={"input": layout}, tier="float", cotangent_seed=S.seed(d), invalid=invalid,
                note="dim out of range" if invalid else "")


def _reference(fwd, vjp):
    def reference(case: Case, backward: bool) -> Result:
        x, dim = case.inputs["input"], case.params.get("dim")
        y = fwd(x, dim)
        out = Result(outputs={"output": y})
        if backward:
            out.grads["input"] = vjp(y, S.output_gradient(case, "output", y), dim)
        return out

    return reference


def _magnitude(error_fn: Callable[..., tuple[np.ndarray, np.ndarray | None]], negate: bool = False):
    """absref from an error analysis in units of u over a slice (see ``bound_as_magnitude``)."""

    def magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
        dt = DTYPES[case.dtype]
        x = case.inputs["input"]
        g = case.cotangents.get("output") if "input" in result.grads else None
        e_out, e_grad = error_fn(-x if negate else x, result.outputs["output"], g, case.params.get("dim"),
                                 dt.min_subnormal / dt.unit_roundoff)
        k = _axis_length(case)
        out = {"output": bound_as_magnitude(with_reference_error(case, e_out, result.outputs["output"]), k)}
        if e_grad is not None:
            out["grad.input"] = bound_as_magnitude(with_reference_error(case, e_grad, result.grads["input"]), k)
        return out

    return magnitude


def _tolerance(error_fn, negate: bool = False) -> Tolerance:
    return Tolerance(reduction=lambda case, tensor: _axis_length(case), magnitude=_magnitude(error_fn, negate),
                     c=1.0, exact="none")


def _regimes() -> tuple[Regime, ...]:
    x = lambda c: c.inputs["input"]  # noqa: E731
    return (
        Regime("large magnitudes", holds=lambda c: bool((np.abs(x(c)[np.isfinite(x(c))]) >= 1000).any()),
               pins={"input.scale": 1000.0, "input.special": "none"},
               description="entries of ±1000 and beyond: exp overflows unshifted"),
        Regime("-inf entries", holds=lambda c: bool((x(c) == -np.inf).any()), pins={"input.special": "-inf entries"},
               description="-inf entries: probability 0, log-probability -inf"),
        Regime("all -inf slice", holds=has_all_minus_inf_slice, pins={"input.special": "all -inf slice"},
               description="a slice holding only -inf: no max shift is defined, NaN"),
        Regime("NaN and +inf", holds=lambda c: bool((np.isnan(x(c)) | (x(c) == np.inf)).any()),
               pins={"input.special": "NaN and +inf"}, description="NaN and +inf entries: their slice is NaN"),
        Regime("dim=None", holds=lambda c: c.params["dim"] is None, pins={"dim": None},
               description="the deprecated implicit dim: 0 for 0-, 1- and 3-d inputs, else 1"),
    )


_NOTES = ("dim: every dim, negative spellings, and None (deprecated, warns: dim 0 for 0-, 1- and 3-d inputs, else 1). "
          "Large inputs must not overflow (max shift). ")

declare(LayerSpec(
    name="Softmax",
    family=FAMILY,
    cases=lambda dtype: _softmax_case("Softmax", dtype),
    reference=result_reference(_reference(ref.softmax, ref.softmax_vjp)),
    torch=TorchMapping("torch.nn.Softmax"),
    tolerance=_tolerance(ref.softmax_error),
    invalid_cases=lambda dtype: _softmax_case("Softmax", dtype, invalid=True),
    regimes=_regimes(),
    notes=_NOTES + "-inf entries give 0; a slice of all -inf, or holding NaN or +inf, gives NaN (IEEE: -inf - -inf).",
))

declare(LayerSpec(
    name="Softmin",
    family=FAMILY,
    cases=lambda dtype: _softmax_case("Softmin", dtype),
    reference=result_reference(_reference(ref.softmin, ref.softmin_vjp)),
    torch=TorchMapping("torch.nn.Softmin"),
    tolerance=_tolerance(ref.softmax_error, negate=True),
    invalid_cases=lambda dtype: _softmax_case("Softmin", dtype, invalid=True),
    regimes=_regimes(),
    notes=_NOTES + "Softmax(-x): +inf entries give 0; a slice of all +inf, or holding NaN or -inf, gives NaN. Error "
                   "analysis: Softmax's on -x.",
))

declare(LayerSpec(
    name="LogSoftmax",
    family=FAMILY,
    cases=lambda dtype: _softmax_case("LogSoftmax", dtype),
    reference=result_reference(_reference(ref.log_softmax, ref.log_softmax_vjp)),
    torch=TorchMapping("torch.nn.LogSoftmax"),
    tolerance=_tolerance(ref.log_softmax_error),
    invalid_cases=lambda dtype: _softmax_case("LogSoftmax", dtype, invalid=True),
    regimes=_regimes(),
    notes=_NOTES + "(x - max) - log Σ exp(x - max): -inf entries give -inf (gradient g); a slice of all -inf, or "
                   "holding NaN or +inf, gives NaN. Error bound in the magnitude of x - max and max + log Σ (either "
                   "association conforms).",
))
