"""The harness fails loudly and safely: exit codes CI can use (0 conforms, 1 discrepancy, 2 usage,
3 harness error or incomplete run, 130 interrupted), one line and no traceback for every bad
input, no orphan processes, incomplete runs never green, and hostile inputs (paths, names,
messages) handled as data."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.cli import main
from reports.junit import build_junit
from reports.records import read_records, read_run_info

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--ops", "ReLU", "--dtypes", "float64", "--examples", "3", "--no-invalid", "--quiet"]


def _cli(*argv: str, env: dict[str, str] | None = None, stdin_closed_pipe: bool = False,
         cwd: Path = ROOT) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "conformance.cli", *argv], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)


def _one_line_no_traceback(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and "Traceback" not in stderr, stderr
    assert all(line.startswith("nnconform:") for line in lines), stderr


def test_a_backend_whose_constructor_raises_is_unavailable(tmp_path, capsys):
    code = main(["run", "--backend", "tests.wrong_backends.generic:ConstructorRaises", *QUICK,
                 "--report-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no device found" in err and "Traceback" not in err


def test_only_backend_unavailable_and_skipped_is_an_incomplete_run(tmp_path, capsys):
    code = main(["run", "--backend", "tests.wrong_backends.generic:ConstructorRaises", "--skip-unavailable", *QUICK,
                 "--report-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3 and "no case was run" in err


@pytest.mark.parametrize("argv, fragment", [
    (["--database", "DBDIR"], "derandomized ci profile"),
    (["--profile", "dev", "--database", "redis://127.0.0.1:1/0"], "redis"),
    (["--no-isolate", "--timeout", "5"], "--timeout needs isolated backends"),
])
def test_unusable_run_options_are_usage_errors(tmp_path, capsys, argv, fragment):
    argv = [a.replace("DBDIR", str(tmp_path / "db")) for a in argv]
    code = main(["run", *QUICK, "--report-dir", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("content", [os.urandom(300), b'{"verdict": "pass"\n[1, 2]\n"text"\n', b"\x00" * 64])
def test_report_of_garbage_results_exits_3_on_one_line(tmp_path, content):
    (tmp_path / "results.jsonl").write_bytes(content)
    proc = _cli("report", str(tmp_path))
    assert proc.returncode == 3, proc.stderr
    _one_line_no_traceback(proc.stderr)


def test_a_closed_pipe_and_an_ascii_terminal_are_no_errors():
    proc = subprocess.run(f"{sys.executable} -m conformance.cli list | head -1", shell=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() and "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    proc = _cli("list", env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def test_hostile_backend_name_is_text_everywhere_and_data_in_repro(tmp_path):
    """Markup, escapes, quotes and newlines in a backend's name: the run completes, the terminal
    shows no escape sequence, and the repro script's only code is its own."""
    proc = _cli("run", "--backend", "tests.wrong_backends.generic:HostileName", "--ops", "ReLU", "--dtypes",
                "float64", "--examples", "3", "--no-invalid", "--quiet", "--report-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[31m" not in proc.stdout and "Traceback" not in proc.stderr
    ET.parse(tmp_path / "junit.xml")  # well-formed
    assert "\x1b" not in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_repro_script_carries_hostile_strings_as_data(tmp_path):
    from conformance.artifacts import repro_sources
    from reports.repro import render_repro

    hostile = '"""\nimport os; os.system("echo pwned")\n"""\\'
    record = {"op": hostile, "backend": hostile, "device": hostile, "dtype": "float32", "verdict": hostile,
              "case_id": hostile, "backend_spec": hostile, "call": {"target": hostile},
              "case": {"op": hostile, "params": {"p": hostile}, "note": hostile, "inputs": {}}}
    script = render_repro(record, 'x"""y.npz', repro_sources(), 3.4e38, 2.0**-24)
    tree = ast.parse(script)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "system"]
    assert not calls, "the hostile name became code"


def test_report_reads_only_artifacts_inside_its_directory(tmp_path):
    from reports.html import render_html

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    run = tmp_path / "run"
    (run / "repro").mkdir(parents=True)
    (run / "repro" / "link.py").symlink_to(secret)
    records = []
    for i, path in enumerate([str(secret), "../secret.txt", "repro/link.py", "repro/../../secret.txt"]):
        records.append({"type": "case", "op": "ReLU", "backend": "torch-cpu", "dtype": "float32", "verdict": "fail",
                        "final": True, "case_id": f"c{i}", "comparisons": [], "artifacts": {"repro": path}})
    html = render_html(records, {}, report_dir=run)
    assert "TOP-SECRET-CONTENT" not in html


def test_merge_copies_no_symbolic_link(tmp_path):
    for k in (1, 2):
        assert main(["run", *QUICK, "--ops", "ELU", "--shard", f"{k}/2", "--report-dir", str(tmp_path / f"s{k}")]) == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    (tmp_path / "s1" / "repro").mkdir(exist_ok=True)
    (tmp_path / "s1" / "repro" / "evil.py").symlink_to(secret)
    assert main(["merge", "--report-dir", str(tmp_path / "m"), str(tmp_path / "s1"), str(tmp_path / "s2")]) == 0
    assert not (tmp_path / "m" / "repro" / "evil.py").exists()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    for k in (1, 2):
        assert main(["run", "--ops", "ReLU,ELU", "--dtypes", "float64", "--examples", "3", "--no-invalid", "--quiet",
                     "--shard", f"{k}/2", "--report-dir", str(base / f"s{k}")]) == 0
    return base


def test_merge_of_one_shard_of_two_is_incomplete(shards, tmp_path, capsys):
    code = main(["merge", "--report-dir", str(tmp_path / "m"), str(shards / "s1")])
    assert code == 3 and "shard 2/2 missing" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "m")]) == 3


def test_merge_refuses_duplicates_and_other_configurations(shards, tmp_path, capsys):
    import shutil

    shutil.copytree(shards / "s1", tmp_path / "copy")
    assert main(["merge", "--report-dir", str(tmp_path / "m"), str(shards / "s1"), str(tmp_path / "copy")]) == 2
    assert "given twice" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(shards / "s2", other)
    info = json.loads((other / "run.json").read_text())
    info["seed"] = 7
    (other / "run.json").write_text(json.dumps(info))
    assert main(["merge", "--report-dir", str(tmp_path / "m"), str(shards / "s1"), str(other)]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_a_torn_last_line_costs_only_itself(shards, tmp_path):
    import shutil

    torn = tmp_path / "torn"
    shutil.copytree(shards / "s1", torn)
    text = (torn / "results.jsonl").read_text()
    (torn / "results.jsonl").write_text(text[:-40])  # the last record cut mid-line, no newline
    lines = len(text.splitlines())
    code = main(["merge", "--report-dir", str(tmp_path / "m"), str(torn), str(shards / "s2")])
    assert code == 3
    merged = list(read_records(tmp_path / "m"))
    assert len(merged) == lines - 1 + len(list(read_records(shards / "s2")))


def _alive_in_session(session: int) -> list[str]:
    """The live processes of a session (zombies, dead but not yet reaped by a container's init,
    hold nothing and are left out)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(session)], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if len(line.split()) >= 2]
    return [" ".join(row)[:100] for row in rows if not row[1].startswith("Z")]


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["SIGKILL", "SIGTERM", "SIGTERM to the process group"])
def test_a_killed_parallel_run_leaves_no_process_and_an_incomplete_report(tmp_path, sig, group):
    """(A signal to the whole group, as ``timeout`` and CI runners send it, reaches the jobs and
    workers too: they leave the stop to the parent, which still stops cleanly.)"""
    marker = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "run", "--ops", "Conv1d,MaxPool1d,ReLU",
                             "-j", "2", "--quiet", "--report-dir", marker], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not read_run_info(marker).get("completed"):
        time.sleep(0.2)
    assert read_run_info(marker).get("completed"), "no target completed in time"
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    time.sleep(5)
    left = _alive_in_session(proc.pid)  # the run started a session of its own: every process it made
    assert not left, left
    if sig == signal.SIGTERM:
        assert proc.returncode == 130
    assert main(["report", marker]) == 3


@settings(max_examples=60)
@given(message=st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_junit_is_well_formed_for_any_message(message):
    record = {"type": "case", "op": message or "op", "backend": message, "dtype": "float32", "verdict": "error",
              "final": True, "case_id": message, "error": message, "error_side": "backend",
              "comparisons": [{"tensor": message, "ok": False, "message": message}],
              "known": {"id": message, "reason": message}}
    tree = build_junit([record, {**record, "verdict": "known", "final": False}], {"backends": [
        {"name": message, "available": False, "reason": message}]})
    ET.fromstring(ET.tostring(tree.getroot(), encoding="unicode"))
