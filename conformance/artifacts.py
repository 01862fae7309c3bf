"""Repro artifacts of a target's discrepancies, written after its searches from their records.

For each final (shrunk) discrepancy: ``repro/<stem>.npz`` (the case's inputs, cotangents and
random choices, the reference's tensors and their bounds) and ``repro/<stem>.py``, a standalone
script (torch + numpy) that carries the call interpreter and the element judge verbatim
(``repro_sources``) and replays the case. The record's ``artifacts`` names both, relative to the
report directory.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec
from conformance.tolerance import bound_for, magnitudes

if TYPE_CHECKING:  # pragma: no cover
    from conformance.runner import Evaluation


def repro_sources() -> list[tuple[str, str]]:
    """The modules a repro script carries verbatim: the call interpreter and the element judge."""
    import inspect

    from backends import torch_call
    from conformance import elementwise

    return [("backends/torch_call.py", inspect.getsource(torch_call)),
            ("conformance/elementwise.py", inspect.getsource(elementwise))]


def stem_of(record: dict, case_id: str) -> str:
    """The file name stem of a discrepancy's artifacts: op, backend, dtype and case id, with every
    character outside [A-Za-z0-9._-] replaced (a name never leaves the repro directory)."""
    stem = f"{record['op']}-{record['backend']}-{record['dtype']}-{case_id}"
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in stem).lstrip(".")


def write_artifacts(report_dir: Path, spec: LayerSpec, evaluations: Sequence[Evaluation]) -> None:
    """Write the artifacts of each evaluation and attach them to its record (``artifacts``, or
    ``artifact_error`` when writing failed: artifacts never cost a record)."""
    for ev in evaluations:
        record, case = ev.record, ev.case
        try:
            directory = report_dir / "repro"
            directory.mkdir(parents=True, exist_ok=True)
            stem = stem_of(record, case.case_id())
            arrays = {f"input.{k}": v for k, v in case.inputs.items()}
            arrays.update({f"cotangent.{k}": v for k, v in case.cotangents.items()})
            arrays.update({f"choice.{k}": v for k, v in case.choices.items()})
            if ev.reference is not None:
                with np.errstate(all="ignore"):
                    absref = magnitudes(spec, case, ev.reference)
                for name, value in ev.reference.tensors().items():
                    value = np.asarray(value)
                    arrays[f"ref.{name}"] = value
                    arrays[f"bound.{name}"] = (bound_for(spec, case, name, value, absref[name]).allowed
                                               if value.dtype.kind == "f" else np.zeros(value.shape))
            np.savez(directory / f"{stem}.npz", **arrays)
            from reports.repro import render_repro

            dt = DTYPES[case.dtype]
            script = render_repro(record, f"{stem}.npz", repro_sources(), dt.max_value, dt.unit_roundoff)
            (directory / f"{stem}.py").write_text(script, encoding="utf-8")
            record["artifacts"] = {"npz": f"repro/{stem}.npz", "repro": f"repro/{stem}.py"}
        except Exception as exc:  # artifacts are a courtesy: never lose the record over them
            record["artifact_error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
