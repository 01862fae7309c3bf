"""Case strategies of the structured losses: CTCLoss, AdaptiveLogSoftmaxWithLoss (forward,
``log_prob``, ``predict``) and LinearCrossEntropyLoss, with their invalid cases and the predicates
and pins of their regimes (see ``conformance.strategies.loss`` for the shared draws).

Every draw is labelled (``S.Drawer``), simplest option first; the float tier only (each loss goes
through log and exp). Empty batches (for CTC a known discrepancy) are drawn rarely at random
(``rare``) and always in the regime that pins them; in float16 every input is scaled by a power of
two so that no exact intermediate leaves the format's range (``range_scale``).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import CONTIGUOUS, Case, Layout
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import CaseStrategy
from conformance.strategies.loss import RARE, invalid_kinds, rare, seeded_rng, values
from reference.loss_adaptive import cluster_sizes
from reference.loss_ctc import CTC_REDUCTIONS
from reference.softmax import log_softmax

# -- the format's range ----------------------------------------------------------------------------------

COTANGENT_BOUND = 8.0  # |cotangent| of a drawn cotangent (standard normals) stays below this


def range_scale(dtype: str, terms: list[tuple[int, float]]) -> float:
    """The largest power of two s <= 1 such that every intermediate of the computation stays within
    max_value/64 of the format when every float input is scaled by s: ``terms`` lists (degree,
    magnitude at s = 1) for each intermediate (a score of degree 2 in the inputs, a projected score
    of degree 3...). Scaling by a power of two keeps the values (rounded again) representable, so
    a case is valid by construction: no exact intermediate overflows float16."""
    limit = DTYPES[dtype].max_value / 64
    k = 0
    for degree, magnitude in terms:
        if np.isfinite(magnitude) and magnitude > limit:
            k = max(k, math.ceil(math.log2(magnitude / limit) / degree))
    return 2.0 ** -k


def kept_layouts(layouts: dict[str, Layout], before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict:
    """The layouts of the inputs an invalid case left as they were; contiguous for those it
    reshaped (a layout is drawn for one shape)."""
    return {k: (v if k in after and after[k].shape == before[k].shape else CONTIGUOUS) for k, v in layouts.items()}


def _scaled(dtype: str, inputs: dict[str, np.ndarray], names: list[str], s: float) -> None:
    for name in names:
        inputs[name] = DTYPES[dtype].round(inputs[name] * s)


# -- CTCLoss -----------------------------------------------------------------------------------------------

CTC_LOG_PROBS = ("log_softmax", "peaked", "unnormalised", "with -inf", "with NaN")
CTC_ARGS = ("log_probs", "targets", "input_lengths", "target_lengths")
CTC_INVALID = ("blank out of range", "target is blank", "target out of range", "input length > T",
               "negative input length", "negative target length", "target length > padded width",
               "concatenated size", "lengths count", "reduction", "log_probs rank", "non-integral lengths")


def repeats(labels: np.ndarray, length: int) -> int:
    """Consecutive equal labels within the first ``length`` (each needs a blank in between)."""
    row = labels[:length]
    return int(np.sum(row[1:] == row[:-1])) if length > 1 else 0


def _ctc_log_probs(d: S.Drawer, shape: tuple[int, ...], dtype: str, layout: Layout) -> np.ndarray:
    """Log-probabilities: a log-softmax of normals (the documented use), peaked (scale 6: near
    0 and very negative), unnormalised normals, or a log-softmax with -inf entries (probability 0)
    or one NaN; constant along an expanded layout's stride-0 dims."""
    kind = d.choice(CTC_LOG_PROBS, "log_probs.kind")
    rng = seeded_rng(d, "log_probs.seed")
    src = S.source_shape(shape, layout)
    z = np.broadcast_to(rng.standard_normal(src) * (6.0 if kind == "peaked" else 1.0), shape)
    lp = np.array(z) if kind == "unnormalised" else log_softmax(np.array(z), -1)
    if kind == "with -inf":
        lp = np.where(np.broadcast_to(rng.random(src) < 0.25, shape), -np.inf, lp)
    elif kind == "with NaN" and lp.size:
        mark = np.zeros(src, dtype=bool)
        mark.flat[int(rng.integers(mark.size))] = True
        lp = np.where(np.broadcast_to(mark, shape), np.nan, lp)
    return DTYPES[dtype].round(lp)


def _ctc_lengths(d: S.Drawer, rng: np.random.Generator, n: int, t: int, s_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Input lengths (all T first; random in [1, T]; or the first sample at 1 or 0) and target
    lengths (random in [0, S_max]; or the first sample at 0, 1 or S_max)."""
    il_kind = d.choice(("T", "random", "1", "0"), "input_lengths")
    il = np.full(n, t, dtype=np.int64) if il_kind == "T" else rng.integers(min(1, t), t + 1, n)
    if n and il_kind in ("1", "0"):
        il[0] = min(int(il_kind), t)
    tl_kind = d.choice(("random", "0", "1", "S"), "target_lengths")
    tl = rng.integers(0, s_max + 1, n)
    if n and tl_kind != "random":
        tl[0] = s_max if tl_kind == "S" else min(int(tl_kind), s_max)
    return il.astype(np.int64), tl.astype(np.int64)


def _ctc_labels(d: S.Drawer, rng: np.random.Generator, n: int, width: int, classes: int, blank: int) -> np.ndarray:
    """(N, width) non-blank labels: random, with repeats (each copies the one before with
    probability 1/2, the second always), or one label throughout."""
    kind = d.choice(("random", "repeats", "one label"), "labels")
    pool = np.array([c for c in range(classes) if c != blank])
    labels = rng.choice(pool, size=(n, width))
    if kind == "repeats" and width > 1:
        copy = rng.random((n, width)) < 0.5
        copy[:, 1] = True
        for j in range(1, width):
            labels[:, j] = np.where(copy[:, j], labels[:, j - 1], labels[:, j])
    elif kind == "one label":
        labels[:] = labels[:, :1]
    return labels.astype(np.int64)


def _align(d: S.Drawer, labels: np.ndarray, il: np.ndarray, tl: np.ndarray) -> np.ndarray:
    """Target lengths after the alignment choice: 'feasible' trims each target to what its input
    can align (length + repeats <= input length), 'as drawn' keeps them, 'impossible' makes the
    first sample's input one step too short (its target lengthened to 1 if empty)."""
    kind = d.choice(("feasible", "as drawn", "impossible"), "alignment")
    tl = tl.copy()
    if kind == "feasible":
        for i in range(tl.size):
            while tl[i] and tl[i] + repeats(labels[i], int(tl[i])) > il[i]:
                tl[i] -= 1
    elif kind == "impossible" and tl.size and labels.shape[1]:
        tl[0] = max(int(tl[0]), 1)
        il[0] = min(int(il[0]), int(tl[0]) + repeats(labels[0], int(tl[0])) - 1)
    return tl


@st.composite
def _ctc_case(draw, dtype: str, invalid: str = "") -> Case:
    """log_probs (T, N, C) or (T, C) (any layout), padded (N, S) or concatenated targets, lengths
    as int64 tensors or Python lists; blank 0, the last class or one inside; every reduction and
    zero_infinity; short inputs (T <= 12) or long ones (32..96) for the error growth with T.
    ``invalid`` names one of ``CTC_INVALID`` to break."""
    d = S.Drawer(draw)
    batched = d.choice(("batched", "unbatched"), "batch form") == "batched"
    classes = d.integer(2, 8, "classes")
    blank_kind = d.choice(("0", "last", "inside"), "blank")
    blank = {"0": 0, "last": classes - 1}.get(blank_kind) if blank_kind != "inside" else d.integer(
        0, classes - 1, "blank index")
    long = d.choice(("short", "long"), "input length") == "long"
    t = d.integer(32, 96, "T") if long else d.integer(1, 12, "T")
    n = d.integer(1, 4, "N") if batched else 1
    if batched and not invalid and rare(d, "empty log_probs"):
        n, t = (0, t) if d.choice(("batch", "time"), "empty axis") == "batch" else (n, 0)
    s_max = d.integer(0, 16 if long else 6, "max target length")
    rng = seeded_rng(d, "targets.seed")
    il, tl = _ctc_lengths(d, rng, n, t, s_max)
    labels = _ctc_labels(d, rng, n, s_max, classes, blank)
    tl = _align(d, labels, il, tl)
    form = d.choice(("padded", "concatenated"), "targets form")
    if form == "padded":
        width = int(tl.max(initial=0)) + d.integer(0, 2, "padding")
        pad = rng.integers(-2, classes + 2, size=(n, width))
        inside = np.arange(width)[None, :] < tl[:, None]
        targets = np.where(inside, np.pad(labels, ((0, 0), (0, max(0, width - s_max))))[:, :width], pad)
        if not batched:
            targets = targets.reshape(1, width)
    else:
        targets = np.concatenate([labels[i, :tl[i]] for i in range(n)] + [np.zeros(0, dtype=np.int64)])
    shape = (t, n, classes) if batched else (t, classes)
    layout = S.layouts(d, len(shape), "layout.log_probs", expanded=True)
    log_probs = _ctc_log_probs(d, shape, dtype, layout)
    as_list = d.choice(("tensor", "list"), "lengths as") == "list"
    lengths = {"input_lengths": il, "target_lengths": tl}
    if not batched and not as_list and d.flag("0-d lengths"):
        lengths = {k: v.reshape(()) for k, v in lengths.items()}
    params = {"blank": blank, "reduction": d.choice(CTC_REDUCTIONS, "reduction"),
              "zero_infinity": d.flag("zero_infinity")}
    inputs = {"log_probs": log_probs, "targets": targets.astype(np.int64), **lengths}
    types = {"targets": "int64", **{k: "int_list" if as_list else "int64" for k in lengths}}
    layouts = {"log_probs": layout}
    if invalid:
        before = dict(inputs)
        params, inputs, types = _break_ctc(d, invalid, params, inputs, types, classes)
        layouts = kept_layouts(layouts, before, inputs)
    return Case(op="CTCLoss", dtype=dtype, params=params, inputs=inputs, types=types, differentiable=("log_probs",),
                layouts=layouts, tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid),
                note=invalid)


def _break_ctc(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
               types: dict[str, str], classes: int) -> tuple[dict, dict, dict]:
    """Break one documented rule (``CTC_INVALID``) of a case with at least one sample. torch
    accepts a target equal to blank or outside [0, C) (known entries)."""
    params, inputs, types = dict(params), dict(inputs), dict(types)
    il, tl = inputs["input_lengths"].reshape(-1).copy(), inputs["target_lengths"].reshape(-1).copy()
    targets = inputs["targets"].copy()
    t = inputs["log_probs"].shape[0]
    if kind == "blank out of range":
        params["blank"] = d.choice((classes, -1), "bad blank")
    elif kind in ("target is blank", "target out of range"):
        bad = params["blank"] if kind == "target is blank" else d.choice((classes, -1), "bad class")
        if targets.ndim == 2:
            targets = targets if targets.shape[1] else np.zeros((targets.shape[0], 1), np.int64)
            targets[0, 0] = bad
            tl[0] = max(int(tl[0]), 1)
        else:
            first = int(tl[0])
            head = targets[:first].copy() if first else np.zeros(1, np.int64)
            head[0] = bad
            targets, tl[0] = np.concatenate([head, targets[first:]]), head.size
    elif kind == "input length > T":
        il[0] = t + 1
    elif kind == "negative input length":
        il[0] = -1
    elif kind == "negative target length":
        tl[0] = -1
    elif kind == "target length > padded width" and targets.ndim == 2:
        tl[0] = targets.shape[1] + 1
    elif kind in ("concatenated size", "target length > padded width"):
        targets = np.ones(int(tl.sum()) + d.choice((1, -1), "size off by") if tl.sum() else 1, np.int64)
    elif kind == "lengths count":
        il = np.concatenate([il, [t]])
    elif kind == "reduction":
        params["reduction"] = d.choice(("avg", "Mean", "batchmean"), "bad reduction")
    elif kind == "log_probs rank":
        lp = inputs["log_probs"]
        inputs["log_probs"] = lp[..., None] if lp.ndim == 3 else lp[:, 0]
    else:  # non-integral lengths: float tensors
        types["input_lengths"] = "float"
        il = il.astype(np.float64)
    scalar = inputs["input_lengths"].ndim == 0
    inputs["input_lengths"] = il.reshape(()) if scalar and il.size == 1 else il
    inputs["target_lengths"] = tl.reshape(()) if scalar and tl.size == 1 else tl
    inputs["targets"] = np.asarray(targets, dtype=np.int64)
    return params, inputs, types


ctc_cases: CaseStrategy = _ctc_case
invalid_ctc_cases: CaseStrategy = invalid_kinds(_ctc_case, CTC_INVALID)


def _ctc_parts(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels (N, L), input lengths, target lengths) of a case."""
    from reference.loss_ctc import ctc_problem

    p = ctc_problem(case.inputs["log_probs"], case.inputs["targets"], case.inputs["input_lengths"],
                    case.inputs["target_lengths"], case.params.get("blank", 0))
    return p.labels, p.input_lengths, p.target_lengths


def ctc_has_repeats(case: Case) -> bool:
    labels, _, tl = _ctc_parts(case)
    return any(repeats(labels[i], int(tl[i])) for i in range(tl.size))


def ctc_impossible(case: Case) -> bool:
    """Some sample's input is shorter than its target plus its repeats (loss +inf)."""
    labels, il, tl = _ctc_parts(case)
    return any(tl[i] + repeats(labels[i], int(tl[i])) > il[i] for i in range(tl.size))


def ctc_empty_target(case: Case) -> bool:
    return bool(np.any(np.asarray(case.inputs["target_lengths"]) == 0))


def ctc_input_length(value: int):
    """Predicate: some input length equals ``value``."""
    return lambda case: bool(np.any(np.asarray(case.inputs["input_lengths"]) == value))


def ctc_full_width(case: Case) -> bool:
    """Padded targets, one of which fills the padded width."""
    t = case.inputs["targets"]
    return t.ndim == 2 and t.shape[1] > 0 and bool(np.any(np.asarray(case.inputs["target_lengths"]) == t.shape[1]))


def ctc_concatenated(case: Case) -> bool:
    return case.inputs["targets"].ndim == 1


def ctc_unbatched(case: Case) -> bool:
    return case.inputs["log_probs"].ndim == 2


def ctc_lists(case: Case) -> bool:
    return case.types.get("input_lengths") == "int_list"


def ctc_long(case: Case) -> bool:
    return case.inputs["log_probs"].shape[0] >= 32


def ctc_has(value: float):
    """Predicate: log_probs hold ``value`` (-inf, or NaN for any NaN)."""
    if math.isnan(value):
        return lambda case: bool(np.isnan(case.inputs["log_probs"]).any())
    return lambda case: bool(np.any(case.inputs["log_probs"] == value))


def ctc_empty(case: Case) -> bool:
    """An empty log_probs (no sample, or T = 0)."""
    return case.inputs["log_probs"].size == 0


def ctc_blank_not_zero(case: Case) -> bool:
    return case.params.get("blank", 0) != 0


def ctc_unnormalised(case: Case) -> bool:
    """Some time step whose probabilities sum away from 1 by more than rounding would."""
    lp = case.inputs["log_probs"]
    with np.errstate(all="ignore"):
        total = np.sum(np.exp(lp), axis=-1)
    return bool(np.any(np.abs(total - 1) > 1e-2))


CTC_PINS = {
    "repeats": {"labels": "repeats", "target_lengths": "S", "max target length": 3, "alignment": "feasible",
                "input_lengths": "T", "T": 8},
    "impossible": {"alignment": "impossible", "max target length": 2},
    "empty target": {"target_lengths": "0", "alignment": "feasible"},
    "input 0": {"input_lengths": "0"},
    "input 1": {"input_lengths": "1", "alignment": "as drawn"},
    "full width": {"targets form": "padded", "target_lengths": "S", "max target length": 3, "alignment": "as drawn",
                   "input_lengths": "T", "T": 8, "padding": 0},
    "concatenated": {"targets form": "concatenated", "batch form": "batched"},
    "unbatched": {"batch form": "unbatched"},
    "lists": {"lengths as": "list"},
    "long": {"input length": "long"},
    "-inf": {"log_probs.kind": "with -inf"},
    "NaN": {"log_probs.kind": "with NaN"},
    "empty": {"batch form": "batched", "empty log_probs": RARE},
    "blank": {"blank": "last"},
    "unnormalised": {"log_probs.kind": "unnormalised"},
}


# -- AdaptiveLogSoftmaxWithLoss ------------------------------------------------------------------------------

ADAPTIVE_DIV = (4.0, 2.0, 1.0, 0.5, 3.0, 64.0)
ADAPTIVE_INVALID = ("cutoffs unsorted", "cutoffs repeated", "cutoff 0", "cutoff >= n_classes", "no cutoffs",
                    "non-integer cutoff", "div_value <= 0", "target out of range", "target 2-d", "batch mismatch")
LOG_PROB_INVALID = ("cutoffs unsorted", "cutoff >= n_classes", "unbatched input")


def adaptive_parameter_names(n_clusters: int, head_bias: bool) -> tuple[str, ...]:
    """The module's parameters by attribute path."""
    tail = tuple(f"tail.{i}.{j}.weight" for i in range(n_clusters) for j in (0, 1))
    return ("head.weight", *(("head.bias",) if head_bias else ()), *tail)


def adaptive_parameters(case: Case) -> tuple[str, ...]:
    return adaptive_parameter_names(len(case.params["cutoffs"]), bool(case.params["head_bias"]))


def _cutoffs(d: S.Drawer, rng: np.random.Generator, n_classes: int, k: int) -> list[int]:
    """k cutoffs in [1, n_classes - 1]: evenly spaced, random, or tight (consecutive, the last at
    n_classes - 1: clusters of one class)."""
    kind = d.choice(("even", "random", "tight"), "cutoffs")
    if kind == "even":
        return sorted({max(1, min(n_classes - 1, round(n_classes * (i + 1) / (k + 1)))) for i in range(k)})
    if kind == "tight":
        return list(range(n_classes - k, n_classes))
    return sorted(int(c) for c in rng.choice(np.arange(1, n_classes), size=k, replace=False))


def _adaptive_targets(d: S.Drawer, rng: np.random.Generator, n: int, bounds: list[int]) -> np.ndarray:
    """Targets: random classes, on the cutoff boundaries (0, c_i - 1, c_i, n_classes - 1), or all
    in the last cluster."""
    kind = d.choice(("random", "boundaries", "last cluster"), "targets")
    n_classes = bounds[-1]
    if kind == "boundaries":
        edges = sorted({0, n_classes - 1, *[c for b in bounds[:-1] for c in (b - 1, b)]})
        return rng.choice(np.array(edges), size=n).astype(np.int64)
    lo = bounds[-2] if kind == "last cluster" else 0
    return rng.integers(lo, n_classes, size=n).astype(np.int64)


@st.composite
def _adaptive_case(draw, method: str, dtype: str, invalid: str = "") -> Case:
    """AdaptiveLogSoftmaxWithLoss(in_features, n_classes, cutoffs, div_value, head_bias) on (N,
    in_features) rows ((in_features,) with a 0-d target for the forward), every parameter a
    differentiable input in its own draw; ``method`` is "forward", "log_prob" or "predict"."""
    d = S.Drawer(draw)
    d_in = d.integer(1, 8, "in_features")
    n_classes = d.integer(2, 16, "n_classes")
    k = d.integer(1, min(3, n_classes - 1), "clusters")
    rng = seeded_rng(d, "structure.seed")
    cutoffs = _cutoffs(d, rng, n_classes, k)
    div_value = d.choice(ADAPTIVE_DIV, "div_value")
    head_bias = d.flag("head_bias")
    batched = method != "forward" or d.choice(("batched", "unbatched"), "batch form") == "batched"
    n = d.integer(1, 6, "N") if batched else 1
    if batched and rare(d, "empty batch"):
        n = 0
    params = {"in_features": d_in, "n_classes": n_classes, "cutoffs": cutoffs, "div_value": div_value,
              "head_bias": head_bias}
    sizes = cluster_sizes(d_in, n_classes, cutoffs, div_value)
    scale = d.choice((1.0, 4.0), "weights.scale")
    x_shape = (n, d_in) if batched else (d_in,)
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True)}
    inputs = {"input": values(d, x_shape, dtype, "float", "input", layout=layouts["input"])}
    head_shape = (cutoffs[0] + len(cutoffs), d_in)
    layouts["head.weight"] = S.layouts(d, 2, "layout.head.weight")
    inputs["head.weight"] = values(d, head_shape, dtype, "float", "head.weight", scale=scale,
                                   layout=layouts["head.weight"])
    if method == "predict" and d.flag("tied head rows") and head_shape[0] > 1:
        inputs["head.weight"][1] = inputs["head.weight"][0]  # classes 0 and 1 (or 0 and a cluster) tie
    if head_bias:
        inputs["head.bias"] = values(d, (head_shape[0],), dtype, "float", "head.bias", scale=scale)
    for i, (hidden, size) in enumerate(sizes):
        inputs[f"tail.{i}.0.weight"] = values(d, (hidden, d_in), dtype, "float", f"tail.{i}.0.weight", scale=scale)
        inputs[f"tail.{i}.1.weight"] = values(d, (size, hidden), dtype, "float", f"tail.{i}.1.weight", scale=scale)
    _fit_adaptive(dtype, inputs, len(sizes))
    if method == "forward":
        target = _adaptive_targets(d, rng, n, cutoffs + [n_classes])
        inputs["target"] = target if batched else target.reshape(())
    if invalid:
        before = dict(inputs)
        params, inputs = _break_adaptive(d, invalid, params, inputs)
        layouts = kept_layouts(layouts, before, inputs)
    differentiable = () if method == "predict" else tuple(
        name for name in inputs if name != "target")
    return Case(op="AdaptiveLogSoftmaxWithLoss", dtype=dtype, params=params, inputs=inputs,
                differentiable=differentiable, layouts=layouts, tier="float", cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def _fit_adaptive(dtype: str, inputs: dict[str, np.ndarray], clusters: int) -> None:
    """Scale every float input by ``range_scale``: head scores |x|·|W_h| (degree 2) plus the bias
    (1), hidden units |x|·|P| (2), cluster scores |x|·|P|·|O| (3); gradients with |ĝ| <= G: input
    2G·(Σ|W_h| (1) + Σ|O|·|P| (2)), head weight 2G·Σ_n|x| (1), P 2G·Σ_n|O|·|x| (2), O 2G·Σ_n|x|·|P| (2)."""
    x = np.abs(inputs["input"]).reshape(-1, inputs["input"].shape[-1])
    wh = np.abs(inputs["head.weight"])
    g = 2 * COTANGENT_BOUND
    col = x.sum(axis=0)
    terms = [(2, float(np.max(x @ wh.T, initial=0))), (1, float(np.max(np.abs(inputs.get("head.bias", 0.0)),
                                                                       initial=0))),
             (1, g * float(wh.sum(axis=0).max(initial=0))), (1, g * float(col.max(initial=0)))]
    for i in range(clusters):
        p, o = np.abs(inputs[f"tail.{i}.0.weight"]), np.abs(inputs[f"tail.{i}.1.weight"])
        hidden = x @ p.T
        terms += [(2, float(np.max(hidden, initial=0))), (3, float(np.max(hidden @ o.T, initial=0))),
                  (2, g * float(np.max(o.sum(axis=0) @ p, initial=0))),
                  (2, g * float(np.max(np.outer(o.sum(axis=0), col), initial=0))),
                  (2, g * float(np.max(hidden.sum(axis=0), initial=0)))]
    s = range_scale(dtype, terms)
    if s < 1:
        _scaled(dtype, inputs, [k for k in inputs if k != "target"], s)


def _break_adaptive(d: S.Drawer, kind: str, params: dict[str, Any],
                    inputs: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Break one rule: the constructor's cutoffs (unsorted, repeated, 0, >= n_classes, none, a
    non-integer) or div_value (0 or negative: no cluster size), or the call (a target outside
    [0, n_classes), a 2-d target, batch sizes that differ, an unbatched input to log_prob)."""
    params, inputs = dict(params), dict(inputs)
    cutoffs, n_classes = list(params["cutoffs"]), params["n_classes"]
    if kind == "cutoffs unsorted":
        params["cutoffs"] = cutoffs[::-1] if len(cutoffs) > 1 else [cutoffs[0], max(1, cutoffs[0] - 1)]
    elif kind == "cutoffs repeated":
        params["cutoffs"] = cutoffs + [cutoffs[-1]]
    elif kind == "cutoff 0":
        params["cutoffs"] = [0, *cutoffs]
    elif kind == "cutoff >= n_classes":
        params["cutoffs"] = cutoffs + [n_classes + d.integer(0, 2, "cutoff overshoot")]
    elif kind == "no cutoffs":
        params["cutoffs"] = []
    elif kind == "non-integer cutoff":
        params["cutoffs"] = [cutoffs[0] + 0.5, *cutoffs[1:]]
    elif kind == "div_value <= 0":
        params["div_value"] = d.choice((0.0, -2.0), "bad div_value")
    elif kind == "target out of range":
        t = inputs["target"].reshape(-1).copy()
        if t.size == 0:
            t = np.zeros(1, np.int64)
            inputs["input"] = np.zeros((1, params["in_features"]))
        t[0] = d.choice((n_classes, -1), "bad target")
        inputs["target"] = t.reshape(inputs["target"].shape) if inputs["target"].size else t
    elif kind == "target 2-d":
        inputs["target"] = inputs["target"].reshape(-1, 1)
    elif kind == "batch mismatch":
        inputs["target"] = np.concatenate([inputs["target"].reshape(-1), [0]])
    else:  # unbatched input (log_prob / predict take (N, in_features) only)
        inputs["input"] = np.zeros(params["in_features"])
    return params, inputs


def adaptive_cases(method: str) -> CaseStrategy:
    return partial(_adaptive_case, method)


def invalid_adaptive_cases(method: str) -> CaseStrategy:
    return invalid_kinds(_adaptive_case, ADAPTIVE_INVALID if method == "forward" else LOG_PROB_INVALID, method)


def adaptive_empty_projection(case: Case) -> bool:
    """A cluster whose projection size in_features // div_value^(i+1) is 0."""
    return any(case.inputs[name].shape[0] == 0 for name in case.inputs if name.endswith(".0.weight"))


def adaptive_on_boundaries(case: Case) -> bool:
    """A target on a cutoff boundary (the last shortlist class or a cluster's first class)."""
    t = np.asarray(case.inputs["target"]).reshape(-1)
    return bool(np.isin(t, [c for b in case.params["cutoffs"] for c in (b - 1, b)]).any())


def adaptive_single_class_cluster(case: Case) -> bool:
    c = case.params["cutoffs"] + [case.params["n_classes"]]
    return any(b - a == 1 for a, b in zip(c, c[1:]))


def adaptive_unbatched(case: Case) -> bool:
    return case.inputs["input"].ndim == 1


def adaptive_empty(case: Case) -> bool:
    return case.inputs["input"].shape[0] == 0 and case.inputs["input"].ndim == 2


def adaptive_tied(case: Case) -> bool:
    w = case.inputs["head.weight"]
    return w.shape[0] > 1 and bool(np.array_equal(w[0], w[1]))


ADAPTIVE_PINS = {
    "empty projection": {"div_value": 64.0},
    "boundaries": {"targets": "boundaries"},
    "single-class cluster": {"cutoffs": "tight"},
    "unbatched": {"batch form": "unbatched"},
    "empty": {"empty batch": RARE, "batch form": "batched"},
    "ties": {"tied head rows": True},
    "no head bias": {"head_bias": False},
}


# -- LinearCrossEntropyLoss ----------------------------------------------------------------------------------

LCE_OPTIONS = {
    "None": None,
    "default": {},
    "chunks of 1": {"batch_chunk_size": 1},
    "chunks of 2": {"batch_chunk_size": 2},
    "accurate, chunks of 2": {"acc_policy": "accurate", "batch_chunk_size": 2},
    "balanced, chunks of 2": {"acc_policy": "balanced", "batch_chunk_size": 2},
    "compact, chunks of 3": {"acc_policy": "compact", "batch_chunk_size": 3},
    "aspect_ratio:2": {"chunking_method": "aspect_ratio:2"},
}
LCE_PARAMETERS = ("linear.weight", "linear.bias")
LCE_INVALID = ("label_smoothing > 1", "label_smoothing < 0", "weight length", "ignore_index with probabilities",
               "target out of range", "input rank", "K-dimensional unbatched", "reduction", "acc_policy",
               "batch_chunk_size", "chunking_method")
_LCE_SMOOTHING = (0.0, 0.1, 0.5, 1.0)


def _lce_class_weights(d: S.Drawer, rng: np.random.Generator, dtype: str, classes: int) -> np.ndarray:
    """Class weights: positive, with exact zeros, or with negative entries (torch accepts each)."""
    kind = d.choice(("positive", "with zeros", "with negatives"), "weight.kind")
    w = rng.uniform(0.25, 2.0, classes)
    if kind == "with zeros":
        w = np.where(rng.random(classes) < 0.4, 0.0, w)
        w[0] = 0.0
    elif kind == "with negatives":
        w = np.where(rng.random(classes) < 0.4, -w, w)
        w[0] = -abs(w[0])
    return DTYPES[dtype].round(w)


@st.composite
def _lce_case(draw, dtype: str, invalid: str = "") -> Case:
    """LinearCrossEntropyLoss(in_features, num_classes, out_features, bias, reduction, weight,
    ignore_index, label_smoothing, options): input (N, in_features) or (in_features,), class-index
    or class-probability targets (probabilities differentiable), the linear weight (and bias) as
    the module's parameters, class weights a constructor tensor; options None (the reference
    path) or a chunked configuration."""
    d = S.Drawer(draw)
    d_in = d.integer(1, 8, "in_features")
    classes = d.integer(1, 10, "num_classes")
    extra_dims = d.integer(0, 2, "K")
    out_features = tuple(S.sizes_within(d, extra_dims, 8, hi=3, label="out_features"))
    batched = bool(out_features) or d.choice(("batched", "unbatched"), "batch form") == "batched"
    n = d.integer(1, 8, "N") if batched else 1
    if batched and rare(d, "empty batch"):
        n = 0
    probabilities = d.choice(("class indices", "probabilities"), "target form") == "probabilities"
    params: dict[str, Any] = {"in_features": d_in, "num_classes": classes, "out_features": list(out_features),
                              "bias": d.flag("bias"), "reduction": d.choice(("mean", "none", "sum"), "reduction"),
                              "label_smoothing": d.choice(_LCE_SMOOTHING, "label_smoothing")}
    choice = "None" if probabilities else d.choice(("None", "-100", "-1", "a class"), "ignore_index")
    params["ignore_index"] = {"None": None, "-100": -100, "-1": -1}.get(choice, classes - 1)
    params["options"] = LCE_OPTIONS[d.choice(tuple(LCE_OPTIONS), "options")]
    rng = seeded_rng(d, "target.seed")
    x_shape = (n, d_in) if batched else (d_in,)
    logits_shape = (n, classes, *out_features) if batched else (classes,)
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True),
               "linear.weight": S.layouts(d, 2, "layout.linear.weight")}
    scale = d.choice((1.0, 4.0), "linear.weight.scale")
    rows = classes * math.prod(out_features)
    inputs = {"input": values(d, x_shape, dtype, "float", "input", layout=layouts["input"]),
              "linear.weight": values(d, (rows, d_in), dtype, "float", "linear.weight", scale=scale,
                                      layout=layouts["linear.weight"])}
    if params["bias"]:
        inputs["linear.bias"] = values(d, (rows,), dtype, "float", "linear.bias", scale=scale)
    _fit_lce(dtype, inputs)
    if probabilities:
        kind = d.choice(("distribution", "one-hot", "unnormalised"), "target.kind")
        ax = 1 if batched else 0
        if kind == "distribution":
            z = rng.standard_normal(logits_shape)
            t = np.exp(z - z.max(axis=ax, keepdims=True)) if z.size else z
            t = t / t.sum(axis=ax, keepdims=True) if z.size else t
        elif kind == "one-hot":
            t = (np.argsort(rng.random(logits_shape), axis=ax) == 0).astype(np.float64)
        else:
            t = rng.random(logits_shape)
        inputs["target"] = DTYPES[dtype].round(t)
    else:
        t_shape = (n, *out_features) if batched else ()
        target = rng.integers(0, classes, size=t_shape)
        fraction = d.choice((0.0, 0.3, 1.0), "ignored fraction")
        ignored = np.array(rng.random(t_shape) < fraction)
        if fraction and ignored.size:
            ignored.flat[0] = True
        ignore = -100 if params["ignore_index"] is None else params["ignore_index"]
        inputs["target"] = np.where(ignored, ignore, target).astype(np.int64)
    if d.flag("weight"):
        inputs["weight"] = _lce_class_weights(d, rng, dtype, classes)
    if invalid:
        before = dict(inputs)
        params, inputs = _break_lce(d, invalid, params, inputs, classes)
        layouts = kept_layouts(layouts, before, inputs)
    differentiable = ("input", "linear.weight", *(("linear.bias",) if "linear.bias" in inputs else ()),
                      *(("target",) if inputs["target"].dtype.kind == "f" else ()))
    return Case(op="LinearCrossEntropyLoss", dtype=dtype, params=params, inputs=inputs,
                differentiable=differentiable, layouts=layouts, tier="float", cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def _fit_lce(dtype: str, inputs: dict[str, np.ndarray]) -> None:
    """Scale input, linear weight and bias by ``range_scale``: logits |x|·|W| (degree 2) plus the
    bias (1); gradients (|G| <= 2G per logit) input 2G·Σ_c|W| (1), weight 2G·Σ_n|x| (1)."""
    x = np.abs(inputs["input"]).reshape(-1, inputs["input"].shape[-1])
    w = np.abs(inputs["linear.weight"])
    g = 2 * COTANGENT_BOUND
    terms = [(2, float(np.max(x @ w.T, initial=0))), (1, float(np.max(np.abs(inputs.get("linear.bias", 0.0)),
                                                                      initial=0))),
             (1, g * float(w.sum(axis=0).max(initial=0))), (1, g * float(x.sum(axis=0).max(initial=0)))]
    s = range_scale(dtype, terms)
    if s < 1:
        _scaled(dtype, inputs, [k for k in ("input", "linear.weight", "linear.bias") if k in inputs], s)


def _break_lce(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
               classes: int) -> tuple[dict, dict]:
    """Break one rule (``LCE_INVALID``)."""
    params, inputs = dict(params), dict(inputs)
    if kind == "label_smoothing > 1":
        params["label_smoothing"] = d.choice((1.5, 2.0), "bad label_smoothing")
    elif kind == "label_smoothing < 0":
        params["label_smoothing"] = d.choice((-0.1, -1.0), "bad label_smoothing")
    elif kind == "weight length":
        inputs["weight"] = np.ones(classes + d.integer(1, 3, "extra weights"))
    elif kind == "ignore_index with probabilities":
        x = inputs["input"]
        shape = (x.shape[0], classes, *params["out_features"]) if x.ndim == 2 else (classes,)
        inputs["target"] = np.full(shape, 1.0 / classes)
        params["ignore_index"] = d.choice((-100, -1, 0), "bad ignore_index")
    elif kind == "target out of range":
        x = inputs["input"]
        shape = (max(x.shape[0], 1), *params["out_features"]) if x.ndim == 2 else ()
        if x.ndim == 2 and x.shape[0] == 0:
            inputs["input"] = np.zeros((1, x.shape[1]))
        target = np.zeros(shape, dtype=np.int64)
        target.reshape(-1)[0] = d.choice((classes, classes + 3), "bad class")
        inputs["target"] = target
        params["ignore_index"] = None
    elif kind == "input rank":
        inputs["input"] = inputs["input"].reshape(1, *inputs["input"].shape) if inputs["input"].ndim == 2 else \
            inputs["input"].reshape(1, 1, -1)
        inputs["target"] = inputs["target"].reshape(1, *inputs["target"].shape)
    elif kind == "K-dimensional unbatched":
        params["out_features"] = [2]
        inputs["linear.weight"] = np.ones((classes * 2, params["in_features"]))
        inputs.pop("linear.bias", None)
        params["bias"] = False
        inputs["input"] = np.ones(params["in_features"])
        inputs["target"] = np.zeros(2, dtype=np.int64)
    elif kind == "reduction":
        params["reduction"] = d.choice(("avg", "Mean", "batchmean"), "bad reduction")
    elif kind == "acc_policy":
        params["options"] = {"acc_policy": d.choice(("fast", "exact"), "bad acc_policy")}
    elif kind == "batch_chunk_size":
        params["options"] = {"batch_chunk_size": d.choice((0, -1), "bad batch_chunk_size")}
    else:
        params["options"] = {"chunking_method": d.choice(("aspect_ratio:0", "square"), "bad chunking_method")}
    return params, inputs


lce_cases: CaseStrategy = _lce_case
invalid_lce_cases: CaseStrategy = invalid_kinds(_lce_case, LCE_INVALID)


def lce_counted(case: Case) -> np.ndarray:
    """The class-index positions that count (not ignore_index)."""
    t = case.inputs["target"]
    ignore = case.params.get("ignore_index")
    return t != (-100 if ignore is None else ignore)


def lce_all_ignored(case: Case) -> bool:
    t = case.inputs["target"]
    return t.dtype.kind in "iu" and t.size > 0 and not lce_counted(case).any()


def lce_probabilities(case: Case) -> bool:
    return case.inputs["target"].dtype.kind == "f"


def lce_k_dimensional(case: Case) -> bool:
    return bool(case.params.get("out_features"))


def lce_chunked(case: Case) -> bool:
    """The chunked path with several chunks (options set, batch_chunk_size below the batch)."""
    options = case.params.get("options")
    x = case.inputs["input"]
    return (options is not None and options.get("batch_chunk_size") is not None and x.ndim == 2
            and x.shape[0] > options["batch_chunk_size"])


def lce_empty(case: Case) -> bool:
    x = case.inputs["input"]
    return x.ndim == 2 and x.shape[0] == 0


def lce_unbatched(case: Case) -> bool:
    return case.inputs["input"].ndim == 1


def lce_weights_not_positive(case: Case) -> bool:
    return "weight" in case.inputs and bool(np.any(case.inputs["weight"] <= 0))


def lce_ignore_is_a_class(case: Case) -> bool:
    ignore = case.params.get("ignore_index")
    return ignore is not None and 0 <= ignore < case.params["num_classes"] and bool(
        np.any(case.inputs["target"] == ignore))


def lce_full_smoothing(case: Case) -> bool:
    return case.params.get("label_smoothing") == 1.0


LCE_PINS = {
    "all ignored": {"target form": "class indices", "ignore_index": "-1", "ignored fraction": 1.0},
    "all ignored, chunked": {"target form": "class indices", "ignore_index": "-1", "ignored fraction": 1.0,
                             "options": "chunks of 2", "reduction": "mean", "K": 0},
    "probabilities": {"target form": "probabilities"},
    "K-dimensional": {"K": 2},
    "chunked": {"options": "chunks of 1", "N": 4, "K": 0, "batch form": "batched", "label_smoothing": 0.0,
                "target form": "class indices"},
    "empty": {"empty batch": RARE, "batch form": "batched"},
    "unbatched": {"batch form": "unbatched", "K": 0},
    "weights": {"weight": True, "weight.kind": "with negatives"},
    "ignore a class": {"target form": "class indices", "ignore_index": "a class", "ignored fraction": 0.3},
    "full smoothing": {"label_smoothing": 1.0},
}
