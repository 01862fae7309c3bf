"""A first-order running error analysis of the recurrent layers, carried through the reference's
own computation (``reference.recurrent``) step by step, for the forward outputs and for the
backward through time.

``Tracked`` is an arithmetic on ``Bounded`` values: an exact value v (float64) and a bound E, in
units of the unit roundoff u of the format under test, on the error of that quantity as any
correct implementation in that format computes it: |computed - v| <= u·E (to first order in u;
products and the gates' derivatives carry their second-order terms too, which matter where an
error is as large as its value). Inputs, weights and cotangents are exact (E = 0). Each
elementary operation adds the rounding of its result to the propagation of its operands' bounds:

- a ± b: E_a + E_b + |a ± b|;  a·b: |b|·E_a + |a|·E_b + u·E_a·E_b + |a·b| + η;  1 - a: E_a + |1 - a|;
- σ(a): max σ'·E_a + ρ·σ(a) + ν, tanh(a): max tanh'·E_a + ρ·|tanh a| + ν, the derivative's maximum
  over a ± u·E_a (σ' = σ(1 - σ) <= 1/4, tanh' = 1 - tanh² <= 1; at the exact a when E_a is small),
  and never more than the functions' ranges (1/u, 2/u: where an error is as large as the values,
  in bfloat16 over long sequences, the bound says "anything in range" instead of growing on);
- relu(a): E_a where a > -κ·u·E_a, else 0 (relu is 1-Lipschitz); relu'(a)·g: the whole |g|/u
  where the sign of the computed a is not certain, |a| <= κ·u·E_a, κ = 4: at a kink the first
  order says nothing, so the decision keeps a margin over the bound itself. Such a decision error
  is not a rounding error: it is carried apart and always summed linearly;
- sums of K products: the rounding γ_K·Σ|a_k|·|b_k| + K·η, γ_K = 2√K (the probabilistic bound of
  a sum of K rounded terms, Higham & Mary 2019, the rule of the rest of nnconform), plus the
  operands' errors:
  - over a feature index (x W^T + b, dh W_hh, dh W_hr): in quadrature, √(Σ (E_a·b)² + (a·E_b)²),
    the errors of distinct components being independent under the same model and mixed by
    weights of either sign. (Summed linearly, |W|·E, the bound grows like (‖|W|‖/‖W‖)^steps through
    time and layers: 1000 times the observed error of a 3-layer bidirectional stack's input
    gradient.)
  - over time and batch (a weight's gradient Σ_t,b da ⊗ x, a bias's Σ da): linearly, Σ E_a·|b| +
    |a|·E_b: the same gate function errs the same way step after step (torch's float32 sigmoid
    is off by up to 2.3 ulps with a steady sign near saturation; in quadrature, a GRU's weight
    gradient over 16 steps came out 3 times too small).

ρ = 3 covers a transcendental function's own error (a few ulps in the working precision, one
rounding into the format) and η = tiny/u the absolute error of a result in the subnormal range; a
transcendental result below the normal range may also be flushed to zero (torch's float32 sigmoid
returns 0 below -88.72, where the exact value is subnormal: exp(-x) overflows), an allowance of
the smallest normal number, as the activations' tolerance has.
The weights' gradients sum over time and batch with their own running bounds; the recurrence's errors enter
through W_hh (in quadrature), the gates' derivatives (σ' <= 1/4, tanh' <= 1) and the cell state's
f ⊙ E_c, accumulated through the steps and layers exactly as the values are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import libm
from reference import recurrent as ref

RHO = 3.0  # error of sigmoid / tanh, in units of u
KINK_MARGIN = 4.0  # κ: a relu input within κ·u·E_a of 0 may be computed with either sign


def gamma(k: int) -> float:
    """γ_K in units of u: the rounding of a sum of K products."""
    return 2.0 * math.sqrt(max(int(k), 1))


@dataclass
class Bounded:
    """An exact value ``v`` and bounds (units of u) on the error of its computed value: ``e`` from
    roundings (combined in quadrature over a feature index) and ``k`` from relu decisions that may
    go the other way (always combined linearly). The bound is their sum."""

    v: np.ndarray
    e: np.ndarray
    k: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.e + self.k


def _toward_zero(a: Bounded, u: float) -> np.ndarray:
    """The point of [a - u·E_a, a + u·E_a] nearest to 0 (where σ' and tanh' are largest)."""
    return np.sign(a.v) * np.maximum(np.abs(a.v) - u * a.total, 0.0)


def _quadrature(e: np.ndarray, b: np.ndarray) -> np.ndarray:
    """√(Σ_k (e_k·b_k)²) for every output of the contraction e @ b, e (..., K) and b (K, N) both
    non-negative, as a matrix product of squares scaled by each row's and column's largest entry
    (squares of a gradient of 1e-180 would underflow; only terms below 1e-150 of their row's and
    column's largest are lost)."""
    row = e.max(axis=-1, keepdims=True, initial=0.0)
    col = b.max(axis=0, keepdims=True, initial=0.0)
    row_s, col_s = np.where(row > 0, row, 1.0), np.where(col > 0, col, 1.0)
    return row_s * col_s * np.sqrt((e / row_s) ** 2 @ (b / col_s) ** 2)


class Tracked:
    """The arithmetic of ``Bounded`` values for a format of unit roundoff ``u``, smallest subnormal
    ``tiny`` and smallest normal number ``normal`` (same methods as ``reference.recurrent.Exact``)."""

    def __init__(self, u: float, tiny: float, normal: float):
        self.u = u
        self.eta = tiny / u
        self.flush = normal / u

    def const(self, a: np.ndarray) -> Bounded:
        a = np.asarray(a, dtype=np.float64)
        return Bounded(a, np.zeros_like(a), np.zeros_like(a))

    def apply(self, fn: Callable[[np.ndarray], np.ndarray], a: Bounded) -> Bounded:
        return Bounded(fn(a.v), fn(a.e), fn(a.k))

    def shape(self, a: Bounded) -> tuple[int, ...]:
        return a.v.shape

    def zeros(self, shape: tuple[int, ...]) -> Bounded:
        return self.const(np.zeros(shape))

    def _contract(self, a: Bounded, bv: np.ndarray, be: np.ndarray, bk: np.ndarray, rows: int | None) -> Bounded:
        """a @ b with b given as (value, e, k) of shape (K, N); ``rows`` None: a feature contraction
        (quadrature), else a sum over time and batch of that many rows (linear)."""
        k_terms = bv.shape[0]
        v = a.v @ bv
        rounding = gamma(k_terms) * (np.abs(a.v) @ np.abs(bv)) + k_terms * self.eta
        if rows is None:
            e = _quadrature(a.e, np.abs(bv))
            if be.any():
                e = np.hypot(e, _quadrature(np.abs(a.v), be))
        else:
            e = a.e @ np.abs(bv) + np.abs(a.v) @ be
        k = np.zeros(v.shape)
        if a.k.any():
            k = k + a.k @ np.abs(bv)
        if bk.any():
            k = k + np.abs(a.v) @ bk
        if be.any() or bk.any():  # (weights are exact: no second-order term)
            k = k + self.u * (a.total @ (be + bk))
        return Bounded(v, rounding + e, k)

    def affine(self, x: Bounded, w: Bounded, b: Bounded | None = None) -> Bounded:
        """x W^T (+ b): one sum of in_features (+ 1) products (the bias times a 1)."""
        if b is not None:
            x = self.cat([x, self.const(np.ones(x.v.shape[:-1] + (1,)))])
            w = self.cat([w, self.apply(lambda a: a[:, None], b)])
        return self._contract(x, w.v.T, w.e.T, w.k.T, None)

    def mm(self, a: Bounded, b: Bounded) -> Bounded:
        return self._contract(a, b.v, b.e, b.k, None)

    def outer_sum(self, a: Bounded, b: Bounded) -> Bounded:
        def rows(x: np.ndarray) -> np.ndarray:
            return x.reshape(-1, x.shape[-1])

        at = Bounded(rows(a.v).T, rows(a.e).T, rows(a.k).T)
        return self._contract(at, rows(b.v), rows(b.e), rows(b.k), rows(b.v).shape[0])

    def sum_rows(self, a: Bounded) -> Bounded:
        v, e, k = (x.reshape(-1, x.shape[-1]) for x in (a.v, a.e, a.k))
        return Bounded(v.sum(axis=0), gamma(v.shape[0]) * np.abs(v).sum(axis=0) + e.sum(axis=0), k.sum(axis=0))

    def add(self, a: Bounded, b: Bounded) -> Bounded:
        v = a.v + b.v
        return Bounded(v, a.e + b.e + np.abs(v), a.k + b.k)

    def sub(self, a: Bounded, b: Bounded) -> Bounded:
        v = a.v - b.v
        return Bounded(v, a.e + b.e + np.abs(v), a.k + b.k)

    def mul(self, a: Bounded, b: Bounded) -> Bounded:
        v = a.v * b.v
        e = np.abs(b.v) * a.e + np.abs(a.v) * b.e + np.abs(v) + self.eta
        return Bounded(v, e, np.abs(b.v) * a.k + np.abs(a.v) * b.k + self.u * a.total * b.total)

    def one_minus(self, a: Bounded) -> Bounded:
        v = 1.0 - a.v
        return Bounded(v, a.e + np.abs(v), a.k)

    def _smooth(self, value: np.ndarray, slope: np.ndarray, a: Bounded, cap: float) -> Bounded:
        e = np.minimum(slope * a.e + RHO * np.abs(value) + self.flush, cap / self.u)
        return Bounded(value, e, np.minimum(slope * a.k, cap / self.u))

    def sigmoid(self, a: Bounded) -> Bounded:
        steepest = libm.sigmoid(_toward_zero(a, self.u))
        return self._smooth(libm.sigmoid(a.v), steepest * (1.0 - steepest), a, 1.0)

    def tanh(self, a: Bounded) -> Bounded:
        steepest = np.tanh(_toward_zero(a, self.u))
        return self._smooth(np.tanh(a.v), 1.0 - steepest * steepest, a, 2.0)

    def relu(self, a: Bounded) -> Bounded:
        live = a.v > -KINK_MARGIN * self.u * a.total
        return Bounded(np.maximum(a.v, 0.0), np.where(live, a.e, 0.0), np.where(live, a.k, 0.0))

    def relu_grad(self, g: Bounded, a: Bounded) -> Bounded:
        unsure = np.abs(a.v) <= KINK_MARGIN * self.u * a.total
        live = a.v > 0
        v = np.where(live, g.v, 0.0)
        e = np.where(unsure | live, g.e, 0.0)
        k = np.where(unsure, np.abs(g.v) / self.u + g.k, np.where(live, g.k, 0.0))
        return Bounded(v, e, k)

    def where(self, mask: np.ndarray, a: Bounded, b: Bounded) -> Bounded:
        return Bounded(np.where(mask, a.v, b.v), np.where(mask, a.e, b.e), np.where(mask, a.k, b.k))

    def split(self, a: Bounded, n: int) -> list[Bounded]:
        parts = (np.split(x, n, axis=-1) for x in (a.v, a.e, a.k))
        return [Bounded(v, e, k) for v, e, k in zip(*parts)]

    def cat(self, parts: list[Bounded]) -> Bounded:
        if len(parts) == 1:
            return parts[0]
        return Bounded(*(np.concatenate([getattr(p, f) for p in parts], axis=-1) for f in ("v", "e", "k")))

    def stack(self, parts: list[Bounded]) -> Bounded:
        return Bounded(*(np.stack([getattr(p, f) for p in parts]) for f in ("v", "e", "k")))

    def take(self, a: Bounded, index: Any) -> Bounded:
        return Bounded(a.v[index], a.e[index], a.k[index])


def _totals(outputs: dict[str, Bounded], pullback: Any, cotangents: dict[str, np.ndarray] | None) \
        -> dict[str, np.ndarray]:
    out = {name: np.asarray(b.total) for name, b in outputs.items()}
    if cotangents is not None:
        out.update({f"grad.{name}": np.asarray(b.total) for name, b in pullback(cotangents).items()})
    return out


def error_bounds(cfg: ref.RNNConfig, form: ref.Form, inputs: dict[str, np.ndarray],
                 cotangents: dict[str, np.ndarray] | None, u: float, tiny: float,
                 normal: float) -> dict[str, np.ndarray]:
    """E (units of u) for every output and gradient (when ``cotangents`` are given) of
    ``reference.recurrent.module_call``, by qualified name (``output``, ``h_n``, ``c_n``,
    ``grad.<input>``)."""
    return _totals(*ref.module_call(Tracked(u, tiny, normal), cfg, form, inputs), cotangents)


def cell_error_bounds(mode: str, inputs: dict[str, np.ndarray], cotangents: dict[str, np.ndarray] | None, u: float,
                      tiny: float, normal: float) -> dict[str, np.ndarray]:
    """E (units of u) for h, c and every gradient of ``reference.recurrent.cell_module_call``."""
    return _totals(*ref.cell_module_call(Tracked(u, tiny, normal), mode, inputs), cotangents)
