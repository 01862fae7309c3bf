"""The normalisation layers in the derivative modes (jvp, vjp2, vmap; issue #24): their
second-order error terms (``LayerSpec.second_order_error``: ``affine_second_order_error``) and the
predicates and models of the known entries these modes found (``normalization_modes.toml``, and
the mode entries of ``normalization.toml``). A vmap entry's predicate holds when some slice of the
case (``VmapMode.slice_case``: the case, or a seeded permutation of its values) satisfies the plain
predicate: each slice is judged as a case of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from backends.aten_strides import dims_by_stride
from backends.base import Case, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.numerics.normalization import (
    Errors,
    _u,
    batched,
    rms_norm_rstd_cubed_underflow,
    trailing_eps,
)
from conformance.spec import spec_of
from conformance.strategies.normalization import uses_batch_stats
from reference import normalization as RN


def _some_slice(case: Case, predicate: Callable[[Case], bool]) -> bool:
    """``predicate`` of some slice of a vmap case (``VmapMode.slice_case``: a case of its own); of
    the case itself for any other mode."""
    node = case.mode_node
    if node.get("kind") != "vmap":
        return predicate(case)
    from conformance.modes import mode_of

    vmap = mode_of("vmap")
    return any(predicate(vmap.slice_case(case, b)) for b in range(int(node.get("batch", 1))))  # type: ignore[attr-defined]


def _with_cotangents(case: Case) -> bool:
    """A vmap case that runs torch.func.vjp inside (``inner = "vjp"``): its slices have gradients."""
    return case.mode_node.get("inner") == "vjp"


# -- GroupNorm ----------------------------------------------------------------------------------

def _group_rows(case: Case) -> np.ndarray | None:
    """The input of a valid, non-empty GroupNorm case as (N, G, C/G·spatial) rows (float64)."""
    if case.invalid or not case.inputs["input"].size:
        return None
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    groups = int(case.params["num_groups"])
    if x.ndim < 2 or groups < 1 or x.shape[1] % groups:
        return None
    return x.reshape(x.shape[0], groups, -1)


def _mode_direction(case: Case, name: str = "input") -> np.ndarray | None:
    """The jvp tangent / vjp2 direction of input ``name`` (None for any other mode, or an input
    without one)."""
    kind = case.mode_node.get("kind")
    if kind not in ("jvp", "vjp2"):
        return None
    from conformance.modes import mode_of

    mode = mode_of(kind)
    values = mode.tangents(case) if kind == "jvp" else mode.directions(case)  # type: ignore[attr-defined]
    return values.get(name)


def group_norm_float16_composite_out_of_range(case: Case) -> bool:
    """float16 GroupNorm where a value that torch's float16 composites form leaves float16's normal
    range [2^-14, 65504]: the forward-mode rule (batch_norm_jvp on the (1, N·G, -1) view) and the
    differentiable backward (``infinitely_differentiable_native_group_norm_backward``, which
    create_graph and torch.func transforms run: double backward, torch.func.vjp), both evaluated in
    float16 from the group statistics. ``_group_float16_out_of_range`` lists them. For a vmap case,
    some slice with gradients (torch.func.vjp inside vmap)."""
    if case.dtype != "float16":
        return False
    if case.mode_node.get("kind") == "vmap":
        return _with_cotangents(case) and _some_slice(case, lambda s: _group_float16_out_of_range(s, None))
    return _group_float16_out_of_range(case, _mode_direction(case))


def _group_float16_out_of_range(case: Case, t: np.ndarray | None) -> bool:
    """Whether, per (sample, group) of K = D·HxW values x (D channels of HxW values), mean μ and
    rstd = (var + eps)^-1/2 (exact), an intermediate of the float16 composites leaves [2^-14, 65504]
    (absolute sums bound the partial sums): rstd³ (overflowing for var + eps < 6.2e-4, a group of one
    element included; subnormal beyond a standard deviation of 25.4); the forward-mode rule's
    Σ|t·(x - μ)|, K·|t| and rstd³·Σ|t·(x - μ)| (t the mode's tangent / direction); the backward's
    ds = Σ_HxW g·x and db = Σ_HxW g per channel, their sums over the group's channels with the
    weight γ, b = (Σ db·γ·μ - Σ ds·γ)·rstd³/K and its products b·x and b·μ, and rstd·γ·g (g the
    cotangent); with both, b's derivative along t (through rstd³: 3·rstd²·rstd³·Σ|t·(x - μ)|/K
    relatively), times x, and b·t."""
    rows = _group_rows(case)
    if rows is None:
        return False
    n, groups, k = rows.shape
    x = rows
    channels = int(case.inputs["input"].shape[1])
    per = channels // groups
    dt = DTYPES["float16"]
    g = case.cotangents.get("output")
    with np.errstate(all="ignore"):
        mean = x.mean(axis=2, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=2, keepdims=True) + float(case.params.get("eps", 1e-5))
        rstd = var ** -0.5
        cube = var ** -1.5
        values = [cube]
        if t is not None:
            tt = np.abs(np.asarray(t, dtype=np.float64)).reshape(x.shape)
            moment = np.sum(tt * np.abs(x - mean), axis=2, keepdims=True)
            values += [moment, k * tt, cube * moment]
        if g is not None:
            weight = case.inputs.get("weight")
            gamma = (np.ones((1, groups, per, 1)) if weight is None
                     else np.abs(np.asarray(weight, dtype=np.float64)).reshape(1, groups, per, 1))
            gg = np.abs(np.asarray(g, dtype=np.float64)).reshape(n, groups, per, -1)
            xx = np.abs(x).reshape(n, groups, per, -1)
            ds = np.sum(gg * xx, axis=3, keepdims=True)
            db = np.sum(gg, axis=3, keepdims=True)
            big_ds = np.sum(ds * gamma, axis=2, keepdims=True)
            big_db = np.sum(db * gamma, axis=2, keepdims=True)
            mu = np.abs(mean).reshape(n, groups, 1, 1)
            b = (big_db * mu + big_ds) * cube.reshape(n, groups, 1, 1) / k
            values += [ds, db, big_ds, big_db * mu, b, b * xx, b * mu,
                       rstd.reshape(n, groups, 1, 1) * gamma * gg]
            if t is not None:  # b's own derivative along t (the second-order compositions)
                rate = (3 * rstd ** 2 * cube * moment / k).reshape(n, groups, 1, 1)
                tx = tt.reshape(n, groups, per, -1)
                values += [b * rate, b * rate * xx, b * tx]
        small = np.any(cube < dt.min_normal)
        large = any(np.any(v > dt.max_value) for v in values)
    return bool(small or large)


# -- LocalResponseNorm ---------------------------------------------------------------------------

def _iterator_output_strides(shape: tuple[int, ...], strides: tuple[int, ...]) -> list[int]:
    """The strides of the output TensorIterator allocates for an elementwise op (x·x) of one input
    that is not non-overlapping-and-dense: its dims ordered by the input's strides
    (``reorder_dimensions``: an insertion sort in which a stride-0 dim compares as ambiguous and
    equal strides put the smaller dim inside), the output dense in that order."""
    ndim = len(shape)
    perm = dims_by_stride(shape, strides)
    out, size = [0] * ndim, 1
    for d in perm:
        out[d], size = size, size * shape[d]
    return out


def _mergeable(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """Whether view can merge these dims into one (each non-size-1 dim nested in the one before)."""
    dims = [(n, st) for n, st in zip(shape, strides) if n != 1]
    return all(outer == inner * n for (_, outer), (n, inner) in zip(dims, dims[1:]))


def lrn_vmap_view_fails(case: Case) -> bool:
    """A LocalResponseNorm vmap case of 5 or more dims whose x², as torch.func.vmap computes it, cannot
    be viewed as (N, 1, C, D, -1) although the plain call's can (``lrn_view_fails`` is the plain
    call's own failure, borrowed by the slices): the batched input (the case's layout for its own
    dims, the batch dim stored outermost: ``torch_run.stacked_layout``) is moved to the front, and
    x² of a physical tensor that is not dense (an expanded layout) gets TensorIterator's order of its
    strides, in which the stride-0 dims keep no place: dims 3... of the slice may no longer nest.
    Exact over 600 random 5-d/6-d layouts (contiguous, permuted, strided, expanded; batch dim first
    and last; 52 raising) against torch 2.13."""
    from backends.torch_run import stacked_layout
    from conformance import strategies as S
    from conformance.numerics.normalization import lrn_view_fails

    node = case.mode_node
    x = case.inputs["input"]
    if node.get("kind") != "vmap" or case.invalid or x.ndim < 5 or not x.size or lrn_view_fails(case):
        return False
    at = int(node.get("in_dim", {}).get("input", 0))
    batch = int(node.get("batch", 1))
    shape = (*x.shape[:at], batch, *x.shape[at:])
    described = stacked_layout(case.layout("input").describe(), x.ndim, at)
    layout = type(case.layout("input"))(kind=described["kind"], perm=tuple(described.get("perm", ())),
                                         step=tuple(described.get("step", ())), dims=tuple(described.get("dims", ())))
    strides = S.torch_strides(shape, layout)
    order = [at, *(d for d in range(len(shape)) if d != at)]  # the batch dim moved to the front
    physical = tuple(int(shape[d]) for d in order)
    physical_strides = tuple(int(strides[d]) for d in order)
    out = physical_strides if S.is_non_overlapping_and_dense(physical, physical_strides) else tuple(
        _iterator_output_strides(physical, physical_strides))
    return not _mergeable(physical[4:], out[4:])


def _batched_strides(case: Case, name: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The shape and strides of the tensor torch.func.vmap sees for input ``name`` of a vmap case,
    the batch dim moved to the front (``torch_run.stacked_layout``: the case's layout for its own
    dims, the batch dim stored outermost)."""
    from backends.torch_run import stacked_layout
    from conformance import strategies as S

    node = case.mode_node
    x = case.inputs[name]
    if node.get("kind") != "vmap":
        return None
    at = int(node.get("in_dim", {}).get(name, 0))
    shape = (*x.shape[:at], int(node.get("batch", 1)), *x.shape[at:])
    described = stacked_layout(case.layout(name).describe(), x.ndim, at)
    layout = type(case.layout(name))(kind=described["kind"], perm=tuple(described.get("perm", ())),
                                     step=tuple(described.get("step", ())), dims=tuple(described.get("dims", ())))
    strides = S.torch_strides(shape, layout)
    order = [at, *(d for d in range(len(shape)) if d != at)]
    return tuple(int(shape[d]) for d in order), tuple(int(strides[d]) for d in order)


def group_norm_vmap_merged_batch_not_contiguous(case: Case) -> bool:
    """A GroupNorm vmap case whose batched input torch's batch rule hands to native_group_norm
    non-contiguous: group_norm calls input.contiguous(), which under vmap judges the batched
    tensor's logical view (the physical strides without the batch dim; not copied where torch
    calls them contiguous), and the batch rule then merges the batch dim into dim 0 (N) with
    reshape, a view wherever the two dims nest: a gap between the batch dim and the rest (a strided
    layout's step) survives, and native_group_norm's contiguity check raises."""
    from conformance import strategies as S

    x = case.inputs["input"]
    if case.invalid or x.ndim < 2 or not x.size:
        return False
    physical = _batched_strides(case, "input")
    if physical is None:
        return False
    shape, strides = physical
    if not S.is_torch_contiguous(shape[1:], strides[1:]):  # the batched tensor's own view: copied
        return False
    b, n = shape[0], shape[1]
    if b != 1 and n != 1 and strides[0] != strides[1] * n:
        return False  # reshape copies: contiguous
    merged_stride = strides[1] if n != 1 else strides[0]
    merged = (b * n, *shape[2:])
    return not S.is_torch_contiguous(merged, (merged_stride, *strides[2:]))


# -- second-order terms (the vjp2 mode: LayerSpec.second_order_error) ------------------------------

def _weight_sum(case: Case, statistics: str, arr: np.ndarray) -> np.ndarray:
    """Σ of ``arr`` (the input's shape) over the axes the weight is broadcast along: its shape."""
    x = case.inputs["input"]
    w = case.inputs["weight"]
    if statistics in ("layer", "rms"):
        return arr.reshape(x.shape).sum(axis=tuple(range(x.ndim - w.ndim)))
    if statistics == "instance" and x.ndim == spec_of(case).dims + 1:  # unbatched (C, *spatial)
        arr = arr.reshape(x.shape)[None]
    return arr.sum(axis=tuple(a for a in range(arr.ndim) if a != 1)).reshape(w.shape)


def _statistic_view(case: Case, statistics: str) -> tuple[np.ndarray, tuple[int, ...], np.ndarray] | None:
    """(x in the view whose statistics are over ``axes``, axes, the weight broadcast to that view) of
    a centred standardising layer normalising with its own statistics; None otherwise."""
    x, p = case.inputs["input"], case.params
    w = case.inputs.get("weight")
    if statistics in ("batch", "instance"):
        default = statistics == "batch"
        if not uses_batch_stats(bool(case.train), bool(p.get("track_running_stats", default))):
            return None
        if statistics == "instance":
            x = batched(case, spec_of(case).dims)
            axes: tuple[int, ...] = tuple(range(2, x.ndim))
        else:
            axes = RN.channel_axes(x.ndim)
        wv = np.ones(1) if w is None else RN.per_channel(w, x.ndim)
        return x, axes, wv
    if statistics == "group":
        view = RN.group_view(x.shape, p["num_groups"])
        wv = np.ones(1) if w is None else np.asarray(w, dtype=np.float64).reshape(1, view[1], -1, 1)
        return x.reshape(view), (2, 3), wv
    if statistics == "layer":
        axes = RN.trailing_axes(x, p["normalized_shape"])
        wv = np.ones(1) if w is None else np.asarray(w, dtype=np.float64).reshape((1,) * axes[0] + w.shape)
        return x, axes, wv
    return None


def _mean_rounding_second_order(case: Case, statistics: str, v: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """d2.input's error from the rounding of the mean (centred layers with their own statistics): the
    computed x - μ carries δ <= u·E_μ (E_μ = γ_K·mean|x| + |μ|, the analysis' own), and the second
    derivative of grad.input = (ĝ - mean ĝ - (x - μ)·k)/σ, k = Σĝ·(x - μ)/(σ²K), forms (x - μ)·∂_v k
    and (v - v̄)·k from it, ∂_v k = Σĝ·(v - v̄)/(σ²K): u·E_μ/(σ³K)·(|Σĝ·(v - v̄)| + |v - v̄|·Σ|ĝ|).
    Of the size of the curvature where σ is eps's (a constant slice: x̂ = 0, every difference 0)."""
    view = _statistic_view(case, statistics)
    if view is None:
        return None
    x, axes, w = view
    k = int(np.prod([x.shape[a] for a in axes]))
    if k < 1 or not x.size:
        return None
    eps = trailing_eps(case) if statistics == "layer" else float(case.params["eps"])
    gv = np.asarray(g, dtype=np.float64).reshape(x.shape) * w
    vv = np.asarray(v, dtype=np.float64).reshape(x.shape)
    mean, var = RN.moments(x, axes)
    sigma = np.sqrt(var + eps)
    err_mean = 2 * math.sqrt(k) * np.abs(x).mean(axis=axes, keepdims=True) + np.abs(mean)
    dv = vv - vv.mean(axis=axes, keepdims=True)
    terms = (np.abs(np.sum(gv * dv, axis=axes, keepdims=True))
             + np.abs(dv) * np.sum(np.abs(gv), axis=axes, keepdims=True))
    return (_u(case) * err_mean / (sigma ** 3 * k) * terms).reshape(case.inputs["input"].shape)


def affine_second_order_error(errors: Callable[[Case, Result], Errors], statistics: str):
    """``second_order_error`` of y = x̂·w + b (every standardising layer).

    - d2.weight = ∂/∂w ⟨Jᵀg, v⟩ = Σ_P v_x·G, G = ∂/∂w grad.input = the gradient of x̂ for cotangent g
      (grad.input with w = 1): a first-order gradient of x̂, which cancels like grad.input (to ε/σ² of
      its terms in a slice of two values, in every direction: the differences see neither the
      cancellation nor its rounding), and which the backend computes from the same rounded
      intermediates (double backward: its first_back_grad_input(gO, 1) paired with ggI). Its error is
      the declaration's own bound of G, u·E_G (``errors`` with the weight set to 1), paired with
      |v_x|, plus the sum over the P values: u·(1 + 2√P)·Σ_P |v_x|·E_G (E_G >= |G|). (grad.weight =
      Σ g·x̂ does not depend on w, and the mixed term of d2.input, v_w·G, is the derivative of
      grad.input's own bound along v.)
    - d2.input, centred layers: the mean's rounding carried by the second-order terms
      (``_mean_rounding_second_order``)."""

    def error(case: Case, v: Mapping[str, np.ndarray], g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cot = g.get("output")
        if cot is None or "input" not in v or not case.inputs["input"].size:
            return {}
        out: dict[str, np.ndarray] = {}
        x = case.inputs["input"]
        with np.errstate(all="ignore"):
            centred = _mean_rounding_second_order(case, statistics, v["input"], cot)
            if centred is not None:
                out["d2.input"] = np.where(np.isfinite(centred), centred, 0.0)
            w = case.inputs.get("weight")
            if w is not None and "weight" in v:
                ones = {**case.inputs, "weight": np.ones(np.shape(w))}
                unit = replace(case, inputs=ones, cotangents={"output": np.asarray(cot, dtype=np.float64)})
                first = Result(outputs={"output": np.zeros(np.shape(cot))}, grads={"input": np.zeros(x.shape)})
                e_g = np.abs(np.broadcast_to(errors(unit, first)["grad.input"], x.shape))
                terms = np.abs(np.asarray(v["input"], dtype=np.float64)) * e_g
                p = max(int(x.size // max(np.size(w), 1)), 1)
                bound = _u(case) * (1 + 2 * math.sqrt(p)) * _weight_sum(case, statistics, terms)
                out["d2.weight"] = np.where(np.isfinite(bound), bound, 0.0)
        return out

    return error


# -- derivative modes ---------------------------------------------------------------

def reverse_over_forward_own_statistics(case: Case) -> bool:
    """The vjp2 composition ``reverse-over-forward`` (``torch.func.grad`` of ``torch.func.jvp``) on a
    normalisation whose statistics come from the input itself: LayerNorm always, BatchNorm and
    InstanceNorm with batch (instance) statistics (training, or no running statistics tracked:
    BatchNorm tracks them by default, InstanceNorm does not). torch's forward-mode rules of
    native_batch_norm and native_layer_norm (InstanceNorm runs batch_norm on the (1, N·C, ...) view)
    are right to first order but wrong once differentiated again (pytorch#196699's class); with
    running statistics the map is affine and nothing is differentiated twice."""
    from conformance.modes import reverse_over_forward

    if case.invalid or not reverse_over_forward(case):
        return False
    kind = spec_of(case).kind
    if kind == "layer":
        return True
    default = kind == "batch"
    return uses_batch_stats(bool(case.train), bool(case.params.get("track_running_stats", default)))


def _layer_norm_row_variance(case: Case) -> np.ndarray | None:
    """var + eps of each LayerNorm row (exact, float64), or None for a case torch never computes
    (invalid, empty, a normalized_shape that does not end the input's shape)."""
    if case.invalid or not case.inputs["input"].size:
        return None
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    try:
        axes = RN.trailing_axes(x, case.params["normalized_shape"])
    except ValueError:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.mean(axis=axes, keepdims=True)
        return ((x - mean) ** 2).mean(axis=axes) + trailing_eps(case)


def layer_norm_rstd_cubed_underflow(case: Case) -> bool:
    """torch's forward-mode (JVP) rule of native_layer_norm forms the derivative of rstd as
    -rstd³·mean((x - mean)·t): rstd³ underflows the compute format (float64 for float64, float32
    otherwise) for a row of sqrt(var + eps) > min_normal^(-1/3) (2^340.7 in float64, 2^42 in
    float32), and the variance term of the JVP is lost (it is then rstd·(t - mean t), of the size
    of the whole JVP's terms). Its transpose (reverse-over-forward's grad.input) loses it too."""
    if case.dtype == "float16":
        return False
    var = _layer_norm_row_variance(case)
    compute = "float64" if case.dtype == "float64" else "float32"
    with np.errstate(over="ignore", invalid="ignore"):
        return var is not None and bool(np.any(np.sqrt(var) ** 3 > 1 / DTYPES[compute].min_normal))


def reverse_over_forward_rstd_cubed_underflow(case: Case) -> bool:
    """``layer_norm_rstd_cubed_underflow`` in the reverse-over-forward composition, whose
    first-order grad.input is the transpose of the JVP rule."""
    from conformance.modes import reverse_over_forward

    return reverse_over_forward(case) and layer_norm_rstd_cubed_underflow(case)


def instance_norm_rstd_cubed_underflow(case: Case, every: bool = False) -> bool:
    """``layer_norm_rstd_cubed_underflow`` for InstanceNorm with instance statistics (batch_norm's
    forward-mode rule on the (1, N·C, ...) view forms invstd³ alike): some (with ``every``: every)
    (sample, channel) instance of sqrt(var + eps) beyond min_normal^(-1/3) of float64 (float64 cases
    only)."""
    if case.invalid or case.dtype != "float64" or not case.inputs["input"].size:
        return False
    if not uses_batch_stats(bool(case.train), bool(case.params.get("track_running_stats", False))):
        return False
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    if x.ndim < 2:
        return False
    axes = tuple(range(2 if x.ndim == spec_of(case).dims + 2 else 1, x.ndim))  # unbatched: (C, *spatial)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.mean(axis=axes, keepdims=True)
        std = np.sqrt(((x - mean) ** 2).mean(axis=axes) + float(case.params.get("eps", 1e-5)))
        return bool((np.all if every else np.any)(std ** 3 > 1 / DTYPES["float64"].min_normal))


def reverse_over_forward_instance_rstd_cubed_underflow(case: Case) -> bool:
    """``instance_norm_rstd_cubed_underflow`` in the reverse-over-forward composition."""
    from conformance.modes import reverse_over_forward

    return reverse_over_forward(case) and instance_norm_rstd_cubed_underflow(case)


def reverse_over_reverse_instance_rstd_cubed_underflow(case: Case) -> bool:
    """``instance_norm_rstd_cubed_underflow`` in the reverse-over-reverse composition (double
    backward) of an affine case whose weight has a direction: batchnorm_double_backward forms
    invstd³ (``sigma2_eps_neg_3_2``), which underflows alike and drops the terms of d2.input it
    scales. The weight direction's term ggG·invstd·(gO - mean gO - (x - μ)·invstd²·mean(gO·(x - μ)))
    then keeps its first two parts, of the size of the terms; the input direction's terms all carry
    invstd³ and vanish with it (next to an exact value of order |g|·|v|/σ², far below the bound).
    Every instance: d2.input is judged at the scale of its largest second-order term, and one
    instance of ordinary magnitude puts that scale far above what the underflowing ones lose."""
    return (case.mode_node.get("composition") == "reverse-over-reverse" and bool(case.params.get("affine"))
            and "weight" in case.differentiable and instance_norm_rstd_cubed_underflow(case, every=True))


def _float16_batch_statistics(case: Case) -> np.ndarray | None:
    """var + eps of each channel (BatchNorm) or instance (InstanceNorm) of a float16 case that
    normalises with its own statistics (exact, float64); None for any other case."""
    if case.invalid or case.dtype != "float16" or not case.inputs["input"].size:
        return None
    spec = spec_of(case)
    if not uses_batch_stats(bool(case.train), bool(case.params.get("track_running_stats", spec.kind == "batch"))):
        return None
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    if spec.kind == "instance":
        axes = tuple(range(x.ndim - spec.dims, x.ndim))
    else:
        axes = tuple(d for d in range(x.ndim) if d != 1)
    if not axes:
        return None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mean = x.mean(axis=axes, keepdims=True)
        return ((x - mean) ** 2).mean(axis=axes) + float(case.params.get("eps", 1e-5))


def batch_instance_norm_float16_invstd_cubed_overflow(case: Case) -> bool:
    """float16 BatchNorm / InstanceNorm with batch (instance) statistics: batch_norm's
    double-backward formula and forward-mode rule, composites evaluated in float16, form invstd³,
    which overflows float16 (65504) for a channel (instance) of var + eps below 65504^(-2/3) ≈ 6.2e-4;
    inf·0 then gives NaN where the exact second derivative is finite."""
    var = _float16_batch_statistics(case)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return var is not None and bool(np.any(var ** -1.5 > DTYPES["float16"].max_value))


def _float16_channel_view(case: Case) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """The input of a float16 BatchNorm / InstanceNorm case normalising with its own statistics, and
    its statistic axes (None for any other case)."""
    if _float16_batch_statistics(case) is None:
        return None
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    spec = spec_of(case)
    if spec.kind == "instance":
        return x, tuple(range(x.ndim - spec.dims, x.ndim))
    return x, tuple(d for d in range(x.ndim) if d != 1)


def batch_instance_norm_float16_composite_out_of_range(case: Case) -> bool:
    """float16 BatchNorm / InstanceNorm with batch (instance) statistics where a value that batch_norm's
    forward-mode rule (``batch_norm_jvp``) or double-backward formula (``batchnorm_double_backward``),
    composites evaluated in float16, form from the saved statistics leaves float16's normal range
    [2^-14, 65504] (``_float16_statistics_out_of_range``, the mode's own tangent t / direction v and
    cotangent g). Beyond the range the composite's terms are lost or become inf/NaN where the exact
    result is representable."""
    view = _float16_channel_view(case)
    if view is None:
        return False
    x, axes = view
    return _float16_statistics_out_of_range(x, axes, float(case.params.get("eps", 1e-5)), _mode_direction(case),
                                            case.cotangents.get("output"))


def _float16_statistics_out_of_range(x: np.ndarray, axes: tuple[int, ...], eps: float, t: np.ndarray | None,
                                     g: np.ndarray | None, weight: np.ndarray | None = None,
                                     weight_direction: np.ndarray | None = None, layer: bool = False) -> bool:
    """Whether, over the statistic axes ``axes`` of x (K values, mean μ, var + eps exact), a value
    that the float16 composites of the standardising layers form leaves float16's normal range
    [2^-14, 65504] (their absolute sums bound the partial sums): invstd³ (subnormal: fewer than 11
    bits; or overflowing), invstd³·Σ|t·(x - μ)|, Σ|t·(x - μ)|, Σ|g·(x - μ)|, K·|t| and K·|g| (``M * gO``
    of first_back_grad_input), and invstd³·|t - mean t|, which torch.func.jvp forms elementwise before
    the factor x - μ (measured: a constant channel of var + eps = 1e-3 gives NaN for |t - mean t| =
    5.3, not for 0.1 or at 2e-3, where forward_ad's dual tensors give the right value), and
    invstd⁴·var_t, var_t = (2/K)·Σ|(x - μ)·(t - mean t)|, the tangent of invstd·invstd that
    forward-over-reverse's jvp decomposition of the backward (torch/_decomp/decompositions_for_jvp.py:
    native_{batch,layer}_norm_backward, recomputing the statistics in float16) forms.

    ``layer`` adds layer_norm's own products, with ĝ = g·|γ| (``grad_x_hat``; ``weight``) and t_γ the
    weight's tangent / direction (``weight_direction``): of layer_norm_double_backward, |x - μ|·invstd³
    (``input_mu_sigma2_neg_3_2``), invstd³·Σ|ĝ·(x - μ)|, 3/K·invstd²·Σ|ĝ·(x - μ)|·Σ|t·(x - μ)| and
    invstd³·Σ|g·t_γ·(x - μ)| (the ggG terms); of the jvp decomposition of native_layer_norm_backward,
    whose x̂ has the tangent x̂_t = (t - mean t)·invstd + ..., c2_t = invstd·Σ|ĝ·(t - mean t)| and its
    products with |x̂| (c3 = x̂·c2; at a constant row 0·inf = NaN), |x̂_t|·c2 and, for g·t_γ, the
    tangent of ĝ, K·|g·t_γ| (``a = grad_x_hat * N``) and Σ|g·t_γ|."""
    k = int(np.prod([x.shape[a] for a in axes]))
    dt = DTYPES["float16"]
    with np.errstate(all="ignore"):
        mean = x.mean(axis=axes, keepdims=True)
        dev = np.abs(x - mean)
        var = (dev ** 2).mean(axis=axes, keepdims=True) + eps
        rstd, cube = var ** -0.5, var ** -1.5
        values = [cube]
        tt = spread = None
        if t is not None:
            tt = np.asarray(t, dtype=np.float64).reshape(x.shape)
            spread = np.abs(tt - tt.mean(axis=axes, keepdims=True))
            moment_t = np.sum(np.abs(tt) * dev, axis=axes, keepdims=True)
            # invstd³·sum(...), torch.func.jvp's invstd³·(t - mean t) (inf·0 = NaN at x = mean), and the jvp
            # decomposition's tangent of invstd·invstd: invstd⁴·var_t
            values += [moment_t, k * np.abs(tt), cube * moment_t, cube * spread,
                       var ** -2 * (2 / k) * np.sum(spread * dev, axis=axes, keepdims=True)]
        if g is not None:
            gg = np.abs(np.asarray(g, dtype=np.float64).reshape(x.shape))
            values += [np.sum(gg * dev, axis=axes, keepdims=True), k * gg]
        if layer:
            values.append(dev * cube)
            if g is not None:
                ghat = gg if weight is None else gg * np.abs(np.asarray(weight, dtype=np.float64))
                moment_g = np.sum(ghat * dev, axis=axes, keepdims=True)
                values += [moment_g, k * ghat, cube * moment_g]
                if t is not None:
                    c2_t = rstd * np.sum(ghat * spread, axis=axes, keepdims=True)
                    values += [3 / k / var * moment_g * moment_t, c2_t, dev * rstd * c2_t,
                               spread * rstd * rstd * moment_g]
                if weight_direction is not None:
                    gt = gg * np.abs(np.asarray(weight_direction, dtype=np.float64))
                    moment_w = np.sum(gt * dev, axis=axes, keepdims=True)
                    values += [k * gt, np.sum(gt, axis=axes, keepdims=True), moment_w, cube * moment_w]
        small = np.any(cube < dt.min_normal)
        large = any(np.any(v > dt.max_value) for v in values)
    return bool(small or large)


def layer_norm_float16_composite_out_of_range(case: Case) -> bool:
    """float16 LayerNorm where a value that layer_norm's float16 composites form leaves float16's
    normal range (``_float16_statistics_out_of_range`` over each row, with layer_norm's own
    products): the forward-mode rule (``layer_norm_jvp``: jvp, and reverse-over-forward, whose
    gradient is its transpose), the double-backward formula (``layer_norm_double_backward``) and
    forward-over-reverse's jvp decomposition of ``native_layer_norm_backward``, all evaluated in
    float16 from the saved float16 statistics (the first-order CPU kernels accumulate in float32)."""
    if case.dtype != "float16" or _layer_norm_row_variance(case) is None:
        return False
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    axes = RN.trailing_axes(x, case.params["normalized_shape"])
    return _float16_statistics_out_of_range(x, axes, trailing_eps(case), _mode_direction(case),
                                            case.cotangents.get("output"), case.inputs.get("weight"),
                                            _mode_direction(case, "weight"), layer=True)


def group_norm_forward_ad_view_raises(case: Case) -> bool:
    """torch's forward-mode GroupNorm (jvp, and the vjp2 compositions that use forward AD:
    forward-over-reverse, reverse-over-forward) raises "view size is not compatible" on an input
    that torch sees as channels-last (4-d) / channels-last-3d (5-d) and not contiguous, unless it
    has one sample and one channel per group. Derived from 296 of 296 random shapes (N, C, spatial
    in 1..3, C/G in 1, 2)."""
    from conformance.modes import reverse_over_forward

    if case.invalid:
        return False
    if case.mode == "vjp2" and not (reverse_over_forward(case) or
                                    case.mode_node.get("composition") == "forward-over-reverse"):
        return False
    x = case.inputs["input"]
    if x.ndim not in (4, 5) or not x.size:
        return False
    shape = tuple(int(n) for n in x.shape)
    strides = tuple(int(s) for s in S.torch_strides(x.shape, case.layout("input")))
    if not S.is_channels_last_contiguous(shape, strides) or S.is_torch_contiguous(shape, strides):
        return False
    return shape[0] > 1 or shape[1] // int(case.params["num_groups"]) > 1


def group_norm_rstd_cubed_underflow(case: Case) -> bool:
    """``layer_norm_rstd_cubed_underflow`` for GroupNorm (its forward-mode rule runs batch_norm's on
    the (1, N·G, -1) view): some (sample, group) of sqrt(var + eps) beyond min_normal^(-1/3) of
    float64 (float64 cases only)."""
    if case.invalid or case.dtype != "float64" or not case.inputs["input"].size:
        return False
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    groups = int(case.params["num_groups"])
    if x.ndim < 2 or groups < 1 or x.shape[1] % groups:
        return False
    rows = x.reshape(x.shape[0], groups, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = rows.mean(axis=2, keepdims=True)
        std = np.sqrt(((rows - mean) ** 2).mean(axis=2) + float(case.params.get("eps", 1e-5)))
        return bool(np.any(std ** 3 > 1 / DTYPES["float64"].min_normal))


def reverse_over_forward_group_rstd_cubed_underflow(case: Case) -> bool:
    """``group_norm_rstd_cubed_underflow`` in the reverse-over-forward composition."""
    from conformance.modes import reverse_over_forward

    return reverse_over_forward(case) and group_norm_rstd_cubed_underflow(case)


def reverse_over_forward_rms_rstd_cubed_underflow(case: Case) -> bool:
    """``rms_norm_rstd_cubed_underflow`` in the reverse-over-forward composition, whose first-order
    grad.input is the transpose of rms_norm's forward-mode rule (which forms rstd³ too)."""
    from conformance.modes import reverse_over_forward

    return reverse_over_forward(case) and rms_norm_rstd_cubed_underflow(case)


# -- vmap: a plain trigger in some slice of a vmap case (``_some_slice``) ----------------

def vmap_slice_group_norm_rstd_cubed_underflow(case: Case) -> bool:
    """``group_norm_rstd_cubed_underflow`` in some slice of a vmap case."""
    return _some_slice(case, group_norm_rstd_cubed_underflow)


def vmap_slice_group_norm_mean_dominated(case: Case) -> bool:
    """``group_norm_mean_dominated`` in some slice of a vmap case with gradients (torch.func.vjp inside
    vmap: the differentiable backward composite)."""
    from conformance.numerics.normalization import group_norm_mean_dominated

    return _with_cotangents(case) and _some_slice(case, group_norm_mean_dominated)


def differentiable_backward_mean_dominated(case: Case) -> bool:
    """``group_norm_mean_dominated`` where torch runs GroupNorm's differentiable backward composite:
    a vjp2 case, or some slice of a vmap case with gradients (``vmap_slice_group_norm_mean_dominated``)."""
    from conformance.numerics.normalization import group_norm_mean_dominated

    if case.mode == "vmap":
        return vmap_slice_group_norm_mean_dominated(case)
    return group_norm_mean_dominated(case)
