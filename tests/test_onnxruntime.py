"""The onnxruntime backend: names and availability, what it exports (every tensor an input, mutated
tensors written back), graph reuse decided by the exporter's own constraints, verdicts (a failed
export is ``compile`` with an ``export:`` message, a missing kernel ``unsupported``, the call's own
error stays its own), forward only by capability, and deliberately wrong exporters caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import conformance.runner as runner_module  # noqa: E402
import conformance.specs  # noqa: E402,F401  (declares the catalogue)
from backends.base import COMPILED, Backend, Case, CompileFailure, Layout  # noqa: E402
from backends.onnxruntime_backend import OnnxRuntimeBackend, parse_spec  # noqa: E402
from backends.torch_compile import graph_kind  # noqa: E402
from conformance.cli import main  # noqa: E402
from conformance.registry import BackendNotFound, known_backends, load_backend  # noqa: E402
from conformance.runner import reference_result  # noqa: E402
from conformance.spec import all_specs  # noqa: E402
from reports.records import read_records  # noqa: E402


def _case(op: str, inputs: dict[str, np.ndarray], params: dict, dtype: str = "float32", train: bool = True,
          invalid: bool = False, seed: int = 1) -> Case:
    spec = all_specs()[op]
    case = Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=("input",), cotangent_seed=seed,
                train=train, invalid=invalid)
    return reference_result(spec, case)[0] if not invalid else replace(case, call=spec.call(case))


def _relu(shape: tuple[int, ...], seed: int = 0, inplace: bool = False, dtype: str = "float32") -> Case:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float16).astype(np.float64)
    return _case("ReLU", {"input": x}, {"inplace": inplace}, dtype=dtype, seed=seed)


@pytest.fixture(scope="module")
def backend() -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend()


# -- names, availability, capabilities ---------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ("onnxruntime", ("dynamo", None)),
    ("onnxruntime:torchscript", ("torchscript", None)),
    ("onnxruntime:opset=17", ("dynamo", 17)),
    ("onnxruntime:torchscript:opset=13", ("torchscript", 13)),
])
def test_spec_spelling(spec, expected):
    assert parse_spec(spec) == expected


def test_registry_names():
    assert "onnxruntime" in known_backends()
    assert load_backend("onnxruntime").name == "onnxruntime"
    assert load_backend("onnxruntime:dynamo").name == "onnxruntime"
    assert load_backend("onnxruntime:torchscript").name == "onnxruntime:torchscript"
    assert load_backend("onnxruntime:torchscript:opset=17").name == "onnxruntime:torchscript:opset=17"
    assert load_backend("onnxruntime").known_as == ()  # its own entries, not eager torch's
    with pytest.raises(BackendNotFound):
        load_backend("onnxruntime:tflite")


def test_availability_and_forward_only_capabilities(monkeypatch):
    backend = load_backend("onnxruntime")
    assert backend.availability() == (True, "")
    caps = backend.capabilities()
    assert caps.backward is False and caps.devices == ("cpu",)
    assert Backend().capabilities().backward is True  # the default of every other adapter
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    ok, reason = OnnxRuntimeBackend().availability()
    assert not ok and "onnxruntime" in reason and "nnconform[onnx]" in reason


# -- what runs ------------------------------------------------------------------------------------------

def test_outputs_without_gradients(backend):
    case = _relu((3, 4))
    got = backend.run(case)
    assert np.array_equal(got.outputs["output"], np.maximum(case.inputs["input"], 0))
    assert got.grads == {} and got.dtypes["output"] == "float32"


def test_mutated_inputs_are_written_back(backend):
    case = _relu((2, 5), inplace=True)
    got = backend.run(case)
    assert np.array_equal(got.state["input"], np.maximum(case.inputs["input"], 0))


def test_training_mode_is_exported_as_the_case_sets_it():
    """The TorchScript exporter preserves training mode (batch statistics); the dynamo exporter keeps
    the module's mode, and normalises a training-mode BatchNorm with the running statistics (a finding:
    conformance/known/onnxruntime.toml). Neither writes the running statistics back."""
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 2, 2) / 8
    params = {"num_features": 3, "eps": 1e-5, "momentum": 0.5, "affine": True, "track_running_stats": True}
    spec = all_specs()["BatchNorm2d"]
    inputs = {"input": x, "weight": np.ones(3), "bias": np.zeros(3), "running_mean": np.zeros(3),
              "running_var": np.ones(3), "num_batches_tracked": np.array(0, dtype=np.int64)}
    case, ref = reference_result(spec, Case(op="BatchNorm2d", dtype="float64", params=params, inputs=inputs))
    traced = OnnxRuntimeBackend("torchscript").run(case)
    assert np.allclose(traced.outputs["output"], ref.outputs["output"])
    assert np.array_equal(traced.state["running_mean"], np.zeros(3))
    exported = OnnxRuntimeBackend("dynamo").run(case)
    assert np.allclose(exported.outputs["output"], x / np.sqrt(1 + 1e-5))  # running statistics (0, 1)


def test_dynamic_graphs_are_reused_within_the_exporters_constraints():
    backend = OnnxRuntimeBackend()
    cases = [_relu((3 + s % 4, 2 + s % 3), seed=s) for s in range(24)]
    dynamic = [c for c in cases if graph_kind(c) == "dynamic"]
    static = [c for c in cases if graph_kind(c) == "static"]
    assert len(dynamic) >= 3 and len(static) >= 3
    compiled = []
    for case in dynamic:
        result = backend.run(case)
        assert np.array_equal(result.outputs["output"], np.maximum(case.inputs["input"], 0))
        compiled.append(result.meta[COMPILED])
    assert backend.stats["exported"] == 1 and backend.stats["reused"] == len(dynamic) - 1
    assert compiled == [True] + [False] * (len(dynamic) - 1)  # later cases could not show an export failure
    sizes = {c.inputs["input"].shape for c in static}
    for case in static:
        backend.run(case)
    assert backend.stats["exported"] == 1 + len(sizes)  # one graph per size


def test_reuse_follows_the_exported_programs_input_constraints():
    import sympy

    from backends.onnxruntime_backend import _Shapes

    n, c = sympy.Symbol("n"), sympy.Symbol("c")
    shapes = _Shapes(dims=[[n, c, 1], [c]], ranges={n: (2, float("inf")), c: (0, 8)}, general=True,
                     exact=[(2, 3, 1), (3,)])
    assert shapes.accepts([(2, 3, 1), (3,)]) and shapes.accepts([(5, 8, 1), (8,)])
    assert not shapes.accepts([(5, 8, 2), (8,)])  # a specialised size
    assert not shapes.accepts([(5, 8, 1), (7,)])  # a symbol bound twice to different sizes
    assert not shapes.accepts([(1, 3, 1), (3,)]) and not shapes.accepts([(2, 9, 1), (9,)])  # out of range
    asserting = replace(shapes, general=False)  # runtime assertions: only the sizes it was exported at
    assert asserting.accepts([(2, 3, 1), (3,)]) and not asserting.accepts([(5, 8, 1), (8,)])


# -- verdicts -------------------------------------------------------------------------------------------

def test_a_failed_export_is_a_compile_failure_with_the_exporters_message(backend):
    params = {"num_features": 2, "eps": 1e-5, "momentum": None, "affine": False, "track_running_stats": True}
    inputs = {"input": np.ones((2, 2, 3)), "running_mean": np.zeros(2), "running_var": np.ones(2),
              "num_batches_tracked": np.array(0, dtype=np.int64)}
    case = Case(op="BatchNorm1d", dtype="float32", params=params, inputs=inputs, train=True)
    case = reference_result(all_specs()["BatchNorm1d"], case)[0]
    with pytest.raises(CompileFailure, match="^export: ") as raised:
        backend.run(case)
    assert "data-dependent" in str(raised.value)


def test_the_calls_own_error_is_raised_as_such(backend):
    spec = all_specs()["Linear"]
    case = Case(op="Linear", dtype="float32", params={"in_features": 3, "out_features": 2, "bias": False},
                inputs={"input": np.ones((2, 4)), "weight": np.ones((2, 3))}, invalid=True)
    with pytest.raises(RuntimeError) as raised:
        backend.run(replace(case, call=spec.call(case)))
    assert not isinstance(raised.value, CompileFailure)


def test_a_missing_kernel_is_unsupported(backend):
    with pytest.raises(NotImplementedError, match="onnxruntime"):
        backend.run(_relu((2, 3), dtype="bfloat16"))


# -- through the runner ---------------------------------------------------------------------------------

class _ForwardOnly(Backend):
    name = "forward-only-probe"

    def capabilities(self):
        from backends.base import Capabilities

        return Capabilities(backward=False)

    def run(self, case):
        from backends.base import Result

        return Result(outputs={"output": np.maximum(case.inputs["input"], 0)}, dtypes={"output": case.dtype})


def test_the_runner_compares_no_gradient_of_a_forward_only_backend():
    from conformance.driver import RunSettings

    runner = runner_module.Runner(RunSettings(report_dir="."), writer=None)
    record = runner.evaluate(_ForwardOnly(), all_specs()["ReLU"], _relu((2, 2))).record
    assert record["verdict"] == "pass" and record["not_compared"] == ["grad.input"]
    assert [c["tensor"] for c in record["comparisons"]] == ["output"]


def test_a_backend_with_a_backward_that_reports_no_gradient_fails():
    from conformance.driver import RunSettings

    class _NoGradient(_ForwardOnly):
        def capabilities(self):
            from backends.base import Capabilities

            return Capabilities()

    runner = runner_module.Runner(RunSettings(report_dir="."), writer=None)
    record = runner.evaluate(_NoGradient(), all_specs()["ReLU"], _relu((2, 2))).record
    assert record["verdict"] == "fail" and "not_compared" not in record
    failing = [c for c in record["comparisons"] if not c["ok"]]
    assert [c["tensor"] for c in failing] == ["grad.input"]


class _AcceptsEverything(_ForwardOnly):
    def run(self, case):
        from backends.base import Result

        return Result(outputs={"output": case.inputs["input"].copy()}, dtypes={"output": case.dtype})


def _invalid_case(spec_id: str, rule: str):
    from hypothesis import find

    from conformance.driver import RunSettings

    spec = all_specs()[spec_id]
    case = find(spec.strategy("float32", None, invalid=True), lambda c: c.note == rule)
    return spec, runner_module.Runner(RunSettings(report_dir="."), writer=None), case


@pytest.mark.parametrize(("spec_id", "rule"), [
    ("LeakyReLU", "inplace with a negative slope, input requires grad"),
    ("CELU", "inplace with a negative alpha, input requires grad"),
    ("ELU", "inplace with a negative alpha, input requires grad"),
    ("RReLU", "inplace in evaluation with a negative slope, input requires grad"),
])
def test_a_rule_torch_enforces_in_its_backward_is_unsupported_without_a_backward(spec_id, rule):
    spec, runner, case = _invalid_case(spec_id, rule)
    assert case.backward_rule
    record = runner.evaluate(_AcceptsEverything(), spec, case).record
    assert record["verdict"] == "unsupported" and "backward pass" in record["error"]

    class _WithBackward(_AcceptsEverything):  # a backend with a backward must still reject the case
        def capabilities(self):
            from backends.base import Capabilities

            return Capabilities()

    assert runner.evaluate(_WithBackward(), spec, case).record["verdict"] == "error"


def test_a_rule_the_forward_enforces_is_still_judged_on_a_forward_only_backend():
    spec, runner, case = _invalid_case("CELU", "alpha = 0")
    assert not case.backward_rule
    record = runner.evaluate(_AcceptsEverything(), spec, case).record
    assert record["verdict"] == "error" and "accepted an invalid case" in record["error"]


def _run(tmp_path, backend: str, ops: str, dtypes: str = "float64", *extra: str) -> tuple[int, list]:
    code = main(["run", "--backend", backend, "--ops", ops, "--dtypes", dtypes, "--profile", "ci", "--quiet",
                 "-j", "1", "--no-isolate", "--report-dir", str(tmp_path), *extra])
    return code, [r for r in read_records(tmp_path) if r.get("type", "case") == "case"]


def test_a_run_conforms_forward_only(tmp_path):
    code, records = _run(tmp_path, "onnxruntime", "ReLU", "float32", "--examples", "6")
    assert code == 0, sorted({(r["verdict"], r["error"]) for r in records})
    assert {r["verdict"] for r in records} == {"pass"}
    compared = {c["tensor"] for r in records for c in r["comparisons"]}
    assert "output" in compared and not any(t.startswith("grad.") for t in compared)
    from reports.render import not_compared_summary

    counted = [r for r in records if not r.get("shrinking")]
    assert not_compared_summary(records) == [{"backend": "onnxruntime", "cases": len(counted),
                                              "tensors": len(counted)}]


@pytest.mark.parametrize(("adapter", "op", "dtype"), [("OnnxMaxPoolWithoutCeilMode", "MaxPool1d", "float64"),
                                                      ("OnnxAvgPoolExcludingPadding", "AvgPool1d", "float32")])
def test_wrong_exporters_are_caught_and_shrunk(tmp_path, adapter, op, dtype):
    # (ONNX Runtime has no float64 AveragePool kernel: float64 AvgPool is unsupported there)
    code, records = _run(tmp_path, f"tests.wrong_backends.compiled:{adapter}", op, dtype, "--no-invalid",
                         "--examples", "4")
    assert code == 1
    final = [r for r in records if r["verdict"] == "fail" and r["final"]]
    assert final, sorted({(r["verdict"], r["error"]) for r in records})
    assert min(int(np.prod(i["shape"])) for r in final for i in r["case"]["inputs"].values()) <= 16


def test_a_mutation_is_written_back_into_an_expanded_input():
    import torch

    from backends.onnxruntime_backend import _write_back

    t = torch.zeros(3, 1).expand(3, 4)  # an in-place fill of an expanded input: one value per row
    _write_back(t, torch.arange(3.0).reshape(3, 1).expand(3, 4).clone())
    assert torch.equal(t, torch.arange(3.0).reshape(3, 1).expand(3, 4))
    dense = torch.zeros(2, 2)
    _write_back(dense, torch.ones(2, 2))
    assert torch.equal(dense, torch.ones(2, 2))


def test_the_memoised_operator_list_exports_the_same_model_and_is_undone():
    import torch
    import torch.export.exported_program as exported_program
    from torch.onnx import _constants as onnx_constants
    from torch.onnx._internal.exporter import _core

    from backends.onnxruntime_backend import OnnxRuntimeBackend, _cia_ops_memoised

    backend = OnnxRuntimeBackend()
    module, x = torch.nn.LayerNorm(4), (torch.randn(2, 4),)
    memoised = backend._dynamo_export(module, x, ["x"], None).model_proto.SerializeToString()
    before = exported_program._collect_all_valid_cia_ops
    with _cia_ops_memoised():
        assert exported_program._collect_all_valid_cia_ops is not before
        assert exported_program._collect_all_valid_cia_ops() == before()
    assert exported_program._collect_all_valid_cia_ops is before
    plain = _core.export(module, x, {}, registry=backend._registry, input_names=["x"], verbose=False, optimize=True,
                         opset_version=backend.opset or onnx_constants.ONNX_DEFAULT_OPSET)
    assert memoised == plain.model_proto.SerializeToString()


def test_a_bound_methods_module_state_is_an_input_so_a_reused_graph_sees_each_cases_weights(backend, monkeypatch):
    import types

    import torch

    import backends.onnxruntime_backend as ort_backend

    monkeypatch.setattr(ort_backend, "graph_kind", lambda case: "static")
    case = types.SimpleNamespace(call={"target": "log_prob"}, target="AdaptiveLogSoftmaxWithLoss[log_prob]",
                                 dtype="float64", train=True)
    x = torch.randn(3, 1, dtype=torch.float64)
    exported = backend.stats["exported"]
    for seed in (0, 1):  # the second module has other weights: the graph exported for the first must not keep them
        torch.manual_seed(seed)
        m = torch.nn.AdaptiveLogSoftmaxWithLoss(1, 2, [1], div_value=4.0, head_bias=True).double()
        backend._position = 0
        got = backend.call_target(case, m.log_prob, [x], {})
        assert torch.allclose(got, m.log_prob(x), rtol=0, atol=1e-12), seed
    assert backend.stats["exported"] == exported + 1  # one graph, reused


def test_a_bfloat16_result_is_read_back_from_its_bits():
    import onnxruntime as ort
    import torch

    from backends.onnxruntime_backend import _tensor

    bits = torch.tensor([1.5, -2.0, 0.0], dtype=torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    value = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits.reshape(3, 1), 16)
    back = _tensor(value, torch.bfloat16)
    assert back.dtype == torch.bfloat16 and back.shape == (3, 1) and back.flatten().tolist() == [1.5, -2.0, 0.0]


def test_a_dynamic_graph_keeps_the_weights_sizes(monkeypatch):
    import types

    import torch

    import backends.onnxruntime_backend as ort_backend

    backend = ort_backend.OnnxRuntimeBackend()
    monkeypatch.setattr(ort_backend, "graph_kind", lambda case: "dynamic")
    case = types.SimpleNamespace(call={"target": "linear"}, target="Linear", dtype="float32", train=True)
    backend._position = 0
    backend.call_target(case, torch.nn.Linear(3, 2), [torch.randn(4, 3)], {})
    (graph,) = [g for graphs in backend._graphs.values() for g in graphs]
    x, weight, bias = graph.shapes.dims
    assert not isinstance(x[0], int) and list(weight) == [2, 3] and list(bias) == [2]


def test_a_bfloat16_call_with_an_integer_input_runs(backend, monkeypatch):
    import types

    import torch

    import backends.onnxruntime_backend as ort_backend

    monkeypatch.setattr(ort_backend, "graph_kind", lambda case: "static")

    case = types.SimpleNamespace(call={"target": "unpool"}, target="MaxUnpool1d", dtype="bfloat16", train=True)
    backend._position = 0
    x, idx = torch.tensor([[[1.5, -2.0]]], dtype=torch.bfloat16), torch.tensor([[[1, 2]]])
    got = backend.call_target(case, torch.nn.MaxUnpool1d(2), [x, idx], {})
    assert got.dtype == torch.bfloat16 and got.flatten().tolist() == [0.0, 1.5, -2.0, 0.0]


def test_an_in_place_write_into_an_expanded_input_is_torchs_own_error(backend):
    """Exports start from dense clones, so the adapter checks an input with overlapping memory in
    eager torch first: an in-place fill of an expanded tensor raises torch's error, as eager torch
    does, instead of running on ONNX Runtime."""
    import torch

    case = Case(op="Linear", dtype="float32", params={"in_features": 3, "out_features": 2, "bias": False},
                inputs={"input": np.ones((2, 3)), "weight": np.ones((2, 3))})
    with pytest.raises(RuntimeError, match="single memory location") as raised:
        backend.call_target(case, torch.Tensor.normal_, [torch.zeros(3, 1).expand(3, 4)], {})
    assert not isinstance(raised.value, CompileFailure)


def test_a_graph_with_a_dead_size_comparison_is_reused_only_at_its_sizes():
    import operator

    import torch

    from backends.onnxruntime_backend import _guards_sizes

    graph = torch.fx.Graph()
    w = graph.placeholder("w")
    total = graph.call_function(operator.add, (graph.call_function(torch.ops.aten.sym_size.int, (w, 0)),
                                               graph.call_function(torch.ops.aten.sym_size.int, (w, 1))))
    graph.output(graph.call_function(torch.ops.aten.clone.default, (w,)))
    assert not _guards_sizes(graph)
    graph.call_function(operator.eq, (total, 7))  # a guard left unused (xavier_normal_ at (3, 4))
    assert _guards_sizes(graph)


def test_a_call_returning_a_python_number_is_not_answered_from_the_traced_constant(backend, monkeypatch):
    import types

    import torch

    import backends.onnxruntime_backend as ort_backend

    monkeypatch.setattr(ort_backend, "graph_kind", lambda case: "dynamic")
    case = types.SimpleNamespace(call={"target": "float"}, target="calculate_gain", dtype="float64", train=True)
    for value in (0.1875, -3.5):  # the second call finds the first's graph: still its own value
        backend._position = 0
        got = backend.call_target(case, float, [torch.tensor(value, dtype=torch.float64)], {})
        assert got == value and isinstance(got, float)


def test_a_kernel_refusing_the_dtype_when_it_runs_is_unsupported(backend, monkeypatch):
    import types

    import torch

    import backends.onnxruntime_backend as ort_backend

    monkeypatch.setattr(ort_backend, "graph_kind", lambda case: "static")
    case = types.SimpleNamespace(call={"target": "gru"}, target="GRU", dtype="float64", train=False)
    backend._position = 0
    gru = torch.nn.GRU(1, 1).double().eval()
    with pytest.raises(NotImplementedError, match="GRU operator does not support double yet"):
        backend.call_target(case, gru, [torch.zeros(2, 1, 1, dtype=torch.float64)], {})


@pytest.mark.parametrize("shape, strides", [((0, 9), (18, 2)), ((2, 0), (0, 1)), ((0, 0, 0, 1), (1, 3, 1, 1)),
                                            ((0, 5, 9), (405, 27, 1))],
                         ids=["exports", "overlap", "modulo", "sym_stride"])
def test_the_export_stride_replay_agrees_with_torch_onnx_export(shape, strides):
    """backends.export_strides replays torch.export's guards on an example's strides (the known entries of
    in-place activations on empty inputs lean on it): one example of each outcome, against the exporter itself."""
    import torch

    from backends.export_strides import inplace_write_export_failure

    class SiLU(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.silu(x, inplace=True)

    auto = torch.export.Dim.AUTO
    try:
        torch.onnx.export(SiLU(), (torch.empty_strided(shape, strides),), dynamo=True, verbose=False,
                          dynamic_shapes=({d: auto for d in range(len(shape))},))
        outcome = None
    except Exception as exc:
        text = str(exc)
        outcome = next((name for name, sign in (("overlap", "single memory location"), ("modulo", "modulo by zero"),
                                                ("sym_stride", "sym_stride")) if sign in text), text[:300])
    assert inplace_write_export_failure(shape, strides) == outcome


@pytest.mark.parametrize("copied", [False, True], ids=["passed", "copied"])
@pytest.mark.parametrize("shape", [(2, 3, 4), (0, 3, 4), (2, 0, 1), (3, 1, 0)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", [Layout(), Layout("permuted", perm=(2, 0, 1)), Layout("permuted", perm=(1, 2, 0)),
                                    Layout("strided", step=(1, 2, 3)), Layout("expanded", dims=(1,))],
                         ids=lambda layout: layout.kind + "".join(map(str, layout.perm or layout.step or layout.dims)))
def test_example_strides_are_the_strides_of_the_example_the_adapter_exports(layout, shape, copied):
    """backends.export_strides.example_strides (which the export predicates read) against the tensor itself:
    materialised in its layout, copied when the call passes it as a copy (an in-place call), then cloned
    as the adapter clones its examples."""
    import torch

    from backends.export_strides import example_strides
    from backends.torch_call import copy_into_layout, materialise

    values = np.arange(float(np.prod(shape))).reshape(shape)
    described = layout.describe()
    tensor = materialise(values, described, torch.float32, "cpu")
    if copied:
        tensor = copy_into_layout(tensor, described)
    example = tensor.detach().clone()
    call = {"kind": "function", "target": "torch.nn.functional.silu",
            "args": [{"input": "input", "copy": True} if copied else {"input": "input"}]}
    case = Case(op="SiLU", dtype="float32", params={}, inputs={"input": values},
                layouts={"input": layout}, call=call)
    assert example_strides(case, "input") == tuple(example.stride())
