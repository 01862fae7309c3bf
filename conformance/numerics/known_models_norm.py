"""Models (``model = "module:function"``) of known normalisation entries (conformance/known/normalization.toml):
what torch computes when the bug applies, so that an entry explains only values agreeing with it
(the masking audit, conformance/audit.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.numerics.normalization import torch_cross_map_lrn


def cross_map_lrn_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """Model of ``crossmaplrn2d-forward-window-*``, ``crossmaplrn2d-backward-window-*`` and
    ``crossmaplrn2d-out-of-range-float16``: torch's CrossMapLRN2d replayed op by op in the case's
    dtype (``torch_cross_map_lrn``: its running window sums, one channel late and never
    dropping channel 0, and its hand-written backward over the shifted window), so that only the
    values the off-by-one windows (or the dtype's range) make torch compute are explained."""
    out: dict[str, object] = dict(torch_cross_map_lrn(case, case.dtype))
    if case.dtype == "bfloat16" and float(case.params["beta"]) == 0.5:
        # rsqrt's vector and scalar paths round differently (``_cross_map_pow``): the split is the
        # CPU's vector width's (other CPUs and CUDA differ), so either path's value is accepted
        u = DTYPES[case.dtype].unit_roundoff
        others = [torch_cross_map_lrn(case, case.dtype, path) for path in ("vector", "scalar")]
        with np.errstate(all="ignore"):
            for name, value in list(out.items()):
                spread = np.fmax(*(np.abs(o[name] - value) for o in others))  # NaN only where both are
                out[name] = (value, np.abs(value) + 2 * np.where(np.isfinite(spread), spread, 0.0) / u)
    return out


def lrn_composite_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """Model of ``lrn-composite-out-of-range-float16``: F.local_response_norm's composite with each op
    rounded to the dtype as torch computes it (``lrn_composite_result``: the square or the division
    backward's (x/p)/p overflowing or underflowing there), on the 3-d inputs it replays (none
    otherwise: the entry then explains nothing)."""
    from conformance.numerics.normalization import lrn_composite_result

    if case.inputs["input"].ndim != 3:
        return {}
    return lrn_composite_result(case)


def rms_norm_torch_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """Model of ``rmsnorm-cpu-eps-none-float32-eps`` and ``rmsnorm-cpu-backward-rstd-cubed-underflow-*``:
    torch's CPU RMSNorm, the composite y = x·rsqrt(mean(x²) + eps)·w in the compute type (float32 for
    float16/bfloat16), differentiated by autograd. Two departures from the documented function:
    eps None is the compute type's epsilon (float32's 2^-23 for float16/bfloat16 inputs), and rsqrt's
    backward forms rstd³ (``result.pow(3)``: rstd·rstd·rstd, each product rounded to the compute type)
    which underflows (to a subnormal or 0) for rows of huge root mean square, scaling the
    x·mean(ĝ·x)·rstd³ term of grad.input. Everything else is evaluated exactly (float64, rows
    rescaled so nothing underflows); the rounded rstd³ is the only value replayed, and the bound of
    grad.input adds the quantum of that subnormal (the compute type's smallest subnormal) times the
    term's factor x·mean(ĝ·x)."""
    from conformance.numerics.normalization import values_per_slice
    from reference import normalization as RN

    p = case.params
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    compute = "float64" if case.dtype == "float64" else "float32"
    eps = float(np.finfo(np.dtype(compute)).eps) if p["eps"] is None else float(p["eps"])
    axes = RN.trailing_axes(x, p["normalized_shape"])
    n = values_per_slice(case)
    w = case.inputs.get("weight")
    w = np.ones(x.shape[axes[0]:]) if w is None else np.asarray(w, dtype=np.float64)
    out_dt, cmp_dt = DTYPES[case.dtype], DTYPES[compute]
    with np.errstate(all="ignore"):
        big = np.max(np.abs(x), axis=axes, keepdims=True) if x.size else np.ones(x.shape[:axes[0]] + (1,) * len(axes))
        big = np.where((big > 0) & np.isfinite(big), big, 1.0)
        xs = x / big  # the row rescaled: mean(x²) = big²·mean(xs²)
        ms = np.mean(xs * xs, axis=axes, keepdims=True)
        rms = big * np.sqrt(ms + eps / (big * big))
        r = 1 / rms
        out = {"output": out_dt.round(x * r * w)}
        g = case.cotangents.get("output")
        if g is None:
            return out
        g = np.asarray(g, dtype=np.float64)
        gw = g * w
        s = np.sum(gw * xs, axis=axes, keepdims=True) * big  # Σ ĝ·x
        factor = x * s / n  # x·mean(ĝ·x): the term is -factor·rstd³
        exact_r3 = r * r * r
        if compute == "float64":
            r3 = (r * r) * r  # native float64: underflows as torch's does
        else:
            r3 = cmp_dt.round(cmp_dt.round(r * r) * r)
        term = np.where(exact_r3 >= cmp_dt.min_normal, -(xs * (r * big)) * (r * (r * s)) / n, -factor * r3)
        if "input" in case.differentiable:
            quantum = np.where(exact_r3 >= cmp_dt.min_normal, 0.0, np.abs(factor) * cmp_dt.min_subnormal)
            magnitude = np.abs(gw * r) + np.abs(term) + quantum / out_dt.unit_roundoff
            out["grad.input"] = (out_dt.round(gw * r + term), magnitude)
        if "weight" in case.differentiable and "weight" in case.inputs:
            outer = tuple(range(axes[0]))
            out["grad.weight"] = out_dt.round(np.sum(g * x * r, axis=outer))
    return out


# -- GroupNorm: groupnorm-cpu-channels-last-one-pass-variance-* and groupnorm-cpu-backward-one-pass-cancellation --
#
# Both models are structural: per (sample, group) of M = (C/G)·prod(spatial) values, torch's result is
# an exact expression in the few numbers its kernel computes once per group (the rstd it saved, its c2,
# the error of its mean), plus per-element roundings e_i with a derived bound |e_i| <= err_i. The models
# take those numbers from the backend's own values by a least-squares fit weighted by 1/err_i, but only
# inside the intervals the kernel's arithmetic allows. torch's own numbers are feasible and leave
# Σ(e_i/err_i)² <= M, so the constrained fit leaves no more: every element of torch's result is within
# err_i·√M of the prediction, the allowed error. A gross change (×1.25 + 0.5) needs numbers outside
# the intervals or deviations beyond the roundings. Sums of n terms err by up to γ_n·u·Σ|terms| with
# γ_n = 2√n (the probabilistic bound reference.normalization_errors and the tolerance engine use);
# u is the compute type's (float64 for float64, float32 otherwise).


def _sum_error(n: float) -> float:
    """γ_n in units of u: a sum of n terms errs by up to γ_n·u·Σ|terms| (2√n, probabilistic)."""
    return 2.0 * math.sqrt(max(n, 1))


@dataclass(frozen=True)
class _Groups:
    """A GroupNorm case in the (N, G, M) view (M = D·HW values per group, channel-major), the
    per-element weight and bias (1 and 0 without them), the exact statistics (N, G, 1), which groups
    torch can compute finitely, the compute type's unit roundoff, and which kernel torch picks."""

    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    d: int
    hw: int
    mean: np.ndarray
    var: np.ndarray
    finite: np.ndarray
    u: float
    compute: str
    eps: float
    channels_last: bool

    @property
    def m(self) -> int:
        return self.d * self.hw


def _groups(case: Case) -> _Groups | None:
    from conformance import strategies as S
    from reference import normalization as RN

    x = np.asarray(case.inputs["input"], dtype=np.float64)
    if x.ndim < 2 or not x.size:
        return None
    n, groups, d, hw = RN.group_view(x.shape, int(case.params["num_groups"]))
    xv = x.reshape(n, groups, d * hw)

    def per_element(name: str, default: float) -> np.ndarray:
        value = case.inputs.get(name)
        if value is None:
            return np.full((1, groups, d * hw), default)
        value = np.asarray(value, dtype=np.float64).reshape(1, groups, d, 1)
        return np.broadcast_to(value, (1, groups, d, hw)).reshape(1, groups, d * hw)

    gamma, beta = per_element("weight", 1.0), per_element("bias", 0.0)
    compute = "float64" if case.dtype == "float64" else "float32"
    limit = DTYPES[compute].max_value
    with np.errstate(all="ignore"):
        mean, var = RN.moments(xv, (2,))
        finite = np.all(np.isfinite(xv), axis=2, keepdims=True) & np.all(np.isfinite(gamma * beta), axis=2,
                                                                          keepdims=True)
        channels_last = S.channels_last_like(x.shape, S.torch_strides(x.shape, case.layout("input")))
        if channels_last:  # its one-pass sum of x² must stay finite in the compute type
            finite &= np.max(np.abs(xv), axis=2, keepdims=True) ** 2 * (d * hw) < limit
    return _Groups(xv, gamma, beta, d, hw, mean, var, finite, DTYPES[compute].unit_roundoff, compute,
                   float(case.params["eps"]), channels_last)


def _statistics_bounds(v: _Groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: δμ, the largest error of torch's mean, and [lo, hi], the interval of the rstd it uses.

    - mean: a sum of M values, then ·fl(1/M): |μ_t - μ| <= (γ_M + 2)·u·mean|x|; exact for M = 1 (one
      value, times 1).
    - variance, channels-last kernel (one pass): v_t = fl(S2·s) - μ_t², S2 = Σx²: E[x²] errs by
      (γ_M + 2)·u·E[x²] (+ the smallest subnormal, for squares that underflow), μ_t² by 2|μ|·δμ + u·μ², the
      difference by u·E[x²]: δv = (γ_M + 3)·u·E[x²] + 2|μ|·δμ + u·μ², against a variance that may be far
      smaller (the cancellation; v_t is clamped at 0).
    - variance, contiguous kernel (Welford): the updates carry the mean's error into each deviation,
      δv = (γ_M + 2)·u·v + 2γ_M·u·|μ|·σ (0 for a constant group, whose deviations are exactly 0).
    - rstd = fl(1/fl(sqrt(v_t + eps))): 3 roundings, eps itself rounded to the compute type:
      lo = (1 - 3u)/sqrt(v + δv + eps·(1 + u)), hi = (1 + 3u)/sqrt(max(v - δv, 0) + eps·(1 - u)).
    """
    u, m = v.u, v.m
    with np.errstate(all="ignore"):
        x, mean, var = v.x, v.mean, v.var
        dmu = np.zeros_like(mean) if m == 1 else (_sum_error(m) + 2) * u * np.mean(np.abs(x), axis=2, keepdims=True)
        if v.channels_last:
            dvar = ((_sum_error(m) + 3) * u * np.mean(x * x, axis=2, keepdims=True) + 2 * np.abs(mean) * dmu
                    + u * mean * mean + DTYPES[v.compute].min_subnormal)
        else:
            dvar = (_sum_error(m) + 2) * u * var + 2 * _sum_error(m) * u * np.abs(mean) * np.sqrt(var)
        lo = (1 - 3 * u) / np.sqrt(var + dvar + v.eps * (1 + u))
        hi = (1 + 3 * u) / np.sqrt(np.maximum(var - dvar, 0) + v.eps * (1 - u))
        hi = np.minimum(np.where(np.isnan(hi), np.inf, hi), DTYPES[v.compute].max_value)
    return dmu, lo, hi


def _box_lstsq(y: np.ndarray, cols: list[np.ndarray], lo: list[np.ndarray], hi: list[np.ndarray]) -> list[np.ndarray]:
    """Per slice (sums over the last axis): the coefficients c_i in [lo_i, hi_i] minimising
    ||y - Σ c_i·cols_i||₂. The problem is convex: its minimum over the box is the
    unconstrained one where that is feasible, else on a face (one coefficient at a bound), the same
    problem in one variable fewer; the best of these candidates is the minimum."""
    with np.errstate(all="ignore"):
        # solved for the offsets from the box's centre: y less the centre's fit is small, and so
        # resolved to float64's precision however large the terms it is the difference of
        centre = [np.where(np.isfinite(lo_i) & np.isfinite(hi_i), (lo_i + hi_i) / 2, np.clip(0.0, lo_i, hi_i))
                  for lo_i, hi_i in zip(lo, hi)]
        y = y - sum(c0 * c for c0, c in zip(centre, cols))
        norms = [np.max(np.abs(c), axis=-1, keepdims=True) for c in cols]
        norms = [np.where(n > 0, n, 1.0) for n in norms]
        unit = [c / n for c, n in zip(cols, norms)]  # unit columns: coefficient c·n/f
        f = np.max(np.abs(y), axis=-1, keepdims=True)  # y/f: squares that cannot overflow
        f = np.where((f > 0) & np.isfinite(f), f, 1.0)
        low = [(lo_i - c0) * n / f for lo_i, c0, n in zip(lo, centre, norms)]
        high = [(hi_i - c0) * n / f for hi_i, c0, n in zip(hi, centre, norms)]
        return [c0 + c * f / n for c0, c, n in zip(centre, _box_unit(y / f, unit, low, high), norms)]


def _box_unit(y: np.ndarray, unit: list[np.ndarray], low: list[np.ndarray], high: list[np.ndarray]) -> list[np.ndarray]:
    """``_box_lstsq`` on columns of largest magnitude 1 or 0."""
    k = len(unit)
    gram = [[np.sum(unit[i] * unit[j], axis=-1, keepdims=True) for j in range(k)] for i in range(k)]
    rhs = [np.sum(unit[i] * y, axis=-1, keepdims=True) for i in range(k)]
    if k == 1:
        c = np.where(gram[0][0] > 0, rhs[0] / gram[0][0], 0.0)
        return [np.clip(np.where(np.isfinite(c), c, 0.0), low[0], high[0])]

    def residual(c: list[np.ndarray]) -> np.ndarray:
        r = np.sum((y - sum(ci * ui for ci, ui in zip(c, unit))) ** 2, axis=-1, keepdims=True)
        return np.where(np.isnan(r), np.inf, r)

    # the unconstrained minimum (Cramer's rule), where the columns are well apart and it is feasible
    matrix = np.stack([np.stack([gram[i][j][..., 0] for j in range(k)], -1) for i in range(k)], -2)
    det = np.linalg.det(matrix)[..., None]
    scale = np.prod([gram[i][i] for i in range(k)], axis=0)
    free = []
    for i in range(k):
        replaced = matrix.copy()
        replaced[..., :, i] = np.stack([r[..., 0] for r in rhs], -1)
        free.append(np.linalg.det(replaced)[..., None] / det)
    feasible = (det > 1e-12 * scale) & np.all([(f >= lo_i) & (f <= hi_i) for f, lo_i, hi_i in zip(free, low, high)],
                                               axis=0)
    best = [np.where(feasible, f, lo_i) for f, lo_i in zip(free, low)]
    best_res = np.where(feasible, residual(best), np.inf)
    for i in range(k):  # the faces: coefficient i at a bound
        others = [j for j in range(k) if j != i]
        for bound in (low[i], high[i]):
            sub = _box_unit(y - bound * unit[i], [unit[j] for j in others], [low[j] for j in others],
                            [high[j] for j in others])
            cand = sub[:i] + [np.broadcast_to(bound, sub[0].shape)] + sub[i:]
            res = residual(cand)
            better = res < best_res
            best = [np.where(better, c, b) for c, b in zip(cand, best)]
            best_res = np.where(better, res, best_res)
    return best


def _scale_for(case: Case, name: str, allowed: np.ndarray) -> np.ndarray:
    """The magnitude whose bound (the declaration's c·√K·u·magnitude, conformance/tolerance.py) is
    ``allowed``."""
    from conformance.spec import spec_of

    tol = spec_of(case).tolerance_for(name)
    k = max(int(tol.reduction_length(case, name)), 1)
    return allowed / (tol.c * math.sqrt(k) * DTYPES[case.dtype].unit_roundoff)


def _rounded(q: Fraction, f: type) -> np.floating:
    """The exact value ``q`` correctly rounded to ``f`` (np.float32 or np.float64)."""
    try:
        nearest = float(q)
    except OverflowError:
        return f(np.inf if q > 0 else -np.inf)
    if f is np.float64:
        return np.float64(nearest)
    with np.errstate(over="ignore"):
        c = np.float32(nearest)  # may round twice: settle between the float32 neighbours exactly
    if not np.isfinite(c):
        return c
    cands = (np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf)))
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - q), int(np.asarray(v).view(np.uint32)) & 1))


def _fused(a: np.floating, b: np.floating, c: np.floating, f: type) -> np.floating:
    """fma(a, b, c) in ``f``: a·b + c rounded once."""
    if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)):
        with np.errstate(all="ignore"):
            return f(f(a * b) + c)
    return _rounded(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)), f)


def _single_value_gradients(x: float, g: float, w: float | None, eps: float, compute: str,
                            channels_last: bool) -> set[float]:
    """grad.input of a group of one value (M = 1) as torch's kernel computes it, under every
    evaluation order the compiler may pick (each a·b ± c fused or not; torch 2.13's x86 build fuses
    db·μ - ds and c1·g + fl(c2·x)), and either way of forming rstd (1/sqrt(v + eps) in the compute
    type, or through float64). There x is its own mean (μ_t = x exactly, s = 1) and the exact
    gradient is 0; torch forms ds = fl(g·x)·γ, db = γ·g, c2 = (db·μ - ds)·rstd³ (the rounding
    residual of g·x times rstd³ where fused, else 0 or nearly) and c1·g + c2·x + c3 with
    c3 = -c2·μ - db·rstd, where c2·x and c2·μ are one product: the result is c1·g - db·rstd rounded
    at the magnitude of c2·x, so 0 or one ulp of c2·x, which for x ~ 1e12 in float32 can be ~1e16:
    no bound short of that ulp separates 0 from 0.5, the replay does. The channels-last kernel's
    variance fl(x²) - x·x is 0, or fl(x²) - x² where fused (clamped at 0). Checked bitwise against
    torch on 10,240 random single-value groups (float32 and float64, both kernels, with and without
    a weight, values from 1e-10 to 1e120)."""
    f = np.float32 if compute == "float32" else np.float64
    x, g = f(x), f(g)
    w = None if w is None else f(w)
    variances = [f(0)]
    if channels_last:  # one pass: fl(x²)·1 - μ·μ, fused or not (then 0), clamped at 0
        variances.append(max(_fused(-x, x, f(x * x), f), f(0)))
    ds = f(f(g * x) * w) if w is not None else f(g * x)
    db = f(g * w) if w is not None else g
    out: set[float] = set()
    with np.errstate(all="ignore"):
        for var in variances:
            for r in {f(f(1) / np.sqrt(f(var + f(eps)))), f(1 / np.sqrt(np.float64(var) + eps))}:
                c1 = f(r * w) if w is not None else r
                rb = f(db * r)
                for num in (_fused(db, x, -ds, f), f(f(db * x) - ds)):
                    c2 = f(f(f(num * r) * r) * r)
                    p = f(c2 * x)  # c2·μ too: the same product
                    for c3 in (f(-p - rb), _fused(-c2, x, -rb, f)):
                        for t in (f(f(c1 * g) + p), _fused(c2, x, f(c1 * g), f), _fused(c1, g, p, f)):
                            out.add(float(f(t + c3)))
    return out


def _accumulated(case: Case, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """G, the .grad an accumulating case presets (0 where it presets none)."""
    from conformance.tolerance import accumulated_offset

    offset = accumulated_offset(case, name, shape)
    return np.zeros(shape) if offset is None else np.asarray(offset, dtype=np.float64)


def _grad_input(case: Case, v: _Groups, y: np.ndarray, ref: np.ndarray,
                rstd: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """grad.input: prediction and allowed error, both (N, G, M) (see group_norm_one_pass_backward_model);
    ``rstd``: the interval of r the output shows, where it narrows the forward's."""
    u, m, d, hw = v.u, v.m, v.d, v.hw
    out_dt = DTYPES[case.dtype]
    g = np.asarray(case.cotangents["output"], dtype=np.float64).reshape(v.x.shape)
    held = np.abs(_accumulated(case, "grad.input", ref.shape))
    dmu, lo, hi = _statistics_bounds(v)
    if rstd is not None:
        lo, hi = np.maximum(lo, np.minimum(rstd[0], hi)), np.minimum(hi, np.maximum(rstd[1], lo))
    with np.errstate(all="ignore"):
        gg = v.gamma * g
        db = np.sum(gg, axis=2, keepdims=True)
        dev = v.x - v.mean
        cols_u, cols_v = gg - db / m, dev
        s_g, s_gx = np.sum(np.abs(gg), axis=2, keepdims=True), np.sum(np.abs(gg * v.x), axis=2, keepdims=True)
        num = -np.sum(gg * dev, axis=2, keepdims=True)  # db·μ - ds, exactly
        sums = _sum_error(hw) + _sum_error(d) + 2  # ds_c over HW, then Σ_c γ_c·ds_c over D (products included)
        abs_mean = np.abs(v.mean)
        dnum = sums * u * (s_gx + abs_mean * s_g) + np.abs(db) * dmu + u * (np.abs(db) * abs_mean + np.abs(num))
        ends = (num * lo * lo * lo / m, num * hi * hi * hi / m)  # in torch's order: r³ alone may underflow
        spread = 5 * u * np.maximum(np.abs(ends[0]), np.abs(ends[1])) + dnum * hi * hi * hi / m
        b_lo, b_hi = np.minimum(*ends) - spread, np.maximum(*ends) + spread
        b_max = np.maximum(np.abs(b_lo), np.abs(b_hi))
        c_max = b_max * dmu + sums * u * s_g * hi / m + 2 * u * b_max * abs_mean + 3 * u * np.abs(db) * hi / m
        size = hi * np.abs(cols_u) + b_max * np.abs(cols_v) + c_max  # |dx| at most
        # torch's roundings, a narrower dtype's final one, and G + dx's (then - G) where .grad was preset
        err = (u * (3 * hi * np.abs(gg) + 2 * b_max * np.abs(v.x) + size) + max(out_dt.unit_roundoff - u, 0) * size
               + out_dt.unit_roundoff * (held + size) * (held > 0) + 4 * out_dt.min_subnormal)
        ok = (v.finite & np.all(np.isfinite(g), axis=2, keepdims=True) & np.all(np.isfinite(y), axis=2, keepdims=True)
              & np.all(np.isfinite(err), axis=2, keepdims=True))
        w = np.where(ok, np.min(err, axis=2, keepdims=True) / err, 0.0)  # weights 1/err, scaled to <= 1
        a, b, c = _box_lstsq(np.where(ok, y, 0.0) * w, [cols_u * w, cols_v * w, w], [lo, b_lo, -c_max],
                             [hi, b_hi, c_max])
        pred = a * cols_u + b * cols_v + c
    pred = np.where(ok, pred, ref)
    # the fit's weighted residual is at most torch's, Σ(e_i/err_i)² <= M: each |pred - dx| <= err·√M
    allowed = np.where(ok, err * math.sqrt(m), 0.0)
    if m == 1 and v.compute == case.dtype:
        weighted = "weight" in case.inputs
        for i, j in zip(*np.nonzero(ok[:, :, 0])):
            values = _single_value_gradients(v.x[i, j, 0], g[i, j, 0], v.gamma[0, j, 0] if weighted else None,
                                             v.eps, v.compute, v.channels_last)
            pred[i, j, 0] = min(values, key=lambda t: abs(t - y[i, j, 0]))
            allowed[i, j, 0] = 0.0
    return pred, allowed


def group_norm_one_pass_backward_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """Model of ``groupnorm-cpu-backward-one-pass-cancellation`` (and grad.input of
    ``groupnorm-cpu-channels-last-one-pass-variance-*``): torch's CPU GroupNorm backward, per
    (sample, group) of M values, ds = Σγ·g·x, db = Σγ·g (per channel over HW, then over the D
    channels), c2 = (db·μ_t - ds)·r³/M, c3 = -c2·μ_t - db·r/M and dx = c1·g + c2·x + c3, c1 = r·γ,
    with μ_t and r the mean and rstd the forward saved. Exactly, with U = γ·g - db/M and V = x - μ
    (exact), dx = A·U + B·V + C + e:

    - A = r, in the forward's interval (``_statistics_bounds``: up to rounding for the contiguous
      kernel's Welford statistics, the one-pass variance's for the channels-last kernel), narrowed to
      the rstd the output shows (``_output``: the forward saved the r the backward uses);
    - B = torch's c2, within N·r³/M (N = db·μ - ds exactly, r anywhere in A's interval, 5 roundings)
      ± its cancellation: ds and db err by (γ_HW + γ_D + 2)·u times Σ|γ·g·x| and Σ|γ·g|, μ_t by δμ,
      so N_t by those times (1, |μ|) + |db|·δμ + u·(|db·μ| + |N|);
    - C, one constant per group: -B·δμ_t (x - μ_t = V - δμ_t), -(db_t - db)·r/M, and c3's roundings,
      |C| <= |B|·δμ + (γ_HW + γ_D + 2)·u·Σ|γ·g|·r/M + 2u·|B·μ| + 3u·|db|·r/M;
    - e, per element: the roundings of c1, c1·g, c2·x and of the two additions,
      |e| <= u·(3r·|γ·g| + 2|B·x| + |dx|) (r, |B| and |dx| at their largest), plus, where the case
      presets .grad to G, the rounding of G + dx: u·(|G| + |dx|).

    A, B and C are fitted (weighted least squares, see the comment above ``_sum_error``): ×1.25 needs
    r·1.25 and a constant +0.5 needs |C| beyond its bound. Where M = 1 (U = V = 0, and the rounding
    of c2·x, the bound on C, is far above 0.5 for a large x) the kernel's arithmetic is replayed
    instead (``_single_value_gradients``): the prediction is the replay nearest the backend's value,
    with no allowance beyond the comparison's own."""
    return _group_norm_model(case, reference, got, ("grad.input",))


def _output(case: Case, v: _Groups, y: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, ...]:
    """output: prediction, allowed error, and per group the rstd fitted and its uncertainty (see
    group_norm_channels_last_model)."""
    u, m = v.u, v.m
    out_dt = DTYPES[case.dtype]
    dmu, lo, hi = _statistics_bounds(v)
    with np.errstate(all="ignore"):
        dev = v.x - v.mean
        col_s, col_t = v.gamma * dev, np.broadcast_to(v.gamma, v.x.shape)
        ok = v.finite & np.all(np.isfinite(y), axis=2, keepdims=True)
        for _ in range(3):  # each pass's r interval bounds the roundings of the next, narrower one
            sc = hi * np.abs(v.gamma)
            size = sc * (np.abs(dev) + dmu) + np.abs(v.beta)  # |y| at most
            err = (u * (sc * (np.abs(dev) + dmu) + sc * np.abs(v.x) + 2 * sc * np.abs(v.mean) + np.abs(v.beta)
                        + size) + max(out_dt.unit_roundoff - u, 0) * size + 4 * out_dt.min_subnormal)
            ok &= np.all(np.isfinite(err), axis=2, keepdims=True)
            least = np.min(err, axis=2, keepdims=True)
            w = np.where(ok, least / err, 0.0)  # weights 1/err, scaled to <= 1
            cols = [col_s * w, col_t * w]
            s, t = _box_lstsq(np.where(ok, y - v.beta, 0.0) * w, cols, [lo, -hi * dmu], [hi, hi * dmu])
            # torch's (s, t) and the fit's both leave weighted residuals of norm <= √M·least, so the
            # weighted columns W times their difference are <= 2√M·least: |Δs| <= that·sqrt((WᵀW)⁻¹₁₁)
            g11, g22 = np.sum(cols[0] ** 2, axis=2, keepdims=True), np.sum(cols[1] ** 2, axis=2, keepdims=True)
            g12 = np.sum(cols[0] * cols[1], axis=2, keepdims=True)
            det = g11 * g22 - g12 * g12
            ds = np.where(det > 1e-12 * g11 * g22, 2 * math.sqrt(m) * least * np.sqrt(g22 / det), np.inf)
            ds = np.minimum(np.where(np.isnan(ds), np.inf, ds), hi - lo)
            lo, hi = np.where(ok, np.maximum(lo, s - ds), lo), np.where(ok, np.minimum(hi, s + ds), hi)
            hi = np.maximum(hi, lo)  # (s may sit an ulp outside its box)
        pred = s * col_s + t * col_t + v.beta
        allowed = err * math.sqrt(m)
        # a group whose output the model does not explain tells nothing of r: the forward's interval
        shown = ok & np.all(np.abs(pred - y) <= allowed, axis=2, keepdims=True)
        _, lo0, hi0 = _statistics_bounds(v)
        s, ds = np.where(shown, s, (lo0 + hi0) / 2), np.where(shown, ds, (hi0 - lo0) / 2)
    return np.where(ok, pred, ref), np.where(ok, allowed, 0.0), s, ds, ok


def _grad_weight(case: Case, v: _Groups, s: np.ndarray, ds: np.ndarray, ok: np.ndarray,
                 ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """grad.weight (C,): prediction and allowed error (see group_norm_channels_last_model)."""
    u, d, hw = v.u, v.d, v.hw
    n, groups = v.x.shape[:2]
    g = np.asarray(case.cotangents["output"], dtype=np.float64).reshape(n, groups, d, hw)
    dmu, _, hi = _statistics_bounds(v)
    with np.errstate(all="ignore"):
        x = v.x.reshape(n, groups, d, hw)
        mean = v.mean[..., None]
        exact = np.sum(g * (x - mean), axis=3)  # (N, G, D): ds_c - db_c·μ
        db = np.sum(g, axis=3)
        abs_mean = np.abs(mean[..., 0])
        cancel = ((_sum_error(hw) + 1) * u * (np.sum(np.abs(g * x), axis=3) + abs_mean * np.sum(np.abs(g), axis=3))
                  + np.abs(db) * dmu + u * (np.abs(db) * abs_mean + np.abs(exact)))
        top = np.minimum(s + ds, hi)
        pred = np.sum(s * exact, axis=0)
        allowed = (np.sum(ds * np.abs(exact) + top * (cancel + 2 * u * np.abs(exact)), axis=0)
                   + _sum_error(n) * u * np.sum(top * np.abs(exact), axis=0))
        good = np.all(ok & np.all(np.isfinite(g), axis=(2, 3))[..., None], axis=0)  # (G, 1)
    good = np.broadcast_to(good, pred.shape).reshape(-1)
    return np.where(good, pred.reshape(-1), ref), np.where(good, allowed.reshape(-1), 0.0)


def group_norm_channels_last_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """Model of ``groupnorm-cpu-channels-last-one-pass-variance-*``: torch's CPU channels-last GroupNorm
    kernel, whose rstd r comes from a one-pass variance (``_statistics_bounds``: r anywhere in
    [lo, hi] and the mean μ_t off by up to δμ) and which applies it as y = x·sc + bias, sc = r·γ,
    bias = β - sc·μ_t. Exactly, per (sample, group), y = s·γ·(x - μ) + t·γ + β + e with s = r in
    [lo, hi], t = -r·(μ_t - μ) within ±hi·δμ, and per element
    |e| <= u·(sc·(|x - μ| + δμ) + |sc·x| + 2|sc·μ| + |β| + |y|) (sc's, bias's, the product's and the
    sum's roundings; sc and |y| at their largest). s and t are fitted (weighted least squares, see the
    comment above ``_sum_error``): a ×1.25 output needs s·1.25 (outside [lo, hi] unless the variance
    is lost altogether) and +0.5 needs |t| beyond hi·δμ. The fit also bounds torch's r: both its and
    torch's (s, t) leave weighted residuals of norm <= √M, so |Δs| <= 2√M·sqrt((WᵀW)⁻¹₁₁) (W the two
    weighted columns); [lo, hi] narrowed to s ± |Δs| bounds e anew, and the fit is repeated (3 passes).
    A group whose output the model does not explain keeps the forward's interval.

    grad.input: ``group_norm_one_pass_backward_model``, with r in s ± |Δs|. grad.weight (the kernel
    sums, per channel, (ds_c - db_c·μ_t)·r over the N samples): Σ_n s_n·E_n,c with E = Σ_HW g·(x - μ)
    exactly, allowing Σ_n (|Δs|·|E| + r·(ε_n + 2u·|E|)) + γ_N·u·Σ_n r·|E| (r at most s + |Δs|) with the
    one-pass cancellation ε = (γ_HW + 1)·u·(Σ|g·x| + |μ|·Σ|g|) + |db_c|·δμ + u·(|db_c·μ| + |E|)."""
    return _group_norm_model(case, reference, got, ("output", "grad.input", "grad.weight"))


def _group_norm_model(case: Case, reference: Result, got: Result, names: tuple[str, ...]) -> dict[str, object]:
    """The GroupNorm models' predictions of ``names`` (those the case has)."""
    v = _groups(case)
    if v is None:
        return {}
    ours, theirs = reference.tensors(), got.tensors()
    out: dict[str, object] = {}
    fit = None
    shape = np.shape(ours.get("output"))
    y = theirs.get("output")
    if y is not None and np.shape(y) == shape:
        pred, allowed, s, ds, ok = _output(case, v, np.asarray(y, dtype=np.float64).reshape(v.x.shape),
                                           np.asarray(ours["output"], dtype=np.float64).reshape(v.x.shape))
        fit = (s, ds, ok)
        if "output" in names:
            out["output"] = (pred.reshape(shape), _scale_for(case, "output", allowed).reshape(shape))
    backward = case.cotangents.get("output") is not None
    ref_x, y_x = ours.get("grad.input"), theirs.get("grad.input")
    if ("grad.input" in names and backward and "input" in case.differentiable and ref_x is not None
            and np.shape(y_x) == np.shape(ref_x)):
        # the backward uses the rstd the forward saved, which the output shows (within ±Δs)
        rstd = None if fit is None else (fit[0] - fit[1], fit[0] + fit[1])
        pred_x, allowed_x = _grad_input(case, v, np.asarray(y_x, dtype=np.float64).reshape(v.x.shape),
                                        np.asarray(ref_x, dtype=np.float64).reshape(v.x.shape), rstd)
        shape_x = np.shape(ref_x)
        out["grad.input"] = (pred_x.reshape(shape_x), _scale_for(case, "grad.input", allowed_x).reshape(shape_x))
    ref_w, y_w = ours.get("grad.weight"), theirs.get("grad.weight")
    if ("grad.weight" in names and backward and fit is not None and "weight" in case.differentiable
            and ref_w is not None and np.shape(y_w) == np.shape(ref_w)):
        pred_w, allowed_w = _grad_weight(case, v, *fit, np.asarray(ref_w, dtype=np.float64).reshape(-1))
        shape_w = np.shape(ref_w)
        out["grad.weight"] = (pred_w.reshape(shape_w), _scale_for(case, "grad.weight", allowed_w).reshape(shape_w))
    return out
