"""The HTML report: one self-contained file (inline CSS, inline script, inline SVG plots; no
external assets, no network), usable when opened from disk.

Rendered with jinja2 from ``templates/report.html.j2`` (which includes ``report.css.j2`` and
``report.js.j2`` verbatim) with autoescaping on, so every value taken from a record (parameters,
error texts, repro scripts) is escaped; the SVG plots (``reports.plots``) escape their own text.

What it shows, top to bottom: a verdict banner; the regressions against a baseline (when given);
a filter bar (family, backend, dtype, verdict, text search) that applies to every section below
it, the verdict badges and the regime table included; the findings (``conformance.findings``),
one per probable bug, each with its counts, where it fails (the learned rule and how exact it is),
its smallest shrunk example (input values, expected against got, repro command) and, underneath,
its cases: one collapsible section per shrunk example (case, input values, compared tensors,
error-against-bound plot of the worst elements, repro script); the colour map of layer ×
backend·dtype; the results table (sortable; one row per cell with its utilisation distribution);
the side-by-side comparison of backends (when several ran); regime coverage per target; known
discrepancies grouped by entry; unsupported cells; discrepancies no finding holds (or all of them,
without findings); the run's metadata.

Repro commands start with the report directory as the run was given it, so they work from the
directory the run was started in.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from reports import plots
from reports.records import DISCREPANCY_VERDICTS, VERDICTS, artifact_path, as_float, printable
from reports.render import (
    Cell,
    backend_rows,
    build_cells,
    call_text,
    case_summary,
    dtype_rank,
    example_values,
    finding_modes,
    format_exact,
    format_number,
    format_value,
    headline,
    known_groups,
    layout_text,
    mode_cell_text,
    mode_coverage,
    places_text,
    regime_coverage,
    reported_discrepancies,
    unsupported_summary,
    value_text,
    worst_comparison,
)

TEMPLATE = "report.html.j2"
_RUN_KEYS = ("argv", "profile", "seed", "versions", "backends", "duration_s", "exit_code", "regimes")
_START_KEYS = ("started", "start_time", "start")
_END_KEYS = ("finished", "ended", "end_time", "end")
_VERBATIM = re.compile(r"^# --- (\S+), verbatim from nnconform -*\n(.*?)(?=^# --- )", re.S | re.M)


def _first(info: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((info[k] for k in keys if info.get(k) is not None), None)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
        # Every value printed is made printable first: no terminal escapes or control characters
        # from a backend's error message end up in the page.
        finalize=lambda value: printable(value) if isinstance(value, str) and not isinstance(value, Markup) else value,
    )
    for name, fn in (("num", format_number), ("exact", format_exact), ("value", format_value),
                     ("plain", _plain_text), ("sortnum", _sort_number), ("val", value_text)):
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


def _sort_number(value: Any) -> str:
    """A sort key for a numeric column: the number in full (``inf`` sorts last, missing first)."""
    if value is None:
        return "-1"
    try:
        x = as_float(value)
    except (TypeError, ValueError):
        return "-1"
    return "1e309" if x != x or x == float("inf") else repr(x)


def _util_class(util: float | None) -> str:
    if util is None:
        return ""
    return "u-low" if util < 0.5 else "u-mid" if util <= 1.0 else "u-high"


def _safe_link(link: Any) -> str:
    """Only http(s) links become hyperlinks (never javascript: or data: URLs)."""
    link = str(link or "")
    return link if link.startswith(("http://", "https://")) else ""


def _as_util(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def filter_attrs(family: Any = (), backend: Any = (), dtype: Any = (), verdict: Any = (), text: str = "") -> Markup:
    """The data attributes the report's filters read: each a ``|``-delimited list of values
    (``|a|b|``); ``data-verdict`` also holds ``discrepancy`` when any discrepancy verdict is in it."""

    def joined(values: Any) -> str:
        values = [] if values is None else [values] if isinstance(values, str) else list(values)
        return "|" + "|".join(str(v) for v in values if v) + "|"

    verdicts = [verdict] if isinstance(verdict, str) else list(verdict)
    if any(v in DISCREPANCY_VERDICTS for v in verdicts):
        verdicts.append("discrepancy")
    attrs = (f'data-family="{escape(joined(family))}" data-backend="{escape(joined(backend))}" '
             f'data-dtype="{escape(joined(dtype))}" data-verdict="{escape(joined(verdicts))}"')
    if text:
        attrs += f' data-text="{escape(text.lower())}"'
    return Markup(attrs)


def _cell_verdicts(cell: Cell) -> list[str]:
    """A cell's verdicts for the filter: every verdict it saw, except that ``pass`` is kept only
    for a clean cell (so filtering on pass shows the cells that conform)."""
    seen = [v for v in VERDICTS if cell.counts[v] and v != "pass"]
    return seen + (["pass"] if cell.status == "pass" else [])


# -- sections --------------------------------------------------------------------------------------

def _matrix(cells: list[Cell], anchors: dict[tuple[str, str, str], str],
            row_ids: dict[tuple[str, str, str], str], texts: dict[tuple[str, str, str], str]) -> dict[str, Any]:
    """Rows = layers (discrepancies first), columns = backend × dtype. ``texts``: the searchable
    text of each cell's discrepancies."""
    ops: list[str] = []
    backends: dict[str, list[str]] = {}
    by_key = {(c.op, c.backend, c.dtype): c for c in cells}
    for cell in cells:
        if cell.op not in ops:
            ops.append(cell.op)
    for cell in sorted(cells, key=lambda c: (c.backend, dtype_rank(c.dtype))):
        backends.setdefault(cell.backend, [])
        if cell.dtype not in backends[cell.backend]:
            backends[cell.backend].append(cell.dtype)
    rows = []
    for op in ops:
        row, seen, family = [], Counter(), ""
        present_backends, present_dtypes = set(), set()
        for backend, dtypes in backends.items():
            for dtype in dtypes:
                cell = by_key.get((op, backend, dtype))
                if cell is None:
                    row.append(None)
                    continue
                family = family or cell.family
                present_backends.add(backend)
                present_dtypes.add(dtype)
                seen.update(_cell_verdicts(cell))
                row.append({
                    "status": cell.status,
                    "util": cell.worst_utilisation,
                    "anchor": anchors.get((op, backend, dtype), ""),
                    "row_id": row_ids.get((op, backend, dtype), ""),
                    "title": ", ".join(f"{cell.counts[v]} {v}" for v in VERDICTS if cell.counts[v]) or "no cases",
                })
        rows.append({"op": op, "family": family, "cells": row,
                     "attrs": filter_attrs(family, sorted(present_backends), sorted(present_dtypes), list(seen),
                                           " ".join([op, family] + [t for k, t in texts.items() if k[0] == op]))})
    return {"backends": [(b, d) for b, d in backends.items()], "rows": rows}


def _results_rows(cells: list[Cell], anchors: dict[tuple[str, str, str], str],
                  texts: dict[tuple[str, str, str], str]) -> list[dict[str, Any]]:
    rows = []
    for i, cell in enumerate(cells, 1):
        key = (cell.op, cell.backend, cell.dtype)
        text = " ".join([cell.op, cell.family, cell.backend, cell.dtype, cell.status, texts.get(key, "")])
        rows.append({
            "id": f"cell-{i}", "cell": cell, "anchor": anchors.get(key, ""), "dtype_rank": dtype_rank(cell.dtype)[0],
            "attrs": filter_attrs(cell.family, cell.backend, cell.dtype, _cell_verdicts(cell), text),
            "counts_attr": " ".join(f"{v}:{cell.counts[v]}" for v in VERDICTS if cell.counts[v]),
            "discrepancies": cell.discrepancies,
            "util_class": _util_class(cell.worst_utilisation),
            "spark": Markup(plots.utilisation_sparkline(plots.utilisation_histogram(cell.utilisations)))
            if cell.utilisations else "",
        })
    return rows


def _comparison(cells: list[Cell], texts: dict[tuple[str, str, str], str]) -> dict[str, Any] | None:
    """Side by side, when several backends ran: one row per layer × dtype, one column per backend;
    a row *differs* when its backends ended with different statuses."""
    backends = sorted({c.backend for c in cells})
    if len(backends) < 2:
        return None
    by_key = {(c.op, c.dtype, c.backend): c for c in cells}
    rows = []
    for op, dtype in sorted({(c.op, c.dtype) for c in cells}, key=lambda k: (k[0], dtype_rank(k[1]))):
        entries, statuses, family, verdicts = [], set(), "", set()
        for backend in backends:
            cell = by_key.get((op, dtype, backend))
            if cell is None:
                entries.append(None)
                continue
            family = family or cell.family
            statuses.add(cell.status)
            verdicts.update(_cell_verdicts(cell))
            entries.append({"status": cell.status, "cases": cell.cases, "util": cell.worst_utilisation,
                            "util_class": _util_class(cell.worst_utilisation),
                            "counts": [(v, cell.counts[v]) for v in VERDICTS if cell.counts[v]]})
        differs = len(statuses) > 1
        text = " ".join([op, dtype, family, *sorted(statuses)] + [texts.get((op, b, dtype), "") for b in backends])
        rows.append({"op": op, "dtype": dtype, "family": family, "cells": entries, "differs": differs,
                     "attrs": filter_attrs(family, backends, dtype, sorted(verdicts), text)})
    return {"backends": backends, "rows": rows, "differing": sum(r["differs"] for r in rows)}


def _regimes(cells: list[Cell], run_info: dict[str, Any]) -> dict[str, Any]:
    """One table: a row per target × regime, a column per backend × dtype of the run (None where
    the target did not run there). A row carries its target's verdicts and each column its backend
    and dtype, so the filters hide rows and columns."""
    targets = regime_coverage(cells, run_info)
    verdicts_of: dict[str, set[str]] = {}
    for cell in cells:
        verdicts_of.setdefault(cell.op, set()).update(_cell_verdicts(cell))
    columns = sorted({col for t in targets for col in t["columns"]}, key=lambda c: (c[0], dtype_rank(c[1])))
    backends = [(b, sum(1 for c, _ in columns if c == b)) for b in sorted({b for b, _ in columns})]
    rows = []
    for target in targets:
        where = dict(zip(target["columns"], range(len(target["columns"]))))
        for row in target["rows"]:
            counts = [row["counts"][where[c]] if c in where else None for c in columns]
            drawn = [row["drawn"][where[c]] if c in where else None for c in columns]
            declined = [row["declined"][where[c]] if c in where else 0 for c in columns]
            rows.append({"op": target["op"], "family": target["family"], "name": row["name"],
                         "counts": counts, "drawn": drawn, "declined": declined, "uncovered": row["uncovered"],
                         "attrs": filter_attrs(target["family"], sorted({b for b, _ in target["columns"]}),
                                               sorted({d for _, d in target["columns"]}, key=dtype_rank),
                                               sorted(verdicts_of.get(target["op"], ())),
                                               f"{target['op']} {target['family']} {row['name']}")})
    declared = run_info.get("regimes") if isinstance(run_info.get("regimes"), dict) else None
    without = sorted(t for t, names in (declared or {}).items() if not names)
    return {"rows": rows, "columns": columns, "backends": backends, "targets": len(targets),
            "from_run_info": declared is not None, "without": without,
            "uncovered": sum(r["uncovered"] for r in rows)}


def _fold_verbatim(script: str) -> str:
    """The repro script as shown in the report: the modules it carries verbatim folded to one line
    each (the script file itself is complete)."""
    def fold(match: re.Match[str]) -> str:
        lines = match.group(2).count("\n")
        return (f"# --- {match.group(1)}, verbatim from nnconform: {lines} lines, folded here "
                f"(they are in the script file) ---\n\n")

    return _VERBATIM.sub(fold, script)


def _read_artifact(report_dir: Path | None, relative: str | None) -> str | None:
    """A repro script beside the report: only a regular file inside the report directory."""
    path = artifact_path(report_dir, relative) if report_dir is not None else None
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def repro_path(report_dir: str | None, relative: str) -> str:
    """The repro script's path as a command line starts it from where the run was started."""
    return shlex.quote(os.path.join(report_dir, relative) if report_dir else relative)


def _search_label(record: dict[str, Any]) -> str:
    if record.get("tier") == "invalid":
        return "invalid arguments"
    if record.get("tier") == "stat":
        return "statistical check"
    return f"regime {record['regime']}" if record.get("regime") else "random search"


def _discrepancy_view(record: dict[str, Any], anchor: str, report_dir: Path | None,
                      regression: str | None, number: int = 0, command_dir: str | None = None) -> dict[str, Any]:
    case = record.get("case") or {}
    artifacts = record.get("artifacts") or {}
    comparisons = record.get("comparisons") or []
    failing = [c for c in comparisons if not c.get("ok", True)]
    shown_worst = failing or [c for c in comparisons if c.get("worst")]
    known = dict(record.get("known") or {})
    if known:
        known["href"] = _safe_link(known.get("link"))
    cause = headline(record)
    repro_text = _read_artifact(report_dir, artifacts.get("repro"))
    verdict = str(record.get("verdict", "?"))
    text = " ".join([str(record.get(k, "")) for k in ("op", "backend", "dtype", "verdict")]
                    + [call_text(record), cause, *(str(c.get("tensor", "")) for c in failing)])
    worst = worst_comparison(record)
    return {
        "anchor": anchor,
        "number": number,
        "record": record,
        "verdict": verdict,
        "regression": regression,
        "headline": cause,
        "search": _search_label(record),
        "short_call": call_text(record) if len(call_text(record)) <= 90 else call_text(record)[:88] + "…)",
        "worst_util": worst.get("utilisation") if worst and not worst.get("ok", True) else None,
        "values": example_values(report_dir, record),
        "repro_command": repro_path(command_dir, artifacts["repro"]) if artifacts.get("repro") else None,
        "call": call_text(record),
        "summary": case_summary(record),
        "case": case,
        "text": text,
        "attrs": filter_attrs(record.get("family"), record.get("backend"), record.get("dtype"), verdict, text),
        "inputs": [
            {"name": name, "shape": info.get("shape", []), "dtype": info.get("dtype", ""),
             "layout": layout_text(info.get("layout")), "strides": info.get("strides", []),
             "requires_grad": info.get("requires_grad", False)}
            for name, info in (case.get("inputs") or {}).items()
        ],
        "comparisons": [dict(c, util_class=_util_class(_as_util(c.get("utilisation")))) for c in comparisons],
        "worst_tables": [dict(c, plot=Markup(plots.error_vs_bound(c["worst"])))
                         for c in shown_worst if c.get("worst")],
        "known": known,
        "repro_path": artifacts.get("repro"),
        "npz_path": artifacts.get("npz"),
        "repro_text": _fold_verbatim(repro_text) if repro_text is not None else None,
    }


def _regressions_view(regressions: Any, anchors_by_id: dict[int, str]) -> dict[str, Any]:
    def items(pairs: list[tuple[Any, list[dict[str, Any]]]], link: bool) -> list[dict[str, Any]]:
        out = []
        for sig, records in pairs:
            anchor = next((anchors_by_id[id(r)] for r in records if id(r) in anchors_by_id), "") if link else ""
            out.append({"op": sig.op, "backend": sig.backend, "dtype": sig.dtype, "kind": sig.kind,
                        "anchor": anchor, "count": len(records), "summary": case_summary(records[0])})
        return out

    info = regressions.baseline_info or {}
    return {
        "path": str(regressions.baseline), "started": _first(info, _START_KEYS), "run_id": info.get("run_id"),
        "new": items(regressions.new, True), "fixed": items(regressions.fixed, False),
        "unchanged": items(regressions.unchanged, True), "not_rerun": items(regressions.not_rerun, False),
        "exit_code": regressions.exit_code, "counts": regressions.counts_text(),
    }


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


def _finding_view(finding: dict[str, Any], report_dir: Path | None, command_dir: str | None,
                  cases: list[dict[str, Any]]) -> dict[str, Any]:
    """One finding for the template: counts, rule, smallest example (values, expected against
    got, repro) and its cases (discrepancy views)."""
    example = finding.get("example") or {}
    worst = worst_comparison(example) if example else None
    worst_rows = []
    for c in example.get("comparisons") or []:
        if not c.get("ok", True):
            for w in (c.get("worst") or [])[:3]:
                worst_rows.append({"tensor": c.get("tensor"), **w})
    artifacts = example.get("artifacts") or {}
    dtypes = list((finding.get("by_dtype") or {}).keys())
    verdicts = sorted({c["verdict"] for c in cases} | ({"xpass"} if finding.get("kind") == "xpass" else set())
                      or {"fail"})
    text = " ".join([str(finding.get(k, "")) for k in ("id", "title", "op", "backend", "kind")]
                    + list(finding.get("tensors") or []) + [str((finding.get("rule") or {}).get("text", ""))])
    return {
        **finding,
        "anchor": f"finding-{finding.get('id')}",
        "modes": finding_modes(finding),
        "attrs": filter_attrs(finding.get("family"), finding.get("backend"), dtypes or finding.get("dtypes"),
                              verdicts, text),
        "call": call_text(example) if example.get("case") else "",
        "values": example_values(report_dir, example) if example else [],
        "worst_rows": worst_rows,
        "worst_message": (worst or {}).get("message") if worst and not worst.get("ok", True) else "",
        "error_text": headline(example) if example.get("error") else "",
        "repro_command": repro_path(command_dir, artifacts["repro"]) if artifacts.get("repro") else None,
        "repro_href": artifacts.get("repro"),
        "cases_views": cases,
    }


def _assign(views: list[dict[str, Any]], findings: list[dict[str, Any]]) -> tuple[dict[str, list[dict[str, Any]]],
                                                                                  list[dict[str, Any]]]:
    """The discrepancy views of each finding (by the case ids of its shrunk examples, else of its
    cases) and those no finding holds."""
    by_finding: dict[str, list[dict[str, Any]]] = {str(f.get("id")): [] for f in findings}
    left = []
    for view in views:
        record = view["record"]
        key = (record.get("op"), record.get("backend"), record.get("case_id"))
        home = next((f for f in findings if (f.get("op"), f.get("backend")) == key[:2] and
                     any(e.get("case_id") == key[2] for e in f.get("examples") or [])), None)
        home = home or next((f for f in findings if (f.get("op"), f.get("backend")) == key[:2] and
                             key[2] in (f.get("case_ids") or [])), None)
        if home is None and record.get("verdict") == "xpass":
            home = next((f for f in findings if f.get("kind") == "xpass" and (f.get("op"), f.get("backend")) == key[:2]
                         and f.get("known_id") == (record.get("known") or {}).get("id")), None)
        if home is None:
            left.append(view)
        else:
            by_finding[str(home.get("id"))].append(view)
    return by_finding, left


def _modes_view(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry × mode table for the template (shown for a run of more than the vjp mode)."""
    coverage = mode_coverage(records)
    rows = [dict(row, texts=[mode_cell_text(c) for c in row["cells"]],
                 attrs=filter_attrs([], [], [], ["fail"] if row["found"] else ["pass"], row["entry"]))
            for row in coverage["rows"]]
    return dict(coverage, rows=rows)


def render_html(records: list[dict[str, Any]], run_info: dict[str, Any],
                report_dir: str | os.PathLike[str] | None = None, baseline: Any = None,
                findings: list[dict[str, Any]] | None = None) -> str:
    """The report as one HTML document. ``report_dir`` is where artifact paths are relative to
    (repro scripts and arrays are read from there and inlined; repro commands start with it as
    given, else with run.json's ``report_dir``); ``baseline`` (a ``reports.baseline.Baseline``)
    adds the regressions section; ``findings`` (``conformance.findings``) lead the report."""
    directory = Path(report_dir) if report_dir is not None else None
    command_dir = str(report_dir) if report_dir is not None else (
        run_info.get("report_dir") if isinstance(run_info.get("report_dir"), str) else None)
    cells = build_cells(records)
    discrepancies = reported_discrepancies(records)
    regressions = None
    kinds: dict[int, str] = {}
    if baseline is not None:
        from reports.baseline import compare_runs

        regressions = compare_runs(records, baseline)
        for label, pairs in (("new", regressions.new), ("unchanged", regressions.unchanged)):
            for _, group in pairs:
                kinds.update({id(r): label for r in group})
    anchors: dict[tuple[str, str, str], str] = {}
    anchors_by_id: dict[int, str] = {}
    texts: dict[tuple[str, str, str], str] = {}
    views = []
    for i, record in enumerate(discrepancies, 1):
        anchor = f"discrepancy-{i}"
        key = (str(record.get("op")), str(record.get("backend")), str(record.get("dtype")))
        anchors.setdefault(key, anchor)
        anchors_by_id[id(record)] = anchor
        views.append(_discrepancy_view(record, anchor, directory, kinds.get(id(record)), i, command_dir))
        texts[key] = (texts.get(key, "") + " " + views[-1]["text"]).strip()
    results = _results_rows(cells, anchors, texts)
    row_ids = {(r["cell"].op, r["cell"].backend, r["cell"].dtype): r["id"] for r in results}
    totals = {v: sum(c.counts[v] for c in cells) for v in VERDICTS}
    matrix = _matrix(cells, anchors, row_ids, texts)
    known = [dict(g, href=_safe_link(g["link"]), where=places_text(g["places"]),
                  attrs=filter_attrs([], sorted({p["backend"] for p in g["places"]}),
                                     sorted({d for p in g["places"] for d in p["dtypes"]}), ["known"],
                                     f"{g['id']} {g['reason']} {places_text(g['places'])}"))
             for g in known_groups(records)]
    unsupported = [dict(row, attrs=filter_attrs([], row["backend"], row["dtypes"], ["unsupported"]))
                   for row in unsupported_summary(records)]
    families = sorted({c.family for c in cells if c.family})
    finding_views: list[dict[str, Any]] = []
    other_views = views
    if findings:
        by_finding, other_views = _assign(views, findings)
        finding_views = [_finding_view(f, directory, command_dir, by_finding[str(f.get("id"))]) for f in findings]
    html = _environment().get_template(TEMPLATE).render(
        findings=finding_views,
        other_discrepancies=other_views,
        failing_cases=sum(int(f.get("cases") or 0) for f in findings or []),
        shrunk=sum(c.shrunk for c in cells),
        incomplete=run_info.get("incomplete") or [],
        run=_run_view(run_info),
        backends=backend_rows(run_info),
        matrix=matrix,
        colour_map=Markup(plots.colour_map(matrix)) if matrix["rows"] else "",
        colour_legend=Markup(plots.colour_map_legend()),
        spark_legend=Markup(plots.sparkline_legend()),
        results=results,
        shown_verdicts=[v for v in VERDICTS if totals[v]] or ["pass"],
        comparison=_comparison(cells, texts),
        regimes=_regimes(cells, run_info),
        short_dtype=plots.SHORT_DTYPE,
        totals=totals,
        verdicts=VERDICTS,
        discrepancy_verdicts=DISCREPANCY_VERDICTS,
        discrepancies=views,
        known_groups=known,
        modes=_modes_view(records),
        unsupported_rows=unsupported,
        regressions=_regressions_view(regressions, anchors_by_id) if regressions is not None else None,
        options={"family": families,
                 "backend": sorted({c.backend for c in cells}),
                 "dtype": sorted({c.dtype for c in cells}, key=dtype_rank),
                 "verdict": ["discrepancy"] + [v for v in VERDICTS if totals[v]]},
        conforming=not discrepancies and not any(totals[v] for v in DISCREPANCY_VERDICTS),
    )
    # Markup built outside the template (plots, data attributes) is cleaned too: no control
    # character or terminal escape from a record reaches the page.
    return printable(html)


def write_html(path: str | os.PathLike[str], records: list[dict[str, Any]], run_info: dict[str, Any],
               report_dir: str | os.PathLike[str] | None = None, baseline: Any = None,
               findings: list[dict[str, Any]] | None = None) -> Path:
    """Write ``render_html`` to ``path`` (artifacts relative to ``report_dir``, default its folder)."""
    path = Path(path)
    html = render_html(records, run_info, report_dir if report_dir is not None else path.parent, baseline, findings)
    path.write_text(html, encoding="utf-8")
    return path
