"""The ``nnconform`` command: ``backends``, ``list``, ``run`` and ``report``.

Exit codes: 0 everything conforms (known discrepancies allowed), 1 a discrepancy was found,
2 a usage error (unknown op or backend, bad option), reported on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_DISCREPANCY, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad user input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, no usage dump
        raise UsageError(message)


def _csv(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _positive(kind: type) -> Any:
    """An argparse type: a number of ``kind`` (int or float) that must be > 0."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            noun = "integer" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"expected a positive {noun}, got {text!r}")
        return value

    return parse


def _shard(text: str) -> tuple[int, int]:
    """K/N with 1 <= K <= N."""
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = 0
    if sep != "/" or not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return index, count


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


_BASELINE_HELP = ("an earlier run's report directory: show new, fixed and unchanged discrepancies, "
                  "and exit 1 only when something is new")


def _baseline(path: str | None) -> Any:
    """The baseline run of ``--baseline`` (read up front: a bad path fails before the run)."""
    if path is None:
        return None
    from reports.baseline import BaselineError, load_baseline

    try:
        return load_baseline(path)
    except BaselineError as exc:
        raise UsageError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from conformance.profiles import PROFILES

    parser = _Parser(prog="nnconform", description="Conformance suite and differential fuzzer for torch.nn layers.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True
    p = sub.add_parser("backends", help="list backends, their availability and capabilities")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("list", help="list the declared layers")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("run", help="run the conformance suite")
    p.add_argument("--backend", action="append", metavar="NAME|module:Class",
                   help="backend to test (repeatable; default torch-cpu)")
    p.add_argument("--ops", action="append", metavar="NAME[,NAME|glob]", help="layers to run (default all)")
    p.add_argument("--dtypes", action="append", metavar="DTYPE[,DTYPE]", help="dtypes (default all four)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    p.add_argument("--examples", type=_positive(int), help="examples per layer × backend × dtype")
    p.add_argument("--seed", type=_int, help="random seed (overrides the profile's derandomization)")
    p.add_argument("--report-dir", default="nnconform-report", help="where results and reports go")
    p.add_argument("--skip-unavailable", action="store_true",
                   help="record unavailable backends and go on, instead of failing with exit code 2")
    p.add_argument("--no-invalid", action="store_true", help="skip the invalid-parameter searches")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--timeout", type=_positive(float), default=120.0, metavar="SECONDS",
                   help="per-case time limit of a backend call (default 120)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run backends in this process (faster start; a crash then ends the run)")
    p.add_argument("-j", "--jobs", type=_positive(int), default=None, metavar="N",
                   help="targets run in parallel in N processes (default: the machine's cores)")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="run only the K-th of N parts of the targets, balanced by measured cost")
    p.add_argument("--database", default=None, metavar="DIR|redis://...",
                   help="a Hypothesis example database to share (directory or Redis URL)")
    p.add_argument("--baseline", metavar="OLD_DIR", help=_BASELINE_HELP)
    p = sub.add_parser("report", help="re-render the reports of a run directory")
    p.add_argument("directory")
    p.add_argument("--baseline", metavar="OLD_DIR", help=_BASELINE_HELP)
    p = sub.add_parser("merge", help="combine run directories (shards) into one results.jsonl and report")
    p.add_argument("--report-dir", required=True, help="where the merged results and reports go")
    p.add_argument("directories", nargs="+", metavar="DIR")
    p = sub.add_parser("costs", help="print seconds per target from run directories (for target_costs.json)")
    p.add_argument("directories", nargs="+", metavar="DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        handler = {"backends": cmd_backends, "list": cmd_list, "run": cmd_run, "report": cmd_report,
                   "merge": cmd_merge, "costs": cmd_costs}[args.command]
        return handler(args, argv)
    except UsageError as exc:
        print(f"nnconform: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _backend_info(backend: Any) -> dict[str, Any]:
    available, reason = backend.availability()
    caps = backend.capabilities()
    return {"name": backend.name, "available": available, "reason": reason, "devices": list(caps.devices),
            "dtypes": list(caps.dtypes), "ops": sorted(caps.ops) if caps.ops is not None else "all"}


def cmd_backends(args: argparse.Namespace, argv: list[str]) -> int:
    from conformance.registry import known_backends, load_backend

    infos = [_backend_info(load_backend(name)) for name in known_backends()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return EXIT_OK
    for info in infos:
        state = "available" if info["available"] else f"unavailable: {info['reason']}"
        print(f"{info['name']:<12} {state}; devices {', '.join(info['devices'])}; dtypes {', '.join(info['dtypes'])}")
    return EXIT_OK


def catalogue_listing() -> list[dict[str, Any]]:
    """One item per catalogue entry declared, with its variants (declarations)."""
    from conformance.spec import all_specs

    entries: dict[str, dict[str, Any]] = {}
    for spec in all_specs().values():
        entry = entries.setdefault(spec.name, {
            "name": spec.name, "catalogue": spec.catalogue or spec.torch.target, "family": spec.family,
            "torch": spec.torch.target, "kind": spec.torch.kind, "forward": False, "backward": False,
            "invalid_cases": False, "stochastic": False, "dtypes": list(spec.dtypes), "variants": []})
        entry["forward"] |= spec.forward
        entry["backward"] |= spec.backward
        entry["invalid_cases"] |= spec.invalid_cases is not None
        entry["stochastic"] |= spec.randomness is not None
        entry["variants"].append({"id": spec.id, "variant": spec.variant, "forward": spec.forward,
                                  "backward": spec.backward, "regimes": [r.name for r in spec.regimes]})
    return list(entries.values())


def cmd_list(args: argparse.Namespace, argv: list[str]) -> int:
    items = catalogue_listing()
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    for it in items:
        parts = ["forward"] + (["backward"] if it["backward"] else []) + (["invalid"] if it["invalid_cases"] else [])
        variants = [v["variant"] for v in it["variants"] if v["variant"]]
        extra = f"  variants: {', '.join(variants)}" if variants else ""
        print(f"{it['name']:<24} {it['family']:<14} {' + '.join(parts)}{extra}")
    return EXIT_OK


def _resolve_run(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], list[Any], list[str], list[dict[str, Any]]]:
    """(available backends as (name as given, instance), declarations, dtypes, backend infos)."""
    from backends.base import DTYPE_NAMES
    from conformance.registry import BackendNotFound, load_backend
    from conformance.spec import select_specs

    for option, values in (("--ops", args.ops), ("--dtypes", args.dtypes), ("--backend", args.backend)):
        if values is not None and not _csv(values):
            raise UsageError(f"{option} was given an empty list")
    try:
        specs = select_specs(_csv(args.ops))
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    dtypes = _csv(args.dtypes) or list(DTYPE_NAMES)
    for d in dtypes:
        if d not in DTYPE_NAMES:
            raise UsageError(f"unknown dtype {d!r} (known: {', '.join(DTYPE_NAMES)})")
    dtypes = [d for d in DTYPE_NAMES if d in dtypes]
    backends, infos = [], []
    for name in _csv(args.backend) or ["torch-cpu"]:
        try:
            backend = load_backend(name)
        except BackendNotFound as exc:
            raise UsageError(str(exc)) from None
        info = _backend_info(backend)
        infos.append(info)
        if info["available"]:
            backends.append((name, backend))
        elif not args.skip_unavailable:
            raise UsageError(f"backend {backend.name} is unavailable: {info['reason']} (use --skip-unavailable)")
    return backends, specs, dtypes, infos


def _writable_report_dir(path: Path) -> Path:
    """The report directory, created; a one-line usage error when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".nnconform-write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write the report directory {str(path)!r}: {exc.strerror or exc}") from None
    return path


def _versions(backends: list[Any]) -> dict[str, str]:
    import hypothesis
    import numpy

    import conformance

    out = {"python": platform.python_version(), "numpy": numpy.__version__, "hypothesis": hypothesis.__version__,
           "nnconform": conformance.__version__, "platform": platform.platform()}
    for b in backends:
        out.update({f"{b.name}:{k}": v for k, v in b.versions().items()})
    return out


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    import uuid

    from conformance.driver import RunSettings, Target, run_serial
    from conformance.known import load_known
    from conformance.parallel import default_jobs, run_targets, shard
    from reports.records import RecordWriter, write_run_info

    backends, specs, dtypes, infos = _resolve_run(args)
    baseline = _baseline(args.baseline)
    report_dir = _writable_report_dir(Path(args.report_dir))
    try:
        load_known()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for info in infos:
        if not info["available"]:
            print(f"nnconform: backend {info['name']} unavailable: {info['reason']}", file=sys.stderr)
    targets = [Target(s.id, name, d) for name, _ in backends for s in specs for d in dtypes]
    if args.shard:
        targets = shard(targets, *args.shard)
    jobs = min(args.jobs or default_jobs(), max(len(targets), 1))
    # Parallel jobs share the cores: each backend worker gets its share of torch's threads (tiny
    # cases on oversubscribed threads run many times slower).
    threads = max(1, default_jobs() // jobs) if jobs > 1 else None
    settings = RunSettings(report_dir=str(report_dir), profile=args.profile, run_id=uuid.uuid4().hex[:12],
                           examples=args.examples, seed=args.seed, invalid=not args.no_invalid,
                           timeout=args.timeout, isolate=not args.no_isolate, database=args.database,
                           threads=threads)
    started = time.time()
    with _progress(args, len(targets)) as advance:
        if jobs > 1:
            RecordWriter(report_dir).close()  # a fresh, empty results.jsonl the jobs' parts are appended to
            outcomes = run_targets(targets, settings, jobs, on_done=lambda o: advance(o.target))
        else:
            with RecordWriter(report_dir) as writer:
                outcomes = run_serial(settings, targets, writer, dict(backends), lambda o: advance(o.target))
    duration = time.time() - started
    cases = sum(o.cases for o in outcomes)
    discrepancies = sum(o.discrepancies for o in outcomes)
    exit_code = EXIT_DISCREPANCY if discrepancies else EXIT_OK
    if baseline is not None:
        from reports.baseline import regression_exit_code

        exit_code = regression_exit_code(report_dir, baseline)
    info = {
        "run_id": settings.run_id, "argv": ["nnconform", *argv], "profile": args.profile, "seed": args.seed,
        "examples": args.examples, "jobs": jobs, "threads_per_job": threads,
        "shard": list(args.shard) if args.shard else None,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(), "duration_s": duration,
        "backends": infos, "ops": [s.id for s in specs], "dtypes": dtypes,
        "regimes": {s.id: [r.name for r in s.regimes] for s in specs},
        "targets": len(targets), "cases": cases, "cases_per_second": cases / duration if duration > 0 else 0.0,
        "discrepancies": discrepancies, "exit_code": exit_code, "versions": _versions([b for _, b in backends]),
    }
    if baseline is not None:
        info["baseline"] = str(baseline.path)
    write_run_info(report_dir, info)
    return _finish(report_dir, info, baseline)


@contextlib.contextmanager
def _progress(args: argparse.Namespace, total: int) -> Iterator[Callable[[Any], None]]:
    """A progress bar on a terminal (``advance(target)`` after each target); silent otherwise."""
    from rich.console import Console

    err = Console(stderr=True)
    if args.quiet or not err.is_terminal or total == 0:
        yield lambda target: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("starting", total=total)
        yield lambda t: progress.update(task, advance=1, description=f"{t.spec_id} · {t.backend} · {t.dtype}")


def _finish(report_dir: Path, info: dict[str, Any], baseline: Any = None) -> int:
    """Render the reports, print the summary and return the run's exit code."""
    from reports.records import read_records

    paths = _render(report_dir, baseline)
    _print_summary(list(read_records(report_dir)), info, baseline)
    for kind, path in paths.items():
        print(f"{kind} report: {path}")
    print(f"{info['cases']} cases in {info['duration_s']:.1f} s ({info['cases_per_second']:.1f} cases/s); "
          f"{info['discrepancies']} discrepancies; results: {report_dir / 'results.jsonl'}")
    return int(info["exit_code"])


def cmd_merge(args: argparse.Namespace, argv: list[str]) -> int:
    from conformance.parallel import merge_runs
    from reports.records import RESULTS_FILE, write_run_info

    directories = [Path(d) for d in args.directories]
    for directory in directories:
        if not (directory / RESULTS_FILE).is_file():
            raise UsageError(f"{directory} has no {RESULTS_FILE}")
    out = _writable_report_dir(Path(args.report_dir))
    if any(d.resolve() == out.resolve() for d in directories):
        raise UsageError("the merged report directory must differ from the directories merged")
    info = merge_runs(directories, out)
    info["argv"] = ["nnconform", *argv]
    write_run_info(out, info)
    return _finish(out, info)


def cmd_costs(args: argparse.Namespace, argv: list[str]) -> int:
    from conformance.parallel import measured_costs
    from reports.records import RESULTS_FILE

    directories = [Path(d) for d in args.directories]
    for directory in directories:
        if not (directory / RESULTS_FILE).is_file():
            raise UsageError(f"{directory} has no {RESULTS_FILE}")
    print(json.dumps(measured_costs(directories), indent=1, sort_keys=True))
    return EXIT_OK


def _render(report_dir: Path, baseline: Any = None) -> dict[str, Path]:
    try:
        from reports.render import render_all
    except ImportError:
        return {}
    return render_all(report_dir, baseline)


def _print_summary(records: list[dict[str, Any]], info: dict[str, Any], baseline: Any = None) -> None:
    try:
        from reports.terminal import print_summary
    except ImportError:
        return
    print_summary(records, info, baseline=baseline)


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from reports.records import RESULTS_FILE, read_records, read_run_info

    directory = Path(args.directory)
    if not (directory / RESULTS_FILE).exists():
        raise UsageError(f"{directory} has no {RESULTS_FILE}")
    baseline = _baseline(args.baseline)
    paths = _render(directory, baseline)
    info = read_run_info(directory)
    records = list(read_records(directory))
    _print_summary(records, info, baseline)
    for kind, path in paths.items():
        print(f"{kind} report: {path}")
    if baseline is not None:
        from reports.baseline import compare_runs

        return compare_runs(records, baseline).exit_code
    return int(info.get("exit_code", EXIT_OK)) if info else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
