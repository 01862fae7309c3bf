"""The activations' derivative-mode entries (issue #24): the predicates hold where torch shows the
discrepancy, and the second-order error terms bound torch's second derivatives at the points that
needed them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

import conformance.specs  # noqa: F401  (declares the catalogue)
from backends.base import Case
from conformance.numerics import activation_modes as NM
from conformance.runner import reference_result
from conformance.spec import all_specs

F = torch.nn.functional
TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def _case(op: str, values, dtype: str, params: dict, composition: str = "reverse-over-reverse") -> Case:
    x = np.array(values, dtype=np.float64)
    case = Case(op=op, dtype=dtype, params=params, inputs={"input": x}, differentiable=("input",))
    case = reference_result(all_specs()[case.target], case)[0]
    mode = {"kind": "vjp2", "seed": 1, "tier": "float", "composition": composition}
    return replace(case, call={**(case.call or {}), "mode": mode})


def _mish_d2(x: float, dtype: str) -> float:
    t = torch.tensor([x], dtype=TORCH[dtype], requires_grad=True)
    g, = torch.autograd.grad(F.mish(t), t, torch.ones_like(t), create_graph=True)
    return float(torch.autograd.grad(g, t, torch.ones_like(t))[0])


def test_mish_second_order_nan_exactly_where_exp_overflows():
    for dtype, over, under in (("float16", 11.1, 11.05), ("float32", 88.8, 88.6), ("bfloat16", 89.0, 88.0)):
        assert np.isnan(_mish_d2(over, dtype)) and not np.isnan(_mish_d2(under, dtype))
        assert NM.mish_exp_overflows(_case("Mish", [over], dtype, {"inplace": False}))
        assert not NM.mish_exp_overflows(_case("Mish", [under], dtype, {"inplace": False}))


def test_mish_second_order_error_bounds_torch_near_saturation():
    x, g = 8.206111907958984, -0.5817083716392517
    t = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    gr, = torch.autograd.grad(F.mish(t), t, torch.tensor(g), create_graph=True)
    got = float(torch.autograd.grad(gr, t)[0])
    d = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    gr, = torch.autograd.grad(F.mish(d), d, torch.tensor(g, dtype=torch.float64), create_graph=True)
    exact = float(torch.autograd.grad(gr, d)[0])
    case = _case("Mish", x, "float32", {"inplace": False})
    bound = float(NM.mish_second_order_error(case, {"input": np.array(1.0)}, {"output": np.array(g)})["d2.input"])
    assert abs(got - exact) > 1e-7 and abs(got - exact) <= bound


def test_glu_second_order_error_bounds_torch_where_one_minus_sigmoid_cancels():
    x = [0.0, 0.0, 4.0, 8.0]
    g, v = np.array([-2.0, 2.0]), np.array([1.0, -1.0, -8.0, 3.0])

    def d2(dtype):
        t = torch.tensor(x, dtype=dtype, requires_grad=True)
        gr, = torch.autograd.grad(F.glu(t, -1), t, torch.tensor(g, dtype=dtype), create_graph=True)
        return torch.autograd.grad(gr, t, torch.tensor(v, dtype=dtype))[0].double().numpy()

    err = np.abs(d2(torch.float32) - d2(torch.float64))
    case = _case("GLU", x, "float32", {"dim": -1})
    bound = NM.glu_second_order_error(case, {"input": v}, {"output": g})["d2.input"]
    assert err.max() > 0 and (err <= bound).all()


def test_softmax_jvp_sum_overflow_is_torchs():
    tangent = torch.full((6,), 11520.0, dtype=torch.float16)
    jvp = torch.func.jvp(lambda z: torch.softmax(z, 0), (torch.zeros(6, dtype=torch.float16),), (tangent,))[1]
    assert torch.isinf(jvp).all()
    jvp = torch.func.jvp(lambda z: torch.softmax(z, 0), (torch.zeros(6, dtype=torch.float16),), (tangent / 2,))[1]
    assert torch.isfinite(jvp).all()
