"""The one run driver: what to run (``Target``), how to run it (``RunSettings``) and the entry point
every front end uses, ``run_target(settings, target, writer, session)``.

The ``nnconform run`` command (serially, or in parallel job processes), the pytest plugin and the
benchmarks all run targets through ``run_target``. A ``Session`` holds what outlives one target in
one process: the loaded (and, unless ``isolate`` is off, process-isolated) backends and the known
discrepancies. After a target's searches, the repro artifacts of its discrepancies are written from
its records (``conformance.artifacts``), never during the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Backend


@dataclass(frozen=True)
class Target:
    """What to run: one declaration on one backend (by the name it is loaded with) in one dtype,
    in every derivative mode of the run (``RunSettings.modes``): each mode is a target of its own
    in the records (``mode``), run one after the other by ``run_target``."""

    spec_id: str
    backend: str
    dtype: str

    @property
    def key(self) -> str:
        return f"{self.spec_id}|{self.backend}|{self.dtype}"


@dataclass(frozen=True)
class RunSettings:
    """How to run (plain, picklable data shared by every target of a run).

    ``profile`` names a ``conformance.profiles`` profile; ``examples`` and ``seed`` override it;
    ``invalid`` runs the invalid-case searches; ``timeout`` bounds one backend call (isolated
    backends only); ``isolate`` runs each backend in a worker process; ``threads`` caps torch's
    threads per worker; ``database`` is a shared Hypothesis example database; ``known`` lists the
    user's own known-discrepancy files, read after the built-in ones; ``modes`` the derivative
    modes each target runs in (``backends.base.MODES``; ``conformance.modes``).
    """

    report_dir: str
    profile: str = "ci"
    run_id: str = "run"
    examples: int | None = None
    seed: int | None = None
    invalid: bool = True
    timeout: float = 120.0
    isolate: bool = True
    database: str | None = None
    threads: int | None = None
    known: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("vjp",)


@dataclass
class Outcome:
    """What a finished target reports: its cases (shrinking steps excluded), its discrepancies, its
    verdict counts, and the part file holding its records when it ran in a job process."""

    target: Target
    part: str = ""
    cases: int = 0
    discrepancies: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


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
