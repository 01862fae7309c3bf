"""Runner semantics: known discrepancies (strict), the reference backend, invalid cases."""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conformance.compare import compare_results
from conformance.driver import RunSettings, Target, run_serial
from conformance.known import KnownDiscrepancy, load_known
from conformance.reference_backend import ReferenceBackend
from conformance.registry import load_backend
from conformance.spec import all_specs, select_specs
from reports.records import RecordWriter, read_records


def _run(tmp_path: Path, backend, ops, known=(), dtypes=("float32",), examples=20) -> tuple[Any, list[dict]]:
    """Run the ops on ``backend`` in this process; (totals with ``discrepancies``, records)."""
    settings = RunSettings(report_dir=str(tmp_path), profile="ci", examples=examples, isolate=False)
    targets = [Target(s.id, backend.name, d) for s in select_specs(list(ops)) for d in dtypes]
    with RecordWriter(tmp_path) as writer:
        outcomes = run_serial(settings, targets, writer, {backend.name: backend}, known=list(known))
    totals = SimpleNamespace(discrepancies=sum(o.discrepancies for o in outcomes), cases=sum(o.cases for o in outcomes))
    return totals, list(read_records(tmp_path))


def test_known_discrepancy_turns_failures_into_known(tmp_path):
    entry = KnownDiscrepancy(id="relu-kink", op="ReLU", backend="wrong-*", reason="test", when="dtype != 'float16'")
    backend = load_backend("tests.wrong_backends.generic:ReluGradAtZero")
    runner, records = _run(tmp_path, backend, ["ReLU"], [entry], dtypes=("float32", "float16"))
    by_dtype = {d: {r["verdict"] for r in records if r["dtype"] == d} for d in ("float32", "float16")}
    assert "known" in by_dtype["float32"] and "fail" not in by_dtype["float32"]
    assert "fail" in by_dtype["float16"]  # the predicate excludes float16: still a discrepancy


def test_strict_known_entry_that_never_fails_is_an_unexpected_pass(tmp_path):
    entry = KnownDiscrepancy(id="bogus", op="ReLU", backend="torch-cpu", reason="no such bug")
    runner, records = _run(tmp_path, load_backend("torch-cpu"), ["ReLU"], [entry], examples=5)
    xpass = [r for r in records if r["verdict"] == "xpass"]
    assert len(xpass) == 1 and xpass[0]["final"] and "bogus" in xpass[0]["error"]
    assert runner.discrepancies == 1


def test_a_tensor_entry_is_not_held_to_show_where_the_call_failed(tmp_path):
    """Where every call raises (explained by a call entry), no tensor is compared: a strict entry
    naming only tensor symptoms cannot show there, so it is no unexpected pass; a strict call entry
    that matched and never showed still is."""
    raising = KnownDiscrepancy(id="raises", op="ReLU", backend="always-raises", reason="r", symptom="raises")
    values = KnownDiscrepancy(id="values", op="ReLU", backend="always-raises", reason="r", symptom="value")
    crash = KnownDiscrepancy(id="crash", op="ReLU", backend="always-raises", reason="r", symptom="crash")
    runner, records = _run(tmp_path, load_backend("tests.wrong_backends.generic:Raises"), ["ReLU"],
                           [raising, values, crash], examples=5)
    xpass = {r["known"]["id"] for r in records if r["verdict"] == "xpass"}
    assert xpass == {"crash"}
    assert "known" in {r["verdict"] for r in records} and "fail" not in {r["verdict"] for r in records}


def test_only_a_compile_entry_is_held_to_show_where_the_call_did_not_compile(tmp_path):
    """A case that did not compile never ran its call: a strict entry naming a raise (say eager's
    argument check, seen through a compiler) cannot show there, so it is no unexpected pass; a
    compile entry that matched and never showed (another message) still is."""
    failing = KnownDiscrepancy(id="compile", op="ReLU", backend="never-compiles", reason="r", symptom="compile")
    other = KnownDiscrepancy(id="other", op="ReLU", backend="never-compiles", reason="r", symptom="compile",
                             message="graph break")
    raising = KnownDiscrepancy(id="raises", op="ReLU", backend="never-compiles", reason="r",
                               symptom=["raises", "value"])
    runner, records = _run(tmp_path, load_backend("tests.wrong_backends.generic:NeverCompiles"), ["ReLU"],
                           [failing, other, raising], examples=5)
    assert {r["known"]["id"] for r in records if r["verdict"] == "xpass"} == {"other"}
    assert {r["verdict"] for r in records} <= {"known", "xpass"}


def test_non_strict_known_entry_that_passes_is_a_pass(tmp_path):
    entry = KnownDiscrepancy(id="flaky", op="ReLU", backend="torch-cpu", reason="sometimes", strict=False)
    runner, records = _run(tmp_path, load_backend("torch-cpu"), ["ReLU"], [entry], examples=5)
    assert {r["verdict"] for r in records} == {"pass"} and runner.discrepancies == 0


def test_an_entry_with_a_message_explains_only_call_failures_whose_error_matches():
    entry = KnownDiscrepancy(id="export", op="ReLU", backend="*", reason="r", symptom="compile",
                             message=r"^export: .*Generator")
    assert entry.explains_call("compile", "export: ConversionError: expected Optional[Generator]")
    assert not entry.explains_call("compile", "export: ConversionError: unsupported operator")
    assert not entry.explains_call("raises", "export: ... Generator")  # the symptom still has to be its own
    assert KnownDiscrepancy(id="any", op="ReLU", backend="*", reason="r").explains_call("compile", "anything")
    with pytest.raises(ValueError, match="regular expression"):
        KnownDiscrepancy(id="bad", op="ReLU", backend="*", reason="r", message="(")


def spatial_dims_are_two(case, spec) -> bool:  # a predicate reading the declaration's facts
    return spec.dims == 2


def test_a_predicate_naming_spec_reads_the_declarations_facts_not_its_name():
    from backends.base import Case

    entry = KnownDiscrepancy(id="dims", op="*Pool*", backend="*", reason="r",
                             predicate="tests.test_runner:spatial_dims_are_two")
    specs = all_specs()
    case = Case(op="MaxPool2d", dtype="float32", params={}, inputs={})
    assert entry.matches(specs["MaxPool2d"], "torch-cpu", case)
    assert not entry.matches(specs["MaxPool3d"], "torch-cpu", replace(case, op="MaxPool3d"))
    plain = KnownDiscrepancy(id="plain", op="ReLU", backend="*", reason="r",
                             predicate="backends.onnxruntime_known:input_has_nan")  # takes the case alone
    assert plain.matches(specs["ReLU"], "torch-cpu", Case(op="ReLU", dtype="float32", params={},
                                                           inputs={"input": np.array([np.nan])}))


def test_a_model_naming_spec_reads_the_declarations_dims():
    from backends.base import Case
    from conformance.known import call_predicate, load_known

    [entry] = [e for e in load_known() if e.model.endswith(":circular_pad_wrap_model")]
    model = import_module(entry.model.partition(":")[0]).circular_pad_wrap_model
    x = np.arange(6.0).reshape(1, 2, 3)
    case = Case(op="CircularPad1d", dtype="float32", params={"padding": [-1, 3]}, inputs={"input": x})
    predicted = call_predicate(model, case, all_specs()["CircularPad1d"], None, None)["output"]
    np.testing.assert_array_equal(predicted, np.pad(x[..., 1:], [(0, 0), (0, 0), (0, 3)], mode="wrap"))
    # read as a 2-d pad (the declaration's dims, not the case's op name) the two pads are unreadable: no padding
    assert call_predicate(model, case, all_specs()["CircularPad2d"], None, None)["output"].shape == x.shape


def test_the_backends_scalar_meta_is_recorded():
    from backends.base import Case
    from conformance.runner import Runner

    class Described(ReferenceBackend):
        name = "described"

        def run(self, case):
            result = super().run(case)
            result.meta.update(graph="static", graphs_reused=1, ignored={"not": "a scalar"})
            return result

    case = Case(op="ReLU", dtype="float32", params={"inplace": False},
                inputs={"input": np.array([[1.0, -2.0]])}, differentiable=("input",))
    record = Runner(RunSettings(report_dir="."), writer=None).evaluate(Described(), all_specs()["ReLU"], case).record
    assert record["verdict"] == "pass", record
    assert record["backend_meta"]["graph"] == "static" and record["backend_meta"]["graphs_reused"] == 1
    assert "ignored" not in record["backend_meta"]


def test_a_known_failure_of_the_call_keeps_what_the_call_did():
    from backends.base import Case, CompileFailure
    from conformance.runner import Runner

    class Refuses(ReferenceBackend):
        name = "refuses"

        def run(self, case):
            raise CompileFailure("export: no translation")

    case = Case(op="ReLU", dtype="float32", params={"inplace": False},
                inputs={"input": np.array([[1.0, -2.0]])}, differentiable=("input",))
    entry = KnownDiscrepancy(id="no-export", op="ReLU", backend="refuses", reason="r", symptom="compile")
    record = Runner(RunSettings(report_dir="."), writer=None, known=[entry]).evaluate(
        Refuses(), all_specs()["ReLU"], case).record
    assert record["verdict"] == "known" and record["known_symptom"] == "compile", record


@pytest.mark.parametrize("compiled", [True, False])
def test_a_case_run_on_a_reused_graph_does_not_count_against_a_compile_entry(compiled):
    """A strict entry explaining only compile failures is an unexpected pass once a case that compiled
    its own graph passes; a case run wholly on graphs compiled for earlier cases (meta COMPILED False)
    could not have shown the failure, so it does not count."""
    from backends.base import COMPILED, Case
    from conformance.runner import Runner

    class Reuses(ReferenceBackend):
        name = "reuses"

        def run(self, case):
            result = super().run(case)
            result.meta[COMPILED] = compiled
            return result

    case = Case(op="ReLU", dtype="float32", params={"inplace": False},
                inputs={"input": np.array([[1.0, -2.0]])}, differentiable=("input",))
    entry = KnownDiscrepancy(id="no-export", op="ReLU", backend="reuses", reason="r", symptom="compile")
    emitted: list[dict[str, Any]] = []
    runner = Runner(RunSettings(report_dir="."), writer=None, known=[entry])
    runner._emit = emitted.append  # type: ignore[method-assign]
    spec = all_specs()["ReLU"]
    assert runner.evaluate(Reuses(), spec, case).record["verdict"] == "pass"
    runner._check_known(Reuses(), spec, "float32")
    assert [r["verdict"] for r in emitted] == (["xpass"] if compiled else [])


def test_known_discrepancy_file_parses():
    for entry in load_known():
        assert entry.id and entry.reason and entry.op


@pytest.mark.parametrize("spec", sorted(all_specs()), ids=str)
def test_reference_backend_conforms_to_itself(tmp_path, spec):
    """The oracle as a backend (rounded to each dtype) must pass everywhere: this validates the
    harness, the rounding model and the tolerance model together."""
    runner, records = _run(tmp_path, ReferenceBackend(), [spec], dtypes=("float64", "bfloat16"), examples=6)
    bad = [r for r in records if r["verdict"] != "pass"]
    assert not bad, bad[0]


def test_known_predicates_see_their_scope_inside_comprehensions():
    import numpy as np

    from backends.base import Case, Layout

    case = Case(op="Conv2d", dtype="bfloat16", params={"stride": 2},
                inputs={"input": np.zeros((1, 2, 1, 1)), "weight": np.zeros((3, 2, 3, 3))},
                layouts={"weight": Layout("permuted", perm=(0, 2, 3, 1))})
    entry = KnownDiscrepancy(id="x", op="Conv*", backend="*", reason="r",
                             when="all(s == 1 for s in shapes['input'][2:]) and "
                                  "any(layouts[k] == 'permuted' for k in ('input', 'weight'))")
    assert entry.matches(all_specs()["Conv2d"], "torch-cpu", case)
    assert not entry.matches(all_specs()["Linear"], "torch-cpu", case)


def test_known_discrepancy_file_parses_with_unique_ids_and_loadable_predicates():
    import importlib

    entries = load_known()
    assert len({e.id for e in entries}) == len(entries)
    for entry in entries:
        assert entry.reason and entry.link and "Repro" in entry.reason, entry.id
        if entry.predicate:
            module, _, name = entry.predicate.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), entry.id
        if entry.when:
            compile(entry.when, entry.id, "eval")


def test_non_strict_entries_say_why_and_stay_within_a_tenth():
    entries = load_known()
    loose = [e for e in entries if not e.strict]
    assert all(e.why_not_strict for e in loose), [e.id for e in loose if not e.why_not_strict]
    assert len(loose) <= len(entries) / 10, f"{len(loose)} of {len(entries)} entries are non-strict"


def test_known_entry_globs():
    """Wildcards and digit classes match; other brackets name variants literally."""
    from conformance.known import _glob

    assert _glob("Conv[23]d", "Conv2d") and _glob("Conv[23]d", "Conv3d") and not _glob("Conv[23]d", "Conv1d")
    assert not _glob("Conv[123]d", "ConvTranspose2d") and _glob("Conv*d", "ConvTranspose2d")
    assert _glob("LSTM[packed]", "LSTM[packed]") and not _glob("LSTM[packed]", "LSTMp")
    assert _glob("LSTM*", "LSTM[packed]") and _glob("torch-*", "torch-cpu") and not _glob("a.b", "axb")


def test_known_entry_backend_list_scopes_to_one_compiler(tmp_path):
    """A list of backend globs matches when any glob matches any of the backend's names: inductor in
    any mode, not aot_eager; a malformed list is a loading error naming the entry."""
    from conformance.known import load_file

    spec = all_specs()["ReLU"]
    entry = KnownDiscrepancy(id="inductor-only", op="ReLU", backend=["torch-compile", "torch-compile:inductor:*"],
                             reason="test")
    case = SimpleNamespace(dtype="float32", mode="vjp")  # no when/predicate: scope by names only
    assert entry.backends == ("torch-compile", "torch-compile:inductor:*")
    for name, expected in [("torch-compile", True), ("torch-compile:inductor:max-autotune", True),
                           ("torch-compile:aot_eager", False), ("torch-compile-cuda", False)]:
        assert entry.matches(spec, name, case) is expected, name
    assert entry.matches(spec, ("other", "torch-compile"), case)
    one = KnownDiscrepancy(id="one", op="ReLU", backend="torch-compile*", reason="test")
    assert one.backend == "torch-compile*" and one.backends == ("torch-compile*",)
    path = tmp_path / "bad.toml"
    path.write_text('[[discrepancy]]\nid = "empty"\nop = "ReLU"\nbackend = []\nreason = "r"\n')
    with pytest.raises(ValueError, match="empty.*backend is a glob"):
        load_file(path)


def test_every_known_entry_names_a_declared_layer():
    """An entry whose op glob (any of its op globs) matches no declaration would silently never apply."""
    from conformance.known import _glob

    specs = all_specs().values()
    orphans = [e.id for e in load_known()
               if not all(any(_glob(op, s.id) or _glob(op, s.name) for s in specs) for op in e.ops)]
    assert not orphans


def _maxpool_empty_window_case() -> tuple[Any, Any, Any]:
    """MaxPool1d with a window wholly in the padding (the maxpool empty-window entry's case), its
    reference with gradients."""
    from backends.base import Case

    spec = all_specs()["MaxPool1d"]
    case = Case(op="MaxPool1d", dtype="float64", tier="exact", differentiable=("input",),
                params={"kernel_size": 2, "padding": 1, "dilation": 2, "return_indices": True},
                inputs={"input": np.array([[5.0], [7.0]])}, cotangents={"output": np.array([[1.0], [10.0]])})
    reference, pullback = spec.run_reference(case)
    reference.grads = spec.pull(pullback, case, case.cotangents)
    return spec, case, reference


def test_known_entry_with_a_model_explains_only_the_value_it_predicts():
    """The maxpool entry's model predicts torch's wrong gradient (an empty window's cotangent at
    the index torch returned): that value is explained, the same tensor wrong otherwise is not."""
    from backends.base import Result
    from conformance.known import explain, load_known, matching, modelled_tensors

    spec, case, reference = _maxpool_empty_window_case()
    entries = matching(load_known(), spec, "torch-cpu", case)
    assert [e.id for e in entries] == ["maxpool-empty-window-out-of-window-index"]
    for grad, explained in (([[0.0], [1.0]], True), ([[0.0], [2.0]], False), ([[1.0], [0.0]], False)):
        got = Result(outputs={"output": np.full((2, 1), -np.inf), "indices": np.array([[1], [1]])},
                     grads={"input": np.array(grad)})
        failing = [c.to_dict() for c in compare_results(spec, case, reference, got) if not c.ok]
        assert [c["tensor"] for c in failing] == ["grad.input"]
        modelled = modelled_tensors(entries, spec, case, reference, got)
        assert (explain(entries, None, failing, modelled) is not None) == explained, grad


def test_known_model_prediction_of_the_wrong_shape_costs_only_that_tensor(monkeypatch):
    """A model whose prediction for one tensor cannot be compared (another shape than the magnitude
    it is scaled by) still explains the tensors it predicts right."""
    from backends.base import Result
    from conformance import known
    from conformance.known import KnownDiscrepancy, modelled_tensors

    spec, case, reference = _maxpool_empty_window_case()
    got = Result(outputs={"output": np.full((2, 1), -np.inf), "indices": np.array([[1], [1]])},
                 grads={"input": np.array([[0.0], [1.0]])})
    monkeypatch.setattr(known, "_load_predicate", lambda _: lambda case, reference, got: {
        "grad.input": np.array([[0.0], [1.0]]), "output": np.zeros((3, 3))})
    entry = KnownDiscrepancy(id="model", op="MaxPool1d", backend="*", reason="test", model="m:f")
    assert modelled_tensors([entry], spec, case, reference, got) == {"model": frozenset({"grad.input"})}


def test_known_model_judges_primal_tensors_in_a_derivative_mode(tmp_path):
    """In forward mode a MaxPool case with an empty window whose index lies inside the plane (the
    tangent gather does not raise) returns torch's out-of-window index: the jvp entry's model
    explains it (a model's entry explains nothing without its prediction), while a wrong output
    beside it stays a failure."""
    from dataclasses import replace

    from backends.base import Case, Result
    from conformance.runner import Runner

    spec = all_specs()["MaxPool2d"]
    params = {"kernel_size": (1, 2), "dilation": (1, 2), "padding": (0, 1), "stride": (2, 1), "return_indices": True}
    case = replace(Case(op="MaxPool2d", dtype="float64", tier="exact", differentiable=("input",), params=params,
                        inputs={"input": np.array([[[[-2.0], [0.0]]]])}), mode="jvp")
    reference, _ = spec.run_reference(case)
    settings = RunSettings(report_dir=str(tmp_path), profile="ci", isolate=False)
    with RecordWriter(tmp_path) as writer:
        runner = Runner(settings, writer, load_known())
        backend = SimpleNamespace(name="torch-cpu", known_as=())
        verdicts = []
        for output in (-np.inf, 0.0):  # torch's result; then a wrong output as well
            got = Result(outputs={"output": np.full((1, 1, 1, 1), output), "indices": np.array([[[[1]]]])})
            failing = [c.to_dict() for c in compare_results(spec, case, reference, got) if not c.ok]
            assert "indices" in [c["tensor"] for c in failing]
            fields = runner._known_fields(backend, spec, case, failing=failing, results=(reference, got))
            verdicts.append(fields.get("verdict"))
    assert verdicts == ["known", None]


def test_ci_cases_are_pinned(tmp_path, monkeypatch):
    """The ci profile draws the same cases on every run, whatever the runner's code looks like: its
    seed is fixed (``CI_SEED``), not derived from the source of the search's test function. A change
    here means every ci case was redrawn; that needs a stated reason (a strategy changed)."""
    from conformance.cli import main

    code = main(["run", "--ops", "ReLU", "--dtypes", "float64", "--no-isolate", "--quiet", "-j", "1",
                 "--mode", "vjp,jvp", "--examples", "2", "--report-dir", str(tmp_path)])
    assert code == 0
    ids = {m: [r["case_id"] for r in read_records(tmp_path) if r["mode"] == m and r.get("case_id")][:4]
           for m in ("vjp", "jvp")}
    assert ids == {"vjp": ["8cfe6b019b07", "8a338a1b2b15", "06fa827456a6", "1c101e749ad8"],
                   "jvp": ["e27de4113707", "e95f02d40f3c", "5ac5447f8853", "3c6b625fa1c9"]}
    monkeypatch.setattr("conformance.runner.CI_SEED", 1)  # the seed, not the code, decides the draws
    assert main(["run", "--ops", "ReLU", "--dtypes", "float64", "--no-isolate", "--quiet", "-j", "1",
                 "--examples", "2", "--report-dir", str(tmp_path / "other")]) == 0
    other = [r["case_id"] for r in read_records(tmp_path / "other") if r.get("case_id")][:4]
    assert other and other != ids["vjp"]


def test_a_broken_search_in_a_derivative_mode_is_recorded_under_that_mode(tmp_path, monkeypatch):
    """A search that breaks (here: the evaluation itself raises) is a harness error recorded for its
    own target, mode included, not under the vjp mode."""
    from conformance.runner import Runner

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(Runner, "evaluate", broken)
    settings = RunSettings(report_dir=str(tmp_path), profile="ci", isolate=False)
    with RecordWriter(tmp_path) as writer:
        runner = Runner(settings, writer, [])
        runner.search(ReferenceBackend(), all_specs()["Tanh"], "float64", False, mode="jvp")
        runner.flush()
    records = [r for r in read_records(tmp_path) if r["verdict"] == "error"]
    assert records and all(r["mode"] == "jvp" and r["error"].startswith("the search failed") for r in records)


def test_a_failure_that_does_not_replay_is_a_finding_not_a_harness_error(tmp_path):
    """A backend wrong on its first call only (a state-dependent bug: a buffer it did not write) fails
    a case that then passes Hypothesis' replays: the failure it showed is recorded as the final
    discrepancy, marked flaky, and no harness error is recorded."""
    from backends.base import Case, Result
    from conformance.runner import Runner

    class WrongOnce(ReferenceBackend):
        name = "wrong-once"

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def run(self, case: Case) -> Result:
            result = super().run(case)
            self.calls += 1
            if self.calls == 1:
                result.outputs = {k: np.asarray(v) + 1.0 for k, v in result.outputs.items()}
            return result

    settings = RunSettings(report_dir=str(tmp_path), profile="ci", isolate=False)
    with RecordWriter(tmp_path) as writer:
        runner = Runner(settings, writer, [])
        runner.search(WrongOnce(), all_specs()["Tanh"], "float64", False)
        runner.flush()
    records = list(read_records(tmp_path))
    assert not [r for r in records if r["verdict"] == "error"]
    final = [r for r in records if r["final"] and not r["shrinking"]]
    assert len(final) == 1 and final[0]["verdict"] == "fail" and "not reproduced" in final[0]["flaky"]
    assert runner.discrepancies == 1


def test_known_entry_mode_is_a_glob_or_a_list_of_globs():
    """``mode = ["jvp", "vjp2"]`` matches cases of either mode and no other; a malformed list is refused."""
    from dataclasses import replace

    spec, case, _ = _maxpool_empty_window_case()
    entry = KnownDiscrepancy(id="modes", op="MaxPool1d", backend="*", reason="test", mode=["jvp", "vjp2"])
    assert entry.modes == ("jvp", "vjp2") and entry.describe()["mode"] == ["jvp", "vjp2"]
    assert [m for m in ("vjp", "jvp", "vjp2", "vmap") if entry.matches(spec, "torch-cpu", replace(case, mode=m))] \
        == ["jvp", "vjp2"]
    with pytest.raises(ValueError):
        KnownDiscrepancy(id="bad", op="*", backend="*", reason="test", mode=[])


def test_known_entry_op_is_a_glob_or_a_list_of_globs():
    """``op = ["MaxPool1d", "AvgPool*"]`` covers either declaration (by id or catalogue name) and no
    other; a malformed list is refused."""
    spec, case, _ = _maxpool_empty_window_case()
    entry = KnownDiscrepancy(id="ops", op=["AvgPool*", "MaxPool1d"], backend="*", reason="test")
    assert entry.ops == ("AvgPool*", "MaxPool1d") and entry.matches(spec, "torch-cpu", case)
    other = KnownDiscrepancy(id="other", op=["AvgPool*", "MaxPool2d"], backend="*", reason="test")
    assert not other.matches(spec, "torch-cpu", case)
    for bad in ([], ["MaxPool1d", 3]):
        with pytest.raises(ValueError):
            KnownDiscrepancy(id="bad", op=bad, backend="*", reason="test")
