"""Result records: one JSON object per line in ``results.jsonl``, plus ``run.json``.

A *case record* (``"type": "case"``) is written, and flushed, for every compared case:

    run_id, backend, device, dtype
    op           the declaration id (``Conv2d``, ``FractionalMaxPool2d[drawn]``); ``entry`` the
                 catalogue name, ``variant`` the declaration's variant ("" for the only one), family
    tier         exact | float | invalid | stat (``stat``: one record per stochastic target holding
                 the statistical tests of its random choices, as comparisons named ``stat.<test>``)
    verdict      one of VERDICTS (pass, fail, error, xpass, known, unsupported, crash, timeout, compile;
                 ``compile``: a compiling backend could not compile the call, ``error`` says why:
                 graph break, recompile limit or compiler error)
    final        true for the example Hypothesis settled on after shrinking (the one to report)
    shrinking    true for the intermediate examples of shrinking (not counted in the tallies)
    case_id      stable hash of the case description and values
    case         Case.describe(): op, variant, dtype, tier, train, invalid, params, forward_kwargs,
                 inputs {name: shape, type, dtype, layout, strides, requires_grad}, note
    comparisons  list of Comparison.to_dict(): tensor, ok, shape, size, mismatches, max_abs_err,
                 max_rel_err, max_ulp, utilisation, worst_index, exact_elements, reduction_length,
                 worst [{index, ref, got, err, bound}], message
    max_utilisation  the largest error/bound ratio over all compared tensors
    error        the exception text when a side raised (else null); error_side: backend|reference|harness
    known        the matching known-discrepancy entry {id, reason, link} (else null)
    known_symptom  for a known failure of the call itself (verdict known), what the call did: raises,
                 accepts-invalid, crash, timeout or compile (absent for known wrong results)
    call         the call tree the torch adapter ran (``backends.torch_call``), for repro scripts
    regime       the declared regime the case was drawn for (null for the random cases)
    regimes      the declared regimes the case lies in (coverage is counted from these)
    choices      for a random layer, the number of non-zero entries of each random choice
    artifacts    {"npz": relative path, "repro": relative path} for discrepancies (else null)
    elapsed_s    {"reference": s, "backend": s}
    not_compared the tensors the reference computed that the backend does not offer (a forward-only
                 backend's gradients, ``Capabilities.backward``): neither passed nor failed
    backend_meta what the backend said of the case (``Result.meta``, scalars only): e.g. the graph
                 kind, graphs exported or compiled for it and graphs reused

Non-finite floats are written as the strings "inf", "-inf", "nan" (``as_float`` reads them back).
An *unsupported record* has the same keys with verdict "unsupported", no case, and the reason in
``error``; an *xpass record* (a strict known entry none of whose cases failed) has no case either.

``run.json`` holds the run's metadata: ``status`` (running, complete, interrupted), ``planned``
and ``completed`` (target keys ``declaration|backend|dtype``), argv, profile, seed, examples,
started, duration_s,
backends [{name, available, reason, devices, dtypes, ops}], ops, dtypes, cases,
cases_per_second, discrepancies, exit_code, versions, run_id; ``baseline`` (the ``--baseline``
directory, when given); and, where the runner writes it, ``regimes`` {target id: [declared
regime names]} so that the report can show declared regimes no case reached.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from backends.base import DISCREPANCY_VERDICTS, VERDICTS

__all__ = ["DISCREPANCY_VERDICTS", "VERDICTS", "RecordWriter", "read_records", "write_run_info", "read_run_info",
           "incomplete_reasons"]

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|[@-Z\\\\-_])")


def printable(text: Any, multiline: bool = True) -> str:
    """``text`` safe for a terminal, HTML or XML: terminal escape sequences (colours, titles)
    removed, every other control character shown escaped (``\\x07``); newlines and tabs kept
    when ``multiline``."""
    text = _ANSI.sub("", str(text))
    keep = "\n\t" if multiline else ""
    return "".join(ch if (ch.isprintable() or ch in keep or ch == " ") and not 0xD800 <= ord(ch) <= 0xDFFF
                   and ch not in "\ufffe\uffff" else ascii(ch)[1:-1] for ch in text)


def artifact_path(report_dir: str | os.PathLike[str], relative: Any) -> Path | None:
    """The regular file ``relative`` names inside ``report_dir``, or None: an absolute path, a
    ``..`` step, a symbolic link anywhere on the way, or anything but a regular file is refused
    (a record's artifact paths come from a results file that may not be trustworthy)."""
    if not isinstance(relative, str) or not relative or "\\" in relative or "\x00" in relative:
        return None
    parts = Path(relative).parts
    if Path(relative).is_absolute() or any(part in ("..", "") for part in parts):
        return None
    base = Path(report_dir)
    path = base
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    try:
        if not path.is_file() or base.resolve() not in path.resolve().parents:
            return None
    except OSError:
        return None
    return path


def _clean(value: Any) -> Any:
    """Make a value strict-JSON: non-finite floats become strings ("inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RecordWriter:
    """Appends records to ``DIR/results.jsonl``, flushing each one (nothing is lost on a crash)."""

    def __init__(self, directory: str | os.PathLike[str], filename: str = RESULTS_FILE):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / filename
        self._fh: IO[str] = open(self.path, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(_clean(record), sort_keys=True, allow_nan=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(directory: str | os.PathLike[str], unreadable: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records of ``DIR/results.jsonl``. A line that is not a JSON object (a torn last
    line, garbage) is skipped, and its line number appended to ``unreadable`` when given."""
    path = Path(directory) / RESULTS_FILE
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("verdict", ""), str):
                if unreadable is not None:
                    unreadable.append(number)
                continue
            yield record


def incomplete_reasons(info: dict[str, Any], records: list[dict[str, Any]], unreadable: list[int]) -> list[str]:
    """Why a run cannot be trusted as a whole (empty when it can): interrupted or never finished,
    targets or shards missing, unreadable records, no case run."""
    reasons = []
    status = info.get("status")
    if not info:
        reasons.append(f"no {RUN_FILE}: the run never finished")
    elif status == "interrupted":
        reasons.append("the run was interrupted")
    elif status not in (None, "complete"):
        reasons.append(f"the run never finished (status {status!r})")
    planned, completed = info.get("planned"), info.get("completed")
    if isinstance(planned, list) and isinstance(completed, list):
        missing = len(set(planned) - set(completed))
        if missing:
            reasons.append(f"{missing} of {len(planned)} planned targets did not complete")
    for problem in info.get("merge_problems") or []:
        reasons.append(str(problem))
    if unreadable:
        reasons.append(f"{len(unreadable)} unreadable record line{'s' if len(unreadable) > 1 else ''} "
                       f"(first: line {unreadable[0]})")
    empty_shard = bool(info.get("shard")) and planned == []  # more shards than targets: nothing to do
    if not empty_shard and not any(r.get("verdict") not in ("unsupported", None) for r in records):
        reasons.append("no case was run")
    return reasons


def write_run_info(directory: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Write ``run.json`` atomically (a reader never sees half of it)."""
    path = Path(directory, RUN_FILE)
    tmp = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_clean(info), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_run_info(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``run.json`` as a dict ({} when it is missing, unreadable or not an object)."""
    path = Path(directory, RUN_FILE)
    try:
        info = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


def summarise_values(inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A few facts about each numeric input's values, for records (``values``) and for the ``when``
    of known entries (``values['input'].min < 0``): ``min`` and ``max`` (NaN ignored; null when
    there is no other element), ``nan``, ``inf``, ``zero`` (some element is NaN, ±inf, ±0) and
    ``size``. Booleans and integers are summarised as numbers."""
    import numpy as np

    out: dict[str, dict[str, Any]] = {}
    for name, array in inputs.items():
        values = np.asarray(array)
        if values.dtype.kind not in "biuf":
            continue
        values = values.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            nan = np.isnan(values)
            finite_or_inf = values[~nan]
            out[name] = {
                "min": float(finite_or_inf.min()) if finite_or_inf.size else None,
                "max": float(finite_or_inf.max()) if finite_or_inf.size else None,
                "nan": bool(nan.any()), "inf": bool(np.isinf(finite_or_inf).any()),
                "zero": bool((finite_or_inf == 0).any()), "size": int(values.size),
            }
    return out


def as_float(x: Any) -> float:
    """Read back a number that ``_clean`` may have turned into a string."""
    if isinstance(x, str):
        return float(x)
    return float(x) if x is not None else 0.0
