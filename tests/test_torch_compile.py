"""The torch-compile backend: names and availability, compiled-callable reuse, and verdicts — a
compiler that computes wrong values fails, one that cannot compile gets the ``compile`` verdict
(never a pass, never a wrong value), an exception of the traced program stays the call's own error.

Most runs use dynamo's cheap compilers (``aot_eager`` and its testing backends that break ReLU on
purpose); one run goes through inductor's C++ code generation with an injected ReLU bug.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import conformance.specs  # noqa: F401  (declares the catalogue)
from backends.base import COMPILED, Case, CompileFailure
from backends.torch_compile import (
    TorchCompileBackend,
    classify,
    configure,
    cxx_compiler,
    graph_kind,
    parse_spec,
)
from conformance.cli import main
from conformance.registry import BackendNotFound, known_backends, load_backend
from conformance.runner import reference_result
from conformance.spec import all_specs
from reports.records import read_records


def _run(tmp_path, backend: str, ops: str, dtypes: str = "float64", examples: int = 4, *extra: str) -> tuple[int, list]:
    code = main(["run", "--backend", backend, "--ops", ops, "--dtypes", dtypes, "--profile", "ci",
                 "--examples", str(examples), "--quiet", "-j", "1", "--report-dir", str(tmp_path), *extra])
    return code, [r for r in read_records(tmp_path) if r.get("type", "case") == "case"]


# -- names and availability ----------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ("torch-compile", ("cpu", "inductor", None)),
    ("torch-compile:aot_eager", ("cpu", "aot_eager", None)),
    ("torch-compile:inductor:max-autotune-no-cudagraphs", ("cpu", "inductor", "max-autotune-no-cudagraphs")),
    ("torch-compile-cuda:inductor", ("cuda", "inductor", None)),
])
def test_spec_spelling(spec, expected):
    assert parse_spec(spec) == expected


def test_registry_names_and_normalised_backend_names():
    assert "torch-compile" in known_backends() and "torch-compile-cuda" in known_backends()
    assert load_backend("torch-compile").name == "torch-compile"
    assert load_backend("torch-compile:inductor").name == "torch-compile"
    assert load_backend("torch-compile:aot_eager").name == "torch-compile:aot_eager"
    assert load_backend("torch-compile:inductor:max-autotune").name == "torch-compile:inductor:max-autotune"
    with pytest.raises(BackendNotFound):
        load_backend("torch-compile:inductor:default:extra")


def test_availability_names_what_is_missing(monkeypatch):
    assert load_backend("torch-compile:aot_eager").availability() == (True, "")
    ok, reason = load_backend("torch-compile:no_such_compiler").availability()
    assert not ok and "unknown torch.compile backend 'no_such_compiler'" in reason
    ok, reason = load_backend("torch-compile:aot_eager:max-autotune").availability()
    assert not ok and "inductor compiler only" in reason
    ok, reason = load_backend("torch-compile:inductor:fastest").availability()
    assert not ok and "unknown inductor mode" in reason

    # No compiler on the PATH (torch's own config is left alone: its modules hide patched entries).
    import backends.torch_compile as torch_compile

    monkeypatch.setattr(torch_compile.shutil, "which", lambda name: None)
    monkeypatch.delenv("TORCH_INDUCTOR_INSTALL_GXX", raising=False)
    assert cxx_compiler() is None
    ok, reason = load_backend("torch-compile").availability()
    assert not ok and "needs a C++ compiler" in reason and "g++" in reason
    assert load_backend("torch-compile:aot_eager").availability() == (True, "")  # no code generation


def test_compiled_torch_does_not_inherit_eager_torch_known_entries():
    assert load_backend("torch-compile").known_as == ()
    assert ReluPlusOne().known_as == ()  # renamed, unlike a renamed TorchBackend (known as torch-cpu)

    class Inheriting(ReluPlusOne):
        known_as = ("torch-compile",)

    assert Inheriting().known_as == ("torch-compile",)


# -- compiled callables are reused per call signature ----------------------------------------------

def _relu_case(shape: tuple[int, ...], op: str = "ReLU") -> Case:
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) - 3.0
    case = Case(op=op, dtype="float32", params={"inplace": False} if op == "ReLU" else {"dim": 0},
                inputs={"input": x}, differentiable=("input",), cotangent_seed=1)
    return reference_result(all_specs()[op], case)[0]


def test_a_cases_graph_kind_does_not_change_when_the_runner_attaches_its_random_choices():
    from dataclasses import replace

    cases = [_relu_case(shape) for shape in [(3, 4), (5, 4), (6, 7), (7, 9), (8, 5), (9, 3)]]
    for case in cases:  # the runner judges a random case with the backend's choices attached
        assert graph_kind(replace(case, choices={"mask": np.ones(3)})) == graph_kind(case)


def test_consecutive_cases_of_a_signature_share_a_compiled_callable():
    backend = TorchCompileBackend("aot_eager")
    shapes = [(3, 4), (5, 4), (6, 7), (7, 9), (8, 5), (9, 3), (4, 4), (5, 6)]
    by_kind = {"static": [], "dynamic": []}
    for shape in shapes:
        by_kind[graph_kind(_relu_case(shape))].append(shape)
    assert len(by_kind["static"]) >= 2 and len(by_kind["dynamic"]) >= 2  # about half of the cases each
    compiled = []
    for shape in by_kind["dynamic"]:  # one graph for every size of the signature
        got = backend.run(_relu_case(shape))
        assert np.array_equal(got.outputs["output"], np.maximum(_relu_case(shape).inputs["input"], 0))
        compiled.append(got.meta[COMPILED])
    assert backend.stats["compiled"] == 1 and backend.stats["reused"] == len(by_kind["dynamic"]) - 1
    assert compiled == [True] + [False] * (len(by_kind["dynamic"]) - 1)  # meta: only the first compiled
    for shape in by_kind["static"]:  # one graph per size
        backend.run(_relu_case(shape))
    assert backend.stats["compiled"] == 1 + len(by_kind["static"])
    backend.run(_relu_case(by_kind["static"][-1]))  # a replay reuses the graph it ran
    assert backend.stats["compiled"] == 1 + len(by_kind["static"])


def test_a_signature_seen_before_reuses_its_graph_after_other_signatures():
    backend = TorchCompileBackend("aot_eager")
    case = _relu_case((4, 5))
    first = backend.run(case)
    backend.run(_relu_case((3,), op="Softmax"))  # another signature, another trampoline
    again = backend.run(case)
    assert all(np.array_equal(first.tensors()[k], again.tensors()[k], equal_nan=True) for k in first.tensors())
    assert backend.stats == {"compiled": 2, "reused": 1, "consecutive": 0}


def test_dynamo_is_reset_after_a_bounded_number_of_signatures(monkeypatch):
    import backends.torch_compile as torch_compile

    monkeypatch.setattr(torch_compile, "RESET_AFTER", 2)
    monkeypatch.setattr(torch_compile, "LIVE_SIGNATURES", 2)
    backend = TorchCompileBackend("aot_eager")
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    for shape in [(2,), (2, 3), (2, 3, 4), (2, 3, 4, 5)]:  # four ranks: four signatures
        backend.run(_relu_case(shape))
    assert len(backend._live) <= 2 and resets


@pytest.mark.parametrize(("spec", "options"), [
    ("torch-compile:cache=/tmp/x", {"cache": "/tmp/x"}),
    ("torch-compile:inductor:max-autotune:cache=/tmp/x", {"cache": "/tmp/x"}),
    ("torch-compile", {}),
])
def test_the_compile_cache_is_an_option_of_the_name(spec, options):
    from backends.torch_compile import spec_options

    assert spec_options(spec) == options
    assert parse_spec(spec)[1] == "inductor"
    backend = load_backend(spec)
    assert backend.cache_dir == options.get("cache") and backend.name.startswith("torch-compile")
    with pytest.raises(BackendNotFound, match="unknown option"):
        load_backend("torch-compile:speed=fast")


def test_the_compile_cache_directory_is_where_inductor_caches(tmp_path, monkeypatch):
    from backends.torch_compile import CACHE_ENV, cache_directory

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "from-env"))
    assert TorchCompileBackend("aot_eager").cache_dir == str(tmp_path / "from-env")
    applied = configure(str(tmp_path / "cache"))
    assert applied["fx_graph_cache"] and applied["autograd_cache"]
    assert cache_directory() == str(tmp_path / "cache")


def test_a_kernel_build_killed_half_way_is_dropped_from_the_cache(tmp_path):
    """A killed build leaves its truncated shared object and its build directory: an old one goes
    when the cache is opened (inductor would load the stub in every later run), a recent one (a
    build still running) and a finished kernel stay."""
    import os

    from backends.torch_compile import STALE_BUILD_S, drop_interrupted_builds

    cache = tmp_path / "cache"
    (cache / "oe").mkdir(parents=True)
    kernels = {name: cache / "oe" / f"c{name}.main.so" for name in ("killed", "running", "finished")}
    for name, path in kernels.items():
        path.write_bytes(b"" if name == "killed" else b"\x7fELF")
    for name in ("killed", "running"):
        (cache / "oe" / f"c{name}.main_CxxBuild").mkdir()
    old = os.stat(cache / "oe").st_mtime - 2 * STALE_BUILD_S
    os.utime(cache / "oe" / "ckilled.main_CxxBuild", (old, old))
    configure(str(cache))
    assert not kernels["killed"].exists() and not (cache / "oe" / "ckilled.main_CxxBuild").exists()
    assert kernels["running"].exists() and (cache / "oe" / "crunning.main_CxxBuild").exists()
    assert kernels["finished"].exists()
    assert drop_interrupted_builds(str(cache)) == []


# -- verdicts ------------------------------------------------------------------------------------------

def test_aot_eager_conforms_valid_and_invalid_cases(tmp_path):
    code, records = _run(tmp_path, "torch-compile:aot_eager", "ReLU,Linear,MSELoss")
    assert code == 0
    assert {r["verdict"] for r in records} == {"pass"}
    assert {r["backend"] for r in records} == {"torch-compile:aot_eager"}
    assert any(r["tier"] == "invalid" for r in records)  # rejected by the compiled call, as by eager


def relu_plus_one(gm: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
    """A compiler with a bug: every out-of-place relu of the captured graph computes x + 1."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in (torch.relu, torch.nn.functional.relu) \
                and not node.kwargs.get("inplace"):
            node.target, node.args, node.kwargs = torch.add, (node.args[0], 1), {}
    gm.recompile()
    return gm


class ReluPlusOne(TorchCompileBackend):
    """torch.compile with the buggy compiler above (a backend callable, run as module:Class)."""

    name = "torch-compile-relu-plus-one"

    def __init__(self):
        super().__init__(relu_plus_one)


def test_wrong_values_of_a_compiler_are_failures(tmp_path):
    code, records = _run(tmp_path, f"{__name__}:ReluPlusOne", "ReLU")
    assert code == 1
    assert any(r["verdict"] == "fail" and r["final"] for r in records)
    assert {r["backend"] for r in records} == {"torch-compile-relu-plus-one"}


def refuses_relu(gm: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
    """A compiler that fails on every out-of-place relu of the captured graph."""
    if any(node.op == "call_function" and node.target in (torch.relu, torch.nn.functional.relu)
           and not node.kwargs.get("inplace") for node in gm.graph.nodes):
        raise RuntimeError("no lowering for relu")
    return gm


class RefusesRelu(TorchCompileBackend):
    name = "torch-compile-refuses-relu"

    def __init__(self):
        super().__init__(refuses_relu)


def test_a_compiler_error_is_the_compile_verdict(tmp_path):
    code, records = _run(tmp_path, f"{__name__}:RefusesRelu", "ReLU", "float64", 6)
    assert code == 1
    compiled = [r for r in records if r["verdict"] == "compile"]
    assert compiled and all(r["error"].startswith("CompileFailure: compiler error") for r in compiled)
    assert all("no lowering for relu" in r["error"] for r in compiled)
    # inplace=True calls relu_, which this compiler accepts: those cases pass; no other case does
    assert all(r["case"]["params"]["inplace"] for r in records if r["verdict"] == "pass")


def test_a_graph_break_is_the_compile_verdict():
    backend = TorchCompileBackend("aot_eager")

    def breaks(x):
        y = torch.relu(x)
        torch._dynamo.graph_break()
        return y

    class Breaking(TorchCompileBackend):
        def call_target(self, case, fn, args, kwargs):
            return super().call_target(case, breaks, args, kwargs)

    backend = Breaking("aot_eager")
    with pytest.raises(CompileFailure, match="^graph break"):
        backend.run(_relu_case((3,)))


def _raised(fn, *args):
    configure()
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - the exception is what is tested
        return exc
    raise AssertionError("nothing raised")


def test_exceptions_are_classified():
    torch._dynamo.reset()
    x = torch.ones(3)

    def rejects(t):
        raise ValueError("a documented rule is broken")

    observed = classify(_raised(torch.compile(rejects, backend="aot_eager", fullgraph=True), x))
    assert type(observed) is RuntimeError and "ValueError" in str(observed)  # the program's own error

    mismatch = _raised(torch.compile(torch.nn.functional.linear, backend="aot_eager", fullgraph=True),
                       torch.ones(2, 3), torch.ones(4, 5))
    assert classify(mismatch) is mismatch  # an argument check failed on fake tensors: the call's own error

    # eager raises NotImplementedError for a pad size the input's rank does not take; dynamo reports it
    # as Unsupported ("... when running FX node"): still the call's own error, not a compile failure
    pad = classify(_raised(torch.compile(torch.nn.ReplicationPad1d((0, 0)), backend="aot_eager", fullgraph=True),
                           torch.ones(2)))
    assert type(pad) is NotImplementedError and "Padding size 2" in str(pad)
    size = classify(_raised(torch.compile(lambda x: torch.nn.functional.interpolate(x, size=4.0, mode="bicubic"),
                                          backend="aot_eager", fullgraph=True), torch.zeros(1, 2, 2, 2)))
    assert type(size) is TypeError and "invalid combination of arguments" in str(size)  # eager's TypeError
    # a dimension name on an unnamed tensor: the parser's "argument 'dim' (position 1) must be int, not str"
    named = classify(_raised(torch.compile(torch.nn.Unflatten("C", (2, 3)), backend="aot_eager", fullgraph=True),
                             torch.ones(2, 6, 3)))
    assert type(named) is TypeError and "must be int, not str" in str(named)
    # AOTAutograd runs affine_grid's C++ backward while compiling; it has no float16 kernel for a spatial size of 1
    # (at::tensor), eagerly too: unsupported by the backend, as on torch-cpu, not a compile failure
    theta = torch.eye(2, 3, dtype=torch.float16).unsqueeze(0).requires_grad_()
    grid = torch.compile(lambda t: torch.nn.functional.affine_grid(t, (1, 1, 1, 2), align_corners=False),
                         backend="aot_eager", fullgraph=True)
    half = classify(_raised(grid, theta))
    assert type(half) is NotImplementedError and "not implemented for 'Half'" in str(half)
    missing = torch._dynamo.exc.Unsupported("running FX node")
    missing.__cause__ = NotImplementedError("aten::foo: no fake impl or Meta kernel registered")
    assert isinstance(classify(missing), CompileFailure)  # the compiler's limit
    # dynamo cannot return ModuleList.__iter__'s iterator ("Reconstruction failure", caused by a bare
    # NotImplementedError()): its own limit, not the call refusing its arguments
    modules = torch.nn.ModuleList([torch.nn.PReLU()])
    iterated = classify(_raised(torch.compile(modules.__iter__, backend="aot_eager", fullgraph=True)))
    assert isinstance(iterated, CompileFailure) and str(iterated).startswith("graph break")

    static = torch.compile(lambda t: t * 2, backend="aot_eager", fullgraph=True, dynamic=False)
    for n in range(2, 12):
        try:
            static(torch.ones(n))
        except Exception as exc:  # noqa: BLE001
            failure = classify(exc)
            break
    else:
        raise AssertionError("the recompile limit was never hit")
    assert isinstance(failure, CompileFailure) and str(failure).startswith("recompile limit")
    torch._dynamo.reset()


def test_a_long_compiler_error_keeps_its_diagnostics():
    # g++'s command line can fill MESSAGE_LIMIT before the error it reports: the cut message keeps it
    from torch._inductor.exc import CppCompileError

    error = CppCompileError(["g++", *["-I/some/long/include/path"] * 200, "-o", "k.so"],
                            "/tmp/k.cpp:12:18: error: conflicting declaration 'auto acc_vec'\n"
                            "/tmp/k.cpp:9:18: note: previous declaration")
    message = str(classify(error))
    assert message.startswith("compiler error: CppCompileError")
    assert "conflicting declaration 'auto acc_vec'" in message and len(message) <= 2100


def _asserts_while_compiling(gm, example_inputs):
    raise AssertionError("an invariant of the compiler")


def _asserts_while_running(gm, example_inputs):
    def run(args):
        raise AssertionError("a check of the compiled code")

    run._boxed_call = True
    return run


def _backward(compiler):
    """Compile 2x with a no-op forward compiler and ``compiler`` for the backward, which AOTAutograd
    calls lazily, at the first backward pass (outside dynamo, so nothing wraps what it raises)."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._dynamo.backends.debugging import boxed_nop

    torch._dynamo.reset()
    y = torch.compile(lambda t: (2 * t).sum(), backend=aot_autograd(fw_compiler=boxed_nop, bw_compiler=compiler),
                      fullgraph=True)(torch.ones(3, requires_grad=True))
    y.backward()


def test_assertions_are_compiler_errors_only_while_compiling():
    failure = classify(_raised(_backward, _asserts_while_compiling))
    assert isinstance(failure, CompileFailure) and "compiler error: AssertionError" in str(failure)
    running = _raised(_backward, _asserts_while_running)
    assert classify(running) is running  # raised by the compiled graph: the call's own error
    torch._dynamo.reset()


class InductorReluBug(TorchCompileBackend):
    """Inductor whose C++ code generation computes relu(x) as x + 1 (torch's bug-injection switch)."""

    name = "torch-compile-relu-bug"

    def prepare(self):
        super().prepare()
        import torch._inductor.config as inductor_config

        inductor_config.cpp.inject_relu_bug_TESTING_ONLY = "accuracy"


@pytest.mark.skipif(cxx_compiler() is None, reason="inductor on CPU needs a C++ compiler")
def test_a_code_generation_bug_of_inductor_is_caught_in_the_isolated_worker(tmp_path):
    code, records = _run(tmp_path, f"{__name__}:InductorReluBug", "ReLU", "float32", 2, "--timeout", "600")
    assert code == 1
    assert any(r["verdict"] == "fail" and r["final"] for r in records), [r["error"] for r in records]


@pytest.mark.parametrize(("adapter", "op", "dtype"), [("CompiledGeluTanh", "GELU", "float64"),
                                                      ("CompiledNaiveLogSoftmax", "LogSoftmax", "float32")])
def test_wrong_compilers_are_caught_and_shrunk(tmp_path, adapter, op, dtype):
    code, records = _run(tmp_path, f"tests.wrong_backends.compiled:{adapter}", op, dtype, 4, "--no-invalid")
    assert code == 1
    final = [r for r in records if r["verdict"] == "fail" and r["final"]]
    assert final, sorted({(r["verdict"], r["error"]) for r in records})
    assert min(int(np.prod(i["shape"])) for r in final for i in r["case"]["inputs"].values()) <= 16


def test_sdpa_kernel_scaffolding_runs_as_plain_python_and_the_decorated_function_is_compiled(tmp_path):
    # sdpa_kernel(SDPBackend(k))(F.scaled_dot_product_attention) is built by scaffold nodes, outside the
    # backend; the adapter compiles f for operator.call(f, *args). Before, dynamo was handed SDPBackend(1).
    code, records = _run(tmp_path, "torch-compile:aot_eager", "scaled_dot_product_attention[flash]", "float64", 4)
    assert code == 0, sorted({(r["verdict"], r.get("error")) for r in records})
    assert any(r["verdict"] == "pass" and r["tier"] != "invalid" for r in records)


@pytest.mark.parametrize(("rule", "fallback"), [("rand", True), ("bernoulli", True), ("nonzero", False)])
def test_seed_replayed_random_choices_run_on_eager_random_numbers(rule, fallback):
    # Inductor's own generator draws other samples than eager's: a choice replayed from the call's seed
    # (a layer's uniform samples, sdpa's dropout masks) needs fallback_random; a mask read back from the
    # output does not, and those cases keep inductor's generator under test.
    import torch._inductor.config as inductor_config

    case = Case(op="Dropout", dtype="float32", params={}, inputs={},
                call={"random": {"mask": {"rule": rule, "of": "output"}}})
    with TorchCompileBackend("inductor")._case_config(case):
        assert inductor_config.fallback_random is fallback
    assert inductor_config.fallback_random is False


def test_the_guard_latency_profile_is_skipped_and_guards_still_decide_reuse(monkeypatch):
    import torch._dynamo.guards as guards

    from backends.torch_compile import skip_guard_latency_profile

    assert configure()["no_guard_latency_profile"] == skip_guard_latency_profile() is True
    assert guards.profile_guard_manager() == 0.0
    profiled = []  # dynamo looks the function up in its module at every guard build: the replacement takes effect
    monkeypatch.setattr(guards, "profile_guard_manager", lambda *a, **k: profiled.append(1) or 0.0)
    torch._dynamo.reset()
    calls = []

    def count(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        calls.append(1)
        return gm.forward

    f = torch.compile(lambda x: x * 2, backend=count, fullgraph=True, dynamic=False)
    f(torch.ones(2)), f(torch.ones(2)), f(torch.ones(3))  # the guards reuse one graph, then fail on the size
    assert len(calls) == 2 and len(profiled) == 2
