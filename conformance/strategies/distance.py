"""Case strategies of the distance family: PairwiseDistance and CosineSimilarity.

PairwiseDistance: p in {2, 1, 1.5, 0.5, 3, 25, 100, inf, 0, -1, -inf}; eps in {1e-6, 0, 1e-4};
keepdim; a broadcast shape (*, D) with up to two leading dims, one input full and the other of
lower rank or with size-1 dims (D included); 1-d inputs. Value modes of the pair:
- ``independent``; ``equal`` (x1 == x2 after broadcasting: d = eps everywhere);
- ``kink entries``: some entries equal, so d = eps there (0 with eps = 0: the kink of |d|);
- ``separated``: x_full = x_reduced ± t with |t| distinct multiples of 1/4 per row, so the largest
  and smallest |d| are unique by far more than rounding can move them. For p = ±inf in the float
  tier the modes are separated / equal / kink entries: the max (min) gradient is discontinuous at
  ties, and a near-tie in float64 can become an exact tie once the backend rounds d.
The exact tier (integers, eps = 0, p in {1, inf, 0, -inf}) is compared bit for bit up to one
final rounding. No entry of d is within its rounding error of 0 without being exactly 0 (the
magnitudes drawn are >> eps, and differences of close values are exact by Sterbenz' lemma), so the
sign of every entry of d, hence the kink convention, is the same on both sides.

CosineSimilarity: broadcastable inputs of 1 to 4 dims, dim anywhere (negative too), eps in
{1e-8 (the default), 1e-6, 0.5}; value modes: independent, zero vectors (some whole vectors 0),
tiny vectors (norms below eps: clamped), parallel and antiparallel pairs (y = ±1).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES

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




COSINE_EPS = (1e-8, 1e-6, 0.5)
COSINE_MODES = ("independent", "zero vectors", "tiny vectors", "parallel")


def cosine_case(d: S.Drawer, dtype: str) -> Case:
    """x1 full, x2 the same shape, of lower rank or with size-1 dims; ``dim`` any axis of the
    broadcast shape (negative sometimes); values by mode (module docstring)."""
    rank = d.integer(1, 4, "rank")
    full = tuple(S.sizes_within(d, rank, 256, hi=6, label="shape"))
    axis = d.integer(0, rank - 1, "dim")
    dim = axis - rank if d.flag("negative dim") else axis
    broadcast = d.choice(("same shape", "size-1 dims", "ranks differ"), "broadcast")
    other = full
    if broadcast == "size-1 dims":
        other = tuple(1 if i != axis and d.flag(f"broadcast dim[{i}]") else s for i, s in enumerate(full))
    elif broadcast == "ranks differ" and axis > 0:
        other = full[d.integer(1, axis, "dropped dims"):]
    eps = d.choice(COSINE_EPS, "eps")
    mode = d.choice(COSINE_MODES, "values")
    x1 = S.values(d, full, dtype, "float", "x1")
    x2 = S.values(d, other, dtype, "float", "x2")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "mode.seed"))
    vectors = (*full[:axis], 1, *full[axis + 1:])
    pick = rng.random(vectors) < 0.5
    pick.reshape(-1)[0] = True
    if mode == "zero vectors":
        x1 = np.where(pick, 0.0, x1)
    elif mode == "tiny vectors":
        x1 = np.where(pick, DTYPES[dtype].round(x1 * eps * 2.0 ** -6), x1)
    elif mode == "parallel":
        sign = np.where(rng.random(vectors) < 0.5, -1.0, 1.0)
        x1 = DTYPES[dtype].round(np.broadcast_to(x2, np.broadcast_shapes(full, other)) * sign * 2.0)
    x1 = np.ascontiguousarray(np.broadcast_to(x1, full)) if x1.shape != full else x1
    layouts = {n: S.layouts(d, a.ndim, f"layout.{n}", channels_last=False) for n, a in (("x1", x1), ("x2", x2))}
    first = d.flag("x2 first")
    inputs = {"x1": x2, "x2": x1} if first else {"x1": x1, "x2": x2}
    layouts = {"x1": layouts["x2"], "x2": layouts["x1"]} if first else layouts
    return Case(op="CosineSimilarity", dtype=dtype, params={"dim": dim, "eps": eps}, inputs=inputs,
                differentiable=("x1", "x2"), layouts=layouts, cotangent_seed=S.seed(d), note=mode)


def cosine_invalid_case(d: S.Drawer, dtype: str) -> Case:
    """Shapes that do not broadcast, or a dim out of range."""
    rule = d.choice(("shapes do not broadcast", "dim out of range"), "rule")
    shapes = ((2, 4), (3, 4)) if rule == "shapes do not broadcast" else ((2, 4), (2, 4))
    inputs = {n: S.values(d, s, dtype, "float", n) for n, s in zip(("x1", "x2"), shapes)}
    return Case(op="CosineSimilarity", dtype=dtype, params={"dim": 1 if rule != "dim out of range" else 2,
                                                           "eps": 1e-8},
                inputs=inputs, differentiable=("x1", "x2"), invalid=True, note=rule)
