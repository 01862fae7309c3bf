"""Each deliberately wrong activation adapter is caught by a default ci-profile run (derandomized)
and shrunk to a small case."""

from __future__ import annotations

import math

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("SoftplusGradNoBeta", "Softplus"),
    ("TanhGradFromInput", "Tanh"),
    ("EluIgnoresAlpha", "ELU"),
    ("ThresholdWritesZero", "Threshold"),
    ("HardtanhGradAtBounds", "Hardtanh"),
    ("LogSigmoidNaive", "LogSigmoid"),
    ("LogSoftmaxNoMaxShift", "LogSoftmax"),
    ("SoftmaxImplicitDimLast", "Softmax"),
    ("Relu6SwallowsNaN", "ReLU6"),
]
SMALL = 8  # elements of the shrunk input


@pytest.mark.parametrize(("adapter", "op"), CASES, ids=[f"{a}-{o}" for a, o in CASES])
def test_wrong_activation_adapter_is_caught(tmp_path, adapter, op):
    code = main(["run", "--backend", f"tests.wrong_backends.activation:{adapter}", "--ops", op,
                 "--dtypes", "float64", "--profile", "ci", "--no-invalid", "--quiet", "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    finals = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"]]
    assert finals, sorted({r["verdict"] for r in records})
    sizes = [math.prod(info["shape"])
             for info in finals[0]["case"]["inputs"].values()]
    assert sum(sizes) <= SMALL, finals[0]["case"]
