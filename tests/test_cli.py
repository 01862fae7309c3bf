"""The command line: listing, usage errors (one line, exit 2), exit codes and run artifacts."""

from __future__ import annotations

import json

import pytest

from conformance.cli import main
from reports.records import read_records, read_run_info


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_names_every_declared_layer(capsys):
    code, out, _ = _run(capsys, "list", "--json")
    items = json.loads(out)
    assert code == 0
    names = {i["name"] for i in items}
    assert "ReLU" in names
    for item in items:
        assert {"name", "family", "forward", "backward"} <= set(item)


def test_list_shows_regimes_and_explains_its_count(capsys):
    code, out, _ = _run(capsys, "list")
    lines = out.splitlines()
    assert code == 0
    relu = lines.index(next(line for line in lines if line.startswith("ReLU ")))
    assert "activation" in lines[relu] and "forward + backward" in lines[relu]
    assert lines[relu + 1].strip().startswith("regimes: at the kink; ")
    assert any(line.strip().startswith("[packed] regimes:") for line in lines)  # a variant's own line
    items = json.loads(_run(capsys, "list", "--json")[1])
    declarations = sum(len(i["variants"]) for i in items)
    regimes = sum(len(v["regimes"]) for i in items for v in i["variants"])
    assert lines[-1].startswith(f"{len(items)} catalogue entries in {declarations} declarations (")
    assert f"{regimes} regimes in all" in lines[-1] and "one declaration × backend × dtype" in lines[-1]


class _LongNamedBackend:
    """A backend whose name is longer than any built-in one (for the alignment of ``backends``)."""

    name = "a-vendor-backend-with-a-rather-long-name"
    known_as = ()

    def availability(self):
        return False, "no such device here"

    def capabilities(self):
        from backends.base import Capabilities

        return Capabilities(devices=("npu",), dtypes=("float16",))


def test_backends_output_is_aligned_for_long_names(capsys, monkeypatch):
    import conformance.registry as registry

    names = [*registry.known_backends(), "long"]
    monkeypatch.setattr(registry, "known_backends", lambda: names)
    real = registry.load_backend
    monkeypatch.setattr(registry, "load_backend", lambda name: _LongNamedBackend() if name == "long" else real(name))
    code, out, _ = _run(capsys, "backends")
    lines = out.splitlines()
    assert code == 0 and lines[-1].startswith(_LongNamedBackend.name + "  unavailable: no such device here")
    starts = {line.index(" available") if " available" in line else line.index(" unavailable") for line in lines}
    assert len(starts) == 1, out  # every state starts in one column


def test_backends_reports_cuda_unavailability_with_reason(capsys):
    code, out, _ = _run(capsys, "backends", "--json")
    infos = {i["name"]: i for i in json.loads(out)}
    assert code == 0 and infos["torch-cpu"]["available"]
    cuda = infos["torch-cuda"]
    if not cuda["available"]:
        assert cuda["reason"]


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--ops", "NoSuchLayer"], "unknown op"),
    (["run", "--backend", "no-such-backend"], "unknown backend"),
    (["run", "--backend", "no_such_module:Backend"], "cannot import"),
    (["run", "--backend", "tests.wrong_backends.generic:Missing"], "no attribute"),
    (["run", "--dtypes", "float8"], "unknown dtype"),
    (["run", "--examples", "0"], "positive integer"),
    (["run", "--timeout", "-1"], "positive number"),
    (["run", "--profile", "fast"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    (["report", "/nonexistent/dir"], "results.jsonl"),
    (["run", "--ops", "ReLU", "--report-dir", "/proc/nnconform-cannot-write"], "cannot write the report directory"),
    (["run", "--ops", ""], "--ops was given an empty list"),
    (["run", "--ops", " , "], "--ops was given an empty list"),
    (["run", "--dtypes", ""], "--dtypes was given an empty list"),
    (["run", "--backend", ""], "--backend was given an empty list"),
    (["run", "-j", "0"], "positive integer"),
    (["run", "--jobs", "two"], "positive integer"),
    (["run", "--shard", "3/2"], "expected K/N"),
    (["run", "--shard", "0/2"], "expected K/N"),
    (["run", "--shard", "half"], "expected K/N"),
    (["merge", "--report-dir", "/tmp/nnconform-merged", "/nonexistent/shard"], "results.jsonl"),
    (["merge", "/nonexistent/shard"], "--report-dir"),
    (["costs", "/nonexistent/run"], "does not exist"),
    (["coverage", "/nonexistent/run"], "does not exist"),
])
def test_usage_errors_are_one_line_with_exit_code_2(capsys, argv, fragment):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnconform: error:") and fragment in lines[0], err
    assert "Traceback" not in err


def test_unavailable_backend_is_a_usage_error_unless_skipped(capsys, tmp_path):
    from conformance.registry import load_backend

    if load_backend("torch-cuda").availability()[0]:
        pytest.skip("a GPU is present")
    code, _, err = _run(capsys, "run", "--backend", "torch-cuda", "--ops", "ReLU", "--report-dir", str(tmp_path))
    assert code == 2 and "unavailable" in err
    code, _, err = _run(capsys, "run", "--backend", "torch-cuda", "--skip-unavailable", "--ops", "ReLU",
                        "--report-dir", str(tmp_path), "--quiet")
    # Nothing ran: an incomplete run (exit 3), never green.
    assert code == 3 and "unavailable" in err and "no case was run" in err
    assert read_run_info(tmp_path)["backends"][0]["available"] is False


def test_run_writes_records_and_reports_and_exits_0_when_conforming(capsys, tmp_path):
    code, out, _ = _run(capsys, "run", "--ops", "ReLU", "--dtypes", "float32,bfloat16", "--examples", "5",
                        "--report-dir", str(tmp_path), "--quiet")
    assert code == 0, out
    records = list(read_records(tmp_path))
    assert {r["dtype"] for r in records} == {"float32", "bfloat16"}
    assert all(r["verdict"] == "pass" for r in records)
    info = read_run_info(tmp_path)
    assert info["exit_code"] == 0 and info["cases"] == len(records)
    assert (tmp_path / "report.html").exists() and (tmp_path / "junit.xml").exists()


def test_first_failure_ends_a_target_at_its_first_shrunk_discrepancy(capsys, tmp_path):
    """--first-failure skips the searches after a target's first discrepancy; a target that
    conforms is searched in full, exactly as without it."""
    wrong = ["--backend", "tests.wrong_backends.generic:ReluGradAtZero", "--ops", "ReLU", "--dtypes", "float32",
             "--no-invalid", "--no-isolate", "--quiet"]
    searched = []
    for flags, where in (([], "all"), (["--first-failure"], "first")):
        assert _run(capsys, "run", *wrong, *flags, "--report-dir", str(tmp_path / where))[0] == 1
        records = list(read_records(tmp_path / where))
        searched.append({r.get("regime") for r in records if r["verdict"] != "xpass"})
        finals = [r for r in records if r["final"] and r["verdict"] == "fail"]
        assert finals
    assert searched[1] < searched[0] and len(searched[1]) == 1
    assert read_run_info(tmp_path / "first")["first_failure"] is True
    counts = []
    for flags, where in (([], "plain"), (["--first-failure"], "plain-x")):
        code, _, _ = _run(capsys, "run", "--ops", "ReLU", "--dtypes", "float32", "--examples", "5", "--no-isolate",
                          "--quiet", *flags, "--report-dir", str(tmp_path / where))
        assert code == 0
        counts.append(sorted(r["case_id"] for r in read_records(tmp_path / where) if r.get("case_id")))
    assert counts[0] == counts[1] and counts[0]


def test_wrong_backend_is_caught_with_exit_1_and_a_shrunk_repro(capsys, tmp_path):
    code, out, _ = _run(capsys, "run", "--backend", "tests.wrong_backends.generic:ReluGradAtZero", "--ops", "ReLU",
                        "--dtypes", "float32", "--report-dir", str(tmp_path), "--quiet")
    assert code == 1
    finals = [r for r in read_records(tmp_path) if r["final"] and r["verdict"] == "fail"]
    # one shrunk example per search that met the bug: the random one and the "at the kink" regime
    assert finals and all(f["op"] == "ReLU" and f["backend"] == "wrong-relu-kink" for f in finals)
    final = finals[0]
    bad = [c for c in final["comparisons"] if not c["ok"]]
    assert [c["tensor"] for c in bad] == ["grad.input"]
    # shrunk: one element (0-d) suffices to show the kink bug
    assert final["case"]["inputs"]["input"]["shape"] in ([], [1])
    assert (tmp_path / final["artifacts"]["npz"]).exists()
    assert (tmp_path / final["artifacts"]["repro"]).exists()
    assert "ReLU" in (tmp_path / "report.html").read_text()
    # the repro command works from where the run was started: it names the report directory
    assert f"repro:python{tmp_path}/repro/ReLU-wrong-relu-kink-float32-" in "".join(out.split())

    # the findings of that run, for people, as bug reports, as JSON; then drafted known entries
    code, out, _ = _run(capsys, "findings", str(tmp_path))
    assert code == 0 and "F1. ReLU on wrong-relu-kink: wrong values in grad.input where" in out.replace("\n", " ")
    code, out, _ = _run(capsys, "findings", str(tmp_path), "--markdown")
    assert code == 0 and out.startswith("## ReLU on wrong-relu-kink: wrong values in grad.input")
    assert "```python\nimport torch\n" in out and "### Where it fails" in out
    code, out, _ = _run(capsys, "findings", str(tmp_path), "--json")
    assert code == 0 and [f["id"] for f in json.loads(out)["findings"]] == ["F1"]
    code, out, _ = _run(capsys, "triage", str(tmp_path))
    assert code == 0 and out.count("[[discrepancy]]") == 1 and 'backend = "wrong-relu-kink"' in out
    code, _, err = _run(capsys, "findings", str(tmp_path), "--finding", "F7")
    assert code == 2 and "no finding F7 (the run has F1)" in err


def test_a_raising_backend_is_recorded_and_the_run_goes_on(capsys, tmp_path):
    code, _, _ = _run(capsys, "run", "--backend", "tests.wrong_backends.generic:Raises", "--ops", "ReLU",
                      "--dtypes", "float64,float32", "--examples", "3", "--report-dir", str(tmp_path), "--quiet")
    records = list(read_records(tmp_path))
    assert code == 1
    assert {r["dtype"] for r in records if r["verdict"] == "error"} == {"float64", "float32"}
    assert all("kernel exploded" in r["error"] for r in records if r["verdict"] == "error")


def test_unsupported_layers_are_never_reported_as_passed(capsys, tmp_path):
    code, _, _ = _run(capsys, "run", "--backend", "tests.wrong_backends.generic:ClaimsNothing", "--ops", "ReLU",
                      "--report-dir", str(tmp_path), "--quiet")
    records = list(read_records(tmp_path))
    assert code == 3  # nothing was run: an incomplete run, never green
    assert records and all(r["verdict"] == "unsupported" for r in records)


def test_a_crashing_backend_is_recorded_as_crash_and_the_run_goes_on(capsys, tmp_path):
    code, _, _ = _run(capsys, "run", "--backend", "tests.wrong_backends.generic:Segfaults", "--ops", "Linear,ReLU",
                      "--dtypes", "float32", "--examples", "5", "--no-invalid", "--report-dir", str(tmp_path),
                      "--quiet")
    records = list(read_records(tmp_path))
    crashes = [r for r in records if r["verdict"] == "crash" and r["final"]]
    assert code == 1 and len(crashes) == 1 and "SIGSEGV" in crashes[0]["error"]
    assert crashes[0]["op"] == "Linear" and crashes[0]["artifacts"]["repro"]
    assert {r["verdict"] for r in records if r["op"] == "ReLU"} == {"pass"}


def test_a_crash_record_quotes_the_workers_last_stderr_lines(capsys, tmp_path):
    """What a dying worker printed (glibc's heap-corruption message) is in the crash record, not
    in the terminal."""
    code, _, err = _run(capsys, "run", "--backend", "tests.wrong_backends.generic:AbortsWithMessage", "--ops",
                        "Linear", "--dtypes", "float32", "--examples", "3", "--no-invalid", "--report-dir",
                        str(tmp_path), "--quiet")
    crashes = [r for r in read_records(tmp_path) if r["verdict"] == "crash" and r["final"]]
    assert code == 1 and len(crashes) == 1
    assert "SIGABRT" in crashes[0]["error"] and "stderr: free(): invalid next size (fast)" in crashes[0]["error"]
    assert "invalid next size" not in err


def test_a_hanging_backend_is_recorded_as_timeout_and_the_run_goes_on(capsys, tmp_path):
    code, _, _ = _run(capsys, "run", "--backend", "tests.wrong_backends.generic:Hangs", "--ops", "ReLU,Linear",
                      "--dtypes", "float32", "--examples", "5", "--no-invalid", "--timeout", "5",
                      "--report-dir", str(tmp_path), "--quiet")
    records = list(read_records(tmp_path))
    timeouts = [r for r in records if r["verdict"] == "timeout"]
    assert code == 1 and len(timeouts) == 1 and timeouts[0]["final"]
    assert {r["verdict"] for r in records if r["op"] == "Linear"} == {"pass"}
