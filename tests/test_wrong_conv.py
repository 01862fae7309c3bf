"""Each deliberately wrong convolution adapter is caught by a plain ci-profile run: exit code 1 and a
final failing record."""

from __future__ import annotations

import pytest

import conformance.specs.conv  # noqa: F401  (registers the family, whether or not specs/__init__ does)
from conformance.cli import main
from reports.records import read_records

WRONG = [
    ("CircularPaddingWrongDims", "Conv2d"),
    ("GroupMixup", "Conv2d"),
    ("DilationIgnoredInBackward", "Conv2d"),
    ("TransposedIgnoresOutputPadding", "ConvTranspose2d"),
]


@pytest.mark.parametrize("adapter, op", WRONG, ids=[a for a, _ in WRONG])
def test_wrong_conv_adapter_is_caught(adapter, op, tmp_path):
    code = main(["run", "--backend", f"tests.wrong_backends.conv:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--profile", "ci", "--report-dir", str(tmp_path), "--quiet", "--first-failure", "--no-isolate"])
    assert code == 1
    records = list(read_records(tmp_path))
    # caught either as wrong values ("fail") or as a raise where torch.nn computes ("error")
    assert any(r["verdict"] in ("fail", "error") and r["final"] and r["op"] == op for r in records), \
        sorted({(r["op"], r["verdict"], r["final"]) for r in records})
