"""Derivative modes: every derivative torch offers, judged against the reference.

A run's targets are declaration × backend × dtype × mode (``--mode vjp,jvp,vjp2,vmap``; ``all``).
``vjp`` is the call and its reverse-mode gradient (``conformance.runner``); the other three are
here. Each draws its cases from the declaration's own strategy (random cases and every regime, in
every dtype), keeps those in its domain (``Mode.accepts``: a case outside it is rejected and
Hypothesis draws another), attaches what the backend must compute to the call tree
(``call["mode"]``, interpreted by ``backends.torch_call``), and judges the backend's result with
a bound derived from the error models of both sides (``Mode.judge``). No mode needs a formula of
its own: the reference's forward and analytic VJP (its pullback) are all there is.

**jvp** (forward mode). The backend returns J·t for a tangent t of every differentiable input,
parameters included (``torch_call.mode_values``). J·t is judged through the VJP by the adjoint
identity ⟨u, J·t⟩ = ⟨Jᵀu, t⟩:

- over ``PROJECTIONS`` random cotangents u (normals; small integers in the exact tier), one
  comparison ``jvp.projection`` of the scalars ⟨u, J·t⟩;
- and, when the float outputs hold at most ``ELEMENTWISE`` elements, for u = every basis vector:
  then ⟨Jᵀe_k, t⟩ = (J·t)_k and the comparison ``jvp.<output>`` is elementwise (the report shows
  which element is wrong).

A case whose documented gradient is not the Jacobian's transpose (Embedding's
``scale_grad_by_freq``, which divides by the index counts, and its ``padding_idx`` row, which gets
no gradient though the forward reads it; MaxUnpool with duplicate indices, whose gradient gathers
for every entry while one value lands: the declaration's ``adjoint_at``) is outside the jvp domain:
the identity does not hold for it (``_gradient_not_adjoint``).

Where the documentation allows a second reading that the primal comparators accept (circular
padding cropping one side and padding the other: torch crops first), J·t and the second-order
tensors are judged under the reading the backend follows (``LayerSpec.readings``,
``Mode.judge_readings``).

Bound of one projection: the backend's J·t carries the errors of a forward-mode kernel, whose
projection on u is ⟨δJ·t, u⟩ = ⟨δJᵀu, t⟩, the error of the reverse-mode kernel for cotangent u
paired with t. So the bound is Σ_i ⟨B_i(u), |t_i|⟩·√(max(1, K_out/K_i)), with B_i(u) the
declaration's own bound on the gradient of input i for cotangent u (``tolerance.bound_for``, in
the float model: no exactness is claimed) and the √ factor the forward kernel's longer reductions
(K_out, the outputs' reduction length, against K_i, the gradient's); plus one rounding of each
element of J·t, u·⟨|u|, |J·t|⟩, and the float64 rounding of both dot products.

Detection power: a wrong J·t = J·t + δ escapes a Gaussian projection only when |⟨u, δ⟩| stays
within the bound A; ⟨u, δ⟩ ~ N(0, ‖δ‖²), so P(escape) ≤ 2A/(√(2π)·‖δ‖) ≈ 0.8·A/‖δ‖ for each u,
independently: an error of ‖δ‖ = 10·A escapes all three projections with probability below
6·10⁻⁴, one of 100·A below 6·10⁻⁷. An error confined to one element k escapes the elementwise
comparison only within that element's own bound.

Range: the projections are float64 sums, scaled by a power of two into the dtype's range before
they are judged (the dtype's overflow convention is for its values, not for these sums). Elements
where the backend's J·t is ±inf are an overflow of J·t itself when ⟨s, J·t⟩ on their signs s
reaches their count times the dtype's largest value (less that projection's bound), and are then
left out like an undefined output; otherwise they are judged (and fail).

**vjp2** (second order). With the case's cotangents g and a direction v of every differentiable
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
within the steps' reach of a kink or tie). A layer whose second derivative is zero almost
everywhere (ReLU, max pooling, copies, affine maps in one input) needs no statement: its
differences vanish identically — along v, on the absolute problem and along v∘s — and its
gradient stays the same one ``COARSE_STEP`` along v and v∘s (central differences vanish also for
a curvature below their resolution, or an even one: a layer norm of values far below √eps); then A
and ∂_v B are 0, ε is the coarse step's resolution (|H·v| below ~2^-46·|g|, as of log-softmax far
from its largest input: 0 where the gradient is 0), and the backend must return zeros within it
(``second_order: zero`` in the record). A
difference vanishing along v alone is an invariance of the layer, judged with the bound above.

**vmap**. ``BATCH`` cases of the declaration with the same shapes and different values (slice 0
the case, the others seeded permutations of its float inputs and cotangents:
``torch_call.vmap_slice``) stacked along a new dim (at 0, or after the last dim, by case) through
``torch.func.vmap`` over ``torch.func.functional_call``; parameters stacked per case, or shared
(unbatched) by case; forward only, or with ``torch.func.vjp`` inside (the slices' own
cotangents). Each slice is compared with its own case's reference by the declaration's own
tolerances and comparators (``vmap[b].<tensor>``). Where an element's absolute terms (the
declaration's absref) exceed the dtype's range, a partial sum may overflow in a batched kernel's
summation order although the exact sum is in range: a ±inf (of either sign: that of the terms
summed before the overflow) is accepted there, and NaN where the absolute terms exceed twice the
range (two accumulators overflowing with opposite signs) (``VmapMode.partial_sum_overflow``), and
only there. A parameter listed as ``shared`` that the call mutates is stacked all the same (each
slice updates its own copy), and each slice's reference reads its own permutation of it
(``VmapMode.slice_case``, as ``torch_call._run_vmap``). A stochastic case runs with
``randomness="different"`` or ``"same"`` (by case): each slice is judged by its conditional
reference given its reported choices, and under ``"same"`` the slices' choices must coincide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from backends.base import MODES, Case, Result
from backends.torch_call import direction_values, mode_values, vmap_slice
from conformance.compare import Comparison, compare_results, judged
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Pullback, Tolerance
from conformance.tolerance import REFERENCE_ROUNDOFF, _abs_case, bound_for, magnitudes
from reference.finite_differences import Directional, directional, rounding_error

__all__ = ["MODES", "Mode", "MODE_BY_NAME", "parse_modes", "mode_option", "mode_of", "applicable"]

PROJECTIONS = 3  # random cotangents of the projected jvp check
ELEMENTWISE = 64  # float output elements up to which the jvp check is also elementwise
BATCH = 3  # cases per vmap call
COMPOSITIONS = ("reverse-over-reverse", "forward-over-reverse", "reverse-over-forward")
FD_STEP = 2.0**-20  # central-difference step along v (v at the inputs' scale): exact steps, within ``smooth_at``
# An identically zero second derivative: the gradient is the same one step of this size along v.
COARSE_STEP = 2.0**-6
FD_SAFETY = 10.0  # the finite difference's error estimate enters the bound ten times over
_U64 = 2.0**-53


def parse_modes(text: str) -> tuple[str, ...]:
    """``--mode``: a comma-separated list of ``MODES`` or ``all``, in canonical order."""
    names = [m.strip() for m in str(text).split(",") if m.strip()]
    if not names:
        raise ValueError("--mode was given an empty list")
    if "all" in names:
        return MODES
    unknown = [m for m in names if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r} (known: {', '.join(MODES)}, all)")
    return tuple(m for m in MODES if m in names)


def mode_option(text: str) -> tuple[str, ...]:
    """``parse_modes`` as an argparse type (a bad value is a one-line usage error)."""
    import argparse

    try:
        return parse_modes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


# -- jvp --------------------------------------------------------------------------------------------

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


def _gradient_not_adjoint(case: Case) -> bool:
    """The case's documented gradient is not the transpose of its Jacobian, so the adjoint identity
    cannot judge J·t by it: Embedding's ``scale_grad_by_freq`` divides the weight's gradient by the
    index counts, and its ``padding_idx`` row gets none (also as a layer of a composed model)."""
    params = [case.params] + [layer.get("params", {}) for layer in case.params.get("layers", ())
                              if isinstance(layer, Mapping)]
    params = [p for p in params if isinstance(p, Mapping)]
    if any(bool(p.get("scale_grad_by_freq")) for p in params):
        return True
    # padding_idx: "the entries at padding_idx do not contribute to the gradient", while the forward
    # reads that row: J·t has t's row there, the gradient 0 (when some index names it).
    indices = [np.asarray(v) for n, v in case.inputs.items() if np.asarray(v).dtype.kind in "iu"]
    for p in params:
        pad = p.get("padding_idx")
        if pad is not None and "num_embeddings" in p:
            pad = int(pad) % int(p["num_embeddings"]) if int(p["num_embeddings"]) else int(pad)
            if any(np.any(i == pad) for i in indices):
                return True
    return False


class JvpMode(Mode):
    name = "jvp"
    needs_cotangents = False

    def accepts(self, spec: LayerSpec, case: Case) -> bool:
        if not super().accepts(spec, case) or _gradient_not_adjoint(case):
            return False
        try:
            return spec.adjoint_at is None or bool(spec.adjoint_at(case))
        except Exception:
            return False

    def prepare(self, spec: LayerSpec, case: Case, ref: Result) -> Case:
        return _with_mode(case, {"kind": "jvp", "seed": _seed(case), "tier": case.tier})

    def tangents(self, case: Case) -> dict[str, np.ndarray]:
        node = (case.call or {})["mode"]
        return {n: mode_values(node["seed"], "tangent." + n, case.inputs[n].shape, node["tier"],
                               case.layout(n).describe()) for n in _differentiable(case)}

    def judge(self, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None, got: Result) -> Judgement:
        return self.judge_readings(self._judge, spec, case, ref, pullback, got)

    def _judge(self, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None, got: Result) -> Judgement:
        comparisons = self.primal_comparisons(spec, case, ref, got, ("jvp.",))
        info: dict[str, Any] = {}
        compared: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # (Judgement.expected)
        if pullback is None:
            return Judgement(comparisons, {"note": "the reference has no pullback for this case"})
        node = case.call["mode"]  # type: ignore[index]
        dt = DTYPES[case.dtype]
        t = self.tangents(case)
        names = list(t)
        outputs = _float_outputs(ref)
        if not outputs:
            return Judgement(comparisons, {"note": "no float output"})
        jvps = {k: got.outputs.get(f"jvp.{k}") for k in outputs}
        missing = [k for k, v in jvps.items() if v is None or np.shape(v) != outputs[k].shape]
        for k in missing:
            comparisons.append(judged(f"jvp.{k}", case, outputs[k], jvps[k], np.zeros(outputs[k].shape)))
            compared[f"jvp.{k}"] = (outputs[k], np.zeros(outputs[k].shape), np.zeros(outputs[k].shape, dtype=bool))
        if missing:
            return Judgement(comparisons, info, compared)
        y = {k: np.asarray(v, dtype=np.float64) for k, v in jvps.items()}
        # Where the reference output is not finite (an empty max-pooling window's -inf, an overflow)
        # J·t is not defined: those elements are left out of every projection.
        defined = {k: np.isfinite(v) for k, v in outputs.items()}
        y_defined = {k: np.where(defined[k], y[k], 0.0) for k in outputs}
        bound = _GradientBound(spec, case, ref, names)
        k_out = max(spec.tolerance_for(k).reduction_length(case, k) for k in outputs)
        k_grad = {n: max(1, spec.tolerance_for(f"grad.{n}").reduction_length(case, f"grad.{n}")) for n in names}
        ratio = {n: math.sqrt(max(1.0, k_out / k_grad[n])) for n in names}

        def project(u: Mapping[str, np.ndarray]) -> tuple[float, float, float]:
            with np.errstate(all="ignore"):
                grads = spec.pull(pullback, case, u)
                grads = {n: np.asarray(grads.get(n, np.zeros(case.inputs[n].shape)), dtype=np.float64) for n in names}
                rhs_terms = [grads[n] * t[n] for n in names]
                lhs_terms = [u[k] * y_defined[k] for k in outputs]
                rhs = float(sum(np.sum(x) for x in rhs_terms))
                lhs = float(sum(np.sum(x) for x in lhs_terms))
                b = bound(u, grads)
                allowed = float(sum(np.sum(b[n] * np.abs(t[n])) * ratio[n] for n in names))
                count = sum(x.size for x in rhs_terms) + sum(x.size for x in lhs_terms)
                allowed += dt.unit_roundoff * float(sum(np.sum(np.abs(u[k] * y_defined[k])) for k in outputs))
                allowed += count * _U64 * float(sum(np.sum(np.abs(x)) for x in rhs_terms + lhs_terms))
            return lhs, rhs, allowed

        # Elements where the backend's J·t is ±inf: an overflow of J·t itself (|J·t| beyond the
        # dtype's range, the usual convention) when the projection on the signs of those elements,
        # ⟨s, J·t⟩ with s = sign(J·t) there and 0 elsewhere, reaches their count times the range
        # (less its bound): then they are left out like an undefined output; else they are judged.
        overflow = {k: defined[k] & np.isinf(y[k]) for k in outputs}
        count = sum(int(m.sum()) for m in overflow.values())
        if count:
            signs = {k: np.where(overflow[k], np.sign(y[k]), 0.0) for k in outputs}
            _, reach, slack = project(signs)
            if np.isfinite(reach) and reach >= count * dt.max_value * (1 - dt.unit_roundoff) - slack:
                defined = {k: defined[k] & ~overflow[k] for k in outputs}
                y_defined = {k: np.where(defined[k], y[k], 0.0) for k in outputs}
                info["jvp_overflow"] = count
        draws = [{k: np.where(defined[k], v, 0.0) for k, v in u.items()}
                 for u in _cotangent_draws(node["seed"], outputs, node["tier"], PROJECTIONS)]
        projected = [project(u) for u in draws]
        lhs, rhs, allowed = (np.array(v) for v in zip(*projected))
        usable = np.isfinite(rhs) & np.isfinite(allowed)
        # The projections are float64 sums, not values of the dtype: scaled by a power of two into
        # its range (exactly), so that the dtype's overflow convention does not apply to them.
        with np.errstate(all="ignore"):
            sizes = np.abs(np.concatenate([lhs, rhs, allowed]))
            top = float(np.max(sizes[np.isfinite(sizes)], initial=0.0))
        scale = 2.0 ** -math.ceil(math.log2(top)) if top > 1 else 1.0
        comparisons.append(judged("jvp.projection", case, np.where(usable, rhs, lhs) * scale, lhs * scale,
                                  np.where(usable, allowed, 0.0) * scale))
        compared["jvp.projection"] = (rhs * scale, allowed * scale, usable)
        projection = {f"u{i}.{k}": np.where(defined[k], u[k], np.nan) for i, u in enumerate(draws) for k in outputs}
        projection["scale"] = np.asarray(scale)
        total = sum(v.size for v in outputs.values())
        info["jvp"] = {"projections": int(usable.sum()), "elementwise": total <= ELEMENTWISE}
        if total <= ELEMENTWISE:
            for k, value in outputs.items():
                expected = np.zeros(value.shape)
                allowed_k = np.zeros(value.shape)
                for index in np.ndindex(value.shape):
                    if not defined[k][index]:
                        continue
                    u = {o: np.zeros(v.shape) for o, v in outputs.items()}
                    u[k][index] = 1.0
                    _, expected[index], allowed_k[index] = project(u)
                usable_k = np.isfinite(expected) & np.isfinite(allowed_k) & defined[k]
                comparisons.append(judged(f"jvp.{k}", case, np.where(usable_k, expected, y[k]), y[k],
                                          np.where(usable_k, allowed_k, 0.0), reduction_length=k_out,
                                          got_dtype=got.dtypes.get(f"jvp.{k}")))
                compared[f"jvp.{k}"] = (expected, allowed_k, usable_k)
        return Judgement(comparisons, info, compared, projection)


# -- vjp2 -------------------------------------------------------------------------------------------

class Vjp2Mode(Mode):
    name = "vjp2"

    def accepts(self, spec: LayerSpec, case: Case) -> bool:
        if not super().accepts(spec, case):
            return False
        try:
            return spec.smooth_at is None or bool(spec.smooth_at(case))
        except Exception:
            return False

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
                     cotangents: Mapping[str, np.ndarray], bounds: bool = False) -> dict[str, Directional]:
        """{d2.<input>, d2.cotangent.<output>: their derivatives along v}: of the pullback of
        ``cotangents`` and of the forward, by central differences (``FD_STEP``). With ``bounds``,
        also bound.<name>: the derivative along v of the declaration's first-order bound of the
        tensor differentiated (grad.<input>, <output>) in the case's dtype."""

        def at(shifted: Case) -> dict[str, np.ndarray]:
            result, grads = _reference_gradients(spec, shifted, v, cotangents)
            out = {f"d2.{n}": g for n, g in grads.items()}
            out.update({f"d2.cotangent.{k}": y for k, y in _float_outputs(result).items() if k in cotangents})
            if bounds:
                try:
                    model = replace(_float_model(shifted), cotangents=dict(cotangents))
                    first = Result(outputs=dict(result.outputs), grads=dict(grads), state=dict(result.state))
                    absref = magnitudes(spec, model, first)
                    for name in list(out):
                        tensor = (name[len("d2.cotangent."):] if name.startswith("d2.cotangent.")
                                  else f"grad.{name[len('d2.'):]}")
                        value = first.tensors().get(tensor)
                        if value is not None and tensor in absref:
                            out["bound." + name] = np.abs(bound_for(spec, model, tensor, np.asarray(value),
                                                                    absref[tensor]).allowed)
                except Exception:
                    pass
            return out

        with np.errstate(all="ignore"):
            return directional(lambda inputs: at(replace(case, inputs=inputs)), case.inputs, v, FD_STEP)

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
        estimates = self.second_order(spec, case, v, g, bounds=True)
        drift = {k[len("bound."):]: e.estimate for k, e in estimates.items() if k.startswith("bound.")}
        estimates = {k: e for k, e in estimates.items() if not k.startswith("bound.")}
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
        declared.update(self.through_gradients(spec, case, ref, pullback, v))
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
                # The first-order rounding differentiated: the backend's gradient is g + δ with |δ| <= B
                # (its bound); the second-order result is the derivative of the rounded computation, so
                # it carries δ's variation along v, of the size of B's own (|∂_v B|).
                tangent = np.abs(drift.get(name, np.zeros(r.shape)))
                tangent = np.where(np.isfinite(tangent), tangent, 0.0)
                if tangent.shape != r.shape:
                    tangent = np.full(r.shape, float(tangent.max()) if tangent.size else 0.0)
                # (kept where the differences vanish too: a first-order bound that varies along v says
                # the backend's gradient is computed from terms that do, whose rounding the second-order
                # result differentiates; a piecewise-linear layer's exact gradient has B = 0, and B
                # constant along v has no variation)
                extra = np.broadcast_to(declared.get(name, np.zeros(r.shape)), r.shape)
                allowed = (dt.unit_roundoff * (tol.out_ulps * np.abs(r) + c * math.sqrt(k) * a) + rho * a + tangent
                           + extra + FD_SAFETY * eps + REFERENCE_ROUNDOFF * np.abs(r) + k * dt.min_subnormal)
                usable = np.isfinite(r) & np.isfinite(allowed)
            value = got.outputs.get(name)
            if value is not None and np.shape(value) == r.shape:
                expected = np.where(usable, r, np.asarray(value, dtype=np.float64))
            else:
                expected = np.where(usable, r, 0.0)
            comparisons.append(judged(name, case, expected, value, np.where(usable, allowed, 0.0), reduction_length=k,
                                      got_dtype=got.dtypes.get(name)))
            compared[name] = (r, allowed, usable)
        info["second_order"] = "zero" if zero else "nonzero"
        return Judgement(comparisons, info, compared)


# -- vmap -------------------------------------------------------------------------------------------

# The masks a causal hint (``is_causal=True``) asserts to be causal, per hint argument. A vmap slice
# repeats them unpermuted: a permutation of a causal mask's values is no longer the mask the hint
# names, and torch may then apply its own triangle instead (documented: "providing incorrect hints
# can result in incorrect execution").
CAUSAL_HINTS = {"is_causal": ("attn_mask", "src_mask", "mask"), "src_is_causal": ("src_mask",),
                "tgt_is_causal": ("tgt_mask",), "memory_is_causal": ("memory_mask",)}


def causal_hinted_masks(case: Case) -> list[str]:
    """The inputs every vmap slice repeats unpermuted: the masks under a causal hint."""
    hints = {**case.params, **case.forward_kwargs}
    return sorted({m for hint, masks in CAUSAL_HINTS.items() if hints.get(hint) is True
                   for m in masks if m in case.inputs})


class VmapMode(Mode):
    name = "vmap"

    def applicable(self, spec: LayerSpec) -> tuple[bool, str]:
        # Declarations whose call computes no tensor: what they return is Python data that vmap
        # neither batches nor can derive from a batched value (it refuses .item()).
        if spec.kind == "gain":
            return False, (f"{spec.id} computes on Python numbers (its float input only carries them): "
                           "there is no tensor computation to batch")
        if spec.kind == "operations":
            return False, (f"{spec.id} observes a container's Python bookkeeping (lengths, keys, entries), "
                           "which vmap does not batch; the containers' tensor computations are judged "
                           "under vmap by their composed declarations")
        return True, ""

    def accepts(self, spec: LayerSpec, case: Case) -> bool:
        return not case.invalid and any(np.size(v) for v in _float_inputs(case).values())

    def prepare(self, spec: LayerSpec, case: Case, ref: Result) -> Case:
        seed = _seed(case)
        rng = np.random.default_rng([seed, 31])
        last = bool(rng.integers(2))
        parameters = set((case.call or {}).get("parameters", ()))
        node: dict[str, Any] = {
            "kind": "vmap", "seed": seed, "batch": BATCH, "out_dim": 0,
            "in_dim": {n: (np.ndim(v) if last else 0) for n, v in case.inputs.items()},
            "shared": sorted(n for n in parameters if n in case.inputs) if rng.integers(2) else [],
            "inner": "vjp" if case.cotangents and rng.integers(4) else "forward",
            # (a stochastic declaration's deterministic points too: orthogonal_ draws its normals even
            # for gain 0, which vmap's "error" refuses though the result is exact zeros)
            "randomness": (("different", "same")[int(rng.integers(2))] if spec.randomness is not None else "error"),
        }
        fixed = causal_hinted_masks(case)
        if fixed:  # (absent otherwise: no existing case's call tree changes)
            node["fixed"] = fixed
        return _with_mode(case, node)

    def slice_case(self, case: Case, b: int, got: Result | None = None) -> Case:
        """Slice b of a vmap case, as a case of its own (its values, cotangents, no mode; with
        ``got``, the random choices the backend reported for it, as a known entry's predicate reads
        them)."""
        node = (case.call or {})["mode"]
        # A shared parameter the call updates in place is stacked all the same (torch_call._run_vmap):
        # each slice renormalises its own copy, so the slice's value is its permutation.
        shared = set(node.get("shared", ())) - set((case.call or {}).get("mutated", ()))
        shared |= set(node.get("fixed", ()))  # a mask under a causal hint: every slice repeats it
        inputs = {n: (vmap_slice(node["seed"], b, n, v, case.layout(n).describe())
                      if case.input_type(n) == "float" and n not in shared else v) for n, v in case.inputs.items()}
        cots = ({k: vmap_slice(node["seed"], b, "cotangent." + k, v) for k, v in case.cotangents.items()}
                if node.get("inner") == "vjp" else {})
        call = {k: v for k, v in (case.call or {}).items() if k != "mode"}
        choices = ({n: np.asarray(v) for n, v in _split(got, f"vmap[{b}].").choices.items()}
                   if got is not None else {})
        return replace(case, inputs=inputs, cotangents=cots, call=call, mode="vjp", choices=choices)

    @staticmethod
    def partial_sum_overflow(spec: LayerSpec, case: Case, expected: Result, got: Result) -> Result:
        """The slice's reference, where a float result may legitimately be ±inf: an element whose
        absolute terms (absref, the declaration's own magnitude) exceed the dtype's range can have a
        partial sum out of range in some summation order (a batched kernel sums in its own), and so
        be ±inf although the exact sum is in range. Its sign is that of the terms summed before it
        overflowed, not the exact sum's: terms of either sign may reach the range on their own
        (their sum is at most absref), so either infinity is accepted where absref > max; and NaN
        where absref > 2·max, where terms of both signs may each reach it and two accumulators of a
        split reduction overflow with opposite signs (inf - inf). There the backend's value is
        taken as the expected value; anywhere else overflow is judged as usual."""
        top = DTYPES[case.dtype].max_value
        try:
            with np.errstate(all="ignore"):
                absref = magnitudes(spec, _float_model(case), expected)
        except Exception:
            return expected
        groups = {"grad.": expected.grads, "state.": expected.state}
        for name, a in absref.items():
            if name.startswith("random."):
                continue
            group = next((g for g in groups if name.startswith(g)), None)
            key = name[len(group):] if group else name
            target = groups[group] if group else expected.outputs
            value, backend = target.get(key), got.tensors().get(name)
            if value is None or backend is None or np.shape(backend) != np.shape(value) or \
                    np.asarray(value).dtype.kind != "f" or np.shape(a) != np.shape(value):
                continue
            r, y = np.asarray(value, dtype=np.float64), np.asarray(backend, dtype=np.float64)
            legit = np.isfinite(r) & (((a > top) & np.isinf(y)) | ((a > 2 * top) & np.isnan(y)))
            if legit.any():
                target[key] = np.where(legit, y, r)
        return expected

    def slices(self, spec: LayerSpec, case: Case, got: Result) -> list[tuple[int, Case, Result | str, Result]]:
        """Each slice b of a vmap case as the judge sees it: (b, the slice's own case with the
        backend's random choices, its reference (or why it has none: a message), the backend's
        results for it). The repro artifacts of a vmap case use the same references."""
        out: list[tuple[int, Case, Result | str, Result]] = []
        for b in range(int((case.call or {})["mode"]["batch"])):
            part = _split(got, f"vmap[{b}].")
            slice_case = self.slice_case(case, b)
            try:
                with np.errstate(all="ignore"):
                    if spec.is_random(slice_case):
                        slice_case = spec.randomness.with_choices(  # type: ignore[union-attr]
                            slice_case, {n: part.choices[n] for n in spec.randomness.choices})  # type: ignore[union-attr]
                    expected: Result | str = spec.evaluate(slice_case, slice_case.cotangents)
            except KeyError as exc:
                expected = f"random.{exc.args[0]}"
            except Exception as exc:  # a permuted slice outside the reference's domain: not judged
                expected = f"slice {b}: {type(exc).__name__}: {exc}"
            if not isinstance(expected, str):
                expected = self.partial_sum_overflow(spec, slice_case, expected, part)
            out.append((b, slice_case, expected, part))
        return out

    def judge(self, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None, got: Result) -> Judgement:
        node = case.call["mode"]  # type: ignore[index]
        comparisons: list[Comparison] = []
        info: dict[str, Any] = {"vmap": {k: node[k] for k in ("batch", "inner", "randomness")},
                                "batch_dim": "first" if not any(node["in_dim"].values()) else "last",
                                "shared_parameters": bool(node.get("shared"))}
        skipped = []
        slices = self.slices(spec, case, got)
        own: dict[int, set[str]] = {}  # each slice's tensors that pass with its own choices
        for b, slice_case, expected, part in slices:
            if isinstance(expected, str) and expected.startswith("random."):
                comparisons.append(Comparison(tensor=f"vmap[{b}].{expected}", ok=False, shape=[],
                                              message="the backend reported no random choice", symptoms=["shape"]))
                continue
            if isinstance(expected, str):
                skipped.append(expected)
                continue
            judged_b = compare_results(spec, slice_case, expected, part)
            own[b] = {c.tensor for c in judged_b if c.ok}
            comparisons += _renamed(judged_b, f"vmap[{b}].")
        if skipped:
            info["skipped"] = skipped
        if node.get("randomness") == "same":
            comparisons += self.same_draw(spec, slices, own)
        return Judgement(comparisons, info)

    @staticmethod
    def same_draw(spec: LayerSpec, slices: list[tuple[int, Case, Result | str, Result]],
                  own: Mapping[int, set[str]]) -> list[Comparison]:
        """randomness="same": every slice must make slice 0's random choices. Each other slice is
        judged by the conditional reference of its own inputs given slice 0's choices (its outputs,
        gradients and state, by the declaration's comparators and tolerances): its results must be
        what slice 0's draw gives there, wherever they are right for their own choices (a tensor
        failing already with them is reported as such, and says nothing about the draw). The
        reported choices are not compared bit for bit: some are read off values that depend on the
        slice's inputs (alpha dropout's mask is its output's values), or went through a computation
        that a batched kernel rounds slice by slice (orthogonal_'s draw is the QR factor of the
        normal draw); their structure is judged with each slice's own (``vmap[b].random.<name>``).
        One comparison ``vmap.same.<name>`` per choice."""
        judged_slices = [(b, c, p) for b, c, e, p in slices if not isinstance(e, str) and spec.is_random(c)]
        if len(judged_slices) < 2 or spec.randomness is None:
            return []
        first = judged_slices[0][1].choices
        failures: list[str] = []
        for b, slice_case, part in judged_slices[1:]:
            given = spec.randomness.with_choices(slice_case, first)
            try:
                with np.errstate(all="ignore"):
                    expected = spec.evaluate(given, given.cotangents)
                    expected = VmapMode.partial_sum_overflow(spec, given, expected, part)
                    expected.choices = {}
                    judged_b = compare_results(spec, given, expected, part)
            except Exception as exc:  # slice 0's choices do not fit this slice: they are not the same
                failures.append(f"slice {b}: slice 0's choices do not apply ({type(exc).__name__}: {exc})")
                continue
            failures += [f"vmap[{b}].{c.tensor}: {c.message}" for c in judged_b
                         if not c.ok and c.tensor in own.get(b, set()) and not c.tensor.startswith("random.")]
        message = ("randomness='same' drew different choices in different slices: a slice's results are not "
                   "those of slice 0's draw (" + "; ".join(failures[:3]) + ")") if failures else ""
        return [Comparison(tensor=f"vmap.same.{name}", ok=not failures, shape=[], exact_elements=1, message=message,
                           symptoms=["index"] if failures else []) for name in sorted(first)]


MODE_BY_NAME: dict[str, Mode] = {"jvp": JvpMode(), "vjp2": Vjp2Mode(), "vmap": VmapMode()}


def _reference_gradients(spec: LayerSpec, case: Case, names: Iterable[str],
                         cotangents: Mapping[str, np.ndarray]) -> tuple[Result, dict[str, np.ndarray]]:
    """The reference's result at ``case`` and its gradient of each of ``names`` for ``cotangents``, in
    float64 (zeros for an input the pullback leaves out)."""
    result, pull = spec.run_reference(case)
    grads = spec.pull(pull, case, cotangents)
    return result, {n: np.asarray(grads.get(n, np.zeros(case.inputs[n].shape)), dtype=np.float64) for n in names}


def mode_of(name: str) -> Mode:
    """The mode object of a non-vjp mode."""
    return MODE_BY_NAME[name]


def applicable(spec: LayerSpec, mode: str) -> tuple[bool, str]:
    """Whether ``mode`` applies to ``spec`` (vjp always does). A lazy module is its eager module
    once its first call has materialised it, and torch.func requires that call to happen outside
    any transform (materialising inside torch.func.grad, jvp or vjp crashes torch 2.13): what a
    derivative mode would see of it is the eager declaration's, judged there."""
    if mode == "vjp":
        return True, ""
    if spec.family == "lazy":
        return False, (f"{spec.id} is its eager module once materialised (its dry run runs outside the "
                       f"transform, as torch.func requires): {mode} is judged on the eager declaration")
    return MODE_BY_NAME[mode].applicable(spec)


Judge = Callable[[LayerSpec, Case, Result, "Pullback | None", Result], Judgement]


# -- known-entry predicates (``predicate = "conformance.modes:<name>"``) ------------------------------

def reverse_over_forward(case: Case) -> bool:
    """The vjp2 case differentiates the backend's forward-mode rule in reverse (``torch.func.grad``
    of ``torch.func.jvp``), the composition that sees a JVP rule which is wrong to second order."""
    return ((case.call or {}).get("mode") or {}).get("composition") == "reverse-over-forward"


def input_has_zero(case: Case) -> bool:
    """Some element of the float ``input`` is ±0 (a kink of PReLU and its kin)."""
    x = case.inputs.get("input")
    return x is not None and np.asarray(x).dtype.kind == "f" and bool(np.any(np.asarray(x) == 0))


def reverse_over_forward_with_batch_statistics(case: Case) -> bool:
    """``reverse_over_forward`` for a batch norm that normalises with the batch's statistics
    (training, or no running statistics tracked): the part of its JVP rule that is wrong to second
    order (the statistics' own derivative); with running statistics the map is affine."""
    return reverse_over_forward(case) and (case.train or not case.params.get("track_running_stats", True))
