"""The ``nnconform`` command: ``backends``, ``list``, ``run`` and ``report``.

Exit codes: 0 everything conforms (known discrepancies allowed), 1 a discrepancy was found,
2 a usage error (unknown op or backend, bad option), reported on one line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
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
    p.add_argument("--baseline", metavar="OLD_DIR", help=_BASELINE_HELP)
    p = sub.add_parser("report", help="re-render the reports of a run directory")
    p.add_argument("directory")
    p.add_argument("--baseline", metavar="OLD_DIR", help=_BASELINE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        handler = {"backends": cmd_backends, "list": cmd_list, "run": cmd_run, "report": cmd_report}[args.command]
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


def _resolve_run(args: argparse.Namespace) -> tuple[list[Any], list[Any], list[str], list[dict[str, Any]]]:
    from conformance.dtypes import DTYPE_NAMES
    from conformance.registry import BackendNotFound, load_backend
    from conformance.spec import select_specs

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
            if not args.no_isolate:
                from conformance.isolation import IsolatedBackend

                backend = IsolatedBackend(name, backend, timeout=args.timeout)
            backends.append(backend)
        elif not args.skip_unavailable:
            raise UsageError(f"backend {backend.name} is unavailable: {info['reason']} (use --skip-unavailable)")
    return backends, specs, dtypes, infos


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
    from rich.console import Console

    from conformance.known import load_known
    from conformance.profiles import PROFILES
    from conformance.runner import Runner, RunRequest
    from reports.records import RecordWriter, read_records, write_run_info

    backends, specs, dtypes, infos = _resolve_run(args)
    baseline = _baseline(args.baseline)
    report_dir = Path(args.report_dir)
    try:
        known = load_known()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    request = RunRequest(backends=backends, specs=specs, dtypes=dtypes, profile=PROFILES[args.profile],
                         report_dir=report_dir, examples=args.examples, seed=args.seed, known=known,
                         invalid=not args.no_invalid)
    for info in infos:
        if not info["available"]:
            print(f"nnconform: backend {info['name']} unavailable: {info['reason']}", file=sys.stderr)
    started = time.time()
    err = Console(stderr=True)
    total = len(backends) * len(specs) * len(dtypes)
    with RecordWriter(report_dir) as writer:
        runner = Runner(request, writer)
        if args.quiet or not err.is_terminal or total == 0:
            runner.run()
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=err, transient=True) as progress:
                task = progress.add_task("starting", total=total)
                state = {"n": 0}

                def on_target(op: str, backend: str, dtype: str) -> None:
                    progress.update(task, completed=state["n"], description=f"{op} · {backend} · {dtype}")
                    state["n"] += 1

                runner._on_target = on_target
                runner.run()
    for backend in backends:
        if hasattr(backend, "close"):
            backend.close()
    duration = time.time() - started
    exit_code = EXIT_DISCREPANCY if runner.discrepancies else EXIT_OK
    if baseline is not None:
        from reports.baseline import regression_exit_code

        exit_code = regression_exit_code(report_dir, baseline)
    info = {
        "run_id": runner.run_id, "argv": ["nnconform", *argv], "profile": args.profile, "seed": args.seed,
        "examples": args.examples, "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "duration_s": duration, "backends": infos, "ops": [s.id for s in specs], "dtypes": dtypes,
        "cases": runner.cases, "cases_per_second": runner.cases / duration if duration > 0 else 0.0,
        "discrepancies": runner.discrepancies, "exit_code": exit_code, "versions": _versions(backends),
    }
    if baseline is not None:
        info["baseline"] = str(baseline.path)
    write_run_info(report_dir, info)
    paths = _render(report_dir, baseline)
    _print_summary(list(read_records(report_dir)), info, baseline)
    for kind, path in paths.items():
        print(f"{kind} report: {path}")
    print(f"{runner.cases} cases in {duration:.1f} s ({info['cases_per_second']:.1f} cases/s); "
          f"{runner.discrepancies} discrepancies; results: {report_dir / 'results.jsonl'}")
    return exit_code


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
