"""Tolerance glue, regime helpers and known-entry predicates of the distance family:
PairwiseDistance's first-order error analysis and CosineSimilarity's."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.tolerance import bound_as_magnitude
from reference import distance as ref

INF = math.inf


def _params(case: Case) -> tuple[float, float, bool]:
    p = case.params
    return float(p["p"]), float(p["eps"]), bool(p["keepdim"])


def _smooth(case: Case) -> bool:
    """Twice differentiable around the case (the vjp2 mode's smooth neighbourhood): every entry of
    d is 0 or |d| > 1e-3, and an entry at 0 only where |d|^p is C² there (p >= 2, or p = 0 whose
    gradient is 0 everywhere): for p = 1 it is the kink of |d|, for 1 < p < 2 the second derivative
    (p-1)·|d|^(p-2) is unbounded, for p < 1 |d|^p is not even Lipschitz; the norm is > 1e-3 (for
    p = ±inf too: max |d| = 0 is the kink of every entry); and for p = ±inf the extreme |d| of each
    row is unique by more than 1e-3."""
    p, eps, _ = _params(case)
    a = np.abs(ref.difference(case.inputs["x1"], case.inputs["x2"], eps))
    if np.any((a > 0) & (a <= 1e-3)) or (not (p == 0 or p >= 2) and np.any(a == 0)):
        return False
    if p != 0 and not bool(np.all(ref.vector_norm(ref.difference(case.inputs["x1"], case.inputs["x2"], eps), p)
                                  > 1e-3)):
        return False
    if np.isinf(p):
        ranked = np.sort(a if p > 0 else -a, axis=-1)
        return a.shape[-1] == 1 or bool(np.all(ranked[..., -1] - ranked[..., -2] > 1e-3))
    return True


# -- error analysis -----------------------------------------------------------------------------

def _broadcast_count(case: Case, name: str) -> int:
    """How many entries of the broadcast difference are summed into one element of ``name``."""
    full = np.broadcast_shapes(case.inputs["x1"].shape, case.inputs["x2"].shape)
    return max(1, int(np.prod(full, dtype=np.int64)) // max(1, case.inputs[name].size))


def _reduction(case: Case, tensor: str) -> int:
    return _broadcast_count(case, tensor[len("grad."):]) if tensor.startswith("grad.") else \
        max(1, int(np.broadcast_shapes(case.inputs["x1"].shape, case.inputs["x2"].shape)[-1]))


def _rounded_difference(x1: np.ndarray, x2: np.ndarray, p: float, eps: float, dt: Any
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(d, |d|, e, N): d = x1 - x2 + eps, the bound e on its two roundings, u·(|x1 - x2| + |d| +
    eps) (+ the smallest subnormal when eps != 0) and the norm N = ‖d‖_p over the last dim
    (kept)."""
    diff = x1 - x2
    d = diff + eps
    a = np.abs(d)
    e = dt.unit_roundoff * (np.abs(diff) + a + abs(eps)) + (dt.min_subnormal if eps else 0.0)
    return d, a, e, ref.vector_norm(d, p, keepdim=True)


def _magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """First-order error bounds, as absolute errors converted to units of u (``bound_as_magnitude``).

    - d: fl(fl(x1 - x2) + eps): |δd| <= e = u·(|x1 - x2| + |d| + eps) (+ the dtype's smallest
      subnormal when eps != 0: eps itself may be rounded into the subnormal range);
    - p = 0: a count, exact (zero entries are exact on both sides); p = ±inf: the max (min) is
      1-Lipschitz, E = max e;
    - finite p: E = Σ s·e + N·u·((2√D + 2)/|p| + 2 + |ln N|) with s = (|d|/N)^(p-1) the
      sensitivity; the second term: the powers, the sum of D terms and the root (whose relative
      error is the sum's divided by p), and the exponent 1/p rounded to the working precision,
      which perturbs S^(1/p) by a factor S^δ, |δ| <= u/|p|, S = N^p: relative |ln N|·u;
    - gradient s·sign(d)·g: exact for p = 1 (a sign); one rounding for ±inf (g/m), except on a
      row whose extreme is ambiguous under the rounding of d (another entry within e_i + e_max of
      the extreme |d|: the rounded values may tie or swap, and torch's convention then shares or
      moves g): there each such candidate entry may be off by up to |g|; otherwise
      |G|·(|p - 1|·(e/|d| + E/N) + 6u) + 2·tiny (a gradient in the subnormal range: the backend's
      and the reference's own final roundings, each up to tiny/2); summed over broadcast axes with
      2√K·u·Σ|G| more.
    """
    x1, x2 = case.inputs["x1"], case.inputs["x2"]
    p, eps, keepdim = _params(case)
    dt = DTYPES[case.dtype]
    u = dt.unit_roundoff
    d, a, e, norm = _rounded_difference(x1, x2, p, eps, dt)
    dim = d.shape[-1]
    with np.errstate(all="ignore"):
        if p == 0:
            err_out = np.zeros(norm.shape)
        elif np.isinf(p):
            err_out = e.max(axis=-1, keepdims=True)
        else:
            s = ref.sensitivity(d, norm, p)
            log_norm = np.abs(np.log(np.where(norm > 0, norm, 1.0)))
            err_out = np.nansum(s * e, axis=-1, keepdims=True) + norm * u * (
                (2 * math.sqrt(dim) + 2) / abs(p) + 2 + log_norm)
    out = {"output": bound_as_magnitude((err_out if keepdim else err_out[..., 0]) / u, _reduction(case, "output"))}
    if "x1" not in result.grads:
        return out
    g = case.cotangents["output"]
    g = g if keepdim else g[..., None]
    big_g = np.abs(g * ref.sensitivity(d, norm, p))
    with np.errstate(all="ignore"):
        if p in (0.0, 1.0):
            err_g = np.zeros(d.shape)
        elif np.isinf(p):
            # The extreme entry is chosen on the rounded d: entries within e_i + e_extreme of the
            # extreme |d| can tie with it or overtake it there, and then share or take g (torch's
            # convention, on its own rounded values): on such a row each of those candidates may
            # get anything from 0 to g.
            extreme = a == norm
            e_top = np.max(np.where(extreme, e, 0.0), axis=-1, keepdims=True)
            near = np.abs(a - norm) <= e + e_top
            ambiguous = near.sum(axis=-1, keepdims=True) > extreme.sum(axis=-1, keepdims=True)
            err_g = np.where(ambiguous & near, np.abs(g) * (1 + u), u * big_g)
        else:
            rel = abs(p - 1) * (e / a + err_out / norm) + 6 * u
            # + the backend's and the reference's own roundings of a result in the subnormal range
            err_g = np.where(big_g > 0, big_g * rel + 2 * dt.min_subnormal, 0.0)
    for name, x in (("x1", x1), ("x2", x2)):
        k = _broadcast_count(case, name)
        total = ref.sum_to_shape(np.broadcast_to(err_g, d.shape), x.shape) \
            + 2 * math.sqrt(k) * u * ref.sum_to_shape(np.broadcast_to(big_g, d.shape), x.shape)
        out[f"grad.{name}"] = bound_as_magnitude(total / u, k)
    return out


# -- known torch discrepancy -------------------------------------------------------------------

def unscaled_powers_leave_range(case: Case) -> bool:
    """torch evaluates the powers of the p-norm unscaled: the forward's Σ|d|^p = N^p in its opmath
    type (float32 for float32, float16 and bfloat16; float64 for float64), the backward's
    N^(p-1) and |d|^(p-2) (|d|^(p-1) for p < 2) in the case dtype itself. Where one of them leaves
    that format's normal range the result overflows or underflows (inf, 0, NaN gradients from
    0·inf) although the distance and its gradient are representable: large p, or tiny distances
    (x1 == x2, d = eps) with p ∉ {1, 2}. Rows with N = 0 are exact unless a power of a non-zero
    entry overflows; an underflowing |d|^(p-2) is ignored where the true sensitivity
    (|d|/N)^(p-1) is below the smallest subnormal too."""
    p, eps, _ = _params(case)
    if not math.isfinite(p) or p in (0.0, 1.0, 2.0):
        return False
    forward = DTYPES["float64" if case.dtype == "float64" else "float32"]
    backward = DTYPES[case.dtype]
    d = ref.difference(case.inputs["x1"], case.inputs["x2"], eps)
    a = np.abs(d)
    norm = ref.vector_norm(d, p, keepdim=True)
    live = norm > 0
    with np.errstate(all="ignore"):
        log_norm = np.log2(np.where(live, norm, 1.0))
        log_a = np.log2(np.where(a > 0, a, 1.0))
    # The backward multiplies its powers by the cotangent: keep that much headroom (plus a binade).
    g = case.cotangents.get("output")
    headroom = 1.0 + (max(0.0, math.log2(float(np.max(np.abs(g))))) if g is not None and np.size(g)
                      and np.max(np.abs(g)) > 0 else 0.0)
    lo = lambda dt, m=0.0: math.log2(dt.min_normal) + m  # noqa: E731
    hi = lambda dt, m=0.0: math.log2(dt.max_value) - m  # noqa: E731
    outside = lambda v, dt, m=0.0: live & ((v < lo(dt, m)) | (v > hi(dt, m)))  # noqa: E731
    if np.any(outside(p * log_norm, forward)) or np.any(outside((p - 1) * log_norm, backward, headroom)):
        return True
    power = ((p - 2) if p > 2 else (p - 1)) * log_a
    sensitivity = (p - 1) * (log_a - log_norm)
    lost = (power < lo(backward)) & (sensitivity > math.log2(backward.min_subnormal))
    # An overflowing power is wrong even where N = 0 (p < 1: inf·N^(1-p) = inf·0 = NaN).
    return bool(np.any((a > 0) & ((power > hi(backward, headroom)) | (live & lost))))


def p_of(case: Case) -> float:
    return float(case.params["p"])


def difference_of(case: Case) -> np.ndarray:
    return ref.difference(case.inputs["x1"], case.inputs["x2"], float(case.params["eps"]))


# -- CosineSimilarity -----------------------------------------------------------------------------------


def _cosine_norms(case: Case) -> tuple[np.ndarray, ...]:
    x1, x2 = np.broadcast_arrays(case.inputs["x1"], case.inputs["x2"])
    x1, x2 = np.atleast_1d(x1), np.atleast_1d(x2)
    axis = case.params["dim"] % max(x1.ndim, 1)
    n1 = np.sqrt(np.sum(x1 * x1, axis=axis, keepdims=True))
    n2 = np.sqrt(np.sum(x2 * x2, axis=axis, keepdims=True))
    return x1, x2, n1, n2, axis


def cosine_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """First-order bounds (units of u) of y = Σ a1·a2, a = x/c, c = max(‖x‖₂, eps) over D entries:
    each norm ‖x‖ = √(Σx²) carries (2√D·Σx²/2)/‖x‖² + 1 = √D + 1 relative (the sum, halved by
    the root, and the root), a clamped one the rounding of eps to the format, |fl(eps) − eps|/eps
    exactly (eps may round into the subnormal range); a = x/c one more, the product one more, the
    sum 2√D·Σ|a1·a2|:

        E_y = Σ|a1·a2|·(e1 + e2 + 3 + 2√D).

    The gradient g·(a2 − y·x1/‖x1‖)/‖x1‖ (g·a2/eps where clamped), with x̂1 = x1/‖x1‖:
        E_g1 = |g|/c1·(|a2|·(e1 + e2 + 3) + |y|·|x̂1|·(2·e1 + 4) + E_y·|x̂1|) + |grad|,
    summed over broadcast axes with 2√K·Σ|grad| more (K the broadcast count)."""
    u = DTYPES[case.dtype].unit_roundoff
    eps = float(case.params["eps"])
    x1, x2, n1, n2, axis = _cosine_norms(case)
    root_d = math.sqrt(max(x1.shape[axis], 1))
    eps_fl = float(DTYPES[case.dtype].round(np.asarray(eps)))
    eps_err = abs(eps_fl - eps) / eps / u if eps > 0 else 0.0
    with np.errstate(all="ignore"):
        c1, c2 = np.maximum(n1, eps), np.maximum(n2, eps)
        e1 = np.where(n1 >= eps, root_d + 1, eps_err)
        e2 = np.where(n2 >= eps, root_d + 1, eps_err)
        a1, a2 = x1 / c1, x2 / c2
        s = np.sum(np.abs(a1 * a2), axis=axis, keepdims=True)
        e_y = s * (e1 + e2 + 3 + 2 * root_d)
        y = np.sum(a1 * a2, axis=axis, keepdims=True)
        out = {"output": np.squeeze(e_y, axis=axis).reshape(np.shape(result.outputs["output"]))}
        g = case.cotangents.get("output")
        if g is None:
            return out
        g = np.expand_dims(np.asarray(g), axis) if np.ndim(g) < x1.ndim else np.asarray(g)
        for name, (xa, c, n, ea, eb, a_other) in (("x1", (x1, c1, n1, e1, e2, a2)), ("x2", (x2, c2, n2, e2, e1, a1))):
            hat = np.where(n > 0, xa / np.where(n > 0, n, 1.0), 0.0)
            grad = np.abs(g) / c * (np.abs(a_other) + np.abs(y) * np.abs(hat))
            err = np.abs(g) / c * (np.abs(a_other) * (ea + eb + 3) + np.abs(y) * np.abs(hat) * (2 * ea + 4)
                                   + e_y * np.abs(hat)) + grad
            shape = np.shape(case.inputs[name])
            k = max(1, int(np.prod(err.shape)) // max(1, int(np.prod(shape))))
            full = np.broadcast_shapes(np.shape(case.inputs["x1"]), np.shape(case.inputs["x2"]))
            err, grad = err.reshape(full), grad.reshape(full)
            total = ref.sum_to_shape(err, shape) + 2 * math.sqrt(k) * ref.sum_to_shape(grad, shape)
            out[f"grad.{name}"] = total
    return out


def cosine_reduction(case: Case, tensor: str) -> int:
    x = np.broadcast_shapes(np.shape(case.inputs["x1"]), np.shape(case.inputs["x2"]))
    return max(1, x[case.params["dim"]] if x else 1)


def cosine_clamped_norm(case: Case) -> bool:
    """Some vector's norm is below eps but not 0: torch differentiates the norm through the clamp
    (its backward has the term −(x̂·a_other)·x̂/eps that the clamped forward does not)."""
    _, _, n1, n2, _ = _cosine_norms(case)
    eps = float(case.params["eps"])
    return bool(np.any((n1 > 0) & (n1 < eps)) or np.any((n2 > 0) & (n2 < eps)))


def cosine_norm_below_eps(case: Case) -> bool:
    """Some vector's norm is below eps, 0 included (``cosine_clamped_norm`` or ``has_zero_vector``): the
    cases whose gradient divides by the clamped norm, which inductor's float32 arithmetic (eps a float32
    constant, never 0) computes alike for a zero vector and a short one."""
    _, _, n1, n2, _ = _cosine_norms(case)
    eps = float(case.params["eps"])
    return bool(np.any(n1 < eps) or np.any(n2 < eps))


def cosine_zero_vector_float16(case: Case) -> bool:
    """float16 with a zero vector: eps underflows to 0 (the default 1e-8) and torch divides 0 by 0,
    or the gradient a_other/eps leaves float16's range and torch's backward makes NaN of it."""
    return case.dtype == "float16" and has_zero_vector(case)


def has_zero_vector(case: Case) -> bool:
    _, _, n1, n2, _ = _cosine_norms(case)
    return bool(np.any(n1 == 0) or np.any(n2 == 0))


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` down to ``shape`` (the gradient of a broadcast input)."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape)) if n == 1 and m != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def unscaled_norm_result(case: Case) -> dict[str, np.ndarray]:
    """What torch computes for a float64 (or float32) PairwiseDistance with finite p ∉ {0, 1, 2}:
    N = (Σ|d|^p)^(1/p) and the gradient d·|d|^(p-2)·(g/N^(p-1)) (sgn(d)·|d|^(p-1) for p < 2; for
    p < 1 sgn(d)·|d|^(p-1)·g·N^(1-p)), the powers unscaled, in the case's format (at::norm and
    its norm_backward), so that they overflow or underflow where the exact result does not."""
    p, eps, keepdim = _params(case)
    dt = np.dtype(case.dtype)
    x1, x2 = np.asarray(case.inputs["x1"], dtype=dt), np.asarray(case.inputs["x2"], dtype=dt)
    with np.errstate(all="ignore"):
        d = x1 - x2 + dt.type(eps)
        a = np.abs(d)
        norm = np.power(np.sum(np.power(a, dt.type(p)), axis=-1, keepdims=True), dt.type(1 / p))
        out = {"output": (norm if keepdim else norm[..., 0]).astype(np.float64)}
        g = case.cotangents.get("output")
        if g is None:
            return out
        g = np.asarray(g, dtype=dt)
        g = g if keepdim else g[..., None]
        if p < 1:
            scaled = np.where(d == 0, dt.type(0), np.sign(d) * np.power(a, dt.type(p - 1)))
            grad = scaled * g * np.power(norm, dt.type(1 - p))
        else:
            scaled = np.sign(d) * np.power(a, dt.type(p - 1)) if p < 2 else d * np.power(a, dt.type(p - 2))
            grad = scaled * np.where(norm == 0, dt.type(0), g / np.power(norm, dt.type(p - 1)))
    for name, sign in (("x1", 1.0), ("x2", -1.0)):
        out[f"grad.{name}"] = _unbroadcast(sign * grad.astype(np.float64), np.shape(case.inputs[name]))
    return out


def unscaled_powers_beyond_bound(case: Case) -> bool:
    """``unscaled_powers_leave_range`` where torch's unscaled result (``unscaled_norm_result``)
    is non-finite where the reference is finite (or the reverse), or beyond the case's bound:
    exactly where the discrepancy shows."""
    from conformance.numerics.elementwise import shows_against_reference

    return unscaled_powers_leave_range(case) and shows_against_reference(case, unscaled_norm_result(case))

# -- the power sum flushed to zero ----------------------------------------------------------------------


def _flushed_rows(case: Case) -> np.ndarray:
    """Rows (over the last dim) where every |d|^p of torch's forward (float64 opmath for float64,
    float32 otherwise) rounds to 0 although some d is non-zero: Σ|d|^p = 0, so torch's distance is 0
    and its gradient 0 where the exact distance is at least max|d| > 0. Not rows of one element:
    torch's norm kernel returns |d| there without taking powers (``unscaled_powers_model``)."""
    p, eps, _ = _params(case)
    if not math.isfinite(p) or p <= 0:
        return np.zeros((), dtype=bool)
    d = np.atleast_1d(difference_of(case))
    forward = np.float64 if case.dtype == "float64" else np.float32
    with np.errstate(all="ignore"):
        powers = np.power(np.abs(d).astype(forward), forward(p))
    return np.all(powers == 0, axis=-1) & np.any(d != 0, axis=-1) & (d.shape[-1] > 1)


def power_sum_flushes_to_zero(case: Case) -> bool:
    """Some row's Σ|d|^p underflows to exactly 0 in torch's forward (``_flushed_rows``): large p,
    or x1 == x2 (d = eps) with p > 1."""
    return bool(np.any(_flushed_rows(case)))


def power_sum_flushed_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """What ``power_sum_flushes_to_zero`` predicts torch computes: the reference's results with the
    distance and both gradients 0 on the flushed rows (gradients only where the input has the full
    broadcast shape: a broadcast input's gradient mixes rows and is not predicted)."""
    rows = _flushed_rows(case)
    predicted: dict[str, np.ndarray] = {}
    out = np.asarray(reference.outputs["output"], dtype=np.float64)
    predicted["output"] = np.where(rows.reshape(out.shape), 0.0, out)
    shape = np.atleast_1d(difference_of(case)).shape
    grad_d = None  # the gradient with respect to d = x1 - x2 + eps, from an input of the full shape
    for name, sign in (("x1", 1.0), ("x2", -1.0)):
        grad = reference.grads.get(name)
        if grad is not None and np.shape(grad) == shape:
            grad_d = sign * np.asarray(grad, dtype=np.float64)
    if grad_d is None:
        return predicted
    grad_d = np.where(rows[..., None], 0.0, grad_d)
    for name, sign in (("x1", 1.0), ("x2", -1.0)):
        grad = reference.grads.get(name)
        if grad is not None:
            predicted[f"grad.{name}"] = sign * _sum_to(grad_d, np.shape(grad))
    return predicted


def _sum_to(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` summed over the dims it was broadcast along from ``shape``."""
    extra = values.ndim - len(shape)
    out = values.sum(axis=tuple(range(extra))) if extra > 0 else values
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and out.shape[i] != 1)
    return (out.sum(axis=axes, keepdims=True) if axes else out).reshape(shape)


def vmap_slice_power_sum_flushes_to_zero(case: Case) -> bool:
    """A vmap case some slice of which (``VmapMode.slice_case``: the case, or a seeded permutation
    of its values) has a row whose Σ|d|^p underflows to 0 in torch's forward
    (``power_sum_flushes_to_zero``)."""
    from conformance.modes import mode_of

    node = case.mode_node
    if node.get("kind") != "vmap":
        return power_sum_flushes_to_zero(case)
    vmap = mode_of("vmap")
    return any(power_sum_flushes_to_zero(vmap.slice_case(case, b)) for b in range(int(node.get("batch", 1))))


# -- second order (the vjp2 mode's terms that cancel in every direction) ---------------------------


def _direction_of_d(case: Case, v: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    w = np.zeros(shape)
    if "x1" in v:
        w = w + np.broadcast_to(np.asarray(v["x1"], dtype=np.float64), shape)
    if "x2" in v:
        w = w - np.broadcast_to(np.asarray(v["x2"], dtype=np.float64), shape)
    return w


def pairwise_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                                g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bound on the rounding of the second-order terms of PairwiseDistance (finite p ∉ {0, 1}; the
    others' gradients are selections, exact, with no second-order terms), which cancel where the
    norm is homogeneous along every direction (one entry per row: N = |d|).

    With σ_i = sign(d_i)·(|d_i|/N)^(p-1) the gradient's sensitivity and w = v₁ - v₂ the direction
    of d, H·w has, per entry, the terms (p-1)/N·g·((|d_i|/N)^(p-2)·w_i - σ_i·Σ_j σ_j·w_j): of scale
    T_i = |p-1|·|g|/N·((|d_i|/N)^(p-2)·|w_i| + |σ_i|·Σ_j |σ_j|·|w_j|). Each is formed from the
    same rounded powers as the gradient, so it carries the gradient's relative error
    |p-1|·(e/|d| + E/N) + 6u (``_magnitude``), and two more roundings (4u): T·(rel + 4u), summed
    over broadcast axes with 2√K·u·ΣT more."""
    p, eps, keepdim = _params(case)
    cot = g.get("output")
    if cot is None or not math.isfinite(p) or p in (0.0, 1.0):
        return {}
    x1, x2 = case.inputs["x1"], case.inputs["x2"]
    dt = DTYPES[case.dtype]
    u = dt.unit_roundoff
    d, a, e, norm = _rounded_difference(x1, x2, p, eps, dt)
    dim = d.shape[-1]
    gg = np.abs(np.asarray(cot, dtype=np.float64))
    gg = gg if keepdim else gg[..., None]
    w = np.abs(_direction_of_d(case, v, d.shape))
    with np.errstate(all="ignore"):
        s = ref.sensitivity(d, norm, p)
        flat = np.where(a > 0, (a / norm) ** (p - 2), 1.0 if p == 2 else 0.0)
        terms = abs(p - 1) * gg / norm * (flat * w + s * np.sum(s * w, axis=-1, keepdims=True))
        log_norm = np.abs(np.log(np.where(norm > 0, norm, 1.0)))
        err_out = np.nansum(s * e, axis=-1, keepdims=True) + norm * u * (
            (2 * math.sqrt(dim) + 2) / abs(p) + 2 + log_norm)
        rel = abs(p - 1) * (np.where(a > 0, e / a, 0.0) + err_out / norm) + 10 * u
        err = np.where(np.isfinite(terms) & (norm > 0), terms * rel, 0.0)
        terms = np.where(np.isfinite(terms) & (norm > 0), terms, 0.0)
    out = {}
    for name, x in (("x1", x1), ("x2", x2)):
        if name not in v:
            continue
        k = _broadcast_count(case, name)
        out[f"d2.{name}"] = ref.sum_to_shape(err, x.shape) + 2 * math.sqrt(k) * u * ref.sum_to_shape(terms, x.shape)
    return out


def cosine_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                              g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bound on the rounding of CosineSimilarity's second-order terms (norms above eps: the vjp2
    domain), which cancel where the similarity is constant in every direction (1-element vectors:
    y = sign(x1)·sign(x2)). With x̂ = x/n, a = x/c, y = Σ a1·a2 and the directions w1, w2, the
    gradient g·(a2 - y·x̂1)/n1 differentiated along them has terms of scale

        T1 = |g|·((|δa2| + |δy|·|x̂1| + |y|·|δx̂1|)/n1 + (|a2| + |y|·|x̂1|)·Σ|x̂1|·|w1|/n1²),

    |δa2| = (|w2| + |x̂2|·Σ|x̂2|·|w2|)/n2, |δx̂1| likewise, |δy| = Σ(|a2| + |y|·|x̂1|)·|w1|/n1 +
    Σ(|a1| + |y|·|x̂2|)·|w2|/n2 (the absolute terms of each derivative). Each is formed from the
    gradient's rounded intermediates: relative error (2·e1 + e2 + 2√D + 7)·u, e = √D + 1 (the norms'
    and the sum's, ``cosine_errors``); summed over broadcast axes with 2√K·u·ΣT more."""
    cot = g.get("output")
    if cot is None:
        return {}
    u = DTYPES[case.dtype].unit_roundoff
    eps = float(case.params["eps"])
    x1, x2, n1, n2, axis = _cosine_norms(case)
    full = x1.shape
    root_d = math.sqrt(max(x1.shape[axis], 1))
    w1 = np.abs(np.broadcast_to(np.asarray(v.get("x1", 0.0), dtype=np.float64), np.shape(case.inputs["x1"])))
    w2 = np.abs(np.broadcast_to(np.asarray(v.get("x2", 0.0), dtype=np.float64), np.shape(case.inputs["x2"])))
    w1, w2 = np.broadcast_arrays(w1, w2)
    w1, w2 = np.atleast_1d(w1).reshape(full), np.atleast_1d(w2).reshape(full)
    gg = np.abs(np.asarray(cot, dtype=np.float64))
    gg = np.expand_dims(gg, axis) if gg.ndim < x1.ndim else gg
    with np.errstate(all="ignore"):
        if np.any(n1 < eps) or np.any(n2 < eps):
            return {}
        h1, h2 = np.abs(x1) / n1, np.abs(x2) / n2
        y = np.abs(np.sum(x1 * x2, axis=axis, keepdims=True)) / (n1 * n2)
        dy = np.sum((h2 + y * h1) * w1, axis=axis, keepdims=True) / n1 + \
            np.sum((h1 + y * h2) * w2, axis=axis, keepdims=True) / n2
        dh1 = (w1 + h1 * np.sum(h1 * w1, axis=axis, keepdims=True)) / n1
        dh2 = (w2 + h2 * np.sum(h2 * w2, axis=axis, keepdims=True)) / n2
        t1 = gg * ((dh2 + dy * h1 + y * dh1) / n1 + (h2 + y * h1) * np.sum(h1 * w1, axis=axis, keepdims=True) / n1**2)
        t2 = gg * ((dh1 + dy * h2 + y * dh2) / n2 + (h1 + y * h2) * np.sum(h2 * w2, axis=axis, keepdims=True) / n2**2)
        rel = (3 * (root_d + 1) + 2 * root_d + 7) * u
    out = {}
    for name, t in (("x1", t1), ("x2", t2)):
        if name not in v:
            continue
        t = np.where(np.isfinite(t), t, 0.0)
        shape = np.shape(case.inputs[name])
        k = max(1, int(np.prod(full)) // max(1, int(np.prod(shape))))
        t = t.reshape(np.broadcast_shapes(np.shape(case.inputs["x1"]), np.shape(case.inputs["x2"])))
        out[f"d2.{name}"] = ref.sum_to_shape(t * rel, shape) + 2 * math.sqrt(k) * u * ref.sum_to_shape(t, shape)
    return out


def cosine_norm_tangent_overflows_float16(case: Case) -> bool:
    """A float16 vjp2 case whose composition runs forward-mode AD (``forward-over-reverse``,
    ``reverse-over-forward``) and whose direction v makes some product x·v of the norms' tangent
    leave float16's range: torch's vector_norm JVP forms (x·t).sum()/‖x‖ in float16 (not in the
    forward kernel's float32 opmath), so the tangent is ±inf (and the second-order results inf or
    NaN) although ‖x‖'s derivative x·t/‖x‖ is representable."""
    node = case.mode_node
    if case.dtype != "float16" or node.get("kind") != "vjp2" or node.get("composition") == "reverse-over-reverse":
        return False
    from conformance.modes import mode_of

    v = mode_of("vjp2").directions(case)  # type: ignore[attr-defined]
    top = DTYPES["float16"].max_value
    return any(bool(np.any(np.abs(np.asarray(case.inputs[n]) * v[n]) > top)) for n in v)


def unscaled_powers_leave_range_second_order(case: Case) -> bool:
    """``unscaled_powers_leave_range`` for a vjp2 case: the second-order computations multiply the
    same unscaled powers by the direction v too (J·v: |d|^(p-1)·v, where v takes the cotangent's
    place, hence its headroom), and the double backward forms N^(2p-2) (the derivative of 1/N^(p-1)),
    which leaves the range where N^(p-1) does not: then torch's second derivative is wrong although
    finite (p = 100, |d| ≈ 148 in float64: N^198 overflows)."""
    from dataclasses import replace

    from conformance.modes import mode_of

    p, eps, _ = _params(case)
    if not math.isfinite(p) or p in (0.0, 1.0):
        return False
    node = case.mode_node
    g = case.cotangents.get("output")
    if node.get("kind") == "vjp2" and g is not None:
        v = mode_of("vjp2").directions(case)  # type: ignore[attr-defined]
        top = max((float(np.max(np.abs(x))) for x in v.values() if np.size(x)), default=1.0)
        widened = replace(case, cotangents={**case.cotangents, "output": np.asarray(g) * max(1.0, top)})
    else:
        widened = case
    if p != 2.0 and unscaled_powers_leave_range(widened):
        return True
    backward = DTYPES[case.dtype]
    d = ref.difference(case.inputs["x1"], case.inputs["x2"], eps)
    norm = ref.vector_norm(d, p, keepdim=True)
    live = norm > 0
    with np.errstate(all="ignore"):
        log_norm = np.log2(np.where(live, norm, 1.0))
    twice = (2 * p - 2) * log_norm
    return bool(np.any(live & ((twice < math.log2(backward.min_normal)) | (twice > math.log2(backward.max_value)))))
