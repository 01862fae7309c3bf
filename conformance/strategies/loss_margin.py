"""Case strategies of the margin losses: MarginRankingLoss, HingeEmbeddingLoss,
MultiLabelMarginLoss, MultiMarginLoss, CosineEmbeddingLoss (see ``conformance.strategies.loss``).

Margins are small dyadic numbers of both signs (exact in every format, so the margin itself is
not rounded). Values at the kinks are small dyadic numbers too, so that every format computes the
kink's z exactly and the gradient there must follow torch's convention.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.numerics.loss import cosine_zero_vector
from conformance.strategies.loss import draw_reduction, invalid_kinds, rare, reduction_of, seeded_rng, values
from reference import loss_margin as ref

_MARGINS = (1.0, 0.0, 0.5, -0.5, 2.0, -1.0)


_KINK_FRACTIONS = (0.0, 0.25, 1.0)


_WEIGHT_KINDS = ("positive", "with zeros", "with negatives")


def _dyadic(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Small dyadic values k/4, |k| <= 8: exact in every format, as are their sums with a margin."""
    return rng.integers(-8, 9, shape) / 4


def _pow2_or_bounded(d: S.Drawer, tier: str, reduction: str, ndim: int, hi_ndim: int = 4) -> tuple[int, ...]:
    if tier == "exact" and reduction == "mean":
        return tuple(2 ** d.integer(0, 3, f"log2 size[{i}]") for i in range(ndim))
    return tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 4, hi=12, label="shape"))


def _signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def _exact_margin(d: S.Drawer, tier: str) -> float:
    margins = _MARGINS if tier == "float" else tuple(m for m in _MARGINS if m == int(m))
    return d.choice(margins, "margin")


@st.composite
def _ranking_case(draw, dtype: str, invalid: str = "") -> Case:
    """x1, x2 and y = ±1 of one rank (0 to 3), y possibly size 1 along every dim (broadcast); a
    drawn fraction of positions exactly on the kink x1 - x2 = y·margin. All three differentiable."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    params = draw_reduction(d)
    params["margin"] = _exact_margin(d, tier)
    ndim = d.integer(0, 3, "ndim")
    shape = _pow2_or_bounded(d, tier, reduction_of(Case("", dtype, params, {})), ndim)
    y_shape = (1,) * ndim if ndim and d.flag("target broadcast") else shape
    numel = max(1, math.prod(shape))
    limit = max(1, int(DTYPES[dtype].exact_integer_limit / (8 * numel)))
    x1 = values(d, shape, dtype, tier, "input1", int_limit=limit)
    x2 = values(d, shape, dtype, tier, "input2", int_limit=limit)
    rng = seeded_rng(d, "target.seed")
    y = _signs(rng, y_shape)
    fraction = d.choice(_KINK_FRACTIONS, "at the kink")
    if fraction:
        pick = np.array(rng.random(shape) < fraction)
        pick.flat[0] = True
        x1 = np.where(pick, _dyadic(rng, shape) if tier == "float" else x1, x1)
        x2 = np.where(pick, x1 - y * params["margin"], x2)
    if invalid:
        x2 = values(d, shape + (2,), dtype, "float", "input2")
    return Case(op="MarginRankingLoss", dtype=dtype, params=params,
                inputs={"input1": np.asarray(x1), "input2": np.asarray(x2), "target": y},
                differentiable=("input1", "input2", "target"), tier=tier, cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def _at_kink(z_of: Callable[[Case], np.ndarray]) -> Callable[[Case], bool]:
    return lambda case: bool(np.any(z_of(case) == 0))


@st.composite
def _hinge_case(draw, dtype: str, invalid: str = "") -> Case:
    """Inputs 0-d to 4-d, y = ±1 of the same shape, a drawn fraction of y = -1 positions exactly on
    the kink x = margin."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    params = draw_reduction(d)
    params["margin"] = _exact_margin(d, tier)
    ndim = d.integer(0, 4, "ndim")
    shape = _pow2_or_bounded(d, tier, reduction_of(Case("", dtype, params, {})), ndim)
    if invalid == "shapes":
        shape = shape[:-1] + (max(2, shape[-1]),) if shape else (3,)
    limit = max(1, int(DTYPES[dtype].exact_integer_limit / (4 * max(1, math.prod(shape)))))
    x = values(d, shape, dtype, tier, "input", int_limit=limit)
    rng = seeded_rng(d, "target.seed")
    y = _signs(rng, shape)
    fraction = d.choice(_KINK_FRACTIONS, "at the kink")
    if fraction:
        pick = np.array(rng.random(shape) < fraction)
        pick.flat[0] = True
        y = np.where(pick, -1.0, y)
        x = np.where(pick, params["margin"], x)
    if invalid == "shapes":
        y = np.ones(shape[:-1] + (shape[-1] + 1,))
    elif invalid:
        params = {"margin": params["margin"], "reduction": d.choice(("average", "Sum"), "reduction")}
    return Case(op="HingeEmbeddingLoss", dtype=dtype, params=params, inputs={"input": np.asarray(x), "target": y},
                differentiable=("input",), tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


_MLM_LABELS = ("distinct", "repeated")


@st.composite
def _mlm_case(draw, dtype: str, invalid: str = "") -> Case:
    """Scores (C) or (N, C); per sample a drawn number of labels (distinct, or with repeats) then
    -1 padding, and after the padding arbitrary values in [-1, C) that must not count; a drawn
    fraction of (label, non-label) pairs exactly on the kink x[y] - x[i] = 1 (small dyadics)."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    classes = d.integer(1, 10, "classes")
    shape = (classes,) if d.flag("unbatched (C)") else (d.integer(1, 24, "N"), classes)
    x = values(d, shape, dtype, "float", "input", scale=d.choice((1.0, 0.25), "input.scale"))
    rng = seeded_rng(d, "target.seed")
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    kind = d.choice(_MLM_LABELS, "labels")
    counts = rng.integers(0, classes + 1, rows)
    if d.flag("padded"):
        counts = np.minimum(counts, classes - 1)
    labels = rng.integers(0, classes, (rows, classes)) if kind == "repeated" else np.argsort(
        rng.random((rows, classes)), axis=1)
    if kind == "repeated" and classes > 2:  # the first sample repeats its first label
        labels[0, 1] = labels[0, 0]
        counts[0] = max(counts[0], 2)
    slot = np.arange(classes)[None, :]
    after = rng.integers(-1, classes, (rows, classes))
    target = np.where(slot < counts[:, None], labels, np.where(slot == counts[:, None], -1, after))
    if d.choice(_KINK_FRACTIONS, "at the kink") and classes > 1:
        x = _mlm_kinks(rng, x.reshape(rows, classes), target).reshape(shape)
    if invalid:
        target = target.copy()
        target.flat[d.integer(0, target.size - 1, "bad position")] = d.choice((classes, -2, classes + 3), "bad label")
    return Case(op="MultiLabelMarginLoss", dtype=dtype, params=params,
                inputs={"input": x, "target": target.reshape(shape).astype(np.int64)}, differentiable=("input",),
                tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


def _mlm_kinks(rng: np.random.Generator, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Small dyadic scores, and for each sample with a label y_0 and a non-label i: x[i] = x[y_0] - 1."""
    x = _dyadic(rng, x.shape)
    for n in range(x.shape[0]):  # one kink per sample (a handful of rows)
        row = target[n]
        first = row[0]
        if first < 0:
            continue
        labels = set(row[: int(np.argmax(row < 0)) if (row < 0).any() else len(row)].tolist())
        others = [i for i in range(x.shape[1]) if i not in labels]
        if others:
            x[n, others[0]] = x[n, first] - 1.0
    return x


def _mlm_pair_z(case: Case) -> np.ndarray:
    """z = 1 - x[y_j] + x[i] of every counted pair."""
    x2, labels, valid, is_target, _ = ref._mlm_parts(case.inputs["input"], case.inputs["target"])
    z, pairs, _ = ref._mlm_z(x2, labels, valid, is_target)
    return z[pairs]


def _mlm_pairs_at_kink(case: Case) -> bool:
    return bool(np.any(_mlm_pair_z(case) == 0))


def _repeated(target: np.ndarray) -> bool:
    rows = target.reshape(-1, target.shape[-1])
    for row in rows:
        end = int(np.argmax(row < 0)) if (row < 0).any() else len(row)
        if len(set(row[:end].tolist())) < end:
            return True
    return False


@st.composite
def _mm_case(draw, dtype: str, invalid: str = "") -> Case:
    """Scores (C) or (N, C), class targets, p in {1, 2}, a margin of either sign, optional class
    weights (positive, with zeros, with negatives); a drawn fraction of samples with one class
    exactly on the kink x[y] - x[i] = margin (small dyadics)."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    params["p"] = d.choice((1, 2), "p")
    params["margin"] = d.choice(_MARGINS, "margin")
    classes = d.integer(1, 10, "classes")
    shape = (classes,) if d.flag("unbatched (C)") else (d.integer(1, 32, "N"), classes)
    x = values(d, shape, dtype, "float", "input")
    rng = seeded_rng(d, "target.seed")
    target = rng.integers(0, classes, shape[:-1])
    fraction = d.choice(_KINK_FRACTIONS, "at the kink")
    if fraction and classes > 1:
        x2, t2 = _dyadic(rng, shape).reshape(-1, classes), target.reshape(-1)
        other = (t2 + 1 + rng.integers(0, classes - 1, t2.shape)) % classes
        x2[np.arange(t2.size), other] = x2[np.arange(t2.size), t2] - params["margin"]
        x = x2.reshape(shape)
    inputs = {"input": x, "target": np.asarray(target, dtype=np.int64)}
    if d.flag("weight"):
        w = rng.uniform(0.25, 2.0, classes)
        kind = d.choice(_WEIGHT_KINDS, "weight.kind")
        if kind != "positive":
            w = np.where(np.arange(classes) % 2 == 0, 0.0 if kind == "with zeros" else -w, w)
        inputs["weight"] = DTYPES[dtype].round(w)
    if invalid:
        params, inputs = _break_mm(d, invalid, params, inputs, classes)
    return Case(op="MultiMarginLoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input",),
                tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


_MM_INVALID = ("negative p", "p not 1 or 2", "target out of range", "weight length", "reduction")


def _break_mm(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
              classes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    params, inputs = dict(params), dict(inputs)
    if kind == "negative p":
        params["p"] = d.choice((-1, -2), "p")
    elif kind == "p not 1 or 2":
        params["p"] = d.choice((3, 0), "p")
    elif kind == "target out of range":
        t = np.array(inputs["target"])
        t.flat[d.integer(0, max(0, t.size - 1), "bad position")] = d.choice((classes, -1, classes + 2), "bad class")
        inputs["target"] = t
    elif kind == "weight length":
        inputs["weight"] = np.ones(classes + 1)
    else:
        params = {k: v for k, v in params.items() if k not in ("size_average", "reduce")}
        params["reduction"] = d.choice(("average", "Sum"), "reduction")
    return params, inputs


def _mm_z(case: Case) -> np.ndarray:
    """z = margin - x[y] + x[i] of every i != y."""
    x, t = case.inputs["input"], case.inputs["target"]
    x2, t2, w = ref._mm_check(x, t, case.params["p"], case.inputs.get("weight"))
    z, others, _, _ = ref._mm_parts(x2, t2, w, case.params["margin"])
    return z[others]


def _mm_z_at_kink(case: Case) -> bool:
    return bool(np.any(_mm_z(case) == 0))


def _mm_min_abs_z(case: Case) -> float:
    z = _mm_z(case)
    return float(np.min(np.abs(z))) if z.size else np.inf


@st.composite
def _cosine_case(draw, dtype: str, invalid: str = "") -> Case:
    """x1, x2 of shape (N, D) or (D), y = ±1 of shape (N) or (); a margin of either sign; a drawn
    fraction of zero vectors (cosine 0 through ε = 1e-12) or of equal pairs (cosine 1)."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    params["margin"] = d.choice((0.0, 0.5, -0.5, 0.25), "margin")
    dim = d.integer(2 if invalid else 1, 16, "D")
    shape = (dim,) if d.flag("unbatched (D)") else (d.integer(1, 32, "N"), dim)
    # (Σx1²)·(Σx2²) stays within the format (torch multiplies the squared norms before the square
    # root), except in rare cases where the first pair has entries of 30 (the float16 product
    # then overflows: a known discrepancy).
    bound = DTYPES[dtype].round(DTYPES[dtype].max_value ** 0.25 / (2 * math.sqrt(dim)))
    x1 = np.array(np.clip(values(d, shape, dtype, "float", "input1"), -bound, bound))
    x2 = np.array(np.clip(values(d, shape, dtype, "float", "input2"), -bound, bound))
    if rare(d, "large norms"):
        x1.reshape(-1, dim)[0], x2.reshape(-1, dim)[0] = 30.0, -30.0 if d.flag("opposite") else 30.0
    rng = seeded_rng(d, "target.seed")
    y = _signs(rng, shape[:-1])
    rows = d.choice(("independent", "equal"), "vectors")
    if rare(d, "zero vectors"):
        rows = "zero vectors"
    if rows != "independent":
        pick = np.array(rng.random(shape[:-1]) < 0.5)
        pick.flat[0] = True
        pick = pick[..., None]
        if rows == "zero vectors":
            side = rng.random(shape[:-1])[..., None]
            x1 = np.where(pick & (side < 0.67), 0.0, x1)
            x2 = np.where(pick & (side > 0.33), 0.0, x2)
        else:
            x2 = np.where(pick, x1, x2)
    if invalid == "shapes":
        x2 = values(d, shape[:-1] + (dim + 1,), dtype, "float", "input2")
    elif invalid == "target shape":
        y = np.ones(shape[:-1] + (2,))
    elif invalid:
        params = {"margin": params["margin"], "reduction": d.choice(("average", "Sum"), "reduction")}
    return Case(op="CosineEmbeddingLoss", dtype=dtype, params=params, inputs={"input1": x1, "input2": x2, "target": y},
                differentiable=("input1", "input2"), tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid),
                note=invalid)



ranking_cases, hinge_cases, mlm_cases = _ranking_case, _hinge_case, _mlm_case
mm_cases, cosine_cases = _mm_case, _cosine_case
invalid_ranking_cases = partial(_ranking_case, invalid="ranks differ")
invalid_mlm_cases = partial(_mlm_case, invalid="target out of range")
invalid_hinge_cases = invalid_kinds(_hinge_case, ("shapes", "reduction"))
invalid_mm_cases = invalid_kinds(_mm_case, _MM_INVALID)
invalid_cosine_cases = invalid_kinds(_cosine_case, ("shapes", "target shape", "reduction"))


def ranking_z(case: Case) -> np.ndarray:
    return ref.margin_ranking_z(*(case.inputs[n] for n in ("input1", "input2", "target")), case.params["margin"])


ranking_at_kink = _at_kink(ranking_z)
mlm_pairs_at_kink = _mlm_pairs_at_kink
mm_z_at_kink = _mm_z_at_kink


def hinge_at_kink(case: Case) -> bool:
    return bool(np.any((case.inputs["target"] == -1) & (case.inputs["input"] == case.params["margin"])))


def negative_margin(case: Case) -> bool:
    return case.params["margin"] < 0


def repeated_labels(case: Case) -> bool:
    return _repeated(case.inputs["target"])


def mm_weights_not_positive(case: Case) -> bool:
    return "weight" in case.inputs and bool(np.any(case.inputs["weight"] <= 0))


def smooth_ranking(case: Case) -> bool:
    return bool(np.all(np.abs(ranking_z(case)) > 1e-3))


def smooth_hinge(case: Case) -> bool:
    return bool(np.all(np.abs(case.inputs["input"] - case.params["margin"]) > 1e-3))


def smooth_mlm(case: Case) -> bool:
    return bool(np.all(np.abs(_mlm_pair_z(case)) > 1e-3))


def smooth_mm(case: Case) -> bool:
    return _mm_min_abs_z(case) > 1e-3


def smooth_cosine(case: Case) -> bool:
    """No zero vector and no y = -1 pair near cos = margin."""
    return not cosine_zero_vector(case) and bool(np.all(np.abs(ref.cosine_embedding_terms(
        case.inputs["input1"], case.inputs["input2"], -np.ones_like(case.inputs["target"]), case.params["margin"]))
        > 1e-3))


def large_norms(case: Case) -> bool:
    return bool(np.any(np.sum(case.inputs["input1"] ** 2, axis=-1) * np.sum(case.inputs["input2"] ** 2, axis=-1)
                       > 65504))
