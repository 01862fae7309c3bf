"""Distances: PairwiseDistance.

torch computes ‖x1 - x2 + eps‖_p over the last axis of the broadcast shape: eps is added to the
difference (not to the norm), so the distance is asymmetric and d(x, x) = eps·D^(1/p). The
reference follows that implementation (see ``reference.distance`` for p = 0, ±inf, negative p and
the gradient convention at the norm's kinks).

Cases: p in {2, 1, 1.5, 0.5, 3, 25, 100, inf, 0, -1, -inf}; eps in {1e-6, 0, 1e-4}; keepdim; a
broadcast shape (*, D) with up to two leading dims, one input full and the other of lower rank
or with size-1 dims (D included); 1-d inputs. Value modes of the pair:
- ``independent``; ``equal`` (x1 == x2 after broadcasting: d = eps everywhere);
- ``kink entries``: some entries equal, so d = eps there (0 with eps = 0: the kink of |d|);
- ``separated``: x_full = x_reduced ± t with |t| distinct multiples of 1/4 per row, so the largest
  and smallest |d| are unique by far more than rounding can move them. For p = ±inf in the float
  tier the modes are separated / equal / kink entries: the max (min) gradient is discontinuous at
  ties, and a near-tie in float64 can become an exact tie once the backend rounds d.
The exact tier (integers, eps = 0, p in {1, inf, 0, -inf}) is compared bit for bit up to one
final rounding.

No entry of d is within its rounding error of 0 without being exactly 0 (the magnitudes drawn are
≫ eps, and differences of close values are exact by Sterbenz' lemma), so the sign of every entry
of d, hence the kink convention, is the same on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from conformance.tolerance import bound_as_magnitude
from reference import distance as ref

INF = math.inf
P_FLOAT = (2.0, 1.0, 1.5, 0.5, 3.0, 25.0, 100.0, INF, 0.0, -1.0, -INF)
P_EXACT = (1.0, INF, 0.0, -INF)
EPS = (1e-6, 0.0, 1e-4)
BUDGET = 1024  # elements of the broadcast shape


# -- cases --------------------------------------------------------------------------------------

def _shapes(d: S.Drawer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(full shape (*, D), the other input's shape: the same, a suffix of lower rank, or with
    size-1 dims)."""
    broadcast = d.choice(("same shape", "ranks differ", "size-1 dims"), "broadcast")
    rank = d.integer(1 if broadcast == "ranks differ" else 0, 2, "batch rank")
    dim = d.integer(1, 16, "D")
    full = (*S.sizes_within(d, rank, BUDGET // dim, hi=6, label="batch"), dim)
    if broadcast == "ranks differ":
        return full, full[d.integer(1, rank, "dropped dims"):]
    if broadcast == "size-1 dims":
        return full, tuple(1 if d.flag(f"broadcast dim[{i}]") else s for i, s in enumerate(full))
    return full, full


def _separated(d: S.Drawer, base: np.ndarray, full: tuple[int, ...], dtype: str) -> np.ndarray:
    """base (broadcast) ± t, |t| a permutation of (1..D)/4 per row with random signs, rounded."""
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "separation.seed"))
    rows, dim = int(np.prod(full[:-1], dtype=np.int64)), full[-1]
    steps = np.argsort(rng.random((rows, dim)), axis=1) + 1.0
    t = (steps / 4 * rng.choice((-1.0, 1.0), size=(rows, dim))).reshape(full)
    return DTYPES[dtype].round(np.broadcast_to(base, full) + t)


@st.composite
def _cases(draw, dtype: str) -> Case:
    d = S.Drawer(draw)
    tier = S.tier(d)
    exact = tier == "exact"
    p = d.choice(P_EXACT if exact else P_FLOAT, "p")
    eps = 0.0 if exact else d.choice(EPS if p != 0 else EPS[:2], "eps")
    keepdim = d.flag("keepdim")
    full, reduced = _shapes(d)
    modes = ("separated", "equal", "kink entries") if np.isinf(p) and not exact else (
        ("independent", "equal", "kink entries") + (() if exact else ("separated",)))
    mode = d.choice(modes, "values")
    if mode == "separated" or (mode == "kink entries" and "independent" not in modes):
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "reduced.seed"))
        base = DTYPES[dtype].round(rng.standard_normal(reduced))
        other = _separated(d, base, full, dtype)
    else:
        base = S.values(d, reduced, dtype, tier, "reduced")
        other = np.broadcast_to(base, full).copy() if mode == "equal" else S.values(d, full, dtype, tier, "full")
    if mode == "kink entries":
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "kink.seed"))
        mask = rng.random(full) < 0.3
        mask.reshape(-1)[0] = True
        other = np.where(mask, np.broadcast_to(base, full), other)
    x1, x2 = (base, other) if d.flag("x1 broadcast") else (other, base)
    layouts = {name: S.layouts(d, arr.ndim, f"layout.{name}", channels_last=False)
               for name, arr in (("x1", x1), ("x2", x2))}
    return Case(op="PairwiseDistance", dtype=dtype, params={"p": p, "eps": eps, "keepdim": keepdim},
                inputs={"x1": np.ascontiguousarray(x1), "x2": np.ascontiguousarray(x2)},
                differentiable=("x1", "x2"), layouts=layouts, tier=tier, cotangent_seed=S.seed(d),
                note=mode)


@st.composite
def _invalid_cases(draw, dtype: str) -> Case:
    """Shapes that do not broadcast: the last dims (or a batch dim) differ and neither is 1."""
    d = S.Drawer(draw)
    dim = d.integer(2, 8, "D")
    other = dim + d.integer(1, 3, "extra")
    if d.flag("batch dim differs"):
        s1, s2 = (2, dim), (3, dim)
    else:
        s1, s2 = (2, dim), (2, other)
    x1 = S.values(d, s1, dtype, "float", "x1")
    x2 = S.values(d, s2, dtype, "float", "x2")
    return Case(op="PairwiseDistance", dtype=dtype, params={"p": 2.0, "eps": 1e-6, "keepdim": False},
                inputs={"x1": x1, "x2": x2}, differentiable=("x1", "x2"), invalid=True, note="shapes do not broadcast",
                cotangent_seed=S.seed(d))


# -- reference ----------------------------------------------------------------------------------

def _params(case: Case) -> tuple[float, float, bool]:
    p = case.params
    return float(p["p"]), float(p["eps"]), bool(p["keepdim"])


def _reference(case: Case, backward: bool) -> Result:
    x1, x2 = case.inputs["x1"], case.inputs["x2"]
    p, eps, keepdim = _params(case)
    np.broadcast_shapes(x1.shape, x2.shape)  # raises ValueError when the shapes do not broadcast
    precise = case.dtype == "float64"  # float64's own roundings matter only when float64 is under test
    out = Result(outputs={"output": ref.pairwise_distance(x1, x2, p, eps, keepdim, precise)})
    if backward:
        g1, g2 = ref.pairwise_distance_vjp(x1, x2, p, eps, keepdim, case.cotangents["output"], precise)
        out.grads.update(x1=g1, x2=g2)
    return out


def _smooth(case: Case) -> bool:
    """Differentiable at the case: every entry of d is 0 or |d| > 1e-3 (no entry at all at 0 for
    p < 1, where |d|^p is not Lipschitz), the norm is > 1e-3, and for p = ±inf the extreme |d|
    of each row is unique by more than 1e-3."""
    p, eps, _ = _params(case)
    a = np.abs(ref.difference(case.inputs["x1"], case.inputs["x2"], eps))
    if np.any((a > 0) & (a <= 1e-3)) or (p < 1 and np.any(a == 0)):
        return False
    if np.isinf(p):
        ranked = np.sort(a if p > 0 else -a, axis=-1)
        return a.shape[-1] == 1 or bool(np.all(ranked[..., -1] - ranked[..., -2] > 1e-3))
    return p == 0 or bool(np.all(ref.vector_norm(ref.difference(case.inputs["x1"], case.inputs["x2"], eps), p) > 1e-3))


# -- error analysis -----------------------------------------------------------------------------

def _broadcast_count(case: Case, name: str) -> int:
    """How many entries of the broadcast difference are summed into one element of ``name``."""
    full = np.broadcast_shapes(case.inputs["x1"].shape, case.inputs["x2"].shape)
    return max(1, int(np.prod(full, dtype=np.int64)) // max(1, case.inputs[name].size))


def _reduction(case: Case, tensor: str) -> int:
    return _broadcast_count(case, tensor[len("grad."):]) if tensor.startswith("grad.") else \
        max(1, int(np.broadcast_shapes(case.inputs["x1"].shape, case.inputs["x2"].shape)[-1]))


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
    - gradient s·sign(d)·g: exact for p = 1 (a sign); one rounding for ±inf (g/m); otherwise
      |G|·(|p - 1|·(e/|d| + E/N) + 6u) + 2·tiny (a gradient in the subnormal range: the backend's
      and the reference's own final roundings, each up to tiny/2); summed over broadcast axes with
      2√K·u·Σ|G| more.
    """
    x1, x2 = case.inputs["x1"], case.inputs["x2"]
    p, eps, keepdim = _params(case)
    dt = DTYPES[case.dtype]
    u = dt.unit_roundoff
    diff = x1 - x2
    d = diff + eps
    a = np.abs(d)
    dim = d.shape[-1]
    e = u * (np.abs(diff) + a + abs(eps)) + (dt.min_subnormal if eps else 0.0)
    norm = ref.vector_norm(d, p, keepdim=True)
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
            err_g = u * big_g
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


# -- regimes and declaration --------------------------------------------------------------------

def _p(case: Case) -> float:
    return float(case.params["p"])


def _difference(case: Case) -> np.ndarray:
    return ref.difference(case.inputs["x1"], case.inputs["x2"], float(case.params["eps"]))


REGIMES = (
    Regime("x1 == x2 (eps only)", lambda c: bool(np.all(c.inputs["x1"] - c.inputs["x2"] == 0)),
           pins={"values": "equal", "tier": "float"},
           description="d = eps everywhere: the distance is eps·D^(1/p), not 0"),
    Regime("p = inf", lambda c: _p(c) == INF, pins={"p": INF}, description="max |d|; ties share the gradient"),
    Regime("p = -inf", lambda c: _p(c) == -INF, pins={"p": -INF}, description="min |d|"),
    Regime("p = 0", lambda c: _p(c) == 0, pins={"p": 0.0}, description="count of non-zero entries, zero gradient"),
    Regime("fractional p", lambda c: math.isfinite(_p(c)) and _p(c) != round(_p(c)),
           pins={"p": 1.5, "tier": "float"}, description="p = 1.5: |d|^(p-1) is not smooth at 0"),
    Regime("0 < p < 1", lambda c: 0 < _p(c) < 1, pins={"p": 0.5, "tier": "float"},
           description="a quasi-norm: the sensitivity (|d|/N)^(p-1) exceeds 1"),
    Regime("negative p", lambda c: _p(c) < 0, pins={"p": -1.0, "tier": "float"},
           description="(Σ|d|^p)^(1/p) with p < 0: a zero entry makes the distance 0"),
    Regime("large p", lambda c: _p(c) >= 50, pins={"p": 100.0, "tier": "float"},
           description="|d|^p leaves the float range (torch discrepancy pairwise-distance-unscaled-powers)"),
    Regime("broadcast ranks", lambda c: c.inputs["x1"].ndim != c.inputs["x2"].ndim,
           pins={"broadcast": "ranks differ"}, description="x1 and x2 of different ranks"),
    Regime("kink entries", lambda c: bool(np.any(_difference(c) == 0)),
           pins={"values": "kink entries", "eps": 0.0},
           description="entries with x1 - x2 + eps = 0: the kink of |d| (gradient convention applies)"),
    Regime("keepdim", lambda c: bool(c.params["keepdim"]), pins={"keepdim": True},
           description="the reduced last axis kept with size 1"),
    Regime("1-d inputs", lambda c: c.inputs["x1"].ndim == 1 and c.inputs["x2"].ndim == 1,
           pins={"broadcast": "same shape", "batch rank": 0}, description="(D) and (D): a 0-d output"),
)

_TOLERANCE: Mapping[str, Any] = {
    "output": Tolerance(reduction=_reduction, magnitude=_magnitude, c=1.0, exact="rounded"),
    "grad.*": Tolerance(reduction=_reduction, magnitude=_magnitude, c=1.0, exact="none"),
}

declare(LayerSpec(
    name="PairwiseDistance",
    family="distance",
    cases=lambda dtype: _cases(dtype),
    reference=result_reference(_reference),
    torch=TorchMapping("torch.nn.PairwiseDistance", args=("x1", "x2")),
    tolerance=_TOLERANCE,
    invalid_cases=lambda dtype: _invalid_cases(dtype),
    smooth_at=_smooth,
    regimes=REGIMES,
    notes=("Follows torch's implementation: ‖x1 - x2 + eps‖_p over the last axis of the broadcast shape (eps is "
           "added to every entry of the difference: asymmetric, and d(x, x) = eps·D^(1/p)). p = 0 counts non-zero "
           "entries, ±inf takes max/min |d|, negative p is (Σ|d|^p)^(1/p). Gradient convention (torch's "
           "norm_backward): sign(d)·g·(|d|/N)^(p-1), 0 where d = 0 (the kink) or N = 0; p = ±inf shares g equally "
           "among tied extreme entries; p = 0 has zero gradient. torch discrepancy: the powers Σ|d|^p, N^(p-1), "
           "|d|^(p-2) are not scaled, so large p or tiny distances (d = eps) with p ∉ {1, 2} overflow/underflow "
           "(float32 opmath forward; the backward in the case dtype, float16's range for float16) and give inf, 0 "
           "or NaN (see unscaled_powers_leave_range)."),
))
