"""Result records: one JSON object per line in ``results.jsonl``, plus ``run.json``.

A *case record* (``"type": "case"``) is written, and flushed, for every compared case:

    run_id, op, family, backend, device, dtype, tier,
    verdict      one of VERDICTS (``compile``: a compiling backend could not compile the call; the
                 message in ``error`` says why: graph break, recompile limit or compiler error)
    final        true for the example Hypothesis settled on after shrinking (the one to report)
    case_id      stable hash of the case description and values
    case         Case.describe(): params, forward_kwargs, per-input shape/dtype/layout/strides
    comparisons  list of Comparison.to_dict() (tensor, ok, error metrics, worst elements, bound)
    max_utilisation  the largest error/bound ratio over all compared tensors
    error        the exception text when a side raised (else null); error_side: backend|reference
    known        the matching known-discrepancy entry {id, reason, link} (else null)
    torch        the TorchMapping rendered as data (target, ctor_kwargs, parameters, buffers,
                 args, outputs, state, forward_kwargs, inplace_input, train) for repro scripts
    artifacts    {"npz": relative path, "repro": relative path} for discrepancies (else null)
    elapsed_s    {"reference": s, "backend": s}

An *unsupported record* has the same keys with verdict "unsupported" and no case. ``run.json``
holds the run's metadata (argv, profile, seed, versions, backends with availability and reason,
start/end time, duration, exit code).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from backends.base import DISCREPANCY_VERDICTS, VERDICTS

__all__ = ["DISCREPANCY_VERDICTS", "VERDICTS", "RecordWriter", "read_records", "write_run_info", "read_run_info"]

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"


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


def read_records(directory: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of ``DIR/results.jsonl`` (a truncated last line is skipped)."""
    path = Path(directory) / RESULTS_FILE
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def write_run_info(directory: str | os.PathLike[str], info: dict[str, Any]) -> None:
    Path(directory, RUN_FILE).write_text(json.dumps(_clean(info), indent=2, sort_keys=True), encoding="utf-8")


def read_run_info(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory, RUN_FILE)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def as_float(x: Any) -> float:
    """Read back a number that ``_clean`` may have turned into a string."""
    if isinstance(x, str):
        return float(x)
    return float(x) if x is not None else 0.0
