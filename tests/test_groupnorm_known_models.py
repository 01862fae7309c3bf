"""The GroupNorm entries' models (conformance.numerics.known_models_norm): on torch's own results for a
group whose mean dominates its spread they explain what torch computes (the channels-last kernel's
one-pass variance, the backward's one-pass sums), and not a gross perturbation of it (the masking
audit's ×1.25 + 0.5) nor the exact result moved by a constant."""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import Case, Layout, Result
from conformance.compare import compare_results
from conformance.known import load_known, modelled_tensors
from conformance.numerics.known_models_norm import _single_value_gradients
from conformance.spec import all_specs

torch = pytest.importorskip("torch")

VARIANCE = "groupnorm-cpu-channels-last-one-pass-variance-float32"
BACKWARD = "groupnorm-cpu-backward-one-pass-cancellation"


def _entry(entry_id: str):
    return next(e for e in load_known() if e.id == entry_id)


def _torch_case(x: np.ndarray, groups: int, *, eps: float = 1e-5, affine: bool = True, channels_last: bool = False,
                seed: int = 0) -> tuple[Case, Result]:
    """A float32 GroupNorm case and what torch's CPU kernels return for it (output and gradients)."""
    rng = np.random.default_rng(seed)
    c = x.shape[1]
    inputs = {"input": x.astype(np.float32).astype(np.float64)}
    if affine:
        inputs["weight"] = rng.uniform(0.5, 2.0, c).astype(np.float32).astype(np.float64)
        inputs["bias"] = rng.standard_normal(c).astype(np.float32).astype(np.float64)
    g = rng.standard_normal(x.shape).astype(np.float32).astype(np.float64)
    layouts = {"input": Layout("channels_last", (0, 2, 3, 1))} if channels_last else {}
    case = Case(op="GroupNorm", dtype="float32", params={"num_groups": groups, "num_channels": c, "eps": eps,
                                                          "affine": affine, "bias": affine},
                inputs=inputs, differentiable=tuple(inputs), layouts=layouts, cotangents={"output": g})
    tx = torch.tensor(inputs["input"], dtype=torch.float32)
    if channels_last:
        tx = tx.contiguous(memory_format=torch.channels_last)
    tx.requires_grad_()
    params = {k: torch.tensor(inputs[k], dtype=torch.float32, requires_grad=True) for k in ("weight", "bias")
              if k in inputs}
    y = torch.nn.functional.group_norm(tx, groups, params.get("weight"), params.get("bias"), eps)
    y.backward(torch.tensor(g, dtype=torch.float32))
    grads = {"input": tx.grad.double().numpy()}
    grads.update({k: p.grad.double().numpy() for k, p in params.items()})
    return case, Result(outputs={"output": y.detach().double().numpy()}, grads=grads)


def _explained(entry_id: str, case: Case, got: Result) -> frozenset[str]:
    spec = all_specs()["GroupNorm"]
    reference = spec.evaluate(case, case.cotangents)
    return modelled_tensors([_entry(entry_id)], spec, case, reference, got)[entry_id]


def _moved(result: Result, change) -> Result:
    return Result(outputs={k: change(k, v) for k, v in result.outputs.items()},
                  grads={k: change("grad." + k, v) for k, v in result.grads.items()})


def test_channels_last_model_explains_torch_and_not_a_perturbation():
    """x ~ 1000 + N(0, 1) in channels-last float32: torch's one-pass variance loses several percent
    of it (its output and gradients fail their plain bounds), and the model explains all three
    tensors; ×1.25 + 0.5 of them, or the exact result plus 0.5, it does not."""
    x = 1000 + np.random.default_rng(1).standard_normal((2, 6, 3, 4))
    case, got = _torch_case(x, 2, channels_last=True)
    spec = all_specs()["GroupNorm"]
    reference = spec.evaluate(case, case.cotangents)
    failing = {c.tensor for c in compare_results(spec, case, reference, got) if not c.ok}
    assert {"output", "grad.input"} <= failing  # the bug shows
    modelled = ("output", "grad.input", "grad.weight")
    assert set(modelled) <= _explained(VARIANCE, case, got)
    exact = reference.tensors()
    for group in ("output", "grad."):  # as the masking audit perturbs: the outputs, or the gradients
        def inside(name: str) -> bool:
            return name.startswith(group)  # noqa: B023 (called at once)

        scaled = _moved(got, lambda name, v: v * 1.25 + 0.5 if inside(name) else v)
        shifted = _moved(got, lambda name, v: exact[name] + 0.5 if inside(name) else v)
        for wrong in (scaled, shifted):
            assert not {t for t in modelled if inside(t)} & _explained(VARIANCE, case, wrong), group


def test_channels_last_model_rejects_a_wrong_rstd_alone():
    """The output scaled by 1.25 about its bias (a wrong rstd, no constant offset) is not explained
    either where the one-pass variance keeps most of the variance (x ~ 100 + N(0, 1): rstd within a
    few percent), whereas at x ~ 1000 it may lose all of it (rstd anywhere up to 1/sqrt(eps)) and
    the rstd alone cannot tell a wrong output."""
    x = 100 + np.random.default_rng(2).standard_normal((2, 6, 3, 4))
    case, got = _torch_case(x, 3, channels_last=True)
    bias = case.inputs["bias"].reshape(1, -1, 1, 1)
    scaled = Result(outputs={"output": (got.outputs["output"] - bias) * 1.25 + bias}, grads=got.grads)
    assert "output" in _explained(VARIANCE, case, got)
    assert "output" not in _explained(VARIANCE, case, scaled)


def test_backward_model_explains_torch_and_not_a_perturbation():
    """The contiguous kernel's backward (the one-pass sums Σg·x - μ·Σg) on x ~ 3000 + N(0, 1), with
    and without affine parameters: torch's gradient is explained, ×1.25 + 0.5 or the exact
    gradient plus 0.5 are not."""
    for affine in (True, False):
        x = 3000 + np.random.default_rng(3).standard_normal((3, 8, 5))
        case, got = _torch_case(x, 4, affine=affine, seed=4)
        spec = all_specs()["GroupNorm"]
        reference = spec.evaluate(case, case.cotangents)
        assert "grad.input" in _explained(BACKWARD, case, got)
        for wrong in (_moved(got, lambda name, v: v * 1.25 + 0.5), _moved(reference, lambda name, v: v + 0.5)):
            assert "grad.input" not in _explained(BACKWARD, case, wrong)


def test_single_value_groups_replayed():
    """Groups of one value (C = G, no spatial dims): the exact gradient is 0 and torch's is 0 or
    rounding garbage at the scale of c2·x, which for x ~ 1e12 no rounding bound separates from 0.5.
    The model replays the kernel's arithmetic there: torch's values (zeros included) are among the
    replays, and the masking audit's 0.5 (+ its ×1.25) is not."""
    rng = np.random.default_rng(5)
    for channels_last in (False, True):
        x = rng.uniform(1e11, 1e13, (4, 6, 1, 1))
        case, got = _torch_case(x, 6, eps=1e-3, channels_last=channels_last, seed=6)
        assert "grad.input" in _explained(BACKWARD, case, got)
        perturbed = _moved(got, lambda name, v: v * 1.25 + 0.5 if name == "grad.input" else v)
        assert "grad.input" not in _explained(BACKWARD, case, perturbed)


def test_single_value_replay_matches_torch_bitwise():
    """``_single_value_gradients`` holds torch's value for random single-value groups in float32 and
    float64, contiguous and channels-last, huge and moderate values, with and without a weight
    (nonzero results included: the roundings of c1·g + c2·x and of c3 at c2·x's scale)."""
    rng = np.random.default_rng(7)
    nonzero = 0
    for dtype, tdt in (("float32", torch.float32), ("float64", torch.float64)):
        for channels_last in (False, True):
            for trial in range(6):
                scale = 10.0 ** rng.integers(-6, 12)
                x = torch.tensor(rng.standard_normal((4, 8, 1, 1)) * scale + 10 * scale, dtype=tdt)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                w = torch.tensor(rng.standard_normal(8), dtype=tdt) if trial % 2 else None
                g = torch.tensor(rng.standard_normal((4, 8, 1, 1)), dtype=tdt)
                eps = float(10.0 ** rng.integers(-7, 0))
                x.requires_grad_()
                torch.nn.functional.group_norm(x, 8, w, None, eps).backward(g)
                for n in range(4):
                    for c in range(8):
                        value = x.grad[n, c, 0, 0].item()
                        nonzero += value != 0
                        assert value in _single_value_gradients(
                            x[n, c, 0, 0].item(), g[n, c, 0, 0].item(), None if w is None else w[c].item(), eps,
                            dtype, channels_last)
    assert nonzero  # the replay is tested on garbage too, not only on zeros


def test_inductor_backward_model_explains_compiled_torch_and_not_a_perturbation():
    """The shard-58 case of ``inductor-groupnorm-backward-one-pass-cancellation``: a constant group of
    1023.86 whose compiled (inductor) input gradient leaves the plain bound is explained by the model of
    the same one-pass algebra (torch._decomp's native_group_norm_backward); ×1.25 + 0.5 of it, or the
    exact gradient plus 20, are not. (Plus a few units is: in a constant group V = x - μ = 0, and the
    group's constant C may be as large as the roundings of c2·x and c3, with |c2| up to
    u·Σ|g·x|·rstd³/M ~ 4e3 at x ~ 1024, rstd = 1/sqrt(eps): the algebra is that ill-conditioned there.)"""
    x = np.full((1, 5), 1023.8636)
    g = np.array([[-0.17780708, 0.15943782, 0.025227735, -0.6413912, -0.3334149]])
    inputs = {"input": x.astype(np.float32).astype(np.float64)}
    case = Case(op="GroupNorm", dtype="float32", params={"num_groups": 1, "num_channels": 4, "eps": 1e-5,
                                                          "affine": False, "bias": False},
                inputs=inputs, differentiable=("input",),
                cotangents={"output": g.astype(np.float32).astype(np.float64)})
    tx = torch.tensor(inputs["input"], dtype=torch.float32, requires_grad=True)
    module = torch.compile(torch.nn.GroupNorm(1, 4, affine=False), fullgraph=True)
    y = module(tx)
    y.backward(torch.tensor(case.cotangents["output"], dtype=torch.float32))
    got = Result(outputs={"output": y.detach().double().numpy()}, grads={"input": tx.grad.double().numpy()})
    spec = all_specs()["GroupNorm"]
    reference = spec.evaluate(case, case.cotangents)
    assert "grad.input" in {c.tensor for c in compare_results(spec, case, reference, got) if not c.ok}
    entry = "inductor-groupnorm-backward-one-pass-cancellation"
    assert "grad.input" in _explained(entry, case, got)
    for wrong in (_moved(got, lambda name, v: v * 1.25 + 0.5), _moved(reference, lambda name, v: v + 20.0)):
        assert "grad.input" not in _explained(entry, case, wrong)
