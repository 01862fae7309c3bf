"""Case strategies of the logistic losses: BCELoss, BCEWithLogitsLoss, SoftMarginLoss,
MultiLabelSoftMarginLoss (see ``conformance.strategies.loss`` for the shared draws)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import Regime
from conformance.strategies.loss import draw_reduction, invalid_kinds, rare, seeded_rng, values

_WEIGHT_KINDS = ("positive", "with zeros", "with negatives")


def _shape(d: S.Drawer, lo_ndim: int = 0, hi_ndim: int = 4) -> tuple[int, ...]:
    ndim = d.integer(lo_ndim, hi_ndim, "ndim")
    return tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 4, hi=12, label="shape"))


def _breakable(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape whose last dim is at least 2, so that a last dim one longer cannot broadcast to it."""
    return shape[:-1] + (max(2, shape[-1]),) if shape else (3,)


def _weight(d: S.Drawer, dtype: str, shape: tuple[int, ...], name: str = "weight") -> np.ndarray | None:
    """An optional weight broadcasting to ``shape``: its trailing dims, each kept or 1 (a (C,)
    vector along the last dim first); positive, with zeros, or with negative entries."""
    if not d.flag(name):
        return None
    keep = d.integer(min(1, len(shape)), len(shape), f"{name}.ndim")
    tail = shape[len(shape) - keep:]
    w_shape = tuple(s if (i == keep - 1 or not d.flag(f"{name}.dim[{i}] is 1")) else 1 for i, s in enumerate(tail))
    rng = seeded_rng(d, f"{name}.seed")
    w = rng.uniform(0.25, 2.0, w_shape)
    kind = d.choice(_WEIGHT_KINDS, f"{name}.kind")
    if kind != "positive" and w.size:
        pick = np.array(rng.random(w_shape) < 0.4)
        pick.flat[0] = True
        w = np.where(pick, 0.0 if kind == "with zeros" else -w, w)
    return DTYPES[dtype].round(w)


def _weights_not_positive(*names: str) -> Regime:
    return Regime("weights with zeros/negatives",
                  lambda case: any(n in case.inputs and bool(np.any(case.inputs[n] <= 0)) for n in names),
                  {**{n: True for n in names}, **{f"{n}.kind": "with negatives" for n in names}})


def _labels(d: S.Drawer, rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Targets in [0, 1]: hard labels {0, 1} first, or soft ones."""
    if d.choice(("hard labels", "soft"), "target.kind") == "hard labels":
        return np.array(rng.random(shape) < 0.5, dtype=np.float64)
    return DTYPES[dtype].round(rng.random(shape))


_BCE_INPUTS = ("uniform", "near 0 and 1")


@st.composite
def _bce_case(draw, dtype: str, invalid: str = "") -> Case:
    """Probabilities 0-d to 4-d: uniform, close to the edges (1e-k from 0 or 1), or with exact 0
    and 1 (the logs clamp at -100); targets hard or soft; an optional weight broadcast to the
    input. Input and target differentiable."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    shape = _breakable(_shape(d)) if invalid else _shape(d)
    rng = seeded_rng(d, "input.seed")
    kind = d.choice(_BCE_INPUTS[:2], "input.kind")
    x = rng.random(shape)
    if kind == "near 0 and 1":
        near = 10.0 ** -rng.integers(2, 9, shape)
        # Kept off the edges once rounded and in the normal range: at least the smallest normal,
        # at most 1 - 2^-p.
        x = np.clip(np.where(rng.random(shape) < 0.5, near, 1 - near), DTYPES[dtype].min_normal,
                    1 - DTYPES[dtype].unit_roundoff)
    if rare(d, "input.exact 0 and 1"):
        pick = np.array(rng.random(shape) < 0.5)
        pick.flat[0] = True
        x = np.where(pick, np.round(rng.random(shape)), x)
    inputs = {"input": DTYPES[dtype].round(x), "target": _labels(d, rng, shape, dtype)}
    w = _weight(d, dtype, shape)
    if w is not None:
        inputs["weight"] = w
    if invalid:
        _break_bce(d, invalid, params, inputs)
    return Case(op="BCELoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


_BCE_INVALID = ("input outside [0, 1]", "target outside [0, 1]", "target shape", "weight shape", "reduction")


def _break_bce(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray]) -> None:
    x = inputs["input"]
    if kind in ("input outside [0, 1]", "target outside [0, 1]"):
        name = kind.split()[0]
        v = np.array(inputs[name])
        v.flat[d.integer(0, max(0, v.size - 1), "bad position")] = d.choice((1.5, -0.25, 2.0), "bad value")
        inputs[name] = v
    elif kind == "target shape":
        inputs["target"] = np.zeros(x.shape + (2,))
    elif kind == "weight shape":
        inputs["weight"] = np.ones(x.shape[:-1] + (x.shape[-1] + 1,) if x.ndim else (2,))
    else:
        params.pop("size_average", None)
        params.pop("reduce", None)
        params["reduction"] = d.choice(("average", "Sum"), "reduction")


_LOGIT_SCALES = (1.0, 4.0, "large")


def _logits(d: S.Drawer, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Normal logits at a drawn scale, or 'large' ones of both signs (|x| from 20 to 1000, within
    the format)."""
    scale = d.choice(_LOGIT_SCALES, "input.scale")
    if scale != "large":
        return values(d, shape, dtype, "float", "input", scale=scale)
    rng = seeded_rng(d, "input.seed")
    mags = np.exp(rng.uniform(math.log(20), math.log(1000), shape))
    return DTYPES[dtype].round(np.where(rng.random(shape) < 0.5, -mags, mags))


@st.composite
def _logits_case(draw, dtype: str, invalid: str = "") -> Case:
    """Logits 0-d to 4-d, hard or soft targets, an optional weight and an optional pos_weight
    (both broadcast to the input: pos_weight typically a (C,) vector along the last dim)."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    shape = _breakable(_shape(d)) if invalid else _shape(d)
    rng = seeded_rng(d, "target.seed")
    inputs = {"input": _logits(d, shape, dtype), "target": _labels(d, rng, shape, dtype)}
    for name in ("weight", "pos_weight"):
        w = _weight(d, dtype, shape, name)
        if w is not None:
            inputs[name] = w
    if invalid == "pos_weight shape":
        inputs["pos_weight"] = np.ones((shape[-1] + 1,) if shape else (2,))
    elif invalid == "target shape":
        inputs["target"] = np.zeros(shape + (2,))
    elif invalid:
        params = {"reduction": d.choice(("average", "Sum"), "reduction")}
    return Case(op="BCEWithLogitsLoss", dtype=dtype, params=params, inputs=inputs,
                differentiable=("input", "target"), tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid),
                note=invalid)


_SOFT_MARGIN_SCALES = (1.0, 3.0)


@st.composite
def _soft_margin_case(draw, dtype: str, invalid: str = "") -> Case:
    """Inputs 0-d to 4-d at a drawn scale ('large': normals of scale 1000 with -y·x = 1000 at the
    first element, beyond the overflow of exp in every format), targets ±1 of the same shape or
    broadcasting to it."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    shape = _breakable(_shape(d)) if invalid else _shape(d)
    rng = seeded_rng(d, "target.seed")
    y_shape = shape[1:] if shape and d.flag("target broadcast") else shape
    y = np.where(rng.random(y_shape) < 0.5, -1.0, 1.0)
    scale = "large" if rare(d, "input.large") else d.choice(_SOFT_MARGIN_SCALES, "input.scale")
    # Below the overflow of exp(-y·x) unless 'large' (then up to ±30000, within every format).
    limit = 30000.0 if scale == "large" else DTYPES[dtype].round(0.9 * math.log(DTYPES[dtype].max_value))
    x = np.array(np.clip(values(d, shape, dtype, "float", "input", scale=1000.0 if scale == "large" else scale),
                         -limit, limit))
    if scale == "large":
        x.flat[0] = -1000.0 * y.flat[0]
    if invalid == "shapes":
        y = np.ones(shape[:-1] + (shape[-1] + 1,))
    elif invalid:
        params = {"reduction": d.choice(("average", "Sum"), "reduction")}
    return Case(op="SoftMarginLoss", dtype=dtype, params=params, inputs={"input": x, "target": y},
                differentiable=("input",), tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


@st.composite
def _mlsm_case(draw, dtype: str, invalid: str = "") -> Case:
    """Scores (C) or (N, C), hard or soft targets of the same shape, optional class weights (C)."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    classes = d.integer(2 if invalid else 1, 12, "classes")
    shape = (classes,) if d.flag("unbatched (C)") else (d.integer(1, 32, "N"), classes)
    rng = seeded_rng(d, "target.seed")
    inputs = {"input": _logits(d, shape, dtype), "target": _labels(d, rng, shape, dtype)}
    w = _weight(d, dtype, (classes,))
    if w is not None:
        inputs["weight"] = w
    if invalid == "target shape":
        inputs["target"] = np.zeros(shape[:-1] + (classes + 1,))
    elif invalid == "weight shape":
        inputs["weight"] = np.ones(classes + 1)
    elif invalid:
        params = {"reduction": d.choice(("average", "Sum"), "reduction")}
    return Case(op="MultiLabelSoftMarginLoss", dtype=dtype, params=params, inputs=inputs,
                differentiable=("input", "target"), tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid),
                note=invalid)



bce_cases, logits_cases, soft_margin_cases, mlsm_cases = _bce_case, _logits_case, _soft_margin_case, _mlsm_case
INVALID_BCE = invalid_kinds(_bce_case, _BCE_INVALID)
INVALID_LOGITS = invalid_kinds(_logits_case, ("pos_weight shape", "target shape", "reduction"))
INVALID_SOFT_MARGIN = invalid_kinds(_soft_margin_case, ("shapes", "reduction"))
INVALID_MLSM = invalid_kinds(_mlsm_case, ("target shape", "weight shape", "reduction"))
weights_not_positive = _weights_not_positive


def large_logits(case: Case) -> bool:
    return bool(np.any(np.abs(case.inputs["input"]) >= 20))


def smooth_bce(case: Case) -> bool:
    """Input and target away from 0 and 1 (finite differences apply)."""
    x, t = case.inputs["input"], case.inputs["target"]
    return bool(np.all(x * (1 - x) > 1e-6) and np.all(t * (1 - t) > 1e-6))
