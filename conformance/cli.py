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
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_DISCREPANCY, EXIT_USAGE, EXIT_HARNESS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
ERROR_LOG = "nnconform-error.log"
DEFAULT_TIMEOUT = 120.0
DEFAULT_REPORT_DIR = "nnconform-report"


class UsageError(Exception):
    """Bad user input: printed as one line, exit code 2."""


class HarnessError(Exception):
    """The harness could not do its job (an unreadable results file, an incomplete merge): one
    line, exit code 3."""


def one_line(text: object, limit: int = 400) -> str:
    """``text`` as one printable line: control characters (terminal escapes too) shown escaped."""
    flat = " ".join(str(text).split())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in flat)[:limit]


def _say(text: str) -> None:
    """One line on stderr, whatever state the stream is in."""
    try:
        print(one_line(text), file=sys.stderr)
    except Exception:  # pragma: no cover - stderr itself is gone
        pass


class _PipeSafe:
    """stdout that survives a reader going away (``nnconform list | head``): after a broken pipe,
    further output is dropped and the command still returns its own exit code."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, ValueError):
            self._detach()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            self._detach()

    def _detach(self) -> None:
        import os

        try:  # the interpreter flushes stdout at exit: point the descriptor at /dev/null first
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _robust_streams() -> None:
    """Unencodable characters are escaped (``PYTHONIOENCODING=ascii``), a closed pipe is no error."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        with contextlib.suppress(Exception):
            stream.reconfigure(errors="backslashreplace")
    if not isinstance(sys.stdout, _PipeSafe) and hasattr(sys.stdout, "fileno"):
        sys.stdout = _PipeSafe(sys.stdout)


def _save_traceback(directory: str | None) -> str:
    """Write the current exception's traceback to ``DIR/nnconform-error.log`` (or a temporary
    file); return the path."""
    import tempfile
    import traceback

    text = traceback.format_exc()
    for where in ([directory] if directory else []) + [tempfile.gettempdir()]:
        try:
            path = Path(where)
            path.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                target = path / ERROR_LOG
                target.write_text(text, encoding="utf-8")
                return str(target)
        except OSError:
            continue
    return "(not saved)"


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
    p = sub.add_parser("list", help="list the declared layers, their variants and regimes")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("run", help="run the conformance suite")
    p.add_argument("--backend", action="append", metavar="NAME|module:Class",
                   help="backend to test (repeatable; default torch-cpu)")
    p.add_argument("--ops", action="append", metavar="NAME[,NAME|glob]", help="layers to run (default all)")
    p.add_argument("--dtypes", action="append", metavar="DTYPE[,DTYPE]", help="dtypes (default all four)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None, help="run profile (default ci)")
    p.add_argument("--examples", type=_positive(int), help="examples per layer × backend × dtype")
    p.add_argument("--seed", type=_int, help="random seed (overrides the profile's derandomization)")
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
    p.add_argument("--timeout", type=_positive(float), default=None, metavar="SECONDS",
                   help=f"per-case time limit of a backend call (default {DEFAULT_TIMEOUT:g}; needs isolation)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run backends in this process (faster start; a crash then ends the run, and no "
                        "time limit can be kept)")
    p.add_argument("-j", "--jobs", type=_positive(int), default=None, metavar="N",
                   help="targets run in parallel in N processes (default: the machine's cores)")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="run only the K-th of N parts of the targets, balanced by measured cost")
    p.add_argument("--database", default=None, metavar="DIR|redis://...",
                   help="a Hypothesis example database to share (directory or Redis URL)")
    p.add_argument("--baseline", metavar="OLD_DIR", help=_BASELINE_HELP)
    p = sub.add_parser("report", help="re-render the reports of a run directory")
    p.add_argument("directory", nargs="?", help="a run's report directory (default: the configured one)")
    p.add_argument("--baseline", metavar="OLD_DIR", help=_BASELINE_HELP)
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
    p.add_argument("--margin", type=_positive(float), default=10.0,
                   help="wrong-value bounds are this many times the largest error seen (default 10)")
    p.add_argument("--finding", action="append", metavar="ID", help="only these findings (F1, F2...; repeatable)")
    _config_options(p)
    p = sub.add_parser("merge", help="combine run directories (shards) into one results.jsonl and report")
    p.add_argument("--report-dir", required=True, help="where the merged results and reports go")
    p.add_argument("directories", nargs="+", metavar="DIR")
    p = sub.add_parser("costs", help="print seconds per target from run directories (for target_costs.json)")
    p.add_argument("directories", nargs="+", metavar="DIR")
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
    _robust_streams()
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
        _say(f"nnconform: error: {exc}")
        return EXIT_USAGE
    except HarnessError as exc:
        _say(f"nnconform: harness error: {exc}")
        return EXIT_HARNESS
    except KeyboardInterrupt:
        _say("nnconform: interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of the harness, never a verdict about a backend
        where = _save_traceback(directory)
        _say(f"nnconform: internal error: {type(exc).__name__}: {exc} (traceback: {where})")
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
    from conformance.parallel import default_jobs, run_targets, shard
    from reports.records import RecordWriter, write_run_info

    if args.no_isolate and args.timeout is not None:
        raise UsageError("--timeout needs isolated backends: it cannot be kept with --no-isolate")
    _check_database(args.database, args.profile)
    backends, specs, dtypes, infos = _resolve_run(args)
    baseline = _baseline(args.baseline)
    known_files = tuple(str(Path(f).resolve()) for f in args.known)
    for path in known_files:
        if not Path(path).is_file():
            raise UsageError(f"--known {path}: no such file")
    try:
        load_known(extra=known_files)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report_dir = _writable_report_dir(Path(args.report_dir))
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
        _say(f"nnconform: interrupted after {len(progress.keys)} of {len(targets)} targets ({cases} cases); "
             f"render the incomplete report with: nnconform report {report_dir}")
        return EXIT_INTERRUPTED
    return _finish(report_dir, info, baseline)


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


def _finish(report_dir: Path, info: dict[str, Any], baseline: Any = None) -> int:
    """Render the reports, print the summary and return the run's exit code: 130 after an
    interruption, 3 for an otherwise incomplete run, else the run's own."""
    from reports.records import read_records

    unreadable: list[int] = []
    records = list(read_records(report_dir, unreadable))
    paths, findings = _render(report_dir, baseline)
    _print_summary(records, info, baseline, findings, report_dir)
    for kind, path in paths.items():
        print(f"{kind} report: {path}")
    counts = _case_counts(records)
    print(f"{counts['cases']} cases in {float(info.get('duration_s', 0.0)):.1f} s "
          f"({float(info.get('cases_per_second', 0.0)):.1f} cases/s); "
          f"{_plural(len(findings), 'finding')} from {_plural(counts['discrepancies'], 'failing case')} "
          f"({_plural(counts['shrunk'], 'shrunk example')}); results: {report_dir / 'results.jsonl'}")
    return _exit_code(info, records, unreadable, int(info.get("exit_code", EXIT_OK)))


def _plural(n: int, noun: str) -> str:
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


def _case_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """Cases the searches drew (neither shrinking steps nor replays of shrunk examples), those
    with a discrepancy, and the shrunk examples."""
    from backends.base import DISCREPANCY_VERDICTS
    from reports.render import is_drawn_case, replays

    replayed = replays(records)
    drawn = [r for r in records if is_drawn_case(r, replayed)]
    return {"cases": len(drawn), "discrepancies": sum(r.get("verdict") in DISCREPANCY_VERDICTS for r in drawn),
            "shrunk": len(replayed)}


def _exit_code(info: dict[str, Any], records: list[dict[str, Any]], unreadable: list[int], code: int) -> int:
    """The run's ``code`` unless the run is incomplete: then 3, said on one line."""
    from reports.records import incomplete_reasons

    reasons = incomplete_reasons(info, records, unreadable)
    if not reasons:
        return code
    _say(f"nnconform: INCOMPLETE RUN: {'; '.join(reasons)}")
    return EXIT_HARNESS


def cmd_merge(args: argparse.Namespace, argv: list[str]) -> int:
    from conformance.parallel import MergeError, merge_runs
    from reports.records import RESULTS_FILE, write_run_info

    directories = [Path(d) for d in args.directories]
    for directory in directories:
        if not (directory / RESULTS_FILE).is_file():
            raise UsageError(f"{directory} has no {RESULTS_FILE}")
    if len({d.resolve() for d in directories}) < len(directories):
        raise UsageError("a directory is given twice")
    out = _writable_report_dir(Path(args.report_dir))
    if any(d.resolve() == out.resolve() for d in directories):
        raise UsageError("the merged report directory must differ from the directories merged")
    try:
        info = merge_runs(directories, out)
    except MergeError as exc:
        raise UsageError(str(exc)) from None
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


def cmd_coverage(args: argparse.Namespace, argv: list[str]) -> int:
    from reports.coverage import classes_by_backend, coverage_table, listing, save, source_rows
    from reports.records import RESULTS_FILE

    rows: dict[str, dict[str, Any]] = {}  # a later source's row replaces an earlier one's
    for source in map(Path, args.directories):
        if source.is_dir():
            if not (source / RESULTS_FILE).is_file():
                raise UsageError(f"{source} has no {RESULTS_FILE}")
            rows.update(source_rows(source))
            continue
        if not source.is_file():
            raise UsageError(f"{source}: neither a run directory (with {RESULTS_FILE}) nor a saved coverage table")
        try:
            rows.update(source_rows(source))
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{source} is not a coverage table saved with --save "
                             f"({type(exc).__name__}: {exc})") from None
    classes = classes_by_backend(rows)
    if args.save:
        save(args.save, rows)
    print("\n".join(coverage_table(classes)))
    if args.list:
        print("\n".join(listing(classes, args.list)))
    return EXIT_OK


def _render(report_dir: Path, baseline: Any = None) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Findings (``findings.json``), then the HTML and JUnit reports."""
    from conformance.findings import render_run

    return render_run(report_dir, baseline)


def _print_summary(records: list[dict[str, Any]], info: dict[str, Any], baseline: Any = None,
                   findings: list[dict[str, Any]] | None = None, report_dir: Path | None = None) -> None:
    from reports.terminal import print_summary

    print_summary(records, info, baseline=baseline, findings=findings,
                  report_dir=str(report_dir) if report_dir is not None else None)


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from reports.records import RESULTS_FILE, read_records, read_run_info

    directory = Path(args.directory)
    if not (directory / RESULTS_FILE).is_file():
        raise UsageError(f"{directory} has no {RESULTS_FILE}")
    baseline = _baseline(args.baseline)
    paths, findings = _render(directory, baseline)
    info = read_run_info(directory)
    unreadable: list[int] = []
    records = list(read_records(directory, unreadable))
    _print_summary(records, info, baseline, findings, directory)
    for kind, path in paths.items():
        print(f"{kind} report: {path}")
    if baseline is not None:
        from reports.baseline import compare_runs

        code = compare_runs(records, baseline).exit_code
    else:
        from backends.base import DISCREPANCY_VERDICTS

        code = EXIT_DISCREPANCY if any(r.get("verdict") in DISCREPANCY_VERDICTS for r in records) else EXIT_OK
    return _exit_code(info, records, unreadable, code)


def _run_directory(args: argparse.Namespace) -> tuple[Path, list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(directory, records, run info, findings) of ``args.directory``; ``--finding`` filters."""
    from conformance.findings import analyse
    from reports.records import RESULTS_FILE, read_records, read_run_info

    directory = Path(args.directory)
    if not (directory / RESULTS_FILE).is_file():
        raise UsageError(f"{directory} has no {RESULTS_FILE}")
    records = list(read_records(directory))
    info = read_run_info(directory)
    findings = analyse(records)
    if args.finding:
        wanted = {x.strip() for x in _csv(args.finding)}
        unknown = sorted(wanted - {f["id"] for f in findings})
        if unknown:
            have = ", ".join(f["id"] for f in findings) or "none"
            raise UsageError(f"no finding {', '.join(unknown)} (the run has {have})")
        findings = [f for f in findings if f["id"] in wanted]
    return directory, records, info, findings


def cmd_findings(args: argparse.Namespace, argv: list[str]) -> int:
    """The findings of a run: for people (default), as bug reports (``--markdown``) or as JSON."""
    from conformance.finding_drafts import declaration_facts
    from conformance.findings import findings_document

    directory, records, info, findings = _run_directory(args)
    if args.json:
        from reports.records import _clean

        print(json.dumps(_clean(findings_document(findings, info)), indent=1, sort_keys=True))
    elif args.markdown:
        from reports.markdown import findings_markdown

        policies, targets = declaration_facts(findings)
        print(findings_markdown(findings, info, str(directory), policies, targets, records), end="")
    else:
        from reports.terminal import print_findings

        print_findings(findings, str(directory))
    return EXIT_OK


def cmd_triage(args: argparse.Namespace, argv: list[str]) -> int:
    """Draft strict known entries from a run's findings: printed, or appended to ``--write-known``."""
    from conformance.finding_drafts import draft_entries, entries_toml, write_known_file
    from conformance.known import load_file, load_known

    directory, _, info, findings = _run_directory(args)
    taken = set()
    try:
        taken |= {e.id for e in load_known(extra=tuple(getattr(args.config, "known", ())))}
        if args.write_known and Path(args.write_known).exists():
            taken |= {e.id for e in load_file(Path(args.write_known))}
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    entries, notes = draft_entries(findings, info, str(directory), taken, margin=args.margin)
    for note in notes:
        _say(f"nnconform: {note}")
    if not args.write_known:
        print(entries_toml(entries), end="")
        return EXIT_OK
    try:
        path = write_known_file(args.write_known, entries)
    except OSError as exc:
        raise UsageError(f"cannot write {args.write_known!r}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a drafted entry that does not load: a bug of the drafting
        raise HarnessError(f"the drafted entries do not load: {exc}") from None
    print(f"{_plural(len(entries), 'entry')} written to {path} "
          f"({_plural(len(findings) - len(entries), 'finding')} not drafted)."
          if len(findings) != len(entries) else f"{_plural(len(entries), 'entry')} written to {path}.")
    if entries:
        print(f"Review them, then gate on new discrepancies: nnconform run ... --known {shlex.quote(str(path))}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
