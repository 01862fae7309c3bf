"""pytest plugin: run the conformance suite as pytest tests, one per declaration × backend × dtype.

Inert unless ``--nnconform`` is given. Usage::

    pytest --pyargs conformance.pytest_suite --nnconform --nnconform-backend torch-cpu \\
        --nnconform-ops 'Conv*' --nnconform-dtypes float32 --nnconform-profile ci [-n auto]

Records and reports go to ``--nnconform-report-dir`` exactly as with ``nnconform run``. Backends
run isolated in worker processes (a crash or hang is a recorded verdict) as with ``nnconform
run``. Under pytest-xdist (``-n N``) each xdist worker writes its records to a part file, and the
controlling process combines the parts into one results.jsonl and renders the reports at the end.
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
    group.addoption("--nnconform-ops", default="", help="comma-separated layer names or globs")
    group.addoption("--nnconform-dtypes", default="", help="comma-separated dtypes")
    group.addoption("--nnconform-profile", default="ci", help="dev, ci or thorough")
    group.addoption("--nnconform-examples", type=int, default=None, help="examples per target")
    group.addoption("--nnconform-report-dir", default="nnconform-report", help="records and reports")
    group.addoption("--nnconform-timeout", type=float, default=120.0, help="per-case time limit (seconds)")


def _backend_names(config: Any) -> list[str]:
    return config.getoption("--nnconform-backend") or ["torch-cpu"]


def _targets(config: Any) -> list[tuple[str, Any, str]]:
    from backends.base import DTYPE_NAMES
    from conformance.spec import select_specs

    ops = [o for o in config.getoption("--nnconform-ops").split(",") if o]
    dtypes = [d for d in config.getoption("--nnconform-dtypes").split(",") if d] or list(DTYPE_NAMES)
    return [(b, s, d) for b in _backend_names(config) for s in select_specs(ops) for d in dtypes]


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
    report_dir = Path(config.getoption("--nnconform-report-dir"))
    worker = _worker_id(config)
    writer = RecordWriter(report_dir / PARTS, filename=f"{worker}.jsonl") if worker else RecordWriter(report_dir)
    settings = RunSettings(report_dir=str(report_dir), profile=config.getoption("--nnconform-profile"),
                           run_id=uuid.uuid4().hex[:12], examples=config.getoption("--nnconform-examples"),
                           timeout=config.getoption("--nnconform-timeout"))
    with Session(settings) as session:
        yield settings, session, writer
    writer.close()
    if worker is None:
        _render(report_dir)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """The controlling process of an xdist run combines the workers' parts and renders."""
    config = session.config
    if not config.getoption("--nnconform", default=False) or _worker_id(config) is not None:
        return
    report_dir = Path(config.getoption("--nnconform-report-dir"))
    parts = sorted((report_dir / PARTS).glob("*.jsonl")) if (report_dir / PARTS).is_dir() else []
    if not parts:
        return
    from reports.records import RESULTS_FILE

    with open(report_dir / RESULTS_FILE, "w", encoding="utf-8") as out:
        for part in parts:
            out.write(part.read_text(encoding="utf-8"))
            part.unlink()
    (report_dir / PARTS).rmdir()
    _render(report_dir)


def _render(report_dir: Path) -> None:
    try:
        from reports.render import render_all
    except ImportError:  # pragma: no cover
        return
    render_all(report_dir)


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
