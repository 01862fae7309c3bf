"""Regressions against a baseline run: which discrepancies are new, fixed or unchanged.

A reported discrepancy (``render.reported_discrepancies``) is identified by its *signature*:
layer (declaration id), backend, dtype and the *kind* of failure — never by case ids, which are
random. The kind is the verdict with what failed:

- ``fail output,grad.input``: the tensors out of bound (``stat.<test>`` for a stochastic target's
  statistical check);
- ``error backend ValueError``: the side that raised and the exception type (or, for a message
  with no type, its first words: ``error backend the backend accepted an invalid case``);
- ``xpass <known id>``, ``crash``, ``timeout``.

A case of an invalid-parameter search prefixes its kind with ``invalid:``.

Signatures present now and not in the baseline are *new*; present in both, *unchanged*; present in
the baseline only, *fixed* — when this run ran that layer × backend × dtype at all (else *not
rerun*: a narrower run proves nothing about it). ``exit_code`` is 1 when anything is new, else 0,
so CI can gate on what changed since the last good run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.records import RESULTS_FILE, read_records, read_run_info
from reports.render import build_cells, dtype_rank, reported_discrepancies

_EXCEPTION = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Warning|Interrupt|Exit|Crash|Timeout|Raised))\b")


class BaselineError(ValueError):
    """The baseline directory cannot be read (one-line message)."""


@dataclass
class Baseline:
    """A previous run: its directory, records and run.json."""

    path: Path
    records: list[dict[str, Any]]
    run_info: dict[str, Any]


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read a baseline report directory; ``BaselineError`` when it is missing or unreadable."""
    directory = Path(path)
    if not directory.is_dir():
        raise BaselineError(f"baseline {directory} is not a directory")
    if not (directory / RESULTS_FILE).is_file():
        raise BaselineError(f"baseline {directory} has no {RESULTS_FILE}")
    unreadable: list[int] = []
    try:
        records = list(read_records(directory, unreadable))
        run_info = read_run_info(directory)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(f"baseline {directory} cannot be read: {exc}") from None
    if unreadable:
        raise BaselineError(f"baseline {directory} cannot be read: line {unreadable[0]} of {RESULTS_FILE} "
                            "is not a record")
    if (directory / "run.json").exists() and not run_info:
        raise BaselineError(f"baseline {directory} cannot be read: its run.json is not a JSON object")
    return Baseline(directory, records, run_info)


def error_kind(text: Any) -> str:
    """The type of an error text (``ValueError``), or its first words when it names none."""
    lines = [line for line in str(text or "").strip().splitlines() if line.strip()]
    if not lines:
        return "?"
    # A traceback ends with "Type: message"; a one-line error starts with it.
    for line in (lines[-1], lines[0]):
        match = _EXCEPTION.match(line)
        if match:
            return match.group(1).rsplit(".", 1)[-1]
    head = re.split(r"[:;(]", lines[0], maxsplit=1)[0]
    head = re.sub(r"\d+", "#", head).strip()
    return " ".join(head.split()[:8]) or "?"


def failure_kind(record: dict[str, Any]) -> str:
    """The kind of failure of a discrepancy record (see the module docstring)."""
    verdict = str(record.get("verdict", "?"))
    if verdict == "fail":
        tensors = sorted({str(c.get("tensor", "?")) for c in record.get("comparisons") or [] if not c.get("ok", True)})
        kind = "fail " + ",".join(tensors) if tensors else "fail"
    elif verdict == "error":
        kind = f"error {record.get('error_side') or '?'} {error_kind(record.get('error'))}"
    elif verdict == "xpass":
        kind = f"xpass {(record.get('known') or {}).get('id', '?')}"
    else:
        kind = verdict
    return f"invalid: {kind}" if record.get("tier") == "invalid" else kind


@dataclass(frozen=True, order=True)
class Signature:
    """What identifies a discrepancy across runs."""

    op: str
    backend: str
    dtype: str
    kind: str

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.op, self.backend, self.dtype)

    def text(self) -> str:
        return f"{self.op} / {self.backend} / {self.dtype}: {self.kind}"


def signature(record: dict[str, Any]) -> Signature:
    return Signature(str(record.get("op", "?")), str(record.get("backend", "?")), str(record.get("dtype", "?")),
                     failure_kind(record))


def _sort_key(sig: Signature) -> tuple[Any, ...]:
    return (sig.op, sig.backend, dtype_rank(sig.dtype), sig.kind)


@dataclass
class Regressions:
    """The comparison of a run with its baseline. Each list holds (signature, records) pairs: the
    current run's records for new and unchanged, the baseline's for fixed and not rerun."""

    baseline: Path
    baseline_info: dict[str, Any]
    new: list[tuple[Signature, list[dict[str, Any]]]] = field(default_factory=list)
    fixed: list[tuple[Signature, list[dict[str, Any]]]] = field(default_factory=list)
    unchanged: list[tuple[Signature, list[dict[str, Any]]]] = field(default_factory=list)
    not_rerun: list[tuple[Signature, list[dict[str, Any]]]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.new else 0

    def counts_text(self) -> str:
        text = f"{len(self.new)} new, {len(self.fixed)} fixed, {len(self.unchanged)} unchanged"
        return text + (f", {len(self.not_rerun)} not rerun" if self.not_rerun else "")


def _grouped(records: list[dict[str, Any]]) -> dict[Signature, list[dict[str, Any]]]:
    groups: dict[Signature, list[dict[str, Any]]] = {}
    for record in reported_discrepancies(records):
        groups.setdefault(signature(record), []).append(record)
    return groups


def compare_runs(records: list[dict[str, Any]], baseline: Baseline) -> Regressions:
    """Classify the discrepancies of ``records`` against ``baseline``'s."""
    now, before = _grouped(records), _grouped(baseline.records)
    ran = {(c.op, c.backend, c.dtype) for c in build_cells(records) if c.cases}
    out = Regressions(baseline.path, baseline.run_info)
    for sig in sorted(set(now) | set(before), key=_sort_key):
        if sig in now and sig in before:
            out.unchanged.append((sig, now[sig]))
        elif sig in now:
            out.new.append((sig, now[sig]))
        elif sig.cell in ran:
            out.fixed.append((sig, before[sig]))
        else:
            out.not_rerun.append((sig, before[sig]))
    return out


def regression_exit_code(directory: str | os.PathLike[str], baseline: Baseline) -> int:
    """1 when the run in ``directory`` has a discrepancy its baseline did not have, else 0."""
    return compare_runs(list(read_records(directory)), baseline).exit_code
