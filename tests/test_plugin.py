"""The pytest plugin: one test per target, alone and under pytest-xdist, with the same records."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from reports.records import read_records, read_run_info

pytest.importorskip("xdist")


def _pytest(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "conformance.pytest_suite",
            "--nnconform", "--nnconform-ops", "ReLU,Linear", "--nnconform-dtypes", "float32,bfloat16",
            "--nnconform-report-dir", str(tmp_path), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def test_plugin_runs_targets_as_tests_alone_and_under_xdist(tmp_path):
    alone = _pytest(tmp_path / "alone")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "4 passed" in alone.stdout
    spread = _pytest(tmp_path / "xdist", "-n", "2")
    assert spread.returncode == 0, spread.stdout + spread.stderr
    assert "4 passed" in spread.stdout

    def cases(directory):
        return Counter((r["op"], r["dtype"], r["case_id"], r["verdict"]) for r in read_records(directory))

    assert cases(tmp_path / "xdist") == cases(tmp_path / "alone") and sum(cases(tmp_path / "alone").values()) > 40
    assert (tmp_path / "xdist" / "report.html").exists() and not (tmp_path / "xdist" / ".parts").exists()
    for run in ("alone", "xdist"):  # run.json says how it ran: the report is complete, with its findings
        assert read_run_info(tmp_path / run)["status"] == "complete"
        assert "INCOMPLETE RUN" not in (tmp_path / run / "report.html").read_text()
        assert (tmp_path / run / "findings.json").exists()


def test_plugin_reads_the_project_table_and_the_users_known_files(tmp_path):
    """Run from a project directory: [tool.nnconform] gives ops, dtypes and the report directory;
    --nnconform-known adds a file whose strict entry never fails (an unexpected pass: the test
    fails); findings and reports are written as by ``nnconform run``."""
    import os
    import textwrap
    from pathlib import Path

    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""\
        [tool.nnconform]
        ops = ["ReLU"]
        dtypes = ["float32"]
        report-dir = "conformance-report"
    """))
    (tmp_path / "mine.toml").write_text(textwrap.dedent("""\
        [[discrepancy]]
        id = "relu-never"
        op = "ReLU"
        backend = "torch-cpu"
        tensors = ["output"]
        symptom = "value"
        reason = "a strict entry no case fails: an unexpected pass"
    """))
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--pyargs",
            "conformance.pytest_suite", "--nnconform", "--nnconform-examples", "3", "--rootdir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    report = tmp_path / "conformance-report"
    assert {(r["op"], r["dtype"]) for r in read_records(report)} == {("ReLU", "float32")}
    assert (report / "findings.json").exists() and (report / "report.html").exists()
    done = subprocess.run(argv + ["--nnconform-known", "mine.toml"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=env)
    assert done.returncode == 1 and "1 failed" in done.stdout and "xpass" in done.stdout, done.stdout
    (tmp_path / "mine.toml").write_text('[[discrepancy]]\nid = "x"\nop = "ReLU"\n')
    done = subprocess.run(argv + ["--nnconform-known", "mine.toml"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=env)
    assert done.returncode == 4 and "mine.toml:1: entry 'x' lacks backend, reason" in done.stderr, done.stderr
