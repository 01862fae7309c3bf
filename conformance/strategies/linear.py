"""Case strategies of the linear family: Linear, Bilinear, Identity.

Inputs of any rank (*, features) (no leading dim: a 1-d input), any layout of inputs and weights
(the transposed weight of a tied embedding is a permuted layout); the exact tier draws integers
small enough that every partial sum of products stays exact (``S.exact_int_limit``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S

# About one case in sixteen with leading dims gets one of size 0 (torch returns an empty output,
# zero weight and bias gradients).
EMPTY_BATCH_ODDS = (False,) * 15 + (True,)
# Element budgets. Hypothesis draws integers near the integer literals (>= 100) of every loaded
# module, so a new such literal changes the cases of every declaration: budgets reuse existing ones.
BILINEAR_BUDGET = 2 * 256


@st.composite
def linear_case(draw, dtype: str, in_features_delta: int = 0) -> Case:  # noqa: ANN001 (its code keys Hypothesis' labels)
    """Any (*, in_features) input (no leading dim: a 1-d input), any layout of input and weight
    (the transposed weight of a tied embedding is a permuted layout).

    ``in_features_delta`` != 0 gives the input a wrong last dimension (an invalid case).
    """
    d = S.Drawer(draw)
    tier = S.tier(d)
    in_features = d.integer(1, 16, "in_features")
    out_features = d.integer(1, 16, "out_features")
    bias = d.choice((True, False), "bias")
    batch_ndim = d.integer(0, 3, "batch ndim")
    in_shape = in_features + in_features_delta if in_features + in_features_delta > 0 else in_features + 1
    batch = S.sizes_within(d, batch_ndim, S.DEFAULT_BUDGET, hi=12, label="batch", fixed_product=in_shape)
    if batch and d.choice(EMPTY_BATCH_ODDS, "zero-size batch dim"):
        batch[d.integer(0, batch_ndim - 1, "zero-size dim")] = 0
    x_shape = (*batch, in_shape)
    w_shape = (out_features, in_features)
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True),
               "weight": S.layouts(d, 2, "layout.weight", expanded=True)}
    if bias:
        layouts["bias"] = S.layouts(d, 1, "layout.bias")
    terms = max(in_features + 1, out_features, math.prod(batch))
    limit = S.exact_int_limit(dtype, terms)
    inputs = {
        "input": S.values(d, x_shape, dtype, tier, "input", int_limit=limit, layout=layouts["input"]),
        "weight": S.values(d, w_shape, dtype, tier, "weight", int_limit=limit, layout=layouts["weight"],
                           scale=1 / math.sqrt(in_features)),
    }
    if bias:
        inputs["bias"] = S.values(d, (out_features,), dtype, tier, "bias", int_limit=limit, layout=layouts["bias"])
    return Case(op="Linear", dtype=dtype,
                params={"in_features": in_features, "out_features": out_features, "bias": bias},
                inputs=inputs, differentiable=tuple(inputs), layouts=layouts, tier=tier,
                cotangent_seed=S.seed(d), invalid=in_features_delta != 0,
                note="input does not end in in_features" if in_features_delta else "")


def invalid_linear_case(dtype: str) -> st.SearchStrategy[Case]:
    """The input's last dimension differs from in_features: torch raises."""
    return st.sampled_from((-1, 1, 3)).flatmap(lambda delta: linear_case(dtype, delta))


def bilinear_case(d: S.Drawer, dtype: str) -> Case:
    """input1 (*, in1_features), input2 (*, in2_features) with the same leading dims (0 to 3, an
    empty one sometimes), weight (out, in1, in2), bias (out) or none; any layouts."""
    tier = S.tier(d)
    in1, in2, out = d.integer(1, 6, "in1_features"), d.integer(1, 6, "in2_features"), d.integer(1, 6, "out_features")
    bias = d.choice((True, False), "bias")
    batch_ndim = d.integer(0, 3, "batch ndim")
    batch = S.sizes_within(d, batch_ndim, BILINEAR_BUDGET, hi=6, label="batch", fixed_product=in1 + in2)
    if batch and d.choice(EMPTY_BATCH_ODDS, "zero-size batch dim"):
        batch[d.integer(0, batch_ndim - 1, "zero-size dim")] = 0
    shapes = {"input1": (*batch, in1), "input2": (*batch, in2), "weight": (out, in1, in2)}
    if bias:
        shapes["bias"] = (out,)
    layouts = {n: S.layouts(d, len(s), f"layout.{n}", expanded=True) for n, s in shapes.items()}
    limit = S.exact_int_limit(dtype, max(in1 * in2 + 1, out * max(in1, in2), math.prod(batch)), factors=3)
    scales = {"weight": 1 / math.sqrt(in1 * in2)}
    inputs = {n: S.values(d, s, dtype, tier, n, int_limit=limit, layout=layouts[n], scale=scales.get(n, 1.0))
              for n, s in shapes.items()}
    return Case(op="Bilinear", dtype=dtype, params={"in1_features": in1, "in2_features": in2, "out_features": out,
                                                   "bias": bias},
                inputs=inputs, differentiable=tuple(inputs), layouts=layouts, tier=tier, cotangent_seed=S.seed(d))


def bilinear_invalid_case(d: S.Drawer, dtype: str) -> Case:
    """input1 not ending in in1_features, input2 not ending in in2_features, or leading dims that
    differ between the inputs."""
    rule = d.choice(("input1 width", "input2 width", "batch dims differ"), "rule")
    shapes = {"input1": (2, 3 + (rule == "input1 width")), "input2": (1 if rule == "batch dims differ" else 2,
                                                                    4 + (rule == "input2 width")),
              "weight": (5, 3, 4), "bias": (5,)}
    inputs = {n: S.values(d, s, dtype, "float", n) for n, s in shapes.items()}
    return Case(op="Bilinear", dtype=dtype, params={"in1_features": 3, "in2_features": 4, "out_features": 5,
                                                   "bias": True},
                inputs=inputs, differentiable=tuple(inputs), invalid=True, note=rule)


# Constructor arguments nn.Identity accepts and ignores (simplest first).
IDENTITY_ARGS: tuple[tuple[tuple[Any, ...], dict[str, Any]], ...] = (
    ((), {}), ((54,), {}), ((), {"unused_argument1": 0.1, "unused_argument2": False}),
    ((3, "text", None), {"in_features": 8, "bias": True}),
)
SPECIALS = (0.0, -0.0, np.inf, -np.inf, np.nan)


def identity_case(d: S.Drawer, dtype: str) -> Case:
    """Any input (0-d to 4-d, an empty dim sometimes), any layout, ±0, ±inf and NaN among the
    values; constructor arguments that nn.Identity ignores."""
    tier = S.tier(d)
    args, kwargs = d.choice(IDENTITY_ARGS, "constructor arguments")
    shape = S.sizes_within(d, d.integer(0, 4, "ndim"), 1024, lo=0 if d.flag("empty dims allowed") else 1, hi=8,
                           label="shape")
    layout = S.layouts(d, len(shape), "layout.input", expanded=True)
    x = S.values(d, shape, dtype, tier, "input", int_limit=8, layout=layout, specials=SPECIALS, some_special=True)
    return Case(op="Identity", dtype=dtype, params={"args": list(args), "kwargs": dict(kwargs)}, inputs={"input": x},
                differentiable=("input",), layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))
