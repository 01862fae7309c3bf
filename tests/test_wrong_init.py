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


def _known_file(tmp_path, symptom: str, backend: str, strict: bool = True) -> str:
    path = tmp_path / "known.toml"
    path.write_text(f'''[[discrepancy]]
id = "wrong-bound"
op = "xavier_uniform_"
when = "not variant"
backend = "{backend}"
symptom = {symptom}
strict = {str(strict).lower()}
reason = "the bound is the normal std. Repro: see the adapter"
link = "https://example.org"
''')
    return str(path)


@pytest.mark.parametrize(("symptom", "code"), [('"statistics"', 0), ('["value", "shape"]', 1)])
def test_a_wrong_distribution_is_known_only_to_an_entry_naming_the_statistics_symptom(tmp_path, symptom, code):
    known = _known_file(tmp_path, symptom, "wrong-xavier-bound")
    argv = ["run", "--backend", "tests.wrong_backends.init:XavierNormalBound", "--ops", "xavier_uniform_",
            "--dtypes", "float64", "--profile", "ci", "--examples", "8", "--no-invalid", "--known", known,
            "--report-dir", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == code
    stat = [r for r in read_records(tmp_path / "run") if r["tier"] == "stat" and not r["variant"]]
    assert [r["verdict"] for r in stat] == (["known"] if code == 0 else ["fail"])


def test_a_strict_statistics_entry_whose_tests_pass_is_an_unexpected_pass(tmp_path):
    known = _known_file(tmp_path, '"statistics"', "torch-cpu")
    argv = ["run", "--backend", "torch-cpu", "--ops", "xavier_uniform_", "--dtypes", "float64", "--profile", "ci",
            "--examples", "8", "--no-invalid", "--known", known, "--report-dir", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 1
    assert [r["known"]["id"] for r in read_records(tmp_path / "run") if r["verdict"] == "xpass"] == ["wrong-bound"]
