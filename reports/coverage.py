"""What a backend could be judged on: each completed target (declaration × backend × dtype × mode)
of one or more run directories, classified by what its valid cases reached (invalid cases are left
out: raising on them says nothing of the arithmetic).

- ``compared``: at least one valid case's results were compared with the reference (an invalid
  case that raised proves nothing of the backend's arithmetic);
- ``export failed``: no case was compared and at least one could not be compiled or exported
  (verdict ``compile``), so every other case was unsupported or failed in the call too;
- ``unsupported``: every case was outside the backend's capabilities;
- ``call failed``: no case was compared, and the backend raised, crashed or timed out on them.

A compiling backend's table (``nnconform coverage DIR...``, shards given together) says how much of
the catalogue it was actually tested on, beside its findings.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from reports.records import read_records, read_run_info

CLASSES = ("compared", "export failed", "unsupported", "call failed")


def target_key(record: dict[str, Any]) -> str:
    """The run's key of the record's target (``declaration|backend|dtype``, ``|mode`` beyond vjp)."""
    key = f"{record['op']}|{record['backend']}|{record['dtype']}"
    mode = record.get("mode", "vjp")
    return key if mode == "vjp" else f"{key}|{mode}"


def _known_symptom(record: dict[str, Any]) -> str | None:
    """What the call of a known case did (``known_symptom``; records written before that field:
    ``compile`` when the explaining entry's symptoms say so and nothing was compared)."""
    if "known_symptom" in record:
        return record["known_symptom"]
    known = record.get("known") or {}
    return "compile" if not record.get("comparisons") and "compile" in (known.get("symptom") or ()) else None


def classify(verdicts: Counter[str], compared: int) -> str:
    """The class of one target from its cases' verdicts and the number of cases compared."""
    if compared:
        return "compared"
    if verdicts["compile"]:
        return "export failed"
    if set(verdicts) <= {"unsupported"}:
        return "unsupported"
    return "call failed"


def target_classes(directories: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, str]]:
    """{backend: {target key: class}} over the targets each directory's run completed (a target
    still running when a run stopped is left out)."""
    verdicts: dict[str, Counter[str]] = defaultdict(Counter)
    compared: Counter[str] = Counter()
    backend_of: dict[str, str] = {}
    for directory in directories:
        done = set(read_run_info(directory).get("completed") or ())
        for record in read_records(directory):
            if record.get("type", "case") != "case" or record.get("shrinking") or record.get("tier") == "invalid":
                continue
            key = target_key(record)
            if key not in done:
                continue
            backend_of[key] = record["backend"]
            verdict = record["verdict"]
            if verdict == "known" and _known_symptom(record) == "compile":
                verdict = "compile"  # a known export failure is still an export failure
            verdicts[key][verdict] += 1
            if record.get("comparisons"):
                compared[key] += 1
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for key, counts in verdicts.items():
        out[backend_of[key]][key] = classify(counts, compared[key])
    return dict(out)


def coverage_table(classes: dict[str, dict[str, str]]) -> list[str]:
    """A Markdown table: per backend, the number of targets of each class."""
    lines = ["| backend | targets | " + " | ".join(CLASSES) + " |", "|---|---:|" + "---:|" * len(CLASSES)]
    for backend in sorted(classes):
        counts = Counter(classes[backend].values())
        lines.append(f"| {backend} | {len(classes[backend])} | "
                     + " | ".join(str(counts[c]) for c in CLASSES) + " |")
    return lines


def listing(classes: dict[str, dict[str, str]], wanted: Iterable[str]) -> list[str]:
    """The targets of the ``wanted`` classes, one line each (class, then key), sorted."""
    chosen = set(wanted)
    return [f"{cls}: {key}" for backend in sorted(classes) for key, cls in sorted(classes[backend].items())
            if cls in chosen]
