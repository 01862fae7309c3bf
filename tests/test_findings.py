"""Findings: grouping failing records by probable root cause, the learned rules, the counts, the
drafted known entries and the bug reports (``conformance.findings``, ``reports.markdown``).

Synthetic records, shaped like the runner's, make the cases; rules are checked against the
``when`` evaluation of ``conformance.known`` on real cases of real declarations.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from backends.base import Case, Layout
from conformance.finding_drafts import draft_entries, entries_toml, write_known_file
from conformance.finding_rules import candidate_conditions, chance, learn_rule
from conformance.findings import analyse, record_scope
from conformance.known import case_scope, evaluate_when, load_file
from conformance.spec import all_specs
from reports.records import summarise_values

_ids = itertools.count()


def _case(params, shape=(3,), layout="contiguous", dtype="float32", tier="float"):
    return {"op": "ELU", "dtype": dtype, "tier": tier, "train": True, "invalid": False, "params": params,
            "forward_kwargs": {}, "note": "",
            "inputs": {"input": {"shape": list(shape), "type": "float", "dtype": dtype, "layout": {"kind": layout},
                                 "strides": [1] * len(shape), "requires_grad": True}}}


def _record(params, failing=(), values=None, dtype="float32", final=False, shrinking=False, regime=None,
            regimes=(), layout="contiguous", shape=(3,), op="ELU", case_id=None, util=1e6):
    comparisons = []
    for tensor in ("output", "grad.input"):
        bad = [s for t, s in failing if t == tensor]
        comparisons.append({"tensor": tensor, "ok": not bad, "symptoms": bad, "shape": list(shape), "size": 3,
                            "mismatches": len(bad), "max_abs_err": 0.5 if bad else 0.0, "max_ulp": 4e6 if bad else 0,
                            "utilisation": util if bad else 0.1, "finite_utilisation": util if bad else 0.1,
                            "reduction_length": 1, "message": "1 of 3 elements out of bound (value)" if bad else "",
                            "worst": [{"index": [0], "ref": -0.25, "got": -0.5, "err": 0.25, "bound": 1e-7}]
                            if bad else []})
    record = {"type": "case", "run_id": "r", "op": op, "entry": op, "variant": "", "family": "activation",
              "backend": "vendor", "device": "cpu", "dtype": dtype, "tier": "float",
              "verdict": "fail" if failing else "pass", "final": final, "shrinking": shrinking,
              "case_id": case_id or f"c{next(_ids)}", "case": _case(params, shape, layout, dtype),
              "comparisons": comparisons, "max_utilisation": util if failing else 0.1, "error": None,
              "error_side": None, "known": None, "call": None, "artifacts": None, "regime": regime,
              "regimes": list(regimes), "elapsed_s": {}}
    if values is not None:
        record["values"] = values
    return record


def _values(lo, hi):
    return {"input": {"min": lo, "max": hi, "nan": False, "inf": False, "zero": False, "size": 3}}


def _elu_run(with_values=True):
    """An ELU that ignores alpha: fails (output and gradient) where alpha != 1 and an input is
    negative. Two searches per dtype: passes, a failing draw, shrink steps, the final replay."""
    records = []
    for dtype in ("float32", "bfloat16"):
        for search in range(2):
            for alpha, lo in [(1.0, -2.0), (1.0, 0.5), (0.5, 0.3), (2.0, 0.1), (1.0, -1.0), (0.5, 1.0)] * 3:
                records.append(_record({"alpha": alpha}, values=_values(lo, 3.0) if with_values else None,
                                       dtype=dtype))
            bad = (("output", "value"), ("grad.input", "value"))
            records.append(_record({"alpha": 2.0}, bad, _values(-3.0, 3.0) if with_values else None, dtype))
            for alpha, lo, fails in [(1.0, -1.0, False), (0.5, -1.0, True), (0.5, 0.0 + 1e-3, False),
                                     (0.5, -0.5, True)]:
                records.append(_record({"alpha": alpha}, bad if fails else (),
                                       _values(lo, 3.0) if with_values else None, dtype, shrinking=True,
                                       case_id=f"s{dtype}{search}{alpha}{lo}"))
            records.append(_record({"alpha": 0.5}, bad, _values(-0.5, 3.0) if with_values else None, dtype,
                                   final=True, case_id=f"s{dtype}{search}0.5-0.5"))
    return records


def test_one_finding_counts_draws_not_shrinking_steps_or_replays():
    findings = analyse(_elu_run())
    assert len(findings) == 1
    finding = findings[0]
    # 2 searches × 2 dtypes each met the bug once: 4 failing draws (never 4 + 4 shrunk + shrink steps)
    assert finding["cases"] == 4 and finding["shrunk"] == 4
    assert finding["by_dtype"] == {"float32": 2, "bfloat16": 2} and finding["dtypes"] == ["float32", "bfloat16"]
    assert finding["tensors"] == ["output", "grad.input"] and finding["symptoms"] == ["value"]
    assert finding["example"]["final"] and finding["title"].startswith("ELU on vendor: wrong values in output")


def test_rule_over_a_parameter_and_a_value_summary_is_exact():
    rule = analyse(_elu_run())[0]["rule"]
    assert rule["text"] == "alpha != 1 and min(input) < 0", rule
    assert rule["when"] == "params.get('alpha') != 1.0 and values['input'].min < 0"
    assert rule["exact"] and rule["fp"] == 0 and rule["fn"] == 0
    assert "exact on the" in rule["quality"]


def test_without_value_summaries_the_rule_says_what_records_can_and_how_inexact():
    rule = analyse(_elu_run(with_values=False))[0]["rule"]
    assert rule["text"] == "alpha != 1" and not rule["exact"]
    assert rule["fn"] == 0 and rule["fp"] > 0  # covers every failing case; some passing ones too
    assert f"covers {rule['tp']} of {rule['tp']} failing cases and {rule['fp']} of" in rule["quality"]


def test_a_value_drawn_rarely_is_not_excluded_by_chance():
    """alpha = 0.1 passed twice (its inputs were positive): too little to exclude it, so the rule
    stays alpha != 1, which also covers what a longer search would find at 0.1."""
    records = _elu_run(with_values=False)
    records += [_record({"alpha": 0.1}, values=None) for _ in range(2)]
    assert analyse(records)[0]["rule"]["text"] == "alpha != 1"
    assert chance(100, 25, 2) > 0.5 and chance(100, 25, 40) < 1e-6


def test_failure_keys_that_fail_together_are_one_finding_and_other_regions_split():
    """ELU's output and gradient fail together (one finding); in another layer, values wrong in a
    channels_last layout and in float16 are two findings (no condition holds on both)."""
    records = _elu_run()
    for layout, dtype in itertools.product(("contiguous", "channels_last", "permuted"), ("float32", "float16")):
        failing = layout == "channels_last" or dtype == "float16"
        for _ in range(1 if failing else 10):
            records.append(_record({}, (), None, dtype, op="Conv2d", layout=layout))
        for _ in range(6 if failing else 0):
            records.append(_record({}, (("output", "value"),), None, dtype, op="Conv2d", layout=layout))
    findings = analyse(records)
    by_op = {}
    for f in findings:
        by_op.setdefault(f["op"], []).append(f)
    assert len(by_op["ELU"]) == 1
    conv = sorted(by_op["Conv2d"], key=lambda f: -f["cases"])
    assert len(conv) == 2 and [f["cases"] for f in conv] == [18, 6], [(f["cases"], f["rule"]) for f in conv]
    assert conv[0]["rule"]["text"] == "dtype == float16"
    assert "layout of input == channels_last" in conv[1]["rule"]["text"]


def test_an_unexpected_pass_and_a_harness_error_are_findings_without_rules():
    records = _elu_run()
    xpass = _record({}, op="ReLU")
    xpass.update(verdict="xpass", final=True, case=None, comparisons=[], known={"id": "relu-old"})
    harness = _record({}, op="ReLU")
    harness.update(verdict="error", error_side="harness", final=True, case=None, comparisons=[],
                   error="the search failed: FailedHealthCheck: too slow\n)")
    findings = analyse(records + [xpass, harness])
    kinds = {f["kind"]: f for f in findings}
    assert set(kinds) == {"fail", "xpass", "harness"}
    assert kinds["xpass"]["rule"] is None and "relu-old" in kinds["xpass"]["title"]
    entries, notes = draft_entries(findings, {"run_id": "r"}, "rep")
    assert len(entries) == 1 and len(notes) == 2


@pytest.mark.parametrize("op, dtype", [("ELU", "float32"), ("Conv2d", "float64"), ("LeakyReLU", "bfloat16")])
def test_rules_read_records_as_known_entries_read_cases(op, dtype):
    """Every condition the learner can state holds on a record exactly when ``conformance.known``
    says it holds on the case the record describes."""
    from hypothesis import HealthCheck, given, settings

    spec = all_specs()[op]
    cases = []

    @settings(max_examples=12, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(spec.strategy(dtype))
    def collect(case):
        cases.append(case)

    collect()
    records = [{"op": op, "dtype": dtype, "tier": case.tier, "case": case.describe(), "variant": case.variant,
                "regimes": spec.regimes_of(case), "values": summarise_values(case.inputs)} for case in cases]
    scopes = [record_scope(r) for r in records]
    conditions = {c.when: c for i in range(len(records)) for c in candidate_conditions(scopes, [i])}
    assert len(conditions) > 5
    for case, scope in zip(cases, scopes):
        truth = case_scope(spec, case)
        for when, condition in conditions.items():
            assert condition.holds(scope) == evaluate_when(when, truth), (when, case.describe())


def test_drafted_entries_load_and_scope_the_finding(tmp_path):
    findings = analyse(_elu_run())
    info = {"run_id": "abc", "started": "2026-01-02T03:04:05", "backends": [{"name": "vendor", "spec": "my:Vendor"}]}
    taken = {"vendor-elu-output-grad-input-value"}
    entries, notes = draft_entries(findings, info, "nnconform-report", existing_ids=taken)
    assert not notes and len(entries) == 1
    entry = entries[0]
    assert entry["id"] == "vendor-elu-output-grad-input-value-2"  # the taken id is not reused
    assert entry["when"] == findings[0]["rule"]["when"] and entry["strict"] is True
    assert entry["tensors"] == ["output", "grad.input"] and entry["symptom"] == "value"
    assert entry["max_utilisation"] == pytest.approx(1e7)  # 10 × the largest utilisation seen
    assert "Drafted by nnconform triage from run abc (2026-01-02)" in entry["reason"]
    path = write_known_file(tmp_path / "vendor-known.toml", entries)
    loaded = load_file(path)
    assert [e.id for e in loaded] == [entry["id"]] and loaded[0].when == entry["when"]
    assert loaded[0].max_utilisation == entry["max_utilisation"]
    # appending keeps what is there
    write_known_file(path, [dict(entry, id="another")])
    assert [e.id for e in load_file(path)] == [entry["id"], "another"]
    assert entries_toml([]) == ""


def test_a_dtype_subset_scopes_the_entry():
    records = [r for r in _elu_run() if r["dtype"] == "float32" or r["verdict"] == "pass"]
    finding = analyse(records)[0]
    assert finding["dtypes"] == ["float32"] and finding["dtypes_run"] == ["float32", "bfloat16"]
    entry = draft_entries([finding], {}, "rep")[0][0]
    assert entry["dtype"] == "float32"


def test_learn_rule_on_a_layout_with_a_rank_condition():
    scopes = []
    positive = []
    for layout, rank in itertools.product(("contiguous", "permuted", "strided"), (1, 2, 3)):
        for _ in range(4):
            record = _record({}, layout=layout, shape=(2,) * rank)
            scopes.append(record_scope(record))
            if layout == "permuted" and rank >= 2:
                positive.append(len(scopes) - 1)
    rule = learn_rule(scopes, positive)
    assert rule.exact and rule.text in ("layout of input == permuted and rank of input in (2, 3)",
                                        "layout of input == permuted and rank of input > 1"), rule.text


def test_markdown_bug_report_runs_its_own_repro(tmp_path):
    """A torch ELU case saved as a repro: the report has every part, and its snippet, run with
    torch, prints torch's values next to the reference's (which agree: torch is right here)."""
    torch = pytest.importorskip("torch")
    from reports.markdown import finding_markdown

    x = np.array([-1.5, 0.25, -0.125], dtype=np.float64)
    g = np.array([1.0, -2.0, 0.5])
    ref = np.where(x > 0, x, 0.5 * np.expm1(x))
    (tmp_path / "repro").mkdir()
    np.savez(tmp_path / "repro" / "elu.npz", **{"input.input": x, "cotangent.output": g, "ref.output": ref})
    record = _record({"alpha": 0.5, "inplace": False}, (("output", "value"),), final=True, dtype="float32")
    record["case"]["inputs"]["input"]["layout"] = {"kind": "permuted", "perm": [0]}
    record["comparisons"][0]["worst"] = [{"index": [0], "ref": float(ref[0]), "got": -0.7768698, "err": 0.38,
                                          "bound": 6e-8}]
    record["call"] = {"kind": "module", "target": "torch.nn.ELU", "init": {"alpha": 0.5, "inplace": False},
                      "parameters": [], "buffers": [], "args": [{"input": "input"}], "kwargs": {},
                      "outputs": "output", "mutated": [], "train": True}
    record["artifacts"] = {"npz": "repro/elu.npz", "repro": "repro/elu.py"}
    finding = analyse([record, _record({"alpha": 1.0})])[0]
    info = {"versions": {"vendor:torch": torch.__version__, "python": "3.x"},
            "cpu": {"model": "Some CPU", "cores": 2, "machine": "x86_64", "flags": ["avx2", "fma", "sse2"]},
            "argv": ["nnconform", "run", "--ops", "ELU"]}
    text = finding_markdown(finding, info, str(tmp_path), {"output": "absref = |ref|"}, "torch.nn.ELU")
    for part in ("## ELU on vendor: wrong values in output", "**Versions.**", f"torch {torch.__version__}",
                 "kernel-selecting flags: avx2 fma", "### Minimal repro", "```python",
                 "### Expected (reference) vs got", "### Why this is out of bound", "2^-24 (float32)",
                 "Policy: absref = |ref|", "### Where it fails", "`nnconform run --ops ELU`"):
        assert part in text, (part, text)
    code = text.split("```python\n", 1)[1].split("\n```", 1)[0]
    assert "torch.tensor([-1.5, 0.25, -0.125], dtype=torch.float32)" in code and "np.load" not in code
    printed = []
    exec(compile(code, "<snippet>", "exec"), {"print": lambda *a: printed.append(a)})
    (label, got, _, expected), = printed
    assert label == "output[0]" and math.isclose(got, expected, rel_tol=1e-6)


def test_known_files_check_when_and_predicate_at_load(tmp_path):
    base = '[[discrepancy]]\nid = "x"\nop = "ReLU"\nbackend = "vendor"\nreason = "r"\n'
    for extra, fragment in [('when = "alpah > 1"\n', "unknown name 'alpah'"),
                            ('when = "params[\'a\'] >"\n', "invalid syntax"),
                            ('predicate = "conformance.numerics.elementwise:no_such"\n', "cannot be loaded"),
                            ('predicate = "nothing"\n', "is not 'module:function'"),
                            ('colour = "red"\n', "unexpected keyword argument 'colour'")]:
        path = tmp_path / "k.toml"
        path.write_text("# user file\n\n" + base + extra)
        with pytest.raises(ValueError) as info:
            load_file(path)
        assert f"{path}:3: entry 'x'" in str(info.value) and fragment in str(info.value), str(info.value)


def test_when_sees_regimes_and_values_of_a_case():
    spec = all_specs()["ReLU"]
    case = Case(op="ReLU", dtype="float32", params={"inplace": False},
                inputs={"input": np.array([-1.0, 0.0, np.nan])}, layouts={"input": Layout()})
    scope = case_scope(spec, case)
    assert "at the kink" in scope["regimes"] and "NaN inputs" in scope["regimes"]
    assert evaluate_when("values['input'].min < 0 and values['input'].zero and values['input'].nan", scope)
    assert evaluate_when("values['input'].max == 0.0 and not values['input'].inf", scope)
    json.dumps(summarise_values(case.inputs))  # plain JSON for records


def test_when_sees_the_runs_threads_per_worker():
    """Some compiled-torch bugs need 2+ intra-op threads: an entry names them with ``threads``."""
    from conformance.known import KnownDiscrepancy

    spec = all_specs()["ReLU"]
    case = Case(op="ReLU", dtype="float32", params={"inplace": False}, inputs={"input": np.array([1.0])},
                layouts={"input": Layout()})
    entry = KnownDiscrepancy(id="x", op="ReLU", backend="b", reason="test", when="threads != 1")
    assert entry.matches(spec, "b", case, threads=2) and not entry.matches(spec, "b", case, threads=1)
    assert entry.matches(spec, "b", case)  # a run that does not set threads: torch's default (the cores)
    assert case_scope(spec, case, threads=3)["threads"] == 3


def test_a_run_sets_each_workers_threads_even_for_one_job(tmp_path, capsys):
    from conformance.cli import main
    from conformance.parallel import default_jobs
    from reports.records import read_run_info

    assert main(["run", "--ops", "ReLU", "--dtypes", "float32", "--examples", "3", "--no-invalid", "--quiet", "-j", "1",
                 "--report-dir", str(tmp_path)]) == 0
    assert read_run_info(tmp_path)["threads_per_job"] == default_jobs()
    capsys.readouterr()
