"""The terminal summary, most important last (the end of a CI log is what people read):

1. the results table, one row per layer × backend × dtype, cells with a discrepancy first; the
   clean cells of one layer × backend share one row (their dtypes listed); counts are of the
   cases the searches drew, never of shrinking steps or replays of shrunk examples;
2. known discrepancies grouped: one paragraph per entry, with where and in which dtypes it matched;
3. unsupported cells and unavailable backends;
4. regime coverage, compact: a count, and each regime left without cases named;
5. the findings (``conformance.findings``), one paragraph per probable bug: its count of cases
   and dtypes, where it fails (the learned rule and how exact it is on the cases seen), its
   smallest shrunk example with its input values, expected against got, the repro command, and
   its cases underneath, one line each (without findings, one paragraph per discrepancy);
6. with a baseline, the regressions: new, fixed and unchanged discrepancies.

Repro commands are given relative to the directory the run was started from (``report_dir``: the
report directory as given on the command line).

The CLI prints the report's paths after this. All text from records goes through
``rich.text.Text`` (never markup), so parameter values with brackets print verbatim.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from reports.records import VERDICTS, printable
from reports.render import (
    MODE_COLUMNS,
    Cell,
    build_cells,
    call_text,
    dtype_rank,
    error_line,
    example_values,
    finding_modes,
    format_number,
    input_text,
    known_groups,
    metrics_text,
    mode_cell_text,
    mode_coverage,
    not_compared_summary,
    places_text,
    regime_coverage,
    reported_discrepancies,
    unavailable_backends,
    unsupported_summary,
    value_text,
    worst_comparison,
)

VERDICT_STYLE = {
    "pass": "green", "fail": "bold red", "error": "bold red", "xpass": "bold magenta", "known": "yellow",
    "unsupported": "dim", "crash": "bold red", "timeout": "bold red", "compile": "bold red",
}
SHORT = {"pass": "pass", "fail": "fail", "error": "err", "known": "known", "xpass": "xpass",
         "unsupported": "unsup", "crash": "crash", "timeout": "t/o",
         "compile": "comp"}
WIDE = 110  # from this console width on, one column per verdict
KNOWN_REASON = 240  # characters of a known entry's reason printed (report.html has it all)


def _utilisation_text(util: float | None) -> Text:
    if util is None:
        return Text("–", style="dim")
    style = "green" if util < 0.5 else "yellow" if util <= 1.0 else "bold red"
    return Text(format_number(util, 3), style=style)


def _counts_text(cell: Cell) -> Text:
    parts = [Text(f"{cell.counts[v]} {SHORT[v]}", style=VERDICT_STYLE[v]) for v in VERDICTS if cell.counts[v]]
    return Text(" ").join(parts) if parts else Text("–", style="dim")


SHORT_DTYPE = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def _rows(cells: list[Cell]) -> list[tuple[Cell, str]]:
    """(cell, dtype text) per table row: a cell that is not clean alone; the clean cells of one
    layer × backend merged into one (counts summed, worst utilisation kept, dtypes listed)."""
    rows: list[tuple[Cell, str]] = []
    merged: dict[tuple[str, str], tuple[Cell, list[str]]] = {}
    for cell in cells:
        if cell.status != "pass":
            rows.append((cell, cell.dtype))
            continue
        key = (cell.op, cell.backend)
        if key not in merged:
            group = Cell(cell.op, cell.backend, cell.dtype, cell.family)
            merged[key] = (group, [])
            rows.append((group, ""))
        group, dtypes = merged[key]
        group.counts.update(cell.counts)
        dtypes.append(cell.dtype)
        if cell.worst_utilisation is not None and (group.worst_utilisation is None
                                                   or cell.worst_utilisation > group.worst_utilisation):
            group.worst_utilisation = cell.worst_utilisation
    out = []
    for cell, text in rows:
        if (cell.op, cell.backend) in merged and merged[(cell.op, cell.backend)][0] is cell:
            dtypes = sorted(merged[(cell.op, cell.backend)][1], key=dtype_rank)
            text = dtypes[0] if len(dtypes) == 1 else " ".join(SHORT_DTYPE.get(d, d) for d in dtypes)
        out.append((cell, text))
    return out


def _table(cells: list[Cell], wide: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="nnconform results", title_justify="left", pad_edge=False,
                  collapse_padding=True)
    table.add_column("Layer", style="bold", overflow="fold")
    table.add_column("Backend", overflow="fold")
    table.add_column("DType")
    table.add_column("Cases", justify="right")
    if wide:
        for v in VERDICTS:
            table.add_column(SHORT[v], justify="right", style=VERDICT_STYLE[v])
    else:
        table.add_column("Verdicts", overflow="fold")
    table.add_column("Util", justify="right")
    for cell, dtype_text in _rows(cells):
        row: list[Any] = [Text(printable(cell.op, False), style="bold red" if cell.status == "fail" else ""),
                          Text(printable(cell.backend, False)), Text(dtype_text), str(cell.cases)]
        if wide:
            row += [str(cell.counts[v]) if cell.counts[v] else Text("·", style="dim") for v in VERDICTS]
        else:
            row.append(_counts_text(cell))
        row.append(_utilisation_text(cell.worst_utilisation))
        table.add_row(*row)
    return table


def repro_command(report_dir: str | None, relative: str) -> str:
    """``python <report-dir>/repro/X.py``: a command that works from where the run was started."""
    path = os.path.join(report_dir, relative) if report_dir else relative
    return f"python {shlex.quote(path)}"


def _discrepancy_block(record: dict[str, Any], index: int, report_dir: str | None = None) -> RenderableType:
    """Heading, then an indented block (wrapped lines keep the indent): call, inputs, worst tensor,
    error, known entry, repro command."""
    verdict = record.get("verdict", "?")
    head = Text.assemble(
        (f"{index}. ", "bold"), (verdict.upper(), VERDICT_STYLE.get(verdict, "bold red")), " ",
        (f"{record.get('op')} / {record.get('backend')} / {record.get('dtype')}", "bold"),
        (f"  [case {record.get('case_id', '?')}]", "dim"),
    )
    case = record.get("case") or {}
    lines: list[Text] = [Text(call_text(record))]
    if case.get("inputs"):
        mode = "train" if case.get("train", True) else "eval"
        lines.append(Text("inputs: " + ", ".join(input_text(n, i) for n, i in case["inputs"].items())
                          + f"; tier={case.get('tier', '?')}, {mode}", style="dim"))
    worst = worst_comparison(record)
    if worst is not None and not worst.get("ok", True):
        message = worst.get("message") or f"{worst.get('mismatches', 0)}/{worst.get('size', 0)} mismatches"
        lines.append(Text.assemble("worst: ", (str(worst.get("tensor", "?")), "bold red"), f"  {message}"))
        lines.append(Text("  " + metrics_text(worst), style="red"))
    elif worst is not None:
        lines.append(Text(f"all {len(record.get('comparisons') or [])} tensors within bounds "
                          f"(worst utilisation {format_number(worst.get('utilisation'))})"))
    if record.get("error"):
        side = record.get("error_side") or "?"
        lines.append(Text(f"error ({side}): " + error_line(record), style="red"))
    known = record.get("known")
    if known:
        lines.append(Text(f"known entry {known.get('id')}: {known.get('reason', '')} {known.get('link', '')}",
                          style="yellow"))
    artifacts = record.get("artifacts") or {}
    if artifacts.get("repro"):
        lines.append(Text(f"repro: {repro_command(report_dir, artifacts['repro'])}", style="cyan"))
    return Group(head, Padding(Group(*lines), (0, 0, 0, 3), expand=False))


CASES_LISTED = 6


def _finding_block(finding: dict[str, Any], report_dir: str | None) -> RenderableType:
    """One finding: heading, counts, where it fails, the smallest example, then its shrunk
    examples one line each."""
    kind_style = "bold magenta" if finding.get("kind") == "xpass" else "bold red"
    head = Text.assemble((f"{finding.get('id', '?')}. ", "bold"), (printable(finding.get("title", "?"), False),
                                                                   kind_style))
    modes = finding_modes(finding)
    if modes and modes != ["vjp"]:
        head.append(f"  [mode {', '.join(modes)}]", style="bold")
    by_dtype = finding.get("by_dtype") or {}
    cases = int(finding.get("cases") or 0)
    shrunk = int(finding.get("shrunk") or 0)
    lines: list[Text] = [Text(
        f"{cases} failing case{'' if cases == 1 else 's'} in "
        + (", ".join(f"{d} ({n})" for d, n in by_dtype.items()) or "–")
        + (f"; {shrunk} shrunk example{'' if shrunk == 1 else 's'}" if shrunk else ""))]
    rule = finding.get("rule")
    if rule:
        lines.append(Text.assemble("where: ", (printable(rule.get("text", "?"), False), "bold"),
                                   (f" — {rule.get('quality', '')}", "dim")))
    example = finding.get("example") or {}
    if example.get("case"):
        lines.append(Text("smallest: " + printable(call_text(example), False)))
        values = example_values(report_dir, example, digits=6, limit=12)
        if values:
            for v in values:
                label = f"{v['role']} {v['name']}" if v["role"] != "input" else v["name"]
                shape = "×".join(map(str, v["shape"])) or "scalar"
                lines.append(Text(f"  {label}[{shape}] = {printable(v['text'], False)}", style="dim"))
        else:
            inputs = (example.get("case") or {}).get("inputs") or {}
            lines.append(Text("  inputs: " + ", ".join(input_text(n, i) for n, i in inputs.items()), style="dim"))
        worst = worst_comparison(example)
        if worst is not None and not worst.get("ok", True):
            w = (worst.get("worst") or [{}])[0]
            where = tuple(w.get("index") or ())
            lines.append(Text.assemble(
                "  ", (str(worst.get("tensor", "?")), "bold red"),
                f"{list(where) if where else ''}: expected {value_text(w.get('ref', 0.0), 8)}, "
                f"got {value_text(w.get('got', 0.0), 8)} (allowed error {format_number(w.get('bound'))}); "
                f"{worst.get('message') or ''}"))
    if example.get("error"):
        lines.append(Text(f"error ({example.get('error_side') or '?'}): " + error_line(example), style="red"))
    repro = (example.get("artifacts") or {}).get("repro")
    if repro:
        lines.append(Text(f"repro: {repro_command(report_dir, repro)}", style="cyan"))
    listed = finding.get("examples") or []
    if len(listed) > 1:
        parts = [f"{e.get('dtype')} {e.get('case_id')}" + (f" ({e['regime']})" if e.get("regime") else "")
                 for e in listed[:CASES_LISTED]]
        more = f" and {len(listed) - CASES_LISTED} more (report.html)" if len(listed) > CASES_LISTED else ""
        lines.append(Text("shrunk examples: " + printable("; ".join(parts), False) + more, style="dim"))
    return Group(head, Padding(Group(*lines), (0, 0, 0, 3), expand=False))


def _mode_table(records: list[dict[str, Any]]) -> Table | None:
    """The entry × mode table (verdict counts of the drawn cases per mode), for a run of more than
    the vjp mode; None otherwise."""
    coverage = mode_coverage(records)
    if not coverage["shown"]:
        return None
    table = Table(box=box.SIMPLE_HEAD, title="by mode (" + ", ".join(MODE_COLUMNS) + ")", title_justify="left",
                  pad_edge=False, collapse_padding=True)
    table.add_column("Entry", style="bold", overflow="fold")
    for mode in coverage["modes"]:
        table.add_column(mode, overflow="fold")
    for row in coverage["rows"]:
        table.add_row(Text(printable(row["entry"], False), style="bold red" if row["found"] else ""),
                      *[Text(mode_cell_text(c), style="red" if c and c.get("found") else "")
                        for c in row["cells"]])
    return table


def _known_block(group: dict[str, Any]) -> RenderableType:
    """One paragraph per known entry: where it matched (dtypes grouped), then its reason, indented."""
    label = f"{group['known']} known" + (f", {group['xpass']} xpass" if group["xpass"] else "")
    reason = " ".join(str(group["reason"]).split())
    if len(reason) > KNOWN_REASON:  # the whole reason (and its repro) is in report.html
        reason = reason[: KNOWN_REASON - 1].rsplit(" ", 1)[0] + " …"
    reason = f"{reason} {group['link']}".rstrip()
    head = Text.assemble(("Known ", "yellow"), (str(group["id"]), "bold yellow"), f" ({label}): ",
                         places_text(group["places"]))
    return Group(head, Padding(Text(reason, style="yellow"), (0, 0, 0, 3), expand=False))


def _regime_lines(cells: list[Cell], run_info: dict[str, Any]) -> list[Text]:
    """One summary line, then one line per regime that some backend × dtype left without cases."""
    targets = regime_coverage(cells, run_info)
    if not targets:
        return []
    regimes = sum(len(t["rows"]) for t in targets)
    uncovered = [(t, r) for t in targets for r in t["rows"] if r["uncovered"]]
    least = min((n for t in targets for r in t["rows"] for n in r["counts"] if n), default=0)
    head = (f"Regime coverage: {regimes} regime{'' if regimes == 1 else 's'} of {len(targets)} "
            f"target{'' if len(targets) == 1 else 's'}")
    if not uncovered:
        lines = [Text(f"{head}, each with cases in every backend × dtype (at least {least}).", style="green")]
    else:
        lines = [Text(f"{head}; {len(uncovered)} left without cases somewhere:", style="bold yellow")]
    for target, row in uncovered:
        where = [f"{b}/{d}" for (b, d), n, declined in zip(target["columns"], row["counts"], row["declined"])
                 if n == 0 and not declined]
        where_text = "any backend × dtype" if len(where) == len(target["columns"]) > 1 else ", ".join(where)
        lines.append(Text.assemble("   ", (target["op"], "bold"), f": {row['name']} — 0 cases in ",
                                   (where_text, "yellow")))
    if not any(t["declared"] for t in targets):
        lines.append(Text("   (run.json lists no declared regimes: only regimes some case reached are shown)",
                          style="dim"))
    return lines


def _regression_lines(regressions: Any) -> list[Text]:
    lines = [Text.assemble(("\nRegressions: ", "bold"), (regressions.counts_text(), "bold"),
                           f" (baseline {regressions.baseline})")]
    styles = (("NEW", regressions.new, "bold red"), ("FIXED", regressions.fixed, "bold green"),
              ("unchanged", regressions.unchanged, "dim"))
    for label, pairs, style in styles:
        for sig, records in pairs:
            extra = f" ({len(records)} shrunk examples)" if len(records) > 1 else ""
            lines.append(Text.assemble("  ", (f"{label:<10}", style), sig.text() + extra))
    if regressions.not_rerun:
        lines.append(Text(f"  {len(regressions.not_rerun)} baseline discrepancies are in cells this run did not run "
                          "(neither fixed nor new).", style="dim"))
    lines.append(Text("New discrepancies since the baseline: exit status 1." if regressions.new
                      else "Nothing new since the baseline: exit status 0.",
                      style="bold red" if regressions.new else "bold green"))
    return lines


def summary_table(records: list[dict[str, Any]], run_info: dict[str, Any], width: int | None = None,
                  baseline: Any = None, findings: list[dict[str, Any]] | None = None,
                  report_dir: str | None = None) -> Group:
    """The summary as one rich renderable (see the module docstring for its order). ``width``
    (the console's) picks one column per verdict (>= 110) or a compact verdict column;
    ``baseline`` (a ``reports.baseline.Baseline``) adds the regressions; ``findings`` (from
    ``conformance.findings``) replace the list of discrepancies; ``report_dir``: the report
    directory as the user named it (repro commands start with it)."""
    if report_dir is None and isinstance(run_info.get("report_dir"), str):
        report_dir = run_info["report_dir"]
    cells = build_cells(records)
    parts: list[RenderableType] = []
    if cells:
        parts.append(_table(cells, wide=(width or 120) >= WIDE))
    else:
        parts.append(Text("No cases were run.", style="yellow"))
    modes = _mode_table(records)
    if modes is not None:
        parts.append(modes)
    for group in known_groups(records):
        parts.append(_known_block(group))
    for row in unsupported_summary(records):
        parts.append(Text(f"Unsupported: {row['op']} on {row['backend']} ({', '.join(row['dtypes'])})"
                          + (f": {row['reason']}" if row["reason"] else ""), style="dim"))
    for row in not_compared_summary(records):
        parts.append(Text(f"Not compared: {row['tensors']} gradients of {row['cases']} cases on {row['backend']}, "
                          "a forward-only backend (they are neither passed nor failed)", style="dim"))
    for name, reason in unavailable_backends(run_info):
        parts.append(Text.assemble(("Unavailable backend ", "yellow"), (name, "bold yellow"), f": {reason}"))
    parts.extend(_regime_lines(cells, run_info))
    discrepancies = reported_discrepancies(records)
    if findings:
        cases = sum(int(f.get("cases") or 0) for f in findings)
        parts.append(Text(f"\n{len(findings)} finding{'' if len(findings) == 1 else 's'} ({cases} failing "
                          f"case{'' if cases == 1 else 's'}), each a probable bug:", style="bold red"))
        for finding in findings:
            parts.append(_finding_block(finding, report_dir))
    elif discrepancies:
        parts.append(Text(f"\n{len(discrepancies)} discrepanc{'y' if len(discrepancies) == 1 else 'ies'}:",
                          style="bold red"))
        for i, record in enumerate(discrepancies, 1):
            parts.append(_discrepancy_block(record, i, report_dir))
    if not discrepancies and cells:
        parts.append(Text("No discrepancies.", style="bold green"))
    if baseline is not None:
        from reports.baseline import compare_runs

        parts.extend(_regression_lines(compare_runs(records, baseline)))
    return Group(*parts)


def print_summary(records: list[dict[str, Any]], run_info: dict[str, Any], console: Console | None = None,
                  baseline: Any = None, findings: list[dict[str, Any]] | None = None,
                  report_dir: str | None = None) -> None:
    """Print ``summary_table`` on ``console`` (a new stdout console by default)."""
    console = console or Console()
    console.print(summary_table(records, run_info, width=console.width, baseline=baseline, findings=findings,
                                report_dir=report_dir))


def print_findings(findings: list[dict[str, Any]], report_dir: str | None, console: Console | None = None) -> None:
    """The findings alone (``nnconform findings DIR``)."""
    console = console or Console()
    if not findings:
        console.print(Text("No findings: nothing failed.", style="bold green"))
        return
    for finding in findings:
        console.print(_finding_block(finding, report_dir))
