"""Each deliberately wrong Fold/Unfold adapter is caught by a plain ci-profile run and shrunk to a
small case."""

from __future__ import annotations

import math

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [("FoldOverwrites", "Fold"), ("UnfoldIgnoresDilation", "Unfold")]
SMALL = 64  # elements of the shrunk input


@pytest.mark.parametrize(("adapter", "op"), CASES, ids=[a for a, _ in CASES])
def test_wrong_fold_adapter_is_caught_and_shrunk(tmp_path, adapter, op):
    code = main(["run", "--backend", f"tests.wrong_backends.fold:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--profile", "ci", "--no-invalid", "--quiet", "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    finals = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"]]
    assert finals, sorted({r["verdict"] for r in records})
    assert min(sum(math.prod(i["shape"]) for i in r["case"]["inputs"].values()) for r in finals) <= SMALL
