"""Per-family speed of the suite: cases per second, harness overhead, reference/torch time ratio;
parallel scaling; shrinking speed; and (``--budget``) the wall time of the ci run and the tests.

A measurement, not a test: ``python benchmarks/bench_catalogue.py [--jobs] [--shrink] [--budget]``
(``nox -s benchmark`` runs the per-family table, the scaling and the shrinking measurements).

- Per family: the ci profile over every declaration of the family in float32 and float64 against
  torch-cpu, in this process with an isolated worker (as ``nnconform run -j 1`` does), split into
  reference, backend and harness time per case (strategy drawing, comparison, tolerance model,
  records, IPC); the ratio is the reference's time over torch's on those same cases.
- ``--jobs``: the full catalogue's ci run with ``-j 1`` and ``-j 2``: wall times and the
  throughput ratio.
- ``--shrink``: a cheap layer's failure (ReLU with a wrong derivative at 0) found and shrunk:
  shrink steps per second.
- ``--budget``: the full ci run with the default ``-j`` and ``pytest -q`` (the tests session), wall
  times.
- ``--modes [N]``: the cost of each derivative mode per case against the vjp mode's, at ci sizes:
  the first N declarations of every family (all with 0), float32, each mode run on the same targets
  in this process with an isolated worker, the modes interleaved per family so that the machine's
  load falls alike on each.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.driver import RunSettings, Target, run_serial  # noqa: E402
from conformance.isolation import IsolatedBackend  # noqa: E402
from conformance.known import load_known  # noqa: E402
from conformance.registry import load_backend  # noqa: E402
from conformance.spec import all_specs  # noqa: E402
from reports.records import RecordWriter, read_records  # noqa: E402


def family_table(dtypes: tuple[str, ...] = ("float64", "float32")) -> None:
    backend = IsolatedBackend("torch-cpu", load_backend("torch-cpu"))
    families: dict[str, list] = defaultdict(list)
    for spec in all_specs().values():
        families[spec.family].append(spec)
    print(f"{'family':<14}{'targets':>8}{'cases':>7}{'cases/s':>9}{'ref ms':>8}{'torch ms':>9}{'harness ms':>11}"
          f"{'ref/torch':>10}")
    totals = [0, 0.0]
    for family, specs in sorted(families.items()):
        with tempfile.TemporaryDirectory() as tmp:
            settings = RunSettings(report_dir=tmp, profile="ci", isolate=False)
            targets = [Target(s.id, "torch-cpu", d) for s in specs for d in dtypes]
            with RecordWriter(tmp) as writer:
                t0 = time.perf_counter()
                run_serial(settings, targets, writer, {"torch-cpu": backend}, known=load_known())
                wall = time.perf_counter() - t0
            records = [r for r in read_records(tmp) if r.get("case")]
        n = max(len(records), 1)
        ref = sum(float(r["elapsed_s"].get("reference", 0.0)) for r in records)
        torch_s = sum(float(r["elapsed_s"].get("backend", 0.0)) for r in records)
        ratios = [float(r["elapsed_s"]["reference"]) / float(r["elapsed_s"]["backend"]) for r in records
                  if float((r["elapsed_s"] or {}).get("backend", 0.0)) > 0 and r["tier"] != "invalid"]
        ratio = statistics.median(ratios) if ratios else float("nan")
        totals[0] += len(records)
        totals[1] += wall
        print(f"{family:<14}{len(specs) * len(dtypes):>8}{len(records):>7}{len(records) / wall:>9.1f}"
              f"{1e3 * ref / n:>8.2f}{1e3 * torch_s / n:>9.2f}{1e3 * (wall - ref - torch_s) / n:>11.2f}{ratio:>9.2f}x")
    backend.close()
    print(f"{'all':<14}{'':>8}{totals[0]:>7}{totals[0] / totals[1]:>9.1f}   ({', '.join(dtypes)}; ratio: median "
          "per case of reference time / torch-cpu time on the same case)")


MODE_NAMES = ("vjp", "jvp", "vjp2", "vmap")


def mode_costs(per_family: int = 2, dtype: str = "float32") -> None:
    """Wall time per case of each mode over the same targets, and its ratio to the vjp mode's
    (shrinking steps excluded: the modes' searches pass, so none shrink on correct torch)."""
    backend = IsolatedBackend("torch-cpu", load_backend("torch-cpu"))
    families: dict[str, list] = defaultdict(list)
    for spec in all_specs().values():
        families[spec.family].append(spec)
    totals = {m: [0, 0.0] for m in MODE_NAMES}
    print(f"{'family':<14}{'targets':>8}" + "".join(f"{m + ' ms':>11}" for m in MODE_NAMES)
          + "".join(f"{m + '/vjp':>10}" for m in MODE_NAMES[1:]))
    for family, specs in sorted(families.items()):
        chosen = specs[:per_family] if per_family else specs
        targets = [Target(s.id, "torch-cpu", dtype) for s in chosen]
        per_case = {}
        for mode in MODE_NAMES:
            with tempfile.TemporaryDirectory() as tmp:
                settings = RunSettings(report_dir=tmp, profile="ci", isolate=False, modes=(mode,))
                with RecordWriter(tmp) as writer:
                    t0 = time.perf_counter()
                    run_serial(settings, targets, writer, {"torch-cpu": backend}, known=load_known())
                    wall = time.perf_counter() - t0
                cases = sum(1 for r in read_records(tmp) if r.get("case") and not r.get("shrinking"))
            totals[mode][0] += cases
            totals[mode][1] += wall
            per_case[mode] = 1e3 * wall / max(cases, 1)
        print(f"{family:<14}{len(targets):>8}" + "".join(f"{per_case[m]:>11.1f}" for m in MODE_NAMES)
              + "".join(f"{per_case[m] / per_case['vjp']:>9.1f}x" for m in MODE_NAMES[1:]))
    backend.close()
    all_ms = {m: 1e3 * totals[m][1] / max(totals[m][0], 1) for m in MODE_NAMES}
    print(f"{'all':<14}{'':>8}" + "".join(f"{all_ms[m]:>11.1f}" for m in MODE_NAMES)
          + "".join(f"{all_ms[m] / all_ms['vjp']:>9.1f}x" for m in MODE_NAMES[1:])
          + f"   ({dtype}; cases: " + ", ".join(f"{m} {totals[m][0]}" for m in MODE_NAMES) + ")")


def _nnconform(*argv: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "conformance.cli", *argv, "--quiet"], cwd=ROOT, check=False,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def jobs_scaling() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = _nnconform("run", "-j", "1", "--report-dir", f"{tmp}/j1")
        two = _nnconform("run", "-j", "2", "--report-dir", f"{tmp}/j2")
        cases = sum(1 for r in read_records(f"{tmp}/j1") if not r.get("shrinking"))
    print(f"full catalogue, ci profile: {cases} cases; -j 1 {one:.0f} s ({cases / one:.1f} cases/s), "
          f"-j 2 {two:.0f} s ({cases / two:.1f} cases/s): throughput x{one / two:.2f}")


SHRINK_CASES = (  # (wrong adapter, layer): cheap layers, and the Conv2d example
    ("tests.wrong_backends.generic:ReluGradAtZero", "ReLU"),
    ("tests.wrong_backends.activation:EluIgnoresAlpha", "ELU"),
    ("tests.wrong_backends.conv:GroupMixup", "Conv2d"),
)


def shrink_speed() -> None:
    """Shrink steps per second: for each failing search (random or regime), the steps between its
    first failure and its final shrunk record, over that span of time."""
    for adapter, op in SHRINK_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            wall = _nnconform("run", "--backend", adapter, "--ops", op, "--dtypes", "float32", "--no-invalid",
                              "-j", "1", "--report-dir", tmp)
            records = [r for r in read_records(tmp) if r.get("type") == "case"]
        steps, span, searches = 0, 0.0, 0
        for regime in {r.get("regime") for r in records}:
            search = [r for r in records if r.get("regime") == regime]
            first = next((r for r in search if r["verdict"] == "fail"), None)
            final = next((r for r in search if r.get("final") and r["verdict"] == "fail"), None)
            if first is None or final is None:
                continue
            searches += 1
            steps += sum(1 for r in search if r.get("shrinking"))
            span += final["time"] - first["time"]
        rate = f"{steps / span:.0f} steps/s" if span > 0 else "n/a"
        print(f"shrinking {op} ({adapter.rpartition(':')[2]}): {searches} failing searches, {steps} shrink steps "
              f"in {span:.2f} s ({rate}); the whole run {wall:.1f} s with start-up")


def budget() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ci = _nnconform("run", "--report-dir", tmp)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"], cwd=ROOT, check=False,
                   stdout=subprocess.DEVNULL)
    tests = time.perf_counter() - t0
    print(f"budget: full catalogue ci run (default -j) {ci / 60:.1f} min; pytest {tests / 60:.1f} min")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", action="store_true", help="also measure -j 1 against -j 2 on the full catalogue")
    parser.add_argument("--shrink", action="store_true", help="also measure shrinking speed")
    parser.add_argument("--budget", action="store_true", help="also time the full ci run and the tests")
    parser.add_argument("--no-families", action="store_true", help="skip the per-family table")
    parser.add_argument("--modes", type=int, nargs="?", const=2, default=None, metavar="N",
                        help="also measure each derivative mode's cost per case against vjp's (the first N "
                             "declarations of each family, 0 for all; default 2)")
    options = parser.parse_args(argv)
    if not options.no_families:
        family_table()
    if options.jobs:
        jobs_scaling()
    if options.shrink:
        shrink_speed()
    if options.budget:
        budget()
    if options.modes is not None:
        mode_costs(options.modes)


if __name__ == "__main__":
    main()
