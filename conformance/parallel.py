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
from pathlib import Path
from typing import Any

from conformance.driver import Outcome, RunSettings, Session, Target, run_target
from reports.records import RESULTS_FILE, RUN_FILE, read_records

COSTS_FILE = Path(__file__).with_name("target_costs.json")
PARTS_DIR = ".parts"


def default_jobs() -> int:
    """The machine's usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# -- the job process ----------------------------------------------------------------------------------

_SESSION: dict[str, Any] = {}


def run_one(target: Target, settings: RunSettings) -> Outcome:
    """Run one target in a job process (its session kept for the job's next targets), writing its
    records to a part file of its own."""
    from reports.records import RecordWriter

    session = _SESSION.get("session")
    if session is None:
        session = _SESSION["session"] = Session(settings)
    part_dir = Path(settings.report_dir) / PARTS_DIR
    part_dir.mkdir(parents=True, exist_ok=True)
    part = part_dir / f"{hashlib.sha1(target.key.encode()).hexdigest()[:16]}-{os.getpid()}.jsonl"
    with RecordWriter(part_dir, filename=part.name) as writer:
        outcome = run_target(settings, target, writer, session)
    outcome.part = str(part)
    return outcome


def _close_session() -> None:  # pragma: no cover - runs in job processes at exit
    session = _SESSION.pop("session", None)
    if session is not None:
        session.close()


def _job_init() -> None:
    import atexit

    atexit.register(_close_session)


# -- the parent ---------------------------------------------------------------------------------------

def run_targets(targets: Sequence[Target], settings: RunSettings, jobs: int,
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
