"""**vjp2** (second order). With the case's cotangents g and a direction v of every differentiable
input, the backend returns d2.<input> = ∂/∂x ⟨Jᵀg, v⟩ (= H_g·v), d2.cotangent.<output> =
∂/∂g ⟨Jᵀg, v⟩ (= J·v) and, on the way, the first-order grad.<input>, by one of three
compositions chosen by the case (``COMPOSITIONS``: double backward, ``torch.func.jvp`` of
``torch.func.vjp``, ``torch.func.grad`` of ``torch.func.jvp``). The reference differentiates its
own analytic VJP (and forward) along v by central differences in float64 with one Richardson
extrapolation (``reference.finite_differences.directional``), with an error estimate ε. Bound:

    u·(out_ulps·|r| + c·√K·A) + ρ·A + |∂_v B| + 10·ε + u₆₄·|r| + K·tiny

with c, K, out_ulps the policy of the first-order tensor differentiated (grad.<input> for d2.<input>,
the output for J·v), and:

- A, the magnitude of the second-order computation: the largest of (i) the same difference taken on
  the absolute problem (|inputs|, |g|, |v|), exactly the sum of absolute terms for a multilinear
  layer; (ii) |r|; (iii) the tensor's largest |H_g·(v∘s)|, the difference along v with independent
  random signs s (same magnitudes, so x + h·v∘s stays exact). (iii) is the scale of the terms
  H_kj·v_j that the computation forms and rounds: along v itself they may cancel in exact
  arithmetic but not in floats (softmax along its shift direction, a normalisation along its mean:
  the absolute problem is invariant the same way), and a statistic or normaliser shared by the
  whole tensor carries its rounding to every element at that scale, not at the element's own |r|;
- ρ, the relative error the declaration allows the first-order tensor at each element (at most 1):
  the second-order result is formed from the same rounded intermediates, so it inherits it, on A;
- |∂_v B|, the derivative along v of the declaration's own first-order bound B (in the case's
  dtype, differenced with the same steps as r): the backend's gradient is g + δ with |δ| <= B, and
  the second-order result differentiates the rounded computation, so it carries the variation of
  δ along v, of the size of B's. This is what a cancelling first-order computation contributes
  (a batch-norm channel of two values: x̂ = ±d/√(d² + eps) is flat up to eps, and its tangent
  cancels by the factor d²/eps that B's derivative shows);
- ε, Richardson's error estimate, plus the reference's own float64 evaluation error divided by the
  step.

Cases lie in a smooth neighbourhood: finite inputs, the declaration's ``smooth_at`` (no input
within the steps' reach of a kink or tie), and steps x ± h·v exact in float64 (``steps_exact``: not
for |x| beyond about 2^36, where the capped direction falls below x's resolution). A layer whose
second derivative is zero almost everywhere (ReLU, max pooling, copies, affine maps in one input)
needs no statement: its differences vanish identically — along v, on the absolute problem and along v∘s — and its
gradient stays the same one ``COARSE_STEP`` along v and v∘s (central differences vanish also for
a curvature below their resolution, or an even one: a layer norm of values far below √eps); then A
and ∂_v B are 0, ε is the coarse step's resolution (|H·v| below ~2^-46·|g|, as of log-softmax far
from its largest input: 0 where the gradient is 0), and the backend must return zeros within it
(``second_order: zero`` in the record). A
difference vanishing along v alone is an invariance of the layer, judged with the bound above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from backends.torch_run import direction_values
from conformance.compare import judged
from conformance.dtypes import DTYPES
from conformance.modes.base import (
    COARSE_STEP,
    COMPOSITIONS,
    ELEMENTWISE,
    FD_SAFETY,
    FD_STEP,
    Judgement,
    Mode,
    _differentiable,
    _float_model,
    _float_outputs,
    _GradientBound,
    _reference_gradients,
    _seed,
    _with_mode,
)
from conformance.spec import LayerSpec, Pullback, Tolerance
from conformance.tolerance import REFERENCE_ROUNDOFF, _abs_case, bound_for, magnitudes
from reference.finite_differences import Directional, derivative, directional, rounding_error


class Vjp2Mode(Mode):
    name = "vjp2"

    def accepts(self, spec: LayerSpec, case: Case) -> bool:
        if not super().accepts(spec, case):
            return False
        try:
            if spec.smooth_at is not None and not spec.smooth_at(case):
                return False
        except Exception:
            return False
        return self.steps_exact(case)

    @staticmethod
    def steps_exact(case: Case) -> bool:
        """x ± h·v is exact in float64 for h = FD_STEP and FD_STEP/2 (the differences divide by the
        step they assume): not where the direction, capped at 2^12 (``direction_values``), is below
        the resolution of |x| (|x| beyond about 2^36); such a case is outside the mode's domain."""
        seed = _seed(case)  # (``prepare`` draws the directions from the same seed)
        for n in _differentiable(case):
            x = np.asarray(case.inputs[n], dtype=np.float64)
            v = direction_values(seed, n, x, case.tier, case.layout(n).describe())
            with np.errstate(all="ignore"):
                for h in (FD_STEP, FD_STEP / 2):
                    if np.any((x + h * v) - x != h * v):
                        return False
        return True

    def prepare(self, spec: LayerSpec, case: Case, ref: Result) -> Case:
        seed = _seed(case)
        return _with_mode(case, {"kind": "vjp2", "seed": seed, "tier": case.tier,
                                 "composition": COMPOSITIONS[seed % len(COMPOSITIONS)]})

    def directions(self, case: Case) -> dict[str, np.ndarray]:
        node = (case.call or {})["mode"]
        return {n: direction_values(node["seed"], n, case.inputs[n], node["tier"], case.layout(n).describe())
                for n in _differentiable(case)}

    @staticmethod
    def scattered(case: Case, v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """v with independent seeded random signs per element (same magnitudes, so x + h·v stays
        exact): a generic direction of v's scale, off any direction the layer is invariant along."""
        rng = np.random.default_rng([_seed(case), 104729])
        return {n: x * rng.choice((-1.0, 1.0), size=np.shape(x)) for n, x in v.items()}

    def second_order(self, spec: LayerSpec, case: Case, v: Mapping[str, np.ndarray],
                     cotangents: Mapping[str, np.ndarray],
                     states: dict[float, tuple[Case, Result, dict[str, np.ndarray]]] | None = None,
                     ) -> dict[str, Directional]:
        """{d2.<input>, d2.cotangent.<output>: their derivatives along v}: of the pullback of
        ``cotangents`` and of the forward, by central differences (``FD_STEP``). ``states`` receives
        the reference's runs at the differenced points ({t: (shifted case, result, gradients)}, for
        ``bound_drift``)."""

        def at(inputs: dict[str, np.ndarray], t: float) -> dict[str, np.ndarray]:
            shifted = replace(case, inputs=inputs)
            result, grads = _reference_gradients(spec, shifted, v, cotangents)
            out = {f"d2.{n}": g for n, g in grads.items()}
            out.update({f"d2.cotangent.{k}": y for k, y in _float_outputs(result).items() if k in cotangents})
            if states is not None:
                states[t] = (shifted, result, grads)
            return out

        with np.errstate(all="ignore"):
            return directional(at, case.inputs, v, FD_STEP, with_step=True)

    @staticmethod
    def _bounds_at(spec: LayerSpec, shifted: Case, cotangents: Mapping[str, np.ndarray], result: Result,
                   grads: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """{bound.<name>: the declaration's first-order bound, in the case's dtype, of the tensor that
        d2.<name> differentiates (grad.<input>, <output>)} at one differenced point."""
        out: dict[str, np.ndarray] = {}
        try:
            model = replace(_float_model(shifted), cotangents=dict(cotangents))
            first = Result(outputs=dict(result.outputs), grads=dict(grads), state=dict(result.state))
            absref = magnitudes(spec, model, first)
            for name in names:
                tensor = (name[len("d2.cotangent."):] if name.startswith("d2.cotangent.")
                          else f"grad.{name[len('d2.'):]}")
                value = first.tensors().get(tensor)
                if value is not None and tensor in absref:
                    out["bound." + name] = np.abs(bound_for(spec, model, tensor, np.asarray(value),
                                                            absref[tensor]).allowed)
        except Exception:
            pass
        return out

    def bound_drift(self, spec: LayerSpec, cotangents: Mapping[str, np.ndarray],
                    states: Mapping[float, tuple[Case, Result, dict[str, np.ndarray]]],
                    names: list[str]) -> dict[str, np.ndarray]:
        """{d2.<name>: |∂_v B|}, B the declaration's first-order bound of the tensor differentiated, from
        the reference's runs at the differenced points (``second_order``'s ``states``): the larger of
        its Richardson central difference and its one-sided rates (``bound_rates``)."""
        h = FD_STEP
        with np.errstate(all="ignore"):
            evaluations = {t: self._bounds_at(spec, shifted, cotangents, result, grads, names)
                           for t, (shifted, result, grads) in states.items()}
            drift: dict[str, np.ndarray] = {}
            for key in evaluations.get(h, {}):
                values = [evaluations.get(t, {}).get(key) for t in (h, -h, h / 2, -h / 2)]
                if any(x is None or np.shape(x) != np.shape(values[0]) for x in values):
                    continue
                by_step = dict(zip((h, -h, h / 2, -h / 2), values))
                estimate, _ = derivative(lambda t, by_step=by_step: np.asarray(by_step[t], dtype=np.float64), h)
                drift[key[len("bound."):]] = np.asarray(estimate)
            # (B's one-sided rates, which its kinks do not cancel: see ``bound_rates``)
            for name, rate in self.bound_rates(evaluations).items():
                drift[name] = np.maximum(np.abs(drift[name]), rate) if name in drift else rate
        return drift

    @staticmethod
    def bound_rates(evaluations: Mapping[float, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """{d2.<name>: B's larger one-sided rate along v}, B the declaration's first-order bound of the
        tensor differentiated, from ``bound_drift``'s evaluations (its bound.<name> at x ± h·v and
        x ± h/2·v, h = ``FD_STEP``): max(|B(h) - B(h/2)|, |B(-h) - B(-h/2)|)/(h/2). B is
        a sum of absolute terms with kinks where one crosses 0 (|x - μ| over a constant row): there its
        central difference cancels though the backend's error δ (|δ| <= B) varies at B's one-sided
        rate (a rounded mean's δμ times a deviation that grows along v either way)."""
        h = FD_STEP
        out: dict[str, np.ndarray] = {}
        for key in evaluations.get(h, {}):
            if not key.startswith("bound."):
                continue
            for far, near in ((h, h / 2), (-h, -h / 2)):
                b_far, b_near = evaluations.get(far, {}).get(key), evaluations.get(near, {}).get(key)
                if b_far is None or b_near is None or np.shape(b_far) != np.shape(b_near):
                    continue
                with np.errstate(all="ignore"):
                    rate = np.abs(np.asarray(b_far) - np.asarray(b_near)) / (h / 2)
                rate = np.where(np.isfinite(rate), rate, 0.0)
                name = key[len("bound."):]
                out[name] = np.maximum(out[name], rate) if name in out else rate
        return out

    def gradient_constant(self, spec: LayerSpec, case: Case, v: Mapping[str, np.ndarray],
                          cotangents: Mapping[str, np.ndarray]) -> bool:
        """Whether the reference's gradients stay bit for bit the same one coarse step
        (``COARSE_STEP``) along v and along v∘s, which move every element: the layer is affine
        there, its second derivative identically 0. (Central differences vanish also for a
        curvature below their resolution, and around a point where the gradient is even along v:
        a layer norm of values far below √eps.)"""
        def grads(shifted: Case) -> dict[str, np.ndarray]:
            return _reference_gradients(spec, shifted, v, cotangents)[1]

        base = grads(case)
        for direction in (v, self.scattered(case, v)):
            with np.errstate(all="ignore"):
                inputs = {n: (np.asarray(x, dtype=np.float64) + COARSE_STEP * direction[n]) if n in direction else x
                          for n, x in case.inputs.items()}
            if any(np.any((inputs[n] == case.inputs[n]) & (direction[n] != 0)) for n in direction):
                return False  # an element too large for the step to move it: not seen
            moved = grads(replace(case, inputs=inputs))
            if any(not np.array_equal(base[n], moved[n]) for n in base):
                return False
        return True

    @staticmethod
    def first_order_bounds(spec: LayerSpec, case: Case, ref: Result) -> tuple[dict[str, np.ndarray],
                                                                            dict[str, np.ndarray]]:
        """Per first-order tensor (outputs, gradients): ρ, the relative error the declaration allows
        it at each element in the case's dtype (its bound over its magnitude, at most 1: the
        second-order result is computed from the same intermediate values, whose rounding it
        inherits); and its bound in float64, which bounds the reference's own evaluation error
        (the finite differences divide it by the step)."""
        model = _float_model(case)
        relative: dict[str, np.ndarray] = {}
        in_float64: dict[str, np.ndarray] = {}
        try:
            with np.errstate(all="ignore"):
                absref = magnitudes(spec, model, ref)
                for name, value in ref.tensors().items():
                    value = np.asarray(value)
                    if value.dtype.kind != "f" or name.startswith(("state.", "random.")):
                        continue
                    allowed = np.abs(bound_for(spec, model, name, value, absref[name]).allowed)
                    rho = np.where(np.abs(value) > 0, np.minimum(1.0, allowed / np.abs(value)),
                                   np.where(allowed > 0, 1.0, 0.0))
                    relative[name] = np.where(np.isfinite(rho), rho, 1.0)
                    b64 = np.abs(bound_for(spec, replace(model, dtype="float64"), name, value, absref[name]).allowed)
                    in_float64[name] = np.where(np.isfinite(b64), b64, 0.0)
        except Exception:
            pass
        return relative, in_float64

    @staticmethod
    def inherited(relative: Mapping[str, np.ndarray], first: str, shape: tuple[int, ...],
                  cotangent: bool) -> np.ndarray:
        """ρ for a second-order tensor: H_g·v (d2.<input>) inherits its gradient's, elementwise;
        J·v (d2.cotangent.<output>) is formed from J like every gradient is, so it inherits the
        gradients' (elementwise where a gradient has the output's shape, else their largest)."""
        if not cotangent:
            return np.broadcast_to(relative.get(first, np.zeros(shape)), shape)
        grads = [v for k, v in relative.items() if k.startswith("grad.")]
        same = [v for v in grads if v.shape == shape]
        if same:
            return np.maximum.reduce(same)
        top = max((float(v.max()) for v in grads if v.size), default=0.0)
        return np.full(shape, top)

    @staticmethod
    def through_gradients(spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None,
                          v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{d2.cotangent.<output>: the error it inherits from the gradient it is formed from}. The
        backend forms J·v from its gradient computation ((J·v)_k = ⟨Jᵀe_k, v⟩), whose elements carry
        the declaration's first-order bound B(e_k) even where they cancel to 0 (a stationary point,
        where J = 0 and the forward's differences vanish: cosine similarity of parallel vectors):
        Σ_i ⟨B_i(e_k), |v_i|⟩, the jvp mode's bound of one basis projection. Elementwise for at most
        ELEMENTWISE output elements; beyond, with u = 1 everywhere for every element (the sum of the
        elementwise bounds, for bounds linear in |u|)."""
        outputs = {k: x for k, x in _float_outputs(ref).items() if k in case.cotangents}
        names = [n for n in v]
        if pullback is None or not outputs or not names:
            return {}
        bound = _GradientBound(spec, case, ref, names)

        def term(u: Mapping[str, np.ndarray]) -> float:
            grads = spec.pull(pullback, case, u)
            grads = {n: np.asarray(grads.get(n, np.zeros(case.inputs[n].shape)), dtype=np.float64) for n in names}
            b = bound(u, grads)
            return float(sum(np.sum(b[n] * np.abs(v[n])) for n in names))

        out: dict[str, np.ndarray] = {}
        try:
            with np.errstate(all="ignore"):
                if sum(x.size for x in outputs.values()) <= ELEMENTWISE:
                    for k, x in outputs.items():
                        values = np.zeros(x.shape)
                        for index in np.ndindex(x.shape):
                            u = {o: np.zeros(y.shape) for o, y in outputs.items()}
                            u[k][index] = 1.0
                            values[index] = term(u)
                        out[f"d2.cotangent.{k}"] = values
                else:
                    total = term({o: np.ones(y.shape) for o, y in outputs.items()})
                    out = {f"d2.cotangent.{k}": np.full(x.shape, total) for k, x in outputs.items()}
        except Exception:
            return {}
        return {k: np.where(np.isfinite(x), x, 0.0) for k, x in out.items()}

    def judge(self, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None, got: Result) -> Judgement:
        return self.judge_readings(self._judge, spec, case, ref, pullback, got)

    def _judge(self, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None, got: Result) -> Judgement:
        comparisons = self.primal_comparisons(spec, case, ref, got, ("d2.",))
        info: dict[str, Any] = {"composition": case.call["mode"]["composition"]}  # type: ignore[index]
        compared: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # (Judgement.expected)
        v = self.directions(case)
        g = dict(case.cotangents)
        if not v or not g:
            return Judgement(comparisons, info)
        dt = DTYPES[case.dtype]
        states: dict[float, tuple[Case, Result, dict[str, np.ndarray]]] = {}
        estimates = self.second_order(spec, case, v, g, states=states)
        try:
            abs_case = _abs_case(_float_model(case), Tolerance())
            magnitude = self.second_order(spec, abs_case, {n: np.abs(x) for n, x in v.items()},
                                          {k: np.abs(x) for k, x in g.items()})
        except Exception:
            magnitude = {}
        try:
            scattered = self.second_order(spec, case, self.scattered(case, v), g)
        except Exception:
            scattered = {}
        relative, in_float64 = self.first_order_bounds(spec, case, ref)
        # The declaration's own bound on second-order terms that cancel along every direction (which
        # no difference sees: an invariance in every direction), and J·v's error from the gradients.
        declared: dict[str, np.ndarray] = {}
        if spec.second_order_error is not None:
            try:
                with np.errstate(all="ignore"):
                    declared = {k: np.abs(np.asarray(b, dtype=np.float64))
                                for k, b in spec.second_order_error(_float_model(case), v, g).items()}
            except Exception:
                declared = {}
        # J·v's error inherited from the gradients (``through_gradients``, one first-order bound per
        # output element: the costly part of the judge) is computed only for a d2.cotangent tensor that
        # fails without it. The bound only grows with it, so a tensor passing without it passes with
        # it: the verdicts are those of the full bound (a passing tensor's recorded utilisation is
        # against the smaller one).
        through: dict[str, np.ndarray] | None = None
        # Likewise |∂_v B| (``bound_drift``: the first-order bound at the four differenced points, the
        # other costly part), computed once some tensor fails without it.
        drift: dict[str, np.ndarray] | None = None
        # Differences that vanish at both steps, on the problem and on its absolute counterpart, for
        # every element of every input's second derivative: the second derivative is identically 0
        # (a piecewise-linear layer away from its kinks), and so must the backend's be. (An element
        # vanishing alone is an underflow or a coincidence, judged like any other.)
        vanishing = {}
        for name, fd in estimates.items():
            absolute = magnitude.get(name)
            vanishing[name] = (np.isfinite(fd.estimate) & (fd.estimate == 0)
                               & (fd.error == rounding_error(fd.magnitude, FD_STEP)))
            for other in (absolute, scattered.get(name)):
                if other is None:
                    vanishing[name] &= False
                else:
                    vanishing[name] &= (other.estimate == 0) & (other.error == rounding_error(other.magnitude, FD_STEP))
            if name in declared:
                vanishing[name] &= np.broadcast_to(declared[name], fd.estimate.shape) == 0
        zero = all(v.all() for name, v in vanishing.items() if not name.startswith("d2.cotangent."))
        if zero:  # (or a curvature below the differences' resolution: then not exactly zero)
            try:
                zero = self.gradient_constant(spec, case, v, g)
            except Exception:
                zero = False
        for name, fd in estimates.items():
            r, eps = fd.estimate, fd.error
            cotangent = name.startswith("d2.cotangent.")
            first = name[len("d2.cotangent."):] if cotangent else f"grad.{name[len('d2.'):]}"
            tol = spec.tolerance_for(first)
            k = max(1, tol.reduction_length(_float_model(case), first))
            with np.errstate(all="ignore"):
                absolute = magnitude.get(name)
                a = np.zeros(r.shape) if absolute is None else np.abs(absolute.estimate)
                a = np.maximum(np.where(np.isfinite(a), a, 0.0), np.abs(np.where(np.isfinite(r), r, 0.0)))
                # The terms' scale, seen along v with scattered signs (the tensor's largest): what the
                # rounding of shared intermediates (statistics, a normaliser) reaches every element at.
                spread = scattered.get(name)
                terms = np.abs(np.where(np.isfinite(spread.estimate), spread.estimate, 0.0)) if spread else a
                scale = float(max(np.max(a, initial=0.0), np.max(terms, initial=0.0)))
                a = np.maximum(a, scale)
                # The reference's own evaluation error, by the declaration's error model in float64,
                # divided by the step: a cancelling gradient is differenced no better than it is known.
                evaluation = in_float64.get(first)
                if evaluation is not None:
                    if evaluation.shape != r.shape:
                        evaluation = np.full(r.shape, float(evaluation.max()) if evaluation.size else 0.0)
                    eps = eps + 3 * evaluation / FD_STEP
                if zero and not cotangent:  # (what the coarse step could not have seen: exact where g = 0)
                    eps = np.where(vanishing[name], rounding_error(fd.magnitude, COARSE_STEP), eps)
                rho = self.inherited(relative, first, r.shape, cotangent)
                c = 2.0 if callable(tol.magnitude) else max(tol.c, 2.0)
                base = (dt.unit_roundoff * (tol.out_ulps * np.abs(r) + c * math.sqrt(k) * a) + rho * a
                        + FD_SAFETY * eps + REFERENCE_ROUNDOFF * np.abs(r) + k * dt.min_subnormal)
                if not cotangent:
                    base = base + np.broadcast_to(declared.get(name, np.zeros(r.shape)), r.shape)
            comparison, allowed, usable = self._compare(name, case, got, r, base, k)
            if not comparison.ok:  # the lazily computed terms (``drift``, ``through``), where needed
                if drift is None:
                    drift = self.bound_drift(spec, g, states, list(estimates))
                # The first-order rounding differentiated: the backend's gradient is g + δ with |δ| <= B
                # (its bound); the second-order result is the derivative of the rounded computation, so
                # it carries δ's variation along v, of the size of B's own (|∂_v B|). (Kept where the
                # differences vanish too: a first-order bound that varies along v says the backend's
                # gradient is computed from terms that do, whose rounding the second-order result
                # differentiates; a piecewise-linear layer's exact gradient has B = 0, and B constant
                # along v has no variation.)
                tangent = np.abs(drift.get(name, np.zeros(r.shape)))
                tangent = np.where(np.isfinite(tangent), tangent, 0.0)
                if tangent.shape != r.shape:
                    tangent = np.full(r.shape, float(tangent.max()) if tangent.size else 0.0)
                full = base + tangent
                if cotangent:
                    if through is None:
                        through = self.through_gradients(spec, case, ref, pullback, v)
                    extra = through.get(name, declared.get(name))
                    if extra is not None:
                        full = full + np.broadcast_to(extra, r.shape)
                comparison, allowed, usable = self._compare(name, case, got, r, full, k)
            comparisons.append(comparison)
            compared[name] = (r, allowed, usable)
        info["second_order"] = "zero" if zero else "nonzero"
        return Judgement(comparisons, info, compared)

    @staticmethod
    def _compare(name: str, case: Case, got: Result, r: np.ndarray, allowed: np.ndarray,
                 k: int) -> tuple[Any, np.ndarray, np.ndarray]:
        """The comparison of the backend's ``name`` with the estimate ``r`` under ``allowed``, and
        (allowed, usable): the elements judged (r and its bound finite)."""
        dt = DTYPES[case.dtype]
        with np.errstate(all="ignore"):
            usable = np.isfinite(r) & np.isfinite(allowed)
            value = got.outputs.get(name)
            if value is not None and np.shape(value) == r.shape:
                got_value = np.asarray(value, dtype=np.float64)
                # An element whose bound interval [r - allowed, r + allowed] reaches past the dtype's
                # largest value on the side of the backend's infinity may have overflowed to it (the
                # rounding the bound admits carries it there: a partial sum of terms beyond the range).
                with np.errstate(invalid="ignore", over="ignore"):
                    reaches = usable & np.isinf(got_value) & np.where(
                        got_value > 0, r + allowed > dt.max_value, r - allowed < -dt.max_value)
                expected = np.where(usable & ~reaches, r, got_value)
            else:
                expected = np.where(usable, r, 0.0)
        comparison = judged(name, case, expected, value, np.where(usable, allowed, 0.0), reduction_length=k,
                            got_dtype=got.dtypes.get(name))
        return comparison, allowed, usable
