"""Classification losses: CrossEntropyLoss, NLLLoss and NLLLoss2d (class scores (C), (N, C) or
(N, C, d1, ..., dK); class-index targets, or class probabilities for cross entropy)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from conformance.specs.loss import LEGACY_REGIME, RARE, draw_reduction, rare, reduction_of, values
from conformance.tolerance import bound_as_magnitude
from reference import loss_classification as ref

_draw_reduction = draw_reduction

# -- CrossEntropyLoss ---------------------------------------------------------------------------

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
    """Class weights: positive, with exact zeros, or with negative entries (torch accepts both);
    small integers in the exact tier."""
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "weight.seed"))
    kind = d.choice(kinds, "weight.kind")
    w = rng.integers(1, 3, classes).astype(np.float64) if tier == "exact" else rng.uniform(0.25, 2.0, classes)
    if kind == "with zeros":
        w = np.where(rng.random(classes) < 0.4, 0.0, w)
        w[0] = 0.0
    elif kind == "with negatives":
        w = np.where(rng.random(classes) < 0.4, -w, w)
        w[0] = -w[0] if w[0] > 0 else w[0]
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
    params = _draw_reduction(d)
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
        inputs["weight"] = _class_weights(d, dtype, classes, ("positive", "with zeros"))
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


def _invalid_ce_case(dtype: str) -> st.SearchStrategy[Case]:
    return st.sampled_from(_CE_INVALID_KINDS).flatmap(lambda kind: _ce_case(dtype, invalid=kind))


def _ce_args(case: Case) -> dict[str, Any]:
    p = case.params
    return {"weight": case.inputs.get("weight"), "reduction": reduction_of(case),
            "ignore_index": p.get("ignore_index", -100), "label_smoothing": p.get("label_smoothing", 0.0)}


def _ce_reference(case: Case, backward: bool) -> Result:
    x, t, args = case.inputs["input"], case.inputs["target"], _ce_args(case)
    out = Result(outputs={"output": ref.cross_entropy(x, t, **args)})
    if backward:
        gx, gt = ref.cross_entropy_vjp(x, t, g=S.output_gradient(case, "output", out.outputs["output"]), **args)
        out.grads["input"] = gx
        if gt is not None and "target" in case.differentiable:
            out.grads["target"] = gt
    return out


def _ce_reduction_length(case: Case, tensor: str) -> int:
    """K = the logits reduced into one value: C per position, times every position unless 'none'."""
    x = case.inputs["input"]
    return x.shape[ref.class_axis(x.ndim)] if reduction_of(case) == "none" else x.size


def _ce_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """First-order error bounds of cross entropy, in units of u.

    log_softmax: with z = x - max, L = log Σ exp(z), logp = z - L, y = exp(logp), the relative
    error of the sum is E_s = 2√C + Σ y·(|z| + 2) + 1 (rounding of z amplified by exp, exp, the
    sum), so E_logp = |z| + |L| + E_s + |logp| + 1 (z, log, rounding of L, the subtraction).
    The weighted, smoothed target q = w·((1 - ε)·t + ε/C) costs 4 roundings (ε/C, two products,
    the sum). Per position l = -Σ q·logp: E_l = Σ|q|·(E_logp + 5|logp|) + 2√C·Σ|q·logp|.
    'sum': Σ E_l + 2√M·Σ|l| over M positions; 'mean' divides that by the normaliser W and adds
    |ref|·(2√M + 2) for the sum of W and the division.
    Gradients, with ĝ the per-position cotangent (relative error E_ĝ = 2√M + 3 for 'mean', else 0)
    and Q = Σ|q|: the log_softmax backward gl - y·Σ gl with gl = -ĝ·q (6 roundings on q·ĝ: q,
    the product with ĝ, the subtraction) and y = exp(logp) (relative error E_logp + 1):
    grad.input: |ĝ|·(y·Q·(E_logp + 2√C + 8) + 6|q| + Q·tiny/u) + |ref|·E_ĝ;
    grad.target -ĝ·(1 - ε)·w·logp (three products): |ĝ·(1 - ε)·w|·(E_logp + 4|logp|) + |ref|·E_ĝ.
    """
    x, t, args = case.inputs["input"], case.inputs["target"], _ce_args(case)
    ax = ref.class_axis(x.ndim)
    classes, positions = x.shape[ax], x.size // x.shape[ax]
    reduction = args["reduction"]
    dt = DTYPES[case.dtype]
    with np.errstate(all="ignore"):
        q, normaliser = ref.smoothed_class_weights(x, t, args["weight"], args["ignore_index"], args["label_smoothing"])
        z = x - np.max(x, axis=ax, keepdims=True)
        lse = np.log(np.sum(np.exp(z), axis=ax, keepdims=True))
        logp = z - lse
        y = np.exp(logp)
        err_s = 2 * math.sqrt(classes) + np.sum(y * (np.abs(z) + 2), axis=ax, keepdims=True) + 1
        err_logp = np.abs(z) + np.abs(lse) + err_s + np.abs(logp) + 1
        aq = np.abs(q)
        err_l = np.sum(aq * (err_logp + 5 * np.abs(logp)), axis=ax) + 2 * math.sqrt(classes) * np.sum(
            np.abs(q * logp), axis=ax)
        losses = np.abs(np.sum(q * logp, axis=ax))
        root_m = math.sqrt(positions)
        if reduction == "none":
            err_out = err_l
        else:
            err_out = np.sum(err_l) + 2 * root_m * np.sum(losses)
            if reduction == "mean":
                err_out = err_out / abs(normaliser) + np.abs(result.outputs["output"]) * (2 * root_m + 2)
        k = _ce_reduction_length(case, "output")
        out = {"output": bound_as_magnitude(err_out, k)}
        if "input" not in result.grads:
            return out
        g = np.abs(case.cotangents["output"])
        g_pos = np.expand_dims(g, ax) if reduction == "none" else (g / abs(normaliser) if reduction == "mean" else g)
        err_ghat = 2 * root_m + 3 if reduction == "mean" else 0.0
        big_q = np.sum(aq, axis=ax, keepdims=True)
        err_gx = (g_pos * (y * big_q * (err_logp + 2 * math.sqrt(classes) + 8) + 6 * aq
                           + big_q * dt.min_subnormal / dt.unit_roundoff)
                  + np.abs(result.grads["input"]) * err_ghat)
        out["grad.input"] = bound_as_magnitude(err_gx, k)
        if "target" in result.grads:
            w = np.ones(classes) if args["weight"] is None else args["weight"]
            shape = [1] * x.ndim
            shape[ax] = -1
            wt = (1 - args["label_smoothing"]) * np.abs(w).reshape(shape)
            err_gt = g_pos * wt * (err_logp + 4 * np.abs(logp)) + np.abs(result.grads["target"]) * err_ghat
            out["grad.target"] = bound_as_magnitude(err_gt, k)
    return out


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


declare(LayerSpec(
    name="CrossEntropyLoss",
    family="loss",
    cases=lambda dtype: _ce_case(dtype),
    reference=result_reference(_ce_reference),
    # CrossEntropyLoss registers ``weight`` as a buffer; forward passes it to F.cross_entropy.
    torch=TorchMapping("torch.nn.CrossEntropyLoss", buffers=("weight",), args=("input", "target")),
    tolerance=Tolerance(reduction=_ce_reduction_length, magnitude=_ce_magnitude, c=1.0, exact="none"),
    invalid_cases=_invalid_ce_case,
    regimes=(LEGACY_REGIME, *_ignore_regimes("target form", "class indices")),
    notes="Targets become (1 - ε)·target + ε/C (one-hot for class indices). 'mean' divides by the sum of "
          "w[target] over non-ignored positions (class indices; every target ignored → 0/0 = NaN) or by the "
          "number of positions (probabilities). ignore_index applies to class indices only (a negative one "
          "has no effect on probabilities; torch rejects a non-negative one there). label_smoothing must lie "
          "in [0, 1] (documented); torch 2.13 accepts negative values and treats them as 0, which the "
          "invalid search reports.",
))


# -- NLLLoss, NLLLoss2d -------------------------------------------------------------------------------

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


def _invalid_nll_case(op: str, dtype: str) -> st.SearchStrategy[Case]:
    return st.sampled_from(_NLL_INVALID_KINDS).flatmap(lambda kind: _nll_case(op, dtype, invalid=kind))


def _nll_args(case: Case) -> dict[str, Any]:
    return {"weight": case.inputs.get("weight"), "reduction": reduction_of(case),
            "ignore_index": case.params.get("ignore_index", -100)}


def _nll_reference(case: Case, backward: bool) -> Result:
    x, t, args = case.inputs["input"], case.inputs["target"], _nll_args(case)
    out = Result(outputs={"output": ref.nll_loss(x, t, **args)})
    if backward:
        out.grads["input"] = ref.nll_loss_vjp(x, t, g=S.output_gradient(case, "output", out.outputs["output"]), **args)
    return out


def _nll_length(case: Case, tensor: str) -> int:
    """K = the positions summed into the output (1 for 'none' and for the gradient)."""
    x = case.inputs["input"]
    return 1 if tensor != "output" or reduction_of(case) == "none" else x.size // x.shape[ref.class_axis(x.ndim)]


def _nll_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """Exact tier: the sum of |w[t]·x[t]| spread over the K positions (so that K·absref, the
    largest partial sum, decides exactness: 'rounded', one final division for 'mean') and |grad|.
    Float tier: ``reference.loss_classification.nll_errors`` (a product per term, the sum, the
    division by W = Σ w[t] and W's own error), the gradient -w[t]·ĝ carrying ĝ's error."""
    x, t, args = case.inputs["input"], case.inputs["target"], _nll_args(case)
    k = _nll_length(case, "output")
    counted, wt = ref.nll_counted(x, t, args["weight"], args["ignore_index"])
    grads = {name: np.abs(v) for name, v in result.grads.items()}
    if case.tier == "exact":
        terms = np.abs(wt * np.where(counted, np.abs(ref.nll_loss(x, t, None, "none", args["ignore_index"])), 0.0))
        out = terms if args["reduction"] == "none" else np.sum(terms) / k
        return {"output": out, **{f"grad.{n}": v for n, v in grads.items()}}
    out_err, count_err = ref.nll_errors(x, t, args["weight"], args["reduction"], args["ignore_index"])
    result_err = {"output": bound_as_magnitude(out_err, k)}
    dt = DTYPES[case.dtype]
    ghat_err = 2.0 + count_err if args["reduction"] == "mean" else 0.0
    for name, g in grads.items():
        result_err[f"grad.{name}"] = g * (ghat_err + 1) + np.where(g > 0, dt.min_subnormal / dt.unit_roundoff, 0.0)
    return result_err


def half_mean_total_overflows(case: Case) -> bool:
    """A float16 'mean' NLLLoss / CrossEntropyLoss whose weighted total Σ w·loss rounds to ±inf in
    float16 (|total| >= 65520) although the mean is representable: torch rounds the total to
    float16 before dividing by Σ w."""
    if case.op not in ("CrossEntropyLoss", "NLLLoss", "NLLLoss2d") or case.dtype != "float16" \
            or case.invalid or reduction_of(case) != "mean":
        return False
    x, t = case.inputs["input"], case.inputs["target"]
    with np.errstate(all="ignore"):
        if case.op == "CrossEntropyLoss":
            total = ref.cross_entropy(x, t, **{**_ce_args(case), "reduction": "sum"})
        else:
            total = ref.nll_loss(x, t, **{**_nll_args(case), "reduction": "sum"})
    return bool(np.isfinite(total) and abs(total) >= 65520.0)


def _weights_not_positive(case: Case) -> bool:
    return "weight" in case.inputs and bool(np.any(case.inputs["weight"] <= 0))


def nll_4d_dense_non_contiguous_input(case: Case) -> bool:
    """A 4-D input stored dense but not contiguous (channels_last, or a permutation that is not
    the identity on its non-unit dims): torch's 4-D NLL backward rejects its grad_input."""
    x = case.inputs["input"]
    layout = case.layout("input")
    if x.ndim != 4 or layout.kind not in ("channels_last", "permuted") or x.size == 0:
        return False
    strides = layout.strides(x.shape)
    expected = 1
    for size, stride in zip(reversed(x.shape), reversed(strides)):
        if size != 1 and stride != expected:
            return True
        expected *= size
    return False


def _nll_regimes() -> tuple[Regime, ...]:
    return (LEGACY_REGIME, *_ignore_regimes(),
            Regime("ignore_index above the classes, present",
                   lambda case: case.params.get("ignore_index", -100) >= case.inputs["input"].shape[
                       ref.class_axis(case.inputs["input"].ndim)] and bool(
                       np.any(case.inputs["target"] == case.params["ignore_index"])),
                   {"ignore_index": "above the classes", "ignored fraction": 0.3}),
            Regime("weights with zeros/negatives", _weights_not_positive,
                   {"weight": True, "weight.kind": "with negatives"},
                   "Negative class weights (torch accepts them): 'mean' divides by a W that may be small."))


_NLL_TOLERANCE = {
    # Exact tier: 'none' and 'sum' are exact integer sums, 'mean' one division (two roundings
    # where the division is carried out in float and rounded again to a half format).
    "output": Tolerance(reduction=_nll_length, magnitude=_nll_magnitude, c=1.0, out_ulps=2.0, exact="rounded"),
    # -w·(g/W) for 'mean': two roundings, (1 + u)² - 1 <= 3u.
    "grad.*": Tolerance(reduction=_nll_length, magnitude=_nll_magnitude, c=1.0, out_ulps=3.0, exact="rounded"),
}

_NLL_NOTES = ("ℓ = -w[t]·x[t] per position, 0 where t = ignore_index (any value: a class, negative, or above "
              "the classes); 'mean' divides by Σ w[t] over the counted positions (every target ignored, or a zero "
              "weight sum: NaN). Negative and zero class weights are accepted. A counted target outside [0, C) "
              "raises IndexError on the CPU and is a device-side assert (a crash) on CUDA.")

declare(LayerSpec(
    name="NLLLoss",
    family="loss",
    cases=lambda dtype: _nll_case("NLLLoss", dtype),
    reference=result_reference(_nll_reference),
    torch=TorchMapping("torch.nn.NLLLoss", buffers=("weight",), args=("input", "target")),
    tolerance=_NLL_TOLERANCE,
    invalid_cases=lambda dtype: _invalid_nll_case("NLLLoss", dtype),
    regimes=_nll_regimes(),
    notes=_NLL_NOTES + " Scores (C), (N, C) or (N, C, d1, ..., dK).",
))

declare(LayerSpec(
    name="NLLLoss2d",
    family="loss",
    cases=lambda dtype: _nll_case("NLLLoss2d", dtype),
    reference=result_reference(_nll_reference),
    torch=TorchMapping("torch.nn.NLLLoss2d", buffers=("weight",), args=("input", "target")),
    tolerance=_NLL_TOLERANCE,
    invalid_cases=lambda dtype: _invalid_nll_case("NLLLoss2d", dtype),
    regimes=(*_nll_regimes()[:3],
             Regime("channels_last input", nll_4d_dense_non_contiguous_input,
                    {"layout.input": "channels_last", "dense non-contiguous 4-D input": RARE, "classes": 3,
                     "N, H, W[0]": 2, "N, H, W[1]": 2, "N, H, W[2]": 2},
                    "A dense non-contiguous 4-D input: torch's backward rejects its grad_input (known).")),
    dims=2,
    notes=_NLL_NOTES + " torch 2.13 still defines torch.nn.NLLLoss2d, a deprecated subclass of NLLLoss "
          "(identical semantics); it is declared on its own, on (N, C, H, W) scores and (N, H, W) targets.",
))

