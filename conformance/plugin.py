"""pytest plugin: run the conformance suite as pytest tests, one per layer × backend × dtype.

Inert unless ``--nnconform`` is given. Usage::

    pytest --pyargs conformance.pytest_suite --nnconform --nnconform-backend torch-cpu \\
        --nnconform-ops 'Conv*' --nnconform-dtypes float32 --nnconform-profile ci

Records and reports go to ``--nnconform-report-dir`` exactly as with ``nnconform run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("nnconform", "nnconform conformance suite")
    group.addoption("--nnconform", action="store_true", help="collect the conformance suite")
    group.addoption("--nnconform-backend", action="append", default=None, help="backend (repeatable)")
    group.addoption("--nnconform-ops", default="", help="comma-separated layer names or globs")
    group.addoption("--nnconform-dtypes", default="", help="comma-separated dtypes")
    group.addoption("--nnconform-profile", default="ci", help="dev, ci or thorough")
    group.addoption("--nnconform-examples", type=int, default=None, help="examples per target")
    group.addoption("--nnconform-report-dir", default="nnconform-report", help="records and reports")


def _targets(config: Any) -> list[tuple[Any, Any, str]]:
    from conformance.dtypes import DTYPE_NAMES
    from conformance.registry import load_backend
    from conformance.spec import select_specs

    ops = [o for o in config.getoption("--nnconform-ops").split(",") if o]
    dtypes = [d for d in config.getoption("--nnconform-dtypes").split(",") if d] or list(DTYPE_NAMES)
    backends = [load_backend(b) for b in (config.getoption("--nnconform-backend") or ["torch-cpu"])]
    return [(b, s, d) for b in backends for s in select_specs(ops) for d in dtypes]


def pytest_generate_tests(metafunc: Any) -> None:
    if "nnconform_target" not in metafunc.fixturenames:
        return
    config = metafunc.config
    targets = _targets(config) if config.getoption("--nnconform") else []
    metafunc.parametrize("nnconform_target", targets,
                         ids=[f"{s.name}[{b.name}-{d}]" for b, s, d in targets])


@pytest.fixture(scope="session")
def nnconform_runner(request: Any) -> Any:
    from conformance.known import load_known
    from conformance.profiles import PROFILES
    from conformance.runner import Runner, RunRequest
    from reports.records import RecordWriter

    config = request.config
    report_dir = Path(config.getoption("--nnconform-report-dir"))
    profile = PROFILES[config.getoption("--nnconform-profile")]
    run_request = RunRequest(backends=[], specs=[], dtypes=[], profile=profile, report_dir=report_dir,
                             examples=config.getoption("--nnconform-examples"),
                             known=load_known())
    writer = RecordWriter(report_dir)
    yield Runner(run_request, writer)
    writer.close()
    try:
        from reports.render import render_all

        render_all(report_dir)
    except ImportError:  # pragma: no cover
        pass


def check_target(runner: Any, target: tuple[Any, Any, str]) -> None:
    """Run one target and fail the test with the discrepancy summary."""
    backend, spec, dtype = target
    available, reason = backend.availability()
    if not available:
        pytest.skip(f"{backend.name} unavailable: {reason}")
    tally = runner.run_target(backend, spec, dtype)
    if tally.verdicts.get("unsupported"):
        pytest.skip(f"{backend.name} does not support {spec.name} in {dtype}")
    from backends.base import DISCREPANCY_VERDICTS

    bad = {v: n for v, n in tally.verdicts.items() if v in DISCREPANCY_VERDICTS}
    assert not bad, f"{spec.name} on {backend.name} ({dtype}): {bad}; see {runner.request.report_dir}"
