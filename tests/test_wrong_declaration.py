"""Each deliberately wrong adapter of tests/wrong_backends/declaration.py is caught by a plain ci run
(derandomized, the profile's default example counts), with a final shrunk record."""

from __future__ import annotations

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("DropoutInEval", "Dropout", "fail"),
    ("Dropout3dSharedMask", "Dropout3d", "stat"),
    ("Dropout2dElementwise", "Dropout2d", "fail"),
    ("DropoutBackwardRedraws", "Dropout", "fail"),
    ("EmbeddingMaxNormAlwaysL2", "Embedding", "fail"),
    ("EmbeddingIgnoresFrequency", "Embedding", "fail"),
    ("PadPackedIgnoresBatchFirst", "pad_packed_sequence", "fail"),
    ("PackUnsortedIndicesNotInverted", "pack_padded_sequence", "fail"),
]


@pytest.mark.parametrize(("adapter", "op", "how"), CASES, ids=[c[0] for c in CASES])
def test_wrong_adapter_is_caught(tmp_path, adapter, op, how):
    code = main(["run", "--backend", f"tests.wrong_backends.declaration:{adapter}", "--ops", op,
                 "--dtypes", "float32", "--profile", "ci", "--no-invalid", "--quiet", "--first-failure", "--no-isolate",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    final = [r for r in records if r["final"] and r["verdict"] == "fail"]
    assert final, sorted({r["verdict"] for r in records})
    if how == "stat":  # caught by the statistical check of the target's random choices
        assert any(r["tier"] == "stat" for r in final)
    else:  # caught case by case, and shrunk to a small case
        shrunk = [r for r in final if r["tier"] != "stat"]
        assert shrunk
        sizes = [sum(max(1, _numel(i["shape"])) for i in r["case"]["inputs"].values()) for r in shrunk]
        assert min(sizes) <= 64, sizes


def _numel(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
