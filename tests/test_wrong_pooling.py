"""Each deliberately wrong pooling adapter is caught by a ci-profile run (derandomized, 80 examples)."""

from __future__ import annotations

import pytest

import conformance.specs.pooling as pooling_specs  # registers the pooling family
from conformance.cli import main
from reports.records import read_records

CASES = [
    ("AvgCeilFullDivisor", "AvgPool1d"),
    ("AvgCeilFullDivisor", "AvgPool2d"),
    ("MaxPoolKeepsPaddingWindow", "MaxPool1d"),
    ("MaxPoolKeepsPaddingWindow", "MaxPool2d"),
    ("AdaptiveFloorEnd", "AdaptiveAvgPool1d"),
    ("AdaptiveFloorEnd", "AdaptiveMaxPool2d"),
]


@pytest.mark.parametrize(("adapter", "op"), CASES, ids=[f"{a}-{o}" for a, o in CASES])
def test_wrong_pooling_adapter_is_caught(tmp_path, monkeypatch, adapter, op):
    # torch itself mishandles max-pooling windows that lie in the padding only: keep them out, so
    # that the failure found is the adapter's bug (cases are drawn in this process).
    monkeypatch.setattr(pooling_specs, "ALLOW_EMPTY_WINDOWS", False)
    code = main(["run", "--backend", f"tests.wrong_backends.pooling:{adapter}", "--ops", op,
                 "--dtypes", "float64", "--profile", "ci", "--examples", "80", "--no-invalid", "--quiet",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    assert any(r["op"] == op and r["verdict"] == "fail" and r["final"] for r in records), \
        sorted({r["verdict"] for r in records})
