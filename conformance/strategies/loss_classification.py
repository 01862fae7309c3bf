"""Case strategies of the classification losses: CrossEntropyLoss, NLLLoss, NLLLoss2d (see
``conformance.strategies.loss`` for the shared draws)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import CaseStrategy, Regime
from conformance.strategies.loss import draw_reduction, invalid_kinds, rare, values
from reference import loss_classification as ref

# CrossEntropyLoss's class weights: positive first, then with zeros, with negatives, all negative.
CE_WEIGHT_KINDS = ("positive", "with zeros", "with negatives", "all negative")


def _nonzero_total(weight: np.ndarray, target: np.ndarray, ignore_index: int) -> np.ndarray:
    """The weights, with the weight of one counted target class doubled where the targets' weights
    would cancel exactly (Σ w[t] = 0 while some w[t] != 0): 'mean' would divide a non-zero sum by 0,
    whose gradient has no defined sign pattern. A sum of zero weights (0/0 = NaN) is kept."""
    counted = target[target != ignore_index]
    wt = weight[counted]
    if counted.size and np.sum(wt) == 0 and np.any(wt != 0):
        weight = weight.copy()
        weight[counted[np.flatnonzero(wt)[0]]] *= 2
    return weight

_LABEL_SMOOTHING = (0.0, 0.1, 0.5, 1.0)


def _ce_shape(d: S.Drawer) -> tuple[int, ...]:
    """(C), (N, C) or (N, C, d1, ..., dK) with K = 1..3."""
    classes = d.integer(1, 10, "classes")
    form = d.choice(("(N, C)", "(C)", "(N, C, d1, ..., dK)"), "input form")
    if form == "(C)":
        return (classes,)
    extra = d.integer(1, 3, "K") if form != "(N, C)" else 0
    sizes = S.sizes_within(d, 1 + extra, S.DEFAULT_BUDGET // (2 * classes), hi=8, label="N, d")
    return (sizes[0], classes, *sizes[1:])


def _index_target(d: S.Drawer, x_shape: tuple[int, ...], ignore_index: int) -> np.ndarray:
    """Classes in [0, C), with a drawn fraction of positions set to ignore_index (1.0: all)."""
    classes = x_shape[ref.class_axis(len(x_shape))]
    t_shape = x_shape[:1] + x_shape[2:] if len(x_shape) > 1 else ()
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "target.seed"))
    target = rng.integers(0, classes, size=t_shape)
    fraction = d.choice((0.0, 0.3, 1.0), "ignored fraction")
    ignored = np.array(rng.random(t_shape) < fraction)
    if fraction:
        ignored.flat[0] = True  # present at least once
    return np.where(ignored, ignore_index, target).astype(np.int64)


_WEIGHT_KINDS = ("positive", "with zeros", "with negatives")


def _class_weights(d: S.Drawer, dtype: str, classes: int, kinds: tuple[str, ...] = _WEIGHT_KINDS,
                   tier: str = "float") -> np.ndarray:
    """Class weights: positive, with exact zeros, with negative entries, or all negative (torch
    accepts each); small integers in the exact tier."""
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "weight.seed"))
    kind = d.choice(kinds, "weight.kind")
    w = rng.integers(1, 3, classes).astype(np.float64) if tier == "exact" else rng.uniform(0.25, 2.0, classes)
    if kind == "with zeros":
        w = np.where(rng.random(classes) < 0.4, 0.0, w)
        w[0] = 0.0
    elif kind == "with negatives":
        w = np.where(rng.random(classes) < 0.4, -w, w)
        w[0] = -w[0] if w[0] > 0 else w[0]
    elif kind == "all negative":
        w = -w
    return DTYPES[dtype].round(w)


def _probability_target(d: S.Drawer, x_shape: tuple[int, ...], dtype: str, layout: Layout) -> np.ndarray:
    """Class probabilities: a softmax of normals, one-hot rows, or arbitrary values in [0, 1)
    (torch does not require the rows to sum to 1)."""
    kind = d.choice(("distribution", "one-hot", "unnormalised"), "target.kind")
    ax = ref.class_axis(len(x_shape))
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "target.seed"))
    gen_shape = S.source_shape(x_shape, layout)
    if kind == "distribution":
        z = rng.standard_normal(gen_shape)
        t = np.exp(z - z.max(axis=ax, keepdims=True))
        t = t / t.sum(axis=ax, keepdims=True)
    elif kind == "one-hot":
        t = (np.argsort(rng.random(gen_shape), axis=ax) == 0).astype(np.float64)
    else:
        t = rng.random(gen_shape)
    return np.ascontiguousarray(np.broadcast_to(DTYPES[dtype].round(t), x_shape))


def _ce_params(d: S.Drawer, classes: int, probabilities: bool) -> dict[str, Any]:
    params = draw_reduction(d)
    params["label_smoothing"] = d.choice(_LABEL_SMOOTHING, "label_smoothing")
    # The default, a negative value off the classes, and (class indices) a class among the targets.
    # ignore_index has no effect on probability targets; torch rejects non-negative values there.
    choices = ("default -100", "-1") if probabilities else ("default -100", "a class", "-1")
    choice = d.choice(choices, "ignore_index")
    params["ignore_index"] = {"default -100": -100, "-1": -1}.get(choice, classes - 1)
    return params


_CE_INVALID_KINDS = ("target out of range", "label_smoothing > 1", "label_smoothing < 0",
                     "ignore_index >= 0 with probabilities", "weight length")


@st.composite
def _ce_case(draw, dtype: str, invalid: str = "") -> Case:
    """Logits (C), (N, C) or (N, C, d1..dK); class-index (int64) or class-probability (float,
    differentiable) targets; optional class weights (a buffer); any logits layout.

    ``invalid`` names one of ``_CE_INVALID_KINDS`` to break (the target form it needs is forced).
    """
    d = S.Drawer(draw)
    tier = S.tier(d, ("float",))
    if invalid in ("target out of range", "ignore_index >= 0 with probabilities"):
        probabilities = invalid == "ignore_index >= 0 with probabilities"
    else:
        probabilities = d.choice(("class indices", "probabilities"), "target form") == "probabilities"
    x_shape = _ce_shape(d)
    classes = x_shape[ref.class_axis(len(x_shape))]
    params = _ce_params(d, classes, probabilities)
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True)}
    inputs = {"input": values(d, x_shape, dtype, tier, "input", layout=layouts["input"],
                                scale=d.choice((1.0, 8.0), "input.scale"))}
    if probabilities:
        layouts["target"] = S.layouts(d, len(x_shape), "layout.target", expanded=True)
        inputs["target"] = _probability_target(d, x_shape, dtype, layouts["target"])
    else:
        inputs["target"] = _index_target(d, x_shape, params["ignore_index"])
    if d.flag("weight"):
        inputs["weight"] = _class_weights(d, dtype, classes, CE_WEIGHT_KINDS)
        if not probabilities:
            inputs["weight"] = _nonzero_total(inputs["weight"], inputs["target"], params["ignore_index"])
    if invalid:
        params, inputs = _make_invalid(d, invalid, params, inputs, classes)
    differentiable = ("input", "target") if probabilities else ("input",)
    return Case(op="CrossEntropyLoss", dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                layouts=layouts, tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


def _make_invalid(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
                  classes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Break one thing torch checks (see ``_CE_INVALID_KINDS``)."""
    params, inputs = dict(params), dict(inputs)
    if kind == "target out of range":
        target = inputs["target"].copy().reshape(-1)
        target[d.integer(0, target.size - 1, "bad position")] = d.choice((classes, classes + 3, -2), "bad class")
        inputs["target"] = target.reshape(inputs["target"].shape)
        params["ignore_index"] = -100
    elif kind == "label_smoothing > 1":
        params["label_smoothing"] = d.choice((1.5, 2.0), "label_smoothing")
    elif kind == "label_smoothing < 0":
        # Documented range [0, 1]; torch 2.13 silently treats a negative value as 0 (see notes).
        params["label_smoothing"] = d.choice((-0.1, -1.0), "label_smoothing")
    elif kind == "ignore_index >= 0 with probabilities":
        params["ignore_index"] = d.choice((0, classes - 1, classes + 2), "ignore_index")
    else:
        inputs["weight"] = np.ones(classes + d.integer(1, 3, "extra weights"))
    return params, inputs


_NLL_IGNORE = ("default -100", "a class", "-1", "above the classes")


_NLL_INVALID_KINDS = ("target out of range", "weight length", "target shape", "reduction")


def _nll_shape(d: S.Drawer, spatial_2d: bool) -> tuple[int, ...]:
    if not spatial_2d:
        return _ce_shape(d)
    classes = d.integer(1, 10, "classes")
    n, h, w = S.sizes_within(d, 3, S.DEFAULT_BUDGET // (2 * classes), hi=8, label="N, H, W")
    return (n, classes, h, w)


@st.composite
def _nll_case(draw, op: str, dtype: str, invalid: str = "") -> Case:
    """Scores (C), (N, C) or (N, C, d1..dK) (NLLLoss2d: (N, C, H, W)), class-index targets with a
    drawn fraction ignored, ignore_index the default, -1, a class or above the classes; optional
    class weights (positive, with zeros, with negatives). Exact tier: small integer scores and
    weights, so every sum is exact and 'mean' rounds once."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    x_shape = _nll_shape(d, op == "NLLLoss2d")
    ax = ref.class_axis(len(x_shape))
    classes = x_shape[ax]
    params = draw_reduction(d)
    choice = d.choice(_NLL_IGNORE, "ignore_index")
    params["ignore_index"] = {"default -100": -100, "-1": -1, "a class": classes - 1}.get(choice, classes + 3)
    positions = math.prod(x_shape) // classes
    limit = max(1, min(8, DTYPES[dtype].exact_integer_limit // (2 * positions)))
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True)}
    if len(x_shape) == 4 and layouts["input"].kind in ("channels_last", "permuted") and not rare(
            d, "dense non-contiguous 4-D input"):
        layouts["input"] = S.CONTIGUOUS  # torch's 4-D backward rejects it (a known discrepancy)
    inputs = {"input": values(d, x_shape, dtype, tier, "input", int_limit=limit, layout=layouts["input"]),
              "target": _index_target(d, x_shape, params["ignore_index"])}
    if d.flag("weight"):
        inputs["weight"] = _class_weights(d, dtype, classes, tier=tier)
    if invalid:
        params, inputs = _break_nll(d, invalid, params, inputs, classes)
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=("input",), layouts=layouts,
                tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


def _break_nll(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
               classes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Break one thing torch checks: a counted class outside [0, C) (IndexError on the CPU, a
    device-side assert on CUDA), a weight of the wrong length, a target of the wrong shape, an
    unknown reduction."""
    params, inputs = dict(params), dict(inputs)
    target = inputs["target"]
    if kind == "target out of range":
        params["ignore_index"] = -100
        flat = np.where(target == -100, 0, target).reshape(-1)
        flat[d.integer(0, max(0, flat.size - 1), "bad position")] = d.choice((classes, classes + 3, -2), "bad class")
        inputs["target"] = flat.reshape(target.shape)
    elif kind == "weight length":
        inputs["weight"] = np.ones(classes + d.integer(1, 3, "extra weights"))
    elif kind == "target shape":
        inputs["target"] = np.zeros(target.shape[:-1] + (target.shape[-1] + 1,) if target.ndim else (2,),
                                    dtype=np.int64)
    else:
        params = {k: v for k, v in params.items() if k not in ("size_average", "reduce")}
        params["reduction"] = d.choice(("average", "Mean", "batchmean"), "reduction")
    return params, inputs


def _all_ignored(case: Case) -> bool:
    t = case.inputs["target"]
    return t.dtype.kind in "iu" and bool(np.all(t == case.params.get("ignore_index", -100)))


def _ignore_index_is_a_class(case: Case) -> bool:
    x = case.inputs["input"]
    return case.inputs["target"].dtype.kind in "iu" and 0 <= case.params.get("ignore_index", -100) < x.shape[
        ref.class_axis(x.ndim)]


def _ignore_regimes(*pin: Any) -> tuple[Regime, ...]:
    """Every target ignored ('mean' is 0/0 = NaN) and an ignore_index that is one of the classes."""
    form = dict([pin]) if pin else {}
    return (Regime("all targets ignored", _all_ignored, {**form, "ignored fraction": 1.0},
                   "'mean' gives 0/0 = NaN and no gradient reaches the input."),
            Regime("ignore_index inside the class range", _ignore_index_is_a_class,
                   {**form, "ignore_index": "a class"}))


def _weights_not_positive(case: Case) -> bool:
    return "weight" in case.inputs and bool(np.any(case.inputs["weight"] <= 0))



ce_cases = _ce_case
invalid_ce_cases = invalid_kinds(_ce_case, _CE_INVALID_KINDS)


def nll_cases(op: str) -> CaseStrategy:
    return partial(_nll_case, op)


def invalid_nll_cases(op: str) -> CaseStrategy:
    return invalid_kinds(_nll_case, _NLL_INVALID_KINDS, op)


ignore_regimes = _ignore_regimes
weights_not_positive = _weights_not_positive


def total_weight_not_positive(case: Case) -> bool:
    """Class-index targets whose weights sum to at most 0 over the counted positions."""
    t, w = case.inputs["target"], case.inputs.get("weight")
    if w is None or t.dtype.kind not in "iu":
        return False
    counted = t[t != case.params.get("ignore_index", -100)]
    return bool(counted.size) and float(np.sum(w[counted])) <= 0


def ignore_index_above_classes(case: Case) -> bool:
    x = case.inputs["input"]
    return case.params.get("ignore_index", -100) >= x.shape[ref.class_axis(x.ndim)] and bool(
        np.any(case.inputs["target"] == case.params["ignore_index"]))
