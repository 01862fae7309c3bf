"""The model of inductor's max-pooling indices (conformance/numerics/pool_compiled.py) against compiled torch
on a few fixed cases: 1-d, 2-d and 3-d, a padding tap winning an all -inf window and a window of more than
25 taps over a permuted input."""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import Case, Layout
from conformance.numerics import pool_compiled as pc

torch = pytest.importorskip("torch")

INF = float("inf")

# (nd, params, input values, permutation of the stored dims or None)
CASES = [
    (1, {"kernel_size": [2], "stride": [2], "padding": [1]}, np.full((1, 4), -INF), None),
    (2, {"kernel_size": [2, 2], "stride": [2, 2], "padding": [1, 1]}, np.full((1, 2, 2), -INF), None),
    (2, {"kernel_size": [6, 5], "stride": [1, 1], "padding": [1, 1]},
     np.random.default_rng(0).normal(size=(1, 1, 8, 9)).round(3), (0, 1, 3, 2)),
    (2, {"kernel_size": [6, 5], "stride": [1, 1], "padding": [1, 1]},
     np.random.default_rng(0).normal(size=(1, 1, 8, 9)).round(3), None),
    (3, {"kernel_size": [3, 3, 3], "stride": [1, 1, 1], "padding": [1, 1, 1]},
     np.array([[[[-6.0], [-1.0], [3.0]]]]), None),
]


def _compile_available() -> bool:
    try:
        torch._dynamo.reset()
        torch.compile(lambda t: t + 1, fullgraph=True)(torch.zeros(2))
    except Exception:  # no compiler toolchain, or no inductor
        return False
    return True


@pytest.fixture(scope="module")
def compiled() -> None:
    if not _compile_available():
        pytest.skip("torch.compile (inductor, CPU) is unavailable")


def _tensor(x: np.ndarray, perm: tuple[int, ...] | None) -> torch.Tensor:
    if perm is None:
        return torch.from_numpy(x.copy())
    stored = torch.from_numpy(np.ascontiguousarray(x.transpose(perm)))
    return stored.permute(*np.argsort(perm).tolist())


@pytest.mark.parametrize("nd, params, x, perm", CASES)
def test_model_indices_are_compiled_torchs(compiled: None, nd: int, params: dict, x: np.ndarray,
                                           perm: tuple[int, ...] | None) -> None:
    layout = Layout("permuted", perm=perm) if perm is not None else Layout()
    case = Case(op=f"MaxPool{nd}d", dtype="float64", params={**params, "return_indices": True},
                inputs={"input": x}, layouts={"input": layout})
    module = getattr(torch.nn, f"MaxPool{nd}d")(params["kernel_size"], params["stride"], params["padding"],
                                                return_indices=True)
    torch._dynamo.reset()
    _, got = torch.compile(module, fullgraph=True)(_tensor(x, perm))
    predicted = pc.inductor_maxpool_indices(case)
    if x.ndim == nd + 1:  # unbatched
        predicted = predicted[0]
    np.testing.assert_array_equal(got.numpy(), predicted)


def test_out_of_plane_index_makes_the_2d_backward_raise(compiled: None) -> None:
    x = np.full((1, 2, 2), -INF)
    params = {"kernel_size": 2, "stride": 2, "padding": 1, "return_indices": True}
    case = Case(op="MaxPool2d", dtype="float64", params=params, inputs={"input": x}, differentiable=("input",),
                cotangents={"output": np.ones((1, 2, 2))})
    assert pc.inductor_maxpool_1d_2d_backward_index_outside_plane(case)
    assert not pc.inductor_maxpool_1d_2d_wrong_index_inside_plane(case)
    t = torch.from_numpy(x.copy()).requires_grad_()
    torch._dynamo.reset()
    y, _ = torch.compile(torch.nn.MaxPool2d(2, 2, 1, return_indices=True), fullgraph=True)(t)
    with pytest.raises(RuntimeError, match="out of bounds"):
        y.sum().backward()
