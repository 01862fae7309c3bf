"""The ``nnconform`` commands that read finished run directories: ``report``, ``findings``,
``triage``, ``merge``, ``costs`` and ``coverage``, and the summary that ends every run
(``finish``: reports rendered, the summary printed, the exit code).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from conformance.cli_common import (
    EXIT_DISCREPANCY,
    EXIT_HARNESS,
    EXIT_OK,
    HarnessError,
    UsageError,
    baseline_arg,
    csv_list,
    say,
    writable_report_dir,
)


def finish(report_dir: Path, info: dict[str, Any], baseline: Any = None) -> int:
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
    say(f"nnconform: INCOMPLETE RUN: {'; '.join(reasons)}")
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
    out = writable_report_dir(Path(args.report_dir))
    if any(d.resolve() == out.resolve() for d in directories):
        raise UsageError("the merged report directory must differ from the directories merged")
    try:
        info = merge_runs(directories, out)
    except MergeError as exc:
        raise UsageError(str(exc)) from None
    info["argv"] = ["nnconform", *argv]
    write_run_info(out, info)
    return finish(out, info)


def cmd_costs(args: argparse.Namespace, argv: list[str]) -> int:
    from conformance.parallel import load_costs, measured_costs

    directories = [Path(d) for d in args.directories]
    if args.plan is None and not directories:
        raise UsageError("costs needs run directories or saved coverage tables (or --plan SECONDS)")
    try:
        measured = measured_costs(directories)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.plan is None:
        print(json.dumps(measured, indent=1, sort_keys=True))
        return EXIT_OK
    return _plan(args, {**load_costs(), **measured})


def _plan(args: argparse.Namespace, costs: dict[str, float]) -> int:
    """Print ``costs --plan``: the fewest shards of the whole catalogue that keep each job within the time."""
    from backends.base import DTYPE_NAMES
    from conformance.parallel import Target, cost_key, over_budget, plan_shards
    from conformance.spec import select_specs

    targets = [Target(spec.id, args.backend, dtype) for spec in select_specs(None) for dtype in DTYPE_NAMES]
    predicted = plan_shards(targets, args.plan, args.jobs, costs)
    own = sum(cost_key(args.backend, t.spec_id, t.dtype) in costs for t in targets)
    measured = (f"all {own} targets measured on {args.backend}" if own == len(targets) else
                f"{own} of {len(targets)} targets measured on {args.backend}, "
                "the others estimated from torch-cpu's costs")
    print(f"{args.backend}: --shard K/{len(predicted)} keeps every job within {args.plan:g} s with -j {args.jobs} "
          f"(predicted {min(predicted):.0f}-{max(predicted):.0f} s per shard, {sum(predicted) / 60:.0f} min in all); "
          f"{measured}")
    over = over_budget(targets, args.plan, costs)
    if over:
        named = ", ".join(f"{t.spec_id} {t.dtype} ({seconds:.0f} s)" for t, seconds in over[:5])
        print(f"except the shard of each target predicted to take longer alone ({len(over)}): {named}"
              + (f" and {len(over) - 5} more" if len(over) > 5 else ""))
    return EXIT_OK


def cmd_coverage(args: argparse.Namespace, argv: list[str]) -> int:
    from reports.coverage import classes_by_backend, coverage_table, listing, save, target_rows

    try:
        rows = target_rows(args.directories)  # a later source's row replaces an earlier one's
    except ValueError as exc:
        raise UsageError(str(exc)) from None
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
    baseline = baseline_arg(args.baseline)
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
        wanted = {x.strip() for x in csv_list(args.finding)}
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
        say(f"nnconform: {note}")
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
