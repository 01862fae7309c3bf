"""Each deliberately wrong activation adapter is caught by a default ci-profile run (derandomized)
and shrunk to a small case; one whose every case is right given its random choices is caught by
the target's statistics."""

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
    ("HardswishUncapped", "Hardswish"),
    ("GluHalvesSwapped", "GLU"),
    ("SiluGradWithoutXTerm", "SiLU"),
    ("CeluWithoutInputScale", "CELU"),
    ("RreluRandomInEval", "RReLU"),
    ("Softmax2dOverDim1", "Softmax2d"),
]
SMALL = 8  # elements of the shrunk input


@pytest.mark.parametrize(("adapter", "op"), CASES, ids=[f"{a}-{o}" for a, o in CASES])
def test_wrong_activation_adapter_is_caught(tmp_path, adapter, op):
    code = main(["run", "--backend", f"tests.wrong_backends.activation:{adapter}", "--ops", op,
                 "--dtypes", "float64", "--profile", "ci", "--no-invalid", "--quiet", "--no-isolate",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    finals = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"]]
    assert finals, sorted({r["verdict"] for r in records})
    sizes = [math.prod(info["shape"])
             for info in finals[0]["case"]["inputs"].values()]
    assert sum(sizes) <= SMALL, finals[0]["case"]


def test_a_shared_random_slope_is_caught_by_the_statistics(tmp_path):
    code = main(["run", "--backend", "tests.wrong_backends.activation:RreluSharedSlope", "--ops", "RReLU",
                 "--dtypes", "float64", "--profile", "ci", "--no-invalid", "--quiet", "--no-isolate",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    assert {r["verdict"] for r in records if r["tier"] != "stat"} <= {"pass", "known"}  # right given its slopes
    stats = [r for r in records if r["tier"] == "stat"]
    assert len(stats) == 1 and stats[0]["verdict"] == "fail"
    failed = {c["tensor"] for c in stats[0]["comparisons"] if not c["ok"]}
    assert "stat.independent slopes" in failed
