"""Each deliberately wrong dropout / EmbeddingBag adapter (tests/wrong_backends/dropout.py) is caught by a
ci-profile run of its one op: case by case and shrunk to a small case, or, for a mask of the right
rate and structure but shared across the batch, by the target's independence statistics."""

from __future__ import annotations

import math

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("Dropout1dElementwise", "Dropout1d", "random.mask"),
    ("AlphaDropoutPlainScaling", "AlphaDropout", "output"),
    ("EmbeddingBagMeanCountsPadding", "EmbeddingBag", "output"),
    ("EmbeddingBagMaxGradToAll", "EmbeddingBag", "grad.weight"),
    ("EmbeddingBagIgnoresLastOffset", "EmbeddingBag", "output"),
]
SMALL = 64  # elements of the shrunk case's inputs


def _run(tmp_path, adapter, op):
    code = main(["run", "--backend", f"tests.wrong_backends.dropout:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--examples", "8", "--profile", "ci", "--no-invalid", "--no-isolate", "--quiet", "--first-failure",
                 "--report-dir", str(tmp_path)])
    return code, list(read_records(tmp_path))


@pytest.mark.parametrize(("adapter", "op", "tensor"), CASES, ids=[c[0] for c in CASES])
def test_wrong_adapter_is_caught_and_shrunk(tmp_path, adapter, op, tensor):
    code, records = _run(tmp_path, adapter, op)
    assert code == 1
    finals = [r for r in records if r["final"] and r["verdict"] == "fail" and r["tier"] != "stat"]
    assert finals, sorted({r["verdict"] for r in records})
    failing = {c["tensor"] for c in finals[0]["comparisons"] if not c["ok"]}
    assert tensor in failing, failing
    size = sum(math.prod(i["shape"]) for i in finals[0]["case"]["inputs"].values())
    assert size <= SMALL, finals[0]["case"]


def test_a_mask_shared_across_the_batch_is_caught_by_the_statistics(tmp_path):
    code, records = _run(tmp_path, "FeatureAlphaDropoutSharedAcrossBatch", "FeatureAlphaDropout")
    assert code == 1
    assert {r["verdict"] for r in records if r["tier"] != "stat"} <= {"pass", "known"}  # right given its masks
    stats = [r for r in records if r["tier"] == "stat"]
    assert len(stats) == 1 and stats[0]["verdict"] == "fail"
    failed = {c["tensor"] for c in stats[0]["comparisons"] if not c["ok"]}
    assert failed == {"stat.independent samples"}, failed
