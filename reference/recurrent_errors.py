"""A first-order running error analysis of the recurrent layers, carried through the reference's
own computation (``reference.recurrent``) step by step, for the forward outputs and for the
backward through time.

``Tracked`` is an arithmetic on ``Bounded`` values: an exact value v (float64) and a bound E, in
units of the unit roundoff u of the format under test, on the error of that quantity as any
correct implementation in that format computes it: |computed - v| <= u·E to first order in u.
Inputs, weights and cotangents are exact (E = 0). Each elementary operation adds the rounding of
its result to the first-order propagation of its operands' bounds:

- a ± b: E_a + E_b + |a ± b|;  a·b: |b|·E_a + |a|·E_b + |a·b| + η;  1 - a: E_a + |1 - a|;
- σ(a): σ'(a)·E_a + ρ·σ(a) + η, with σ' = σ(1 - σ) <= 1/4;  tanh(a): (1 - tanh²a)·E_a + ρ·|tanh a| + η;
- relu(a): E_a where a > -κ·u·E_a, else 0 (relu is 1-Lipschitz); relu'(a)·g: the whole |g|/u
  where the sign of the computed a is not certain, |a| <= κ·u·E_a, κ = 4: at a kink the first
  order says nothing, so the decision keeps a margin over the bound itself;
- sums of K products (x W^T + b, dh W_hh, Σ over time and batch of a weight's gradient): the
  rounding γ_K·Σ|a_k|·|b_k| + K·η, γ_K = 2√K (the probabilistic bound of a sum of K rounded
  terms, Higham & Mary 2019, the rule of the rest of nnconform), plus the operands' errors
  combined in quadrature over the summation index, √(Σ (E_a·b)² + (a·E_b)²): under the same
  model, the errors of distinct components (rounded at distinct places) are independent. (Summing
  them linearly, |W|·E, is a worst case that grows like (‖|W|‖/‖W‖)^steps through time and layers:
  1000 times the observed error of a 3-layer bidirectional stack's input gradient.)

ρ = 3 covers a transcendental function's own error (a few ulps in the working precision, one
rounding into the format) and η = tiny/u the absolute error of a result in the subnormal range.
Every propagated term is first order: derivatives are taken at the exact values. The weights'
gradients sum over time and batch with their own running bounds; the recurrence's errors enter
through W_hh (in quadrature), the gates' derivatives (σ' <= 1/4, tanh' <= 1) and the cell state's
f ⊙ E_c, accumulated through the steps and layers exactly as the values are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import recurrent as ref

RHO = 3.0  # error of sigmoid / tanh, in units of u
KINK_MARGIN = 4.0  # κ: a relu input within κ·u·E_a of 0 may be computed with either sign


def gamma(k: int) -> float:
    """γ_K in units of u: the rounding of a sum of K products."""
    return 2.0 * math.sqrt(max(int(k), 1))


@dataclass
class Bounded:
    """An exact value ``v`` and the bound ``e`` (units of u) on the error of its computed value."""

    v: np.ndarray
    e: np.ndarray


def _abs(a: Bounded) -> np.ndarray:
    return np.abs(a.v)


def _propagated(ea: np.ndarray, b: np.ndarray, a: np.ndarray, eb: np.ndarray) -> np.ndarray:
    """The operands' errors through a @ b, in quadrature over the summation index:
    √((E_a)² @ b² + a² @ (E_b)²)."""
    return np.sqrt(ea**2 @ b**2 + a**2 @ eb**2)


class Tracked:
    """The arithmetic of ``Bounded`` values for unit roundoff ``u`` and smallest subnormal ``tiny``
    (same methods as ``reference.recurrent.Exact``)."""

    def __init__(self, u: float, tiny: float):
        self.u = u
        self.eta = tiny / u

    def const(self, a: np.ndarray) -> Bounded:
        a = np.asarray(a, dtype=np.float64)
        return Bounded(a, np.zeros_like(a))

    def apply(self, fn: Callable[[np.ndarray], np.ndarray], a: Bounded) -> Bounded:
        return Bounded(fn(a.v), fn(a.e))

    def shape(self, a: Bounded) -> tuple[int, ...]:
        return a.v.shape

    def zeros(self, shape: tuple[int, ...]) -> Bounded:
        return Bounded(np.zeros(shape), np.zeros(shape))

    def _sum_of_products(self, v: np.ndarray, abs_products: np.ndarray, propagated: np.ndarray, k: int) -> Bounded:
        return Bounded(v, gamma(k) * abs_products + k * self.eta + propagated)

    def affine(self, x: Bounded, w: Bounded, b: Bounded | None = None) -> Bounded:
        k = w.v.shape[1] + (b is not None)
        v = x.v @ w.v.T
        mags = _abs(x) @ _abs(w).T
        prop = _propagated(x.e, w.v.T, x.v, w.e.T)
        if b is not None:
            v, mags, prop = v + b.v, mags + _abs(b), prop + b.e
        return self._sum_of_products(v, mags, prop, k)

    def mm(self, a: Bounded, b: Bounded) -> Bounded:
        return self._sum_of_products(a.v @ b.v, _abs(a) @ _abs(b), _propagated(a.e, b.v, a.v, b.e), b.v.shape[0])

    def outer_sum(self, a: Bounded, b: Bounded) -> Bounded:
        def rows(x: np.ndarray) -> np.ndarray:
            return x.reshape(-1, x.shape[-1])

        av, ae, bv, be = rows(a.v), rows(a.e), rows(b.v), rows(b.e)
        return self._sum_of_products(av.T @ bv, np.abs(av).T @ np.abs(bv), _propagated(ae.T, bv, av.T, be),
                                     av.shape[0])

    def sum_rows(self, a: Bounded) -> Bounded:
        v, e = a.v.reshape(-1, a.v.shape[-1]), a.e.reshape(-1, a.e.shape[-1])
        return Bounded(v.sum(axis=0), gamma(v.shape[0]) * np.abs(v).sum(axis=0) + np.sqrt((e**2).sum(axis=0)))

    def add(self, a: Bounded, b: Bounded) -> Bounded:
        v = a.v + b.v
        return Bounded(v, a.e + b.e + np.abs(v))

    def sub(self, a: Bounded, b: Bounded) -> Bounded:
        v = a.v - b.v
        return Bounded(v, a.e + b.e + np.abs(v))

    def mul(self, a: Bounded, b: Bounded) -> Bounded:
        v = a.v * b.v
        return Bounded(v, _abs(b) * a.e + _abs(a) * b.e + np.abs(v) + self.eta)

    def one_minus(self, a: Bounded) -> Bounded:
        v = 1.0 - a.v
        return Bounded(v, a.e + np.abs(v))

    def sigmoid(self, a: Bounded) -> Bounded:
        s = ref.sigmoid(a.v)
        return Bounded(s, s * (1.0 - s) * a.e + RHO * s + self.eta)

    def tanh(self, a: Bounded) -> Bounded:
        t = np.tanh(a.v)
        return Bounded(t, (1.0 - t * t) * a.e + RHO * np.abs(t) + self.eta)

    def relu(self, a: Bounded) -> Bounded:
        return Bounded(np.maximum(a.v, 0.0), np.where(a.v > -KINK_MARGIN * self.u * a.e, a.e, 0.0))

    def relu_grad(self, g: Bounded, a: Bounded) -> Bounded:
        unsure = np.abs(a.v) <= KINK_MARGIN * self.u * a.e
        v = np.where(a.v > 0, g.v, 0.0)
        return Bounded(v, np.where(unsure, np.abs(g.v) / self.u + g.e, np.where(a.v > 0, g.e, 0.0)))

    def where(self, mask: np.ndarray, a: Bounded, b: Bounded) -> Bounded:
        return Bounded(np.where(mask, a.v, b.v), np.where(mask, a.e, b.e))

    def split(self, a: Bounded, n: int) -> list[Bounded]:
        return [Bounded(v, e) for v, e in zip(np.split(a.v, n, axis=-1), np.split(a.e, n, axis=-1))]

    def cat(self, parts: list[Bounded]) -> Bounded:
        if len(parts) == 1:
            return parts[0]
        return Bounded(np.concatenate([p.v for p in parts], axis=-1), np.concatenate([p.e for p in parts], axis=-1))

    def stack(self, parts: list[Bounded]) -> Bounded:
        return Bounded(np.stack([p.v for p in parts]), np.stack([p.e for p in parts]))

    def take(self, a: Bounded, index: Any) -> Bounded:
        return Bounded(a.v[index], a.e[index])


def error_bounds(cfg: ref.RNNConfig, form: ref.Form, inputs: dict[str, np.ndarray],
                 cotangents: dict[str, np.ndarray] | None, u: float, tiny: float) -> dict[str, np.ndarray]:
    """E (units of u) for every output and gradient (when ``cotangents`` are given) of
    ``reference.recurrent.run``, by qualified name (``output``, ``h_n``, ``c_n``, ``grad.<input>``)."""
    cotangent = None if cotangents is None else (lambda name, _: cotangents[name])
    outputs, grads = ref.run(Tracked(u, tiny), cfg, form, inputs, cotangent)
    out = {name: b.e for name, b in outputs.items()}
    out.update({f"grad.{name}": b.e for name, b in grads.items()})
    return out
