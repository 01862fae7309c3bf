"""Loss functions: the shared part (reduction draws, the deprecated flags, the error-model
tolerance, common regimes) and the regression losses MSELoss, L1Loss, SmoothL1Loss, KLDivLoss.

The other losses are declared in ``loss_classification`` (CrossEntropyLoss, NLLLoss, NLLLoss2d),
``loss_binary`` (BCELoss, BCEWithLogitsLoss, SoftMarginLoss, MultiLabelSoftMarginLoss) and
``loss_margin`` (MarginRankingLoss, HingeEmbeddingLoss, MultiLabelMarginLoss, MultiMarginLoss,
CosineEmbeddingLoss).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import CONTIGUOUS, Case, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from conformance.tolerance import bound_as_magnitude
from reference import loss as ref

# The deprecated flags, every combination that overrides ``reduction`` (at least one given).
_LEGACY_FLAGS = ((None, False), (False, None), (True, None), (None, True), (True, True), (False, True),
                 (True, False), (False, False))


def draw_reduction(d: S.Drawer, reductions: Sequence[str] = ref.REDUCTIONS) -> dict[str, Any]:
    """``reduction`` ('mean' first), or the deprecated size_average/reduce pair (torch warns), which
    overrides a ``reduction`` passed beside it."""
    if d.choice(("reduction", "legacy"), "reduction spelling") == "reduction":
        return {"reduction": d.choice(reductions, "reduction")}
    size_average, reduce = d.choice(_LEGACY_FLAGS, "(size_average, reduce)")
    params: dict[str, Any] = {"size_average": size_average, "reduce": reduce}
    if d.flag("reduction passed too"):
        params["reduction"] = d.choice(reductions, "overridden reduction")
    return params


_draw_reduction = draw_reduction


def reduction_of_params(params: Mapping[str, Any], valid: Sequence[str] = ref.REDUCTIONS) -> str:
    return ref.legacy_reduction(params.get("size_average"), params.get("reduce"), params.get("reduction", "mean"),
                                tuple(valid))


_reduction = reduction_of_params


def reduction_of(case: Case) -> str:
    """The reduction the case's loss performs (the deprecated flags resolved)."""
    return reduction_of_params(case.params)


def uses_legacy_flags(case: Case) -> bool:
    return case.params.get("size_average") is not None or case.params.get("reduce") is not None


LEGACY_REGIME = Regime(
    "deprecated size_average/reduce", uses_legacy_flags, {"reduction spelling": "legacy"},
    "The deprecated flags (every combination maps to a reduction and overrides `reduction`).")


def reduction_regime(reduction: str) -> Regime:
    return Regime(f"reduction '{reduction}'", lambda case: reduction_of(case) == reduction,
                  {"reduction spelling": "reduction", "reduction": reduction})


# -- the error-model tolerance ------------------------------------------------------------------------

ErrorFn = Callable[[Case, Result], Mapping[str, np.ndarray]]


def analysed_tolerance(errors: ErrorFn, length: Callable[[Case, str], int]) -> Tolerance:
    """A float-tier tolerance whose bound is a loss's own first-order error analysis: ``errors``
    gives, per compared tensor, |computed - exact| / u; K (``length``) only sizes the underflow
    allowance K·tiny."""

    def magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
        return {name: bound_as_magnitude(err, length(case, name)) for name, err in errors(case, result).items()}

    return Tolerance(reduction=length, magnitude=magnitude, c=1.0, exact="none")


def tiny_over_u(case: Case) -> float:
    dt = DTYPES[case.dtype]
    return dt.min_subnormal / dt.unit_roundoff


def underflow(case: Case, values: np.ndarray, operations: int = 4) -> np.ndarray:
    """The underflow allowance (units of u) of values computed in ``operations`` steps: half a
    subnormal spacing per step, and where the exact value lies below the normal range the whole
    smallest normal (a formula such as 1/(1 + exp(-x)) flushes a subnormal result to 0)."""
    dt = DTYPES[case.dtype]
    with np.errstate(invalid="ignore"):
        flushed = np.where(np.abs(values) < dt.min_normal, dt.min_normal / dt.unit_roundoff, 0.0)
    return operations * tiny_over_u(case) / 2 + flushed


def unit_roundoff(case: Case) -> float:
    return DTYPES[case.dtype].unit_roundoff


def pointwise_errors(case: Case, terms: np.ndarray, term_err: np.ndarray, reduction: str,
                     derivs: Mapping[str, tuple[np.ndarray, np.ndarray]], count: float | None = None,
                     count_err: float = 0.0) -> dict[str, np.ndarray]:
    """Errors (units of u) of a reduced elementwise loss over the broadcast shape of its operands:
    the output, and for each differentiable operand the gradient ĝ·dℓ/d(operand) summed back over
    the dims it was broadcast along (2√B·Σ for a sum of B terms)."""
    term_err = term_err + underflow(case, terms)
    out = {"output": ref.reduced_error(terms, term_err, reduction, count, count_err)}
    if not case.cotangents:
        return out
    ghat = ref.scaled_cotangent(case.cotangents["output"], terms.shape, reduction, count)
    ghat_err = ref.cotangent_error(reduction, count_err)
    for name, (deriv, deriv_err) in derivs.items():
        if name not in case.differentiable:
            continue
        shape = case.inputs[name].shape
        deriv = np.broadcast_to(deriv, terms.shape)
        err = ref.grad_error(ghat, deriv, np.broadcast_to(deriv_err, terms.shape), ghat_err) + underflow(
            case, ghat * deriv)
        summed = ref.sum_to_shape(err, shape)
        factor = terms.size // max(1, math.prod(shape))
        if factor > 1:
            summed = summed + 2 * math.sqrt(factor) * ref.sum_to_shape(np.abs(ghat * deriv), shape)
        out[f"grad.{name}"] = summed
    return out


def broadcast_length(case: Case, tensor: str, names: Sequence[str] = ("input", "target")) -> int:
    """K: the terms summed into one output value (every term unless 'none') or into one gradient
    element (the broadcast factor of that operand)."""
    numel = math.prod(np.broadcast_shapes(*(case.inputs[n].shape for n in names)))
    if tensor == "output":
        return 1 if reduction_of(case) == "none" else numel
    return max(1, numel // max(1, case.inputs[tensor.removeprefix("grad.")].size))


def loss_mapping(target: str, args: Sequence[str] = ("input", "target"), buffers: Sequence[str] = (),
                 ctor: Callable[[Case], dict[str, Any]] | None = None) -> TorchMapping:
    return TorchMapping(target, buffers=buffers, args=tuple(args), ctor=ctor)


def values(d: S.Drawer, shape: Sequence[int], dtype: str, tier: str, label: str, **kwargs: Any) -> np.ndarray:
    """``strategies.values`` with the requested shape kept for 0-d tensors (np.ascontiguousarray
    there returns a 1-element 1-d array)."""
    return S.values(d, shape, dtype, tier, label, **kwargs).reshape(tuple(shape))


RARE = 63


def rare(d: S.Drawer, label: str) -> bool:
    """A corner where torch has a known discrepancy: drawn about once in 64 cases at random (each
    known failure restarts the isolated worker, which dominates the run time) and always in the
    regime that pins ``label`` to ``RARE``."""
    return d.integer(0, RARE, label) == RARE


def seeded_rng(d: S.Drawer, label: str) -> np.random.Generator:
    return np.random.default_rng(d.integer(0, 2**32 - 1, label))


# -- MSELoss, L1Loss, SmoothL1Loss -----------------------------------------------------------------

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


_BETAS = (1.0, 0.0, 0.5, 2.0)
_TIE_FRACTIONS = (0.0, 0.25, 1.0)


def _regression_params(op: str, d: S.Drawer) -> dict[str, Any]:
    params = draw_reduction(d)
    if op == "SmoothL1Loss":
        params["beta"] = d.choice(_BETAS, "beta")
    return params


def _exact_limit(op: str, dtype: str, numel: int) -> int:
    """Largest integer m such that the sum of every term stays within 2^p: (2m)² per term for
    MSE, 2m for L1."""
    limit = DTYPES[dtype].exact_integer_limit / max(1, numel)
    return max(1, int(math.sqrt(limit) / 2) if op == "MSELoss" else int(limit / 2))


def _with_kinks(d: S.Drawer, op: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
                layouts: dict[str, Any]) -> None:
    """Move a drawn fraction of positions onto the kinks: target = input (L1, smooth L1) and, for
    smooth L1 with β > 0, |input - target| = β on small dyadic values (exact in every format)."""
    if inputs["input"].shape != inputs["target"].shape or op == "MSELoss":
        return
    shape = inputs["input"].shape
    ties = d.choice(_TIE_FRACTIONS, "target ties")
    edges = d.choice(_TIE_FRACTIONS, "|input - target| = beta") if params.get("beta") else 0.0
    if not (ties or edges):
        return
    rng = seeded_rng(d, "kink.seed")
    tie = rng.random(shape) < ties
    edge = ~tie & (rng.random(shape) < edges)
    x = np.where(edge, rng.integers(-8, 9, shape) / 4, inputs["input"])
    t = np.where(tie, x, inputs["target"])
    t = np.where(edge, x + np.where(rng.random(shape) < 0.5, -1.0, 1.0) * params.get("beta", 0.0), t)
    inputs.update(input=x, target=t)
    layouts["target"] = CONTIGUOUS  # arbitrary values: no stride-0 dims
    if edge.any():
        layouts["input"] = CONTIGUOUS


@st.composite
def _regression_case(draw, op: str, dtype: str) -> Case:
    """Any shape (0-d to 4-d), optionally broadcast input/target, both differentiable.

    In the exact tier (MSE, L1) a 'mean' reduction gets power-of-two sizes, so that dividing by the
    element count is exact and every tensor must be bit-exact. L1 and smooth L1 put a drawn
    fraction of positions on their kinks.
    """
    d = S.Drawer(draw)
    tier = S.tier(d, S.TIERS if op != "SmoothL1Loss" else ("float",))
    params = _regression_params(op, d)
    ndim = d.integer(0, 4, "ndim")
    if tier == "exact" and reduction_of_params(params) == "mean":
        shape = _power_of_two_sizes(d, ndim)
    else:
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 2, hi=12, label="shape"))
    x_shape, t_shape = _broadcast_shapes(d, shape) if ndim and d.flag("broadcast") else (shape, shape)
    limit = _exact_limit(op, dtype, math.prod(shape))
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True),
               "target": S.layouts(d, len(t_shape), "layout.target", expanded=True)}
    # Keep |x - t|² within the format: an elementwise square that overflows (float16 'mixed'
    # magnitudes) makes 'mean' inf even where the mean itself is representable.
    bound = 2.0 ** math.floor(math.log2(math.sqrt(DTYPES[dtype].max_value) / 2))
    inputs = {name: np.asarray(np.clip(values(d, s, dtype, tier, name, int_limit=limit, layout=layouts[name]),
                                       -bound, bound)) for name, s in (("input", x_shape), ("target", t_shape))}
    _with_kinks(d, op, params, inputs, layouts)
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                layouts=layouts, tier=tier, cotangent_seed=S.seed(d))


@st.composite
def _invalid_regression_case(draw, op: str, dtype: str) -> Case:
    """Shapes that do not broadcast, an unknown reduction string, or (smooth L1) a negative beta."""
    d = S.Drawer(draw)
    kinds = ("shapes", "reduction") + (("negative beta",) if op == "SmoothL1Loss" else ())
    kind = d.choice(kinds, "invalid kind")
    params: dict[str, Any] = {"reduction": "mean"}
    if kind == "shapes":
        n = d.integer(2, 6, "size")
        x_shape, t_shape = (n,), (n + d.integer(1, 3, "extra"),)
    else:
        x_shape = t_shape = (d.integer(1, 6, "size"),)
        if kind == "reduction":
            params["reduction"] = d.choice(("average", "Mean", "elementwise", "batchmean"), "reduction")
        else:
            params["beta"] = d.choice((-1.0, -0.5), "beta")
    inputs = {name: values(d, s, dtype, "float", name) for name, s in (("input", x_shape), ("target", t_shape))}
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                invalid=True, note=kind)


def _regression_reference(forward: Callable[..., np.ndarray], vjp: Callable[..., tuple[np.ndarray, np.ndarray]],
                          extra: Callable[[Case], dict[str, Any]] = lambda case: {}) -> Callable[[Case, bool], Result]:
    def reference(case: Case, backward: bool) -> Result:
        x, t, reduction = case.inputs["input"], case.inputs["target"], reduction_of(case)
        out = Result(outputs={"output": forward(x, t, reduction, **extra(case))})
        if backward:
            gx, gt = vjp(x, t, S.output_gradient(case, "output", out.outputs["output"]), reduction, **extra(case))
            out.grads.update(input=gx, target=gt)
        return out

    return reference


def _broadcast_numel(case: Case) -> int:
    return math.prod(np.broadcast_shapes(case.inputs["input"].shape, case.inputs["target"].shape))


def _mse_output_length(case: Case, tensor: str) -> int:
    """K = elements summed into one output value: 1 for 'none', every element otherwise."""
    return 1 if reduction_of(case) == "none" else _broadcast_numel(case)


def _mse_grad_length(case: Case, tensor: str) -> int:
    """K = how many broadcast elements sum into one gradient element of the operand."""
    return max(1, _broadcast_numel(case) // max(1, case.inputs[tensor.removeprefix("grad.")].size))


def _grad_magnitude(vjp: Callable[..., tuple[np.ndarray, np.ndarray]]) -> Callable[[Case, Result], dict[str, Any]]:
    """absref of each gradient: the VJP evaluated on |x - t| (against 0) and |g|, summed over the
    broadcast dims (the sum of |terms| of every gradient element)."""

    def magnitude(case: Case, result: Result) -> dict[str, Any]:
        x, t = case.inputs["input"], case.inputs["target"]
        d = np.abs(np.subtract(x, t))
        terms, _ = vjp(d, np.zeros_like(d), np.abs(case.cotangents["output"]), reduction_of(case))
        return {"grad.input": ref.sum_to_shape(terms, x.shape), "grad.target": ref.sum_to_shape(terms, t.shape)}

    return magnitude


_REGRESSION_NOTES = ("reduction and the deprecated size_average/reduce (reduce=False → 'none', else size_average="
                     "False → 'sum', else 'mean'; they override reduction). Input and target broadcast (torch warns); "
                     "their gradients sum over the broadcast dims; 'mean' divides by the broadcast element count.")


def _broadcast_regime() -> Regime:
    return Regime("broadcast input/target", lambda case: case.inputs["input"].shape != case.inputs["target"].shape,
                  {"ndim": 2, "shape[0]": 3, "shape[1]": 3, "log2 size[0]": 1, "log2 size[1]": 1,
                   "broadcast": True, "broadcast[0]": "input"})


def _kink_regime(pins: Mapping[str, Any]) -> Regime:
    return Regime("input equals target (kink)",
                  lambda case: bool(np.any(case.inputs["input"] == case.inputs["target"])),
                  {"broadcast": False, "target ties": 1.0, "ndim": 1, **pins},
                  "x = t: the gradient there is 0 (sign(0)).")


declare(LayerSpec(
    name="MSELoss",
    family="loss",
    cases=lambda dtype: _regression_case("MSELoss", dtype),
    reference=result_reference(_regression_reference(ref.mse_loss, ref.mse_loss_vjp)),
    torch=loss_mapping("torch.nn.MSELoss"),
    tolerance={
        # d = x - t and d² are two roundings (3u relative on d²), the sum adds 2√K·u: c = 5 ≥ 3 + 2
        # with √K ≥ 1; all terms are >= 0, so |ref| is the magnitude. Exact tier: integer sums;
        # 'mean' (power-of-two counts there) one final rounding at most.
        "output": Tolerance(reduction=_mse_output_length, magnitude="ref", c=5.0, exact="rounded"),
        # 2·d·ĝ: roundings of d, of the 2/numel factor and of two products (4u), plus 2√K·u for the
        # sum over broadcast dims: c = 6. Exact tier: integers, or dyadic with power-of-two counts.
        "grad.*": Tolerance(reduction=_mse_grad_length, magnitude=_grad_magnitude(ref.mse_loss_vjp), c=6.0,
                            exact="bitwise"),
    },
    invalid_cases=lambda dtype: _invalid_regression_case("MSELoss", dtype),
    regimes=(LEGACY_REGIME, _broadcast_regime()),
    notes=_REGRESSION_NOTES,
))


declare(LayerSpec(
    name="L1Loss",
    family="loss",
    cases=lambda dtype: _regression_case("L1Loss", dtype),
    reference=result_reference(_regression_reference(ref.l1_loss, ref.l1_loss_vjp)),
    torch=loss_mapping("torch.nn.L1Loss"),
    tolerance={
        # |x - t| is one rounding, the sum 2√K·u: c = 3, terms >= 0 so |ref| is the magnitude.
        "output": Tolerance(reduction=_mse_output_length, magnitude="ref", c=3.0, exact="rounded"),
        # ±ĝ (exact; 'mean' one rounding of g/numel, two for g·(1/numel)) summed over broadcast dims.
        "grad.*": Tolerance(reduction=_mse_grad_length, magnitude=_grad_magnitude(ref.l1_loss_vjp), c=4.0,
                            exact="bitwise"),
    },
    invalid_cases=lambda dtype: _invalid_regression_case("L1Loss", dtype),
    regimes=(LEGACY_REGIME, _broadcast_regime(), _kink_regime({})),
    notes=_REGRESSION_NOTES + " The gradient at x = t is 0 (sign(0)).",
))


def _smooth_l1_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, beta = case.inputs["input"], case.inputs["target"], case.params.get("beta", 1.0)
    d = np.subtract(x, t)
    term_err, deriv_err = ref.smooth_l1_errors(d, beta)
    deriv = ref.smooth_l1_derivative(d, beta)
    return pointwise_errors(case, ref.smooth_l1_terms(d, beta), term_err, reduction_of(case),
                            {"input": (deriv, deriv_err), "target": (-deriv, deriv_err)})


declare(LayerSpec(
    name="SmoothL1Loss",
    family="loss",
    cases=lambda dtype: _regression_case("SmoothL1Loss", dtype),
    reference=result_reference(_regression_reference(ref.smooth_l1_loss, ref.smooth_l1_loss_vjp,
                                    lambda case: {"beta": case.params.get("beta", 1.0)})),
    torch=loss_mapping("torch.nn.SmoothL1Loss"),
    tolerance=analysed_tolerance(_smooth_l1_errors, broadcast_length),
    invalid_cases=lambda dtype: _invalid_regression_case("SmoothL1Loss", dtype),
    smooth_at=lambda case: bool(np.all(np.abs(np.abs(np.subtract(case.inputs["input"], case.inputs["target"]))
                                              - case.params.get("beta", 1.0)) > 1e-3)
                                and np.all(case.inputs["input"] != case.inputs["target"])),
    regimes=(LEGACY_REGIME, _broadcast_regime(), _kink_regime({"beta": 1.0}),
             Regime("beta = 0 (L1)", lambda case: case.params.get("beta", 1.0) == 0, {"beta": 0.0}),
             Regime("|input - target| = beta (branch boundary)",
                    lambda case: bool(np.any(np.abs(np.subtract(case.inputs["input"], case.inputs["target"]))
                                             == case.params.get("beta", 1.0))),
                    {"broadcast": False, "beta": 0.5, "target ties": 0.0, "|input - target| = beta": 1.0,
                     "ndim": 1})),
    notes=_REGRESSION_NOTES + " ℓ = 0.5·d²/β where |d| < β, else |d| - 0.5·β; β = 0 is the L1 loss and β < 0 is "
          "rejected. The gradient at |d| = β is sign(d), at d = 0 it is 0.",
))


# -- KLDivLoss -------------------------------------------------------------------------------------

def _kl_reduction(case: Case) -> str:
    return reduction_of_params(case.params, ref.KL_REDUCTIONS)


_KL_TARGETS = ("distribution", "uniform", "with zeros")


@st.composite
def _kl_case(draw, dtype: str) -> Case:
    """Input log-probabilities (a log-softmax along the last dim, or any values) and target
    probabilities (a distribution, uniform values, or with exact zeros) or log-probabilities
    (log_target=True), same shape 0-d to 4-d; both differentiable."""
    d = S.Drawer(draw)
    params = draw_reduction(d, ref.KL_REDUCTIONS)
    params["log_target"] = d.flag("log_target")
    ndim = d.integer(0, 4, "ndim")
    shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 2, hi=12, label="shape"))
    layouts = {"input": S.layouts(d, ndim, "layout.input", expanded=True)}
    x = values(d, shape, dtype, "float", "input", layout=layouts["input"])
    if ndim and d.flag("input is a log-softmax"):
        z = x - np.max(x, axis=-1, keepdims=True)
        x = DTYPES[dtype].round(z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True)))
    rng = seeded_rng(d, "target.seed")
    kind = d.choice(_KL_TARGETS, "target.kind")
    if kind == "distribution" and ndim:
        z = rng.standard_normal(shape)
        t = np.exp(z - z.max(axis=-1, keepdims=True))
        t = t / t.sum(axis=-1, keepdims=True)
    else:
        t = rng.random(shape)
        if kind == "with zeros":
            t = np.where(rng.random(shape) < 0.3, 0.0, t)
            t = np.array(t)
            t.flat[0] = 0.0
    if params["log_target"]:
        t = np.log(np.where(t > 0, t, 0.5))
    inputs = {"input": x, "target": DTYPES[dtype].round(t)}
    return Case(op="KLDivLoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                layouts=layouts, tier="float", cotangent_seed=S.seed(d))


@st.composite
def _invalid_kl_case(draw, dtype: str) -> Case:
    d = S.Drawer(draw)
    kind = d.choice(("shapes", "reduction"), "invalid kind")
    params: dict[str, Any] = {"reduction": "mean"}
    n = d.integer(2, 6, "size")
    x_shape, t_shape = ((n,), (n + d.integer(1, 3, "extra"),)) if kind == "shapes" else ((n,), (n,))
    if kind == "reduction":
        params["reduction"] = d.choice(("average", "Batchmean", "elementwise"), "reduction")
    inputs = {"input": values(d, x_shape, dtype, "float", "input"),
              "target": DTYPES[dtype].round(seeded_rng(d, "target.seed").random(t_shape))}
    return Case(op="KLDivLoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                invalid=True, note=kind)


def _kl_reference(case: Case, backward: bool) -> Result:
    x, t, reduction, log_target = case.inputs["input"], case.inputs["target"], _kl_reduction(case), \
        bool(case.params.get("log_target", False))
    out = Result(outputs={"output": ref.kl_div(x, t, reduction, log_target)})
    if backward:
        gx, gt = ref.kl_div_vjp(x, t, S.output_gradient(case, "output", out.outputs["output"]), reduction, log_target)
        out.grads.update(input=gx, target=gt)
    return out


def _kl_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    x, t, reduction = case.inputs["input"], case.inputs["target"], _kl_reduction(case)
    log_target = bool(case.params.get("log_target", False))
    terms = ref.kl_div_terms(x, t, log_target)
    term_err, dx_err, dt_err = ref.kl_div_errors(x, t, log_target)
    with np.errstate(all="ignore"):
        if log_target:
            dx, dt = -np.exp(t), np.exp(t) * (t - x + 1)
        else:
            dx, dt = -t, np.log(np.where(t > 0, t, 1.0)) + 1 - x
    red, count = (("mean", ref.kl_count(x, reduction, terms.size)) if reduction == "batchmean"
                  else (reduction, None))
    if not log_target and case.cotangents:
        # The 1 in dt is formed as (ĝ·t)/t: where ĝ·t underflows, its absolute error tiny/2 is
        # divided by t. As a relative error of ĝ (pointwise_errors multiplies dt_err by |ĝ|):
        ghat = np.abs(ref.scaled_cotangent(case.cotangents["output"], terms.shape, red, count))
        with np.errstate(divide="ignore", invalid="ignore"):
            lost = np.where((t > 0) & (ghat > 0), tiny_over_u(case) / 2 / (t * ghat), 0.0)
        dt_err = dt_err + lost
    return pointwise_errors(case, terms, term_err, red, {"input": (dx, dx_err), "target": (dt, dt_err)}, count)


def _kl_length(case: Case, tensor: str) -> int:
    return 1 if tensor != "output" or _kl_reduction(case) == "none" else case.inputs["input"].size


declare(LayerSpec(
    name="KLDivLoss",
    family="loss",
    cases=lambda dtype: _kl_case(dtype),
    reference=result_reference(_kl_reference),
    torch=loss_mapping("torch.nn.KLDivLoss"),
    tolerance=analysed_tolerance(_kl_errors, _kl_length),
    invalid_cases=lambda dtype: _invalid_kl_case(dtype),
    smooth_at=lambda case: bool(case.params.get("log_target") or np.all(case.inputs["target"] > 0)),
    regimes=(LEGACY_REGIME,
             Regime("log_target", lambda case: bool(case.params.get("log_target")), {"log_target": True}),
             Regime("batchmean", lambda case: _kl_reduction(case) == "batchmean",
                    {"reduction spelling": "reduction", "reduction": "batchmean"}),
             Regime("zero targets", lambda case: not case.params.get("log_target") and
                    bool(np.any(case.inputs["target"] == 0)),
                    {"log_target": False, "target.kind": "with zeros", "ndim": 2, "shape[0]": 4, "shape[1]": 4})),
    notes="ℓ = t·(log t - x) with 0·log 0 = 0 (torch: xlogy(t, t) - t·x), or exp(t)·(t - x) with log_target. "
          "'batchmean' divides the sum by input.shape[0] (a 0-d input: the sum); 'mean' by every element. "
          "dℓ/dt = log t + 1 - x is NaN at t = 0 (t·log t has no derivative there; torch gives NaN too). "
          "The deprecated flags map as for every loss (reduce=False → 'none', size_average=False → 'sum').",
))
