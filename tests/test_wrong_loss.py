"""Each deliberately wrong loss adapter is caught by a ci-profile run (derandomized) and its
failure shrunk to a small case. The adapters run on torch-cpu, whose own known discrepancies
(recorded for ``torch-cpu*``) stay known, so the failure found is the adapter's bug."""

from __future__ import annotations

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("BCEWithLogitsIgnoresPosWeight", "BCEWithLogitsLoss"),
    ("KLDivIgnoresLogTarget", "KLDivLoss"),
    ("MarginRankingFlippedSign", "MarginRankingLoss"),
    ("NLLNoneKeepsIgnored", "NLLLoss"),
    ("SmoothL1AsHuber", "SmoothL1Loss"),
    ("MultiMarginWeightOfOtherClass", "MultiMarginLoss"),
    ("L1MeanOverInput", "L1Loss"),
    ("HuberAsSmoothL1", "HuberLoss"),
    ("GaussianClampAfterLog", "GaussianNLLLoss"),
    ("PoissonStirlingEverywhere", "PoissonNLLLoss"),
    ("TripletSwapIgnored", "TripletMarginLoss"),
    ("TripletDistanceWithoutEps", "TripletMarginLoss"),
    ("TripletDefaultDistance", "TripletMarginWithDistanceLoss"),
]
SMALL = 64  # input elements of the shrunk case


@pytest.mark.parametrize(("adapter", "op"), CASES, ids=[f"{a}-{o}" for a, o in CASES])
def test_wrong_loss_adapter_is_caught(tmp_path, adapter, op):
    code = main(["run", "--backend", f"tests.wrong_backends.loss:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--profile", "ci", "--no-invalid", "--quiet", "--first-failure", "--no-isolate",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    finals = [r for r in read_records(tmp_path) if r["op"] == op and r["final"] and r["verdict"] == "fail"]
    assert finals, "no shrunk failure recorded"
    sizes = [sum(math_prod(i["shape"]) for i in r["case"]["inputs"].values()) for r in finals]
    assert min(sizes) <= SMALL, sizes


def math_prod(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
