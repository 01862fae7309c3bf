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

import contextlib
import hashlib
import heapq
import json
import math
import os
import shutil
import signal
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from conformance.driver import Outcome, RunSettings, Session, Target, run_target
from conformance.isolation import PRELOAD
from reports.records import RESULTS_FILE, RUN_FILE

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


def _job_init(owner: int) -> None:
    """A job process dies with the run's parent and leaves every signal to it: SIGTERM too, which
    ``timeout`` and CI runners send to the whole process group (a job killed by it first would turn
    the parent's clean stop into a broken pool). Its backend workers keep SIGTERM's default, which
    multiprocessing uses to stop them when the job exits."""
    import atexit

    from conformance.isolation import die_with

    die_with(owner)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
    context.set_forkserver_preload(PRELOAD)
    pending = list(targets)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_job_init,
                               initargs=(os.getpid(),))
    try:
        running = {pool.submit(run_one, t, settings) for t in pending[: jobs * 2]}
        queue = pending[jobs * 2:]
        with _deferred_interrupts() as interrupted:
            while running:
                if interrupted:
                    raise KeyboardInterrupt
                done, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    collect(future.result())
                    if queue:
                        running.add(pool.submit(run_one, queue.pop(0), settings))
    except BaseException:  # Ctrl-C, SIGTERM, a broken job: stop every job now, keep what completed
        _kill(pool)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        shutil.rmtree(Path(settings.report_dir) / PARTS_DIR, ignore_errors=True)
    return outcomes


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[list[int]]:
    """SIGINT and SIGTERM only note themselves in the yielded list while the pool is waited on; the
    loop raises KeyboardInterrupt at its next turn. An interrupt raised inside ``wait`` itself can
    leave a future's lock half released ("release unlocked lock", seen with 14 jobs), which would
    turn a clean stop into an internal error."""
    noted: list[int] = []
    try:
        previous = {sig: signal.signal(sig, lambda signum, frame: noted.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay as they are
        yield noted
        return
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _kill(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's job processes (their backend workers die with them) and drop its queue."""
    for process in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


# -- shards ---------------------------------------------------------------------------------------------

def load_costs(path: Path = COSTS_FILE) -> dict[str, float]:
    """Seconds per target measured at the ci profile: ``spec_id|dtype`` on torch-cpu, and
    ``backend|spec_id|dtype`` for the other backends measured (see ``measured_costs``)."""
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError):
        return {}


def cost_model(costs: dict[str, float], names: dict[str, str] | None = None) -> Callable[[Target], float]:
    """A target's cost: its own backend's measurement, else an estimate from torch-cpu's cost for the
    same declaration and dtype (``_eager_fit``: the log-linear least-squares fit of the backend's
    costs on torch-cpu's over the targets both measured), else that backend's median (torch-cpu's
    median for a backend never measured). Costs are keyed by the name a backend reports (its
    records' ``backend``); ``names`` maps the names targets were given (``torch-compile:cache=DIR``)
    to those."""
    eager = {k: v for k, v in costs.items() if k.count("|") == 1 and v > 0}
    by_backend: dict[str, dict[str, float]] = {}
    for key, value in costs.items():
        if key.count("|") == 2 and value > 0:
            backend, _, rest = key.partition("|")
            by_backend.setdefault(backend, {})[rest] = value
    eager_default = statistics.median(eager.values()) if eager else 1.0
    estimate = {b: _eager_fit([(eager[k], v) for k, v in own.items() if k in eager]) for b, own in by_backend.items()}
    default = {b: statistics.median(own.values()) for b, own in by_backend.items()}
    names = names or {}

    def cost(t: Target) -> float:
        backend = names.get(t.backend, t.backend)
        own = by_backend.get(backend, {})
        key = f"{t.spec_id}|{t.dtype}"
        if key in own:
            return own[key]
        if key in eager:
            return estimate[backend](eager[key]) if backend in estimate else eager[key]
        return default.get(backend, eager_default)

    return cost


def _eager_fit(pairs: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """Another backend's cost from torch-cpu's: log c = a + b·log e fitted by least squares over the
    (eager, own) pairs, the slope b kept within [0, 1] (1, a constant ratio, with fewer than two
    distinct eager costs). Where eager cost says little of the backend's (compiling: on two sweep
    shards of torch-compile the log-costs correlate at 0.25, slope 0.6, and ratios span 5 to 7,000)
    the slope is small and estimates stay near the backend's typical cost, where a median ratio
    would scale a costly eager reference into hours."""
    if not pairs:
        return lambda e: e
    x = [math.log(e) for e, _ in pairs]
    y = [math.log(c) for _, c in pairs]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    var = sum((v - mx) ** 2 for v in x)
    slope = 1.0 if var <= 0 else min(1.0, max(0.0, sum((a - mx) * (b - my) for a, b in zip(x, y)) / var))
    intercept = my - slope * mx if var > 0 else statistics.median(b - a for a, b in zip(x, y))
    return lambda e: math.exp(intercept + slope * math.log(e))


def partition(targets: Sequence[Target], count: int, cost: Callable[[Target], float]) -> list[list[Target]]:
    """``targets`` in ``count`` parts balanced by ``cost``: a deterministic greedy partition, the
    costliest target first, each to the part with the least cost so far."""
    loads = [0.0] * count
    parts: list[list[Target]] = [[] for _ in range(count)]
    for t in _costliest_first(targets, cost):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        loads[lightest] += cost(t)
        parts[lightest].append(t)
    return parts


def shard(targets: Sequence[Target], index: int, count: int, costs: dict[str, float] | None = None,
          names: dict[str, str] | None = None) -> list[Target]:
    """The ``index``-th (1-based) of ``count`` parts of ``targets``, balanced by cost (``cost_model``)."""
    cost = cost_model(load_costs() if costs is None else costs, names)
    keep = {t.key for t in partition(targets, count, cost)[index - 1]}
    return [t for t in targets if t.key in keep]


def longest_first(targets: Sequence[Target], costs: dict[str, float] | None = None,
                  names: dict[str, str] | None = None) -> list[Target]:
    """``targets`` costliest first (``cost_model``; ties by key): the order a parallel run hands them
    to its jobs, so that a long target starts at once instead of after the short ones and the run
    takes about max(total cost / jobs, costliest target) (a shard of the torch-compile sweep whose
    820 s TransformerDecoderLayer started last took 1,606 s for 2,523 s of cost on 2 jobs)."""
    return _costliest_first(targets, cost_model(load_costs() if costs is None else costs, names))


def _costliest_first(targets: Sequence[Target], cost: Callable[[Target], float]) -> list[Target]:
    """``targets`` by descending ``cost``, ties by key: the order of both ``partition`` and
    ``longest_first``, so a shard's parts and its jobs' queue agree on what is costly."""
    return sorted(targets, key=lambda t: (-cost(t), t.key))


def makespan(costs: Iterable[float], jobs: int) -> float:
    """The seconds ``jobs`` parallel jobs take over targets of these costs handed out costliest first,
    each to the job that is free first, as ``run_targets`` does with a ``longest_first`` queue:
    at least the total over ``jobs`` and the costliest target, and more when they do not divide
    evenly (6, 5 and 5 s on 2 jobs take 10 s, not 8)."""
    finish = [0.0] * max(1, jobs)
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(finish, finish[0] + cost)
    return max(finish)


def plan_shards(targets: Sequence[Target], seconds: float, jobs: int, costs: dict[str, float] | None = None,
                names: dict[str, str] | None = None) -> list[float]:
    """Each shard's predicted seconds in the fewest ``--shard K/N`` parts that keep every shard
    within ``seconds``: a shard takes as long as the busiest of its ``jobs`` (``makespan``). A target
    predicted to take longer alone cannot be split, so its shard may take as long as that target
    (``over_budget`` names them) and no longer. Measured against 90 cold torch-compile shards of
    ``K/90`` (2 jobs, each target's cost measured in that shard), the wall time exceeded the
    makespan of those costs, in the order the run handed them out, by 5-23 s, the run's start-up:
    leave that margin in ``seconds``. A run orders its queue by ``target_costs.json``; where that
    table still estimates a cost, the order can differ from this prediction's (shards 63-84: up to
    67 s over it), so plan with the measured costs in the table."""
    model = cost_model(load_costs() if costs is None else costs, names)
    cost = {t: model(t) for t in targets}.__getitem__  # each target's cost once, not at every try
    if not targets:
        return []
    count = min(len(targets), max(1, int(sum(map(cost, targets)) / jobs // seconds)))
    while True:  # ends by len(targets) parts: a part of one target takes that target's time, which fits
        parts = partition(targets, count, cost)
        predicted = [makespan(map(cost, part), jobs) for part in parts]
        if all(time <= max([seconds, *map(cost, part)]) for time, part in zip(predicted, parts)):
            return predicted
        count += 1


def over_budget(targets: Sequence[Target], seconds: float, costs: dict[str, float] | None = None,
                names: dict[str, str] | None = None) -> list[tuple[Target, float]]:
    """The targets predicted to take longer than ``seconds`` alone, costliest first, with their cost:
    no shard plan keeps their shard within ``seconds`` (``plan_shards`` lets it take their time)."""
    model = cost_model(load_costs() if costs is None else costs, names)
    return [(t, model(t)) for t in _costliest_first(targets, model) if model(t) > seconds]


def cost_key(backend: str, spec_id: str, dtype: str, eager: str = "torch-cpu") -> str:
    """A target's key in target_costs.json: ``spec_id|dtype`` on the ``eager`` backend,
    ``backend|spec_id|dtype`` on any other (by the name the backend reports)."""
    return f"{spec_id}|{dtype}" if backend == eager else f"{backend}|{spec_id}|{dtype}"


def measured_costs(sources: Iterable[Path], eager: str = "torch-cpu") -> dict[str, float]:
    """Seconds per target from the completed targets of run directories, or from coverage tables saved
    with ``nnconform coverage --save`` (their rows' ``seconds``), for target_costs.json: ``spec_id|dtype``
    on the ``eager`` backend, ``backend|spec_id|dtype`` on any other. The steps of shrinking a new
    failure are left out: a run whose failures are all known shrinks nothing (on a cold torch-compile
    shard they were a third of the time, each step a recompilation). A later source's measurement
    of a target replaces an earlier one's; the modes of one target add up. ValueError, with a
    one-line reason, for a source that is neither."""
    from reports.coverage import source_rows

    costs: dict[str, float] = {}
    for source in sources:
        found: dict[str, float] = {}
        for row in source_rows(source).values():
            if row.get("seconds") is None:  # a row saved before tables kept costs has none
                continue
            key = cost_key(row["backend"], row["op"], row["dtype"], eager)
            found[key] = found.get(key, 0.0) + float(row["seconds"])
        costs.update(found)
    return {k: round(v, 3) for k, v in sorted(costs.items())}


# -- merge ----------------------------------------------------------------------------------------------

# The run.json fields that must agree between the shards of one run.
SHARD_CONFIGURATION = ("profile", "seed", "examples", "invalid", "ops", "dtypes", "backend_names", "nnconform")


class MergeError(ValueError):
    """Shards that cannot be merged (different configurations, the same shard twice)."""


def _configuration(info: dict[str, Any]) -> dict[str, Any]:
    config = {key: info.get(key) for key in SHARD_CONFIGURATION}
    config["backend_names"] = sorted(b.get("name", "") for b in info.get("backends") or [] if isinstance(b, dict))
    config["nnconform"] = (info.get("versions") or {}).get("nnconform")
    return config


def _copy_records(source: Path, out: Any) -> int:
    """Append the readable records of ``source`` to ``out``, one per line; return how many lines
    were unreadable (a torn last line costs only itself, never the next shard's first record)."""
    bad = 0
    with open(source, encoding="utf-8", errors="replace") as src:
        for line in src:
            text = line.strip()
            if not text:
                continue
            try:
                ok = isinstance(json.loads(text), dict)
            except (ValueError, RecursionError):
                ok = False
            if ok:
                out.write(text + "\n")
            else:
                bad += 1
    return bad


def _copy_repro(source: Path, out: Path) -> None:
    """Copy the regular files directly in ``source`` (a shard's repro/) to ``out``: never a
    symbolic link, a directory, or a name leaving ``out``."""
    if source.is_symlink() or not source.is_dir():
        return
    out.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(source):
        if entry.is_file(follow_symlinks=False) and not entry.name.startswith(".") and "/" not in entry.name:
            shutil.copyfile(entry.path, out / entry.name, follow_symlinks=False)


def merge_runs(directories: Sequence[Path], out: Path) -> dict[str, Any]:
    """Combine run directories (the shards of one run) into ``out``: their readable records
    concatenated (each target's records together), their repro files, and a run.json summing
    cases and discrepancies; returns that run info.

    Raises ``MergeError`` (nothing written) when the shards' configurations differ or a shard is
    given twice. Missing shards, incomplete shards and unreadable records are kept in the merged
    run.json's ``merge_problems``: the merged run is then incomplete."""
    infos = []
    for directory in directories:
        path = directory / RUN_FILE
        try:
            info = json.loads(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else {}
        except (OSError, ValueError):
            info = {}
        infos.append(info if isinstance(info, dict) else {})
    problems: list[str] = []
    configs = [_configuration(i) for i in infos]
    for directory, config in zip(directories[1:], configs[1:]):
        differing = [k for k in SHARD_CONFIGURATION if config[k] != configs[0][k]]
        if differing:
            raise MergeError(f"{directory} was run with a different configuration than {directories[0]} "
                             f"({', '.join(differing)})")
    shards = [tuple(i["shard"]) if isinstance(i.get("shard"), list) and len(i["shard"]) == 2 else None for i in infos]
    seen: dict[tuple[int, int], Path] = {}
    for directory, sh in zip(directories, shards):
        if sh is None:
            continue
        if sh in seen:
            raise MergeError(f"shard {sh[0]}/{sh[1]} is given twice ({seen[sh]} and {directory})")
        seen[sh] = directory
    counts = {sh[1] for sh in shards if sh}
    if len(counts) > 1:
        splits = ", ".join(f"/{n}" for n in sorted(counts))
        raise MergeError(f"the directories are shards of different splits ({splits})")
    if counts:
        total = counts.pop()
        missing = sorted(set(range(1, total + 1)) - {sh[0] for sh in shards if sh})
        if missing:
            names = ", ".join(f"{k}/{total}" for k in missing)
            problems.append(f"shard{'s' if len(missing) > 1 else ''} {names} missing")
    for directory, info in zip(directories, infos):
        if not info:
            problems.append(f"{directory} has no readable {RUN_FILE}")
        elif info.get("status") not in (None, "complete"):
            problems.append(f"{directory} is an incomplete run (status {info.get('status')!r})")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / RESULTS_FILE, "w", encoding="utf-8") as results:
        for directory in directories:
            bad = _copy_records(directory / RESULTS_FILE, results)
            if bad:
                problems.append(f"{bad} unreadable record line{'s' if bad > 1 else ''} in {directory}")
            _copy_repro(directory / "repro", out / "repro")
    cases = sum(int(i.get("cases", 0) or 0) for i in infos)
    duration = max((float(i.get("duration_s", 0.0) or 0.0) for i in infos), default=0.0)
    merged = dict(infos[0]) if infos else {}
    merged.update(
        merged_from=[str(d) for d in directories], cases=cases, duration_s=duration,
        discrepancies=sum(int(i.get("discrepancies", 0) or 0) for i in infos),
        exit_code=max((int(i.get("exit_code", 0) or 0) for i in infos), default=0),
        ops=sorted({op for i in infos for op in i.get("ops", [])}),
        planned=[k for i in infos for k in i.get("planned") or []],
        completed=[k for i in infos for k in i.get("completed") or []],
        status="complete", shard=None, merge_problems=problems,
        cases_per_second=cases / duration if duration else 0.0)
    return merged
