"""Logistic losses: BCELoss, BCEWithLogitsLoss, SoftMarginLoss, MultiLabelSoftMarginLoss.

All float tier: each is judged by its own first-order error analysis (``reference.loss_binary``),
which bounds a stable evaluation of the documented formula; where torch's rewriting of a formula
overflows or cancels, the disagreement is a known discrepancy, not a wider bound.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, declare, result_reference
from conformance.specs.loss import (
    LEGACY_REGIME,
    RARE,
    analysed_tolerance,
    broadcast_length,
    draw_reduction,
    loss_mapping,
    pointwise_errors,
    rare,
    reduction_of,
    seeded_rng,
    tiny_over_u,
    values,
)
from reference import loss as base
from reference import loss_binary as ref

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


# -- BCELoss ----------------------------------------------------------------------------------------

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


def _invalid(builder: Any, kinds: tuple[str, ...]) -> Any:
    return lambda dtype: st.sampled_from(kinds).flatmap(lambda kind: builder(dtype, invalid=kind))


def _bce_reference(case: Case, backward: bool) -> Result:
    x, t, w = case.inputs["input"], case.inputs["target"], case.inputs.get("weight")
    out = Result(outputs={"output": ref.bce_loss(x, t, w, reduction_of(case))})
    if backward:
        gx, gt = ref.bce_loss_vjp(x, t, w, reduction_of(case), S.output_gradient(case, "output", out.outputs["output"]))
        out.grads.update(input=gx, target=gt)
    return out


def _bce_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, w = case.inputs["input"], case.inputs["target"], case.inputs.get("weight")
    term_err, dx_err, dt_err = ref.bce_errors(x, t, w)
    dx, dt = ref.bce_derivatives(x, t, w)
    out = pointwise_errors(case, ref.bce_terms(x, t, w), term_err, reduction_of(case),
                           {"input": (dx, dx_err), "target": (dt, dt_err)})
    if "grad.input" in out:
        # ĝ·(x - t) may be formed first and fall below the normal range (half a subnormal
        # spacing lost), then be divided by x·(1 - x): that loss is amplified by 1/(x·(1 - x)).
        weight = np.abs(np.broadcast_to(1.0 if w is None else w, x.shape))
        out["grad.input"] = out["grad.input"] + weight * tiny_over_u(case) / 2 / np.maximum(x * (1 - x),
                                                                                           ref.BCE_EPSILON)
    return out


def bce_at_clamp(case: Case) -> bool:
    """Some input is exactly 0 or 1: x·(1 - x) = 0 < 1e-12, where the backward divides by the
    clamp 1e-12 (which rounds to 0 in float16)."""
    x = case.inputs["input"]
    return bool(np.any((x == 0) | (x == 1)))


declare(LayerSpec(
    name="BCELoss",
    family="loss",
    cases=lambda dtype: _bce_case(dtype),
    reference=result_reference(_bce_reference),
    torch=loss_mapping("torch.nn.BCELoss", buffers=("weight",)),
    tolerance=analysed_tolerance(_bce_errors, lambda case, tensor: broadcast_length(case, tensor)),
    invalid_cases=_invalid(_bce_case, _BCE_INVALID),
    smooth_at=lambda case: bool(np.all(case.inputs["input"] * (1 - case.inputs["input"]) > 1e-6)
                                and np.all(case.inputs["target"] * (1 - case.inputs["target"]) > 1e-6)),
    regimes=(LEGACY_REGIME,
             Regime("input exactly 0 or 1", bce_at_clamp, {"input.exact 0 and 1": RARE},
                    "log 0 clamps at -100; the backward divides by max(x·(1 - x), 1e-12)."),
             _weights_not_positive("weight")),
    notes="ℓ = -w·(t·max(log x, -100) + (1 - t)·max(log(1 - x), -100)); input and target must lie in [0, 1] "
          "and have one shape; the weight broadcasts to it (not differentiable in torch). dℓ/dx is torch's "
          "w·(x - t)/max(x·(1 - x), 1e-12) (the documented 'linear backward': the derivative wherever x·(1 - x) "
          ">= 1e-12, finite at 0 and 1), dℓ/dt = w·(max(log(1 - x), -100) - max(log x, -100)).",
))


# -- BCEWithLogitsLoss -------------------------------------------------------------------------------

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


def _logits_reference(case: Case, backward: bool) -> Result:
    x, t = case.inputs["input"], case.inputs["target"]
    w, pw = case.inputs.get("weight"), case.inputs.get("pos_weight")
    out = Result(outputs={"output": ref.bce_logits_loss(x, t, w, pw, reduction_of(case))})
    if backward:
        g_out = S.output_gradient(case, "output", out.outputs["output"])
        gx, gt = ref.bce_logits_loss_vjp(x, t, w, pw, reduction_of(case), g_out)
        out.grads.update(input=gx, target=gt)
    return out


def _logits_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t = case.inputs["input"], case.inputs["target"]
    w, pw = case.inputs.get("weight"), case.inputs.get("pos_weight")
    term_err, dx_err, dt_err = ref.bce_logits_errors(x, t, w, pw)
    dx, dt = ref.bce_logits_derivatives(x, t, w, pw)
    return pointwise_errors(case, ref.bce_logits_terms(x, t, w, pw), term_err, reduction_of(case),
                            {"input": (dx, dx_err), "target": (dt, dt_err)})


declare(LayerSpec(
    name="BCEWithLogitsLoss",
    family="loss",
    cases=lambda dtype: _logits_case(dtype),
    reference=result_reference(_logits_reference),
    torch=loss_mapping("torch.nn.BCEWithLogitsLoss", buffers=("weight", "pos_weight")),
    tolerance=analysed_tolerance(_logits_errors, lambda case, tensor: broadcast_length(case, tensor)),
    invalid_cases=_invalid(_logits_case, ("pos_weight shape", "target shape", "reduction")),
    regimes=(LEGACY_REGIME,
             Regime("large logits", lambda case: bool(np.any(np.abs(case.inputs["input"]) >= 20)),
                    {"input.scale": "large"}, "|x| from 20 to 1000, both signs: no overflow, no NaN."),
             Regime("pos_weight", lambda case: "pos_weight" in case.inputs, {"pos_weight": True},
                    "pos_weight broadcast over the input (a (C,) vector along the last dim)."),
             _weights_not_positive("weight", "pos_weight")),
    notes="ℓ = -w·(pw·t·log σ(x) + (1 - t)·log(1 - σ(x))) = w·(pw·t·softplus(-x) + (1 - t)·softplus(x)); weight "
          "and pos_weight broadcast to the input (not differentiable in torch); target must have the input's "
          "shape. dℓ/dx = w·((1 - t)·σ(x) - pw·t·σ(-x)), dℓ/dt = w·(pw·softplus(-x) - softplus(x)).",
))


# -- SoftMarginLoss ----------------------------------------------------------------------------------

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


def _soft_margin_reference(case: Case, backward: bool) -> Result:
    x, y = case.inputs["input"], case.inputs["target"]
    out = Result(outputs={"output": ref.soft_margin_loss(x, y, reduction_of(case))})
    if backward:
        g_out = S.output_gradient(case, "output", out.outputs["output"])
        out.grads["input"] = ref.soft_margin_loss_vjp(x, y, reduction_of(case), g_out)
    return out


def _soft_margin_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, y = case.inputs["input"], case.inputs["target"]
    term_err, dx_err = ref.soft_margin_errors(x, y)
    return pointwise_errors(case, ref.soft_margin_terms(x, y), term_err, reduction_of(case),
                            {"input": (-y * ref.sigmoid(-y * x), dx_err)})


def soft_margin_overflows(case: Case) -> bool:
    """exp(-y·x) overflows the format for some element: -y·x > log(largest finite value)."""
    x, y = case.inputs["input"], case.inputs["target"]
    return bool(np.any(-y * x > math.log(DTYPES[case.dtype].max_value)))


declare(LayerSpec(
    name="SoftMarginLoss",
    family="loss",
    cases=lambda dtype: _soft_margin_case(dtype),
    reference=result_reference(_soft_margin_reference),
    torch=loss_mapping("torch.nn.SoftMarginLoss"),
    tolerance=analysed_tolerance(_soft_margin_errors, lambda case, tensor: broadcast_length(case, tensor)),
    invalid_cases=_invalid(_soft_margin_case, ("shapes", "reduction")),
    regimes=(LEGACY_REGIME,
             Regime("large margins", soft_margin_overflows, {"input.large": RARE},
                    "-y·x beyond log(max): the true loss is ≈ -y·x, finite.")),
    notes="ℓ = log(1 + exp(-y·x)) with targets y = ±1 (torch does not check them), input and target broadcast; "
          "the target is not differentiable in torch. The reference evaluates softplus stably: the loss stays "
          "finite (≈ -y·x) where exp(-y·x) overflows.",
))


# -- MultiLabelSoftMarginLoss -----------------------------------------------------------------------

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


def _mlsm_reference(case: Case, backward: bool) -> Result:
    x, t, w = case.inputs["input"], case.inputs["target"], case.inputs.get("weight")
    out = Result(outputs={"output": ref.mlsm_loss(x, t, w, reduction_of(case))})
    if backward:
        g_out = S.output_gradient(case, "output", out.outputs["output"])
        gx, gt = ref.mlsm_loss_vjp(x, t, w, reduction_of(case), g_out)
        out.grads.update(input=gx, target=gt)
    return out


def _mlsm_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, w = case.inputs["input"], case.inputs["target"], case.inputs.get("weight")
    reduction = reduction_of(case)
    out_err, dx_err, dt_err = ref.mlsm_errors(x, t, w, reduction)
    out = {"output": out_err}
    if case.cotangents:
        dx, dt = ref.mlsm_derivatives(x, t, w)
        ghat = np.expand_dims(base.scaled_cotangent(case.cotangents["output"], x.shape[:-1], reduction), -1)
        ghat_err = base.cotangent_error(reduction)
        out["grad.input"] = base.grad_error(ghat, dx, dx_err, ghat_err, tiny_over_u=tiny_over_u(case))
        out["grad.target"] = base.grad_error(ghat, dt, dt_err, ghat_err, tiny_over_u=tiny_over_u(case))
    return out


def _mlsm_length(case: Case, tensor: str) -> int:
    x = case.inputs["input"]
    if tensor != "output":
        return 1
    return x.shape[-1] * (1 if reduction_of(case) == "none" else max(1, x.size // x.shape[-1]))


declare(LayerSpec(
    name="MultiLabelSoftMarginLoss",
    family="loss",
    cases=lambda dtype: _mlsm_case(dtype),
    reference=result_reference(_mlsm_reference),
    torch=loss_mapping("torch.nn.MultiLabelSoftMarginLoss", buffers=("weight",)),
    tolerance=analysed_tolerance(_mlsm_errors, _mlsm_length),
    invalid_cases=_invalid(_mlsm_case, ("target shape", "weight shape", "reduction")),
    regimes=(LEGACY_REGIME,
             Regime("large logits", lambda case: bool(np.any(np.abs(case.inputs["input"]) >= 20)),
                    {"input.scale": "large"}),
             _weights_not_positive("weight")),
    notes="ℓ_n = -(1/C)·Σ_c w_c·(t·log σ(x) + (1 - t)·log σ(-x)) over the last dim, reduced over the samples "
          "('mean' divides by N). Input (C) or (N, C); the weight is a (C,) buffer. dℓ/dt = -w·x/C, which torch "
          "evaluates as the difference of the two log-sigmoids (the bound carries their magnitudes).",
))
