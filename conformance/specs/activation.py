"""Activation layers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Tolerance, TorchMapping, declare
from conformance.tolerance import bound_as_magnitude
from reference import activation as ref

ValuesFn = Callable[[S.Drawer, tuple[int, ...], str, str, Layout], np.ndarray]


def _elementwise_case(op: str, dtype: str, params_fn: Callable[[S.Drawer, int], dict[str, Any]],
                      specials: Sequence[float] = (0.0,), tiers: Sequence[str] = S.TIERS,
                      values_fn: ValuesFn | None = None) -> st.SearchStrategy[Case]:
    """Any-shape input (0-d to 4-d, bounded), any layout, one tensor argument.

    ``params_fn(d, ndim)`` draws the constructor parameters (they may depend on the rank);
    ``values_fn(d, shape, dtype, tier, layout)`` replaces the default value draw.
    """

    @st.composite
    def build(draw) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, tiers)
        ndim = d.integer(0, 4, "ndim")
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape"))
        layout = S.layouts(d, ndim, "layout.input", expanded=True)
        params = params_fn(d, ndim)
        if params.get("inplace") and layout.kind == "expanded":
            layout = S.CONTIGUOUS  # torch forbids writing into overlapping memory
        if values_fn is None:
            x = S.values(d, shape, dtype, tier, "input", int_limit=8, layout=layout, specials=specials)
        else:
            x = values_fn(d, shape, dtype, tier, layout)
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return build()


# The kink, its signed twin and the infinities (NaN inputs are left out: the gradient at NaN is
# undefined, and torch passes the cotangent through there).
_RELU_SPECIALS = (0.0, -0.0, np.inf, -np.inf)


def _relu_reference(case: Case, backward: bool) -> Result:
    x = case.inputs["input"]
    out = Result(outputs={"output": ref.relu(x)})
    if backward:
        out.grads["input"] = ref.relu_vjp(x, case.cotangents["output"])
    return out


declare(LayerSpec(
    name="ReLU",
    family="activation",
    cases=lambda dtype: _elementwise_case("ReLU", dtype, lambda d, ndim: {"inplace": d.flag("inplace")},
                                          specials=_RELU_SPECIALS),
    reference=_relu_reference,
    torch=TorchMapping("torch.nn.ReLU", inplace="input"),
    # No arithmetic: forward and backward select values, so both are bit-exact in every tier.
    tolerance=Tolerance(magnitude="ref", exact="always"),
    smooth_at=lambda case: bool(np.all(np.abs(case.inputs["input"]) > 1e-3)),
    notes="Gradient at the kink x = 0 is 0 (PyTorch's convention). inplace=True must mutate the input.",
))


# -- Softmax ------------------------------------------------------------------------------------

def _softmax_axis_length(case: Case) -> int:
    x = case.inputs["input"]
    dim = case.params.get("dim")
    return 1 if x.ndim == 0 else x.shape[ref.softmax_axis(x.ndim, dim)]


# Input scales, simplest first; the last one makes exp(x) overflow without the max shift.
_SOFTMAX_SCALES = (1.0, 16.0, 1000.0)


def _softmax_values(d: S.Drawer, shape: tuple[int, ...], dtype: str, tier: str, layout: Layout) -> np.ndarray:
    """Float values at a drawn scale (kept finite in the dtype), with a drawn fraction of -inf
    entries (a slice may end up all -inf: its softmax is NaN)."""
    scale = d.choice(_SOFTMAX_SCALES, "input.scale")
    x = S.values(d, shape, dtype, tier, "input", layout=layout, scale=scale)
    half_max = DTYPES[dtype].max_value / 2
    x = np.clip(x, -half_max, half_max)  # 'mixed' magnitudes may round to ±inf in float16
    fraction = d.choice((0.0, 0.25, 0.75), "input.-inf fraction")
    if fraction:
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "input.-inf seed"))
        x = np.where(np.broadcast_to(rng.random(S.source_shape(shape, layout)) < fraction, shape), -np.inf, x)
    return x


def _softmax_params(d: S.Drawer, ndim: int) -> dict[str, Any]:
    """Every dim of the input, negative spellings, and None (deprecated implicit choice)."""
    rank = max(ndim, 1)
    return {"dim": d.choice([*range(rank), *range(-rank, 0), None], "dim")}


def _softmax_reference(case: Case, backward: bool) -> Result:
    x, dim = case.inputs["input"], case.params.get("dim")
    y = ref.softmax(x, dim)
    out = Result(outputs={"output": y})
    if backward:
        out.grads["input"] = ref.softmax_vjp(y, case.cotangents["output"], dim)
    return out


def _softmax_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """First-order error bounds of softmax and its VJP, in units of u, over the K entries of a slice.

    With z = x - max (|z| = |x - max|), the rounding of z perturbs exp(z) by u·|z| relatively, exp
    and the division add 2u, the sum of the K exponentials √K-probabilistically 2√K·u plus the
    propagated errors of its terms, Σ y·|z| (≤ log K), so

        |δy| ≤ u·E_y,  E_y = y·(|z| + Σ y·|z| + 2√K + 3)   (+ u·|y| for the final rounding).

    The backward y·(g - S), S = Σ y·g, uses the computed y (error F = E_y + y): with the rounding of
    the sum (2√K·Σ|y·g|), the subtraction and the product (2·y·(|g| + |S|)),

        E_grad = F·(|g| + |S|) + y·(Σ F·|g| + 2√K·Σ|y·g|) + 2y·(|g| + |S|) + (tiny/u)·(|g| + |S| + y·Σ|g|),

    the last term being subnormal spacing in y. Entries with y = 0 (x = -inf) get no error term.
    """
    x = np.atleast_1d(case.inputs["input"])
    y = np.atleast_1d(result.outputs["output"])
    axis = ref.softmax_axis(case.inputs["input"].ndim, case.params.get("dim"))
    k = x.shape[axis]
    root_k = math.sqrt(k)
    shape = case.inputs["input"].shape
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.abs(x - np.max(x, axis=axis, keepdims=True))
        yz = np.where(y > 0, y * z, 0.0)
        err_y = np.where(y > 0, y * (z + np.sum(yz, axis=axis, keepdims=True) + 2 * root_k + 3), 0.0)
        out = {"output": bound_as_magnitude(err_y.reshape(shape), k)}
        if "input" in result.grads:
            dt = DTYPES[case.dtype]
            g = np.abs(np.atleast_1d(case.cotangents["output"]))
            f = err_y + y
            s_abs = np.sum(y * g, axis=axis, keepdims=True)
            err_g = (f * (g + s_abs) + y * (np.sum(f * g, axis=axis, keepdims=True) + 2 * root_k * s_abs)
                     + 2 * y * (g + s_abs)
                     + dt.min_subnormal / dt.unit_roundoff * (g + s_abs + y * np.sum(g, axis=axis, keepdims=True)))
            out["grad.input"] = bound_as_magnitude(err_g.reshape(shape), k)
    return out


declare(LayerSpec(
    name="Softmax",
    family="activation",
    cases=lambda dtype: _elementwise_case("Softmax", dtype, _softmax_params, tiers=("float",),
                                          values_fn=_softmax_values),
    reference=_softmax_reference,
    torch=TorchMapping("torch.nn.Softmax"),
    tolerance=Tolerance(reduction=lambda case, tensor: _softmax_axis_length(case), magnitude=_softmax_magnitude,
                        c=1.0, exact="none"),
    notes="dim=None (deprecated, warns) picks dim 0 for 0-, 1- and 3-d inputs, else 1. -inf entries give 0; "
          "a slice of all -inf gives NaN (IEEE: -inf - -inf). Large inputs must not overflow (max shift).",
))
