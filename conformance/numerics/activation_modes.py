"""Derivative-mode terms of the activations (issue #24): the vjp2 mode's second-order error terms
(``LayerSpec.second_order_error``: second derivatives formed from rounded intermediates) and the
known-entry predicates of torch's second-order and forward-mode discrepancies. First-order glue is
in ``conformance.numerics.elementwise``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from backends.base import Case
from conformance.dtypes import DTYPES
from conformance.numerics.elementwise import _exp_overflows, _x
from conformance.spec import spec_of
from reference.libm import sigmoid
from reference.smooth_activation import glu_halves


def mish_second_order_error(case: Case, v: Mapping[str, np.ndarray], g: Mapping[str, np.ndarray]
                            ) -> dict[str, np.ndarray]:
    """The vjp2 error of Mish's gradient as torch forms it under create_graph (the composite
    ``infinitely_differentiable_mish_backward``: g·(t + x·s·(1 - t·t)), t = tanh(log1p(exp(x))),
    s = σ(x), every operation rounded to the dtype), differentiated through its own graph:
    H·v = g·v·(W'·σe + s·W + x·s(1 - s)·W - 2x·s·t·W'·σe), W and W' = 1 - t² formed from the
    rounded t, σe = exp/(1 + exp). Every term carries W, whose absolute error (the first-order
    analysis' δW, ``S.mish_error``: 2|t|·δt + t² + W, or W once t is saturated) is not relative
    to W where t is near 1; and s(1 - s) from the rounded s carries (L + 1)·s + 2s|1 - s|:
    E = u·|g·v|·(δW·(2s + |x|·s·|1 - s| + 2|x|·s²·|t|) + |x|·W·((L + 1)·s + 2s·|1 - s|))."""
    from reference.libm import saturating_error
    from reference.smooth_activation import _L, _softplus_terms, _tanh_distance

    cot = g.get("output")
    if cot is None or "input" not in v:
        return {}
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    dt = DTYPES[case.dtype]
    u, tiny = dt.unit_roundoff, dt.min_normal
    with np.errstate(all="ignore"):
        sp, t, w = _softplus_terms(x)
        s = sigmoid(x)
        distance = _tanh_distance(sp)
        d_t = np.where(np.isfinite(sp), w * _L * (s + sp), 0.0) + saturating_error(t, distance, u) + tiny / u
        d_w = np.where(distance < u / 2, w / u, 2 * np.abs(t) * d_t + t * t + w)
        ax = np.abs(x)
        terms = d_w * (2 * s + ax * s * np.abs(1 - s) + 2 * ax * s * s * np.abs(t)) \
            + ax * w * ((_L + 1) * s + 2 * s * np.abs(1 - s))
        out = np.where(np.isfinite(x), u * np.abs(cot) * np.abs(v["input"]) * terms, 0.0)
    return {"d2.input": np.where(np.isfinite(out), out, 0.0)}


def glu_second_order_error(case: Case, v: Mapping[str, np.ndarray], g: Mapping[str, np.ndarray]
                           ) -> dict[str, np.ndarray]:
    """The vjp2 error of GLU's second derivative as torch forms it (``glu_double_backward``; the
    forward-mode ``glu_backward_jvp`` alike): p = s·(1 - s) and q = p·(1 - s) - s·p from the
    rounded s = σ(b), 1 - s formed by subtraction, so where s is near 1 they carry the absolute
    error of s (δs = (L + 1)·s·u, plus tiny), not one relative to 1 - s:
    δo = δs + u·|o|, δp = s·δo + |o|·δs + u·|p|, δq = (|o| + s)·δp + |p|·(δo + δs) + 2u·(|p·o| + |s·p|).
    d2.a = g·v_b·p, d2.b = g·v_b·a·q + g·v_a·p: E_a = |g·v_b|·δp, E_b = |g·v_b·a|·δq + |g·v_a|·δp
    (with 4u of each product's rounding)."""
    from reference.smooth_activation import _L

    cot = g.get("output")
    if cot is None or "input" not in v:
        return {}
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    a, b, axis = glu_halves(x, case.params["dim"])
    va, vb, _ = glu_halves(np.asarray(v["input"], dtype=np.float64), case.params["dim"])
    dt = DTYPES[case.dtype]
    u, tiny = dt.unit_roundoff, dt.min_normal
    with np.errstate(all="ignore"):
        gc = np.abs(np.asarray(cot, dtype=np.float64))
        s = sigmoid(b)
        o = 1 - s
        p = s * o
        q = p * o - s * p
        d_s = (_L + 1) * s * u + tiny
        d_o = d_s + u * np.abs(o)
        d_p = s * d_o + np.abs(o) * d_s + u * np.abs(p)
        d_q = (np.abs(o) + s) * d_p + np.abs(p) * (d_o + d_s) + 2 * u * (np.abs(p * o) + np.abs(s * p))
        e_a = gc * np.abs(vb) * (d_p + 4 * u * np.abs(p))
        e_b = gc * np.abs(vb * a) * (d_q + 4 * u * np.abs(q)) + gc * np.abs(va) * (d_p + 4 * u * np.abs(p))
        out = np.concatenate([e_a, e_b], axis=axis)
    return {"d2.input": np.where(np.isfinite(out), out, 0.0)}


def mish_exp_overflows(case: Case) -> bool:
    """PyTorch's create_graph Mish backward forms softplus as log1p(exp(x)) in the dtype: some
    finite input has exp(x) beyond the dtype's largest value (inf, whose ExpBackward is 0·inf), or,
    in a composition through forward mode, exp(x)·|v| (the exp's tangent along the direction v:
    inf, times tanh's 1 - t² = 0)."""
    from backends.torch_run import direction_values

    x = np.asarray(_x(case), dtype=np.float64)
    limit = math.log(DTYPES[case.dtype].max_value)
    with np.errstate(all="ignore"):
        if (np.isfinite(x) & (x > limit)).any():
            return True
        node = (case.call or {}).get("mode") or {}
        if node.get("composition") in (None, "reverse-over-reverse") or "seed" not in node:
            return False
        v = direction_values(node["seed"], "input", x, node["tier"], case.layout("input").describe())
        return bool((np.isfinite(x) & (x + np.log(np.abs(v)) > limit)).any())


def mish_sigmoid_exp_overflows(case: Case) -> bool:
    """Some finite input of a Mish case has exp(-x) overflowing (σ(x) = 0 in PyTorch's backward):
    the second-order call drops x·σ·(1 - t²) from the gradient and its derivative, which shows in
    the derivative (scaled by v) where the gradient itself may still be within its bound."""
    return bool(_exp_overflows(case, -np.asarray(_x(case), dtype=np.float64)).any())


def mish_exp_overflows_both_ways(case: Case) -> bool:
    """Both Mish second-order discrepancies in one case (so one tensor may show both symptoms):
    ``mish_exp_overflows`` and ``mish_sigmoid_exp_overflows``."""
    return mish_exp_overflows(case) and mish_sigmoid_exp_overflows(case)


def softmax_second_order_error(case: Case, v: Mapping[str, np.ndarray], g: Mapping[str, np.ndarray]
                               ) -> dict[str, np.ndarray]:
    """The vjp2 error of softmax's second derivative formed from the rounded y (torch's
    softmax_double_backward and the forward-mode rule of _softmax_backward_data alike): with ẏ =
    y·(v - ⟨y, v⟩) and S = ⟨y, g⟩, d2 = ẏ·(g - S) - y·⟨ẏ, g⟩. The declaration's first-order output
    error δy = u·(E_y + y) (``M.softmax_error``, its F) moves ẏ by δẏ = δy·|v - ⟨y, v⟩| + y·⟨δy, |v|⟩
    (+ (2√K + 2)·u·y·(|v| + ⟨y, |v|⟩), the sum and products), so that d2 carries
    δẏ·|g - S| + |ẏ|·⟨δy, |g|⟩ + δy·|⟨ẏ, g⟩| + y·⟨δẏ, |g|⟩: absolute in the magnitude of y·|v|·|g|,
    which shift invariance cancels in ẏ (a large v nearly constant along the slice). Softmin: the
    same on -x (-v); Softmax2d over dim -3."""
    from reference import softmax as M

    cot = g.get("output")
    if cot is None or "input" not in v:
        return {}
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    name = spec_of(case).name
    dim = -3 if name == "Softmax2d" else case.params.get("dim")
    sign = -1.0 if name == "Softmin" else 1.0
    dt = DTYPES[case.dtype]
    u, tiny = dt.unit_roundoff, dt.min_normal
    with np.errstate(all="ignore"):
        xs = sign * x
        y = M.softmax(xs, dim)
        err_y, _ = M.softmax_error(xs, y, None, u, tiny, dim)
        axis = M.softmax_axis(x.ndim, dim)
        y1, e1 = np.atleast_1d(y), np.atleast_1d(err_y)
        vv, gg = sign * np.atleast_1d(np.asarray(v["input"], dtype=np.float64)), np.atleast_1d(np.asarray(cot))
        root_k = math.sqrt(y1.shape[axis]) if y1.size else 1.0

        def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.sum(a * b, axis=axis, keepdims=True)

        d_y = u * (e1 + y1) + tiny
        yd = y1 * (vv - dot(y1, vv))
        d_yd = (d_y * np.abs(vv - dot(y1, vv)) + y1 * dot(d_y, np.abs(vv))
                + (2 * root_k + 2) * u * y1 * (np.abs(vv) + dot(y1, np.abs(vv))))
        out = (d_yd * np.abs(gg - dot(y1, gg)) + np.abs(yd) * dot(d_y, np.abs(gg)) + d_y * np.abs(dot(yd, gg))
               + y1 * dot(d_yd, np.abs(gg)))
        out = np.where(np.isfinite(out), out, 0.0).reshape(x.shape)
    return {"d2.input": out}


def softmax_jvp_sum_overflows(case: Case) -> bool:
    """A vjp2 case through forward mode (not reverse-over-reverse) where PyTorch's softmax JVP
    rule (``logsumexp_jvp``: Σ exp(x - max)·v over the slice, before dividing by Σ exp(x - max))
    overflows the dtype in some slice, although ⟨y, v⟩ is at most max|v|. Softmin on -x, -v;
    Softmax2d over dim -3."""
    from backends.torch_run import direction_values
    from reference import softmax as M

    node = (case.call or {}).get("mode") or {}
    if node.get("composition") in (None, "reverse-over-reverse") or "seed" not in node:
        return False
    x = np.asarray(_x(case), dtype=np.float64)
    if x.size == 0:
        return False
    name = spec_of(case).name
    dim = -3 if name == "Softmax2d" else case.params.get("dim")
    sign = -1.0 if name == "Softmin" else 1.0
    v = direction_values(node["seed"], "input", x, node["tier"], case.layout("input").describe())
    axis = M.softmax_axis(x.ndim, dim)
    with np.errstate(all="ignore"):
        xs, vs = np.atleast_1d(sign * x), np.atleast_1d(sign * v)
        e = np.exp(xs - np.max(xs, axis=axis, keepdims=True))
        total = np.abs(np.sum(e * vs, axis=axis))
    return bool((np.isfinite(total) & (DTYPES[case.dtype].round(total) > DTYPES[case.dtype].max_value)).any())
