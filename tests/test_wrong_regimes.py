"""A bug confined to one declared regime is caught by the plain ci profile: each adapter of
tests/wrong_backends/regimes.py runs through the CLI (no --examples), and the run must fail with a
final failing record that lies in the regime."""

from __future__ import annotations

import pytest

import conformance.strategies.pooling as pooling_cases
from conformance.cli import main
from reports.records import read_records

CASES = [
    ("MaxPoolCeilZeroPad", "MaxPool2d", "ceil overhang clipped"),
    ("LPPoolNegInfAsMax", "LPPool1d", "p = -inf"),
    ("UnpoolSumsDuplicates", "MaxUnpool2d", "duplicate indices"),
    ("ConvReflectAsSymmetric", "Conv2d", "reflect padding"),
    ("ConvSameLeftHeavy", "Conv1d", "'same' padding split unevenly"),
    ("TransposedBiasOnlyWhereWritten", "ConvTranspose2d", "output positions no input reaches"),
    ("LinearOneDimKeepsBatch", "Linear", "1-d input"),
]


@pytest.mark.parametrize(("adapter", "op", "regime"), CASES, ids=[f"{a}-{o}" for a, o, _ in CASES])
def test_regime_confined_bug_is_caught_at_the_ci_profile(tmp_path, monkeypatch, adapter, op, regime):
    # The adapters run on torch, and inherit its known bugs, whose entries name torch-cpu only:
    # keep out the max-pooling windows that lie wholly in the padding (torch corrupts its heap on
    # them), so that every failure found is the adapter's (cases are drawn in this process, -j 1).
    monkeypatch.setattr(pooling_cases, "ALLOW_EMPTY_WINDOWS", False)
    code = main(["run", "--backend", f"tests.wrong_backends.regimes:{adapter}", "--ops", op,
                 "--dtypes", "float64", "--profile", "ci", "--no-invalid", "--quiet", "--first-failure",
                 "--no-isolate", "-j", "1",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    failed = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"]]
    assert failed, sorted({(r["verdict"], r["final"]) for r in records})
    assert all(regime in r["regimes"] for r in failed), [r["regimes"] for r in failed]
