"""Writing a run directory's reports: ``report.html`` and ``junit.xml`` from its records.

The renderers import the shared report model (``reports.render``); this module imports the
renderers, so that nothing imports back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reports.html import write_html
from reports.junit import write_junit
from reports.render import HTML_FILE, JUNIT_FILE, load, read_findings


def render_all(directory: str | os.PathLike[str], baseline: Any = None,
               findings: list[dict[str, Any]] | None = None) -> dict[str, Path]:
    """Write ``report.html`` and ``junit.xml`` into ``directory`` from its results.jsonl and run.json;
    with a ``reports.baseline.Baseline``, the HTML also shows the regressions against it. The HTML
    leads with ``findings`` (default: those of ``findings.json``, when present)."""
    directory = Path(directory)
    records, run_info = load(directory)
    if findings is None:
        findings = read_findings(directory)
    return {
        "html": write_html(directory / HTML_FILE, records, run_info, report_dir=directory, baseline=baseline,
                           findings=findings),
        "junit": write_junit(directory / JUNIT_FILE, records, run_info),
    }
