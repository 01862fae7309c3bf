"""The HTML report: one self-contained file (inline CSS, no scripts, no external assets).

Rendered with jinja2 from ``templates/report.html.j2`` with autoescaping on, so every value taken
from a record (parameters, error texts, repro scripts) is escaped.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import jinja2

from reports.records import DISCREPANCY_VERDICTS, VERDICTS
from reports.render import (
    Cell,
    backend_rows,
    build_cells,
    call_text,
    case_summary,
    dtype_rank,
    format_exact,
    format_number,
    format_value,
    known_summary,
    layout_text,
    reported_discrepancies,
    unsupported_summary,
)

TEMPLATE = "report.html.j2"
_RUN_KEYS = ("argv", "profile", "seed", "versions", "backends", "duration_s", "exit_code")
_START_KEYS = ("started", "start_time", "start")
_END_KEYS = ("finished", "ended", "end_time", "end")


def _first(info: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((info[k] for k in keys if info.get(k) is not None), None)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    for name, fn in (("num", format_number), ("exact", format_exact), ("value", format_value),
                     ("plain", _plain_text)):
        env.filters[name] = _defined(fn)
    return env


def _defined(fn: Any) -> Any:
    """A filter that reads a missing record field (jinja's Undefined) as None."""
    return lambda value, *args: fn(None if isinstance(value, jinja2.Undefined) else value, *args)


def _plain_text(value: Any) -> str:
    """Run metadata for reading: lists joined with commas, floats shortened."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain_text(v)}" for k, v in value.items())
    if isinstance(value, float):
        return format_number(value)
    return "–" if value is None else str(value)


def _util_class(util: float | None) -> str:
    if util is None:
        return ""
    return "u-low" if util < 0.5 else "u-mid" if util <= 1.0 else "u-high"


def _safe_link(link: Any) -> str:
    """Only http(s) links become hyperlinks (never javascript: or data: URLs)."""
    link = str(link or "")
    return link if link.startswith(("http://", "https://")) else ""


def _matrix(cells: list[Cell], anchors: dict[tuple[str, str, str], str]) -> dict[str, Any]:
    """Rows = layers, columns = backend × dtype, in first-seen order (discrepancies first)."""
    ops: list[str] = []
    backends: dict[str, list[str]] = {}
    by_key = {}
    for cell in sorted(cells, key=lambda c: (c.op, c.backend)):
        by_key[(cell.op, cell.backend, cell.dtype)] = cell
    for cell in cells:
        if cell.op not in ops:
            ops.append(cell.op)
    for cell in sorted(cells, key=lambda c: (c.backend, dtype_rank(c.dtype))):
        backends.setdefault(cell.backend, [])
        if cell.dtype not in backends[cell.backend]:
            backends[cell.backend].append(cell.dtype)
    rows = []
    for op in ops:
        row = []
        for backend, dtypes in backends.items():
            for dtype in dtypes:
                cell = by_key.get((op, backend, dtype))
                if cell is None:
                    row.append(None)
                    continue
                row.append({
                    "status": cell.status,
                    "cases": cell.cases,
                    "counts": [(v, cell.counts[v]) for v in VERDICTS if cell.counts[v] and v != "pass"],
                    "passed": cell.counts["pass"],
                    "util": cell.worst_utilisation,
                    "util_class": _util_class(cell.worst_utilisation),
                    "anchor": anchors.get((op, backend, dtype), ""),
                    "title": ", ".join(f"{cell.counts[v]} {v}" for v in VERDICTS if cell.counts[v]),
                })
        rows.append({"op": op, "family": next((c.family for c in cells if c.op == op), ""), "cells": row})
    return {"backends": [(b, d) for b, d in backends.items()], "rows": rows}


def _read_artifact(report_dir: Path | None, relative: str | None) -> str | None:
    if not relative or report_dir is None:
        return None
    path = report_dir / relative
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _discrepancy_view(record: dict[str, Any], anchor: str, report_dir: Path | None) -> dict[str, Any]:
    case = record.get("case") or {}
    artifacts = record.get("artifacts") or {}
    comparisons = record.get("comparisons") or []
    failing = [c for c in comparisons if not c.get("ok", True)]
    shown_worst = failing or [c for c in comparisons if c.get("worst")]
    known = dict(record.get("known") or {})
    if known:
        known["href"] = _safe_link(known.get("link"))
    return {
        "anchor": anchor,
        "record": record,
        "verdict": record.get("verdict", "?"),
        "call": call_text(record),
        "summary": case_summary(record),
        "case": case,
        "inputs": [
            {"name": name, "shape": info.get("shape", []), "dtype": info.get("dtype", ""),
             "layout": layout_text(info.get("layout")), "strides": info.get("strides", []),
             "requires_grad": info.get("requires_grad", False)}
            for name, info in (case.get("inputs") or {}).items()
        ],
        "comparisons": [dict(c, util_class=_util_class(_as_util(c.get("utilisation")))) for c in comparisons],
        "worst_tables": [c for c in shown_worst if c.get("worst")],
        "known": known,
        "repro_path": artifacts.get("repro"),
        "npz_path": artifacts.get("npz"),
        "repro_text": _read_artifact(report_dir, artifacts.get("repro")),
    }


def _as_util(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _run_view(run_info: dict[str, Any]) -> dict[str, Any]:
    argv = run_info.get("argv")
    if isinstance(argv, (list, tuple)):
        argv = shlex.join(str(a) for a in argv)
    return {
        "argv": argv,
        "profile": run_info.get("profile"),
        "seed": run_info.get("seed"),
        "versions": run_info.get("versions") or {},
        "start": _first(run_info, _START_KEYS),
        "end": _first(run_info, _END_KEYS),
        "duration": run_info.get("duration_s", run_info.get("duration")),
        "exit_code": run_info.get("exit_code"),
        "other": {k: v for k, v in run_info.items()
                  if k not in _RUN_KEYS + _START_KEYS + _END_KEYS + ("duration",)},
    }


def render_html(records: list[dict[str, Any]], run_info: dict[str, Any],
                report_dir: str | os.PathLike[str] | None = None) -> str:
    """The report as one HTML document. ``report_dir`` is where artifact paths are relative to
    (repro scripts are read from there and inlined)."""
    directory = Path(report_dir) if report_dir is not None else None
    cells = build_cells(records)
    discrepancies = reported_discrepancies(records)
    anchors: dict[tuple[str, str, str], str] = {}
    views = []
    for i, record in enumerate(discrepancies, 1):
        anchor = f"discrepancy-{i}"
        anchors.setdefault((record.get("op"), record.get("backend"), record.get("dtype")), anchor)
        views.append(_discrepancy_view(record, anchor, directory))
    totals = {v: sum(c.counts[v] for c in cells) for v in VERDICTS}
    known_rows = [dict(row, href=_safe_link(row["link"])) for row in known_summary(records)]
    return _environment().get_template(TEMPLATE).render(
        run=_run_view(run_info),
        backends=backend_rows(run_info),
        matrix=_matrix(cells, anchors),
        totals=totals,
        verdicts=VERDICTS,
        discrepancy_verdicts=DISCREPANCY_VERDICTS,
        discrepancies=views,
        known_rows=known_rows,
        unsupported_rows=unsupported_summary(records),
        conforming=not discrepancies and not any(totals[v] for v in DISCREPANCY_VERDICTS),
    )


def write_html(path: str | os.PathLike[str], records: list[dict[str, Any]], run_info: dict[str, Any],
               report_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``render_html`` to ``path`` (artifacts relative to ``report_dir``, default its folder)."""
    path = Path(path)
    html = render_html(records, run_info, report_dir if report_dir is not None else path.parent)
    path.write_text(html, encoding="utf-8")
    return path
