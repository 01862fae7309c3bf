"""The one run driver: ``run_target(settings, target, writer, session)``, the entry point
every front end uses (``Target``, ``RunSettings`` and ``Outcome`` live in ``conformance.settings``).

The ``nnconform run`` command (serially, or in parallel job processes), the pytest plugin and the
benchmarks all run targets through ``run_target``. A ``Session`` holds what outlives one target in
one process: the loaded (and, unless ``isolate`` is off, process-isolated) backends and the known
discrepancies. After a target's searches, the repro artifacts of its discrepancies are written from
its records (``conformance.artifacts``), never during the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backends.base import Backend
from conformance.settings import Outcome, RunSettings, Target

__all__ = ["Outcome", "RunSettings", "Session", "Target", "run_serial", "run_target"]


class Session:
    """Backends and known entries for the targets run in one process (close it when done).

    ``backends`` may be given already built (by name); others are loaded on first use, wrapped in
    ``IsolatedBackend`` when ``settings.isolate``. ``known`` replaces the known entries read from
    the built-in files and ``settings.known``."""

    def __init__(self, settings: RunSettings, backends: dict[str, Backend] | None = None,
                 known: Sequence[Any] | None = None):
        from conformance.known import load_known

        self.settings = settings
        self.known = list(known) if known is not None else load_known(extra=settings.known)
        self._given = dict(backends or {})
        self._backends: dict[str, Backend] = {}

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            backend = self._given.get(name)
            if backend is None:
                from conformance.registry import load_backend

                backend = load_backend(name)
            if self.settings.isolate and not getattr(backend, "isolated", False):
                from conformance.isolation import IsolatedBackend

                backend = IsolatedBackend(name, backend, timeout=self.settings.timeout, threads=self.settings.threads)
            self._backends[name] = backend
        return self._backends[name]

    def close(self) -> None:
        for backend in self._backends.values():
            if hasattr(backend, "close"):
                backend.close()
        self._backends.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_target(settings: RunSettings, target: Target, writer: Any, session: Session) -> Outcome:
    """Run one target in each mode of the run: its searches (random, regime and invalid cases,
    the statistical check of a stochastic entry, the known entries' unexpected passes), records
    written through ``writer``; then the repro artifacts of its discrepancies. Returns the target's
    outcome (over its modes)."""
    from conformance.artifacts import write_artifacts
    from conformance.runner import Runner
    from conformance.spec import all_specs

    spec = all_specs()[target.spec_id]
    backend = session.backend(target.backend)
    runner = Runner(settings, writer, session.known)
    verdicts: dict[str, int] = {}
    for mode in settings.modes or ("vjp",):
        tally = runner.run_target(backend, spec, target.dtype, mode)
        for verdict, count in tally.verdicts.items():
            verdicts[verdict] = verdicts.get(verdict, 0) + count
    write_artifacts(Path(settings.report_dir), spec, runner.take_discrepancies())
    runner.flush()
    return Outcome(target, "", runner.cases, runner.discrepancies, verdicts)


def run_serial(settings: RunSettings, targets: Sequence[Target], writer: Any,
               backends: dict[str, Backend] | None = None, on_done: Any = None,
               known: Sequence[Any] | None = None) -> list[Outcome]:
    """Run ``targets`` one after the other in this process (``backends`` and ``known`` as for
    ``Session``)."""
    outcomes = []
    with Session(settings, backends, known) as session:
        for target in targets:
            outcomes.append(run_target(settings, target, writer, session))
            if on_done:
                on_done(outcomes[-1])
    return outcomes
