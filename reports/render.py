"""The report model shared by every renderer (``reports.publish`` writes the reports).

Records (see ``reports.records``) are grouped into *cells*, one per layer × backend × dtype, with
their verdict counts, worst bound utilisation, the utilisation of every compared case, and how many
cases fell in each declared regime. Counts are of the cases the searches drew: neither the
intermediate examples of shrinking (``shrinking: true``) nor the shrunk example's final replay
(``final: true`` after a sighting of the same failure, ``replays``) is counted, so seven failing
draws count seven, and their seven shrunk examples are counted apart (``Cell.shrunk``). The
discrepancies to report are the records Hypothesis settled on after shrinking (``final``) with a
discrepancy verdict; a cell that saw a discrepancy but has no final record (an interrupted run)
reports its last discrepancy instead.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import DTYPE_NAMES
from reports.records import (
    DISCREPANCY_VERDICTS,
    VERDICTS,
    as_float,
    incomplete_reasons,
    read_records,
    read_run_info,
)

HTML_FILE = "report.html"
JUNIT_FILE = "junit.xml"
FINDINGS_FILE = "findings.json"

# How a cell is coloured: the most serious verdict it saw.
STATUS_ORDER = ("fail", "known", "unsupported", "pass", "empty")


@dataclass
class Cell:
    """Every record of one layer on one backend in one dtype."""

    op: str
    backend: str
    dtype: str
    family: str = ""
    counts: Counter = field(default_factory=Counter)
    worst_utilisation: float | None = None
    elapsed_s: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    utilisations: list[float] = field(default_factory=list)
    regimes: Counter = field(default_factory=Counter)
    drawn: Counter = field(default_factory=Counter)
    declined: Counter = field(default_factory=Counter)  # regime searches' cases the backend did not support
    shrunk: int = 0  # final replays of shrunk examples (not in ``counts``)

    @property
    def cases(self) -> int:
        """Cases actually run (unsupported records carry no case)."""
        return sum(n for verdict, n in self.counts.items() if verdict != "unsupported")

    @property
    def discrepancies(self) -> int:
        return sum(self.counts[v] for v in DISCREPANCY_VERDICTS)

    @property
    def status(self) -> str:
        if self.discrepancies:
            return "fail"
        if self.counts["known"]:
            return "known"
        if self.cases == 0 and self.counts["unsupported"]:
            return "unsupported"
        return "pass" if self.cases else "empty"

    def add(self, record: dict[str, Any], replay: bool = False) -> None:
        """Count ``record`` (a ``replay`` of a shrunk example is only counted in ``shrunk``)."""
        self.records.append(record)
        if record.get("shrinking"):
            return  # intermediate examples of shrinking are not counted
        if replay:
            self.shrunk += 1
            return
        self.counts[record.get("verdict", "error")] += 1
        self.family = self.family or record.get("family") or ""
        util = utilisation(record)
        if util is not None and (self.worst_utilisation is None or _gt(util, self.worst_utilisation)):
            self.worst_utilisation = util
        if util is not None and record.get("tier") != "stat":
            self.utilisations.append(util)
        if record.get("tier") in ("exact", "float") and record.get("verdict") != "unsupported":
            self.regimes.update(record.get("regimes") or [])
            if record.get("regime"):
                self.drawn[record["regime"]] += 1
        elif record.get("verdict") == "unsupported" and record.get("regime"):
            self.declined[record["regime"]] += 1
        for seconds in (record.get("elapsed_s") or {}).values():
            self.elapsed_s += as_float(seconds)


def _gt(a: float, b: float) -> bool:
    return (not math.isnan(a)) and (math.isnan(b) or a > b)


def utilisation(record: dict[str, Any]) -> float | None:
    """The record's largest error/bound ratio, or None when nothing was compared."""
    value = record.get("max_utilisation")
    if value is None or not record.get("comparisons"):
        return None
    return as_float(value)


def is_case_record(record: dict[str, Any]) -> bool:
    return record.get("type", "case") in ("case", "unsupported") and "verdict" in record


def dtype_rank(dtype: str) -> tuple[int, str]:
    return (DTYPE_NAMES.index(dtype) if dtype in DTYPE_NAMES else len(DTYPE_NAMES), dtype)


def cell_key(record: dict[str, Any]) -> tuple[str, str, str]:
    return (str(record.get("op", "?")), str(record.get("backend", "?")), str(record.get("dtype", "?")))


def replays(records: list[dict[str, Any]]) -> set[int]:
    """The ``id()`` of every record that replays a shrunk example: a ``final`` discrepancy record
    that follows a sighting of a discrepancy in the same cell (the draw that started the
    shrinking). A final record without such a sighting (a timeout, recorded at once; an unexpected
    pass; a statistical check; a harness error) is a case of its own."""
    open_sighting: set[tuple[str, str, str]] = set()
    out: set[int] = set()
    for record in records:
        if not is_case_record(record) or record.get("shrinking"):
            continue
        key = cell_key(record)
        bad = record.get("verdict") in DISCREPANCY_VERDICTS
        if bad and record.get("final"):
            if key in open_sighting:
                out.add(id(record))
                open_sighting.discard(key)
        elif bad:
            open_sighting.add(key)
    return out


def is_drawn_case(record: dict[str, Any], replayed: set[int]) -> bool:
    """A case a search drew (what counts are made of): a case record that is neither a shrinking
    step nor a final replay (``replays``), nor an unsupported placeholder."""
    return (is_case_record(record) and not record.get("shrinking") and id(record) not in replayed
            and record.get("verdict") != "unsupported")


def build_cells(records: list[dict[str, Any]]) -> list[Cell]:
    """Group records by layer × backend × dtype; cells with a discrepancy first, then by name."""
    cells: dict[tuple[str, str, str], Cell] = {}
    replayed = replays(records)
    for record in records:
        if not is_case_record(record):
            continue
        key = cell_key(record)
        if key not in cells:
            cells[key] = Cell(*key)
        cells[key].add(record, replay=id(record) in replayed)
    return sorted(cells.values(),
                  key=lambda c: (c.status != "fail", c.op, c.backend, dtype_rank(c.dtype)))


def reported_discrepancies(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The discrepancy records to report: final shrunk ones, else a cell's last discrepancy."""
    finals: list[dict[str, Any]] = []
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    with_final: set[tuple[str, str, str]] = set()
    for record in records:
        if not is_case_record(record) or record.get("verdict") not in DISCREPANCY_VERDICTS:
            continue
        key = cell_key(record)
        last[key] = record
        if record.get("final"):
            finals.append(record)
            with_final.add(key)
    finals.extend(r for key, r in last.items() if key not in with_final)
    return sorted(finals, key=lambda r: (r.get("op", ""), r.get("backend", ""), dtype_rank(r.get("dtype", ""))))


def known_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per known-discrepancy entry and cell: {id, reason, link, op, backend, dtype, count}."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for record in records:
        if not is_case_record(record) or record.get("verdict") not in ("known", "xpass"):
            continue
        known = record.get("known") or {}
        key = (str(known.get("id", "?")), *cell_key(record))
        row = rows.setdefault(key, {"id": key[0], "reason": known.get("reason", ""), "link": known.get("link", ""),
                                    "op": key[1], "backend": key[2], "dtype": key[3], "known": 0, "xpass": 0})
        row[record["verdict"]] += 1
    return list(rows.values())


def known_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per known-discrepancy entry: {id, reason, link, known, xpass, places}, where
    ``places`` lists {op, backend, dtypes} (the dtypes it covered, in dtype order)."""
    groups: dict[str, dict[str, Any]] = {}
    for row in known_summary(records):
        group = groups.setdefault(row["id"], {"id": row["id"], "reason": row["reason"], "link": row["link"],
                                              "known": 0, "xpass": 0, "places": {}})
        group["known"] += row["known"]
        group["xpass"] += row["xpass"]
        dtypes = group["places"].setdefault((row["op"], row["backend"]), [])
        if row["dtype"] not in dtypes:
            dtypes.append(row["dtype"])
    out = []
    for group in groups.values():
        places = [{"op": op, "backend": backend, "dtypes": sorted(dtypes, key=dtype_rank)}
                  for (op, backend), dtypes in sorted(group["places"].items())]
        out.append({**group, "places": places})
    return sorted(out, key=lambda g: g["id"])


def places_text(places: list[dict[str, Any]]) -> str:
    """``ReLU on torch-cpu: float16, bfloat16; GELU on torch-cpu: float16``."""
    return "; ".join(f"{p['op']} on {p['backend']}: {', '.join(p['dtypes'])}" for p in places)


def regime_coverage(cells: list[Cell], run_info: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target (declaration id) with regimes: the cases of each backend × dtype that fell in
    each regime. Declared regimes come from run.json's ``regimes`` ({target: [names]}) when the
    runner wrote it, else from the names the records carry (then an uncovered regime cannot be
    seen). Each item: {op, family, declared (bool: from run.json), columns [(backend, dtype)],
    rows [{name, counts, drawn, declined, uncovered}]}; ``counts``/``drawn``/``declined`` align with
    ``columns`` (declined: cases of the regime's search the backend reported unsupported)."""
    declared_all = run_info.get("regimes") if isinstance(run_info.get("regimes"), dict) else {}
    by_op: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.cases and cell.status != "unsupported":
            by_op.setdefault(cell.op, []).append(cell)
    out = []
    for op in sorted(by_op):
        op_cells = sorted(by_op[op], key=lambda c: (c.backend, dtype_rank(c.dtype)))
        names = list(declared_all.get(op) or [])
        for cell in op_cells:
            names += [n for n in list(cell.regimes) + list(cell.drawn) if n not in names]
        if not names:
            continue
        rows = []
        for name in names:
            counts = [cell.regimes[name] for cell in op_cells]
            declined = [cell.declined[name] for cell in op_cells]
            # A regime the backend declined (unsupported) in a cell is not a gap of the search.
            rows.append({"name": name, "counts": counts, "drawn": [cell.drawn[name] for cell in op_cells],
                         "declined": declined,
                         "uncovered": any(n == 0 and not d for n, d in zip(counts, declined))})
        out.append({"op": op, "family": op_cells[0].family, "declared": op in declared_all,
                    "columns": [(c.backend, c.dtype) for c in op_cells], "rows": rows})
    return out


# Derivative modes in their canonical order (a record without ``mode`` is a ``vjp`` case).
MODE_ORDER = ("vjp", "jvp", "vjp2", "vmap")
MODE_COLUMNS = ("pass", "found", "known", "unsupported")  # the entry × mode table's counts


def record_mode(record: dict[str, Any]) -> str:
    """The derivative mode of a record (``vjp`` when it carries none)."""
    return str(record.get("mode") or "vjp")


def _mode_rank(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def finding_modes(finding: dict[str, Any]) -> list[str]:
    """The modes a finding was seen in: its own ``modes`` when it lists them, else those of its
    smallest example and shrunk examples."""
    listed = finding.get("modes")
    if isinstance(listed, (list, tuple)) and listed:
        return sorted({str(m) for m in listed}, key=_mode_rank)
    seen = [finding.get("example") or {}] + list(finding.get("examples") or [])
    return sorted({record_mode(e) for e in seen if isinstance(e, dict) and (e.get("mode") or e.get("case"))},
                  key=_mode_rank)


def mode_coverage(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry × mode table: per catalogue entry (``entry``, else ``op``) and mode, the drawn
    cases' counts in ``MODE_COLUMNS`` (``found``: every discrepancy verdict) plus the unsupported
    placeholders. ``shown`` is false for a run of the vjp mode alone (nothing to tabulate)."""
    replayed = replays(records)
    table: dict[str, dict[str, Counter]] = {}
    modes: set[str] = set()
    for record in records:
        if not is_case_record(record) or record.get("shrinking") or id(record) in replayed:
            continue
        mode = record_mode(record)
        modes.add(mode)
        verdict = str(record.get("verdict"))
        column = "found" if verdict in DISCREPANCY_VERDICTS else verdict
        entry = str(record.get("entry") or record.get("op") or "?")
        table.setdefault(entry, {}).setdefault(mode, Counter())[column] += 1
    ordered = sorted(modes, key=_mode_rank)
    rows = [{"entry": entry, "cells": [dict(by_mode.get(m, Counter())) if m in by_mode else None for m in ordered],
             "found": sum(c["found"] for c in by_mode.values())}
            for entry, by_mode in sorted(table.items())]
    return {"modes": ordered, "rows": rows, "columns": list(MODE_COLUMNS), "shown": bool(modes - {"vjp"})}


def mode_cell_text(counts: dict[str, int] | None) -> str:
    """One cell of the entry × mode table in words: "3 pass, 1 found" ("–": not run)."""
    if counts is None:
        return "–"
    parts = [f"{counts[c]} {c}" for c in MODE_COLUMNS if counts.get(c)]
    parts += [f"{n} {v}" for v, n in sorted(counts.items()) if v not in MODE_COLUMNS and n]
    return ", ".join(parts) or "0"


def unsupported_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per layer × backend × reason: {op, backend, dtypes, reason}."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        if not is_case_record(record) or record.get("verdict") != "unsupported":
            continue
        reason = str(record.get("reason") or record.get("error") or "")
        op, backend, dtype = cell_key(record)
        row = rows.setdefault((op, backend, reason), {"op": op, "backend": backend, "reason": reason, "dtypes": []})
        if dtype not in row["dtypes"]:
            row["dtypes"].append(dtype)
    for row in rows.values():
        row["dtypes"].sort(key=dtype_rank)
    return list(rows.values())


def not_compared_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per backend whose passing or failing cases left tensors uncompared (a forward-only
    backend's gradients, ``record["not_compared"]``): {backend, cases, tensors}."""
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        if not is_case_record(record) or not record.get("not_compared") or record.get("shrinking"):
            continue
        row = rows.setdefault(str(record.get("backend")), {"backend": str(record.get("backend")), "cases": 0,
                                                           "tensors": 0})
        row["cases"] += 1
        row["tensors"] += len(record["not_compared"])
    return sorted(rows.values(), key=lambda r: r["backend"])


def backend_rows(run_info: dict[str, Any]) -> list[dict[str, Any]]:
    """run.json's backends as a list of {name, available, reason, ...} (dict or list form)."""
    backends = run_info.get("backends") or []
    if isinstance(backends, dict):
        rows = []
        for name, info in backends.items():
            info = info if isinstance(info, dict) else {"available": bool(info)}
            rows.append({"name": name, **info})
        backends = rows
    out = []
    for info in backends:
        if isinstance(info, str):
            info = {"name": info, "available": True}
        row = dict(info)
        row.setdefault("name", "?")
        row["available"] = bool(row.get("available", True))
        row["reason"] = str(row.get("reason") or "")
        out.append(row)
    return out


def unavailable_backends(run_info: dict[str, Any]) -> list[tuple[str, str]]:
    return [(row["name"], row["reason"]) for row in backend_rows(run_info) if not row["available"]]


# -- short textual descriptions --------------------------------------------------------------------

def format_value(value: Any) -> str:
    """A parameter value as Python-like text: JSON lists (tuples in the case) shown as tuples."""
    if isinstance(value, (list, tuple)):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {format_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def format_number(value: Any, digits: int = 4) -> str:
    """Numbers for tables: ``%.{digits}g``; ``inf``/``nan`` strings kept; None as ``–``."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        x = as_float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x) or math.isinf(x):
        return repr(x)
    return f"{x:.{digits}g}"


def format_exact(value: Any) -> str:
    """A value at full precision (shortest round-trip repr)."""
    if value is None:
        return "–"
    if isinstance(value, (int, bool)):
        return str(value)
    try:
        return repr(as_float(value))
    except (TypeError, ValueError):
        return str(value)


def layout_text(layout: dict[str, Any] | None) -> str:
    layout = layout or {"kind": "contiguous"}
    extra = [f"{k}={format_value(layout[k])}" for k in ("perm", "step", "dims") if layout.get(k)]
    return " ".join([layout.get("kind", "contiguous"), *extra])


def input_text(name: str, info: dict[str, Any]) -> str:
    shape = "×".join(str(s) for s in info.get("shape", [])) or "scalar"
    parts = [f"{name}[{shape}]", str(info.get("dtype", ""))]
    layout = (info.get("layout") or {}).get("kind", "contiguous")
    if layout != "contiguous":
        parts.append(layout_text(info.get("layout")))
    return " ".join(p for p in parts if p)


def call_text(record: dict[str, Any]) -> str:
    """``Conv2d(in_channels=2, ...)`` with the forward keyword arguments after a ``|``."""
    case = record.get("case") or {}
    params = ", ".join(f"{k}={format_value(v)}" for k, v in (case.get("params") or {}).items())
    text = f"{record.get('op', '?')}({params})"
    fwd = case.get("forward_kwargs") or {}
    if fwd:
        text += " | forward(" + ", ".join(f"{k}={format_value(v)}" for k, v in fwd.items()) + ")"
    return text


def case_summary(record: dict[str, Any]) -> str:
    """One line describing the shrunk case: call, inputs, tier, mode."""
    case = record.get("case")
    if not case:
        return f"{record.get('op', '?')} on {record.get('backend', '?')} ({record.get('dtype', '?')})"
    inputs = ", ".join(input_text(n, i) for n, i in (case.get("inputs") or {}).items())
    mode = "train" if case.get("train", True) else "eval"
    return f"{call_text(record)}; inputs: {inputs}; tier={case.get('tier', '?')}, {mode}"


def worst_comparison(record: dict[str, Any]) -> dict[str, Any] | None:
    """The failing comparison with the largest utilisation (or the largest overall)."""
    comparisons = record.get("comparisons") or []
    if not comparisons:
        return None
    failing = [c for c in comparisons if not c.get("ok", True)] or comparisons

    def key(c: dict[str, Any]) -> float:
        u = as_float(c.get("utilisation", 0.0))
        return -1.0 if math.isnan(u) else u

    return max(failing, key=key)


_EXCEPTION_LINE = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Warning|Interrupt|Exit|Crash|"
                             r"Timeout|Raised|Failure)\b")


def error_line(record: dict[str, Any]) -> str:
    """The line of the record's error that says what happened, or '': for a traceback its last
    ``Type: message`` line, else the message's first line with a word in it (a multi-line message's
    head, never the lone bracket that may close it)."""
    lines = [line.strip() for line in str(record.get("error") or "").strip().splitlines()]
    worded = [line for line in lines if re.search(r"[A-Za-z0-9]", line)]
    if not worded:
        return ""
    if worded[0].startswith("Traceback"):
        typed = [line for line in worded if _EXCEPTION_LINE.match(line)]
        return typed[-1] if typed else worded[-1]
    return worded[0]


def headline(record: dict[str, Any]) -> str:
    """Why a record is not a pass, in one line: its worst out-of-bound tensor and that comparison's
    message, else the last line of its error ('' when it has neither)."""
    worst = worst_comparison(record)
    if worst is not None and not worst.get("ok", True):
        return f"{worst.get('tensor')}: {worst.get('message') or 'out of bound'}"
    return error_line(record)


def metrics_text(c: dict[str, Any]) -> str:
    """A comparison's error metrics: max abs/rel error, ULPs, utilisation, reduction length K."""
    return (f"max abs err {format_number(c.get('max_abs_err'))}, rel {format_number(c.get('max_rel_err'))}, "
            f"{format_number(c.get('max_ulp'))} ulp, util {format_number(c.get('utilisation'))}, "
            f"K={c.get('reduction_length', 1)}")


def comparison_text(c: dict[str, Any]) -> str:
    return f"{c.get('tensor', '?')}: {c.get('mismatches', 0)}/{c.get('size', 0)} mismatches, {metrics_text(c)}"


def verdict_counts_text(counts: Counter) -> str:
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])


# -- the values of a shrunk example ----------------------------------------------------------------

FULL_VALUES = 64  # arrays up to this many elements are shown in full


def example_arrays(report_dir: str | os.PathLike[str] | None, record: dict[str, Any]) -> dict[str, Any] | None:
    """The arrays saved beside a discrepancy (its repro ``.npz``: ``input.*``, ``cotangent.*``,
    ``ref.*``...), read only from a regular file inside ``report_dir`` (``artifact_path``); None
    when there is none."""
    if report_dir is None:
        return None
    from reports.records import artifact_path

    path = artifact_path(report_dir, (record.get("artifacts") or {}).get("npz"))
    if path is None:
        return None
    try:
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception:  # a torn or hostile file: no values shown
        return None


def value_text(x: Any, digits: int | None = None) -> str:
    """One number: shortest round-trip text (``digits``: ``%.{digits}g``), ``nan``/``inf`` as is,
    integers and booleans plainly."""
    if isinstance(x, (bool,)) or type(x).__name__ == "bool_":
        return str(bool(x))
    value = float(x)
    if value.is_integer() and abs(value) < 1e16:
        text = str(int(value))
        return "-0" if text == "0" and math.copysign(1.0, value) < 0 else text
    if math.isnan(value) or math.isinf(value):
        return repr(value)
    return f"{value:.{digits}g}" if digits else repr(value)


def array_text(values: Any, digits: int | None = None, limit: int = FULL_VALUES) -> dict[str, Any]:
    """An array for people: {shape, full (bool), text}. Up to ``limit`` elements in full, nested
    like the array; a larger one summarised: min, max, mean of the finite values, how many are
    NaN, ±inf and zero, and its first elements."""
    import numpy as np

    arr = np.asarray(values)
    shape = list(arr.shape)
    if arr.size <= limit:
        def nest(a: Any) -> str:
            if a.ndim == 0:
                return value_text(a.item(), digits)
            return "[" + ", ".join(nest(sub) for sub in a) + "]"

        return {"shape": shape, "full": True, "text": nest(arr)}
    flat = arr.reshape(-1).astype(np.float64) if arr.dtype.kind in "biuf" else arr.reshape(-1)
    with np.errstate(invalid="ignore"):
        finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
        parts = []
        if finite.size:
            parts.append(f"min {value_text(finite.min(), 6)}, max {value_text(finite.max(), 6)}, "
                         f"mean {value_text(finite.mean(), 6)}")
        nan = int(np.isnan(flat).sum()) if flat.dtype.kind == "f" else 0
        inf = int(np.isinf(flat).sum()) if flat.dtype.kind == "f" else 0
        zero = int((flat == 0).sum())
        parts.append(f"{nan} NaN, {inf} ±inf, {zero} zeros")
    head = ", ".join(value_text(v, digits or 6) for v in flat[:8])
    return {"shape": shape, "full": False, "text": f"{'; '.join(parts)}; first: [{head}, …]"}


def example_values(report_dir: str | os.PathLike[str] | None, record: dict[str, Any],
                   digits: int | None = None, limit: int = FULL_VALUES) -> list[dict[str, Any]]:
    """The shrunk example's input values (and the output cotangents its backward pass used), each
    {name, role, shape, full, text}; empty when its arrays are not beside the report."""
    arrays = example_arrays(report_dir, record)
    if not arrays:
        return []
    out = []
    for prefix, role in (("input.", "input"), ("cotangent.", "cotangent")):
        for key, value in arrays.items():
            if key.startswith(prefix):
                out.append({"name": key[len(prefix):], "role": role, **array_text(value, digits, limit)})
    return out


# -- entry point -----------------------------------------------------------------------------------

def load(directory: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(records of results.jsonl, run.json) of a report directory; the run info also carries
    ``incomplete``: the reasons the run cannot be trusted as a whole (``incomplete_reasons``)."""
    directory = Path(directory)
    unreadable: list[int] = []
    records = list(read_records(directory, unreadable)) if (directory / "results.jsonl").exists() else []
    info = read_run_info(directory)
    return records, {**info, "incomplete": incomplete_reasons(info, records, unreadable)}


def read_findings(directory: str | os.PathLike[str]) -> list[dict[str, Any]] | None:
    """The findings saved in ``DIR/findings.json`` (``conformance.findings``), or None."""
    import json

    try:
        data = json.loads((Path(directory) / FINDINGS_FILE).read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None
    findings = data.get("findings") if isinstance(data, dict) else None
    return [f for f in findings if isinstance(f, dict)] if isinstance(findings, list) else None
