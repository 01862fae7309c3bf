"""Numerics of the normalisation family: the error functions (``ErrorFn``) that put each layer's input
into the view of its statistic axes and call the one analysis of ``reference.normalization_errors``,
the reduction lengths of the analysed tolerances, and the predicates of
``conformance/known/normalization.toml``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec
from conformance.strategies.normalization import uses_batch_stats
from conformance.tolerance import magnitudes
from reference import normalization as RN
from reference import normalization_errors as E
from reference import normalization_lrn as RL

Errors = dict[str, np.ndarray]


def _u(case: Case) -> float:
    return DTYPES[case.dtype].unit_roundoff


def _cotangent(case: Case, result: Result) -> np.ndarray | None:
    return case.cotangents.get("output") if "input" in result.grads else None


def machine_eps(dtype: str) -> float:
    """torch.finfo(dtype).eps = 2^(1 - p): RMSNorm's eps when None (documented)."""
    return 2 * DTYPES[dtype].unit_roundoff


def _named(errors: Mapping[str, np.ndarray], shape: tuple[int, ...], param_shape: tuple[int, ...]) -> Errors:
    """The analysis' bounds under the compared tensors' names, back in their shapes."""
    out = {"output": np.reshape(errors["output"], shape)}
    for key, name, target in (("input", "grad.input", shape), ("weight", "grad.weight", param_shape),
                              ("bias", "grad.bias", param_shape)):
        if key in errors:
            out[name] = np.reshape(errors[key], target)
    return out


# -- BatchNorm and InstanceNorm -------------------------------------------------------------------

def _channel_statistics_errors(case: Case, result: Result, x: np.ndarray, axes: tuple[int, ...], momentum: float,
                               per_sample: bool) -> Errors:
    """BatchNorm and InstanceNorm: statistics over ``axes`` of x (N, C, *), per-channel parameters
    (their gradients over N and the spatial axes), or the fixed running statistics; the running
    update with factor ``momentum``, of per-sample statistics averaged over N when ``per_sample``."""
    inp, p = case.inputs, case.params
    param_axes = RN.channel_axes(x.ndim)
    w, b = (None if name not in inp else RN.per_channel(inp[name], x.ndim) for name in ("weight", "bias"))
    g = _cotangent(case, result)
    g = None if g is None else g.reshape(x.shape)
    shape, param = inp["input"].shape, (x.shape[1],)
    if not uses_batch_stats(case.train, p["track_running_stats"]):
        rm, rv = (RN.per_channel(inp[n], x.ndim) for n in ("running_mean", "running_var"))
        return _named(E.fixed_statistics_errors(x, rm, rv, p["eps"], weight=w, bias=b, cotangent=g,
                                                param_axes=param_axes), shape, param)
    errors = E.standardisation_errors(x, axes, p["eps"], _u(case), weight=w, bias=b, cotangent=g,
                                      param_axes=param_axes)
    out = _named(errors, shape, param)
    if p["track_running_stats"]:
        stat_shape, batch_axis = (x.shape[:2], 0) if per_sample else ((-1,), None)
        k = int(np.prod([x.shape[a] for a in axes]))
        unbias = k / (k - 1)
        mean, var = (v.reshape(stat_shape) for v in RN.moments(x, axes))
        err_mean, err_var = (errors[n].reshape(stat_shape) for n in ("mean", "var"))
        out["state.running_mean"] = E.running_update_errors(inp["running_mean"], mean, err_mean, momentum, batch_axis)
        out["state.running_var"] = E.running_update_errors(inp["running_var"], var * unbias, err_var * unbias,
                                                           momentum, batch_axis)
    return out


def batch_norm_errors(case: Case, result: Result) -> Errors:
    """BatchNorm: statistics per channel over N and the spatial axes (the parameters' axes too)."""
    x, p = case.inputs["input"], case.params
    momentum = RN.momentum_factor(p["momentum"], int(case.inputs["num_batches_tracked"]) + 1) \
        if p["track_running_stats"] else 0.0
    return _channel_statistics_errors(case, result, x, RN.channel_axes(x.ndim), momentum, per_sample=False)


def batched(case: Case, dims: int) -> np.ndarray:
    """InstanceNorm's input with its batch axis (an unbatched (C, *spatial) input gets N = 1)."""
    x = case.inputs["input"]
    return x if x.ndim == dims + 2 else x[None]


def instance_norm_errors(dims: int):
    """InstanceNorm{dims}d: statistics per sample and channel over the spatial axes; the running
    update (momentum None is 0) averages the per-sample updates over N."""

    def errors(case: Case, result: Result) -> Errors:
        momentum = case.params["momentum"] or 0.0
        return _channel_statistics_errors(case, result, batched(case, dims), tuple(range(2, dims + 2)), momentum,
                                          per_sample=True)

    return errors


# -- GroupNorm, LayerNorm, RMSNorm ---------------------------------------------------------------

def group_norm_errors(case: Case, result: Result) -> Errors:
    """GroupNorm in the (N, G, C/G, S) view: statistics over axes (2, 3), parameters per channel
    (1, G, C/G, 1), their gradients over (0, 3)."""
    x, inp, groups = case.inputs["input"], case.inputs, case.params["num_groups"]
    view = RN.group_view(x.shape, groups)
    w, b = (None if n not in inp else inp[n].reshape(1, groups, -1, 1) for n in ("weight", "bias"))
    g = _cotangent(case, result)
    errors = E.standardisation_errors(x.reshape(view), (2, 3), case.params["eps"], _u(case), weight=w, bias=b,
                                      cotangent=None if g is None else g.reshape(view), param_axes=(0, 3))
    return _named(errors, x.shape, (x.shape[1],))


def trailing_norm_errors(rms: bool):
    """LayerNorm (centred) and RMSNorm (μ = 0): statistics over the trailing normalized_shape dims,
    parameters of that shape, their gradients over the leading dims."""

    def errors(case: Case, result: Result) -> Errors:
        x, inp = case.inputs["input"], case.inputs
        axes = RN.trailing_axes(x, case.params["normalized_shape"])
        lead = axes[0]
        w, b = (None if n not in inp else inp[n].reshape((1,) * lead + inp[n].shape) for n in ("weight", "bias"))
        eps = trailing_eps(case)
        errs = E.standardisation_errors(x, axes, eps, _u(case), weight=w, bias=b, cotangent=_cotangent(case, result),
                                        param_axes=tuple(range(lead)), centred=not rms)
        return _named(errs, x.shape, x.shape[lead:])

    return errors


def trailing_eps(case: Case) -> float:
    """The eps a LayerNorm / RMSNorm case normalises with: RMSNorm's None is the dtype's eps."""
    eps = case.params["eps"]
    return machine_eps(case.dtype) if eps is None else float(eps)


def values_per_slice(case: Case) -> int:
    """K of LayerNorm / RMSNorm: the product of normalized_shape."""
    shape = case.params["normalized_shape"]
    return int(np.prod([shape] if isinstance(shape, int) else shape, dtype=np.int64))


# -- LocalResponseNorm ------------------------------------------------------------------------------

def local_response_errors(case: Case, result: Result) -> Errors:
    """Local response normalisation (``reference.normalization_errors.local_response_errors``)."""
    p = case.params
    return {("grad.input" if k == "input" else k): v for k, v in E.local_response_errors(
        case.inputs["input"], p["size"], p["alpha"], p["beta"], p["k"], _cotangent(case, result)).items()}


def lrn_smooth_at(case: Case) -> bool:
    """``smooth_at`` of LocalResponseNorm / CrossMapLRN2d: y = x·d^(-β), d = k + α/n·Σ_W x², bends
    on the scale s = √(n·|d|/|α|) of each window (where x² moves d by its own size), and is singular
    where d = 0 (k = 0 over an all-zero window: 0/0). As for the standardising layers
    (``resolvable``), the finite differences, whose steps are about 1e-6·(|x| + 1e-3), apply where
    every window has Σ_W |x| + 1e-3 <= 1000·s (with k = 0: no window of inputs all below ~1e-6,
    where a step reaches the singularity)."""
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    p = case.params
    n, alpha = int(p["size"]), float(p["alpha"])
    if x.ndim < 2 or not x.size or n < 1 or alpha == 0:
        return True
    with np.errstate(all="ignore"):
        d = float(p["k"]) + alpha / n * RL.window_sum(x * x, n, n // 2, (n - 1) // 2)
        scale = np.sqrt(n * np.abs(d) / abs(alpha))
        reach = RL.window_sum(np.abs(x), n, n // 2, (n - 1) // 2) + 1e-3
        return bool(np.all(d != 0) and np.all(~(reach > 1000 * scale)))


# -- comparators -------------------------------------------------------------------------------------

def lrn_nonfinite_gradient_comparator(spec: LayerSpec, case: Case, name: str, ref: Result, got: Result) -> Comparison:
    """grad.input of LocalResponseNorm / CrossMapLRN2d where a non-finite input reaches it: torch's
    chain rule multiplies 0 by an infinity (the power's derivative where d is infinite, x·x's where
    x is) and gives NaN, where the reference takes the finite limit (β = 0 makes y = x: gradient g;
    a window holding an infinity makes y = 0 for every finite x in it). The gradient convention at
    non-finite inputs is undocumented: NaN is accepted at every element whose input is non-finite or
    whose transposed window meets a window with a non-finite divisor; elsewhere the reference."""
    expected = np.asarray(ref.tensors()[name], dtype=np.float64)
    value = got.tensors().get(name)
    absref = magnitudes(spec, case, ref)[name]
    x, size = case.inputs["input"], int(case.params["size"])
    if value is None or np.shape(value) != expected.shape or np.isfinite(x).all():
        return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)
    with np.errstate(all="ignore"):
        square = np.where(np.isfinite(x), x * x, np.inf)
        bad = ~np.isfinite(RL.window_sum(square, size, size // 2, (size - 1) // 2))
        touched = (RL.window_sum(bad.astype(np.float64), size, (size - 1) // 2, size // 2) > 0) | ~np.isfinite(x)
    accepted = np.where(touched & np.isnan(np.asarray(value, dtype=np.float64)), np.nan, expected)
    return compare_tensor(spec, case, name, accepted, value, got.dtypes.get(name), absref)


# -- reduction lengths (the underflow allowance of the analysed tolerances) --------------------

def batch_length(case: Case, tensor: str) -> int:
    return RN.values_per_channel(case.inputs["input"])


def instance_length(dims: int):
    def length(case: Case, tensor: str) -> int:
        x = batched(case, dims)
        spatial = int(np.prod(x.shape[2:]))
        return spatial * x.shape[0] if tensor in ("grad.weight", "grad.bias") else spatial

    return length


def group_length(case: Case, tensor: str) -> int:
    x = case.inputs["input"]
    n, groups, per_group, spatial = RN.group_view(x.shape, case.params["num_groups"])
    return n * spatial if tensor in ("grad.weight", "grad.bias") else per_group * spatial


def trailing_length(case: Case, tensor: str) -> int:
    k = values_per_slice(case)
    lead = int(np.prod(case.inputs["input"].shape)) // max(k, 1)
    return lead if tensor in ("grad.weight", "grad.bias") else k


def lrn_length(case: Case, tensor: str) -> int:
    return int(case.params["size"])


# -- known torch discrepancies (predicates of conformance/known/normalization.toml) ------------------

def valid_cases(predicate: Callable[[Case], bool]) -> Callable[[Case], bool]:
    """A value predicate that never matches an invalid case (torch raises there, as it must)."""

    @functools.wraps(predicate)
    def matches(case: Case) -> bool:
        return not case.invalid and predicate(case)

    return matches


@valid_cases
def strided_weight_one_value_per_sample(case: Case) -> bool:
    """torch CPU (float32/float64) batch-norm backward reads a non-contiguous weight as if it were
    contiguous when the input has one value per sample and channel (spatial volume 1) and is
    contiguous (not channels-last-like): grad.input is computed with the wrong weights (NaN from
    the strided layout's gaps). Exact over every layout of shapes (N, C), (N, C, 1), (N, C, 1, 1) and
    (N, C, 1, 1, 1) tried (978 combinations)."""
    x = case.inputs["input"]
    if case.dtype not in ("float32", "float64") or "weight" not in case.inputs:
        return False
    if case.layout("weight").kind != "strided":
        return False
    if x.ndim < 2 or x.shape[1] < 2 or any(s != 1 for s in x.shape[2:]):
        return False
    strides = S.torch_strides(x.shape, case.layout("input"))
    return S.is_torch_contiguous(x.shape, strides) and not S.channels_last_like(x.shape, strides)


@valid_cases
def batch_norm_degenerate_channels_last(case: Case) -> bool:
    """torch CPU batch-norm backward, 4-d/5-d input: the kernel takes the channels-last path when
    the input is channels_last-contiguous (``S.is_channels_last_contiguous``) but not contiguous, while
    grad_output is made contiguous in the format torch infers (``S.channels_last_like``), which
    says contiguous when the channels-last strides hold only through size-1 dims: the kernel then
    reads grad_output in the wrong order. Exact over every permutation and strided layout of 230
    4-d/5-d shapes with size-1 dims, in train and eval mode (float64 and float32: always wrong;
    float16 and bfloat16: wrong, sometimes within the looser bound)."""
    x = case.inputs["input"]
    if x.ndim not in (4, 5):
        return False
    strides = S.torch_strides(x.shape, case.layout("input"))
    return (not S.is_torch_contiguous(x.shape, strides) and S.is_channels_last_contiguous(x.shape, strides)
            and not S.channels_last_like(x.shape, strides))


@valid_cases
def group_norm_one_pass_variance(case: Case) -> bool:
    """torch CPU GroupNorm on an input whose memory format torch infers as channels-last
    (``S.channels_last_like``, contiguous-and-channels-last ties included: the kernel is chosen by
    ``suggest_memory_format``): the channels-last kernel takes the variance as E[x²] - E[x]² in one
    pass, which cancels when a group's mean is large against its spread (|μ| >= 8σ here; a constant
    group included). The kernel choice agrees with channels_last_like on 4558 of 4560 layouts of
    small 4-d/5-d shapes."""
    x = case.inputs["input"]
    if x.ndim not in (4, 5):
        return False
    if not S.channels_last_like(x.shape, S.torch_strides(x.shape, case.layout("input"))):
        return False
    mean, var = RN.moments(x.reshape(RN.group_view(x.shape, case.params["num_groups"])), (2, 3))
    return bool(np.any(np.abs(mean) >= 8 * np.sqrt(var)))


@valid_cases
def rms_norm_eps_none_low_precision(case: Case) -> bool:
    """RMSNorm with eps None on float16/bfloat16: torch uses float32's eps (2^-23), the compute
    type's, not torch.finfo(x.dtype).eps as documented; visible where some row's mean square is
    within 2^12 of the documented eps."""
    if case.params["eps"] is not None or case.dtype not in ("float16", "bfloat16"):
        return False
    x = case.inputs["input"]
    axes = RN.trailing_axes(x, case.params["normalized_shape"])
    with np.errstate(over="ignore"):
        mean_square = (x * x).mean(axis=axes) if x.size else np.zeros(0)
    return bool(np.any(mean_square < 2.0**12 * machine_eps(case.dtype)))


@valid_cases
def rms_norm_rstd_cubed_underflow(case: Case) -> bool:
    """torch CPU RMSNorm backward forms rstd³ (rstd = 1/rms): it underflows the compute format
    (float64 for float64, float32 otherwise) for rows of rms > min_normal^(-1/3) (2^340.7, 2^42),
    and the x̂·mean(ĝ·x̂) term of the gradient is lost (float16 inputs cannot get there)."""
    if case.dtype == "float16" or not case.inputs["input"].size:  # float16's range stops far below
        return False
    x = case.inputs["input"]
    axes = RN.trailing_axes(x, case.params["normalized_shape"])
    compute = "float64" if case.dtype == "float64" else "float32"
    with np.errstate(over="ignore"):
        rms = np.sqrt((x * x).mean(axis=axes) + trailing_eps(case))
        return bool(np.any(rms ** 3 > 1 / DTYPES[compute].min_normal))


def torch_cross_map_sums(x: np.ndarray, size: int) -> np.ndarray:
    """The window sums of x² that torch's CrossMapLRN2d forward forms (torch/nn/modules/_functions.py):
    the first channel's window, then for each next channel the sum before it, plus the square
    entering at c + pre_pad - 1, minus the one at c - pre_pad once c > pre_pad."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf is NaN here as in torch
        return _cross_map_sums_of(x * x, size)


@valid_cases
def cross_map_forward_window_differs(case: Case) -> bool:
    """torch's CrossMapLRN2d forward (a Python port of Torch7's SpatialCrossMapLRN) keeps a running
    window sum of x² over the channels whose removal test is off by one: channel 0 is never removed
    and each later removal comes one channel late (for even sizes the window is also one channel
    narrower). The predicate replays that loop and says whether its sums differ from the window's."""
    x, size = case.inputs["input"], int(case.params["size"])
    if x.ndim != 4 or size < 1 or not x.size:
        return False
    scale = torch_cross_map_sums(x, size)
    exact = RL.window_sum(x * x, size, size // 2, (size - 1) // 2)
    with np.errstate(invalid="ignore"):
        tolerance = np.sqrt(np.finfo(np.float64).eps)  # far above the rounding of the running sums in float64
        return bool(np.any(np.abs(scale - exact) > tolerance * (np.abs(scale) + np.abs(exact))))


@valid_cases
def lrn_view_fails(case: Case) -> bool:
    """F.local_response_norm on an input of 5 or more dims views x² as (N, 1, C, D, -1): a view of
    the product, which keeps the input's dense permuted layout, fails when dims 3... of the input
    cannot be merged (RuntimeError). Exact for the permuted and channels-last layouts of torch's
    TensorIterator (dense inputs); strided and expanded inputs give a contiguous product."""
    x = case.inputs["input"]
    if x.ndim < 5 or case.layout("input").kind not in ("permuted", "channels_last") or x.size == 0:
        return False
    strides = S.torch_strides(x.shape, case.layout("input"))
    dims = [(s, st) for s, st in zip(x.shape[3:], strides[3:]) if s != 1]
    return any(outer != inner * size for (_, outer), (size, inner) in zip(dims, dims[1:]))


def _out_of_range(dtype: str, overflow: list[np.ndarray], underflow: list[np.ndarray]) -> bool:
    """Some value (exact, float64) beyond the dtype's largest finite value (inf included), or some
    of ``underflow`` non-zero below its smallest normal number."""
    fmt = DTYPES[dtype]
    with np.errstate(invalid="ignore"):
        big = any(bool(np.any(np.abs(v[~np.isnan(v)]) > fmt.max_value)) for v in overflow + underflow)
        small = any(bool(np.any((v != 0) & (np.abs(v) < fmt.min_normal))) for v in underflow)
    return big or small


def _lrn_values(case: Case) -> tuple[np.ndarray, ...]:
    """The exact (float64) square, window average, d = α·avg + k, p = d^β, y = x/p and the
    cotangent of a local response normalisation case, its non-finite inputs taken as 0 (they are
    non-finite on purpose, not by overflow)."""
    p, x = case.params, case.inputs["input"]
    x = np.where(np.isfinite(x), x, 0.0)
    size = int(p["size"])
    g = case.cotangents.get("output", np.ones_like(x))
    with np.errstate(all="ignore"):
        square = x * x
        average = RL.window_sum(square, size, size // 2, (size - 1) // 2) / size
        d = p["alpha"] * average + p["k"]
        power = d ** p["beta"]
        return square, average, d, power, x / power, g


@valid_cases
def lrn_intermediate_out_of_range(case: Case) -> bool:
    """F.local_response_norm is a composite of ops in the input's dtype (no wider accumulator): x·x,
    avg_pool, d = α·avg + k, p = d^β, y = x/p, and autograd's chain back: q = y/p (division
    backward), q·g·β·d^(β-1) (pow backward), times α. The predicate says whether one of them, taken
    exactly, leaves the dtype's range where the result does not: beyond the largest finite value,
    or (from d on) non-zero below the smallest normal number. Cases torch never computes are out of
    scope: those the view of ``lrn_view_fails`` rejects, float16/bfloat16 inputs of 4 or more dims."""
    if case.dtype in ("float16", "bfloat16") and case.inputs["input"].ndim >= 4:
        return False
    return lrn_chain_out_of_range(case)


def lrn_chain_out_of_range(case: Case) -> bool:
    """Whether one of local_response_norm's intermediates, forward and backward (see
    ``lrn_intermediate_out_of_range``), taken exactly, leaves the case dtype's range, for any rank of
    input that the view of ``lrn_view_fails`` accepts."""
    x = case.inputs["input"]
    if not x.size or lrn_view_fails(case):
        return False
    square, average, d, power, y, g = _lrn_values(case)
    beta, alpha = case.params["beta"], case.params["alpha"]
    with np.errstate(all="ignore"):
        q = y / power
        chain = g * q * beta * d ** (beta - 1)
        return _out_of_range(case.dtype, [square, average], [d, power, q, chain, chain * alpha])


@valid_cases
def cross_map_intermediate_out_of_range(case: Case) -> bool:
    """CrossMapLRN2d's forward and hand-written backward compute in the input's dtype: x², the
    window sums, d = α/n·sum + k, d^(-β), y, and the backward's ratio g·y/d. The predicate says
    whether one of them, taken exactly (with the documented window), leaves the dtype's range (as
    ``lrn_intermediate_out_of_range``)."""
    if case.inputs["input"].ndim != 4 or not case.inputs["input"].size:
        return False
    square, average, d, power, y, g = _lrn_values(case)
    with np.errstate(all="ignore"):
        return _out_of_range(case.dtype, [square, average * case.params["size"]], [d, 1 / power, g * y / d])


@valid_cases
def cross_map_range_shows(case: Case) -> bool:
    """An intermediate of CrossMapLRN2d leaves the dtype's range (``cross_map_intermediate_out_of_range``)
    and it shows: torch's computation replayed in the dtype (``torch_cross_map_lrn``) is non-finite
    where the same replay in float64 is finite, or differs from it beyond the case's bound. Both
    replays share torch's window (its own entries), so only the format's range and rounding differ."""
    if not cross_map_intermediate_out_of_range(case):
        return False
    from conformance.numerics.elementwise import beyond_bound
    from conformance.spec import spec_of

    narrow, wide = torch_cross_map_lrn(case, case.dtype), torch_cross_map_lrn(case, "float64")
    with np.errstate(all="ignore"):
        if any(bool(np.any(~np.isfinite(narrow[n]) & np.isfinite(wide[n]))) for n in narrow):
            return True
        ref = spec_of(case).evaluate(case, case.cotangents).tensors()
        shifted = {n: np.asarray(ref[n], dtype=np.float64) + (narrow[n] - wide[n]) for n in narrow if n in ref}
    return beyond_bound(case, shifted)


def cross_map_range_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """Model of ``crossmaplrn2d-out-of-range-*``: torch's computation replayed in the dtype
    (``torch_cross_map_lrn``, its window included): a result flushed to 0 or pushed to ±inf, or
    any other wrong value, is judged against it."""
    return torch_cross_map_lrn(case, case.dtype)


# -- known-entry predicates -------------------------------------------------------------------------

def instance_norm_per_sample_parameter_grad_overflows(case: Case) -> bool:
    """InstanceNorm's affine gradients as torch forms them: batch_norm over the (1, N·C, *spatial)
    view with the weight repeated N times, so each sample's sum Σ g·x̂ (and Σ g) is rounded to the
    dtype before the N sums are added. True when a per-sample sum beyond the dtype's range makes
    the channel's result inf or NaN where the correctly rounded total is a finite number, the other
    infinity or an infinity where torch's is NaN."""
    if not case.params.get("affine") or "output" not in case.cotangents:
        return False
    from conformance.spec import spec_of

    x, g = case.inputs["input"], case.cotangents["output"]
    if x.ndim == (spec_of(case).dims or 1) + 1:  # unbatched (C, *spatial)
        x, g = x[None], g[None]
    axes = tuple(range(2, x.ndim))
    with np.errstate(all="ignore"):
        if uses_batch_stats(case.train, bool(case.params.get("track_running_stats"))):
            mean = x.mean(axis=axes, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        else:
            shape = (1, -1) + (1,) * len(axes)
            mean, var = case.inputs["running_mean"].reshape(shape), case.inputs["running_var"].reshape(shape)
        xhat = (x - mean) / np.sqrt(var + case.params["eps"])
        per_sample = np.stack([(g * xhat).sum(axis=axes), g.sum(axis=axes)])  # (2, N, C)
        fmt = DTYPES[case.dtype]
        beyond = (np.abs(per_sample) > fmt.max_value).any(axis=1)
        torch_like = np.where(np.abs(per_sample) > fmt.max_value, np.sign(per_sample) * np.inf, per_sample).sum(axis=1)
        total = per_sample.sum(axis=1)
        total = np.where(np.abs(total) > fmt.max_value, np.sign(total) * np.inf, total)
        same = (torch_like == total) | (np.isnan(torch_like) & np.isnan(total)) | (
            np.isfinite(torch_like) & np.isfinite(total))
    # a per-sample sum beyond the range that changes the channel's result
    return bool(np.any(beyond & ~same))


def instance_norm_per_sample_running_var_overflows(case: Case) -> bool:
    """InstanceNorm's running variance as torch updates it: each sample's updated value
    (1 - m)·running_var + m·unbiased variance is stored in the dtype before the N of them are
    averaged. True when, on finite inputs, one of them is beyond the dtype's range while their
    average is not."""
    from conformance.spec import spec_of

    if not (case.train and case.params.get("track_running_stats")):
        return False
    x = case.inputs["input"]
    if x.ndim == (spec_of(case).dims or 1) + 1:
        x = x[None]
    n, c = x.shape[:2]
    values = x.reshape(n, c, -1)
    if values.shape[-1] < 2 or not np.isfinite(values).all():
        return False
    momentum = case.params["momentum"] or 0.0
    with np.errstate(all="ignore"):
        updated = (1 - momentum) * case.inputs["running_var"] + momentum * values.var(axis=-1, ddof=1)
    top = DTYPES[case.dtype].max_value
    return bool(np.any((np.abs(updated) > top).any(axis=0) & (np.abs(updated.mean(axis=0)) <= top)))


def lrn_replay(case: Case, op: Callable[[np.ndarray], np.ndarray],
               square: Callable[[np.ndarray], np.ndarray] | None = None,
               divisor: Callable[[np.ndarray], np.ndarray] | None = None,
               saved: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
               cotangent: Callable[[np.ndarray], np.ndarray] | None = None,
               result: Callable[[np.ndarray], np.ndarray] | None = None,
               scalar: Callable[[float], float] = float) -> dict[str, np.ndarray]:
    """F.local_response_norm and autograd's chain back, replayed with each op's result rounded by ``op``:
    avg = Σ_W x²/n, d = α·avg + k, y = x/d^β; ∂avg = -g·((x/p)/p)·β·d^(β-1)·α (p = d^β), grad = g/p + 2·x·Σ_W' ∂avg/n
    (W' the transposed window). The hooks say where a computation stores an intermediate in a narrower format:
    ``square`` (the x² the window sums read), ``divisor`` (the d the output divides by), ``saved`` (the d of the
    backward, from avg and d), ``cotangent`` (∂avg) and ``result`` (output and gradient; default ``op``);
    ``scalar`` gives α, k and β as the computation holds them (a generated kernel's float32 constants)."""
    p, x = case.params, np.asarray(case.inputs["input"], dtype=np.float64)
    size, alpha, k, beta = int(p["size"]), scalar(p["alpha"]), scalar(p["k"]), scalar(p["beta"])
    keep = op if result is None else result
    with np.errstate(all="ignore"):
        squares = op(x * x)
        squares = squares if square is None else square(squares)
        average = op(RL.window_sum(squares, size, size // 2, (size - 1) // 2) / size)
        d = op(op(average * alpha) + k)
        power = op((d if divisor is None else divisor(d)) ** beta)
        out = {"output": keep(x / power)}
        g = case.cotangents.get("output")
        if g is None or "input" not in case.differentiable:
            return out
        g = np.asarray(g, dtype=np.float64)
        if saved is not None:
            d = saved(average, d)
            power = op(d ** beta)
        g_power = op(-g * op(op(x / power) / power))  # div backward: -g·((x/p)/p)
        g_d = op(g_power * op(beta * op(d ** (beta - 1))))  # pow backward: g·(β·d^(β-1))
        g_average = op(g_d * alpha)
        g_average = g_average if cotangent is None else cotangent(g_average)
        g_square = op(RL.window_sum(g_average / size, size, (size - 1) // 2, size // 2))
        out["grad.input"] = keep(op(g / power) + 2 * op(g_square * x))
    return out


def lrn_composite_result(case: Case) -> dict[str, np.ndarray]:
    """What F.local_response_norm computes in the case's dtype: each op of the composite
    (``lrn_intermediate_out_of_range``) and of autograd's chain back rounded to the dtype (``lrn_replay``; the
    window sums accumulated wider), so that an intermediate overflows or underflows as in torch."""
    return lrn_replay(case, DTYPES[case.dtype].round)


@valid_cases
def lrn_composite_shows(case: Case) -> bool:
    """``lrn_intermediate_out_of_range`` on a 3-d input where the composite as torch computes it
    (``lrn_composite_result``) is non-finite where the reference is finite, or beyond the bound:
    exactly where ``lrn-composite-out-of-range-*`` shows."""
    from conformance.numerics.elementwise import shows_against_reference

    if not lrn_intermediate_out_of_range(case) or case.inputs["input"].ndim != 3:
        return False
    return shows_against_reference(case, lrn_composite_result(case))


# -- CrossMapLRN2d: non-finite running sums, β = 0 with a zero scale ----------------------------------


def _cross_map_sums_of(square: np.ndarray, size: int, rnd: Callable[[np.ndarray], np.ndarray] = np.asarray
                       ) -> np.ndarray:
    """``torch_cross_map_sums``' loop on given squares, in IEEE float64 (inf - inf = NaN), each
    addition rounded by ``rnd`` (a format's rounding: torch's in-place adds in the dtype)."""
    channels, pre_pad = square.shape[1], int((size - 1) / 2 + 1)
    sums = np.empty_like(square)
    with np.errstate(all="ignore"):
        sums[:, 0] = 0.0
        for c in range(min(pre_pad, channels)):
            sums[:, 0] = rnd(sums[:, 0] + square[:, c])
        for c in range(1, channels):
            sums[:, c] = sums[:, c - 1]
            if c < channels - pre_pad + 1:
                sums[:, c] = rnd(sums[:, c] + square[:, c + pre_pad - 1])
            if c > pre_pad:
                sums[:, c] = rnd(sums[:, c] - square[:, c - pre_pad])
    return sums


def _torch_pow(base: np.ndarray, exponent: float, rnd: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """torch.pow(tensor, scalar) as ATen evaluates it: exponents 2, 3, 0.5, -0.5, -1 and -2 as x·x,
    x·x·x, sqrt, 1/sqrt, 1/x and 1/(x·x), each operation rounded (so x·x may overflow where x^-2 is
    a subnormal: 0 then), any other as one correctly rounded pow."""
    with np.errstate(all="ignore"):
        special = {2.0: lambda b: rnd(b * b), 3.0: lambda b: rnd(rnd(b * b) * b), 0.5: lambda b: rnd(np.sqrt(b)),
                   -0.5: lambda b: rnd(1 / rnd(np.sqrt(b))), -1.0: lambda b: rnd(1 / b),
                   -2.0: lambda b: rnd(1 / rnd(b * b))}
        return special[exponent](base) if exponent in special else rnd(base ** exponent)


# bfloat16 elements of a contiguous tensor that ATen's cpu_kernel_vec runs through Vectorized<BFloat16>
# (2 vectors of 32 lanes per step with AVX-512), the rest by the scalar op
_BF16_VECTOR_STEP = 64


def _cross_map_pow(base: np.ndarray, exponent: float, dtype: str, rnd, rsqrt: str = "mixed") -> np.ndarray:
    """torch.pow(tensor, scalar) on the CPU: float16 takes one std::pow in float (ATen's PowKernel
    has a Half branch of its own, without the x·x / 1/(x·x) specialisations, so 1/scale² does not
    overflow in float16 where the exact power is in range). bfloat16's exponent -0.5 is rsqrt: its
    vector path takes 1/sqrt in float and rounds once, its scalar path (the elements past the last
    whole vector step) rounds sqrt to bfloat16 before dividing; ``rsqrt`` "vector", "scalar" or
    "mixed" (as on an AVX-512 CPU). The other dtypes and exponents as ``_torch_pow``."""
    with np.errstate(all="ignore"):
        if dtype == "float16":
            return rnd(np.asarray(base, dtype=np.float64) ** exponent)
        if dtype == "bfloat16" and exponent == -0.5 and rsqrt != "scalar":
            r32 = DTYPES["float32"].round
            vector = rnd(1 / r32(np.sqrt(np.asarray(base, dtype=np.float64))))
            if rsqrt == "vector":
                return vector
            scalar = _torch_pow(base, exponent, rnd)
            n = base.size // _BF16_VECTOR_STEP * _BF16_VECTOR_STEP
            return np.where((np.arange(base.size) < n).reshape(base.shape), vector, scalar)
    return _torch_pow(base, exponent, rnd)


def fma(a: np.ndarray, b: np.ndarray, c: np.ndarray, dtype: str) -> np.ndarray:
    """a·b + c rounded once to the compute type (float64 for float64, else float32; as float64)."""
    if dtype == "float64":
        ld = np.longdouble
        return (np.asarray(a, dtype=ld) * np.asarray(b, dtype=ld) + np.asarray(c, dtype=ld)).astype(np.float64)
    return DTYPES["float32"].round(np.asarray(a, dtype=np.float64) * b + c)


def torch_cross_map_lrn(case: Case, dtype: str, rsqrt: str = "mixed") -> dict[str, np.ndarray]:
    """What torch's CrossMapLRN2d (the autograd Function in torch/nn/modules/_functions.py) computes,
    replayed op by op with each result rounded as torch rounds it in ``dtype`` (float32 arithmetic,
    then the dtype: PyTorch's opmath for float16/bfloat16; float64 exactly): the running window sums
    (``_cross_map_sums_of``), scale = sums·(α/n) + k, y = scale^(-β)·x (torch's power:
    ``_cross_map_pow``, ``rsqrt`` its bfloat16 path), and the hand-written backward, grad =
    scale^(-β)·g + Σ over the shifted window of g·y/scale, times -2αβ/n·x, its first window ratio
    sum accumulated row by row and its addcmul_ one fused multiply-add in the compute type.
    {"output", "grad.input"} (the gradient when the case has a cotangent). Matches torch 2.13's CPU
    bit for bit in float16/bfloat16 over 3000 random cases; float32/float64 within a few ulps of pow."""
    p, x = case.params, np.asarray(case.inputs["input"], dtype=np.float64)
    size, alpha, beta, k = int(p["size"]), float(p["alpha"]), float(p["beta"]), float(p["k"])
    if dtype == "float64":
        def rnd(v):
            return np.asarray(v, dtype=np.float64)
        r32 = rnd
        scalar = float
    else:
        r32, rd = DTYPES["float32"].round, DTYPES[dtype].round

        def rnd(v):
            return rd(r32(np.asarray(v, dtype=np.float64)))

        def scalar(v):
            return float(r32(np.array(v)))
    with np.errstate(all="ignore"):
        x = rnd(x)
        scale = _cross_map_sums_of(rnd(x * x), size, rnd)
        scale = rnd(rnd(scale * scalar(alpha / size)) + scalar(k))
        power = _cross_map_pow(scale, -beta, dtype, rnd, rsqrt)
        out = {"output": rnd(power * x)}
        g = case.cotangents.get("output")
        channels, pre = x.shape[1], int(size - (size - 1) / 2)
        if g is None or pre > size - 1:  # size 1: torch's backward raises (its own entry)
            return out
        g = rnd(np.asarray(g, dtype=np.float64))
        y = out["output"]
        grad = rnd(power * g)
        cache = scalar(2 * alpha * beta / size)
        padded = np.zeros((x.shape[0], channels + size - 1) + x.shape[2:])
        padded[:, pre:pre + channels] = rnd(rnd(g * y) / scale)
        # torch.sum over the first size - 1 rows: accumulated row by row in the compute type
        # (float for float16/bfloat16), rounded to the dtype once
        accum = np.zeros((x.shape[0],) + x.shape[2:])
        for c in range(size - 1):
            accum = r32(accum + padded[:, c])
        accum = rnd(accum)
        for c in range(channels):
            accum = rnd(accum + padded[:, c + size - 1])
            # addcmul_(x, accum, value=-cache): fma(value·t1, t2, self) in the compute type (float for
            # float16/bfloat16, then rounded to the dtype); float32 products are exact in float64, a
            # float64 fma is approximated in long double
            grad[:, c] = rnd(fma(r32(-cache * x[:, c]), accum, grad[:, c], dtype))
            accum = rnd(accum - padded[:, c])
        out["grad.input"] = grad
    return out


def cross_map_running_sum_nonfinite(case: Case) -> bool:
    """torch's running window sum (``torch_cross_map_sums``) of the squares rounded to the dtype
    carries a NaN or an overflowed square forever: channel 0 is never removed, and inf - inf is NaN.
    True where such a sum is non-finite while the documented window's exact sum is finite, β > 0
    and the documented output is a non-zero number of the dtype: torch's output there is 0 or NaN."""
    x, size, beta = case.inputs["input"], int(case.params["size"]), float(case.params["beta"])
    if x.ndim != 4 or size < 1 or not x.size or beta <= 0:
        return False
    dtype = DTYPES[case.dtype]
    with np.errstate(all="ignore"):
        sums = dtype.round(_cross_map_sums_of(dtype.round(x * x), size))
        exact = RL.window_sum(x * x, size, size // 2, (size - 1) // 2)
        y = x / (case.params["alpha"] / size * exact + case.params["k"]) ** beta
    return bool(np.any(~np.isfinite(sums) & np.isfinite(exact) & (np.abs(dtype.round(y)) > 0) & np.isfinite(y)))


@valid_cases
def cross_map_beta_zero_zero_scale(case: Case) -> bool:
    """CrossMapLRN2d with β = 0 (y = x) and k = 0: torch's backward forms g·y/scale, 0/0 = NaN where
    a running window sum of x² (in the dtype, ``torch_cross_map_sums``' loop) is 0 or α/n times it
    underflows: grad.input gets NaN although the gradient is g."""
    x, size = case.inputs["input"], int(case.params["size"])
    if x.ndim != 4 or size < 1 or not x.size or case.params["beta"] != 0 or case.params["k"] != 0:
        return False
    dtype = DTYPES[case.dtype]
    with np.errstate(all="ignore"):
        sums = _cross_map_sums_of(dtype.round(x * x), size)
        scale = dtype.round(case.params["alpha"] / size * sums)
    return bool(np.any(scale == 0))


def group_norm_mean_dominated(case: Case) -> bool:
    """Some group's |mean| is at least 8·sqrt(var + eps): torch's CPU GroupNorm backward forms
    Σg·x - mean·Σg and c2·x + c3 (c3 = -c2·mean - ...), which cancel by |mean|/sqrt(var + eps)."""
    x = case.inputs["input"]
    if x.ndim < 2 or not x.size:
        return False
    view = RN.group_view(x.shape, case.params["num_groups"])
    mean, var = RN.moments(x.reshape(view), (2, 3))
    with np.errstate(all="ignore"):
        return bool(np.any(np.abs(mean) >= 8 * np.sqrt(var + float(case.params["eps"]))))
