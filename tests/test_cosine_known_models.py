"""The CosineSimilarity float16 entries' models (conformance.numerics.known_models_misc): where a norm is
below eps, torch differentiates the clamped norm as the unclamped one, and in float16 its intermediates
((x/N)/N, the norm's gradient) overflow or round away; the op-by-op replays give torch's gradients bit
for bit, eager's (every op rounded to float16) and inductor's (float32 arithmetic, the norms and the norm's
gradient stored in float16), on the two cases the torch-compile sweep left unexplained (shard 53)."""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import Case, Result
from conformance.numerics.known_models_misc import (
    cosine_clamped_norm_gradient_model,
    inductor_cosine_clamped_norm_gradient_model,
)

torch = pytest.importorskip("torch")


def _half(bits: list) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(np.float64)


CASES = {
    # x1 = [6e-8, 0, 0, 0, 4.8e-7] (a norm below eps = 1e-6): eager's ((x1/N1)/N1) overflows, 0·inf = NaN
    "norm below eps beside zeros": (_half([1, 0, 0, 0, 8]), _half([12294, 45114, 14624, 11959, 47177]),
                                    _half(47271)),
    # a (6, 2, 3) batch reduced over dim 0, some columns all zeros, one of norm 1.2e-7: finite, off by 2.6x
    "norms below eps, reduced over dim 0": (
        _half([[[0, 0, 0], [32768, 15166, 14116]], [[32768, 0, 0], [0, 10055, 14432]],
               [[32768, 32768, 32768], [0, 10518, 46254]], [[32768, 32768, 0], [32768, 15661, 15367]],
               [[32769, 32768, 32768], [32768, 13014, 13044]], [[1, 32768, 32768], [1, 14636, 14670]]]),
        _half([[[9741, 15157, 47538], [15150, 46597, 45288]], [[14654, 45520, 11865], [48015, 14350, 11490]],
               [[46451, 14493, 46668], [44532, 47579, 45619]], [[47295, 47003, 14337], [46855, 42901, 15281]],
               [[15203, 14129, 11591], [46884, 47470, 15237]], [[10269, 47653, 13287], [14445, 13115, 15021]]]),
        _half([[47271, 46023, 13670], [47764, 48952, 9665]])),
}


def _torch_gradients(x1: np.ndarray, x2: np.ndarray, g: np.ndarray, compiled: bool) -> dict[str, np.ndarray]:
    t1, t2 = (torch.tensor(v, dtype=torch.float16, requires_grad=True) for v in (x1, x2))

    def fn(a, b):
        return torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-6)

    if compiled:
        torch._dynamo.reset()
        fn = torch.compile(fn, fullgraph=True)
    fn(t1, t2).backward(torch.tensor(g, dtype=torch.float16))
    return {"grad.x1": t1.grad.double().numpy(), "grad.x2": t2.grad.double().numpy()}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)]))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "inductor"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_float16_replays_give_torchs_gradients_bit_for_bit(name: str, compiled: bool):
    x1, x2, g = CASES[name]
    case = Case(op="CosineSimilarity", dtype="float16", params={"dim": 0, "eps": 1e-6}, inputs={"x1": x1, "x2": x2},
                differentiable=("x1", "x2"), cotangents={"output": g})
    model = inductor_cosine_clamped_norm_gradient_model if compiled else cosine_clamped_norm_gradient_model
    predicted = model(case, Result(), Result())
    torchs = _torch_gradients(x1, x2, g, compiled)
    for tensor in ("grad.x1", "grad.x2"):
        assert _same(predicted[tensor], torchs[tensor]), (tensor, predicted[tensor], torchs[tensor])
    assert not _same(predicted["grad.x1"], _torch_gradients(x1, x2, g, not compiled)["grad.x1"])  # they differ
