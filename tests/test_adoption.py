"""Adopting nnconform on a new backend, as a vendor would (issue #20): run, triage the findings
into the project's own known file, rerun gated on it, then catch a new bug. Also the project
configuration (``[tool.nnconform]``) and the user's known files (``--known``).

The adapter (``tests/wrong_backends/adoption.py``) is torch with three wrong kernels of its own
(ELU ignores alpha, ReLU's derivative at 0 is 1, Tanh reads permuted inputs in memory order); its
next release adds a fourth (LeakyReLU ignores its slope).
"""

from __future__ import annotations

import json
import textwrap

from conformance.known import load_file
from reports.records import read_records, read_run_info
from tests.report_runs import cli

ADAPTER = "tests.wrong_backends.adoption:AdoptionVendor"
NEXT_RELEASE = "tests.wrong_backends.adoption:AdoptionVendorNextRelease"
FAST = ("--dtypes", "float32", "--examples", "8", "--no-invalid", "--no-isolate", "-j", "1", "--quiet", "--no-config")


def _findings(directory):
    return json.loads((directory / "findings.json").read_text())["findings"]


def test_adoption_path(tmp_path):
    # 1. The first run: dozens of failing cases, three findings, one per bug.
    first = tmp_path / "first"
    code, out, err = cli("run", "--backend", ADAPTER, "--ops", "ELU,ReLU,Tanh", "--report-dir", str(first), *FAST)
    assert code == 1, out + err
    findings = _findings(first)
    assert [f["op"] for f in findings] == ["ELU", "ReLU", "Tanh"], [f["title"] for f in findings]
    elu, relu, tanh = findings
    assert elu["tensors"] == ["output", "grad.input"] and "alpha != 1" in elu["rule"]["text"]
    assert relu["tensors"] == ["grad.input"] and "'at the kink'" in relu["rule"]["text"]
    assert tanh["rule"]["text"] == "layout of input == permuted"
    failing_draws = [r for r in read_records(first) if r["verdict"] == "fail" and not r["shrinking"] and not r["final"]]
    assert sum(f["cases"] for f in findings) == len(failing_draws)  # never a shrink replay
    assert "3 findings from" in out.splitlines()[-1]
    # Every finding names its repro from where the run was started.
    assert f"repro:python{first}/repro/ELU-adopt-vendor-float32-" in "".join(out.split())

    # 2. Triage: one strict entry per finding, in the project's own file.
    known = tmp_path / "vendor-known.toml"
    code, out, err = cli("triage", str(first), "--write-known", str(known), "--no-config")
    assert code == 0 and "3 entries written" in out, out + err
    entries = load_file(known)
    assert len(entries) == 3 and all(e.strict and e.backend == "adopt-vendor" for e in entries)
    assert {e.op for e in entries} == {"ELU", "ReLU", "Tanh"}
    assert all("Repro: python" in e.reason and "--backend " + ADAPTER in e.reason for e in entries)

    # 3. The rerun gated on it conforms: every failure is known, no entry is an unexpected pass.
    second = tmp_path / "second"
    code, out, err = cli("run", "--backend", ADAPTER, "--ops", "ELU,ReLU,Tanh", "--report-dir", str(second),
                         "--known", str(known), *FAST)
    assert code == 0, out + err
    verdicts = {r["verdict"] for r in read_records(second)}
    assert verdicts == {"pass", "known"} and _findings(second) == []
    assert read_run_info(second)["known_files"] == [str(known.resolve())]

    # 4. The next release has a new bug: exit 1 with exactly one new finding, the old ones still known.
    third = tmp_path / "third"
    code, out, err = cli("run", "--backend", NEXT_RELEASE, "--ops", "ELU,ReLU,Tanh,LeakyReLU", "--report-dir",
                         str(third), "--known", str(known), *FAST)
    assert code == 1, out + err
    (new,) = _findings(third)
    assert new["op"] == "LeakyReLU" and "negative_slope != 0.01" in new["rule"]["text"]
    drafted = {e.id for e in entries}
    assert {r["op"] for r in read_records(third) if (r["known"] or {}).get("id") in drafted} == {"ELU", "ReLU", "Tanh"}


def _project(tmp_path, table: str, known: str = "") -> None:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(table))
    if known:
        (tmp_path / "known.toml").write_text(textwrap.dedent(known))


STRICT_EVERYWHERE = """\
    [[discrepancy]]
    id = "relu-always"
    op = "ReLU"
    backend = "torch-cpu"
    tensors = ["output"]
    symptom = "value"
    reason = "a strict entry that matches every case (so that it shows as an unexpected pass)"
"""


def test_the_project_table_sets_the_run(tmp_path, monkeypatch):
    """[tool.nnconform] in the pyproject.toml of the current directory (or above) gives backends,
    ops, dtypes, profile, known files and the report directory; the command line wins."""
    _project(tmp_path, """\
        [project]
        name = "my-backend"

        [tool.nnconform]
        backends = "torch-cpu"
        ops = ["ReLU"]
        dtypes = ["float32"]
        profile = "ci"
        known = ["known.toml"]
        report-dir = "build/conformance"
    """, STRICT_EVERYWHERE)
    sub = tmp_path / "src"
    sub.mkdir()
    monkeypatch.chdir(sub)  # found from a subdirectory: paths stay relative to the table's file
    code, out, err = cli("run", "--examples", "3", "--no-invalid", "--no-isolate", "-j", "1", "--quiet")
    report = tmp_path / "build" / "conformance"
    info = read_run_info(report)
    assert info["ops"] == ["ReLU"] and info["dtypes"] == ["float32"] and info["profile"] == "ci"
    assert [b["name"] for b in info["backends"]] == ["torch-cpu"]
    assert info["known_files"] == [str(tmp_path / "known.toml")]
    assert info["config"]["path"] == str(tmp_path / "pyproject.toml")
    # the project's strict entry matched and never failed: an unexpected pass, exit 1
    assert code == 1 and any(r["verdict"] == "xpass" for r in read_records(report)), out + err

    # the command line wins over the table (the table still gives the rest)
    code, out, err = cli("run", "--dtypes", "bfloat16", "--report-dir", str(tmp_path / "other"), "--examples", "3",
                         "--no-invalid", "--no-isolate", "-j", "1", "--quiet")
    info = read_run_info(tmp_path / "other")
    assert info["dtypes"] == ["bfloat16"] and info["ops"] == ["ReLU"] and len(info["known_files"]) == 1
    # --no-config ignores it: the default report directory, here, and no known file of the project
    code, out, err = cli("run", "--ops", "ReLU", "--dtypes", "float32", "--examples", "3", "--no-invalid",
                         "--no-isolate", "-j", "1", "--quiet", "--no-config")
    info = read_run_info(sub / "nnconform-report")
    assert code == 0 and info["known_files"] == [] and info["config"]["path"] is None, out + err


def test_a_bad_table_or_known_file_is_a_usage_error_naming_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, """\
        [tool.nnconform]
        ops = ["ReLU"]
        colour = "red"
    """)
    code, _, err = cli("run")
    assert code == 2 and f"{tmp_path / 'pyproject.toml'}:3: unknown key 'colour'" in err, err
    _project(tmp_path, '[tool.nnconform]\nprofile = "fastest"\n')
    code, _, err = cli("run")
    assert code == 2 and "pyproject.toml:2: unknown profile 'fastest'" in err, err

    (tmp_path / "mine.toml").write_text('[[discrepancy]]\nid = "a"\nop = "ReLU"\nbackend = "x"\nreason = "r"\n\n'
                                        '[[discrepancy]]\nid = "b"\nop = "ReLU"\nbackend = "x"\nreason = "r"\n'
                                        'symptom = "wrong"\n')
    code, _, err = cli("run", "--ops", "ReLU", "--known", "mine.toml", "--no-config", "--report-dir", "r")
    assert code == 2 and "mine.toml:7: entry 'b': unknown symptom 'wrong'" in err, err
    code, _, err = cli("run", "--ops", "ReLU", "--known", "missing.toml", "--no-config", "--report-dir", "r")
    assert code == 2 and "missing.toml: no such file" in err, err


def test_entries_for_a_backend_not_running_are_ignored(tmp_path):
    known = tmp_path / "other.toml"
    known.write_text(textwrap.dedent(STRICT_EVERYWHERE).replace('"torch-cpu"', '"other-vendor"'))
    code, out, err = cli("run", "--ops", "ReLU", "--dtypes", "float32", "--examples", "3", "--no-invalid",
                         "--no-isolate", "-j", "1", "--quiet", "--no-config", "--known", str(known),
                         "--report-dir", str(tmp_path / "r"))
    assert code == 0, out + err
    assert {r["verdict"] for r in read_records(tmp_path / "r")} == {"pass"}
