"""What to run (``Target``), how to run it (``RunSettings``) and what a finished target reports
(``Outcome``): plain, picklable data shared by the driver (``conformance.driver``), the runner and
every front end.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    modes each target runs in (``backends.base.MODES``; ``conformance.modes``); ``first_failure``
    ends a target after its first discrepancy is shrunk (its remaining searches are skipped).
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
    first_failure: bool = False


@dataclass
class Outcome:
    """What a finished target reports: its cases (shrinking steps excluded), its discrepancies, its
    verdict counts, and the part file holding its records when it ran in a job process."""

    target: Target
    part: str = ""
    cases: int = 0
    discrepancies: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
