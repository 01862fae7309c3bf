"""Gradient accumulation (issue #19): one valid vjp case in four backpropagates into ``.grad`` tensors
that already hold a value, and is compared as accumulated; an adapter that overwrites ``.grad``
is caught; adapters that do not model ``.grad`` say so and get no such case."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backends.base import MODES, Backend, Capabilities
from backends.torch_backend import TorchBackend
from backends.torch_call import initial_grad
from conformance.cli import main
from conformance.driver import RunSettings
from conformance.dtypes import DTYPES
from conformance.reference_backend import ReferenceBackend
from conformance.runner import ACCUMULATE_EVERY, Runner, reference_result, with_grad_init
from conformance.spec import all_specs
from conformance.tolerance import bound_for
from reports.records import read_records


class _Records:
    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)


def _search(backend: Backend, op: str, dtype: str, examples: int) -> list[dict]:
    writer = _Records()
    runner = Runner(RunSettings(report_dir="unused", examples=examples, isolate=False), writer)
    runner.search(backend, all_specs()[op], dtype, invalid=False)
    runner.flush()
    return [r for r in writer.records if not r["shrinking"]]


class _NoGradModel(ReferenceBackend):
    """The reference, claiming not to model ``.grad`` (as the default capabilities say)."""

    name = "reference-without-grad"

    def capabilities(self):
        return Capabilities(devices=("numpy",))


def test_capabilities_say_who_models_grad():
    assert Capabilities().accumulates is False and Capabilities().modes == ("vjp",)
    assert TorchBackend("cpu").capabilities().accumulates is True
    assert TorchBackend("cpu").capabilities().modes == MODES
    assert ReferenceBackend().capabilities().accumulates is True
    assert Backend().supports_mode("jvp")[0] is False and TorchBackend("cpu").supports_mode("vmap") == (True, "")


def test_one_case_in_four_accumulates_and_no_case_id_changes():
    with_grad = _search(ReferenceBackend(), "Linear", "float32", 16)
    without = _search(_NoGradModel(), "Linear", "float32", 16)
    assert [r["case_id"] for r in with_grad] == [r["case_id"] for r in without]
    accumulated = [r for r in with_grad if r.get("accumulated")]
    assert accumulated and not any(r.get("accumulated") for r in without)
    assert all(int(r["case_id"], 16) % ACCUMULATE_EVERY == 0 for r in accumulated)
    assert all(r["verdict"] == "pass" for r in with_grad), [r for r in with_grad if r["verdict"] != "pass"][:1]
    assert all("grad_init" in r["call"] for r in accumulated)


@pytest.mark.parametrize("op", ["Conv2d", "Embedding"])
def test_torch_accumulates_into_preset_gradients(op):
    records = _search(TorchBackend("cpu"), op, "float32", 12)
    accumulated = [r for r in records if r.get("accumulated")]
    assert accumulated and all(r["verdict"] in ("pass", "known") for r in accumulated), accumulated
    # (errors of plain cases, e.g. Embedding's sparse + scale_grad_by_freq refusal, are the vjp mode's business)
    assert not [r for r in records if r["verdict"] == "fail"], [r for r in records if r["verdict"] == "fail"][:1]


def _accumulating_case(op: str, dtype: str, tier: str):
    spec = all_specs()[op]
    from hypothesis import HealthCheck, given, settings

    found = []

    @settings(max_examples=50, database=None, derandomize=True, suppress_health_check=list(HealthCheck),
              deadline=None)
    @given(case=spec.strategy(dtype))
    def draw(case):
        if not found and case.tier == tier and case.differentiable and all(
                np.isfinite(v).all() for v in case.inputs.values() if v.dtype.kind == "f"):
            found.append(case)

    draw()
    case, ref = reference_result(spec, found[0])
    return spec, with_grad_init(case, ref), ref


def test_exact_tier_stays_bit_exact_when_the_sum_is_representable():
    spec, case, ref = _accumulating_case("Linear", "float32", "exact")
    grad = np.asarray(ref.grads["weight"])
    offset = initial_grad(case.call["grad_init"], "weight", grad.shape)
    assert np.all(offset == np.round(offset)) and np.any(offset)
    bound = bound_for(spec, case, "grad.weight", grad, np.abs(grad))
    total = grad + offset
    representable = DTYPES["float32"].round(total) == total
    assert np.all(bound.allowed[bound.exact & representable] == 0)
    plain = bound_for(spec, replace(case, call={k: v for k, v in case.call.items() if k != "grad_init"}),
                      "grad.weight", grad, np.abs(grad))
    assert np.array_equal(bound.exact, plain.exact & representable)


def test_float_tier_bound_grows_by_one_rounding_of_the_sum():
    spec, case, ref = _accumulating_case("Linear", "float32", "float")
    grad = np.asarray(ref.grads["input"])
    offset = initial_grad(case.call["grad_init"], "input", grad.shape)
    plain = bound_for(spec, replace(case, call={k: v for k, v in case.call.items() if k != "grad_init"}),
                      "grad.input", grad, np.abs(grad))
    accumulated = bound_for(spec, case, "grad.input", grad, np.abs(grad))
    u = DTYPES["float32"].unit_roundoff
    np.testing.assert_allclose(accumulated.allowed - plain.allowed, u * (np.abs(grad + offset) + np.abs(grad)),
                               rtol=1e-12)


def test_an_adapter_that_overwrites_grad_is_caught(tmp_path: Path):
    code = main(["run", "--backend", "tests.wrong_backends.modes:GradientOverwritten", "--ops", "Linear",
                 "--dtypes", "float64", "--profile", "ci", "--examples", "8", "--no-invalid", "--no-isolate",
                 "--quiet", "--report-dir", str(tmp_path)])
    assert code == 1
    final = [r for r in read_records(tmp_path) if r["verdict"] == "fail" and r["final"]]
    assert final and all(r.get("accumulated") for r in final)
    assert all(c["tensor"].startswith("grad.") for r in final for c in r["comparisons"] if not c["ok"])
    size = sum(int(np.prod(i["shape"])) for i in final[0]["case"]["inputs"].values())
    assert size <= 8, final[0]["case"]


@pytest.mark.parametrize("top", [1.0, 30000.0, 60000.0, 65504.0])
def test_preset_grad_never_overflows_the_sum(top):
    """The preset G is scaled so that |G| + |grad| stays within the dtype's range (float16 here):
    a gradient near 65504 gets a smaller G (0 at the very edge), never one that overflows G + grad."""
    from backends.base import Case, Result

    case = Case(op="ReLU", dtype="float16", params={}, inputs={"input": np.zeros(4)}, differentiable=("input",),
                cotangents={"output": np.ones(4)})
    ref = Result(grads={"input": np.array([top, -top / 2, 0.0, 1.0])})
    grad_init = with_grad_init(case, ref).call["grad_init"]
    assert 3 * grad_init["scale"]["input"] + top <= DTYPES["float16"].max_value, (top, grad_init)  # |G| ≤ 3·scale
    g = initial_grad(grad_init, "input", (4,))
    assert np.all(np.abs(g) + top <= DTYPES["float16"].max_value), (top, grad_init)
    if top <= 30000.0:
        assert grad_init["scale"]["input"] > 0
