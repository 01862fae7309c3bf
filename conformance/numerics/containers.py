"""Numerics of the container family: composed models (whose bounds propagate layer by layer, see
``conformance.composition``) and torch.nn.utils' gradient utilities (the error analysis of the
total norm is ``reference.clip.norm_error``); comparators and the known-entry predicates of
``conformance/known/container.toml`` and ``utility.toml``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.composition import PROPAGATION, LayerRun, compose_reference, input_bounds, layers_of
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec
from reference import clip as ref

# -- composed models --------------------------------------------------------------------------------


def model_smooth_at(case: Case) -> bool:
    """Finite differences apply where every layer's own declaration says they do at its input
    (no ReLU input near 0, no max-pool tie, no frequency-scaled embedding rows...), and the backend
    evaluates the same smooth piece as the reference: no selection within the reach of the rounding
    errors the layers before it make (``selection_within_rounding``), and no intermediate of the
    second-order computation beyond the dtype's range (``second_order_beyond_range``)."""
    with np.errstate(all="ignore"):
        runs = compose_reference(case)[0].meta["runs"]
    if not all(run.spec.smooth_at is None or run.spec.smooth_at(run.case) for run in runs):
        return False
    return not selection_within_rounding(case) and not second_order_beyond_range(case)


SELECTIONS = ("ReLU", "MaxPool2d")  # the chainable layers whose derivative selects (kinks, window maxima)


def selection_within_rounding(case: Case) -> bool:
    """Some selection layer (ReLU, MaxPool2d) whose choice the rounding errors of the layers before it
    can flip: a ReLU input within its first-order error bound E_x (``composition.input_bounds``) of 0,
    or a max-pool window whose maximum another element within the bounds could take. The backend
    then differentiates the other piece of the model: its second derivative (the vjp2 mode) is that
    piece's, which differs from the reference's by the whole term the selection routes, not by a
    rounding error. Found by the rule the first-order bound uses for such flips (the selection's
    propagation with |g| = 1 and E_g = 0 is non-zero exactly where the choice is open)."""
    if "layers" not in case.params or not any(layer["op"] in SELECTIONS for layer in layers_of(case)):
        return False
    with np.errstate(all="ignore"):
        for run, e_x in input_bounds(case):
            if run.case.op not in SELECTIONS or e_x is None or not np.any(e_x):
                continue
            shape = np.shape(run.result.outputs["output"])
            probe = LayerRun(run.spec, replace(run.case, cotangents={"output": np.ones(shape)}), run.result)
            open_choice = PROPAGATION[run.case.op].backward(probe, e_x, np.zeros(shape))["grad.input"]
            if np.any(open_choice > 0):
                return True
    return False


def second_order_beyond_range(case: Case) -> bool:
    """Some intermediate of the model's second-order computation beyond the dtype's largest value:
    the tangent along v of an activation between two layers (J_<ℓ·v), or of the cotangent arriving
    at one (the second-order adjoint there: what reverse-over-reverse's double backward and
    forward-over-reverse's tangent both carry between the layers, by the symmetry of the Hessian).
    The backend's value there is ±inf, and every element formed from it is ±inf or NaN (a whole row
    of a weight's second derivative: inf times the input's signs) where the exact result is finite;
    the reference, float64 differences of the model, holds no such intermediate. Like an activation
    beyond the range in the first-order chain (``composition.saturate``), but of the differentiated
    computation, which a derivative mode alone forms: such a case is outside the vjp2 domain.
    Evaluated with the vjp2 mode's own directions and the case's cotangent (drawn as the runner
    draws it), by central differences (four evaluations of the model and its pullback). The model's
    own input and output are not intermediates (their second-order tensors are compared, and an
    infinity the bound reaches is accepted there)."""
    if "layers" not in case.params or len(layers_of(case)) < 2 or case.dtype not in DTYPES:
        return False
    from backends.torch_run import direction_values
    from conformance.modes.base import FD_STEP, _differentiable, _seed
    from conformance.strategies import output_cotangent
    from reference.finite_differences import directional

    fmt = DTYPES[case.dtype]
    with np.errstate(all="ignore"):
        model, _ = compose_reference(case)
        out = np.asarray(model.outputs["output"])
        if out.dtype.kind != "f":
            return False
        cot = case.cotangents.get("output")
        g = np.asarray(cot if cot is not None else output_cotangent(case, "output", out.shape), dtype=np.float64)
        seed = _seed(case)
        v = {n: direction_values(seed, n, case.inputs[n], case.tier, case.layout(n).describe())
             for n in _differentiable(case)}
        if not v:
            return False

        def intermediates(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            shifted, pullback = compose_reference(replace(case, inputs=inputs))
            pullback({"output": g})
            runs = shifted.meta["runs"]
            values: dict[str, np.ndarray] = {}
            for i, run in enumerate(runs[1:], start=1):  # between layers i - 1 and i
                if run.x.dtype.kind == "f":
                    values[f"activation {i}"] = np.asarray(run.x, dtype=np.float64)
                values[f"cotangent {i}"] = np.asarray(runs[i - 1].case.cotangents["output"], dtype=np.float64)
            return values

        tangents = directional(intermediates, dict(case.inputs), v, FD_STEP)
        limit = fmt.max_value * (1 + fmt.unit_roundoff)  # (``saturate``'s threshold)
        return any(bool(np.any(np.abs(d.estimate) > limit)) for d in tangents.values())


def cross_entropy_smoothing_overflows(case: Case) -> bool:
    """A float16 functional model ending in CrossEntropyLoss with label smoothing whose sum of
    log-probabilities (over the whole batch when reduced, else per sample) leaves float16's range:
    torch forms that sum as a float16 tensor."""
    layers = layers_of(case)
    if case.dtype != "float16" or not layers or layers[-1]["op"] != "CrossEntropyLoss" \
            or not layers[-1]["params"]["label_smoothing"]:
        return False
    with np.errstate(all="ignore"):
        logits = compose_reference(case)[0].meta["runs"][-1].x
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    sums = np.abs(log_p).sum(axis=1) if layers[-1]["params"]["reduction"] == "none" else np.abs(log_p).sum()
    return bool(np.any(sums > 65504))


# -- gradient utilities: which gradients a case passes ------------------------------------------------

def grad_names(case: Case) -> list[str]:
    """The gradient inputs actually passed to torch (none for the 'empty list' form)."""
    if case.params.get("form") == "empty list":
        return []
    return [f"grad{i}" for i in range(case.params["count"]) if f"grad{i}" in case.inputs]


def grads(case: Case) -> list[np.ndarray]:
    return [case.inputs[n] for n in grad_names(case)]


def accumulation(dtype: str) -> str:
    """The format torch accumulates p-th powers in on the CPU: float64 for float64, else float32."""
    return "float64" if dtype == "float64" else "float32"


def exact_total(case: Case) -> float:
    return ref.total_norm(grads(case), case.params["norm_type"])


def dtype_total(case: Case) -> float:
    """The total norm as torch returns it: in the gradients' dtype, so beyond its range it is inf."""
    total = exact_total(case)
    dt = DTYPES[case.dtype]
    return float("inf") if np.isfinite(total) and total > dt.max_value * (1 + dt.unit_roundoff) else total


def used_total(case: Case) -> float:
    """The total norm the clipping divides by: the given ``total_norm`` (clip_grads_with_norm_),
    else the one computed."""
    if "total_norm" in case.inputs:
        return float(case.inputs["total_norm"])
    return dtype_total(case)


def total_error(case: Case) -> float:
    """E_T in units of u (``reference.clip.norm_error``); 0 for a given total norm."""
    if "norm_type" not in case.params:
        return 0.0
    dt = DTYPES[case.dtype]
    return ref.norm_error(grads(case), case.params["norm_type"], dt.unit_roundoff, dt.min_subnormal,
                          DTYPES[accumulation(case.dtype)].min_subnormal)


def _clamped_exactly(case: Case, err: float) -> bool:
    """max_norm / (T + 1e-6) exceeds 1 by more than its rounding error: torch clamps it to 1."""
    total = used_total(case)
    u = DTYPES[case.dtype].unit_roundoff
    with np.errstate(all="ignore"):
        ratio = case.params["max_norm"] / (total + ref.EPS)
    return bool(np.isfinite(total) and ratio * (1 - (err + 3) * u) > 1)


def norm_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """The analysed bounds (absolute, in units of u): the total norm |T|·E_T; each clipped gradient
    |g·c|·(E_c + 1), or 0 (bit for bit) where the coefficient is clamped to exactly 1."""
    err = total_error(case)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        if "output" in result.outputs:
            out["output"] = np.nan_to_num(np.abs(result.outputs["output"]) * err)
    if not result.state:
        return out
    exact = _clamped_exactly(case, err)
    dt = DTYPES[case.dtype]
    coef = float(np.nan_to_num(result.meta.get("coefficient", 1.0)))
    err_coef = ref.coefficient_error(err, coef, dt.unit_roundoff, dt.min_subnormal)
    for name, value in result.state.items():
        out[f"state.{name}"] = np.zeros(value.shape) if exact else np.nan_to_num(np.abs(value)) * (err_coef + 1)
    return out


def norm_length(case: Case, tensor: str) -> int:
    """K: every gradient element enters the total norm."""
    return max(1, sum(g.size for g in grads(case)))


def total_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """With no gradient at all there is no dtype to follow: torch returns torch.tensor(0.0) (the
    default dtype, float32); the case dtype is accepted too."""
    absref = spec.tolerance_for(name).magnitude(case, result)[name]  # type: ignore[operator]
    got_dtype = got.dtypes.get(name)
    if not grads(case) and got_dtype in ("float32", case.dtype):
        got_dtype = None  # either is right
    return compare_tensor(spec, case, name, result.outputs[name], got.outputs.get(name), got_dtype, absref)


def clipped_value_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """clip_grad_value_ with clip_value = 0: clamp_min(-0.0) then clamp_max(+0.0) leaves a zero of
    either sign (IEEE max/min of ±0 is either), so zeros are compared without their sign there;
    elsewhere bit for bit with the sign (a selection)."""
    expected, actual = result.tensors()[name], got.tensors().get(name)
    if case.params["clip_value"] == 0 and actual is not None and np.shape(actual) == np.shape(expected):
        expected, actual = expected + 0.0, np.asarray(actual) + 0.0  # -0.0 + 0.0 is +0.0
    return compare_tensor(spec, case, name, expected, actual, got.dtypes.get(name), np.abs(expected))


# -- known-entry predicates ---------------------------------------------------------------------------

def norm_sum_overflows(case: Case) -> bool:
    """The sum of p-th powers overflows the accumulation format (torch then returns inf)."""
    p = case.params.get("norm_type")
    gs = grads(case)
    if p is None or np.isinf(p) or not gs or not np.isfinite(exact_total(case)):
        return False
    acc = DTYPES[accumulation(case.dtype)]
    return ref.power_sum([DTYPES[case.dtype].round(g) for g in gs], p) > acc.max_value


def norm_sum_underflows(case: Case) -> bool:
    """The sum of p-th powers lies within its own gradual-underflow error (2·K·tiny) of zero in the
    accumulation format."""
    p = case.params.get("norm_type")
    gs = grads(case)
    if p is None or np.isinf(p) or not gs or not np.isfinite(exact_total(case)) or exact_total(case) == 0:
        return False
    acc = DTYPES[accumulation(case.dtype)]
    return ref.power_sum(gs, p) < 2 * sum(g.size for g in gs) * acc.min_subnormal


def float16_coefficient_overflows(case: Case) -> bool:
    """float16, and 1/(T + 1e-6) beyond float16's range while the gradients must be scaled down
    (torch evaluates max_norm / (T + 1e-6) as max_norm · reciprocal(T + 1e-6))."""
    if case.dtype != "float16" or not grads(case):
        return False
    total = used_total(case)
    return bool(np.isfinite(total) and 0 <= total + ref.EPS < 1 / 65520 and case.params["max_norm"] < total + ref.EPS)


def coefficient(case: Case) -> float:
    """The clipping coefficient of a case (for regimes)."""
    return ref.clip_coefficient(case.params["max_norm"], used_total(case))


def noncontiguous_parameter(case: Case) -> bool:
    """A parameter that ``Tensor.view(-1)`` cannot flatten (stored neither contiguously nor with
    only size-1 dims out of order)."""
    from conformance.strategies import is_torch_contiguous, torch_strides

    return any(not is_torch_contiguous(arr.shape, torch_strides(arr.shape, case.layout(name)))
               for name, arr in case.inputs.items() if name.startswith("param"))


def vector_longer_than_parameters(case: Case) -> bool:
    return case.inputs["vec"].size > sum(a.size for n, a in case.inputs.items() if n.startswith("param"))


def inf_norm_of_an_empty_tensor(case: Case) -> bool:
    """The infinity norm, and an empty tensor among those passed."""
    return bool(np.isinf(case.params.get("norm_type", 0.0))) and any(g.size == 0 for g in grads(case))


def no_gradient_passed(case: Case) -> bool:
    return not grads(case)


# -- container operations: where torch 2.13 departs from its documentation -------------------------------

def _ops(case: Case) -> list[str]:
    return [step.get("op", "") for step in case.params.get("steps", ())]


def modulelist_negative_insert(case: Case) -> bool:
    """ModuleList.insert with a negative index (list.insert counts from the end)."""
    return case.params.get("container") == "ModuleList" and any(
        step["method"] == "insert" and step["args"][0] < 0 for step in case.params["steps"])


def modulelist_insert_past_the_end(case: Case) -> bool:
    return case.params.get("container") == "ModuleList" and "insert past the end" in _ops(case)


def modulelist_inserts_a_tensor(case: Case) -> bool:
    return case.params.get("container") == "ModuleList" and case.invalid and "insert a tensor" in _ops(case)


def named_sequential_reordered(case: Case) -> bool:
    """A Sequential built from an OrderedDict, then edited by del, pop or insert (torch renames its
    children by position, or looks them up by position)."""
    return case.params.get("container") == "Sequential" and case.params["named"] and any(
        op in ("del", "del slice", "pop", "insert") for op in _ops(case))


def named_sequential_append_collides(case: Case) -> bool:
    """A Sequential built from an OrderedDict to which a module is appended while one of its
    children is already named str(len) (torch replaces that child)."""
    if case.params.get("container") != "Sequential" or not case.params["named"]:
        return False
    from reference import containers as model

    p = case.params
    resolver = model.Resolver(p["entries"], case.inputs)
    container = model.build("Sequential", p["init"], True, resolver)
    for step in p["steps"]:
        if step["method"] == "append" and str(len(container)) in container.keys():
            return True
        try:
            model.run(container, [step], resolver, model.Encoder(()))
        except Exception:  # an invalid last step
            return False
    return False


def parameterlist_not_a_list(case: Case) -> bool:
    """ParameterList, documented 'like a regular Python list', asked for del, insert or pop."""
    return case.params.get("container") == "ParameterList" and any(op in ("del", "insert", "pop") for op in _ops(case))


def unsigned_zeros(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Bit for bit, except the sign of a zero (undocumented: PReLU(0) with a negative slope is -0.0 as
    w·x, +0.0 as max(0, x) + w·min(0, x)): zeros are compared as +0.0 on both sides."""
    expected, actual = result.tensors()[name], got.tensors().get(name)
    if actual is not None and np.shape(actual) == np.shape(expected):
        expected, actual = expected + 0.0, np.asarray(actual) + 0.0
    return compare_tensor(spec, case, name, expected, actual, got.dtypes.get(name), np.abs(expected))


COMPOSED_MODELS = frozenset({"Sequential", "ModuleList", "ModuleDict", "DataParallel", "ParameterList",
                             "ParameterDict"})


def composed_model(case: Case) -> bool:
    """A case of a container entry that runs a drawn model (not a container-semantics program)."""
    return case.op in COMPOSED_MODELS and "layers" in case.params


# -- derivative modes (issue #24) ---------------------------------------------------------------------

BATCH_NORMS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")


def reverse_over_forward_through_batch_statistics(case: Case) -> bool:
    """A vjp2 case composed reverse-over-forward (``torch.func.grad`` of ``torch.func.jvp``) of a
    model with a batch norm that normalises with the batch's statistics (training, or no running
    statistics tracked): where torch's batch_norm JVP rule is wrong to second order (pytorch#196699,
    known entry ``batchnorm-jvp-rule-wrong-to-second-order``)."""
    node = case.mode_node
    if node.get("composition") != "reverse-over-forward" or "layers" not in case.params:
        return False
    return any(layer["op"] in BATCH_NORMS and (case.train or not layer["params"].get("track_running_stats", True))
               for layer in layers_of(case))


def forward_mode_float16_batch_variance_overflows(case: Case) -> bool:
    """A float16 vjp2 case composed through batch_norm's forward-mode formulas (forward-over-reverse,
    ``torch.func.jvp`` of ``torch.func.vjp``; reverse-over-forward, ``torch.func.grad`` of
    ``torch.func.jvp``) of a model with a batch norm that normalises with the batch's statistics,
    one of whose channels has a (biased) variance beyond float16's range (rounding to inf: >= 65520)
    at the layer's reference input: torch then returns NaN (forward-over-reverse), or gradients off
    by 10 to 2,000 u of their scale (reverse-over-forward), for the first-order gradients and the
    second derivatives (known entry ``model-float16-batchnorm-forward-mode-variance-overflow``),
    though its plain backward and double backward are accurate there."""
    if case.dtype != "float16" or case.mode_node.get("composition") not in ("forward-over-reverse",
                                                                           "reverse-over-forward"):
        return False
    if "layers" not in case.params:
        return False
    with np.errstate(all="ignore"):
        runs = compose_reference(case)[0].meta["runs"]
        for layer, run in zip(layers_of(case), runs):
            batch_stats = case.train or not layer["params"].get("track_running_stats", True)
            if layer["op"] not in BATCH_NORMS or not batch_stats:
                continue
            x = np.asarray(run.x, dtype=np.float64)
            if x.ndim < 2 or not x.size:
                continue
            axes = (0, *range(2, x.ndim))
            var = x.var(axis=axes)
            if np.any(np.isinf(var.astype(np.float16))):
                return True
    return False


def reverse_over_reverse_float16_batch_tangent_moment_overflows(case: Case) -> bool:
    """A float16 vjp2 case composed reverse-over-reverse (double backward) of a model with a batch norm
    that normalises with the batch's statistics, one of whose channels has Σ t·(x - μ) (t the tangent
    of the layer's input along the mode's direction, x its reference input), or one of its products,
    beyond float16's range: torch's batch-norm double backward forms that moment (ggI·input_sub_mu
    summed) in float16, so J·v comes back ±inf and the other second derivatives NaN, though their
    values are small (known entry ``model-float16-batchnorm-double-backward-tangent-moment-overflow``)."""
    if case.dtype != "float16" or case.mode_node.get("composition") != "reverse-over-reverse":
        return False
    if "layers" not in case.params:
        return False
    from conformance.composition import layer_tangents
    from conformance.modes import mode_of

    layers = layers_of(case)
    if not any(layer["op"] in BATCH_NORMS for layer in layers):
        return False
    limit = DTYPES["float16"].max_value
    with np.errstate(all="ignore"):
        runs = compose_reference(case)[0].meta["runs"]
        tangents = layer_tangents(case, mode_of("vjp2").directions(case))  # type: ignore[attr-defined]
        for layer, run, t in zip(layers, runs, tangents):
            batch_stats = case.train or not layer["params"].get("track_running_stats", True)
            if layer["op"] not in BATCH_NORMS or not batch_stats or t is None:
                continue
            x = np.asarray(run.x, dtype=np.float64)
            if x.ndim < 2 or not x.size:
                continue
            axes = (0, *range(2, x.ndim))
            products = t * (x - x.mean(axis=axes, keepdims=True))
            if np.any(np.abs(products) > limit) or np.any(np.abs(products.sum(axis=axes)) > limit):
                return True
    return False


def unscaled_total_norm(case: Case) -> float:
    """The total norm as torch computes it for a finite norm_type p: each gradient's
    ``vector_norm`` (Σ|g|^p)^(1/p) with unscaled powers in the accumulation format (float32 below
    float64), rounded to the gradients' dtype, then the same p-norm of those norms: where the powers
    underflow, the sums lose their low bits or vanish. The norm of a single element is its
    magnitude (no powers formed)."""
    p = float(case.params["norm_type"])
    dt = DTYPES[case.dtype]
    acc = np.dtype(accumulation(case.dtype)).type

    def norm(values: np.ndarray) -> float:
        if np.size(values) == 1:  # one element: its magnitude, no powers
            return float(dt.round(np.abs(np.asarray(values, dtype=np.float64)).reshape(-1)[0]))
        with np.errstate(all="ignore"):
            powers = np.power(np.abs(np.asarray(values, dtype=np.float64)).astype(acc), acc(p))
            return float(dt.round(np.power(np.sum(powers, dtype=acc), acc(1 / p))))

    return norm(np.array([norm(g) for g in grads(case)], dtype=np.float64))


def norm_sum_underflow_shows(case: Case) -> bool:
    """``norm_sum_underflows`` where torch's total (``unscaled_total_norm``), or the gradients it
    clips with it, are beyond the case's bound: exactly where the underflow shows."""
    from conformance.numerics.elementwise import beyond_bound
    from conformance.spec import spec_of

    if not norm_sum_underflows(case):
        return False
    total = unscaled_total_norm(case)
    alternatives: dict[str, np.ndarray] = {"output": np.float64(total)}
    if case.op == "clip_grad_norm_":
        with np.errstate(all="ignore"):
            ref_state = spec_of(case).evaluate(case, case.cotangents).state
            used, exact = (ref.clip_coefficient(case.params["max_norm"], t) for t in (total, used_total(case)))
            ratio = np.float64(used) / np.float64(exact) if exact != 0 else np.nan
            alternatives.update({f"state.{n}": np.asarray(v, dtype=np.float64) * ratio for n, v in ref_state.items()})
    return beyond_bound(case, alternatives)


FLOAT16_MAX = 65504.0


def _float16_invstd_cubed_overflows(x: np.ndarray, eps: float) -> bool:
    """Some channel (axis 1) of a float16 batch-norm input whose saved invstd, cubed in float16,
    overflows: torch saves invstd = 1/sqrt(var + eps) in the input's dtype (float16) and its
    forward-mode rule and double backward form invstd.pow(3) in it, which is inf once
    invstd >= 65520^(1/3) ~ 40.3 (var + eps below about 6.2e-4)."""
    if x.dtype.kind != "f" or x.ndim < 2 or not x.size:
        return False
    with np.errstate(all="ignore"):
        x16 = np.asarray(x, dtype=np.float16).astype(np.float32)  # the float16 activation torch receives
        axes = tuple(i for i in range(x16.ndim) if i != 1)
        mean = x16.mean(axis=axes, dtype=np.float32)
        var = ((x16 - mean.reshape(1, -1, *([1] * (x16.ndim - 2)))) ** 2).mean(axis=axes, dtype=np.float32)
        invstd = np.float16(1.0) / np.sqrt(var + np.float32(eps)).astype(np.float16)
        cubed = (np.asarray(invstd, dtype=np.float32) ** 3).astype(np.float16)  # inf beyond 65520
        return bool(np.any(~np.isfinite(invstd) | ~np.isfinite(cubed)))


def float16_batch_norm_invstd_cubed_overflows(case: Case) -> bool:
    """A float16 composed model with a batch norm that normalises with the batch's statistics
    (training, or no running statistics) over a channel whose saved invstd cubed overflows float16
    (``_float16_invstd_cubed_overflows``, on the layer's reference input): torch's batch_norm JVP
    rule and double backward are then ±inf or NaN (known entry
    ``model-float16-batchnorm-second-order-invstd-cubed-overflows``)."""
    if case.dtype != "float16" or not composed_model(case):
        return False
    layers = layers_of(case)
    if not any(layer["op"] in BATCH_NORMS for layer in layers):
        return False
    with np.errstate(all="ignore"):
        runs = compose_reference(case)[0].meta["runs"]
    for layer, run in zip(layers, runs):
        if layer["op"] in BATCH_NORMS and (case.train or not layer["params"].get("track_running_stats", True)) \
                and _float16_invstd_cubed_overflows(np.asarray(run.x, dtype=np.float64), layer["params"]["eps"]):
            return True
    return False


def reverse_over_forward_with_float16_invstd_cubed_overflow(case: Case) -> bool:
    """Both container batch-norm triggers at once (``reverse_over_forward_through_batch_statistics`` and
    ``float16_batch_norm_invstd_cubed_overflows``): one second-order tensor can then hold the overflow's
    NaN/inf and the wrong rule's values together, which neither entry explains alone."""
    return reverse_over_forward_through_batch_statistics(case) and float16_batch_norm_invstd_cubed_overflows(case)
