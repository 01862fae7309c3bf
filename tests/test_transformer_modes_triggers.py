"""The triggers of the transformer entries found by the derivative modes (issue #24): layer_norm's
forward-mode rule, wrong to second order (reverse-over-forward), and float16's rstd³ overflow in
layers of d_model = 1; the predicate holds exactly where torch shows it."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from backends.base import Case
from conformance.numerics.attention import float16_single_feature_layer_norm


def test_layer_norm_reverse_over_forward_over_one_element_is_wrong():
    """Output = bias: every second derivative is 0, but grad of jvp gives rstd·t_w (158.1 at eps 1e-5)."""
    f = lambda x, w, b: F.layer_norm(x, (1,), w, b, 1e-5)  # noqa: E731
    x = torch.tensor([[0.7], [-1.3]], dtype=torch.float64)
    w, b = torch.tensor([1.1], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    t = (torch.zeros_like(x), torch.tensor([0.5], dtype=torch.float64), torch.zeros_like(b))
    rof = torch.func.grad(lambda x: torch.func.jvp(f, (x, w, b), t)[1].sum())(x)
    assert torch.allclose(rof, torch.full_like(x, 0.5 / math.sqrt(1e-5)))
    fwd = torch.func.jvp(lambda w: torch.func.vjp(lambda x: f(x, w, b), x)[1](torch.ones_like(x))[0], (w,), (t[1],))[1]
    assert torch.equal(fwd, torch.zeros_like(x))


def _layer(d_model: int, dtype: str, eps: float = 1e-5) -> Case:
    params = {"d_model": d_model, "nhead": 1, "dim_feedforward": 1, "dropout": 0.0, "activation": "relu",
              "layer_norm_eps": eps, "batch_first": False, "norm_first": False, "bias": True}
    return Case(op="TransformerEncoderLayer", dtype=dtype, params=params,
                inputs={"src": np.ones((2, 1, d_model))})


def test_float16_single_feature_predicate():
    assert float16_single_feature_layer_norm(_layer(1, "float16"))
    assert not float16_single_feature_layer_norm(_layer(1, "float16", eps=1e-3))  # rstd³ = 3.2e4 < 65504
    assert not float16_single_feature_layer_norm(_layer(1, "float32"))
    assert not float16_single_feature_layer_norm(_layer(4, "float16"))


def test_float16_single_feature_layer_double_backward_is_nan():
    """Double backward of a d_model = 1 layer: NaN in float16 (rstd³ = 3.2e7 overflows), 0 in float32."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    m = torch.nn.TransformerEncoderLayer(1, 1, 1, 0.0)
    x = torch.randn(2, 1, 1)
    with sdpa_kernel(SDPBackend.MATH):
        for dtype, nan in ((torch.float16, True), (torch.float32, False)):
            xd = x.to(dtype).requires_grad_()
            gx, = torch.autograd.grad(m.to(dtype)(xd), xd, torch.ones_like(xd), create_graph=True)
            d2, = torch.autograd.grad(gx.sum(), xd)
            assert bool(torch.isnan(d2).all()) is nan
            assert nan or torch.equal(d2, torch.zeros_like(d2))
