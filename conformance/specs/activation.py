"""Activation layers."""

from __future__ import annotations

from hypothesis import strategies as st

from conformance import strategies as S
from conformance.case import Case, Result
from conformance.spec import LayerSpec, Tolerance, TorchMapping, declare
from reference import activation as ref


def _elementwise_case(op: str, dtype: str, params_fn, specials=(0.0,)) -> st.SearchStrategy[Case]:
    """Any-shape input (0-d to 4-d, bounded), any layout, one tensor argument."""

    @st.composite
    def build(draw) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d)
        ndim = d.integer(1, 4, "ndim")
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET, lo=1, hi=12, label="shape"))
        layout = S.layouts(d, ndim, "layout.input", expanded=True)
        params = params_fn(d)
        if params.get("inplace") and layout.kind == "expanded":
            layout = S.CONTIGUOUS  # torch forbids writing into overlapping memory
        x = S.values(d, shape, dtype, tier, "input", int_limit=8, layout=layout, specials=specials)
        return Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",),
                    layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d))

    return build()


def _relu_reference(case: Case, backward: bool) -> Result:
    x = case.inputs["input"]
    out = Result(outputs={"output": ref.relu(x)})
    if backward:
        out.grads["input"] = ref.relu_vjp(x, case.cotangents["output"])
    return out


declare(LayerSpec(
    name="ReLU",
    family="activation",
    cases=lambda dtype: _elementwise_case("ReLU", dtype, lambda d: {"inplace": d.flag("inplace")}),
    reference=_relu_reference,
    torch=TorchMapping("torch.nn.ReLU", inplace_input="input"),
    # No arithmetic: forward and backward select values, so both are bit-exact in every tier.
    tolerance=Tolerance(magnitude="ref", exact="always"),
    notes="Gradient at the kink x = 0 is 0 (PyTorch's convention). inplace=True must mutate the input.",
))
