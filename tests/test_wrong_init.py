"""Each deliberately wrong adapter of the init group (tests/wrong_backends/init.py) is caught by a
ci-profile run of one op in one dtype (isolated: a torch abort is a verdict, not the end of pytest): exit code 1 and a
final failing record (a shrunk case, or the target's statistical record for a wrong distribution)."""

from __future__ import annotations

import pytest

from conformance.cli import main
from reports.records import read_records

WRONG = [
    ("KaimingFanOut", "kaiming_uniform_"),
    ("XavierNormalBound", "xavier_uniform_"),
    ("OrthogonalWideRows", "orthogonal_"),
    ("WeightNormWrongDim", "weight_norm"),
    ("SpectralNormFrozenU", "spectral_norm"),
    ("FusionForgetsBias", "fuse_conv_bn_eval"),
    ("LazyLinearFirstDim", "LazyLinear"),
]


@pytest.mark.parametrize("adapter, op", WRONG, ids=[a for a, _ in WRONG])
def test_wrong_init_adapter_is_caught(adapter, op, tmp_path):
    code = main(["run", "--backend", f"tests.wrong_backends.init:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--profile", "ci", "--examples", "8", "--no-invalid", "--report-dir", str(tmp_path),
                 "--quiet", "--first-failure"])
    assert code == 1
    records = list(read_records(tmp_path))
    failing = [r for r in records if r["verdict"] in ("fail", "error") and r["final"] and r["entry"] == op]
    assert failing, sorted({(r["op"], r["verdict"], r["final"]) for r in records})
    shrunk = [r for r in failing if r.get("case") and r["tier"] != "stat"]
    for record in shrunk:  # a shrunk case is small
        assert sum(max(1, _size(i["shape"])) for i in record["case"]["inputs"].values()) <= 256, record["case"]


def _size(shape):
    out = 1
    for s in shape:
        out *= s
    return out
