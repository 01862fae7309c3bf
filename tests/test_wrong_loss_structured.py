"""Each deliberately wrong structured-loss adapter is caught by a ci-profile run (derandomized) and
its failure shrunk to a small case. The adapters run on torch-cpu, whose own known discrepancies
stay known, so the failure found is the adapter's bug."""

from __future__ import annotations

import math

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("CTCNoBlankBetweenRepeats", "CTCLoss"),
    ("CTCMeanWithoutTargetLengths", "CTCLoss"),
    ("CTCZeroInfinityIgnored", "CTCLoss"),
    ("AdaptiveClusterLogProbNotAdded", "AdaptiveLogSoftmaxWithLoss"),
    ("LinearCrossEntropyIgnoresLabelSmoothing", "LinearCrossEntropyLoss"),
]
SMALL = 64  # input elements of the shrunk case


@pytest.mark.parametrize(("adapter", "op"), CASES, ids=[f"{a}-{o}" for a, o in CASES])
def test_wrong_structured_loss_adapter_is_caught(tmp_path, adapter, op):
    target = "AdaptiveLogSoftmaxWithLoss" if op.startswith("Adaptive") else op  # the forward, not its methods
    code = main(["run", "--backend", f"tests.wrong_backends.loss_structured:{adapter}", "--ops", target,
                 "--dtypes", "float64", "--profile", "ci", "--no-invalid", "--quiet", "--no-isolate",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    finals = [r for r in read_records(tmp_path) if r["op"] == target and r["final"] and r["verdict"] == "fail"]
    assert finals, "no shrunk failure recorded"
    sizes = [sum(math.prod(i["shape"]) for i in r["case"]["inputs"].values()) for r in finals]
    assert min(sizes) <= SMALL, sizes
