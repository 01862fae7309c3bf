"""The exact triggers of known entries that were made strict: each predicate models what torch
computes, so it holds where the discrepancy shows and not elsewhere; the models agree with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import conformance.specs  # noqa: F401  (declares the catalogue)
from backends.base import Case
from conformance.numerics import containers as NC
from conformance.numerics import distance as ND
from conformance.numerics import elementwise as NE
from conformance.numerics import normalization as NN
from conformance.runner import reference_result
from conformance.spec import all_specs


def _prepared(case: Case) -> Case:
    return reference_result(all_specs()[case.target], case)[0]


def _gelu(values: list[float]) -> Case:
    x = np.array(values, dtype=np.float64)
    return _prepared(Case(op="GELU", dtype="bfloat16", params={"approximate": "none"}, inputs={"input": x},
                          differentiable=("input",)))


def test_onednn_bfloat16_gelu_flush_threshold_is_torchs():
    x = torch.tensor([-6.15625, -6.125, -20.0, 1.0], dtype=torch.bfloat16, requires_grad=True)
    torch.nn.functional.gelu(x).backward(torch.ones_like(x))
    flushed = x.grad.tolist()
    assert flushed[0] == 0.0 and flushed[1] < 0.0 and flushed[2] == 0.0
    assert -6.15625 < NE.ONEDNN_BF16_GELU_GRAD_FLUSH < -6.125


def test_onednn_bfloat16_gelu_predicate():
    assert NE.onednn_bfloat16_gelu_grad_flushed(_gelu([-6.15625, 1.0]))
    assert not NE.onednn_bfloat16_gelu_grad_flushed(_gelu([-6.125, 1.0]))
    assert not NE.onednn_bfloat16_gelu_grad_flushed(_gelu([-6.15625]))  # one element: the native kernel


def _total_norm_case(grads: list[list[float]], p: float, dtype: str = "float32") -> Case:
    inputs = {f"grad{i}": np.array(g, dtype=np.float64) for i, g in enumerate(grads)}
    params = {"norm_type": p, "norm_type_as": "float", "count": len(grads), "form": "tuple",
              "error_if_nonfinite": False, "foreach": None}
    return _prepared(Case(op="get_total_norm", dtype=dtype, params=params, inputs=inputs))


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_unscaled_total_norm_is_torchs(dtype):
    rng = np.random.default_rng(0)
    for _ in range(40):
        p = float(rng.choice([3.0, 20.0, 100.0]))
        grads = [list(rng.standard_normal(int(rng.integers(1, 5))) * 10.0 ** rng.uniform(-6, 0))
                 for _ in range(int(rng.integers(1, 4)))]
        tensors = [torch.tensor(g, dtype=getattr(torch, dtype)) for g in grads]
        case = _total_norm_case([t.double().tolist() for t in tensors], p, dtype)
        theirs = float(torch.nn.utils.get_total_norm(tensors, norm_type=p))
        assert NC.unscaled_total_norm(case) == pytest.approx(theirs, rel=1e-2, abs=0.0)


def test_norm_underflow_predicate():
    """The bound allows the gradual underflow of the powers to first order (K·tiny/(S·p) relative):
    a sum that underflows entirely (torch returns 0 for 0.02) is within it, a partial one is not."""
    partial = [5.5322144418304477e-17, 4.0487665558146104e-17, 2.7916572860541315e-17]
    case = _total_norm_case([partial], 20.0, "float64")
    assert NC.norm_sum_underflow_shows(case)
    theirs = float(torch.nn.utils.get_total_norm([torch.tensor(partial, dtype=torch.float64)], norm_type=20.0))
    assert theirs == pytest.approx(NC.unscaled_total_norm(case), rel=1e-6)
    assert not NC.norm_sum_underflow_shows(_total_norm_case([[0.01, 0.02]], 100.0))
    assert not NC.norm_sum_underflow_shows(_total_norm_case([[0.01, 0.02]], 3.0))
    assert not NC.norm_sum_underflow_shows(_total_norm_case([[0.02]], 100.0))  # one element: no powers


def _distance_case(x1: list[list[float]], x2: list[list[float]], p: float) -> Case:
    inputs = {"x1": np.array(x1), "x2": np.array(x2)}
    return _prepared(Case(op="PairwiseDistance", dtype="float64", params={"p": p, "eps": 1e-6, "keepdim": False},
                          inputs=inputs, differentiable=("x1", "x2")))


def test_unscaled_pairwise_distance_is_torchs():
    case = _distance_case([[1.0, 2.0]], [[1.0, 2.0]], 100.0)
    x1 = torch.tensor(case.inputs["x1"], requires_grad=True)
    out = torch.nn.PairwiseDistance(p=100.0)(x1, torch.tensor(case.inputs["x2"]))
    out.backward(torch.tensor(case.cotangents["output"]))
    ours = ND.unscaled_norm_result(case)
    np.testing.assert_allclose(ours["output"], out.detach().numpy(), rtol=1e-12)
    np.testing.assert_array_equal(np.isnan(ours["grad.x1"]), np.isnan(x1.grad.numpy()))
    assert ND.unscaled_powers_beyond_bound(case)  # x1 == x2: d = eps, eps^100 underflows
    assert not ND.unscaled_powers_beyond_bound(_distance_case([[1.0, 2.0]], [[0.0, 0.5]], 100.0))


def _lrn_case(x: np.ndarray, beta: float = 0.75) -> Case:
    params = {"size": 2, "alpha": 1e-4, "beta": beta, "k": 1.0}
    return _prepared(Case(op="LocalResponseNorm", dtype="bfloat16", params=params, inputs={"input": x},
                          differentiable=("input",)))


def test_lrn_composite_is_torchs_and_the_predicate_holds_where_it_shows():
    x = np.array([[[3e19, 1.0], [2.0, -4e19]]])  # bfloat16 squares beyond 3.4e38
    case = _lrn_case(x)
    t = torch.tensor(x, dtype=torch.bfloat16, requires_grad=True)
    y = torch.nn.functional.local_response_norm(t, **case.params)
    y.backward(torch.tensor(case.cotangents["output"], dtype=torch.bfloat16))
    ours = NN.lrn_composite_result(case)
    for name, theirs in (("output", y.detach()), ("grad.input", t.grad)):
        theirs = theirs.double().numpy()
        np.testing.assert_array_equal(np.isfinite(ours[name]), np.isfinite(theirs))
        np.testing.assert_allclose(np.nan_to_num(ours[name]), np.nan_to_num(theirs), rtol=2e-2)
    assert NN.lrn_composite_shows(case)
    assert not NN.lrn_composite_shows(_lrn_case(np.array([[[3.0, 1.0], [2.0, -4.0]]])))


def _drawn(target: str, dtype: str, condition) -> Case:
    from hypothesis import HealthCheck, find, settings

    from conformance.numerics.attention import swapped_activation_result

    spec = all_specs()[target]

    def swapped(case: Case) -> bool:
        with np.errstate(all="ignore"):
            ours = swapped_activation_result(case)["output"]
            return not np.allclose(ours, spec.evaluate(case).outputs["output"], rtol=1e-6, atol=1e-9)

    found = find(spec.cases(dtype), lambda c: condition(c) and swapped(c),
                 settings=settings(database=None, max_examples=2000, suppress_health_check=list(HealthCheck)))
    return reference_result(spec, found)[0]


@pytest.mark.parametrize(("target", "condition"), [
    ("TransformerDecoder", lambda c: c.params["activation"] == "GELU(tanh)" and not c.train),
    ("TransformerEncoderLayer[fast path]", lambda c: c.params["activation"] == "GELU(tanh)"
     and __import__("conformance.numerics.attention", fromlist=["x"]).encoder_layer_fast_path(c)),
])
def test_swapped_activation_model_is_torchs(target, condition):
    """The model (the reference with torch's activations) agrees with torch to rounding, where the
    reference itself does not."""
    from backends.torch_backend import TorchBackend
    from conformance.numerics import attention as NA

    case = _drawn(target, "float64", condition)
    got = TorchBackend("cpu").run(case).tensors()
    predicted = {name: value[0] if isinstance(value, tuple) else value  # (value, its rounding magnitude)
                 for name, value in NA.swapped_activation_model(case, None, None).items()}  # type: ignore[arg-type]
    reference = all_specs()[case.target].evaluate(case, case.cotangents).tensors()
    for name, value in predicted.items():
        if name in got:
            np.testing.assert_allclose(np.asarray(got[name], dtype=np.float64), value, rtol=1e-9, atol=1e-12)
    assert any(not np.allclose(predicted[n], reference[n], rtol=1e-9, atol=1e-12) for n in predicted if n in reference)


def _grouped_conv_case(shape: tuple[int, ...], perm: tuple[int, ...], groups: int = 2) -> Case:
    from backends.base import Layout

    params = {"in_channels": 4, "out_channels": 2, "kernel_size": (1, 2), "stride": 1, "padding": 0,
              "dilation": 1, "groups": groups, "bias": False, "padding_mode": "zeros"}
    inputs = {"input": np.arange(float(np.prod(shape))).reshape(shape),
              "weight": np.arange(2.0 * 4 // groups * 2).reshape(2, 4 // groups, 1, 2)}
    return Case(op="Conv2d", dtype="float64", params=params, inputs=inputs, differentiable=("input", "weight"),
                layouts={"input": Layout("permuted", perm=perm)})


def test_grouped_conv2d_weight_grad_swaps_on_an_ambiguous_channels_last_input():
    """Eager convolution_backward (what inductor calls, with the weight it lays out channels_last
    because the input is channels_last-contiguous) swaps the per-group weight gradient when the input's
    strides do not look channels_last to eager (an unbatched input's unsqueezed batch dim); the
    predicate holds there and not for a batched channels_last input or an ungrouped conv."""
    from conformance.numerics.conv_compiled import grouped_conv2d_ambiguous_channels_last_input as ambiguous

    x = torch.arange(8.0, dtype=torch.float64).reshape(1, 2, 4).permute(2, 0, 1).unsqueeze(0)  # strides (4, 1, 8, 4)
    w = torch.arange(8.0, dtype=torch.float64).reshape(2, 2, 1, 2)
    g = torch.tensor([[[[-2.0]], [[2.0]]]], dtype=torch.float64)

    def weight_grad(weight: torch.Tensor) -> list[float]:
        args = ([0], (1, 1), (0, 0), (1, 1), False, (0, 0), 2, [False, True, False])
        return torch.ops.aten.convolution_backward(g, x, weight, *args)[1].flatten().tolist()

    assert weight_grad(w) == [0.0, -8.0, -2.0, -10.0, 4.0, 12.0, 6.0, 14.0]  # eager's own layouts: right
    channels_last = w.contiguous(memory_format=torch.channels_last)
    assert weight_grad(channels_last) == [0.0, -2.0, -8.0, -10.0, 4.0, 6.0, 12.0, 14.0]  # inductor's: swapped
    assert ambiguous(_grouped_conv_case((4, 1, 2), (1, 2, 0)))  # that input, unbatched, in a permuted layout
    assert not ambiguous(_grouped_conv_case((1, 4, 3, 2), (0, 2, 3, 1)))  # batched, truly channels_last
    assert not ambiguous(_grouped_conv_case((4, 1, 2), (1, 2, 0), groups=1))
