"""The masking audit: can a known entry turn a wrong result it does not describe into ``known``?

Every case that some known entry's scope covers is judged again three times, with one group of the
backend's results perturbed far beyond any tolerance (finite values ×1.25 + 0.5, integers + 1,
booleans flipped): its outputs, its gradients, or its state after the call. A perturbation is
*masked* when the perturbed case is still ``known`` although the backend had computed a perturbed
tensor correctly: an entry explained a failure it does not describe. A trustworthy set of known
entries masks nothing: each names the tensors and the symptom it explains, and bounds the error of
a wrong value.

The audited search is the ordinary one (the backend's true results decide its course), so an audit
sees exactly the cases of a normal run. ``nnconform``'s own tests run it over a sample of targets;
``benchmarks/bench_masking.py`` runs it over the whole catalogue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from backends.base import RESULT_GROUPS, Backend, Result
from conformance.compare import compare_results
from conformance.driver import RunSettings, Session, Target
from conformance.known import KnownDiscrepancy, explain, modelled_tensors
from conformance.runner import Evaluation, Runner
from conformance.spec import LayerSpec, Regime, all_specs

# Which qualified tensor names each perturbation touches.
GROUPS: dict[str, Callable[[str], bool]] = {
    "outputs": lambda name: not name.startswith(("grad.", "state.", "random.")),
    "grads": lambda name: name.startswith("grad."),
    "state": lambda name: name.startswith("state."),
}


def perturbed(result: Result, tensors: Sequence[str]) -> Result:
    """``result`` with ``tensors`` (qualified names) far off: finite floats ×1.25 + 0.5, integers
    + 1, booleans flipped; NaN and ±inf stay (a wrong non-finite value is another symptom)."""
    out = replace(result, **{group: dict(getattr(result, group)) for group, _ in RESULT_GROUPS})
    for group, prefix in RESULT_GROUPS:
        values = getattr(out, group)
        for name, value in values.items():
            if prefix + name not in tensors:
                continue
            arr = np.asarray(value)
            if arr.dtype.kind == "f":
                with np.errstate(over="ignore"):  # (a value near the dtype's largest becomes ±inf: still far off)
                    values[name] = np.where(np.isfinite(arr), arr * 1.25 + 0.5, arr)
            elif arr.dtype.kind == "b":
                values[name] = ~arr
            else:
                values[name] = arr + 1
    return out


@dataclass
class Masking:
    """One masked perturbation: the target, the case, the group, the tensors the backend had right
    but that were perturbed, and the entries that explained them."""

    target: str
    case_id: str
    group: str
    tensors: list[str]
    entries: list[str]


@dataclass
class AuditTotals:
    """Perturbations judged per group, and the masked ones."""

    judged: Counter = field(default_factory=Counter)
    masked: list[Masking] = field(default_factory=list)

    def masked_by_group(self) -> Counter:
        return Counter(m.group for m in self.masked)


class AuditRunner(Runner):
    """A runner that, besides judging each case, audits the known entries covering it."""

    def __init__(self, settings: RunSettings, writer: Any, known: Sequence[KnownDiscrepancy], totals: AuditTotals):
        super().__init__(settings, writer, known)
        self.totals = totals

    def evaluate(self, backend: Backend, spec: LayerSpec, case: Any, regime: Regime | None = None) -> Evaluation:
        ev = super().evaluate(backend, spec, case, regime)
        if ev.reference is not None and ev.backend_result is not None and not ev.case.invalid:
            self._audit(backend, spec, ev)
        return ev

    def _audit(self, backend: Backend, spec: LayerSpec, ev: Evaluation) -> None:
        entries = self._matching(spec, (backend.name, *backend.known_as), ev.case)
        if not entries:
            return
        right = {c["tensor"] for c in ev.record["comparisons"] if c["ok"]}
        got = ev.backend_result
        for group, belongs in GROUPS.items():
            tensors = [name for name in got.tensors() if belongs(name)]
            if not tensors:
                continue
            self.totals.judged[group] += 1
            wrong = perturbed(got, tensors)
            with np.errstate(all="ignore"):
                comparisons = compare_results(spec, ev.case, ev.reference, wrong)
            failing = [c.to_dict() for c in comparisons if not c.ok]
            modelled = modelled_tensors(entries, spec, ev.case, ev.reference, wrong) if failing else {}
            used = explain(entries, None, failing, modelled) if failing else None
            hidden = sorted(set(tensors) & right & {c["tensor"] for c in failing})
            if used is not None and hidden:
                self.totals.masked.append(Masking(spec.id, ev.case.case_id(), group, hidden, [e.id for e in used]))


class _NullWriter:
    def write(self, record: dict[str, Any]) -> None:
        pass


def audit(settings: RunSettings, targets: Sequence[Target], session: Session,
          on_done: Callable[[Target], None] | None = None) -> AuditTotals:
    """Audit the known entries over ``targets`` (records are not kept)."""
    totals = AuditTotals()
    specs = all_specs()
    for target in targets:
        runner = AuditRunner(settings, _NullWriter(), session.known, totals)
        runner.run_target(session.backend(target.backend), specs[target.spec_id], target.dtype)
        runner.take_discrepancies()
        if on_done:
            on_done(target)
    return totals
