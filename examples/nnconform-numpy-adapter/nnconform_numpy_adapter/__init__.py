"""An nnconform backend outside the nnconform tree: ReLU, Linear, Softmax and MSELoss in NumPy.

It computes in the case's dtype (float32 or float64 NumPy arithmetic) and claims nothing else, so
nnconform reports every other layer and dtype as unsupported. Arrays arrive as float64 values
already representable in the case dtype; results go back as float64 arrays with the dtype they
were computed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from backends.base import Backend, Capabilities, Case, Result

__all__ = ["NumpyBackend"]

Arrays = dict[str, np.ndarray]


def _relu(case: Case, x: Arrays, g: np.ndarray | None) -> tuple[Arrays, Arrays]:
    """y = max(x, 0); dx = g where x > 0, else 0. NaN propagates, to the gradient too."""
    v = x["input"]
    y = np.maximum(v, v.dtype.type(0))
    grads = {"input": np.where(np.isnan(v), v, np.where(v > 0, g, 0)).astype(v.dtype)} if g is not None else {}
    return {"output": y}, grads


def _linear(case: Case, x: Arrays, g: np.ndarray | None) -> tuple[Arrays, Arrays]:
    """y = x·Wᵀ + b over the leading dims of x (*, in); dx = g·W, dW = Σ gᵀ·x, db = Σ g."""
    v, w, b = x["input"], x["weight"], x.get("bias")
    y = np.matmul(v, w.T)
    if b is not None:
        y = y + b
    grads: Arrays = {}
    if g is not None:
        g2 = g.reshape(-1, w.shape[0])
        grads["input"] = np.matmul(g, w)
        grads["weight"] = np.matmul(g2.T, v.reshape(-1, w.shape[1]))
        if b is not None:
            grads["bias"] = g2.sum(axis=0)
    return {"output": y}, grads


def _softmax_axis(ndim: int, dim: int | None) -> int:
    if dim is None:  # torch's deprecated implicit choice
        dim = 0 if ndim in (0, 1, 3) else 1
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], but got {dim})")
    return dim % rank


def _softmax(case: Case, x: Arrays, g: np.ndarray | None) -> tuple[Arrays, Arrays]:
    """y = exp(x - max) / Σ exp(x - max) along dim; dx = y·(g - Σ y·g)."""
    v = x["input"]
    axis = _softmax_axis(v.ndim, case.params.get("dim"))
    v1 = np.atleast_1d(v)
    e = np.exp(v1 - v1.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    grads: Arrays = {}
    if g is not None:
        g1 = np.atleast_1d(g)
        grads["input"] = (y * (g1 - (y * g1).sum(axis=axis, keepdims=True))).reshape(v.shape)
    return {"output": y.reshape(v.shape)}, grads


def _mse_reduction(params: dict[str, Any]) -> str:
    """``reduction``, unless the deprecated size_average / reduce flags override it."""
    size_average, reduce = params.get("size_average"), params.get("reduce")
    if size_average is None and reduce is None:
        reduction = params.get("reduction", "mean")
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"{reduction} is not a valid value for reduction")
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "mean" if size_average and reduce else "sum" if reduce else "none"


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient over the dims an operand of ``shape`` was broadcast along."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _mse_loss(case: Case, x: Arrays, g: np.ndarray | None) -> tuple[Arrays, Arrays]:
    """(x - t)² over the broadcast shape, reduced; dx = 2(x - t)·ĝ = -dt (ĝ = g/numel for 'mean')."""
    v, t = x["input"], x["target"]
    reduction = _mse_reduction(case.params)
    np.broadcast_shapes(v.shape, t.shape)  # raises ValueError when they do not broadcast
    d = v - t
    sq = d * d
    y = sq if reduction == "none" else sq.sum(dtype=v.dtype) if reduction == "sum" else sq.mean(dtype=v.dtype)
    grads: Arrays = {}
    if g is not None:
        scale = g / v.dtype.type(d.size) if reduction == "mean" else g
        grad = v.dtype.type(2) * d * scale
        grads = {"input": _unbroadcast(grad, v.shape), "target": _unbroadcast(-grad, t.shape)}
    return {"output": np.asarray(y, dtype=v.dtype)}, grads


LAYERS: dict[str, Callable[[Case, Arrays, np.ndarray | None], tuple[Arrays, Arrays]]] = {
    "ReLU": _relu, "Linear": _linear, "Softmax": _softmax, "MSELoss": _mse_loss,
}
DTYPES = {"float64": np.float64, "float32": np.float32}


class NumpyBackend(Backend):
    """ReLU, Linear, Softmax and MSELoss in NumPy (float32 and float64)."""

    name = "numpy-example"

    def capabilities(self) -> Capabilities:
        return Capabilities(devices=("cpu",), dtypes=tuple(DTYPES), ops=frozenset(LAYERS),
                            notes={"implementation": "NumPy, computing in the case dtype"})

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def run(self, case: Case) -> Result:
        if case.op not in LAYERS or case.dtype not in DTYPES:
            raise NotImplementedError(f"{self.name} has no kernel for {case.target} in {case.dtype}")
        if case.op == "Linear" and case.inputs["input"].shape[-1:] != case.inputs["weight"].shape[1:]:
            raise ValueError("Linear: the input's last dimension is not in_features")
        dtype = DTYPES[case.dtype]
        x = {name: np.asarray(a, dtype=dtype) for name, a in case.inputs.items()}
        g = case.cotangents.get("output")
        backward = bool(case.differentiable) and g is not None
        outputs, grads = LAYERS[case.op](case, x, np.asarray(g, dtype=dtype) if backward else None)
        result = Result()
        for name, value in outputs.items():
            result.outputs[name] = np.asarray(value, dtype=np.float64)
            result.dtypes[name] = case.dtype
        for name in case.differentiable if backward else ():
            result.grads[name] = np.asarray(grads[name], dtype=np.float64)
            result.dtypes[f"grad.{name}"] = case.dtype
        for name in (case.call or {}).get("mutated", ()):  # ReLU(inplace=True) overwrites its input
            result.state[name] = result.outputs["output"]
            result.dtypes[f"state.{name}"] = case.dtype
        return result
