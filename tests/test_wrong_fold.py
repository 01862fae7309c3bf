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
                 "--profile", "ci", "--no-invalid", "--quiet", "--first-failure", "--no-isolate",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    finals = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"]]
    assert finals, sorted({r["verdict"] for r in records})
    assert min(sum(math.prod(i["shape"]) for i in r["case"]["inputs"].values()) for r in finals) <= SMALL


def test_a_copy_that_loses_the_sign_of_zero_is_caught():
    """Unfold is compared bit for bit: a -0 copied as +0 is a mismatch (the value bound alone is 0
    either way)."""
    import numpy as np

    from backends.base import Case, Result
    from conformance.numerics.window import copy_comparator
    from conformance.runner import reference_result
    from conformance.spec import all_specs

    spec = all_specs()["Unfold"]
    x = np.array([[[[-0.0, 1.0], [2.0, -0.0]]]])
    case = Case(op="Unfold", dtype="float32", params={"kernel_size": 1, "dilation": 1, "padding": 0, "stride": 1},
                inputs={"input": x}, differentiable=("input",))
    case, ref = reference_result(spec, case)
    right = Result(outputs={"output": ref.outputs["output"].copy()}, dtypes={"output": "float32"})
    assert copy_comparator(spec, case, "output", ref, right).ok
    wrong = Result(outputs={"output": np.abs(ref.outputs["output"])}, dtypes={"output": "float32"})
    cmp = copy_comparator(spec, case, "output", ref, wrong)
    assert not cmp.ok and cmp.mismatches == 2 and cmp.symptoms == ["signed-zero"]
