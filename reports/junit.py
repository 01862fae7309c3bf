"""JUnit XML: one ``testsuite`` per layer × backend, one ``testcase`` per dtype.

A testcase (``Conv2d[torch-cpu-float32]``) fails when any of its cases had a discrepancy verdict
(fail, error, xpass, crash, timeout, compile); the ``failure`` message is the shrunk case's summary and its
text the compared tensors and error. It is *skipped* when the layer is unsupported there, or when
all its deviations are known discrepancies (reported like pytest's xfail). Otherwise it passes.
Each unavailable backend adds a skipped ``backend[<name>]`` testcase to a ``nnconform.backends`` suite.
"""

from __future__ import annotations

import os
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from reports.records import DISCREPANCY_VERDICTS, printable
from reports.render import (
    Cell,
    build_cells,
    case_summary,
    comparison_text,
    headline,
    reported_discrepancies,
    unavailable_backends,
    verdict_counts_text,
)


def testcase_name(op: str, backend: str, dtype: str) -> str:
    return f"{op}[{backend}-{dtype}]"


def _failure_text(record: dict[str, Any], report_dir: str | None = None) -> str:
    lines = [case_summary(record)]
    for c in record.get("comparisons") or []:
        lines.append(("  ok   " if c.get("ok", True) else "  FAIL ") + comparison_text(c))
        if c.get("message"):
            lines.append("       " + str(c["message"]))
    if record.get("error"):
        lines.append(f"error ({record.get('error_side') or '?'}):")
        lines.append(str(record["error"]))
    repro = (record.get("artifacts") or {}).get("repro")
    if repro:  # from the directory the run was started in
        lines.append(f"repro: python {shlex.quote(os.path.join(report_dir, repro) if report_dir else repro)}")
    return "\n".join(lines)


def _failure_message(record: dict[str, Any]) -> str:
    detail = headline(record)
    return f"{record.get('verdict', '?')}: {case_summary(record)}" + (f" — {detail}" if detail else "")


def _testcase(suite: ET.Element, cell: Cell, discrepancies: list[dict[str, Any]], report_dir: str | None = None) -> str:
    """Append the testcase for ``cell``; return its outcome: passed, failed or skipped."""
    case = ET.SubElement(suite, "testcase", {
        "name": testcase_name(cell.op, cell.backend, cell.dtype),
        "classname": f"nnconform.{cell.op}.{cell.backend}",
        "time": f"{cell.elapsed_s:.3f}",
    })
    counts = verdict_counts_text(cell.counts)
    if cell.discrepancies:
        records = discrepancies or [r for r in cell.records if r.get("verdict") in DISCREPANCY_VERDICTS][-1:]
        first = records[0]
        failure = ET.SubElement(case, "failure", {"message": _failure_message(first),
                                                  "type": str(first.get("verdict", "fail"))})
        failure.text = "\n\n".join(_failure_text(r, report_dir) for r in records) + f"\n\ncases: {counts}"
        return "failed"
    if cell.status == "unsupported":
        reasons = sorted({str(r.get("reason") or r.get("error") or "") for r in cell.records} - {""})
        ET.SubElement(case, "skipped", {"message": "unsupported" + (": " + "; ".join(reasons) if reasons else "")})
        return "skipped"
    if cell.status == "known":
        known = {(r.get("known") or {}).get("id", "?"): (r.get("known") or {}).get("reason", "")
                 for r in cell.records if r.get("verdict") == "known"}
        message = "; ".join(f"known discrepancy {k}: {v}" for k, v in known.items())
        ET.SubElement(case, "skipped", {"message": message, "type": "known"})
        return "skipped"
    ET.SubElement(case, "system-out").text = f"cases: {counts}"
    return "passed"


def build_junit(records: list[dict[str, Any]], run_info: dict[str, Any] | None = None) -> ET.ElementTree:
    """The JUnit tree: ``testsuites`` > ``testsuite`` (layer × backend) > ``testcase`` (dtype)."""
    run_info = run_info or {}
    cells = sorted(build_cells(records), key=lambda c: (c.op, c.backend))
    discrepancies: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in reported_discrepancies(records):
        discrepancies.setdefault((record.get("op"), record.get("backend"), record.get("dtype")), []).append(record)
    root = ET.Element("testsuites", {"name": "nnconform"})
    suites: dict[tuple[str, str], tuple[ET.Element, dict[str, float]]] = {}
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for cell in cells:
        key = (cell.op, cell.backend)
        if key not in suites:
            element = ET.SubElement(root, "testsuite", {"name": f"{cell.op}.{cell.backend}"})
            suites[key] = (element, {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0})
        element, stats = suites[key]
        outcome = _testcase(element, cell, discrepancies.get((cell.op, cell.backend, cell.dtype), []),
                            run_info.get("report_dir") if isinstance(run_info.get("report_dir"), str) else None)
        stats["tests"] += 1
        stats["time"] += cell.elapsed_s
        if outcome == "failed":
            stats["failures"] += 1
        elif outcome == "skipped":
            stats["skipped"] += 1
    unavailable = unavailable_backends(run_info)
    if unavailable:  # a backend that could not run is visible in CI as a skipped test
        element = ET.SubElement(root, "testsuite", {"name": "nnconform.backends"})
        stats = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
        for name, reason in unavailable:
            case = ET.SubElement(element, "testcase", {"name": f"backend[{name}]", "classname": "nnconform.backends",
                                                       "time": "0.000"})
            ET.SubElement(case, "skipped", {"message": f"backend {name} unavailable: {reason}"})
            stats["tests"] += 1
            stats["skipped"] += 1
        suites[("", "backends")] = (element, stats)
    incomplete = run_info.get("incomplete") or []
    if incomplete:  # an incomplete run fails in CI even when what did run conforms
        element = ET.SubElement(root, "testsuite", {"name": "nnconform.run"})
        case = ET.SubElement(element, "testcase", {"name": "complete", "classname": "nnconform.run", "time": "0.000"})
        ET.SubElement(case, "failure", {"message": "incomplete run: " + "; ".join(incomplete), "type": "incomplete"})
        suites[("", "run")] = (element, {"tests": 1, "failures": 1, "errors": 0, "skipped": 0, "time": 0.0})
    for element, stats in suites.values():
        for key, value in stats.items():
            element.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
    for element in root.iter():  # XML 1.0 allows no control characters: keep every message well-formed
        if element.text:
            element.text = printable(element.text)
        for key, value in element.attrib.items():
            element.set(key, printable(value))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: str | os.PathLike[str], records: list[dict[str, Any]],
                run_info: dict[str, Any] | None = None) -> Path:
    """Write ``build_junit`` to ``path`` (UTF-8, with an XML declaration)."""
    path = Path(path)
    build_junit(records, run_info).write(path, encoding="utf-8", xml_declaration=True)
    return path
