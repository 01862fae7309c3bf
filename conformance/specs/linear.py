"""Linear layers."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from reference import linear as ref

# About one case in sixteen with leading dims gets one of size 0 (torch returns an empty output,
# zero weight and bias gradients).
EMPTY_BATCH_ODDS = (False,) * 15 + (True,)


def _batch_size(case: Case) -> int:
    """prod(leading dims) of the (*, in_features) input; 1 for a 1-d input."""
    return math.prod(case.inputs["input"].shape[:-1])


def _reduction_length(case: Case, tensor: str) -> int:
    """K per compared tensor: in_features (+1 for the bias) for the output, out_features for
    grad.input, the batch size for grad.weight and grad.bias."""
    if tensor == "output":
        return case.params["in_features"] + int(case.params["bias"])
    if tensor == "grad.input":
        return case.params["out_features"]
    return _batch_size(case)


@st.composite
def _linear_case(draw, dtype: str, in_features_delta: int = 0) -> Case:
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


def _invalid_linear_case(dtype: str) -> st.SearchStrategy[Case]:
    """The input's last dimension differs from in_features: torch raises."""
    return st.sampled_from((-1, 1, 3)).flatmap(lambda delta: _linear_case(dtype, delta))


def _linear_reference(case: Case, backward: bool) -> Result:
    x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs.get("bias")
    out = Result(outputs={"output": ref.linear(x, w, b)})
    if backward:
        gx, gw, gb = ref.linear_vjp(x, w, S.output_gradient(case, "output", out.outputs["output"]), b is not None)
        out.grads.update(input=gx, weight=gw)
        if gb is not None:
            out.grads["bias"] = gb
    return out


REGIMES = (
    Regime("1-d input", lambda case: case.inputs["input"].ndim == 1, {"batch ndim": 0},
           "an input of shape (in_features,): output (out_features,)"),
    Regime("no bias", lambda case: not case.params["bias"], {"bias": False}, "bias=False"),
    Regime("three leading dims", lambda case: case.inputs["input"].ndim == 4, {"batch ndim": 3},
           "an input (A, B, C, in_features): grads of weight and bias sum over every leading dim"),
    Regime("zero-size batch", lambda case: case.inputs["input"].size == 0,
           {"batch ndim": 1, "zero-size batch dim": True},
           "a leading dim of size 0: empty output, zero gradients of weight and bias"),
    Regime("expanded input", lambda case: case.layout("input").kind == "expanded", {"layout.input": "expanded"},
           "an input with stride-0 dims (one row broadcast over the batch)"),
)

declare(LayerSpec(
    name="Linear",
    regimes=REGIMES,
    family="linear",
    cases=lambda dtype: _linear_case(dtype),
    reference=result_reference(_linear_reference),
    torch=TorchMapping("torch.nn.Linear", parameters=("weight", "bias")),
    # Sums of products: |W|·|x| (the reference on absolute values) bounds every partial sum, so
    # the exact tier is bit-exact wherever that stays within 2^p.
    tolerance=Tolerance(reduction=_reduction_length, magnitude="abs", exact="bitwise"),
    invalid_cases=_invalid_linear_case,
    notes="Input (*, in_features), including a 1-d input; grads of weight and bias sum over every leading dim.",
))
