"""Speed of the long backends (``torch-compile``, ``onnxruntime``): cases per second, graph reuse, the
compile cache's effect on a second run, and the shards that keep a whole-catalogue ci run under a CI
job's limit.

A measurement, not a test::

    python benchmarks/bench_backends.py --backend torch-compile --ops 'ReLU,Conv2d' --dtypes float32 --runs 2
    python benchmarks/bench_backends.py --backend onnxruntime --ops 'MaxPool2d,LSTM'

The targets run in this process (``nnconform run -j 1 --no-isolate`` does the same), so the backend's
own counters are read after the run: graphs compiled or exported, and cases that ran on a graph an
earlier case of their call signature had made (*reused*). ``--runs 2`` repeats the run with the same
compile cache (``torch-compile``: a fresh directory for the first run, ``--cache DIR`` to keep one):
the second run's compilations hit inductor's FX-graph and AOTAutograd caches. ``--catalogue-cases N``
(default: the number of cases of the torch-cpu ci baseline, when given as ``--baseline DIR``)
turns the measured rate into the shards of a whole-catalogue run: the shards of ``--job-minutes``
(15) each on ``--jobs`` (2) processes.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.driver import RunSettings, Target, run_serial  # noqa: E402
from conformance.known import load_known  # noqa: E402
from conformance.registry import load_backend  # noqa: E402
from conformance.spec import all_specs, select_specs  # noqa: E402
from reports.records import RecordWriter, read_records  # noqa: E402


def run_once(spec: str, ops: str, dtypes: tuple[str, ...]) -> dict:
    """One in-process run of the targets: wall time, cases, verdicts and the backend's counters."""
    backend = load_backend(spec)
    specs = select_specs(ops.split(",")) if ops else list(all_specs().values())
    with tempfile.TemporaryDirectory() as tmp:
        settings = RunSettings(report_dir=tmp, profile="ci", isolate=False)
        targets = [Target(s.id, backend.name, d) for s in specs for d in dtypes]
        with RecordWriter(tmp) as writer:
            t0, c0 = time.perf_counter(), _cpu()
            run_serial(settings, targets, writer, {backend.name: backend}, known=load_known())
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
        records = [r for r in read_records(tmp) if r.get("type", "case") == "case" and not r.get("shrinking")]
    stats = dict(getattr(backend, "stats", {}))
    made = stats.get("compiled", 0) + stats.get("exported", 0)
    return {"wall_s": wall, "cpu_s": cpu, "cases": len(records), "cases_per_s": len(records) / wall if wall else 0.0,
            "cases_per_cpu_s": len(records) / cpu if cpu else 0.0,
            "verdicts": dict(Counter(r["verdict"] for r in records)), "stats": stats,
            "reused_fraction": stats.get("reused", 0) / max(made + stats.get("reused", 0), 1)}


def coverage(spec: str, ops: str, dtype: str, examples: int) -> dict[str, list[str]]:
    """Each declaration's first ``examples`` derandomized valid cases through the backend, in this
    process: declarations whose cases were all compared (``compared``: passed or failed), any export
    failed (``export failed``), any unsupported, any raised. A quick census, not a conformance run."""
    from dataclasses import replace

    from hypothesis import HealthCheck, given, settings

    from backends.base import CompileFailure
    from conformance.compare import compare_results
    from conformance.runner import reference_result

    backend = load_backend(spec)
    forward_only = not backend.capabilities().backward
    table: dict[str, list[str]] = {}
    for decl in (select_specs(ops.split(",")) if ops else list(all_specs().values())):
        cases: list = []

        def collect(case):
            cases.append(case)  # noqa: B023 - run at once, inside this iteration

        draw = settings(max_examples=examples, database=None, derandomize=True, deadline=None,
                        suppress_health_check=list(HealthCheck))(given(decl.strategy(dtype, None, invalid=False))(
                            collect))
        try:
            draw()
        except Exception as exc:  # noqa: BLE001 - a declaration that cannot draw is reported
            table.setdefault("harness", []).append(f"{decl.id}: {type(exc).__name__}")
            continue
        outcome, failed = "compared", 0
        for case in cases[:examples]:
            try:
                case, ref = reference_result(decl, case)
                got = backend.run(case)
                if forward_only:
                    ref = replace(ref, grads={})
                failed += not all(c.ok for c in compare_results(decl, case, ref, got))
            except NotImplementedError as exc:
                outcome = f"unsupported ({str(exc)[:160]})"
                break
            except CompileFailure as exc:
                outcome = f"export failed ({str(exc)[:160]})"
                break
            except Exception as exc:  # noqa: BLE001
                outcome = f"raised ({type(exc).__name__}: {str(exc)[:120]})"
                break
        if outcome == "compared" and failed:
            outcome = f"compared, a discrepancy ({failed} of {len(cases[:examples])} cases)"
        table.setdefault(outcome.split(" (")[0].split(",")[0], []).append(
            decl.id if outcome == "compared" else f"{decl.id}: {outcome}")
        print(f"{decl.id}: {outcome}", flush=True)
    return table


def _cpu() -> float:
    """CPU seconds of this process and its finished children (inductor's C++ compiler runs), which
    is what a run costs on an idle machine whatever else shares the cores."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def baseline_cases(directory: str) -> int:
    return sum(1 for r in read_records(Path(directory))
               if r.get("type", "case") == "case" and not r.get("shrinking") and r["verdict"] != "unsupported")


def shards(cases: int, cases_per_s: float, jobs: int, minutes: float) -> int:
    """Shards of ``minutes`` each on ``jobs`` processes for ``cases`` at ``cases_per_s`` per process."""
    return max(1, math.ceil(cases / (cases_per_s * jobs * minutes * 60)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="torch-compile")
    p.add_argument("--ops", default="ReLU,Softmax,Linear,Conv2d,MaxPool2d,LayerNorm,MSELoss")
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--cache", default=None, help="torch-compile's compile cache (default: a fresh directory)")
    p.add_argument("--baseline", default=None, help="a torch-cpu ci run of the whole catalogue (its case count)")
    p.add_argument("--catalogue-cases", type=int, default=None)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--job-minutes", type=float, default=15.0)
    p.add_argument("--coverage", type=int, default=0, metavar="N",
                   help="instead: each declaration's first N valid cases (first dtype): compared, export failed, "
                        "unsupported or raised")
    args = p.parse_args(argv)
    dtypes = tuple(args.dtypes.split(","))
    if args.coverage:
        table = coverage(args.backend, args.ops if args.ops != "all" else "", dtypes[0], args.coverage)
        total = sum(len(v) for v in table.values())
        for outcome, ids in sorted(table.items()):
            print(f"{outcome}: {len(ids)} of {total}")
        return 0
    spec = args.backend
    cache = None
    if spec.startswith("torch-compile") and "cache=" not in spec:
        cache = args.cache or tempfile.mkdtemp(prefix="nnconform-compile-cache-")
        spec = f"{spec}:cache={cache}"
    results = []
    for run in range(args.runs):
        result = run_once(spec, args.ops, dtypes)
        results.append(result)
        print(json.dumps({"run": run + 1, "backend": spec, **result}))
    if len(results) > 1 and results[0]["wall_s"]:
        print(f"second run (warm compile cache): {results[1]['cpu_s'] / results[0]['cpu_s']:.2f}x the first's "
              f"CPU time ({results[0]['cases_per_cpu_s']:.2f} -> {results[1]['cases_per_cpu_s']:.2f} cases per CPU s)")
    total = args.catalogue_cases or (baseline_cases(args.baseline) if args.baseline else None)
    if total:
        for label, r in (("cold", results[0]), ("warm", results[-1])):
            rate = r["cases_per_cpu_s"]  # one process per core of an idle machine
            print(f"{label}: {total} cases at {rate:.2f} cases per CPU s -> "
                  f"{total / rate / args.jobs / 60:.0f} min on {args.jobs} cores, "
                  f"{shards(total, rate, args.jobs, args.job_minutes)} shards of {args.job_minutes:g} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
