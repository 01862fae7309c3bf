"""The parts every derivative mode shares: the constants, the case helpers, ``Judgement`` and
the ``Mode`` base class (``conformance.modes`` documents the modes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_results
from conformance.spec import LayerSpec, Pullback
from conformance.tolerance import _abs_case, bound_for

PROJECTIONS = 3  # random cotangents of the projected jvp check
ELEMENTWISE = 64  # float output elements up to which the jvp check is also elementwise
BATCH = 3  # cases per vmap call
COMPOSITIONS = ("reverse-over-reverse", "forward-over-reverse", "reverse-over-forward")
FD_STEP = 2.0**-20  # central-difference step along v (v at the inputs' scale): exact steps, within ``smooth_at``
# An identically zero second derivative: the gradient is the same one step of this size along v.
COARSE_STEP = 2.0**-6
FD_SAFETY = 10.0  # the finite difference's error estimate enters the bound ten times over
_U64 = 2.0**-53


def _seed(case: Case) -> int:
    """The case's mode seed (from its id, so a replay draws the same arrays)."""
    return int(case.case_id(), 16) % (2**31)


def _float_inputs(case: Case) -> dict[str, np.ndarray]:
    return {n: v for n, v in case.inputs.items() if case.input_type(n) == "float" and np.asarray(v).dtype.kind == "f"}


def _finite(case: Case) -> bool:
    return all(np.isfinite(v).all() for v in _float_inputs(case).values())


def _differentiable(case: Case) -> list[str]:
    floats = _float_inputs(case)
    return [n for n in case.differentiable if n in floats]


def _with_mode(case: Case, node: dict[str, Any]) -> Case:
    call = dict(case.call or {})
    call["mode"] = node
    return replace(case, call=call)


def _float_outputs(result: Result) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in result.outputs.items() if np.asarray(v).dtype.kind == "f"}


def _split(got: Result, prefix: str) -> Result:
    """The part of a mode's result whose names start with ``prefix`` (vmap slices), regrouped."""
    out = Result(meta=dict(got.meta))
    groups = {"grad.": out.grads, "state.": out.state, "random.": out.choices}
    for name, value in got.tensors().items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        group = next((g for g in groups if rest.startswith(g)), None)
        if group is None:
            out.outputs[rest] = value
        else:
            groups[group][rest[len(group):]] = value
        if name in got.dtypes:
            out.dtypes[rest] = got.dtypes[name]
    return out


def _primal(got: Result, mode_prefixes: tuple[str, ...]) -> Result:
    """The backend's result without a mode's own tensors (its outputs, state, choices, grads)."""
    keep = Result(grads=dict(got.grads), state=dict(got.state), choices=dict(got.choices), meta=dict(got.meta))
    keep.outputs = {k: v for k, v in got.outputs.items() if not k.startswith(mode_prefixes)}
    keep.dtypes = {k: v for k, v in got.dtypes.items() if not k.startswith(mode_prefixes)}
    return keep


def _renamed(comparisons: list[Comparison], prefix: str) -> list[Comparison]:
    for c in comparisons:
        c.tensor = prefix + c.tensor
    return comparisons


def _float_model(case: Case) -> Case:
    """The case judged in the float model (a derivative mode claims no exactness)."""
    return case if case.tier == "float" else replace(case, tier="float")


@dataclass
class Judgement:
    """What a mode concluded about one case: its comparisons and facts for the record; and, for the
    repro artifacts (``conformance.artifacts``), what it compared the mode's own tensors with."""

    comparisons: list[Comparison]
    info: dict[str, Any]
    # Per mode tensor judged here (``jvp.<output>``, ``jvp.projection``, ``d2.*``): (expected, allowed,
    # judged) as compared; judged is False where the run judged nothing (the reference undefined:
    # the backend's own value was taken as expected, with no error allowed).
    expected: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    # What jvp.projection's backend side is formed from: ``u<i>.<output>``, the i-th cotangent draw
    # (NaN where an element is left out), and ``scale``, the power of two the projections were
    # judged under (expected and allowed above are scaled by it).
    projection: dict[str, np.ndarray] = field(default_factory=dict)


Judge = Callable[[LayerSpec, Case, Result, "Pullback | None", Result], Judgement]


class Mode:
    """One derivative mode (see the module docstring). Subclasses implement the four steps."""

    name = "vjp"
    needs_cotangents = True

    def applicable(self, spec: LayerSpec) -> tuple[bool, str]:
        """Whether the mode applies to the declaration at all (else: unsupported, with why)."""
        if not spec.backward:
            return False, f"{spec.id} has no derivative to take (no backward is declared)"
        return True, ""

    def accepts(self, spec: LayerSpec, case: Case) -> bool:
        """Whether the case lies in the mode's domain (others are rejected and redrawn)."""
        return not case.invalid and bool(_differentiable(case)) and _finite(case)

    def prepare(self, spec: LayerSpec, case: Case, ref: Result) -> Case:  # pragma: no cover - interface
        raise NotImplementedError

    def judge(self, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None,
              got: Result) -> Judgement:  # pragma: no cover - interface
        raise NotImplementedError

    # -- helpers shared by the modes -----------------------------------------------------------------
    def judge_readings(self, judge: Judge, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None,
                       got: Result) -> Judgement:
        """``judge`` under the documented reading, then, where that fails, under each other reading
        the declaration allows at this case (``LayerSpec.readings``: torch's crop-first circular
        padding): the first under which everything passes, else the first whose primal tensors
        pass (the reading the backend's results follow, whose derivative failures are the
        informative ones), else the documented one's judgement."""
        documented = judge(spec, case, ref, pullback, got)
        if spec.readings is None or all(c.ok for c in documented.comparisons):
            return documented
        try:
            others = list(spec.readings(spec, case))
        except Exception:
            others = []
        followed = None
        for other in others:
            try:
                with np.errstate(all="ignore"):
                    other_ref, other_pullback = other.run_reference(case)
                    if ref.grads:  # (vjp2: the first-order gradients for the case's cotangents)
                        other_ref.grads = other.pull(other_pullback, case, case.cotangents)
                    judgement = judge(other, case, other_ref, other_pullback, got)
            except Exception:
                continue
            judgement.info["reading"] = "alternative"
            if all(c.ok for c in judgement.comparisons):
                return judgement
            prefixes = ("jvp.", "d2.")
            if followed is None and all(c.ok for c in judgement.comparisons if not c.tensor.startswith(prefixes)):
                followed = judgement
        return followed or documented

    @staticmethod
    def primal_comparisons(spec: LayerSpec, case: Case, ref: Result, got: Result,
                           prefixes: tuple[str, ...]) -> list[Comparison]:
        """The outputs, state, choices (and gradients when ``ref`` has them) compared as usual."""
        return compare_results(spec, case, ref, _primal(got, prefixes))



def _cotangent_draws(seed: int, outputs: Mapping[str, np.ndarray], tier: str,
                     count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng([seed, 7919])
    draws = []
    for _ in range(count):
        draw = {}
        for name in sorted(outputs):
            shape = np.shape(outputs[name])
            draw[name] = (rng.integers(-2, 3, size=shape).astype(np.float64) if tier == "exact"
                          else rng.standard_normal(shape))
        draws.append(draw)
    return draws


class _GradientBound:
    """B_i(u): the declaration's bound on the gradient of each input for a cotangent u (float
    model), with the magnitudes each tolerance policy asks for, computed once per case where
    they do not depend on u (the absolute problem's pullback)."""

    def __init__(self, spec: LayerSpec, case: Case, ref: Result, names: list[str]):
        self.spec, self.case, self.ref, self.names = spec, _float_model(case), ref, names
        self._abs: dict[Any, Pullback | None] = {}

    def _abs_pullback(self, key: Any, tol: Any) -> Pullback | None:
        if key not in self._abs:
            try:
                with np.errstate(all="ignore"):
                    self._abs[key] = self.spec.run_reference(_abs_case(self.case, tol))[1]
            except Exception:
                self._abs[key] = None
        return self._abs[key]

    def __call__(self, u: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        case_u = replace(self.case, cotangents=dict(u))
        # (without the reference's cached bounds, which a composed model keeps in meta["bounds"]: those
        # belong to the case's own cotangents, or to none, not to u)
        meta = {k: v for k, v in self.ref.meta.items() if k != "bounds"}
        result_u = Result(outputs=self.ref.outputs, grads=dict(grads), state=self.ref.state, choices=self.ref.choices,
                          dtypes=self.ref.dtypes, meta=meta)
        out: dict[str, np.ndarray] = {}
        custom: dict[int, Mapping[str, Any]] = {}
        for name in self.names:
            tensor = f"grad.{name}"
            tol = self.spec.tolerance_for(tensor)
            value = np.asarray(grads[name], dtype=np.float64)
            if callable(tol.magnitude):
                key = id(tol)
                if key not in custom:
                    custom[key] = tol.magnitude(case_u, result_u)
                absref = np.abs(np.asarray(custom[key][tensor], dtype=np.float64))
            elif tol.magnitude == "abs":
                pull = self._abs_pullback(tol.abs_inputs, tol)
                abs_grads = pull({k: np.abs(v) for k, v in u.items()}) if pull is not None else {}
                absref = np.abs(np.asarray(abs_grads.get(name, value), dtype=np.float64))
            else:
                absref = np.abs(value)
            absref = np.broadcast_to(absref, value.shape)
            out[name] = np.abs(bound_for(self.spec, case_u, tensor, value, absref).allowed)
        return out


def _reference_gradients(spec: LayerSpec, case: Case, names: Iterable[str],
                         cotangents: Mapping[str, np.ndarray]) -> tuple[Result, dict[str, np.ndarray]]:
    """The reference's result at ``case`` and its gradient of each of ``names`` for ``cotangents``, in
    float64 (zeros for an input the pullback leaves out)."""
    result, pull = spec.run_reference(case)
    grads = spec.pull(pull, case, cotangents)
    return result, {n: np.asarray(grads.get(n, np.zeros(case.inputs[n].shape)), dtype=np.float64) for n in names}

