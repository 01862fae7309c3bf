"""Loss functions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Tolerance, TorchMapping, declare
from conformance.tolerance import bound_as_magnitude
from reference import loss as ref

# The deprecated flags, every combination that overrides ``reduction`` (at least one given).
_LEGACY_FLAGS = ((None, False), (False, None), (True, None), (None, True), (True, True), (False, True),
                 (True, False), (False, False))


def _draw_reduction(d: S.Drawer) -> dict[str, Any]:
    """``reduction`` ('mean' first), or the deprecated size_average/reduce pair (torch warns), which
    overrides a ``reduction`` passed beside it."""
    if d.choice(("reduction", "legacy"), "reduction spelling") == "reduction":
        return {"reduction": d.choice(ref.REDUCTIONS, "reduction")}
    size_average, reduce = d.choice(_LEGACY_FLAGS, "(size_average, reduce)")
    params: dict[str, Any] = {"size_average": size_average, "reduce": reduce}
    if d.flag("reduction passed too"):
        params["reduction"] = d.choice(ref.REDUCTIONS, "overridden reduction")
    return params


def _reduction(params: Mapping[str, Any]) -> str:
    return ref.legacy_reduction(params.get("size_average"), params.get("reduce"), params.get("reduction", "mean"))


def reduction_of(case: Case) -> str:
    """The reduction the case's loss performs (the deprecated flags resolved)."""
    return _reduction(case.params)


# -- MSELoss ------------------------------------------------------------------------------------

def _broadcast_shapes(d: S.Drawer, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, target shape) broadcasting to ``shape``: per dim, both full or one of them 1;
    leading dims where an operand is 1 may be dropped from it."""
    x_shape, t_shape = list(shape), list(shape)
    for i in range(len(shape)):
        side = d.choice(("both", "input", "target"), f"broadcast[{i}]")
        if side == "input":
            x_shape[i] = 1
        elif side == "target":
            t_shape[i] = 1

    def drop_leading(s: list[int], label: str) -> tuple[int, ...]:
        ones = next((i for i, v in enumerate(s) if v != 1), len(s))
        return tuple(s[d.integer(0, ones, label):])

    return drop_leading(x_shape, "input dims dropped"), drop_leading(t_shape, "target dims dropped")


def _power_of_two_sizes(d: S.Drawer, ndim: int) -> tuple[int, ...]:
    """Sizes in {1, 2, 4, 8} (at most 8^4 = 4096 elements)."""
    return tuple(2 ** d.integer(0, 3, f"log2 size[{i}]") for i in range(ndim))


@st.composite
def _mse_case(draw, dtype: str) -> Case:
    """Any shape (0-d to 4-d), optionally broadcast input/target, both differentiable.

    In the exact tier a 'mean' reduction gets power-of-two sizes, so that dividing by the element
    count is exact and every tensor must be bit-exact.
    """
    d = S.Drawer(draw)
    tier = S.tier(d)
    params = _draw_reduction(d)
    ndim = d.integer(0, 4, "ndim")
    if tier == "exact" and _reduction(params) == "mean":
        shape = _power_of_two_sizes(d, ndim)
    else:
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 2, hi=12, label="shape"))
    x_shape, t_shape = _broadcast_shapes(d, shape) if ndim and d.flag("broadcast") else (shape, shape)
    # (2m)² summed over the elements stays within 2^p.
    limit = max(1, int(math.sqrt(DTYPES[dtype].exact_integer_limit / max(1, math.prod(shape))) / 2))
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True),
               "target": S.layouts(d, len(t_shape), "layout.target", expanded=True)}
    # Keep |x - t|² within the format: an elementwise square that overflows (float16 'mixed'
    # magnitudes) makes 'mean' inf even where the mean itself is representable.
    bound = 2.0 ** math.floor(math.log2(math.sqrt(DTYPES[dtype].max_value) / 2))
    inputs = {name: np.clip(S.values(d, s, dtype, tier, name, int_limit=limit, layout=layouts[name]), -bound, bound)
              for name, s in (("input", x_shape), ("target", t_shape))}
    return Case(op="MSELoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                layouts=layouts, tier=tier, cotangent_seed=S.seed(d))


@st.composite
def _invalid_mse_case(draw, dtype: str) -> Case:
    """Shapes that do not broadcast, or an unknown reduction string."""
    d = S.Drawer(draw)
    if d.choice(("shapes", "reduction"), "invalid kind") == "shapes":
        n = d.integer(2, 6, "size")
        x_shape, t_shape, params = (n,), (n + d.integer(1, 3, "extra"),), {"reduction": "mean"}
    else:
        x_shape = t_shape = (d.integer(1, 6, "size"),)
        params = {"reduction": d.choice(("average", "Mean", "elementwise"), "reduction")}
    inputs = {name: S.values(d, s, dtype, "float", name) for name, s in (("input", x_shape), ("target", t_shape))}
    return Case(op="MSELoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                invalid=True)


def _mse_reference(case: Case, backward: bool) -> Result:
    x, t, reduction = case.inputs["input"], case.inputs["target"], reduction_of(case)
    out = Result(outputs={"output": ref.mse_loss(x, t, reduction)})
    if backward:
        gx, gt = ref.mse_loss_vjp(x, t, case.cotangents["output"], reduction)
        out.grads.update(input=gx, target=gt)
    return out


def _broadcast_numel(case: Case) -> int:
    return math.prod(np.broadcast_shapes(case.inputs["input"].shape, case.inputs["target"].shape))


def _mse_output_length(case: Case, tensor: str) -> int:
    """K = elements summed into one output value: 1 for 'none', every element otherwise."""
    return 1 if reduction_of(case) == "none" else _broadcast_numel(case)


def _mse_grad_length(case: Case, tensor: str) -> int:
    """K = how many broadcast elements sum into one gradient element of the operand."""
    return max(1, _broadcast_numel(case) // max(1, case.inputs[tensor.removeprefix("grad.")].size))


def _mse_grad_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """absref of each gradient: the sum over broadcast dims of |2·(x - t)·ĝ| (ĝ = g, or g/numel
    for 'mean'): the VJP evaluated on |x - t| and |g|."""
    x, t = case.inputs["input"], case.inputs["target"]
    d = np.abs(np.subtract(x, t))
    terms, _ = ref.mse_loss_vjp(d, np.zeros_like(d), np.abs(case.cotangents["output"]), reduction_of(case))
    return {"grad.input": ref.sum_to_shape(terms, x.shape), "grad.target": ref.sum_to_shape(terms, t.shape)}


declare(LayerSpec(
    name="MSELoss",
    family="loss",
    cases=lambda dtype: _mse_case(dtype),
    reference=_mse_reference,
    torch=TorchMapping("torch.nn.MSELoss", args=("input", "target")),
    tolerance={
        # d = x - t and d² are two roundings (3u relative on d²), the sum adds 2√K·u: c = 5 ≥ 3 + 2
        # with √K ≥ 1; all terms are >= 0, so |ref| is the magnitude. Exact tier: integer sums;
        # 'mean' (power-of-two counts there) one final rounding at most.
        "output": Tolerance(reduction=_mse_output_length, magnitude="ref", c=5.0, exact="rounded"),
        # 2·d·ĝ: roundings of d, of the 2/numel factor and of two products (4u), plus 2√K·u for the
        # sum over broadcast dims: c = 6. Exact tier: integers, or dyadic with power-of-two counts.
        "grad.*": Tolerance(reduction=_mse_grad_length, magnitude=_mse_grad_magnitude, c=6.0, exact="bitwise"),
    },
    invalid_cases=lambda dtype: _invalid_mse_case(dtype),
    notes="reduction and the deprecated size_average/reduce (reduce=False → 'none', else size_average=False → "
          "'sum', else 'mean'; they override reduction). Input and target broadcast (torch warns); their "
          "gradients sum over the broadcast dims; 'mean' divides by the broadcast element count.",
))


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
    return np.where(rng.random(t_shape) < fraction, ignore_index, target).astype(np.int64)


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
    inputs = {"input": S.values(d, x_shape, dtype, tier, "input", layout=layouts["input"],
                                scale=d.choice((1.0, 8.0), "input.scale"))}
    if probabilities:
        layouts["target"] = S.layouts(d, len(x_shape), "layout.target", expanded=True)
        inputs["target"] = _probability_target(d, x_shape, dtype, layouts["target"])
    else:
        inputs["target"] = _index_target(d, x_shape, params["ignore_index"])
    if d.flag("weight"):
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "weight.seed"))
        inputs["weight"] = DTYPES[dtype].round(rng.uniform(0.25, 2.0, classes))
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
        gx, gt = ref.cross_entropy_vjp(x, t, g=case.cotangents["output"], **args)
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


declare(LayerSpec(
    name="CrossEntropyLoss",
    family="loss",
    cases=lambda dtype: _ce_case(dtype),
    reference=_ce_reference,
    # CrossEntropyLoss registers ``weight`` as a buffer; forward passes it to F.cross_entropy.
    torch=TorchMapping("torch.nn.CrossEntropyLoss", buffers=("weight",), args=("input", "target")),
    tolerance=Tolerance(reduction=_ce_reduction_length, magnitude=_ce_magnitude, c=1.0, exact="none"),
    invalid_cases=_invalid_ce_case,
    notes="Targets become (1 - ε)·target + ε/C (one-hot for class indices). 'mean' divides by the sum of "
          "w[target] over non-ignored positions (class indices; every target ignored → 0/0 = NaN) or by the "
          "number of positions (probabilities). ignore_index applies to class indices only (a negative one "
          "has no effect on probabilities; torch rejects a non-negative one there). label_smoothing must lie "
          "in [0, 1] (documented); torch 2.13 accepts negative values and treats them as 0, which the "
          "invalid search reports.",
))
