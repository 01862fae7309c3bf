"""First-order error analysis of the attention family, as a running error bound.

A ``Bounded`` array carries a value and a bound on its absolute rounding error in units of u (the
unit roundoff of the format the backend computes in): first-order, so every bound is linear in u
and computed once with u = 1. Each operation propagates the bounds of its operands through its
first-order sensitivity and adds its own rounding:

    a ± b:  e_a + e_b + |a ± b|                  a·b:  |a|·e_b + e_a·|b| + |a·b|
    a / b:  (e_a + |a/b|·e_b)/|b| + |a/b|         exp a: exp(a)·(e_a + L)       √a: e_a/(2√a) + √a
    Σ_K a:  Σ e_a + 2√K·Σ|a|                      A·B (inner K): |A|·e_B + e_A·|B| + 2√K·|A|·|B|

(L = ``reference.libm.LIBM_ULPS``; the 2√K of a reduction is the probabilistic model of
``conformance.tolerance``, which also covers its products and final rounding.) Non-finite values
carry no error: the comparison requires them exactly.

The attention layers are then re-evaluated on ``Bounded`` arrays — the twin of their reference,
operation for operation, forward and backward — so the bound of every output and gradient follows
from the composition itself: the errors of the projections enter the scores, those of the
softmax the weighted values, the forward's errors the backward's products. The twin models
torch's evaluation order where it matters: sdpa's math kernel scales q and k by √scale before
their product (a form whose bound covers the product scaled afterwards, as the flash kernel and
MultiheadAttention's weights path compute it); dropout multiplies by 1/(1 − p) rounded to the
format; the layer norm backward is bounded for both its textbook form and torch's expanded form
a·ĝ + b·x + c (whose terms cancel when |mean| ≫ σ). ``tests/reference/test_attention_reference.py``
checks that every twin computes the reference's values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.attention import attention_masks, check_sdpa, mha_bias
from reference.libm import LIBM_ULPS
from reference.registry import FUNCTIONS
from reference.smooth_activation import gelu, gelu_error

# |gelu''| <= 2·φ(0) < 0.8 for the exact form; the tanh approximation's stays below 1 as well.
UNBOUNDED = 1e300  # the bound of an error the first-order analysis cannot bound (units of u)
GELU_SECOND_DERIVATIVE = 1.0


class Bounded:
    """A float64 value and a first-order bound on its absolute error, in units of u.

    ``Bounded.u`` (the format's unit roundoff, set by ``rounding(u)``) adds the second-order term
    u·e_a·e_b to products: where both factors are pure rounding noise (exact value 0, e.g. x̂ of a
    layer norm over one element times a cotangent that cancels to 0) it is the whole error."""

    __array_priority__ = 100  # ndarray ⊕ Bounded defers to Bounded's reflected operators
    __slots__ = ("v", "e")
    u = 0.0

    def __init__(self, v: Any, e: Any = None):
        self.v = v = np.asarray(v, dtype=np.float64)
        if e is None:
            self.e = np.zeros(v.shape)
            return
        e = np.asarray(e, dtype=np.float64)
        if e.shape != v.shape:
            e = np.broadcast_to(e, v.shape)
        finite = np.isfinite(v)
        e = e if finite.all() else np.where(finite, e, 0.0)
        # A bound that overflows (a degenerate composition: a layer norm over one feature in a short
        # format, whose second-order terms compound) stays a huge finite bound, never inf or NaN,
        # which the tolerance engine would read as no tolerance at all.
        self.e = e if np.all(e <= UNBOUNDED) else np.where(e <= UNBOUNDED, e, UNBOUNDED)

    # -- shape (exact) ----------------------------------------------------------------------------
    shape = property(lambda self: self.v.shape)
    ndim = property(lambda self: self.v.ndim)

    def reshape(self, *shape: Any) -> Bounded:
        return Bounded(self.v.reshape(*shape), self.e.reshape(*shape))

    def transpose(self, *axes: Any) -> Bounded:
        return Bounded(self.v.transpose(*axes), self.e.transpose(*axes))

    def swapaxes(self, a: int, b: int) -> Bounded:
        return Bounded(self.v.swapaxes(a, b), self.e.swapaxes(a, b))

    def __getitem__(self, index: Any) -> Bounded:
        return Bounded(self.v[index], self.e[index])

    # -- arithmetic --------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Bounded:
        o = bounded(other)
        with np.errstate(invalid="ignore", over="ignore"):
            v = self.v + o.v
            return Bounded(v, self.e + o.e + np.abs(v))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Bounded:
        return self + (-bounded(other))

    def __rsub__(self, other: Any) -> Bounded:
        return bounded(other) + (-self)

    def __neg__(self) -> Bounded:
        return Bounded(-self.v, self.e)

    def __mul__(self, other: Any) -> Bounded:
        o = bounded(other)
        with np.errstate(invalid="ignore", over="ignore"):
            v = self.v * o.v
            return Bounded(v, np.abs(self.v) * o.e + self.e * np.abs(o.v) + np.abs(v) + Bounded.u * self.e * o.e)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Bounded:
        o = bounded(other)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            v = self.v / o.v
            return Bounded(v, (self.e + np.abs(v) * o.e) / np.abs(o.v) + np.abs(v))

    def __matmul__(self, other: Any) -> Bounded:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Bounded:
        return matmul(other, self)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Bounded:
        k = self.v.size if axis is None else int(np.prod([self.v.shape[a] for a in np.atleast_1d(axis)]))
        with np.errstate(invalid="ignore", over="ignore"):
            v = self.v.sum(axis=axis, keepdims=keepdims)
            e = self.e.sum(axis=axis, keepdims=keepdims) + 2 * math.sqrt(max(k, 1)) * np.abs(self.v).sum(
                axis=axis, keepdims=keepdims)
        return Bounded(v, e)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Bounded:
        k = self.v.size if axis is None else int(np.prod([self.v.shape[a] for a in np.atleast_1d(axis)]))
        return self.sum(axis, keepdims) / float(max(k, 1))


@contextmanager
def rounding(u: float) -> Iterator[None]:
    """Evaluate twins for a format of unit roundoff ``u`` (the second-order product term)."""
    before, Bounded.u = Bounded.u, float(u)
    try:
        yield
    finally:
        Bounded.u = before


def bounded(x: Any) -> Bounded:
    """``x`` itself, or an exact ``Bounded`` (an input or parameter: the values the backend got)."""
    return x if isinstance(x, Bounded) else Bounded(x)


def matmul(a: Any, b: Any) -> Bounded:
    """A·B (batched, broadcasting like np.matmul) with the inner product's error model."""
    a, b = bounded(a), bounded(b)
    k = a.v.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        aa, ab = np.abs(a.v), np.abs(b.v)
        e = aa @ b.e + a.e @ ab + 2 * math.sqrt(max(k, 1)) * (aa @ ab) + Bounded.u * (a.e @ b.e)
        return Bounded(a.v @ b.v, e)


def exp(a: Bounded) -> Bounded:
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.exp(a.v)
        return Bounded(v, v * (a.e + LIBM_ULPS))


def sqrt(a: Bounded) -> Bounded:
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.sqrt(a.v)
        return Bounded(v, np.where(v > 0, a.e / (2 * v), 0.0) + v)  # (√ of 0 only arises from an exact 0)


def where(cond: Any, a: Any, b: Any) -> Bounded:
    """Select (exact; ``cond`` is a plain array the error cannot flip)."""
    a, b = bounded(a), bounded(b)
    return Bounded(np.where(cond, a.v, b.v), np.where(cond, a.e, b.e))


def concatenate(parts: Sequence[Any], axis: int = 0) -> Bounded:
    parts = [bounded(p) for p in parts]
    return Bounded(np.concatenate([p.v for p in parts], axis), np.concatenate([p.e for p in parts], axis))


def broadcast_to(a: Any, shape: tuple[int, ...]) -> Bounded:
    a = bounded(a)
    return Bounded(np.broadcast_to(a.v, shape), np.broadcast_to(a.e, shape))


def scaled(a: Bounded, factor: float, roundings: int = 1) -> Bounded:
    """a·factor with ``roundings`` roundings of the result (the product, and the factor itself
    when it is a rounded constant such as √scale or 1/(1 − p))."""
    v = a.v * factor
    return Bounded(v, a.e * abs(factor) + roundings * np.abs(v))


def fold(g: Bounded, groups: int) -> Bounded:
    """The gradient of repeating each key/value head over its ``groups`` query heads: a sum."""
    if groups == 1:
        return g
    return g.reshape(*g.shape[:-3], g.shape[-3] // groups, groups, *g.shape[-2:]).sum(axis=-3)


# -- the attention core ------------------------------------------------------------------------------


def softmax_rows(z: Bounded, safe: bool) -> Bounded:
    """softmax over the last axis as exp(z − max)/Σ exp(z − max) (the shift is exact in value and
    its error cancels); a dead row (all -inf) is 0 (``safe``) or NaN, without error."""
    dead = np.all(z.v == -np.inf, axis=-1, keepdims=True)
    filled = where(dead, 0.0, z)
    with np.errstate(invalid="ignore"):
        shift = np.max(filled.v, axis=-1, keepdims=True)
    shifted = filled - Bounded(np.broadcast_to(shift, filled.shape))
    shifted = Bounded(shifted.v, filled.e + np.where(np.isfinite(shifted.v), np.abs(shifted.v), 0.0))
    e = exp(shifted)
    p = e / e.sum(axis=-1, keepdims=True)
    return where(dead, 0.0 if safe else np.nan, p)


@dataclass
class BoundedAttention:
    q: Bounded
    k: Bounded
    v: Bounded
    p: Bounded
    dropped: Bounded
    out: Bounded
    root_scale: float
    keep_scale: float
    keep: np.ndarray | None
    groups: int
    math_form: bool

    def pullback(self, g_out: Any, g_weights: Any = None) -> tuple[Bounded, Bounded, Bounded]:
        g_out = bounded(g_out)
        g_dropped = g_out @ self.v.swapaxes(-1, -2)
        if g_weights is not None:
            g_dropped = g_dropped + g_weights
        g_v = self.dropped.swapaxes(-1, -2) @ g_out
        g_p = _drop(g_dropped, self.keep, self.keep_scale)
        g_z = self.p * (g_p - (self.p * g_p).sum(axis=-1, keepdims=True))
        r = self.root_scale
        if self.math_form:  # z = (q·√s)(k·√s)ᵀ: dq = (dz·(k√s))·√s, dk = (dzᵀ·(q√s))·√s
            g_q = scaled(g_z @ self.k, r, 2)
            g_k = scaled(g_z.swapaxes(-1, -2) @ self.q, r, 2)
        else:
            g_q = scaled(g_z @ self.k, r * r, 2)
            g_k = scaled(g_z.swapaxes(-1, -2) @ self.q, r * r, 2)
        return g_q, fold(g_k, self.groups), fold(g_v, self.groups)


def _drop(x: Bounded, keep: np.ndarray | None, keep_scale: float) -> Bounded:
    if keep is None:
        return x
    kept = scaled(x, keep_scale, 2)  # times fl(1/(1 − p)): the factor's rounding and the product's
    return where(np.broadcast_to(keep, x.shape), kept, 0.0)


def attend(q: Any, k: Any, v: Any, bias: np.ndarray | None, scale: float, dropout_p: float = 0.0,
           keep: np.ndarray | None = None, groups: int = 1, safe: bool = True) -> BoundedAttention:
    """The twin of ``reference.attention.attend``: scores as sdpa's math kernel forms them,
    (q·√s)(k·√s)ᵀ + bias (whose bound covers (q·kᵀ)·s), softmax, dropout, times V."""
    q, k, v = bounded(q), bounded(k), bounded(v)
    if groups > 1:
        k = Bounded(np.repeat(k.v, groups, axis=-3), np.repeat(k.e, groups, axis=-3))
        v = Bounded(np.repeat(v.v, groups, axis=-3), np.repeat(v.e, groups, axis=-3))
    r = math.sqrt(scale)
    qs, ks = scaled(q, r, 2), scaled(k, r, 2)
    z = qs @ ks.swapaxes(-1, -2)
    if bias is not None:
        with np.errstate(invalid="ignore"):
            z = z + Bounded(np.broadcast_to(bias, z.shape))
    p = softmax_rows(z, safe)
    kept = None if dropout_p == 0 else np.asarray(keep, dtype=bool)
    keep_scale = 1.0 / (1.0 - dropout_p) if dropout_p else 1.0
    dropped = _drop(p, kept, keep_scale)
    return BoundedAttention(qs, ks, v, p, dropped, dropped @ v, r, keep_scale, kept, groups, True)


def sdpa(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0, is_causal: bool = False,
         scale: float | None = None, enable_gqa: bool = False, dropout_mask: Any = None) -> BoundedAttention:
    """The twin of ``reference.attention.scaled_dot_product_attention`` (same arguments)."""
    q, k, v = bounded(query), bounded(key), bounded(value)
    bias, s, groups = check_sdpa(q.v, k.v, v.v, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    return attend(q, k, v, bias, s, dropout_p, dropout_mask, groups, safe=True)


# -- linear, layer norm, activations, dropout ------------------------------------------------------------


def linear(x: Any, w: np.ndarray, b: np.ndarray | None) -> tuple[Bounded, Callable[[Any], tuple[Bounded, dict]]]:
    """x·Wᵀ + b and its pullback g -> (dx, {"weight", "bias"})."""
    x = bounded(x)
    y = x @ np.swapaxes(w, -1, -2)
    if b is not None:
        y = y + b

    def back(g: Any) -> tuple[Bounded, dict[str, Bounded]]:
        g = bounded(g)
        rows, xr = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        grads = {"weight": rows.swapaxes(0, 1) @ xr}
        if b is not None:
            grads["bias"] = rows.sum(axis=0)
        return g @ w, grads

    return y, back


def _layer_norm_rounding(x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None, eps: float
                         ) -> tuple[Bounded, Bounded, Bounded, Callable[[np.ndarray], Bounded]]:
    """The layer norm's own rounding on exact inputs: (y, x̂, r = 1/σ, backward(g exact) -> dx),
    the backward bounded for both its textbook form and torch's expanded form a·ĝ + b·x + c
    (b = (Σĝ·mean − Σĝ·x)·r³/K, c = −b·mean − Σĝ·r/K, whose terms cancel when |mean| ≫ σ)."""
    xb = Bounded(x)
    mean = xb.mean(axis=-1, keepdims=True)
    centred = xb - mean
    r = bounded(1.0) / sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
    xhat = centred * r
    y = xhat if w is None else xhat * w
    y = y if b is None else y + b
    k = float(x.shape[-1])

    def backward(g: np.ndarray) -> Bounded:
        gh = Bounded(g) if w is None else Bounded(g) * w
        textbook = r * (gh - gh.mean(axis=-1, keepdims=True) - xhat * (gh * xhat).mean(axis=-1, keepdims=True))
        ds, db = (gh * xb).sum(axis=-1, keepdims=True), gh.sum(axis=-1, keepdims=True)
        bb = (db * mean - ds) * r * r * r / k
        expanded = r * gh + bb * xb + ((-bb) * mean - db * r / k)
        return Bounded(textbook.v, np.maximum(textbook.e, expanded.e))

    return y, xhat, r, backward


def layer_norm(x: Any, w: np.ndarray | None, b: np.ndarray | None, eps: float
               ) -> tuple[Bounded, Callable[[Any], tuple[Bounded, dict]]]:
    """Layer norm over the last axis and its pullback. The own rounding is that of the computation
    on exact inputs (``_layer_norm_rounding``); the errors of the input and of the cotangent enter
    through the exact absolute Jacobians of the row (K × K; x̂ and r as below), since x appears in
    the mean, the variance and x̂ alike and a bound propagated operation by operation would count
    its error many times over (the r³ of the variance's sensitivity would swamp the bound):

        ∂x̂_i/∂x_j = r·(δ_ij − 1/K − x̂_i·x̂_j/K)                                     (forward, ·w_i)
        ∂(dx_i)/∂x_j = r²·(−B·δ_ij + (B − x̂_j·(ĝ_i − A) − x̂_i·(ĝ_j − A) + 3B·x̂_i·x̂_j)/K)
    with ĝ = g·w, A = mean(ĝ), B = mean(ĝ·x̂) (the forward's error moving the backward), and the
    cotangent's error through the forward Jacobian's transpose (plus, at second order, the
    backward's own rounding applied to that error: over one element the Jacobian is exactly 0
    but its evaluation is not)."""
    x = bounded(x)
    y0, xhat, r, own_backward = _layer_norm_rounding(x.v, w, b, eps)
    kk = x.shape[-1]
    xh, rv = xhat.v, r.v
    ww = np.ones(kk) if w is None else np.asarray(w, dtype=np.float64)
    eye = np.eye(kk)
    jac = rv[..., None] * (eye - 1.0 / kk - xh[..., :, None] * xh[..., None, :] / kk)  # ∂x̂_i/∂x_j
    abs_jac = np.abs(jac)
    e_xhat = np.einsum("...ij,...j->...i", abs_jac, x.e)
    y = Bounded(y0.v, y0.e + np.abs(ww) * e_xhat)
    if Bounded.u and np.any(x.e):  # second order: the norm's own rounding applied to the input's error
        y = Bounded(y.v, y.e + _layer_norm_rounding(Bounded.u * x.e, w, None, eps)[0].e)
    lead = tuple(range(x.ndim - 1))

    def back(g: Any) -> tuple[Bounded, dict[str, Bounded]]:
        g = bounded(g)
        gh = g.v * ww
        own = own_backward(g.v)
        if Bounded.u and np.any(g.e):  # the rounding of the backward applied to the cotangent's own error
            own = Bounded(own.v, own.e + own_backward(Bounded.u * g.e).e)
        a = gh.mean(axis=-1, keepdims=True)
        bm = (gh * xh).mean(axis=-1, keepdims=True)
        outer = (bm[..., None] - xh[..., None, :] * (gh - a)[..., :, None] - xh[..., :, None] * (gh - a)[..., None, :]
                 + 3 * bm[..., None] * xh[..., :, None] * xh[..., None, :])
        hess = (rv * rv)[..., None] * (-bm[..., None] * eye + outer / kk)
        through_g = np.einsum("...ji,...j->...i", abs_jac, np.abs(ww) * g.e)
        gx = Bounded(own.v, own.e + np.einsum("...ij,...j->...i", np.abs(hess), x.e) + through_g)
        grads = {}
        if w is not None:
            gxh = g * Bounded(xh, xhat.e + e_xhat)
            grads["weight"] = gxh.reshape(-1, kk).sum(axis=0) if lead else gxh
        if b is not None:
            grads["bias"] = g.reshape(-1, kk).sum(axis=0) if lead else g
        return gx, grads

    return y, back


def activation(x: Any, name: str, u: float) -> tuple[Bounded, Callable[[Any], Bounded]]:
    """relu (1-Lipschitz; an input within its error of 0 may flip the gradient's mask) or gelu
    ("gelu", "gelu_tanh": |gelu'|·e_x plus ``reference.smooth_activation.gelu_error``'s own
    rounding, which needs the format's u for its saturation test)."""
    x = bounded(x)
    if name == "relu":
        y = Bounded(np.maximum(x.v, 0.0), x.e)

        def back_relu(g: Any) -> Bounded:
            g = bounded(g)
            on = x.v > 0
            flip = np.abs(x.v) <= u * x.e  # the input's error could move it across the kink
            # a flipped mask moves the gradient by the whole |g| (absolute: |g|/u in units of u)
            return Bounded(np.where(on, g.v, 0.0), np.where(on, g.e, 0.0) + np.where(flip, np.abs(g.v) / u + g.e, 0.0))

        return y, back_relu
    approximate = "tanh" if name == "gelu_tanh" else "none"
    with np.errstate(all="ignore"):
        value = gelu(x.v, approximate)
        slope = FUNCTIONS["gelu"].vjp(np.ones_like(x.v), x.v, approximate)["input"]
        own, _ = gelu_error(x.v, value, None, u, 0.0, approximate)
    y = Bounded(value, np.abs(slope) * x.e + own)

    def back_gelu(g: Any) -> Bounded:
        g = bounded(g)
        with np.errstate(all="ignore"):
            _, own_g = gelu_error(x.v, value, g.v, u, 0.0, approximate)
        return Bounded(g.v * slope, g.e * np.abs(slope) + np.abs(g.v) * GELU_SECOND_DERIVATIVE * x.e + own_g)

    return y, back_gelu


def dropout(x: Any, p: float, training: bool, keep: Any) -> tuple[Bounded, Callable[[Any], Bounded]]:
    x = bounded(x)
    if not training or p == 0:
        return x, bounded
    kept = np.broadcast_to(np.asarray(keep, dtype=bool), x.shape)
    scale = 1.0 / (1.0 - p)
    return _drop(x, kept, scale), lambda g: _drop(bounded(g), kept, scale)


# -- multi-head attention ------------------------------------------------------------------------------


def _heads(x: Bounded, n: int, h: int) -> Bounded:
    return x.reshape(x.shape[0], n, h, -1).transpose(1, 2, 0, 3)


def _unheads(x: Bounded) -> Bounded:
    n, h, s, d = x.shape
    return x.transpose(2, 0, 1, 3).reshape(s, n, h * d)


def multi_head_attention(query: Any, key: Any, value: Any, num_heads: int, params: Mapping[str, Any],
                         add_zero_attn: bool = False, dropout_p: float = 0.0, training: bool = True,
                         key_padding_mask: Any = None, need_weights: bool = True, attn_mask: Any = None,
                         average_attn_weights: bool = True, dropout_mask: Any = None
                         ) -> tuple[Bounded, Bounded | None, Callable[..., dict[str, Bounded]]]:
    """The twin of ``reference.attention.multi_head_attention`` for a MultiheadAttention's
    parameters by state-dict name: (output, weights, pullback(g_out, g_weights) -> grads by
    argument / parameter name, "query", "key", "value" included)."""
    q_in, k_in, v_in = bounded(query), bounded(key), bounded(value)
    batched = q_in.ndim == 3
    if not batched:
        q_in, k_in, v_in = (t.reshape(t.shape[0], 1, t.shape[1]) for t in (q_in, k_in, v_in))
        if key_padding_mask is not None:
            key_padding_mask = np.asarray(key_padding_mask)[None]
    L, N, E = q_in.shape
    H = int(num_heads)
    hd = E // H
    if params.get("q_proj_weight") is not None:
        ws = [params["q_proj_weight"], params["k_proj_weight"], params["v_proj_weight"]]
    else:
        ws = list(np.split(params["in_proj_weight"], 3))
    bias = params.get("in_proj_bias")
    bs = [None] * 3 if bias is None else list(np.split(bias, 3))
    (q, back_q), (k, back_k), (v, back_v) = (linear(x, w, b_) for x, w, b_ in zip((q_in, k_in, v_in), ws, bs))
    bias_k, bias_v = params.get("bias_k"), params.get("bias_v")
    if bias_k is not None:
        k = concatenate([k, np.broadcast_to(bias_k.reshape(1, 1, E), (1, N, E))])
        v = concatenate([v, np.broadcast_to(bias_v.reshape(1, 1, E), (1, N, E))])
    qh, kh, vh = _heads(q, N, H), _heads(k, N, H), _heads(v, N, H)
    if add_zero_attn:
        kh = concatenate([kh, np.zeros((N, H, 1, hd))], axis=2)
        vh = concatenate([vh, np.zeros((N, H, 1, hd))], axis=2)
    score_bias = attention_masks(mha_bias(attn_mask), mha_bias(key_padding_mask), N, H, L, kh.shape[2])
    p = float(dropout_p) if training else 0.0
    att = attend(qh, kh, vh, score_bias, 1.0 / math.sqrt(hd), p, dropout_mask, safe=not need_weights)
    merged = _unheads(att.out)
    out, back_out = linear(merged, params["out_proj.weight"], params.get("out_proj.bias"))
    weights = None
    if need_weights:
        weights = att.dropped.mean(axis=1) if average_attn_weights else att.dropped
        weights = weights if batched else weights[0]
    output = out if batched else out[:, 0]

    def pullback(g_out: Any, g_weights: Any = None) -> dict[str, Bounded]:
        g = bounded(g_out)
        g = g if batched else g.reshape(g.shape[0], 1, g.shape[1])
        gw = None
        if need_weights and g_weights is not None:
            gw = bounded(g_weights)
            gw = gw if batched else gw.reshape(1, *gw.shape)
            if average_attn_weights:
                gw = broadcast_to(scaled(gw.reshape(gw.shape[0], 1, *gw.shape[1:]), 1.0 / H),
                                  att.dropped.shape)
        g_merged, out_grads = back_out(g)
        grads = {f"out_proj.{k_}": val for k_, val in out_grads.items()}
        g_qh, g_kh, g_vh = att.pullback(_heads(g_merged, N, H), gw)
        if add_zero_attn:
            g_kh, g_vh = g_kh[:, :, :-1], g_vh[:, :, :-1]
        g_q, g_k, g_v = _unheads(g_qh), _unheads(g_kh), _unheads(g_vh)
        if bias_k is not None:
            grads["bias_k"] = g_k[-1].sum(axis=0).reshape(bias_k.shape)
            grads["bias_v"] = g_v[-1].sum(axis=0).reshape(bias_v.shape)
            g_k, g_v = g_k[:-1], g_v[:-1]
        wgrads, bgrads = [], []
        for name, gg, back in (("query", g_q, back_q), ("key", g_k, back_k), ("value", g_v, back_v)):
            gx, pg = back(gg)
            grads[name] = gx if batched else gx[:, 0]
            wgrads.append(pg["weight"])
            bgrads.append(pg.get("bias"))
        if params.get("q_proj_weight") is not None:
            grads.update(q_proj_weight=wgrads[0], k_proj_weight=wgrads[1], v_proj_weight=wgrads[2])
        else:
            grads["in_proj_weight"] = concatenate(wgrads, axis=0)
        if bias is not None:
            grads["in_proj_bias"] = concatenate(bgrads, axis=0)
        return grads

    return output, weights, pullback


# -- the transformer pieces (``reference.transformer``'s composition, evaluated on Bounded arrays) ---


@dataclass(frozen=True)
class BoundedPieces:
    """The pieces ``reference.transformer`` composes, as twins on ``Bounded`` arrays (``u``: the
    format's unit roundoff, which GELU's saturation analysis needs)."""

    u: float

    def asarray(self, x: Any) -> Bounded:
        return bounded(x)

    def where_rows(self, keep: np.ndarray, x: Any) -> Bounded:
        return where(keep, x, 0.0)

    def linear(self, x: Any, params: Mapping[str, Any], name: str) -> tuple[Bounded, Callable]:
        y, back = linear(x, params[f"{name}.weight"], params.get(f"{name}.bias"))

        def pullback(g: Any) -> tuple[Bounded, dict[str, Bounded]]:
            gx, grads = back(g)
            return gx, {f"{name}.{k}": v for k, v in grads.items()}

        return y, pullback

    def norm(self, x: Any, params: Mapping[str, Any], name: str, eps: float) -> tuple[Bounded, Callable]:
        y, back = layer_norm(x, params.get(f"{name}.weight"), params.get(f"{name}.bias"), eps)

        def pullback(g: Any) -> tuple[Bounded, dict[str, Bounded]]:
            gx, grads = back(g)
            return gx, {f"{name}.{k}": v for k, v in grads.items()}

        return y, pullback

    def activation(self, x: Any, name: str) -> tuple[Bounded, Callable]:
        return activation(x, name, self.u)

    def dropout(self, x: Any, p: float, training: bool, keep: Any) -> tuple[Bounded, Callable]:
        return dropout(x, p, training, keep)

    def attention(self, x: Any, kv: Any, params: Mapping[str, Any], name: str, nhead: int, mask: Any, kpm: Any,
                  is_causal: bool, p: float, training: bool, keep: Any) -> tuple[Bounded, Callable]:
        local = {k[len(name) + 1:]: v for k, v in params.items() if k.startswith(f"{name}.")}
        out, _, pullback = multi_head_attention(x, kv, kv, nhead, local, False, p, training, kpm, False, mask,
                                                dropout_mask=keep)

        def back(g: Any) -> tuple[Bounded, Bounded, dict[str, Bounded]]:
            grads = pullback(g)
            named = {f"{name}.{k}": v for k, v in grads.items() if k not in ("query", "key", "value")}
            return grads["query"], grads["key"] + grads["value"], named

        return out, back
