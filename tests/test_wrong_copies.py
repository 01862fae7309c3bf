"""Each deliberately wrong copies-family adapter is caught by a ci-profile run (derandomized,
float64, valid cases only): exit code 1, and a final, shrunk failing record of a small case in the
search meant to catch it (the random search, or the regime of the bug's corner)."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.cli import main
from reports.records import read_records

# (adapter, op, the search that must catch it: a regime name, or None for the random search)
CASES = [
    ("ReflectionIncludesEdge", "ReflectionPad1d", None),
    ("CircularWrapsWrongSide", "CircularPad1d", None),
    ("ConstantPadDropsNegativeZero", "ConstantPad1d", "value -0.0"),
    ("ZeroPadFirstDimFirst", "ZeroPad2d", None),
    ("ChannelShuffleInverse", "ChannelShuffle", None),
    ("FlattenEndExclusive", "Flatten", None),
]
SMALL = 32  # input elements of the shrunk case


@pytest.mark.parametrize(("adapter", "op", "search"), CASES, ids=[f"{a}-{o}" for a, o, _ in CASES])
def test_wrong_copies_adapter_is_caught(tmp_path, adapter, op, search):
    code = main(["run", "--backend", f"tests.wrong_backends.copies:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--profile", "ci", "--examples", "20", "--no-invalid", "--no-isolate", "--quiet",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    final = [r for r in records if r["op"] == op and r["verdict"] in ("fail", "error") and r["final"]
             and r["regime"] == search]
    assert final, sorted({(r["regime"] or "", r["verdict"]) for r in records if r["final"]})
    size = sum(int(np.prod(i["shape"])) for i in final[0]["case"]["inputs"].values())
    assert size <= SMALL, final[0]["case"]
