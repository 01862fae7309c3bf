"""The pytest plugin: one test per target, alone and under pytest-xdist, with the same records."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from reports.records import read_records

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
