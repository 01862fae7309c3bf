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

``DualTracked`` carries the same analysis along a direction of the inputs (the vjp2 mode's second
order, ``conformance.numerics.recurrent.*_second_order_error``): every quantity also has its exact
tangent and a bound Ė on the error of the tangent a format computes by differentiating its own
rounded computation. Its rules are the derivatives of the rules above plus the rounding of the
tangent's own operations; what they add beyond the value's bound is the gates' derivatives formed
from rounded outputs (σ' = ŷ(1 - ŷ), tanh' = 1 - ŷ²), off by |ȧ|·|1 - 2y|·u·E_y and |ȧ|·2|y|·u·E_y:
near saturation a relative error u·E_y/(1 - y) of every second-order term.
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
    ``tiny`` and smallest normal number ``normal`` (same methods as ``reference.recurrent_core.Exact``)."""

    def __init__(self, u: float, tiny: float, normal: float):
        self.u = u
        self.eta = tiny / u
        self.flush = normal / u

    def const(self, a: np.ndarray) -> Bounded:
        a = np.asarray(a, dtype=np.float64)
        return Bounded(a, np.zeros_like(a), np.zeros_like(a))

    def leaf(self, name: str, a: np.ndarray) -> Bounded:
        return self.const(a)

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


def error_analysis(cfg: ref.RNNConfig, form: ref.Form, inputs: dict[str, np.ndarray], u: float, tiny: float,
                   normal: float) -> Callable[[dict[str, np.ndarray] | None], dict[str, np.ndarray]]:
    """The forward error analysis of ``reference.recurrent.module_call`` run once: a function of the
    cotangents (or None) giving E (units of u) for every output and gradient by qualified name
    (``output``, ``h_n``, ``c_n``, ``grad.<input>``). The pullback it keeps is pure, so one forward
    analysis serves any number of cotangents (the jvp mode's basis projections)."""
    outputs, pullback = ref.module_call(Tracked(u, tiny, normal), cfg, form, inputs)
    return lambda cotangents: _totals(outputs, pullback, cotangents)


def error_bounds(cfg: ref.RNNConfig, form: ref.Form, inputs: dict[str, np.ndarray],
                 cotangents: dict[str, np.ndarray] | None, u: float, tiny: float,
                 normal: float) -> dict[str, np.ndarray]:
    """E (units of u) for every output and gradient (when ``cotangents`` are given) of
    ``reference.recurrent.module_call``, by qualified name (``output``, ``h_n``, ``c_n``,
    ``grad.<input>``)."""
    return error_analysis(cfg, form, inputs, u, tiny, normal)(cotangents)


def cell_error_analysis(mode: str, inputs: dict[str, np.ndarray], u: float, tiny: float,
                        normal: float) -> Callable[[dict[str, np.ndarray] | None], dict[str, np.ndarray]]:
    """``error_analysis`` of ``reference.recurrent.cell_module_call`` (h, c and every gradient)."""
    outputs, pullback = ref.cell_module_call(Tracked(u, tiny, normal), mode, inputs)
    return lambda cotangents: _totals(outputs, pullback, cotangents)


def cell_error_bounds(mode: str, inputs: dict[str, np.ndarray], cotangents: dict[str, np.ndarray] | None, u: float,
                      tiny: float, normal: float) -> dict[str, np.ndarray]:
    """E (units of u) for h, c and every gradient of ``reference.recurrent.cell_module_call``."""
    return cell_error_analysis(mode, inputs, u, tiny, normal)(cotangents)


# -- the same analysis carried along a direction (the vjp2 mode's second order) ----------------------

FIELDS = ("v", "e", "k", "t", "te", "tk")


@dataclass
class Dual(Bounded):
    """A ``Bounded`` value with its tangent along a direction of the inputs: ``t`` the exact
    tangent, ``te`` and ``tk`` bounds (units of u) on the error of the tangent as the format
    computes it by differentiating its own rounded computation (forward mode, or the double
    backward: the same terms), by the same two kinds as the value's."""

    t: np.ndarray
    te: np.ndarray
    tk: np.ndarray

    @property
    def ttotal(self) -> np.ndarray:
        return self.te + self.tk


def _quad_sum(*terms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """√(Σ over the pairs of ``_quadrature(e, b)²``): independent error sources of one contraction."""
    total = None
    for e, b in terms:
        if not (e.any() and b.any()):
            continue
        q = _quadrature(e, b)
        total = q if total is None else np.hypot(total, q)
    return total


class DualTracked:
    """``Tracked`` carried along a direction (``tangents``: the direction of each named input,
    ``leaf``; everything else, cotangents included, has tangent 0): the forward-mode derivative of
    the running error analysis. Each rule is the derivative of ``Tracked``'s value rule plus the
    rounding of the tangent's own operations:

    - a ± b: ṫ = ȧ ± ḃ, Ė = Ė_a + Ė_b + |ȧ ± ḃ|;
    - a·b: ṫ = ȧb + aḃ, Ė = |b|Ė_a + |ȧ|E_b + |a|Ė_b + |ḃ|E_a + |ȧb| + |aḃ| + |ṫ| (+ u·(Ė_a E_b +
      E_a Ė_b), second order); 1 - a: -ȧ, exact;
    - y = σ(a): ẏ = ȧ·ŷ(1 - ŷ), formed from the rounded output ŷ (torch's sigmoid_backward, and the
      reference's own ``_dsigmoid``): Ė = max σ'·Ė_a + |ȧ|·(|1 - 2y|·E_y + u·E_y²) + 3|ẏ|, where the
      |ȧ|·|1 - 2y|·E_y term is the error of 1 - ŷ near saturation: absolute u·E_y, so relative
      u·E_y/(1 - y) of ẏ; y = tanh(a): ẏ = ȧ·(1 - ŷ²): Ė = max tanh'·Ė_a + |ȧ|·(2|y|·E_y + u·E_y² +
      y²) + 2|ẏ| (y² the rounding of ŷ², absolute next to 1 - y²). Never more than |ẏ| + |ȧ|/4
      (σ: ŷ(1 - ŷ) <= 1/4 for every ŷ in [0, 1]) or |ẏ| + |ȧ| (tanh) over u, plus Ė_a's share;
    - relu: ẏ = ȧ where a > 0; where the sign of the computed a is not certain the tangent may be
      ȧ or 0: |ȧ|/u, a decision error (k); relu'(a)·g likewise with ġ;
    - contractions: ṫ = ȧ b + a ḃ, two sums of K products added: γ_K·(|ȧ||b| + |a||ḃ|) + |ṫ|, and
      the four propagated terms (Ė_a·|b|, |ȧ|·E_b, |a|·Ė_b, E_a·|ḃ|) combined as ``Tracked``
      combines the value's (in quadrature over a feature index, linearly over time and batch).
    """

    def __init__(self, u: float, tiny: float, normal: float, tangents: dict[str, np.ndarray]):
        self.u = u
        self.eta = tiny / u
        self.flush = normal / u
        self.tangents = tangents

    def _make(self, v: np.ndarray, t: np.ndarray | None = None) -> Dual:
        v = np.asarray(v, dtype=np.float64)
        z = np.zeros_like(v)
        return Dual(v, z, z.copy(), z.copy() if t is None else np.asarray(t, dtype=np.float64), z.copy(), z.copy())

    def const(self, a: np.ndarray) -> Dual:
        return self._make(a)

    def leaf(self, name: str, a: np.ndarray) -> Dual:
        t = self.tangents.get(name)
        return self._make(a, None if t is None else np.broadcast_to(t, np.shape(a)))

    def apply(self, fn: Callable[[np.ndarray], np.ndarray], a: Dual) -> Dual:
        return Dual(*(fn(getattr(a, f)) for f in FIELDS))

    def shape(self, a: Dual) -> tuple[int, ...]:
        return a.v.shape

    def zeros(self, shape: tuple[int, ...]) -> Dual:
        return self._make(np.zeros(shape))

    def _contract(self, a: Dual, b: Dual, rows: int | None) -> Dual:
        """a @ b, b (K, N); ``rows`` None: a feature contraction (quadrature), else a sum over time
        and batch of that many rows (linear)."""
        k_terms = b.v.shape[0]
        abs_av, abs_bv, abs_at, abs_bt = np.abs(a.v), np.abs(b.v), np.abs(a.t), np.abs(b.t)
        v = a.v @ b.v
        t = a.t @ b.v + a.v @ b.t
        rounding = gamma(k_terms) * (abs_av @ abs_bv) + k_terms * self.eta
        t_rounding = gamma(k_terms) * (abs_at @ abs_bv + abs_av @ abs_bt) + np.abs(t) + 2 * k_terms * self.eta
        if rows is None:
            e = _quad_sum((a.e, abs_bv), (abs_av, b.e))
            te = _quad_sum((a.te, abs_bv), (abs_at, b.e), (abs_av, b.te), (a.e, abs_bt))
        else:
            e = a.e @ abs_bv + abs_av @ b.e
            te = a.te @ abs_bv + abs_at @ b.e + abs_av @ b.te + a.e @ abs_bt
        e = rounding if e is None else rounding + e
        te = t_rounding if te is None else t_rounding + te
        k = a.k @ abs_bv + abs_av @ b.k + self.u * (a.total @ b.total)
        tk = (a.tk @ abs_bv + abs_at @ b.k + abs_av @ b.tk + a.k @ abs_bt
              + self.u * (a.ttotal @ b.total + a.total @ b.ttotal))
        return Dual(v, e, k, t, te, tk)

    def _transposed(self, w: Dual) -> Dual:
        return self.apply(lambda x: x.T, w)

    def affine(self, x: Dual, w: Dual, b: Dual | None = None) -> Dual:
        if b is not None:
            x = self.cat([x, self.const(np.ones(x.v.shape[:-1] + (1,)))])
            w = self.cat([w, self.apply(lambda a: a[:, None], b)])
        return self._contract(x, self._transposed(w), None)

    def mm(self, a: Dual, b: Dual) -> Dual:
        return self._contract(a, b, None)

    def outer_sum(self, a: Dual, b: Dual) -> Dual:
        def rows(x: np.ndarray) -> np.ndarray:
            return x.reshape(-1, x.shape[-1])

        at = self.apply(lambda x: rows(x).T, a)
        bb = self.apply(rows, b)
        return self._contract(at, bb, bb.v.shape[0])

    def sum_rows(self, a: Dual) -> Dual:
        r = self.apply(lambda x: x.reshape(-1, x.shape[-1]), a)
        n = gamma(r.v.shape[0])
        return Dual(r.v.sum(axis=0), n * np.abs(r.v).sum(axis=0) + r.e.sum(axis=0), r.k.sum(axis=0),
                    r.t.sum(axis=0), n * np.abs(r.t).sum(axis=0) + r.te.sum(axis=0), r.tk.sum(axis=0))

    def add(self, a: Dual, b: Dual) -> Dual:
        v, t = a.v + b.v, a.t + b.t
        return Dual(v, a.e + b.e + np.abs(v), a.k + b.k, t, a.te + b.te + np.abs(t), a.tk + b.tk)

    def sub(self, a: Dual, b: Dual) -> Dual:
        v, t = a.v - b.v, a.t - b.t
        return Dual(v, a.e + b.e + np.abs(v), a.k + b.k, t, a.te + b.te + np.abs(t), a.tk + b.tk)

    def mul(self, a: Dual, b: Dual) -> Dual:
        v = a.v * b.v
        t1, t2 = a.t * b.v, a.v * b.t
        t = t1 + t2
        e = np.abs(b.v) * a.e + np.abs(a.v) * b.e + np.abs(v) + self.eta
        k = np.abs(b.v) * a.k + np.abs(a.v) * b.k + self.u * a.total * b.total
        te = (np.abs(b.v) * a.te + np.abs(a.t) * b.e + np.abs(a.v) * b.te + np.abs(b.t) * a.e
              + np.abs(t1) + np.abs(t2) + np.abs(t) + 2 * self.eta)
        tk = (np.abs(b.v) * a.tk + np.abs(a.t) * b.k + np.abs(a.v) * b.tk + np.abs(b.t) * a.k
              + self.u * (a.ttotal * b.total + a.total * b.ttotal))
        return Dual(v, e, k, t, te, tk)

    def one_minus(self, a: Dual) -> Dual:
        v = 1.0 - a.v
        return Dual(v, a.e + np.abs(v), a.k, -a.t, a.te, a.tk)

    def _smooth(self, a: Dual, value: np.ndarray, slope: np.ndarray, derivative: np.ndarray, curvature: np.ndarray,
                square: np.ndarray, roundings: float, cap: float, t_cap: float) -> Dual:
        """A smooth gate y = f(a) of range ``cap`` whose tangent ȧ·f'(a) is formed from the rounded
        output (f' = ``derivative``, exact; ``slope``: its largest value over a ± u·E_a;
        ``curvature``: |df'/dy| at y; ``square``: the rounding of an intermediate square, in units
        of |ȧ|·u; ``t_cap``: the largest |f'| of any value in range)."""
        e = np.minimum(slope * a.e + RHO * np.abs(value) + self.flush, cap / self.u)
        k = np.minimum(slope * a.k, cap / self.u)
        y_err = e + k
        t = derivative * a.t
        abs_at = np.abs(a.t)
        te = slope * a.te + abs_at * (curvature * e + square) + roundings * np.abs(t) + self.eta
        tk = slope * a.tk + abs_at * (curvature * k + self.u * y_err * y_err) + self.u * a.ttotal * curvature * y_err
        # (any value in range: |computed f'| <= t_cap, so the tangent is off by at most |ṫ| + t_cap·|ȧ̂|)
        limit = (np.abs(t) + t_cap * abs_at) / self.u + t_cap * a.ttotal
        return Dual(value, e, k, t, np.minimum(te, limit), np.minimum(tk, limit))

    def sigmoid(self, a: Dual) -> Dual:
        steepest = libm.sigmoid(_toward_zero(a, self.u))  # type: ignore[arg-type]
        y = libm.sigmoid(a.v)
        return self._smooth(a, y, steepest * (1.0 - steepest), y * (1.0 - y), np.abs(1.0 - 2.0 * y),
                            np.zeros_like(y), 3.0, 1.0, 0.25)

    def tanh(self, a: Dual) -> Dual:
        steepest = np.tanh(_toward_zero(a, self.u))  # type: ignore[arg-type]
        y = np.tanh(a.v)
        return self._smooth(a, y, 1.0 - steepest * steepest, 1.0 - y * y, 2.0 * np.abs(y), y * y, 2.0, 2.0, 1.0)

    def relu(self, a: Dual) -> Dual:
        live = a.v > -KINK_MARGIN * self.u * a.total
        unsure = np.abs(a.v) <= KINK_MARGIN * self.u * a.total
        pos = a.v > 0
        return Dual(np.maximum(a.v, 0.0), np.where(live, a.e, 0.0), np.where(live, a.k, 0.0),
                    np.where(pos, a.t, 0.0), np.where(live, a.te, 0.0),
                    np.where(unsure, np.abs(a.t) / self.u + a.tk, np.where(live, a.tk, 0.0)))

    def relu_grad(self, g: Dual, a: Dual) -> Dual:
        unsure = np.abs(a.v) <= KINK_MARGIN * self.u * a.total
        live = a.v > 0
        keep = unsure | live
        return Dual(np.where(live, g.v, 0.0), np.where(keep, g.e, 0.0),
                    np.where(unsure, np.abs(g.v) / self.u + g.k, np.where(live, g.k, 0.0)),
                    np.where(live, g.t, 0.0), np.where(keep, g.te, 0.0),
                    np.where(unsure, np.abs(g.t) / self.u + g.tk, np.where(live, g.tk, 0.0)))

    def where(self, mask: np.ndarray, a: Dual, b: Dual) -> Dual:
        return Dual(*(np.where(mask, getattr(a, f), getattr(b, f)) for f in FIELDS))

    def split(self, a: Dual, n: int) -> list[Dual]:
        parts = [np.split(getattr(a, f), n, axis=-1) for f in FIELDS]
        return [Dual(*p) for p in zip(*parts)]

    def cat(self, parts: list[Dual]) -> Dual:
        if len(parts) == 1:
            return parts[0]
        return Dual(*(np.concatenate([getattr(p, f) for p in parts], axis=-1) for f in FIELDS))

    def stack(self, parts: list[Dual]) -> Dual:
        return Dual(*(np.stack([getattr(p, f) for p in parts]) for f in FIELDS))

    def take(self, a: Dual, index: Any) -> Dual:
        return Dual(*(getattr(a, f)[index] for f in FIELDS))


def _tangent_totals(pullback: Any, cotangents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.asarray(b.ttotal) for name, b in pullback(cotangents).items()}


def tangent_error_bounds(cfg: ref.RNNConfig, form: ref.Form, inputs: dict[str, np.ndarray],
                         cotangents: dict[str, np.ndarray], directions: dict[str, np.ndarray], u: float,
                         tiny: float, normal: float) -> dict[str, np.ndarray]:
    """Ė (units of u) of the derivative of every gradient of ``reference.recurrent.module_call``
    along ``directions`` (by input name; the cotangents held fixed), by input name."""
    _, pullback = ref.module_call(DualTracked(u, tiny, normal, directions), cfg, form, inputs)
    return _tangent_totals(pullback, cotangents)


def cell_tangent_error_bounds(mode: str, inputs: dict[str, np.ndarray], cotangents: dict[str, np.ndarray],
                              directions: dict[str, np.ndarray], u: float, tiny: float,
                              normal: float) -> dict[str, np.ndarray]:
    """Ė (units of u) of the derivative of every gradient of ``reference.recurrent.cell_module_call``
    along ``directions``, by input name."""
    _, pullback = ref.cell_module_call(DualTracked(u, tiny, normal, directions), mode, inputs)
    return _tangent_totals(pullback, cotangents)
