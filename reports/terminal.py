"""The terminal summary: a rich table per layer × backend × dtype, then each discrepancy.

All text from records goes through ``rich.text.Text`` (never markup), so parameter values with
brackets print verbatim.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from reports.records import VERDICTS
from reports.render import (
    Cell,
    build_cells,
    call_text,
    format_number,
    input_text,
    known_summary,
    metrics_text,
    reported_discrepancies,
    unavailable_backends,
    unsupported_summary,
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


def _utilisation_text(util: float | None) -> Text:
    if util is None:
        return Text("–", style="dim")
    style = "green" if util < 0.5 else "yellow" if util <= 1.0 else "bold red"
    return Text(format_number(util, 3), style=style)


def _counts_text(cell: Cell) -> Text:
    parts = [Text(f"{cell.counts[v]} {SHORT[v]}", style=VERDICT_STYLE[v]) for v in VERDICTS if cell.counts[v]]
    return Text(" ").join(parts) if parts else Text("–", style="dim")


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
    for cell in cells:
        row: list[Any] = [Text(cell.op, style="bold red" if cell.status == "fail" else ""),
                          cell.backend, cell.dtype, str(cell.cases)]
        if wide:
            row += [str(cell.counts[v]) if cell.counts[v] else Text("·", style="dim") for v in VERDICTS]
        else:
            row.append(_counts_text(cell))
        row.append(_utilisation_text(cell.worst_utilisation))
        table.add_row(*row)
    return table


def _discrepancy_block(record: dict[str, Any], index: int) -> RenderableType:
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
        text = str(record["error"]).strip().splitlines()
        lines.append(Text(f"error ({side}): " + (text[-1] if text else ""), style="red"))
    known = record.get("known")
    if known:
        lines.append(Text(f"known entry {known.get('id')}: {known.get('reason', '')} {known.get('link', '')}",
                          style="yellow"))
    artifacts = record.get("artifacts") or {}
    if artifacts.get("repro"):
        lines.append(Text(f"repro: python {artifacts['repro']}", style="cyan"))
    return Group(head, Padding(Group(*lines), (0, 0, 0, 3), expand=False))


def summary_table(records: list[dict[str, Any]], run_info: dict[str, Any], width: int | None = None) -> Group:
    """The summary as one rich renderable: the results table (cells with discrepancies first),
    unavailable backends, unsupported and known summaries, then one paragraph per discrepancy.
    ``width`` (the console's) picks one column per verdict (>= 110) or a compact verdict column."""
    cells = build_cells(records)
    parts: list[RenderableType] = []
    if cells:
        parts.append(_table(cells, wide=(width or 120) >= WIDE))
    else:
        parts.append(Text("No cases were run.", style="yellow"))
    for name, reason in unavailable_backends(run_info):
        parts.append(Text.assemble(("Unavailable backend ", "yellow"), (name, "bold yellow"), f": {reason}"))
    for row in unsupported_summary(records):
        parts.append(Text(f"Unsupported: {row['op']} on {row['backend']} ({', '.join(row['dtypes'])})"
                          + (f": {row['reason']}" if row["reason"] else ""), style="dim"))
    for row in known_summary(records):
        label = f"{row['known']} known" + (f", {row['xpass']} xpass" if row["xpass"] else "")
        parts.append(Text(f"Known {row['id']} ({row['op']}/{row['backend']}/{row['dtype']}, {label}): "
                          f"{row['reason']} {row['link']}".rstrip(), style="yellow"))
    discrepancies = reported_discrepancies(records)
    if discrepancies:
        parts.append(Text(f"\n{len(discrepancies)} discrepanc{'y' if len(discrepancies) == 1 else 'ies'}:",
                          style="bold red"))
        for i, record in enumerate(discrepancies, 1):
            parts.append(_discrepancy_block(record, i))
    elif cells:
        parts.append(Text("\nNo discrepancies.", style="bold green"))
    return Group(*parts)


def print_summary(records: list[dict[str, Any]], run_info: dict[str, Any], console: Console | None = None) -> None:
    """Print ``summary_table`` on ``console`` (a new stdout console by default)."""
    console = console or Console()
    console.print(summary_table(records, run_info, width=console.width))
