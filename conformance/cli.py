"""The ``nnconform`` command: ``backends``, ``list``, ``run``, ``report``, ``findings``, ``triage``,
``merge``, ``costs`` and ``coverage``.

``run`` takes its defaults (backends, ops, dtypes, profile, known files, report directory) from the
``[tool.nnconform]`` table of the project's ``pyproject.toml`` (``conformance.config``); options
on the command line win, and ``--known`` files are added to the table's. ``report``, ``findings``
and ``triage`` read a run directory (default: the configured report directory).

Exit codes (one line on stderr for every code but 0 and 1, never a traceback):

- 0: everything conforms (known discrepancies allowed);
- 1: a discrepancy was found;
- 2: a usage error (unknown op or backend, bad option, unusable database or report directory);
- 3: a harness error (the traceback is saved to ``nnconform-error.log`` in the report directory)
  or an incomplete run (interrupted, a shard missing, a torn or unreadable record, no case run);
- 130: interrupted (Ctrl-C or SIGTERM) after a clean stop that leaves a valid, re-renderable,
  incomplete report.
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
from typing import Any

from conformance.cli_common import (
    BASELINE_HELP,
    DEFAULT_REPORT_DIR,
    DEFAULT_TIMEOUT,
    EXIT_DISCREPANCY,
    EXIT_HARNESS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    HarnessError,
    Parser,
    UsageError,
    baseline_arg,
    csv_list,
    int_arg,
    one_line,
    positive,
    robust_streams,
    save_traceback,
    say,
    shard_arg,
    writable_report_dir,
)
from conformance.cli_reports import cmd_costs, cmd_coverage, cmd_findings, cmd_merge, cmd_report, cmd_triage, finish


def build_parser() -> argparse.ArgumentParser:
    from conformance.profiles import PROFILES

    parser = Parser(prog="nnconform", description="Conformance suite and differential fuzzer for torch.nn layers.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    sub.required = True
    p = sub.add_parser("backends", help="list backends, their availability and capabilities")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("list", help="list the declared layers, their variants and regimes")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("run", help="run the conformance suite")
    p.add_argument("--backend", action="append", metavar="NAME|module:Class",
                   help="backend to test (repeatable; default torch-cpu)")
    p.add_argument("--ops", action="append", metavar="NAME[,NAME|glob]", help="layers to run (default all)")
    p.add_argument("--dtypes", action="append", metavar="DTYPE[,DTYPE]", help="dtypes (default all four)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None, help="run profile (default ci)")
    p.add_argument("--examples", type=positive(int), help="examples per layer × backend × dtype")
    p.add_argument("--seed", type=int_arg, help="random seed (overrides the profile's derandomization)")
    p.add_argument("--report-dir", default=None, help=f"where results and reports go (default {DEFAULT_REPORT_DIR})")
    p.add_argument("--known", action="append", metavar="FILE", default=None,
                   help="a known-discrepancy file of your own (repeatable; added to the built-in entries and "
                        "to those of [tool.nnconform])")
    _config_options(p)
    p.add_argument("--skip-unavailable", action="store_true",
                   help="record unavailable backends and go on, instead of failing with exit code 2")
    p.add_argument("--no-invalid", action="store_true", help="skip the invalid-parameter searches")
    p.add_argument("-x", "--first-failure", action="store_true",
                   help="end each target at its first discrepancy, once shrunk (its other regimes are not searched)")
    from conformance.modes import mode_option

    p.add_argument("--mode", type=mode_option, default=("vjp",), metavar="MODE[,MODE]|all",
                   help="derivative modes: vjp (default), jvp, vjp2, vmap; all for nightly runs")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--timeout", type=positive(float), default=None, metavar="SECONDS",
                   help=f"per-case time limit of a backend call (default {DEFAULT_TIMEOUT:g}; needs isolation)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run backends in this process (faster start; a crash then ends the run, and no "
                        "time limit can be kept)")
    p.add_argument("-j", "--jobs", type=positive(int), default=None, metavar="N",
                   help="targets run in parallel in N processes (default: the machine's cores)")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="K/N",
                   help="run only the K-th of N parts of the targets, balanced by measured cost")
    p.add_argument("--database", default=None, metavar="DIR|redis://...",
                   help="a Hypothesis example database to share (directory or Redis URL)")
    p.add_argument("--baseline", metavar="OLD_DIR", help=BASELINE_HELP)
    p = sub.add_parser("report", help="re-render the reports of a run directory")
    p.add_argument("directory", nargs="?", help="a run's report directory (default: the configured one)")
    p.add_argument("--baseline", metavar="OLD_DIR", help=BASELINE_HELP)
    _config_options(p)
    p = sub.add_parser("findings", help="the findings of a run: one per probable bug, with where it fails")
    p.add_argument("directory", nargs="?", help="a run's report directory (default: the configured one)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="each finding as a bug report for upstream")
    form.add_argument("--json", action="store_true", help="the findings as JSON (as in findings.json)")
    p.add_argument("--finding", action="append", metavar="ID", help="only these findings (F1, F2...; repeatable)")
    _config_options(p)
    p = sub.add_parser("triage", help="draft known-discrepancy entries from a run's findings")
    p.add_argument("directory", nargs="?", help="a run's report directory (default: the configured one)")
    p.add_argument("--write-known", metavar="FILE",
                   help="append the drafted entries to FILE (created if missing); without it they are printed")
    p.add_argument("--margin", type=positive(float), default=10.0,
                   help="wrong-value bounds are this many times the largest error seen (default 10)")
    p.add_argument("--finding", action="append", metavar="ID", help="only these findings (F1, F2...; repeatable)")
    _config_options(p)
    p = sub.add_parser("merge", help="combine run directories (shards) into one results.jsonl and report")
    p.add_argument("--report-dir", required=True, help="where the merged results and reports go")
    p.add_argument("directories", nargs="+", metavar="DIR")
    p = sub.add_parser("costs", help="print seconds per target from run directories or saved coverage tables "
                                     "(for target_costs.json), "
                                     "or plan the shards that keep a backend's CI jobs within a time")
    p.add_argument("directories", nargs="*", metavar="DIR")
    p.add_argument("--plan", type=positive(float), metavar="SECONDS",
                   help="print the fewest --shard K/N parts of the whole catalogue on --backend whose every job is "
                        "predicted to take at most SECONDS, from target_costs.json and the DIRs' measurements")
    p.add_argument("--backend", default="torch-cpu", metavar="NAME",
                   help="the backend to plan for, by the name its records carry (default torch-cpu)")
    p.add_argument("-j", "--jobs", type=positive(int), default=2, metavar="N",
                   help="parallel jobs in each CI job (default 2: a 2-core runner)")
    p = sub.add_parser("coverage", help="per backend, how many targets were compared, failed to export, "
                                        "were unsupported or failed in the call (run directories or shards)")
    p.add_argument("directories", nargs="+", metavar="DIR|FILE",
                   help="run directories, or tables saved with --save (a later source's target replaces an earlier's)")
    p.add_argument("--list", action="append", metavar="CLASS", choices=("compared", "export failed", "unsupported",
                                                                         "call failed"),
                   help="also list the targets of this class (repeatable)")
    p.add_argument("--save", metavar="FILE", help="write the merged per-target classes to FILE (JSON lines)")
    return parser


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None,
                   help="read [tool.nnconform] from FILE instead of the nearest pyproject.toml")
    p.add_argument("--no-config", action="store_true", help="ignore [tool.nnconform]")


def _configure(args: argparse.Namespace) -> None:
    """Fill the options the command line left unset from ``[tool.nnconform]`` (``args.config``
    becomes the ``Config`` read), then from the built-in defaults."""
    from conformance.config import Config, ConfigError, load_config

    if not hasattr(args, "no_config"):
        return
    try:
        config = Config() if args.no_config else load_config(args.config, required=args.config is not None)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    args.config = config
    if args.command == "run":
        args.backend = args.backend if args.backend is not None else list(config.backends) or None
        args.ops = args.ops if args.ops is not None else list(config.ops) or None
        args.dtypes = args.dtypes if args.dtypes is not None else list(config.dtypes) or None
        args.profile = args.profile or config.profile or "ci"
        args.report_dir = args.report_dir or config.report_dir or DEFAULT_REPORT_DIR
        args.known = [*config.known, *(args.known or [])]
    else:
        args.directory = args.directory or config.report_dir or DEFAULT_REPORT_DIR


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    robust_streams()
    directory: str | None = None
    try:
        args = build_parser().parse_args(argv)
        _configure(args)
        directory = getattr(args, "report_dir", None) or getattr(args, "directory", None)
        handler = {"backends": cmd_backends, "list": cmd_list, "run": cmd_run, "report": cmd_report,
                   "findings": cmd_findings, "triage": cmd_triage, "merge": cmd_merge,
                   "costs": cmd_costs, "coverage": cmd_coverage}[args.command]
        return handler(args, argv)
    except UsageError as exc:
        say(f"nnconform: error: {exc}")
        return EXIT_USAGE
    except HarnessError as exc:
        say(f"nnconform: harness error: {exc}")
        return EXIT_HARNESS
    except KeyboardInterrupt:
        say("nnconform: interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of the harness, never a verdict about a backend
        where = save_traceback(directory)
        say(f"nnconform: internal error: {type(exc).__name__}: {exc} (traceback: {where})")
        return EXIT_HARNESS


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
    width = max([len(info["name"]) for info in infos] + [7])
    for info in infos:
        state = "available" if info["available"] else f"unavailable: {one_line(info['reason'], 200)}"
        details = f"devices {', '.join(info['devices']) or '–'}; dtypes {', '.join(info['dtypes']) or '–'}"
        print(f"{one_line(info['name']):<{width}}  {state}; {details}")
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
    """One line per catalogue entry (family; forward, backward, invalid cases), then one indented
    line per declaration with its regimes; a closing line explains the counts."""
    items = catalogue_listing()
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    width = max([len(it["name"]) for it in items] + [10])
    family_width = max([len(it["family"]) for it in items] + [6])
    regimes = 0
    for it in items:
        parts = ["forward"] + (["backward"] if it["backward"] else []) + (["invalid"] if it["invalid_cases"] else [])
        if it["stochastic"]:
            parts.append("random")
        print(f"{it['name']:<{width}}  {it['family']:<{family_width}}  {' + '.join(parts)}")
        for v in it["variants"]:
            regimes += len(v["regimes"])
            label = f"[{v['variant']}] " if v["variant"] else ""
            names = "; ".join(v["regimes"]) if v["regimes"] else "none"
            print(f"{'':<4}{label}regimes: {names}")
    declarations = sum(len(it["variants"]) for it in items)
    with_variants = sum(1 for it in items if len(it["variants"]) > 1)
    print(f"{len(items)} catalogue entries in {declarations} declarations ({with_variants} entries are declared "
          f"once per variant: a run target is one declaration × backend × dtype), {regimes} regimes in all "
          "(each gets its own cases in every dtype); nnconform list --json for every field.")
    return EXIT_OK


def _resolve_run(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], list[Any], list[str], list[dict[str, Any]]]:
    """(available backends as (name as given, instance), declarations, dtypes, backend infos)."""
    from backends.base import DTYPE_NAMES
    from conformance.registry import BackendNotFound, load_backend
    from conformance.spec import select_specs

    for option, values in (("--ops", args.ops), ("--dtypes", args.dtypes), ("--backend", args.backend)):
        if values is not None and not csv_list(values):
            raise UsageError(f"{option} was given an empty list")
    try:
        specs = select_specs(csv_list(args.ops))
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    dtypes = csv_list(args.dtypes) or list(DTYPE_NAMES)
    for d in dtypes:
        if d not in DTYPE_NAMES:
            raise UsageError(f"unknown dtype {d!r} (known: {', '.join(DTYPE_NAMES)})")
    dtypes = [d for d in DTYPE_NAMES if d in dtypes]
    backends, infos = [], []
    for name in csv_list(args.backend) or ["torch-cpu"]:
        try:
            backend = load_backend(name)
            info = _backend_info(backend)
        except BackendNotFound as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:  # a backend whose constructor or availability check raises is unavailable
            info = {"name": name, "available": False, "devices": [], "dtypes": [], "ops": "all",
                    "reason": f"the backend raised while loading: {type(exc).__name__}: {one_line(exc, 200)}"}
            backend = None
        info["spec"] = name  # as given: a module:Class path, or a registered name
        infos.append(info)
        if info["available"]:
            backends.append((name, backend))
        elif not args.skip_unavailable:
            raise UsageError(f"backend {info['name']} is unavailable: {info['reason']} (use --skip-unavailable)")
    return backends, specs, dtypes, infos


def _check_database(location: str | None, profile_name: str) -> None:
    """A usable ``--database`` for this profile, or a usage error (checked before the run, so a
    broken database never turns into one error per search)."""
    if location is None:
        return
    from conformance.profiles import PROFILES

    if PROFILES[profile_name].derandomize:
        raise UsageError(f"--database has no effect with the derandomized {profile_name} profile "
                         "(use --profile dev or thorough)")
    if location.startswith(("redis://", "rediss://")):
        try:
            from redis import Redis
        except ImportError:
            raise UsageError("--database redis://... needs the redis package (pip install redis)") from None
        try:
            Redis.from_url(location, socket_connect_timeout=5).ping()
        except Exception as exc:
            raise UsageError(f"cannot reach the Redis database {location}: {one_line(exc, 200)}") from None
        return
    try:
        Path(location).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot use the database directory {location!r}: {exc.strerror or exc}") from None


def _versions(backends: list[Any]) -> dict[str, str]:
    import hypothesis
    import numpy

    import conformance

    out = {"python": platform.python_version(), "numpy": numpy.__version__, "hypothesis": hypothesis.__version__,
           "nnconform": conformance.__version__, "platform": platform.platform()}
    for b in backends:
        out.update({f"{b.name}:{k}": v for k, v in b.versions().items()})
    return out


def _cpu_info() -> dict[str, Any]:
    """The CPU's model name, core count and feature flags (Linux; what a bug report needs)."""
    from conformance.known import cpu_flags

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    import os

    return {"model": model or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "machine": platform.machine(), "flags": sorted(cpu_flags())}


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    import uuid

    from conformance.driver import RunSettings, Target, run_serial
    from conformance.known import load_known
    from conformance.parallel import default_jobs, longest_first, run_targets, shard
    from reports.records import RecordWriter, write_run_info

    if args.no_isolate and args.timeout is not None:
        raise UsageError("--timeout needs isolated backends: it cannot be kept with --no-isolate")
    _check_database(args.database, args.profile)
    backends, specs, dtypes, infos = _resolve_run(args)
    baseline = baseline_arg(args.baseline)
    known_files = tuple(str(Path(f).resolve()) for f in args.known)
    for path in known_files:
        if not Path(path).is_file():
            raise UsageError(f"--known {path}: no such file")
    try:
        load_known(extra=known_files)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report_dir = writable_report_dir(Path(args.report_dir))
    for info in infos:
        if not info["available"]:
            print(f"nnconform: backend {info['name']} unavailable: {info['reason']}", file=sys.stderr)
    targets = [Target(s.id, name, d) for name, _ in backends for s in specs for d in dtypes]
    names = {given: backend.name for given, backend in backends}
    if args.shard:
        targets = shard(targets, *args.shard, names=names)
    jobs = min(args.jobs or default_jobs(), max(len(targets), 1))
    if jobs > 1:
        targets = longest_first(targets, names=names)
    # Parallel jobs share the cores: each backend worker gets its share of torch's threads (tiny
    # cases on oversubscribed threads run many times slower). The count is set even for one job, so
    # that known entries can name it (``when``'s ``threads``: inductor generates different code with
    # one thread); an unisolated backend runs in this process with torch's own default.
    threads = None if args.no_isolate else max(1, default_jobs() // jobs)
    settings = RunSettings(report_dir=str(report_dir), profile=args.profile, run_id=uuid.uuid4().hex[:12],
                           examples=args.examples, seed=args.seed, invalid=not args.no_invalid,
                           timeout=args.timeout or DEFAULT_TIMEOUT, isolate=not args.no_isolate, database=args.database,
                           threads=threads, known=known_files, modes=args.mode,
                           first_failure=args.first_failure)
    started = time.time()
    info: dict[str, Any] = {
        "run_id": settings.run_id, "argv": ["nnconform", *argv], "profile": args.profile, "seed": args.seed,
        "examples": args.examples, "jobs": jobs, "threads_per_job": threads, "invalid": not args.no_invalid,
        "first_failure": args.first_failure,
        "shard": list(args.shard) if args.shard else None,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "backends": infos, "ops": [s.id for s in specs], "dtypes": dtypes,
        "regimes": {s.id: [r.name for r in s.regimes] for s in specs},
        "targets": len(targets), "planned": [t.key for t in targets], "completed": [], "status": "running",
        "versions": _versions([b for _, b in backends]), "cpu": _cpu_info(),
        "known_files": list(known_files), "config": args.config.describe(),
        "report_dir": str(args.report_dir), "cwd": str(Path.cwd()),
    }
    write_run_info(report_dir, info)  # a run killed before its end is recognisably incomplete
    outcomes: list[Any] = []
    progress = _RunProgress(report_dir, info)

    def done(outcome: Any) -> None:
        outcomes.append(outcome)
        advance(outcome.target)
        progress.completed(outcome.target.key)

    status = "complete"
    with _progress(args, len(targets)) as advance, _terminate_as_interrupt():
        try:
            if jobs > 1:
                RecordWriter(report_dir).close()  # a fresh, empty results.jsonl the jobs' parts are appended to
                run_targets(targets, settings, jobs, on_done=done)
            else:
                with RecordWriter(report_dir) as writer:
                    run_serial(settings, targets, writer, dict(backends), done)
        except KeyboardInterrupt:
            status = "interrupted"
    duration = time.time() - started
    cases = sum(o.cases for o in outcomes)
    discrepancies = sum(o.discrepancies for o in outcomes)
    exit_code = EXIT_DISCREPANCY if discrepancies else EXIT_OK
    if baseline is not None:
        from reports.baseline import regression_exit_code

        exit_code = regression_exit_code(report_dir, baseline)
    info.update(status=status, completed=progress.keys, duration_s=duration, cases=cases,
                cases_per_second=cases / duration if duration > 0 else 0.0, discrepancies=discrepancies,
                exit_code=exit_code)
    if baseline is not None:
        info["baseline"] = str(baseline.path)
    write_run_info(report_dir, info)
    if status == "interrupted":  # stop now: the directory is valid and `nnconform report` renders it
        say(f"nnconform: interrupted after {len(progress.keys)} of {len(targets)} targets ({cases} cases); "
             f"render the incomplete report with: nnconform report {report_dir}")
        return EXIT_INTERRUPTED
    return finish(report_dir, info, baseline)


class _RunProgress:
    """Keeps run.json's ``completed`` list current while a run goes (at most every 2 s), so that a
    run killed without a chance to clean up is still recognisably incomplete, and how much so."""

    def __init__(self, report_dir: Path, info: dict[str, Any]):
        self.report_dir, self.info, self.keys, self._last = report_dir, info, [], 0.0

    def completed(self, key: str) -> None:
        from reports.records import write_run_info

        self.keys.append(key)
        if time.time() - self._last > 2.0:
            self._last = time.time()
            write_run_info(self.report_dir, {**self.info, "completed": self.keys})


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C: a clean stop and a valid, incomplete report."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a test runner's thread): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


if __name__ == "__main__":
    sys.exit(main())
