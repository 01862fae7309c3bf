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
the catalogue it was actually tested on, beside its findings. ``--save FILE`` keeps the per-target
classes (with the run that decided each) as JSON lines, which later ``coverage`` calls accept in place
of a directory: a whole-catalogue table can be assembled from shards run at different times. Each row
also keeps the target's measured cost (``seconds``: reference plus backend time of its cases, the steps
of shrinking left out) and its number of ``cases``, so a saved table is a durable source for
``nnconform costs`` as well.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reports.records import RESULTS_FILE, read_records, read_run_info

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


def _named(completed: str, info: dict[str, Any]) -> str:
    """A run's completed-target key with the backend as its records name it: a target is keyed by the
    backend as given on the command line (``torch-compile:cache=DIR``), a record by its name."""
    names = {b.get("spec", b.get("name")): b.get("name") for b in info.get("backends") or () if isinstance(b, dict)}
    op, _, rest = completed.partition("|")
    backend, _, tail = rest.partition("|")
    return "|".join((op, names.get(backend) or backend, tail))


def _directory_rows(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """{target key: row} over the targets one run directory completed (a target still running when
    the run stopped is left out); a row is ``{"target", "op", "backend", "dtype", "mode", "class", "run",
    "started", "seconds", "cases"}`` (``seconds`` over every case, invalid ones included, as
    ``target_seconds`` counts)."""
    info = read_run_info(directory)
    done = {_named(key, info) for key in info.get("completed") or ()}
    verdicts: dict[str, Counter[str]] = defaultdict(Counter)
    compared: Counter[str] = Counter()
    facts: dict[str, dict[str, str]] = {}
    seconds: Counter[str] = Counter()
    cases: Counter[str] = Counter()
    for record in read_records(directory):
        if record.get("type", "case") != "case" or record.get("shrinking"):
            continue
        key = target_key(record)
        if key not in done:
            continue
        seconds[key] += case_seconds(record)
        cases[key] += 1
        if record.get("tier") == "invalid":
            continue
        if key not in facts:  # a target's facts are the same on each of its records
            facts[key] = {"op": record["op"], "backend": record["backend"], "dtype": record["dtype"],
                          "mode": record.get("mode", "vjp")}
        verdict = record["verdict"]
        if verdict == "known" and _known_symptom(record) == "compile":
            verdict = "compile"  # a known export failure is still an export failure
        verdicts[key][verdict] += 1
        if record.get("comparisons"):
            compared[key] += 1
    return {key: {"target": key, **facts[key], "class": classify(counts, compared[key]),
                  "run": info.get("run_id"), "started": info.get("started"),
                  "seconds": round(seconds[key], 3), "cases": cases[key]}
            for key, counts in verdicts.items()}


def case_seconds(record: dict[str, Any]) -> float:
    """A case record's measured cost: the seconds its reference and backend calls took."""
    return sum(float(v) for v in (record.get("elapsed_s") or {}).values())


def read_saved(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """{target key: row} from a file written by :func:`save` (JSON lines, one row per target).
    ValueError when a line is not JSON or not a row (an object with string ``target``, ``backend``
    and ``class``, and numeric ``seconds`` where present); OSError when the file cannot be read.
    A row saved before rows carried ``op``, ``dtype`` and ``mode`` gets them from its target key,
    here and nowhere else (:func:`target_key` wrote that key from the same three facts)."""
    rows: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not (isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("target", "backend", "class"))
                and isinstance(row.get("seconds", 0.0), (int, float, type(None)))):
            raise ValueError(f"line {number} is not a row with target, backend and class")
        if not all(isinstance(row.get(k), str) for k in ("op", "dtype", "mode")):
            parts = row["target"].split("|")
            if len(parts) not in (3, 4):
                raise ValueError(f"line {number} is not a row with op, dtype and mode")
            row = {**row, "op": parts[0], "dtype": parts[2], "mode": parts[3] if len(parts) == 4 else "vjp"}
        rows[row["target"]] = row
    return rows


def save(path: str | os.PathLike[str], rows: dict[str, dict[str, Any]]) -> None:
    """Write the rows as JSON lines sorted by target, so a table kept in a repository grows shard by
    shard (and session by session) with readable diffs."""
    text = "".join(json.dumps(rows[key], sort_keys=True) + "\n" for key in sorted(rows))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")


def source_rows(source: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """{target key: row} of one source: a run directory's completed targets, or a saved table's rows.
    The one check of a source that ``coverage`` and ``costs`` share: ValueError, with a one-line
    reason, for a path that does not exist, a directory without results, or a file that is not a
    table saved with ``--save``."""
    path = Path(source)
    if path.is_dir():
        if not (path / RESULTS_FILE).is_file():
            raise ValueError(f"{path} has no {RESULTS_FILE}")
        return _directory_rows(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    try:
        return read_saved(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a coverage table saved with --save "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def target_rows(sources: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
    """{target key: row} over run directories and saved tables; a later source's row replaces an
    earlier one's for the same target (give older tables first)."""
    rows: dict[str, dict[str, Any]] = {}
    for source in sources:
        rows.update(source_rows(source))
    return rows


def classes_by_backend(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{backend: {target key: class}} of the rows."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for key, row in rows.items():
        out[row["backend"]][key] = row["class"]
    return dict(out)


def target_classes(sources: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, str]]:
    """{backend: {target key: class}} over the completed targets of the sources (see :func:`target_rows`)."""
    return classes_by_backend(target_rows(sources))


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
