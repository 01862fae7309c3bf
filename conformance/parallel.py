"""Running targets (declaration × backend × dtype) in parallel jobs, in shards, and merging runs.

- ``run_targets`` runs a list of targets on ``jobs`` worker processes. Each job has its own
  backends (each in its own isolated worker, as in a serial run) and writes the records of one
  target to a part file; the parent appends each finished target's part to ``results.jsonl``, so
  the records of a target stay together. Runs are derandomized per target, so the cases do not
  depend on the number of jobs or on which job ran a target.
- ``shard`` picks the K-th of N parts of the targets, balanced by their measured cost (the
  ``target_costs.json`` table: seconds per target at the ci profile; unknown targets cost the
  median) by a deterministic greedy partition (longest first, to the lightest shard).
- ``merge_runs`` combines run directories (shards) into one results.jsonl and run.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.records import RESULTS_FILE, RUN_FILE, read_records

COSTS_FILE = Path(__file__).with_name("target_costs.json")
PARTS_DIR = ".parts"


@dataclass(frozen=True)
class Target:
    """One declaration on one backend in one dtype (backend by the name it was loaded with)."""

    spec_id: str
    backend: str
    dtype: str

    @property
    def key(self) -> str:
        return f"{self.spec_id}|{self.backend}|{self.dtype}"


@dataclass
class JobSettings:
    """Everything a job process needs to rebuild the run's request (plain, picklable data)."""

    report_dir: str
    profile: str
    run_id: str
    examples: int | None = None
    seed: int | None = None
    invalid: bool = True
    timeout: float = 120.0
    isolate: bool = True
    database: str | None = None
    threads: int | None = None  # torch intra-op threads per worker (None: torch's default)


@dataclass
class Outcome:
    """What the parent learns from one finished target."""

    target: Target
    part: str
    cases: int = 0
    discrepancies: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


def default_jobs() -> int:
    """The machine's usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# -- the job process ----------------------------------------------------------------------------------

_JOB: dict[str, Any] = {}


def _job_backend(name: str, settings: JobSettings) -> Any:
    backends = _JOB.setdefault("backends", {})
    if name not in backends:
        from conformance.registry import load_backend

        backend = load_backend(name)
        if settings.isolate:
            from conformance.isolation import IsolatedBackend

            backend = IsolatedBackend(name, backend, timeout=settings.timeout, threads=settings.threads)
        backends[name] = backend
    return backends[name]


def run_one(target: Target, settings: JobSettings) -> Outcome:
    """Run one target in this process, writing its records to a part file."""
    from conformance.known import load_known
    from conformance.profiles import PROFILES
    from conformance.runner import Runner, RunRequest
    from conformance.spec import all_specs
    from reports.records import RecordWriter

    spec = all_specs()[target.spec_id]
    backend = _job_backend(target.backend, settings)
    part_dir = Path(settings.report_dir) / PARTS_DIR
    part_dir.mkdir(parents=True, exist_ok=True)
    part = part_dir / f"{hashlib.sha1(target.key.encode()).hexdigest()[:16]}-{os.getpid()}.jsonl"
    request = RunRequest(backends=[backend], specs=[spec], dtypes=[target.dtype], profile=PROFILES[settings.profile],
                         report_dir=Path(settings.report_dir), examples=settings.examples, seed=settings.seed,
                         known=load_known(), invalid=settings.invalid, database=settings.database)
    with RecordWriter(part_dir, filename=part.name) as writer:
        runner = Runner(request, writer, run_id=settings.run_id)
        tally = runner.run_target(backend, spec, target.dtype)
    return Outcome(target, str(part), runner.cases, runner.discrepancies, dict(tally.verdicts))


def _close_job_backends() -> None:  # pragma: no cover - runs in job processes at exit
    for backend in _JOB.get("backends", {}).values():
        if hasattr(backend, "close"):
            backend.close()


def _job_init() -> None:
    import atexit

    atexit.register(_close_job_backends)


# -- the parent ---------------------------------------------------------------------------------------

def run_targets(targets: Sequence[Target], settings: JobSettings, jobs: int,
                on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run ``targets`` on ``jobs`` processes; append each finished target's records to the run's
    results.jsonl (which must exist); return the outcomes in completion order."""
    import multiprocessing

    results = Path(settings.report_dir) / RESULTS_FILE
    outcomes: list[Outcome] = []

    def collect(outcome: Outcome) -> None:
        part = Path(outcome.part)
        with open(results, "a", encoding="utf-8") as out, open(part, encoding="utf-8") as src:
            shutil.copyfileobj(src, out)
        part.unlink()
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "torch", "conformance.specs", "conformance.registry"])
    pending = list(targets)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_job_init) as pool:
        running = {pool.submit(run_one, t, settings) for t in pending[: jobs * 2]}
        queue = pending[jobs * 2:]
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                collect(future.result())
                if queue:
                    running.add(pool.submit(run_one, queue.pop(0), settings))
    shutil.rmtree(Path(settings.report_dir) / PARTS_DIR, ignore_errors=True)
    return outcomes


# -- shards ---------------------------------------------------------------------------------------------

def load_costs(path: Path = COSTS_FILE) -> dict[str, float]:
    """Seconds per target (``spec_id|dtype``, measured at the ci profile on torch-cpu)."""
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError):
        return {}


def shard(targets: Sequence[Target], index: int, count: int, costs: dict[str, float] | None = None) -> list[Target]:
    """The ``index``-th (1-based) of ``count`` parts of ``targets``, balanced by cost."""
    costs = load_costs() if costs is None else costs
    known = [c for c in costs.values() if c > 0]
    default = statistics.median(known) if known else 1.0

    def cost(t: Target) -> float:
        return costs.get(f"{t.spec_id}|{t.dtype}", default)

    loads = [0.0] * count
    chosen: list[list[Target]] = [[] for _ in range(count)]
    for t in sorted(targets, key=lambda t: (-cost(t), t.key)):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        loads[lightest] += cost(t)
        chosen[lightest].append(t)
    keep = {t.key for t in chosen[index - 1]}
    return [t for t in targets if t.key in keep]


def measured_costs(directories: Iterable[Path]) -> dict[str, float]:
    """Seconds per target (``spec_id|dtype``) from run directories' records (for target_costs.json)."""
    costs: dict[str, float] = {}
    for directory in directories:
        for record in read_records(directory):
            key = f"{record['op']}|{record['dtype']}"
            costs[key] = costs.get(key, 0.0) + sum(float(v) for v in (record.get("elapsed_s") or {}).values())
    return {k: round(v, 3) for k, v in sorted(costs.items())}


# -- merge ----------------------------------------------------------------------------------------------

def merge_runs(directories: Sequence[Path], out: Path) -> dict[str, Any]:
    """Combine run directories into ``out``: their results.jsonl concatenated (each target's
    records together) and a run.json summing cases and discrepancies; returns that run info."""
    out.mkdir(parents=True, exist_ok=True)
    infos = []
    with open(out / RESULTS_FILE, "w", encoding="utf-8") as results:
        for directory in directories:
            with open(directory / RESULTS_FILE, encoding="utf-8") as src:
                shutil.copyfileobj(src, results)
            info_path = directory / RUN_FILE
            infos.append(json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {})
            repro = directory / "repro"
            if repro.is_dir():
                shutil.copytree(repro, out / "repro", dirs_exist_ok=True)
    cases = sum(int(i.get("cases", 0)) for i in infos)
    duration = max((float(i.get("duration_s", 0.0)) for i in infos), default=0.0)
    merged = dict(infos[0]) if infos else {}
    merged.update(
        merged_from=[str(d) for d in directories], cases=cases, duration_s=duration,
        discrepancies=sum(int(i.get("discrepancies", 0)) for i in infos),
        exit_code=max((int(i.get("exit_code", 0)) for i in infos), default=0),
        ops=sorted({op for i in infos for op in i.get("ops", [])}),
        cases_per_second=cases / duration if duration else 0.0)
    return merged
