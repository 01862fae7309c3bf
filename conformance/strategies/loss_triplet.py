"""Case strategies of the triplet losses: TripletMarginLoss and TripletMarginWithDistanceLoss (see
``conformance.strategies.loss`` for the shared draws).

Values: three independent draws, or the positive and the negative near the anchor; at the kink
(z = margin + d(a, p) - d(a, n) = 0: single-component dyadic differences, exact in every format
for p ∈ {1, 2} and eps = 0); or swap ties (the positive the anchor's mirror image through the
negative, so d(p, n) = d(a, n) exactly for eps = 0).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.numerics.loss import triplet_distance
from conformance.spec import CaseStrategy, scaffold_node
from conformance.strategies.loss import draw_reduction, invalid_kinds, seeded_rng, values
from reference.loss import REDUCTIONS
from reference.loss_triplet import Distance, pairwise, triplet_parts

P_CHOICES = (2.0, 1.0, 3.0, 1.5)
EPS_CHOICES = (1e-6, 0.0, 1e-4)
MARGINS = (1.0, 0.5, 2.0, 0.25)
VALUE_MODES = ("independent", "near the anchor", "at the kink", "swap ties")
DISTANCES = ("default", "PairwiseDistance", "callable")
INVALID = ("margin <= 0", "ranks differ", "shapes", "reduction")
NAMES = ("anchor", "positive", "negative")


def distance_node(kind: str, p: float, eps: float) -> dict[str, Any] | None:
    """The distance_function argument as a call-tree node: None (torch's default pairwise
    distance), a torch.nn.PairwiseDistance module, or a plain callable,
    functools.partial(torch.nn.functional.pairwise_distance, p=p, eps=eps)."""
    if kind == "default":
        return None
    if kind == "PairwiseDistance":
        return {"module": {"target": "torch.nn.PairwiseDistance", "init": {"p": p, "eps": eps}}}
    function = scaffold_node("pkgutil.resolve_name", {"literal": "torch.nn.functional.pairwise_distance"})
    return scaffold_node("functools.partial", function, p=p, eps=eps)


def distance_of(node: dict[str, Any] | None) -> Distance:
    """The reference distance of a distance_function node (``distance_node``)."""
    if node is None:
        return pairwise()
    init = node.get("module", {}).get("init") or node.get("call", {}).get("kwargs") or {}
    return pairwise(float(init.get("p", 2.0)), float(init.get("eps", 1e-6)))


def with_distance_kwargs(case: Case) -> dict[str, Any]:
    """triplet_margin_with_distance_loss's keyword arguments: the case's, with the distance node
    made the reference distance."""
    return {**case.params, "distance_function": distance_of(case.params.get("distance_function"))}


def _params(d: S.Drawer, op: str) -> tuple[dict[str, Any], float, float]:
    """(parameters, the distance's p, its eps)."""
    if op == "TripletMarginLoss":
        params = draw_reduction(d)
        params.update(margin=d.choice(MARGINS, "margin"), p=d.choice(P_CHOICES, "p"), eps=d.choice(EPS_CHOICES, "eps"),
                      swap=d.flag("swap"))
        return params, params["p"], params["eps"]
    kind = d.choice(DISTANCES, "distance")
    p, eps = (2.0, 1e-6) if kind == "default" else (d.choice(P_CHOICES, "p"), d.choice(EPS_CHOICES, "eps"))
    params = {"distance_function": distance_node(kind, p, eps), "margin": d.choice(MARGINS, "margin"),
              "swap": d.flag("swap"), "reduction": d.choice(REDUCTIONS, "reduction")}
    return params, p, eps


def _dyadic(rng: np.random.Generator, shape: tuple[int, ...], scale: int = 8) -> np.ndarray:
    return rng.integers(-scale, scale + 1, shape) / 4


def _nonzero_dyadic(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """±k/4 with 1 <= k <= 8: no two rows of the triplet coincide (a distance of eps alone, whose
    powers leave float16's range for p ∉ {1, 2}: the distance family's known discrepancy)."""
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0) * rng.integers(1, 9, shape) / 4


def _kink(rng: np.random.Generator, anchor: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) with differences from the anchor along one component j per row:
    δ_p = a·e_j, δ_n = sign(a)·(|a| + margin)·e_j, so d(a, n) = d(a, p) + margin for every p."""
    rows = anchor.reshape(-1, anchor.shape[-1])
    j = rng.integers(0, rows.shape[1], rows.shape[0])
    a = _nonzero_dyadic(rng, (rows.shape[0],))
    sign = np.where(a < 0, -1.0, 1.0)
    pos, neg = rows.copy(), rows.copy()
    pos[np.arange(rows.shape[0]), j] += a
    neg[np.arange(rows.shape[0]), j] += sign * (np.abs(a) + margin)
    return pos.reshape(anchor.shape), neg.reshape(anchor.shape)


@st.composite
def _triplet_case(draw: Any, op: str, dtype: str, invalid: str = "") -> Case:
    """Rows (N, D) or unbatched (D) of anchor, positive and negative in a drawn value mode (see the
    module docstring), any layout; all three differentiable."""
    d = S.Drawer(draw)
    params, _, _ = _params(d, op)
    unbatched = d.flag("unbatched (D)")
    dim = d.integer(3 if invalid == "shapes" else 1, 16, "D")
    shape = (dim,) if unbatched else (d.integer(1, 32, "N"), dim)
    mode = d.choice(VALUE_MODES, "values")
    rng = seeded_rng(d, "values.seed")
    if mode == "independent":
        arrays = [values(d, shape, dtype, "float", name) for name in NAMES]
    elif mode == "near the anchor":
        anchor = values(d, shape, dtype, "float", "anchor")
        arrays = [anchor, anchor + 0.3 * rng.standard_normal(shape), anchor + rng.standard_normal(shape)]
    else:
        anchor = _dyadic(rng, shape)
        if mode == "at the kink":
            arrays = [anchor, *_kink(rng, anchor, params["margin"])]
        else:  # swap ties: positive = 2·negative - anchor, the negative off the anchor in every row
            negative = anchor + _dyadic(rng, shape)
            negative[..., 0] = anchor[..., 0] + _nonzero_dyadic(rng, shape[:-1])
            arrays = [anchor, 2 * negative - anchor, negative]
    inputs = {name: DTYPES[dtype].round(np.asarray(a)) for name, a in zip(NAMES, arrays)}
    layouts = {name: S.layouts(d, len(shape), f"layout.{name}") for name in NAMES}
    if invalid:
        params = _break(d, invalid, params, inputs, shape)
        layouts = {name: S.CONTIGUOUS for name in NAMES}
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=NAMES, layouts=layouts,
                tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid or mode)


def _break(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
           shape: tuple[int, ...]) -> dict[str, Any]:
    """margin <= 0 (ValueError), anchor/positive/negative of different ranks (RuntimeError), last
    dims that do not broadcast, or an unknown reduction string."""
    params = dict(params)
    if kind == "margin <= 0":
        params["margin"] = d.choice((0.0, -1.0), "margin")
    elif kind == "ranks differ":
        inputs["positive"] = inputs["positive"][None] if len(shape) == 1 else inputs["positive"][0]
    elif kind == "shapes":
        inputs["negative"] = inputs["negative"][..., :-1]
    else:
        params = {k: v for k, v in params.items() if k not in ("size_average", "reduce")}
        params["reduction"] = d.choice(("batchmean", "average", "Sum"), "reduction")
    return params


def triplet_cases(op: str) -> CaseStrategy:
    return partial(_triplet_case, op)


def invalid_triplet_cases(op: str) -> CaseStrategy:
    return invalid_kinds(_triplet_case, INVALID, op)


def _distances(case: Case) -> dict[str, np.ndarray]:
    p, eps = triplet_distance(case)
    a, pos, neg = (case.inputs[k] for k in NAMES)
    return triplet_parts(a, pos, neg, pairwise(p, eps), float(case.params["margin"]), bool(case.params["swap"]))


def at_the_kink(case: Case) -> bool:
    """Some triplet has z = margin + d(a, p) - d(a, n) = 0 exactly."""
    return bool(np.any(_distances(case)["z"] == 0))


def swap_tie(case: Case) -> bool:
    """swap=True and some triplet has d(p, n) = d(a, n) exactly."""
    parts = _distances(case)
    return bool(case.params["swap"]) and bool(np.any(parts["d_neg"] == parts["d_swap"]))


def smooth_triplet(case: Case) -> bool:
    """Finite differences apply: every z and, with swap, every d(a, n) - d(p, n) away from 0, and no
    difference entry near 0 (the kink of |d| for p = 1, and where (|d|/N)^(p-1) is not smooth)."""
    parts = _distances(case)
    _, eps = triplet_distance(case)
    a, pos, neg = (case.inputs[k] for k in NAMES)
    diffs = [a - pos + eps, a - neg + eps] + ([pos - neg + eps] if case.params["swap"] else [])
    far = all(bool(np.all(np.abs(v) > 1e-3)) for v in diffs)
    gap = not case.params["swap"] or bool(np.all(np.abs(parts["d_neg"] - parts["d_swap"]) > 1e-3))
    return far and gap and bool(np.all(np.abs(parts["z"]) > 1e-3))
