"""The conformance runner: for each backend × layer × dtype × mode, a Hypothesis search over valid
cases (and, in the vjp mode, a shorter one over invalid cases), each case compared against the
reference and recorded. The vjp mode is the call and its backward (one case in four accumulating
into a preset ``.grad``: ``with_grad_init``); the other modes are ``conformance.modes``.

Hypothesis drives the search: a discrepancy raises inside the test body, so Hypothesis shrinks it
to a minimal example, whose final replay is recorded with ``final: true`` together with its
repro artifacts. Every evaluated case is written to ``results.jsonl`` as it happens.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from hypothesis import HealthCheck, given, reject, target
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as hypothesis_settings_class
from hypothesis.errors import FlakyFailure, Unsatisfiable

from backends.base import (
    COMPILED,
    DISCREPANCY_VERDICTS,
    Backend,
    BackendCrash,
    BackendRaised,
    BackendTimeout,
    Case,
    CompileFailure,
    Result,
)
from conformance.compare import Comparison, compare_results
from conformance.dtypes import DTYPES
from conformance.known import CALL_SYMPTOMS, STAT_SYMPTOM, KnownDiscrepancy, explain, matching, modelled_tensors
from conformance.profiles import PROFILES, hypothesis_settings
from conformance.settings import RunSettings
from conformance.spec import LayerSpec, Pullback, Regime
from conformance.strategies import output_cotangent
from reports.records import RecordWriter

if TYPE_CHECKING:  # pragma: no cover
    from conformance.modes import Judgement

# The known-entry symptom of a call that failed as a whole (``conformance.known.CALL_SYMPTOMS``).
CALL_SYMPTOM = {"crash": "crash", "timeout": "timeout", "compile": "compile", "error": "raises"}
# One valid vjp case in ACCUMULATE_EVERY (by its id) backpropagates into preset ``.grad`` tensors.
ACCUMULATE_EVERY = 4


# What each derivative mode's cases must satisfy (the reason a target with none is unsupported).
_DOMAINS = {"jvp": "a differentiable float input, all float inputs finite",
            "vjp2": "a differentiable float input, all float inputs finite, away from kinks and ties (smooth_at)",
            "vmap": "a float input"}


class _Discrepancy(AssertionError):
    """Raised inside the Hypothesis test body so that the failing case gets shrunk."""


def search_key(target: str, backend: str, dtype: str, regime: Regime | None, invalid: bool,
               mode: str = "vjp") -> bytes:
    """The example-database key of one search: stable across runs and machines, distinct per
    target × backend × dtype × regime × valid/invalid × mode."""
    parts = (target, backend, dtype, regime.name if regime else "", "invalid" if invalid else "valid")
    name = "|".join(parts + ((mode,) if mode != "vjp" else ()))
    return hashlib.sha256(name.encode()).digest()


# The random seed of the derandomized (ci) searches: a vjp search's, and a derivative mode's (whose
# test function gates the mode's domain). Hypothesis would derive it from the source text of the test
# function (``function_digest``), so any edit to ``check`` or ``gate`` would redraw every ci case.
# These are those digests as of the recorded baselines, now fixed: the ci cases change only when a
# strategy or a declaration does. (``tests/test_runner.py`` pins a few ci case ids.)
CI_SEED = 30454262584312033496610945580441459169956923436362613245351741094880372456293542275482200034847851527201093883980147  # noqa: E501
CI_SEED_IN_MODES = 35893535571671524443757107784963961725003238334428892881158244366698419622488593631083035526490603494918380217479783  # noqa: E501


def _is_final_replay() -> bool:
    try:
        from hypothesis.control import current_build_context

        return bool(current_build_context().is_final)
    except Exception:  # pragma: no cover - outside a test or an incompatible hypothesis
        return False


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, BackendRaised):  # already "Type: message" from the worker
        return str(exc)
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()


def _needs_fresh_worker(record: dict[str, Any]) -> bool:
    """A worker is replaced only when it died or hung, or after a case of a known discrepancy that
    corrupts the process without killing it (``restart = true``); wrong values and exceptions keep
    it, so shrinking a failure costs no process start per step."""
    if record["verdict"] in ("crash", "timeout"):
        return True
    known = record.get("known") or {}
    return bool(known.get("restart")) and record["verdict"] in ("known", "pass")


def _not_implemented(exc: BaseException) -> bool:
    return isinstance(exc, NotImplementedError) or (
        isinstance(exc, BackendRaised) and str(exc).startswith("NotImplementedError"))


def _compile_failure(exc: BaseException) -> bool:
    """A compiling backend could not compile the call (verdict ``compile``, valid or invalid case)."""
    return isinstance(exc, CompileFailure) or (
        isinstance(exc, BackendRaised) and str(exc).startswith(f"{CompileFailure.__name__}:"))


@dataclass
class Evaluation:
    """One evaluated case: its record, and the arrays needed for repro artifacts (a jvp or vjp2
    case's judgement: what its own tensors were compared with)."""

    record: dict[str, Any]
    case: Case
    reference: Result | None = None
    backend_result: Result | None = None
    judgement: Judgement | None = None


@dataclass
class Tally:
    """Counts per (op, backend, dtype), excluding the intermediate examples of shrinking."""

    verdicts: Counter = field(default_factory=Counter)
    worst_utilisation: float = 0.0


def with_call(spec: LayerSpec, case: Case) -> Case:
    """Attach the call tree a torch-like backend runs (once)."""
    return case if case.call is not None else replace(case, call=spec.call(case))


def draw_cotangents(spec: LayerSpec, case: Case, forward: Result) -> Case:
    """Attach a cotangent (``strategies.output_cotangent``: from the case's cotangent seed and the
    output's name) to every float output of ``forward`` that has none yet, when the case has a
    backward pass."""
    if not (spec.backward and case.differentiable):
        return case
    cots = dict(case.cotangents)
    for name, arr in sorted(forward.outputs.items()):
        arr = np.asarray(arr)
        if arr.dtype.kind == "f" and name not in cots:
            cots[name] = output_cotangent(case, name, arr.shape)
    return replace(case, cotangents=cots)


def reference_result(spec: LayerSpec, case: Case) -> tuple[Case, Result]:
    """Attach the call tree, run the reference forward once, draw the cotangents of its float
    outputs (they become part of the case, for the backend), then run its pullback once. For a
    random case this is the reference without choices; ``conditional_reference`` recomputes it
    with the backend's."""
    case = with_call(spec, case)
    with np.errstate(all="ignore"):
        result, pullback = spec.run_reference(case)
        case = draw_cotangents(spec, case, result)
        result.grads = spec.pull(pullback, case, case.cotangents)
    return case, result


def accumulates(backend: Backend, spec: LayerSpec, case: Case) -> bool:
    """Whether this vjp case backpropagates into preset ``.grad`` tensors: one case in
    ``ACCUMULATE_EVERY`` by its id (so no case id changes), when it runs a backward and the backend
    models ``.grad`` (``Capabilities.accumulates``)."""
    if case.invalid or case.mode != "vjp" or not (spec.backward and case.differentiable and case.cotangents):
        return False
    return int(case.case_id(), 16) % ACCUMULATE_EVERY == 0 and bool(backend.capabilities().accumulates)


def with_grad_init(case: Case, ref: Result) -> Case:
    """The case with ``call["grad_init"]``: every differentiable input's ``.grad`` preset to small
    integers times a power of two near its gradient's scale (``backends.torch_call.initial_grad``),
    within [2^-14, 2^12] so that every dtype holds it exactly, and small enough that G + grad
    cannot overflow (0 for a gradient at the edge of the range)."""
    scale = {}
    for name in case.differentiable:
        grad = ref.grads.get(name)
        if grad is None or np.asarray(grad).dtype.kind != "f":
            continue
        finite = np.abs(np.asarray(grad, dtype=np.float64)[np.isfinite(grad)])
        top = float(finite.max()) if finite.size else 0.0
        step = 2.0 ** min(max(math.floor(math.log2(top)) if top > 0 else 0, -14), 12)
        room = (DTYPES[case.dtype].max_value - top) / 3  # |G| ≤ 3·scale: G + grad stays finite
        while step > room and step > 2.0**-14:
            step /= 2
        scale[name] = step if step <= room else 0.0
    call = dict(case.call or {})
    call["grad_init"] = {"seed": (int(case.case_id(), 16) // 7) % (2**31), "scale": scale}
    return replace(case, call=call)


def mode_reference(spec: LayerSpec, case: Case) -> tuple[Case, Result, Pullback | None]:
    """A derivative mode's reference: the call tree, the forward, the cotangents and gradients when
    the mode needs them, and the pullback (kept: the mode differentiates through it); then the
    mode's own part of the call tree (``Mode.prepare``)."""
    from conformance.modes import mode_of

    mode = mode_of(case.mode)
    case = with_call(spec, case)
    with np.errstate(all="ignore"):
        result, pullback = spec.run_reference(case)
        if mode.needs_cotangents:
            case = draw_cotangents(spec, case, result)
            result.grads = spec.pull(pullback, case, case.cotangents)
        case = mode.prepare(spec, case, result)
    return case, result, pullback


def conditional_reference(spec: LayerSpec, case: Case, got: Result) -> tuple[Case, Result]:
    """The reference given the random choices the backend reported (raises when one is missing)."""
    assert spec.randomness is not None
    missing = [name for name in spec.randomness.choices if name not in got.choices]
    if missing:
        raise ValueError(f"the backend reported no random choice {', '.join(missing)}")
    case = spec.randomness.with_choices(case, {name: got.choices[name] for name in spec.randomness.choices})
    with np.errstate(all="ignore"):
        return case, spec.evaluate(case, case.cotangents)


def _known_verdict(known: dict[str, Any], call_symptom: str | None) -> dict[str, Any]:
    """A case's fields once known entries explain all its failures: the entry, the verdict
    ``known``, and for a failure of the call what the call did (``known_symptom``), which the
    verdict no longer says."""
    fields = {"known": known, "verdict": "known"}
    if call_symptom is not None:
        fields["known_symptom"] = call_symptom
    return fields


def forward_only(backend: Backend, ref: Result, record: dict[str, Any]) -> Result:
    """The reference to compare with for ``backend``: without its gradients when the backend is
    forward only (``Capabilities.backward`` False: an inference runtime). Those gradients are listed
    in ``record["not_compared"]``, so the report says what a pass did not check."""
    if not ref.grads or backend.capabilities().backward:
        return ref
    record["not_compared"] = sorted(f"grad.{name}" for name in ref.grads)
    return replace(ref, grads={})


class Runner:
    """The search engine of one run: searches targets (``run_target``) under ``settings``, judging
    cases against the known entries ``known``. A target's records are held until ``flush`` writes
    them through ``writer`` (after ``conformance.artifacts`` has attached the repro artifacts of
    its discrepancies, ``take_discrepancies``); ``conformance.driver.run_target`` does all three."""

    def __init__(self, settings: RunSettings, writer: RecordWriter, known: Sequence[KnownDiscrepancy] = ()):
        self.settings = settings
        self.profile = PROFILES[settings.profile]
        self.writer = writer
        self.known = list(known)
        self.run_id = settings.run_id
        self.tallies: dict[tuple[str, str, str, str], Tally] = defaultdict(Tally)
        self.discrepancies = 0
        self.cases = 0
        # (op, backend, dtype, mode) -> known entry id -> [entry, matched cases, cases showing its symptom]
        self._known_stats: dict[tuple[str, str, str, str], dict[str, list[Any]]] = defaultdict(dict)
        self._pending: list[dict[str, Any]] = []
        self._discrepancies: list[Evaluation] = []

    def flush(self) -> None:
        """Write the records held so far (a target's, once its artifacts are attached)."""
        for record in self._pending:
            self.writer.write(record)
        self._pending.clear()

    def take_discrepancies(self) -> list[Evaluation]:
        """The final (shrunk) discrepancies found since the last call, with their arrays."""
        out, self._discrepancies = self._discrepancies, []
        return out

    # -- evaluation of one case ------------------------------------------------------------------
    def evaluate(self, backend: Backend, spec: LayerSpec, case: Case, regime: Regime | None = None) -> Evaluation:
        record = self._base_record(backend, spec, case, case.dtype, regime)
        try:
            case = with_call(spec, case)
        except Exception as exc:  # the declaration cannot describe its own call: a harness bug
            record.update(verdict="error", error_side="harness", case_id=case.case_id(),
                          error=f"the call tree could not be built: {_error_text(exc)}")
            return Evaluation(record, case)
        record["call"] = case.call
        t0 = time.perf_counter()
        pullback: Pullback | None = None
        try:
            if case.mode == "vjp":
                case, ref = reference_result(spec, case)
                if accumulates(backend, spec, case):
                    case = with_grad_init(case, ref)
                    record["accumulated"] = True
            else:
                case, ref, pullback = mode_reference(spec, case)
            record["call"] = case.call
            ref_error = None
        except Exception as exc:
            ref, ref_error = None, exc
        t1 = time.perf_counter()
        record["elapsed_s"]["reference"] = t1 - t0
        if case.invalid:
            return self._evaluate_invalid(backend, spec, case, record, ref_error)
        if ref_error is not None:
            record.update(verdict="error", error_side="reference", error=_error_text(ref_error))
            return Evaluation(record, case)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = backend.run(case)
        except Exception as exc:
            record["elapsed_s"]["backend"] = time.perf_counter() - t1
            verdict = {BackendCrash: "crash", BackendTimeout: "timeout"}.get(type(exc), "error")
            if _not_implemented(exc):
                verdict = "unsupported"  # the backend says it has no kernel for this: never a pass
            elif _compile_failure(exc):
                verdict = "compile"
            record.update(verdict=verdict, error_side="backend", error=_error_text(exc))
            if verdict != "unsupported":
                record.update(self._known_fields(backend, spec, case, CALL_SYMPTOM[verdict],
                                                 call_error=record["error"]))
            record["case_id"] = case.case_id()
            return Evaluation(record, case, ref)
        t2 = time.perf_counter()
        record["elapsed_s"]["backend"] = t2 - t1
        described = {k: v for k, v in (got.meta or {}).items() if isinstance(v, (str, int, float, bool))}
        if described:
            record["backend_meta"] = described  # what the backend says of the case (graph kind, graphs reused)
        if spec.is_random(case) and case.mode != "vmap":  # (a vmap case's slices are judged one by one)
            try:
                case, ref = conditional_reference(spec, case, got)
                if case.mode != "vjp":
                    with np.errstate(all="ignore"):
                        _, pullback = spec.run_reference(case)
            except Exception as exc:
                record.update(verdict="error", error_side="backend", error=_error_text(exc), case_id=case.case_id())
                return Evaluation(record, case, ref, got)
            record["choices"] = {name: {"size": int(np.size(v)), "mean": float(np.mean(v)) if np.size(v) else 0.0}
                                 for name, v in case.choices.items()}
        judgement: Judgement | None = None
        if case.mode == "vjp":
            ref = forward_only(backend, ref, record)
            comparisons = compare_results(spec, case, ref, got)
        else:
            from conformance.modes import mode_of

            try:
                judgement = mode_of(case.mode).judge(spec, case, ref, pullback, got)
            except Exception as exc:
                record.update(verdict="error", error_side="reference", case_id=case.case_id(),
                              error=f"the {case.mode} reference failed: {_error_text(exc)}")
                return Evaluation(record, case, ref, got)
            comparisons = judgement.comparisons
            record["mode_info"] = judgement.info
            record["elapsed_s"]["reference"] += time.perf_counter() - t2
        record["case_id"] = case.case_id()
        record["comparisons"] = [c.to_dict() for c in comparisons]
        record["max_utilisation"] = max((c.utilisation for c in comparisons), default=0.0)
        failing = [c for c in record["comparisons"] if not c["ok"]]
        record["verdict"] = "fail" if failing else "pass"
        record.update(self._known_fields(backend, spec, case, failing=failing, results=(ref, got)))
        return Evaluation(record, case, ref, got, judgement)

    def _evaluate_invalid(self, backend: Backend, spec: LayerSpec, case: Case, record: dict[str, Any],
                          ref_error: BaseException | None) -> Evaluation:
        record["case_id"] = case.case_id()
        if ref_error is None:
            record.update(verdict="error", error_side="reference",
                          error="the reference accepted a case declared invalid (strategy or reference bug)")
            return Evaluation(record, case)
        if case.backward_rule and not backend.capabilities().backward:
            # torch raises for this rule in its backward pass only: a forward-only backend has none
            record.update(verdict="unsupported", error_side="backend",
                          error=f"the rule '{case.note}' is enforced by the backward pass, which this backend "
                                f"does not run (forward only)")
            return Evaluation(record, case)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                backend.run(case)
        except (BackendCrash, BackendTimeout) as exc:  # rejecting a case means raising, not dying
            verdict = "crash" if isinstance(exc, BackendCrash) else "timeout"
            record.update(verdict=verdict, error_side="backend", error=_error_text(exc))
            record.update(self._known_fields(backend, spec, case, verdict, call_error=record["error"]))
            return Evaluation(record, case)
        except Exception as exc:
            if _compile_failure(exc):  # not a rejection of the case: the compiler gave up
                record.update(verdict="compile", error_side="backend", error=_error_text(exc))
                record.update(self._known_fields(backend, spec, case, "compile", call_error=record["error"]))
                return Evaluation(record, case)
            record.update(verdict="pass", error=f"both raised; reference: {_error_text(ref_error)}; "
                                                f"backend: {_error_text(exc)}")
            record.update(self._known_fields(backend, spec, case))
            return Evaluation(record, case)
        record.update(verdict="error", error_side="backend",
                      error=f"the backend accepted an invalid case; reference: {_error_text(ref_error)}")
        record.update(self._known_fields(backend, spec, case, "accepts-invalid", call_error=record["error"]))
        return Evaluation(record, case)

    def _matching(self, spec: LayerSpec, names: tuple[str, ...], case: Case) -> list[KnownDiscrepancy]:
        """The known entries covering ``case`` on a backend of these ``names``, in this run (its threads)."""
        return matching(self.known, spec, names, case, self.settings.threads)

    def _known_fields(self, backend: Backend, spec: LayerSpec, case: Case, call_symptom: str | None = None,
                      failing: list[dict[str, Any]] | None = None,
                      results: tuple[Result, Result] | None = None, call_error: str = "") -> dict[str, Any]:
        """A failed case is 'known' when the known entries whose scope covers it explain every one
        of its failures (``call_symptom``: the call's own failure, ``failing``: the failing
        comparisons; see ``conformance.known``). Every matching entry counts the case toward its
        unexpected-pass check at the end of the target (``_check_known``): it saw its symptom when
        it explains at least one failure of the case."""
        failing = failing or []
        if case.mode != "vjp":
            return self._known_fields_in_mode(backend, spec, case, call_symptom, failing, results, call_error)
        entries = self._matching(spec, (backend.name, *backend.known_as), case)
        if not entries:
            return {"known": None}
        modelled = modelled_tensors(entries, spec, case, *results) if results and failing else {}
        self._count_known(entries, spec, backend, case, call_symptom, failing, modelled, results, call_error)
        if call_symptom is None and not failing:
            return {"known": entries[0].describe()}
        explained = explain(entries, call_symptom, failing, modelled, call_error)
        if explained is None:
            return {"known": None, "known_unexplained": [e.id for e in entries]}
        known = explained[0].describe()
        if len(explained) > 1:
            known["with"] = [e.id for e in explained[1:]]
        return _known_verdict(known, call_symptom)

    def _count_known(self, entries: list[KnownDiscrepancy], spec: LayerSpec, backend: Backend, case: Case,
                     call_symptom: str | None, failing: list[dict[str, Any]], modelled: dict[str, frozenset[str]],
                     results: tuple[Result, Result] | None, call_error: str) -> None:
        """Count the case toward each matching entry's unexpected-pass check: matched, and whether it
        showed the entry's symptom. A case the backend ran on code compiled for an earlier case
        (``Result.meta[COMPILED]`` False) cannot show a compile failure: an entry explaining only
        those does not count it. Nor can a case whose call failed (raised, did not compile, accepted
        an invalid case...) show a wrong tensor, none being compared: an entry explaining only
        tensors does not count it. A case that did not compile never ran its call: only an entry
        with the ``compile`` symptom counts it."""
        stats = self._known_stats[(spec.id, backend.name, case.dtype, case.mode)]
        reused = results is not None and results[1].meta.get(COMPILED) is False
        for entry in entries:
            if reused and set(entry.symptom) == {"compile"}:
                continue
            if call_symptom is not None and not set(entry.symptom) & set(CALL_SYMPTOMS):
                continue
            if call_symptom == "compile" and "compile" not in entry.symptom:  # the call never ran
                continue
            seen = (call_symptom is not None and entry.explains_call(call_symptom, call_error)) or any(
                entry.explains(c, modelled.get(entry.id, ())) for c in failing)
            counts = stats.setdefault(entry.id, [entry, 0, 0])
            counts[1] += 1
            counts[2] += int(seen)

    def _known_fields_in_mode(self, backend: Backend, spec: LayerSpec, case: Case, call_symptom: str | None,
                              failing: list[dict[str, Any]],
                              results: tuple[Result, Result] | None = None, call_error: str = "") -> dict[str, Any]:
        """``_known_fields`` for a case of a derivative mode. A comparison of the mode's own tensors
        (``jvp.*``, ``d2.*``, ``vmap.*``) is explained by entries of that mode. A tensor the vjp mode
        compares too (an output, a gradient, a state; in vmap a slice's, ``vmap[b].<tensor>``, judged
        as a vjp case of its own) runs the same kernels, so the vjp entries covering that case (the
        slice) explain it as well; they are not held to show in this mode (no unexpected pass). An
        entry with a ``model`` explains a tensor of the primal results (an output, a gradient; a
        slice's) when the backend's value agrees with the model's prediction (for a slice: the
        model applied to that slice), as in the vjp mode; the mode's own tensors it never explains."""
        from conformance.modes import mode_of

        names = (backend.name, *backend.known_as)
        own = self._matching(spec, names, case)
        plain = replace(case, mode="vjp")
        borrowed: dict[str, list[KnownDiscrepancy]] = {}

        def entries_for(key: str, covered: Case) -> list[KnownDiscrepancy]:
            if key not in borrowed:
                borrowed[key] = self._matching(spec, names, covered)
            return borrowed[key]

        modelled: dict[str, frozenset[str]] = {}
        if results and failing:
            modelled = modelled_tensors(own, spec, case, *results)
            modelled.update(modelled_tensors(entries_for("", plain), spec, plain, *results))
        slices: dict[str, tuple[Case, Result | str, Result]] = {}
        sliced: dict[str, dict[str, frozenset[str]]] = {}

        def slice_models(index: str, entries: list[KnownDiscrepancy]) -> dict[str, frozenset[str]]:
            """A vjp entry with a model borrowed for slice ``index`` explains the slice's tensors
            that agree with its model's prediction for that slice (its own case, reference and
            results: ``VmapMode.slices``), as in the vjp mode."""
            if index not in sliced:
                sliced[index] = {}
                with_model = [e for e in entries if e.model]
                if with_model and results:
                    if not slices:
                        slices.update({str(b): (c, e, r) for b, c, e, r in
                                       mode_of("vmap").slices(spec, case, results[1])})  # type: ignore[attr-defined]
                    part_case, expected, part = slices.get(index, (None, "missing", None))
                    if not isinstance(expected, str):
                        sliced[index] = modelled_tensors(with_model, spec, part_case, expected, part)
            return sliced[index]
        self._count_known(own, spec, backend, case, call_symptom, failing, modelled, results, call_error)
        if call_symptom is None and not failing:
            return {"known": own[0].describe()} if own else {"known": None}
        used: dict[str, KnownDiscrepancy] = {}
        if call_symptom is not None:
            entry = next((e for e in own + entries_for("", plain) if e.explains_call(call_symptom, call_error)),
                         None)
            if entry is None:
                return {"known": None, "known_unexplained": [e.id for e in own]}
            used[entry.id] = entry
        for comparison in failing:
            tensor = comparison["tensor"]
            entry = next((e for e in own if e.explains(comparison, modelled.get(e.id, ()))), None)
            if entry is None and case.mode == "vmap" and tensor.startswith("vmap["):
                index, _, rest = tensor[len("vmap["):].partition("].")
                covered = mode_of("vmap").slice_case(  # type: ignore[attr-defined]
                    case, int(index), results[1] if results else None)
                candidates = entries_for(index, covered)
                per_slice = slice_models(index, candidates)
                entry = next((e for e in candidates if e.explains({**comparison, "tensor": rest},
                                                                  per_slice.get(e.id, ()))), None)
            elif entry is None and not tensor.startswith(("jvp.", "d2.", "vmap.")):
                entry = next((e for e in entries_for("", plain) if e.explains(comparison, modelled.get(e.id, ()))),
                             None)
            if entry is None:
                return {"known": None, "known_unexplained": [e.id for e in own]}
            used.setdefault(entry.id, entry)
        explained = list(used.values())
        known = explained[0].describe()
        if len(explained) > 1:
            known["with"] = [e.id for e in explained[1:]]
        return _known_verdict(known, call_symptom)

    def _check_known(self, backend: Backend, spec: LayerSpec, dtype: str, mode: str = "vjp") -> None:
        """A strict known entry that matched cases of this target, none of which failed, is an
        unexpected pass: the discrepancy seems fixed and the entry must go."""
        for entry, matched, failed in self._known_stats.pop((spec.id, backend.name, dtype, mode), {}).values():
            if entry.strict and matched and not failed:
                record = self._base_record(backend, spec, None, dtype, mode=mode)
                record.update(verdict="xpass", final=True, known=entry.describe(),
                              error=f"known discrepancy {entry.id!r} matched {matched} cases and none failed")
                self._emit(record)

    def _base_record(self, backend: Backend, spec: LayerSpec, case: Case | None, dtype: str,
                     regime: Regime | None = None, mode: str | None = None) -> dict[str, Any]:
        valid = case is not None and not case.invalid
        return {
            "mode": mode or (case.mode if case is not None else "vjp"),
            "type": "case", "run_id": self.run_id, "op": spec.id, "entry": spec.name, "variant": spec.variant,
            "family": spec.family, "backend": backend.name, "device": backend.device(), "dtype": dtype,
            "tier": None if case is None else "invalid" if case.invalid else case.tier, "verdict": "pass",
            "final": False, "shrinking": False, "case_id": "", "case": None if case is None else case.describe(),
            "comparisons": [], "max_utilisation": 0.0, "error": None, "error_side": None, "known": None,
            "call": None, "artifacts": None,
            "regime": regime.name if regime else None,
            "regimes": spec.regimes_of(case) if valid else [],
            "elapsed_s": {"reference": 0.0, "backend": 0.0},
        }

    # -- searching -------------------------------------------------------------------------------
    def run_target(self, backend: Backend, spec: LayerSpec, dtype: str, mode: str = "vjp") -> Tally:
        """Search one declaration × backend × dtype × mode: random valid cases, then each declared
        regime (stratified: every regime gets cases in every dtype), then (vjp) invalid cases; then
        the statistical check of a stochastic entry's choices. Returns the target's tally."""
        key = (spec.id, backend.name, dtype, mode)
        ok, reason = backend.supports(spec.name, spec.id, dtype)
        if ok and dtype not in spec.dtypes:
            ok, reason = False, f"{spec.id} is not declared for {dtype}"
        if ok and mode != "vjp":
            from conformance.modes import applicable

            ok, reason = backend.supports_mode(mode)
            if ok:
                ok, reason = applicable(spec, mode)
        if not ok:
            self._write_unsupported(backend, spec, dtype, reason, mode)
            return self.tallies[key]
        samples: list[tuple[Case, dict[str, np.ndarray]]] = [] if mode == "vjp" else None  # type: ignore[assignment]
        # After a hang or a crash (found and shrunk) the target's remaining searches are skipped:
        # each further case could cost a timeout or a worker start.
        stop: dict[str, Any] = {"stopped": False}
        cases_before = self.cases
        found_before = len(self._discrepancies)

        def ended() -> bool:  # --first-failure: a discrepancy of this target has been shrunk
            return self.settings.first_failure and len(self._discrepancies) > found_before

        self.search(backend, spec, dtype, invalid=False, samples=samples, stop=stop, mode=mode)
        for regime in spec.regimes:
            if ended():
                break
            self.search(backend, spec, dtype, invalid=False, regime=regime, samples=samples, stop=stop, mode=mode)
        if mode == "vjp" and self.settings.invalid and spec.invalid_cases is not None and not ended():
            self.search(backend, spec, dtype, invalid=True, stop=stop)
        if spec.randomness is not None and mode == "vjp" and not ended():
            self._check_randomness(backend, spec, dtype, samples)
        if ended():  # a strict entry may not have met its failing cases in the searches skipped
            self._known_stats.pop(key, None)
        else:
            self._check_known(backend, spec, dtype, mode)
        if mode != "vjp" and self.cases == cases_before:
            self._write_unsupported(backend, spec, dtype, f"no case of {spec.id} drawn in {dtype} lies in the "
                                    f"{mode} mode's domain ({_DOMAINS[mode]})", mode)
        return self.tallies[key]

    def _write_unsupported(self, backend: Backend, spec: LayerSpec, dtype: str, reason: str,
                           mode: str = "vjp") -> None:
        record = self._base_record(backend, spec, None, dtype, mode=mode)
        record.update(verdict="unsupported", final=True, error=reason, elapsed_s={})
        self._emit(record)

    def _check_randomness(self, backend: Backend, spec: LayerSpec, dtype: str,
                          samples: list[tuple[Case, dict[str, np.ndarray]]]) -> None:
        """One record for the target: the statistical tests of the choices its random cases made."""
        assert spec.randomness is not None
        if not samples:
            return
        checks = spec.randomness.check(samples, spec.randomness.false_alarm)
        smallest = min(samples, key=lambda s: sum(v.size for v in s[0].inputs.values()))[0]
        record = self._base_record(backend, spec, smallest, dtype)
        comparisons = [Comparison(tensor=f"stat.{c.name}", ok=c.ok, shape=[], size=c.trials,
                                  max_abs_err=c.deviation, utilisation=c.utilisation, message=c.message())
                       for c in checks]
        failed = not all(c.ok for c in comparisons)
        compared = [{**c.to_dict(), **({} if c.ok else {"symptoms": [STAT_SYMPTOM]})} for c in comparisons]
        record.update(tier="stat", final=True, verdict="fail" if failed else "pass", case_id=smallest.case_id(),
                      error_side="backend" if failed else None,
                      comparisons=compared,
                      max_utilisation=max((c.utilisation for c in comparisons), default=0.0),
                      stat={"cases": len(samples), "false_alarm": spec.randomness.false_alarm},
                      error=None if not failed else "; ".join(c.message for c in comparisons if not c.ok))
        record.update(self._known_statistics(backend, spec, smallest, [c for c in compared if not c["ok"]]))
        self._emit(record)

    def _known_statistics(self, backend: Backend, spec: LayerSpec, case: Case,
                          failing: list[dict[str, Any]]) -> dict[str, Any]:
        """The known fields of a target's statistical record (``case``: its smallest case): the entries
        naming the symptom ``statistics`` that cover the case explain its failed tests, and a strict one
        whose tests all pass is an unexpected pass (``_check_known``)."""
        entries = [e for e in self._matching(spec, (backend.name, *backend.known_as), case)
                   if STAT_SYMPTOM in e.symptom]
        stats = self._known_stats[(spec.id, backend.name, case.dtype, case.mode)]
        for entry in entries:
            counts = stats.setdefault(entry.id, [entry, 0, 0])
            counts[1] += 1
            counts[2] += int(any(entry.explains(c) for c in failing))
        if not failing or not entries:
            return {}
        explained = explain(entries, None, failing)
        if explained is None:
            return {"known_unexplained": [e.id for e in entries]}
        known = explained[0].describe()
        if len(explained) > 1:
            known["with"] = [e.id for e in explained[1:]]
        return _known_verdict(known, None)

    def search(self, backend: Backend, spec: LayerSpec, dtype: str, invalid: bool, regime: Regime | None = None,
               samples: list[tuple[Case, dict[str, np.ndarray]]] | None = None,
               stop: dict[str, Any] | None = None, mode: str = "vjp") -> None:
        """One Hypothesis search; a discrepancy is shrunk and its final example recorded. Random
        choices of passing cases are collected into ``samples`` (one per call seed: identical draws
        would not be independent). A hang ends the search at once (shrinking it would cost a
        timeout per step), a crash once shrunk; either sets ``stop["stopped"]``, shared by a
        target's searches, and nothing more is run."""
        settings = self.settings
        strategy = spec.strategy(dtype, regime, invalid=invalid)
        domain = None
        if mode != "vjp":
            from conformance.modes import mode_of

            domain = mode_of(mode)
            strategy = strategy.map(lambda case: replace(case, mode=mode))
        state = stop if stop is not None else {"stopped": False}
        state.setdefault("stopped", False)
        state["failed"] = False
        state.pop("first", None)  # (this search's first failing evaluation)
        seeds = {c.call.get("seed") for c, _ in samples or () if c.call}

        def check(case: Case) -> None:
            if state["stopped"]:
                return
            evaluation = self.evaluate(backend, spec, case, regime)
            record = evaluation.record
            if _needs_fresh_worker(record) and hasattr(backend, "reset"):
                backend.reset()
            if record["verdict"] == "timeout":
                state["stopped"] = True
                record["final"] = True
                self._discrepancies.append(evaluation)
                self._emit(record)
                return
            record["final"] = _is_final_replay()
            bad = record["verdict"] in DISCREPANCY_VERDICTS
            # (after a failure every call is a replay: shrinking, or the final replay; one that passes
            # is a failure that did not reproduce, recorded as the first failure, below)
            record["shrinking"] = state["failed"] and not (record["final"] and bad)
            if bad and "first" not in state:
                state["first"] = evaluation
            if bad and record["final"]:
                self._discrepancies.append(evaluation)
                state["stopped"] |= record["verdict"] == "crash"
            self._emit(record)
            seed = (evaluation.case.call or {}).get("seed")
            fresh = seed not in seeds and not state["failed"] and not bad
            if samples is not None and evaluation.case.choices and fresh:
                seeds.add(seed)
                samples.append((evaluation.case, dict(evaluation.case.choices)))
            if self.profile.target and not invalid:
                util = float(record["max_utilisation"])
                target(min(util, 1e6) if np.isfinite(util) else 1e6, label="tolerance utilisation")
            if bad:
                state["failed"] = True
                raise _Discrepancy(f"{spec.id} on {backend.name} ({dtype}): {record['verdict']}")

        def gate(case: Case) -> None:
            """A mode's search: a draw outside the mode's domain (a kink for vjp2, a non-finite input)
            is rejected, and Hypothesis draws another, up to a budget; past it such a draw is a
            no-op example, so that a regime wholly outside the domain costs a few draws only.
            (A wrapper of ``check``; the derandomized searches take their seed from ``CI_SEED*``.)"""
            if domain is not None and not domain.accepts(spec, case):
                state["rejected"] = state.get("rejected", 0) + 1
                if state["rejected"] <= budget:
                    reject()
                return
            check(case)

        count = hypothesis_settings(self.profile, settings.examples, settings.seed, invalid, regime is not None,
                                    settings.database).max_examples
        budget = 2 * count + 2
        state["rejected"] = 0
        test = given(case=strategy)(check if domain is None else gate)
        chosen = hypothesis_settings(self.profile, settings.examples, settings.seed, invalid, regime is not None,
                                     settings.database)
        if domain is not None:  # rejected draws (outside the mode's domain) are no health problem
            chosen = hypothesis_settings_class(chosen, suppress_health_check=list(HealthCheck))
        test = chosen(test)
        if settings.seed is not None:
            test = hypothesis_seed(settings.seed)(test)
        elif chosen.derandomize:
            test = hypothesis_seed(CI_SEED if domain is None else CI_SEED_IN_MODES)(test)
        # Every search shares ``check``'s code, so Hypothesis would give them one database key: one
        # search would replay (and, when they pass there, delete) another's saved failures.
        test._hypothesis_internal_database_key = search_key(spec.id, backend.name, dtype, regime, invalid, mode)
        try:
            test()
        except _Discrepancy:
            pass
        except Unsatisfiable:  # every draw lay outside the mode's domain (a regime at a kink, for vjp2)
            pass
        except FlakyFailure as exc:
            first = state.get("first")
            if first is None:
                self._search_failed(backend, spec, dtype, regime, mode, exc)
                return
            # The backend failed a case and then passed its replays (a state- or thread-dependent
            # failure): the discrepancy it showed is the finding, unshrunk, not a harness error.
            first.record.update(final=True, shrinking=False, flaky=(
                "not reproduced when Hypothesis replayed the case: the backend's result depends on "
                "state the case does not fix (earlier calls, threads)"))
            self.discrepancies += 1
            self._discrepancies.append(first)
        except Exception as exc:  # the search itself broke (health check...)
            self._search_failed(backend, spec, dtype, regime, mode, exc)

    def _search_failed(self, backend: Backend, spec: LayerSpec, dtype: str, regime: Regime | None, mode: str,
                       exc: BaseException) -> None:
        """A harness error: the search itself broke."""
        record = self._base_record(backend, spec, None, dtype, regime, mode=mode)
        record.update(verdict="error", error_side="harness", final=True, error=f"the search failed: {_error_text(exc)}")
        self._emit(record)

    def _emit(self, record: dict[str, Any]) -> None:
        record["time"] = time.time()
        self._pending.append(record)
        if record.get("shrinking"):
            return
        key = (record["op"], record["backend"], record["dtype"], record.get("mode", "vjp"))
        tally = self.tallies[key]
        tally.verdicts[record["verdict"]] += 1
        util = float(record.get("max_utilisation") or 0.0)
        tally.worst_utilisation = max(tally.worst_utilisation, util)
        if record["verdict"] != "unsupported":
            self.cases += 1
        if record["verdict"] in DISCREPANCY_VERDICTS and record["final"]:
            self.discrepancies += 1  # one per shrunk example (its first sighting is not counted twice)
