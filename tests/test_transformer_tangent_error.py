"""The transformer declarations' vjp2 error terms and float16 trigger (issue #24): the layer norms'
tangent rounding (``layer_norm_tangent_error``) names each norm's weight, and the float16 rstd³
overflow predicate reads every norm's row variance."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backends.base import Case
from conformance.numerics.attention import float16_layer_norm_rstd_cubed_overflow, layer_norm_tangent_error
from reference.transformer import DECODER_LAYER_PARAMS, ENCODER_LAYER_PARAMS


def _params(names: tuple[str, ...], e: int, ff: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = {"self_attn.in_proj_weight": (3 * e, e), "self_attn.in_proj_bias": (3 * e,),
              "linear1.weight": (ff, e), "linear1.bias": (ff,), "linear2.weight": (e, ff)}
    out = {}
    for n in names:
        key = n.replace("multihead_attn", "self_attn")
        shape = shapes.get(key, (e, e) if key.endswith("out_proj.weight") else (e,))
        out[n] = np.ones(shape) if n.endswith("norm1.weight") or "norm" in n and n.endswith("weight") else (
            0.5 * rng.standard_normal(shape))
    return out


def _case(op: str, src: np.ndarray, dtype: str = "float32") -> Case:
    rng = np.random.default_rng(0)
    e = src.shape[-1]
    params = {"d_model": e, "nhead": 1, "dim_feedforward": 3, "dropout": 0.0, "activation": "relu",
              "layer_norm_eps": 1e-5, "batch_first": False, "norm_first": False, "bias": True}
    if op == "TransformerEncoderLayer":
        inputs = {"src": src, **_params(ENCODER_LAYER_PARAMS, e, 3, rng)}
    else:
        inputs = {"tgt": src, "memory": src + 0.25, **_params(DECODER_LAYER_PARAMS, e, 3, rng)}
    out = np.ones(src.shape)
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=tuple(inputs), train=False,
                cotangents={"output": out})


def test_tangent_error_names_every_norm_weight():
    src = np.random.default_rng(1).standard_normal((3, 1, 4))
    for op, norms in (("TransformerEncoderLayer", ("norm1", "norm2")),
                      ("TransformerDecoderLayer", ("norm1", "norm2", "norm3"))):
        case = _case(op, src)
        v = {n: np.ones(x.shape) for n, x in case.inputs.items()}
        terms = layer_norm_tangent_error(case, v, case.cotangents)
        assert set(terms) == {f"d2.{n}.weight" for n in norms}
        assert all(np.all(np.isfinite(t)) and np.all(t > 0) for t in terms.values())


def test_float16_rstd_cubed_predicate_reads_row_variances():
    close = np.array([[[0.1, 0.12]], [[0.5, 0.52]]])  # the input rows; the norms' rows follow the layer
    apart = np.array([[[0.1, 1.9]], [[-1.5, 0.5]]])
    assert not float16_layer_norm_rstd_cubed_overflow(_case("TransformerEncoderLayer", close, "float32"))
    assert not float16_layer_norm_rstd_cubed_overflow(_case("TransformerEncoderLayer", apart, "float16"))


def test_float16_two_close_values_double_backward_is_nan():
    """rstd³ over a row of two values 0.03 apart overflows float16 (var + eps < 6.2e-4): NaN; 0.06: finite."""
    for d, nan in ((0.03, True), (0.06, False)):
        x = torch.tensor([[0.1, 0.1 + d], [0.5, 0.5 + d]], dtype=torch.half, requires_grad=True)
        g = torch.tensor([[-0.58, 0.3], [0.2, 0.7]], dtype=torch.half)
        gx, = torch.autograd.grad(F.layer_norm(x, (2,)), x, g, create_graph=True)
        d2, = torch.autograd.grad((gx * torch.tensor([[1., 2.], [3., -1.]], dtype=torch.half)).sum(), x)
        assert bool(torch.isnan(d2).all()) is nan
