"""Regressions against a baseline: signatures of discrepancies, and the CLI's exit codes on real runs
(``nnconform report BAD --baseline CLEAN`` exits 1 naming the new failure; the reverse exits 0
listing the fixed ones; an unreadable baseline is a one-line usage error)."""

from __future__ import annotations

import json

import pytest

from reports.baseline import Baseline, compare_runs, failure_kind, load_baseline
from reports.records import read_run_info
from tests.report_runs import cli, report_run


def _rec(op="ReLU", backend="vendor", dtype="float32", verdict="fail", case_id="a", tensors=("grad.input",), **extra):
    comparisons = [{"tensor": "output", "ok": True}] + [{"tensor": t, "ok": False} for t in tensors]
    record = {"type": "case", "op": op, "backend": backend, "dtype": dtype, "verdict": verdict, "final": True,
              "case_id": case_id, "tier": "float", "comparisons": comparisons, "case": None}
    record.update(extra)
    return record


@pytest.mark.parametrize("record, kind", [
    (_rec(tensors=("grad.weight", "output")), "fail grad.weight,output"),
    (_rec(verdict="error", tensors=(), error="ValueError: the call returned 1 values", error_side="backend"),
     "error backend ValueError"),
    (_rec(verdict="error", tensors=(), error="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
          error_side="backend"), "error backend RuntimeError"),
    (_rec(verdict="error", tensors=(), tier="invalid", error_side="backend",
          error="the backend accepted an invalid case; reference: ValueError: 3 < 4"),
     "invalid: error backend the backend accepted an invalid case"),
    (_rec(verdict="xpass", tensors=(), known={"id": "relu-half"}), "xpass relu-half"),
    (_rec(verdict="crash", tensors=()), "crash"),
    (_rec(tier="stat", tensors=("stat.rate",)), "fail stat.rate"),
])
def test_failure_kind(record, kind):
    assert failure_kind(record) == kind


def test_matching_ignores_case_ids_and_separates_kinds(tmp_path):
    baseline = Baseline(tmp_path, [
        _rec(case_id="x1"),                                   # unchanged (another case id now)
        _rec(dtype="float16", tensors=("output",)),           # fixed: float16 ran again, clean
        _rec(dtype="bfloat16"),                               # not rerun: no bfloat16 cell now
        _rec(op="Linear", verdict="error", tensors=(), error="RuntimeError: x", error_side="backend"),
    ], {})
    now = [
        _rec(case_id="y2"),
        _rec(dtype="float16", verdict="pass", final=False, tensors=()),
        _rec(op="Linear", verdict="error", tensors=(), error="RuntimeError: y", error_side="backend"),  # unchanged
        _rec(dtype="float64", tensors=("grad.input",)),      # new
        _rec(op="Linear", tensors=("output",)),              # new: same cell, another kind of failure
    ]
    result = compare_runs(now, baseline)
    assert [s.text() for s, _ in result.new] == ["Linear / vendor / float32: fail output",
                                                 "ReLU / vendor / float64: fail grad.input"]
    assert [s.text() for s, _ in result.fixed] == ["ReLU / vendor / float16: fail output"]
    assert [s.text() for s, _ in result.unchanged] == ["Linear / vendor / float32: error backend RuntimeError",
                                                       "ReLU / vendor / float32: fail grad.input"]
    assert [s.text() for s, _ in result.not_rerun] == ["ReLU / vendor / bfloat16: fail grad.input"]
    assert result.exit_code == 1
    assert compare_runs(baseline.records[:1], Baseline(tmp_path, now, {})).exit_code == 0


def test_report_bad_against_clean_exits_1_and_names_the_new_failure(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    clean, clean_code, _ = report_run("clean", root)
    bad, bad_code, _ = report_run("bad", root)
    assert (clean_code, bad_code) == (0, 1)
    code, out, err = cli("report", str(bad), "--baseline", str(clean))
    assert code == 1, out + err
    assert "2 new, 0 fixed, 0 unchanged" in out
    assert "NEW       ReLU / vendor / float32: fail grad.input" in out
    assert "NEW       ReLU / vendor / bfloat16: fail grad.input" in out
    assert out.rstrip().splitlines()[-2].startswith("html report:")  # the report's path comes last
    html = (bad / "report.html").read_text(encoding="utf-8")
    assert 'id="regressions"' in html and "exit status 1: new discrepancies" in html
    assert '<span class="verdict v-new">new</span>' in html  # the discrepancy itself is marked new
    assert html.count('<ul class="regression-new">') == 1


def test_report_clean_against_bad_exits_0_and_lists_the_fixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    clean, _, _ = report_run("clean", root)
    bad, _, _ = report_run("bad", root)
    code, out, err = cli("report", str(clean), "--baseline", str(bad))
    assert code == 0, out + err
    assert "0 new, 2 fixed, 0 unchanged" in out and "FIXED     ReLU / vendor / float32: fail grad.input" in out
    html = (clean / "report.html").read_text(encoding="utf-8")
    assert '<ul class="regression-fixed">' in html and "ReLU</strong> · vendor · bfloat16" in html
    # Unchanged discrepancies do not fail the gate.
    code, out, _ = cli("report", str(bad), "--baseline", str(bad))
    assert code == 0 and "0 new, 0 fixed, 2 unchanged" in out


def test_run_with_baseline_gates_on_new_discrepancies(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    clean, _, _ = report_run("clean", root)
    bad, _, _ = report_run("bad", root)
    new_dir = root / "again"
    argv = ["run", "--backend", "tests.report_runs:VendorBuggy", "--ops", "ReLU", "--dtypes", "float32",
            "--profile", "ci", "--no-isolate", "--quiet", "--report-dir", str(new_dir)]
    code, out, _ = cli(*argv, "--baseline", str(bad))
    assert code == 0, out  # the same bug as in the baseline: unchanged, nothing new
    assert "0 new, 0 fixed, 1 unchanged, 1 not rerun" in out  # bfloat16 was not run this time
    assert read_run_info(new_dir)["baseline"] == str(bad) and read_run_info(new_dir)["exit_code"] == 0
    code, out, _ = cli(*argv, "--baseline", str(clean))
    assert code == 1 and "1 new" in out and read_run_info(new_dir)["exit_code"] == 1


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing", "is not a directory"),
    (lambda p: p, "has no results.jsonl"),
    (lambda p: (p / "results.jsonl").write_text("{}\n") and (p / "run.json").write_text("[1, 2") and p,
     "cannot be read"),
])
def test_unreadable_baseline_is_a_one_line_usage_error(tmp_path_factory, tmp_path, make, fragment):
    bad, _, _ = report_run("bad", tmp_path_factory.mktemp("runs"))
    target = make(tmp_path)
    code, out, err = cli("report", str(bad), "--baseline", str(target))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnconform: error: baseline") and fragment in lines[0], err
    # run checks the baseline before running anything
    code, out, err = cli("run", "--ops", "ReLU", "--report-dir", str(tmp_path / "r"), "--baseline", str(target))
    assert code == 2 and fragment in err and not (tmp_path / "r").exists()


def test_load_baseline_reads_records_and_run_info(tmp_path_factory):
    bad, _, _ = report_run("bad", tmp_path_factory.mktemp("runs"))
    baseline = load_baseline(bad)
    assert baseline.run_info["exit_code"] == 1
    failing = {(r["op"], r["backend"], r["dtype"]) for r in baseline.records
               if r.get("final") and r["verdict"] == "fail"}
    assert failing == {("ReLU", "vendor", "float32"), ("ReLU", "vendor", "bfloat16")}
    json.dumps(baseline.run_info)
