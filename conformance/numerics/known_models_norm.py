"""Models (``model = "module:function"``) of known normalisation entries (conformance/known/normalization.toml):
what torch computes when the bug applies, so that an entry explains only values agreeing with it
(the masking audit, conformance/audit.py)."""

from __future__ import annotations

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


def group_norm_one_pass_backward_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """Model of ``groupnorm-cpu-backward-one-pass-cancellation``: torch's CPU GroupNorm backward,
    per (sample, group) of D values, ds = Σγ·g·x, db = Σγ·g, c2 = (db·μ - ds)·rstd³/D,
    c3 = -c2·μ - db·rstd/D and grad = γ·rstd·g + c2·x + c3. The prediction is the exact gradient;
    its rounding magnitude is that of this evaluation: the terms |γ·rstd·g|, |c2·x|, |c2·μ|,
    |db|·rstd/D that are added, and the rounding of ds - db·μ (of magnitude Σ|γ·g·x| + Σ|γ·g|·|μ|)
    carried by c2 into c2·(x - μ); on an input torch takes as channels-last, also the forward's
    one-pass variance's error in rstd. So the cancellation explains errors up to about |μ|/σ times the
    gradient's ordinary bound, not a wrong value beyond it."""
    from conformance import strategies as S
    from reference import normalization as RN

    x = np.asarray(case.inputs["input"], dtype=np.float64)
    g = case.cotangents.get("output")
    if g is None or "input" not in case.differentiable or x.ndim < 2 or not x.size:
        return {}
    groups = int(case.params["num_groups"])
    view = RN.group_view(x.shape, groups)
    xv, gv = x.reshape(view), np.asarray(g, dtype=np.float64).reshape(view)
    w = case.inputs.get("weight")
    per_channel = (1, groups, view[2], 1)
    gamma = np.ones(per_channel) if w is None else np.asarray(w, dtype=np.float64).reshape(per_channel)
    d = view[2] * view[3]
    with np.errstate(all="ignore"):
        mean, var = RN.moments(xv, (2, 3))
        rstd = 1 / np.sqrt(var + float(case.params["eps"]))
        gg = gamma * gv
        ds, db = np.sum(gg * xv, axis=(2, 3), keepdims=True), np.sum(gg, axis=(2, 3), keepdims=True)
        c2 = (db * mean - ds) * rstd ** 3 / d
        carried = (np.sum(np.abs(gg * xv), axis=(2, 3), keepdims=True)
                   + np.sum(np.abs(gg), axis=(2, 3), keepdims=True) * np.abs(mean)) * rstd ** 3 / d
        # c2 as computed is c2 + (up to) u·carried: its products c2·x and c2·μ round at that size too
        u_compute = DTYPES["float64" if case.dtype == "float64" else "float32"].unit_roundoff
        magnitude = (np.abs(gg * rstd) + np.abs(c2 * xv) + np.abs(c2 * mean) + np.abs(db) * rstd / d
                     + carried * (np.abs(xv - mean) + u_compute * (np.abs(xv) + np.abs(mean))))
        if S.channels_last_like(x.shape, S.torch_strides(x.shape, case.layout("input"))):
            # the channels-last forward's one-pass variance E[x²] - μ² (its own entry,
            # groupnorm-cpu-channels-last-one-pass-variance-*) is off by up to δ = D·u·E[x²] (u the
            # compute type's, a worst-case sum of D terms; clamped at 0): rstd anywhere between
            # 1/sqrt(var + δ + eps) and 1/sqrt(max(var - δ, 0) + eps), the gradient's terms (rstd³ at most) with it
            delta = d * u_compute * np.mean(xv * xv, axis=(2, 3), keepdims=True)
            eps = float(case.params["eps"])
            high, low = 1 / np.sqrt(np.maximum(var - delta, 0) + eps), 1 / np.sqrt(var + delta + eps)
            grown = np.maximum((high / rstd) ** 3 - 1, 1 - (low / rstd) ** 3)
            terms = np.abs(gg * rstd) + np.abs(c2 * (xv - mean)) + np.abs(db) * rstd / d
            magnitude = magnitude + grown * terms / DTYPES[case.dtype].unit_roundoff
    predicted = reference.grads.get("input")
    if predicted is None:
        return {}
    return {"grad.input": (np.asarray(predicted, dtype=np.float64), magnitude.reshape(x.shape))}
