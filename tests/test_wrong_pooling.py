"""Each deliberately wrong pooling adapter is caught by a plain ci-profile run (derandomized; the
regimes put cases in the corner each bug lives in)."""

from __future__ import annotations

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("AvgCeilFullDivisor", "AvgPool1d"),
    ("AvgCeilFullDivisor", "AvgPool2d"),
    ("MaxPoolKeepsPaddingWindow", "MaxPool1d"),
    ("MaxPoolKeepsPaddingWindow", "MaxPool2d"),
    ("AdaptiveFloorEnd", "AdaptiveAvgPool1d"),
    ("AdaptiveFloorEnd", "AdaptiveMaxPool2d"),
    ("AdaptiveFloorEnd", "AdaptiveAvgPool3d"),
    ("LPPool3dAbsPower", "LPPool3d"),
    ("FractionalSamplesReversed", "FractionalMaxPool3d"),
]


@pytest.mark.parametrize(("adapter", "op"), CASES, ids=[f"{a}-{o}" for a, o in CASES])
def test_wrong_pooling_adapter_is_caught(tmp_path, adapter, op):
    # Max pooling runs isolated: torch aborts on some windows wholly in the padding (a known entry,
    # maxpool-empty-window-out-of-window-index), which would end pytest; the others run in-process.
    isolation = () if op.startswith("MaxPool") else ("--no-isolate",)
    code = main(["run", "--backend", f"tests.wrong_backends.pooling:{adapter}", "--ops", op,
                 "--dtypes", "float64", "--profile", "ci", "--no-invalid", "--quiet", "--first-failure", *isolation,
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    assert any(r["op"] == op and r["verdict"] == "fail" and r["final"] for r in records), \
        sorted({r["verdict"] for r in records})
