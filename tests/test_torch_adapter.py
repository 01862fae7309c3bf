"""The torch adapter's contract details that a GPU run or an older torch release exposed: an API
that the release lacks is unsupported (never a discrepancy, never passed), the adapter is known by
its name at torch's release (entries for one release), and a seeded generator is made on the
call's device."""

from __future__ import annotations

import torch

from backends.torch_backend import TorchBackend, _absent
from backends.torch_run import run_call
from conformance.cli import main
from reports.records import read_records


class NoBiasArgument(TorchBackend):
    """An older torch: the normalisation classes take no ``bias`` argument."""

    name = "torch-without-bias"

    def build_module(self, case, cls, kwargs):
        if "bias" in kwargs:
            raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument 'bias'")
        return super().build_module(case, cls, kwargs)


def test_an_api_the_release_lacks_is_unsupported(tmp_path):
    code = main(["run", "--backend", "tests.test_torch_adapter:NoBiasArgument", "--ops", "GroupNorm",
                 "--dtypes", "float64", "--examples", "4", "--no-invalid", "--report-dir", str(tmp_path), "--quiet"])
    records = [r for r in read_records(tmp_path) if r.get("case")]
    with_bias = {r["verdict"] for r in records if "bias" in r["call"]["init"]}
    assert code == 0 and with_bias == {"unsupported"}, with_bias


def test_only_absent_apis_are_unsupported():
    assert _absent(TypeError("GroupNorm.__init__() got an unexpected keyword argument 'bias'"))
    assert _absent(AttributeError("module 'torch.nn' has no attribute 'LinearCrossEntropyLoss'"))
    assert _absent(RuntimeError("No available kernel. Aborting execution."))
    # a wrong argument in a call, a missing attribute of an object, any other error: still judged
    assert not _absent(TypeError("linear() got an unexpected keyword argument 'bias2'"))
    assert not _absent(AttributeError("'Tensor' object has no attribute 'foo'"))
    assert not _absent(RuntimeError("size mismatch"))


def test_the_adapter_is_known_at_its_release():
    release = torch.__version__.split("+")[0]
    assert f"torch-cpu@{release}" in TorchBackend("cpu").known_as
    renamed = NoBiasArgument("cpu")
    assert {"torch-cpu", f"torch-cpu@{release}", f"torch-without-bias@{release}"} <= set(renamed.known_as)


def test_a_generator_node_is_made_on_the_calls_device():
    call = {"kind": "function", "target": "builtins.tuple", "args": [[{"call": {
        "target": "torch.Generator", "args": [], "kwargs": {"device": {"device": None}}}}]],
        "kwargs": {}, "outputs": None}
    seen = []
    run_call(call, {}, dtype="float64", device="cpu", types={}, layouts={}, requires_grad=(), cotangents={},
             invoke=lambda fn, args, kwargs: seen.append(fn(*args, **kwargs)))
    assert seen and seen[0].device == torch.device("cpu")


def test_a_scaffolding_call_runs_as_plain_python_never_through_the_backend():
    """A plain call node (``scaffold_node``: a functools.partial building an argument) is not handed
    to the backend's invoke, which compiles or exports what it runs; an ordinary call node is."""
    from conformance.spec import call_node, scaffold_node

    def call_of(node: dict) -> dict:
        return {"kind": "function", "target": "builtins.callable", "args": [node], "kwargs": {}, "outputs": "out"}

    invoked = []

    def invoke(fn, args, kwargs):
        invoked.append(getattr(fn, "__name__", str(fn)))
        return fn(*args, **kwargs)

    partial = scaffold_node("functools.partial", scaffold_node("pkgutil.resolve_name", {"literal": "math.sqrt"}))
    run_call(call_of(partial), {}, dtype="float64", invoke=invoke)
    assert invoked == ["callable"]  # the call under test only
    invoked.clear()
    run_call(call_of(call_node("functools.partial", {"literal": print})), {}, dtype="float64", invoke=invoke)
    assert invoked == ["partial", "callable"]
