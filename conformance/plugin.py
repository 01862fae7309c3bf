"""pytest plugin: run the conformance suite as pytest tests, one per declaration × backend × dtype.

Inert unless ``--nnconform`` is given. Usage::

    pytest --pyargs conformance.pytest_suite --nnconform --nnconform-backend torch-cpu \\
        --nnconform-ops 'Conv*' --nnconform-dtypes float32 --nnconform-profile ci [-n auto]

Records, findings and reports go to ``--nnconform-report-dir`` exactly as with ``nnconform run``.
Backends run isolated in worker processes (a crash or hang is a recorded verdict) as with
``nnconform run``. Under pytest-xdist (``-n N``) each xdist worker writes its records to a part
file, and the controlling process combines the parts into one results.jsonl and renders the
reports at the end.

The ``[tool.nnconform]`` table of the project's ``pyproject.toml`` (``conformance.config``, found
from the directory pytest was started in upward) gives the defaults of backends, ops, dtypes,
profile, known files and report directory, as for ``nnconform run``; options on the command line
win, and ``--nnconform-known FILE`` (repeatable) adds known files to the table's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

PARTS = ".parts"


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("nnconform", "nnconform conformance suite")
    group.addoption("--nnconform", action="store_true", help="collect the conformance suite")
    group.addoption("--nnconform-backend", action="append", default=None, help="backend (repeatable)")
    group.addoption("--nnconform-ops", default=None, help="comma-separated layer names or globs")
    group.addoption("--nnconform-dtypes", default=None, help="comma-separated dtypes")
    group.addoption("--nnconform-profile", default=None, help="dev, ci (default) or thorough")
    group.addoption("--nnconform-examples", type=int, default=None, help="examples per target")
    group.addoption("--nnconform-report-dir", default=None, help="records and reports (default nnconform-report)")
    group.addoption("--nnconform-timeout", type=float, default=120.0, help="per-case time limit (seconds)")
    group.addoption("--nnconform-known", action="append", default=None, metavar="FILE",
                    help="a known-discrepancy file of your own (repeatable)")
    group.addoption("--nnconform-no-config", action="store_true", help="ignore [tool.nnconform] in pyproject.toml")


def _settings(config: Any) -> dict[str, Any]:
    """The run's options: the command line's, else ``[tool.nnconform]``'s, else the defaults
    (read once per pytest process)."""
    cached = getattr(config, "_nnconform_settings", None)
    if cached is not None:
        return cached
    from conformance.config import Config, ConfigError, load_config

    try:
        table = Config() if config.getoption("--nnconform-no-config") else load_config(
            start=config.invocation_params.dir)
    except ConfigError as exc:
        raise pytest.UsageError(f"nnconform: {exc}") from None

    def listed(option: str, default: tuple[str, ...]) -> list[str]:
        given = config.getoption(option)
        if given is None:
            return list(default)
        values = given if isinstance(given, list) else [given]
        return [x.strip() for v in values for x in v.split(",") if x.strip()]

    known = [str(Path(f).resolve()) for f in [*table.known, *(config.getoption("--nnconform-known") or [])]]
    if known and config.getoption("--nnconform"):
        from conformance.known import load_known

        try:  # a malformed entry is a usage error naming its file and line, before any test runs
            load_known(extra=known)
        except ValueError as exc:
            raise pytest.UsageError(f"nnconform: {exc}") from None
    settings = {
        "backends": listed("--nnconform-backend", table.backends) or ["torch-cpu"],
        "ops": listed("--nnconform-ops", table.ops), "dtypes": listed("--nnconform-dtypes", table.dtypes),
        "profile": config.getoption("--nnconform-profile") or table.profile or "ci",
        "report_dir": config.getoption("--nnconform-report-dir") or table.report_dir or "nnconform-report",
        "known": tuple(known),
    }
    config._nnconform_settings = settings
    return settings


def _backend_names(config: Any) -> list[str]:
    return _settings(config)["backends"]


def _targets(config: Any) -> list[tuple[str, Any, str]]:
    from backends.base import DTYPE_NAMES
    from conformance.spec import select_specs

    settings = _settings(config)
    dtypes = settings["dtypes"] or list(DTYPE_NAMES)
    return [(b, s, d) for b in _backend_names(config) for s in select_specs(settings["ops"]) for d in dtypes]


def pytest_generate_tests(metafunc: Any) -> None:
    if "nnconform_target" not in metafunc.fixturenames:
        return
    config = metafunc.config
    targets = _targets(config) if config.getoption("--nnconform") else []
    metafunc.parametrize("nnconform_target", targets, ids=[f"{s.id}[{b}-{d}]" for b, s, d in targets])


def _worker_id(config: Any) -> str | None:
    """The pytest-xdist worker this process is (None in the controlling or only process)."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("workerid") if workerinput else None


@pytest.fixture(scope="session")
def nnconform_session(request: Any) -> Any:
    """(settings, session, writer) shared by the conformance tests of this process."""
    import uuid

    from conformance.driver import RunSettings, Session
    from reports.records import RecordWriter

    config = request.config
    options = _settings(config)
    report_dir = Path(options["report_dir"])
    worker = _worker_id(config)
    writer = RecordWriter(report_dir / PARTS, filename=f"{worker}.jsonl") if worker else RecordWriter(report_dir)
    settings = RunSettings(report_dir=str(report_dir), profile=options["profile"],
                           run_id=uuid.uuid4().hex[:12], examples=config.getoption("--nnconform-examples"),
                           timeout=config.getoption("--nnconform-timeout"), known=options["known"])
    with Session(settings) as session:
        yield settings, session, writer
    writer.close()
    if worker is None:
        _write_run_info(config, report_dir, settings.run_id)
        _render(report_dir)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """The controlling process of an xdist run combines the workers' parts and renders."""
    config = session.config
    if not config.getoption("--nnconform", default=False) or _worker_id(config) is not None:
        return
    report_dir = Path(_settings(config)["report_dir"])
    parts = sorted((report_dir / PARTS).glob("*.jsonl")) if (report_dir / PARTS).is_dir() else []
    if not parts:
        return
    from reports.records import RESULTS_FILE

    with open(report_dir / RESULTS_FILE, "w", encoding="utf-8") as out:
        for part in parts:
            out.write(part.read_text(encoding="utf-8"))
            part.unlink()
    (report_dir / PARTS).rmdir()
    _write_run_info(config, report_dir)
    _render(report_dir)


def _write_run_info(config: Any, report_dir: Path, run_id: str = "") -> None:
    """run.json for the reports: how pytest was started and what the run covered."""
    import platform
    import sys
    from datetime import datetime, timezone

    from reports.records import write_run_info

    options = _settings(config)
    write_run_info(report_dir, {
        "run_id": run_id, "status": "complete", "argv": ["pytest", *config.invocation_params.args],
        "profile": options["profile"], "ops": options["ops"] or ["all"], "dtypes": options["dtypes"] or ["all"],
        "backends": [{"name": b, "spec": b, "available": True} for b in options["backends"]],
        "known_files": list(options["known"]), "report_dir": str(report_dir),
        "finished": datetime.now(timezone.utc).isoformat(),
        "versions": {"python": platform.python_version(), "pytest": sys.modules["pytest"].__version__},
    })


def _render(report_dir: Path) -> None:
    """Findings (``findings.json``), then the HTML and JUnit reports."""
    from conformance.findings import render_run

    render_run(report_dir)


def check_target(nnconform_session: Any, target: tuple[str, Any, str]) -> None:
    """Run one target through the run driver and fail the test with the discrepancy summary."""
    from backends.base import DISCREPANCY_VERDICTS
    from conformance.driver import Target, run_target

    settings, session, writer = nnconform_session
    backend_name, spec, dtype = target
    backend = session.backend(backend_name)
    available, reason = backend.availability()
    if not available:
        pytest.skip(f"{backend.name} unavailable: {reason}")
    outcome = run_target(settings, Target(spec.id, backend_name, dtype), writer, session)
    if outcome.verdicts.get("unsupported"):
        pytest.skip(f"{backend.name} does not support {spec.id} in {dtype}")
    bad = {v: n for v, n in outcome.verdicts.items() if v in DISCREPANCY_VERDICTS}
    assert not bad, f"{spec.id} on {backend.name} ({dtype}): {bad}; see {settings.report_dir}"
