"""**jvp** (forward mode). The backend returns J·t for a tangent t of every differentiable input,
parameters included (``torch_run.mode_values``). J·t is judged through the VJP by the adjoint
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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from backends.base import Case, Result
from backends.torch_run import mode_values
from conformance.compare import judged
from conformance.dtypes import DTYPES
from conformance.modes.base import (
    _U64,
    ELEMENTWISE,
    PROJECTIONS,
    Judgement,
    Mode,
    _cotangent_draws,
    _differentiable,
    _float_outputs,
    _GradientBound,
    _seed,
    _with_mode,
)
from conformance.spec import LayerSpec, Pullback


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
