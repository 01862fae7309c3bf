"""Linear layers: ``linear`` (y = x·Wᵀ + b), ``bilinear`` (y = x1ᵀ·A·x2 + b) and ``identity``, over
the last dimension of inputs of any rank, with their VJPs.

Every output element is a sum of products of the inputs, so these references are exact on small
integers (the exact tier) and their magnitude bound is the same computation on absolute values.
"""

from __future__ import annotations

import numpy as np

from reference.registry import functional


def _check_features(x: np.ndarray, weight: np.ndarray) -> None:
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not end in in_features={weight.shape[1]}")


def linear_vjp(
    x: np.ndarray, weight: np.ndarray, g: np.ndarray, with_bias: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dL/dx, dL/dW, dL/db) for the output cotangent ``g`` of shape (*, out_features).

    dL/dx = g·W; dL/dW = sum over the leading dims of gᵀ·x; dL/db = sum over the leading dims of g.
    """
    _check_features(x, weight)
    g_rows = g.reshape(-1, weight.shape[0])
    x_rows = x.reshape(-1, weight.shape[1])
    grad_x = g @ weight
    grad_w = g_rows.T @ x_rows
    grad_b = g_rows.sum(axis=0) if with_bias else None
    return grad_x, grad_w, grad_b


def _linear_vjp(cotangent: np.ndarray, input: np.ndarray, weight: np.ndarray,
                bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """input: g·W; weight: Σ gᵀ·x over the leading dims; bias: Σ g over the leading dims."""
    gx, gw, gb = linear_vjp(input, weight, cotangent, bias is not None)
    return {"input": gx, "weight": gw, **({"bias": gb} if gb is not None else {})}


def _linear_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)), {}


@functional(vjp=_linear_vjp, example=_linear_example)
def linear(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y[..., o] = Σ_i x[..., i]·W[o, i] + b[o].

    Shapes: x (*, in_features) with any number of leading dims (none: a 1-d input), W
    (out_features, in_features), b (out_features,) or None; y (*, out_features).
    """
    _check_features(input, weight)
    y = input @ weight.T
    return y if bias is None else y + bias


def _check_bilinear(x1: np.ndarray, x2: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> None:
    if weight.ndim != 3:
        raise ValueError(f"bilinear: weight must be (out, in1, in2), got {weight.shape}")
    if x1.ndim == 0 or x1.shape[-1] != weight.shape[1] or x2.ndim == 0 or x2.shape[-1] != weight.shape[2]:
        raise ValueError(f"bilinear: inputs {x1.shape}, {x2.shape} do not end in ({weight.shape[1]}, "
                         f"{weight.shape[2]})")
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ValueError(f"bilinear: the leading dims of the inputs differ: {x1.shape[:-1]} and {x2.shape[:-1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bilinear: bias must be ({weight.shape[0]},), got {bias.shape}")


def _bilinear_vjp(cotangent: np.ndarray, input1: np.ndarray, input2: np.ndarray, weight: np.ndarray,
                  bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """input1: Σ_oj g_o·A_oij·x2_j; input2: Σ_oi g_o·A_oij·x1_i; weight: Σ over the leading dims of
    g_o·x1_i·x2_j; bias: Σ g over the leading dims."""
    _check_bilinear(input1, input2, weight, bias)
    g = np.asarray(cotangent, dtype=np.float64)
    a = np.tensordot(g, weight, axes=([-1], [0]))  # (*, in1, in2): Σ_o g_o·A_oij
    g1, g2 = (a * input2[..., None, :]).sum(axis=-1), (a * input1[..., :, None]).sum(axis=-2)
    rows = g.reshape(-1, weight.shape[0])
    outer = (input1[..., :, None] * input2[..., None, :]).reshape(rows.shape[0], weight.shape[1] * weight.shape[2])
    gw = (rows.T @ outer).reshape(weight.shape)
    grads = {"input1": g1, "input2": g2, "weight": gw}
    if bias is not None:
        grads["bias"] = rows.sum(axis=0)
    return grads


def _bilinear_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((5, 3, 4)),
            rng.standard_normal(5)), {}


@functional(vjp=_bilinear_vjp, example=_bilinear_example)
def bilinear(input1: np.ndarray, input2: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y[..., o] = Σ_ij x1[..., i]·A[o, i, j]·x2[..., j] + b[o].

    Shapes: x1 (*, in1_features), x2 (*, in2_features) with the same leading dims (none: 1-d
    inputs), A (out_features, in1_features, in2_features), b (out_features,) or None; y (*, out_features).
    """
    _check_bilinear(input1, input2, weight, bias)
    y = (np.tensordot(input1, weight, axes=([-1], [1])) * input2[..., None, :]).sum(axis=-1)
    return y if bias is None else y + bias


def _identity_vjp(cotangent: np.ndarray, input: np.ndarray) -> dict[str, np.ndarray]:
    """input: the cotangent itself."""
    return {"input": np.array(cotangent, dtype=np.float64, copy=True)}


@functional(vjp=_identity_vjp, example=lambda rng: ((rng.standard_normal((2, 3)),), {}))
def identity(input: np.ndarray) -> np.ndarray:
    """y = x, bit for bit (-0, ±inf and NaN included); any shape. nn.Identity's forward (its
    constructor arguments are ignored)."""
    return np.array(input, copy=True)
