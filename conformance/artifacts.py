"""Repro artifacts of a target's discrepancies, written after its searches from their records.

For each final (shrunk) discrepancy: ``repro/<stem>.npz`` (the case's inputs, cotangents and
random choices, the reference's tensors and their bounds; for a jvp or vjp2 case also what its
judgement compared the mode's own tensors with: ``_mode_arrays``) and ``repro/<stem>.py``, a
standalone script (torch + numpy) that carries the call interpreter and the element judge verbatim
(``repro_sources``) and replays the case. The record's ``artifacts`` names both, relative to the
report directory.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec
from conformance.tolerance import bound_for, magnitudes

if TYPE_CHECKING:  # pragma: no cover
    from conformance.runner import Evaluation


def repro_sources() -> list[tuple[str, str]]:
    """The modules a repro script carries verbatim, in order: the call interpreter, its derivative
    modes and the element judge."""
    import inspect

    from backends import torch_call, torch_run
    from conformance import elementwise

    return [("backends/torch_call.py", inspect.getsource(torch_call)),
            ("backends/torch_run.py", inspect.getsource(torch_run)),
            ("conformance/elementwise.py", inspect.getsource(elementwise))]


def stem_of(record: dict, case_id: str) -> str:
    """The file name stem of a discrepancy's artifacts: op, backend, dtype and case id, with every
    character outside [A-Za-z0-9._-] replaced (a name never leaves the repro directory)."""
    stem = f"{record['op']}-{record['backend']}-{record['dtype']}-{case_id}"
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in stem).lstrip(".")


def _references(spec: LayerSpec, ev: Evaluation) -> list[tuple[str, Case, Result]]:
    """The references a repro script compares, each with the name prefix of its tensors and the case
    it is the reference of: the case's own, or for a vmap case each slice's (``vmap[b].``: the
    backend's results are named per slice). A jvp or vjp2 case's own tensors (``jvp.*``, ``d2.*``)
    have no reference of this kind: their judgement's arrays are saved instead (``_mode_arrays``)."""
    if ev.reference is None:
        return []
    if ev.case.mode == "vmap" and ev.backend_result is not None:
        from conformance.modes import mode_of

        return [(f"vmap[{b}].", slice_case, expected)
                for b, slice_case, expected, _ in mode_of("vmap").slices(spec, ev.case, ev.backend_result)  # type: ignore[attr-defined]
                if not isinstance(expected, str)]
    return [("", ev.case, ev.reference)]


def _mode_arrays(ev: Evaluation) -> dict[str, np.ndarray]:
    """A jvp or vjp2 case's own tensors as its judgement compared them (``modes.Judgement``):
    ``ref.<tensor>`` and ``bound.<tensor>`` (expected value and allowed error per element, for
    ``jvp.<output>``, ``d2.<input>``, ``d2.cotangent.<output>`` and ``jvp.projection``),
    ``unjudged.<tensor>`` where the run judged some elements not at all (the script takes the
    backend's value there, as the run did), and ``projection.u<i>.<output>`` and ``projection.scale``,
    from which the script forms the backend's side of ``jvp.projection``, ⟨u, J·t⟩."""
    judgement = ev.judgement
    if judgement is None:
        return {}
    arrays: dict[str, np.ndarray] = {}
    for name, (expected, allowed, judged) in judgement.expected.items():
        arrays[f"ref.{name}"] = np.asarray(expected, dtype=np.float64)
        arrays[f"bound.{name}"] = np.asarray(allowed, dtype=np.float64)
        if not np.all(judged):
            arrays[f"unjudged.{name}"] = ~np.asarray(judged, dtype=bool)
    arrays.update({f"projection.{key}": np.asarray(value) for key, value in judgement.projection.items()})
    return arrays


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
            for prefix, judged_case, expected in _references(spec, ev):
                with np.errstate(all="ignore"):
                    absref = magnitudes(spec, judged_case, expected)
                for name, value in expected.tensors().items():
                    value = np.asarray(value)
                    arrays[f"ref.{prefix}{name}"] = value
                    arrays[f"bound.{prefix}{name}"] = (
                        bound_for(spec, judged_case, name, value, absref[name]).allowed
                        if value.dtype.kind == "f" else np.zeros(value.shape))
            arrays.update(_mode_arrays(ev))
            np.savez(directory / f"{stem}.npz", **arrays)
            from reports.repro import render_repro

            dt = DTYPES[case.dtype]
            script = render_repro(record, f"{stem}.npz", repro_sources(), dt.max_value, dt.unit_roundoff)
            (directory / f"{stem}.py").write_text(script, encoding="utf-8")
            record["artifacts"] = {"npz": f"repro/{stem}.npz", "repro": f"repro/{stem}.py"}
        except Exception as exc:  # artifacts are a courtesy: never lose the record over them
            record["artifact_error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
