"""Predicates of the known torch.compile discrepancies of the normalisation layers
(conformance/known/torch_compile*.toml): where inductor's Welford mean of BatchNorm and InstanceNorm
turns a slice holding an infinity into NaN, and where LocalResponseNorm's composite leaves the range."""

from __future__ import annotations

import itertools

import numpy as np

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph
from conformance.dtypes import DTYPES
from conformance.numerics.normalization import lrn_chain_out_of_range, lrn_replay, lrn_view_fails
from conformance.spec import LayerSpec
from reference import normalization as RN

# config.cpp.use_two_step_variance_threshold of torch 2.13: inductor (CPU) computes var_mean in two passes
# (a sum, then the squared deviations) when the reduction's length is static and at most this, and there is more
# than one statistic; otherwise it runs a Welford reduction.
TWO_STEP_VARIANCE_THRESHOLD = 1024


def _statistic_slices(case: Case, spec: LayerSpec) -> np.ndarray | None:
    """The input as (rows, statistics, reduced values) in float64 (rows: N for InstanceNorm, whose running
    statistics are the mean over N of per-sample updates; 1 for BatchNorm); None when the case updates no
    running statistics."""
    p = case.params
    if not (case.train and p.get("track_running_stats")) or "running_mean" not in case.inputs:
        return None
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    dims = spec.dims or 1
    if spec.kind == "instance":
        if x.ndim == dims + 1:  # unbatched (C, *spatial)
            x = x[None]
        n, c = x.shape[:2]
        return x.reshape(n, c, -1)
    if x.ndim < 2:
        return None
    c = x.shape[1]
    return np.moveaxis(x, 1, 0).reshape(1, c, -1)


def inductor_welford_mean_inf_to_nan(case: Case, spec: LayerSpec) -> bool:
    """BatchNorm or InstanceNorm updating its running statistics where inductor's Welford reduction computes the
    batch mean (a dynamic-shape graph, whose reduction length is symbolic; or a static one with a single statistic
    (BatchNorm: C = 1; InstanceNorm: N·C = 1) or more than 1024 values per statistic), some slice of the input holds
    an infinity, and the running mean eager torch updates from it is ±inf: Welford's delta x - mean is inf - inf
    once the mean is infinite, so inductor's running mean is NaN there."""
    x = _statistic_slices(case, spec)
    if x is None:
        return False
    rows, stats, length = x.shape
    if not runs_dynamic_graph(case) and rows * stats != 1 and length <= TWO_STEP_VARIANCE_THRESHOLD:
        return False  # the two-pass var_mean: sum / n keeps the infinity
    p = case.params
    momentum = RN.momentum_factor(p.get("momentum"), int(np.asarray(case.inputs.get("num_batches_tracked", 0))) + 1) \
        if spec.kind == "batch" else (p.get("momentum") or 0.0)
    with np.errstate(all="ignore"):
        mean = x.mean(axis=-1)  # (rows, stats): ±inf for a slice whose infinities share a sign, NaN otherwise
        running = np.asarray(case.inputs["running_mean"], dtype=np.float64).reshape(1, -1)
        updated = RN.running_update(running, mean, momentum).mean(axis=0)  # what eager stores, per channel
    has_inf = np.isinf(x).any(axis=-1).any(axis=0)
    return bool(np.any(has_inf & np.isinf(updated)))


def compiled_lrn_intermediate_out_of_range(case: Case) -> bool:
    """``lrn_intermediate_out_of_range`` of ``conformance.numerics.normalization`` for compiled torch, on inputs of any
    rank: inductor generates the bfloat16 average pool of 4 or more dims that eager CPU lacks. For bfloat16 only:
    inductor computes in float32 inside its kernels, which has bfloat16's range (not float16's)."""
    return not case.invalid and lrn_chain_out_of_range(case)


def _inductor_lrn_half(case: Case, square_stored: bool, divisor_stored: bool, saved: str, cotangent_stored: bool
                       ) -> dict[str, np.ndarray]:
    """F.local_response_norm as inductor computes it on a float16 input (``lrn_replay``): each kernel in float32, a
    buffer it materialises in float16. ``square_stored``: the window sums read x² from a float16 buffer (the
    zero-padded squares, for size > 1); ``divisor_stored``: the output reads d = α·avg + k back from a float16 buffer
    (a channels-last input on a dynamic graph splits the loop there); ``saved``: what the forward saves for the
    backward in float16, the window average ("avg", d recomputed in float32) or d itself ("d");
    ``cotangent_stored``: the average's cotangent is a float16 buffer that avg_pool's backward reads. Output and
    grad.input are rounded to float16 once."""
    f32, f16 = DTYPES["float32"].round, DTYPES["float16"].round

    def constant(value: float) -> float:  # a scalar as the generated kernel holds it
        return float(np.float32(value))

    alpha, k = constant(case.params["alpha"]), constant(case.params["k"])

    def saved_divisor(average: np.ndarray, d: np.ndarray) -> np.ndarray:
        return f32(f32(f16(average) * alpha) + k) if saved == "avg" else f16(d)

    return lrn_replay(case, f32, square=f16 if square_stored else None, divisor=f16 if divisor_stored else None,
                      saved=saved_divisor, cotangent=f16 if cotangent_stored else None, result=f16,
                      scalar=constant)


_LRN_HALF_LAYOUTS = list(itertools.product((False, True), (False, True), ("avg", "d"), (False, True)))


def _inductor_lrn_half_layouts(case: Case) -> list[tuple[bool, bool, str, bool]]:
    """The buffer layouts of ``_inductor_lrn_half`` that inductor can pick for ``case``: the padded squares and
    the average's cotangent are float16 buffers only in a training graph (a gradient is taken) with size > 1 (an
    inference graph computes x² inline: measured on the entry's size-2 repro); d is read back (forward) or saved
    only on a dynamic graph, where α and k are graph inputs."""
    training = "input" in case.differentiable and case.cotangents.get("output") is not None
    dynamic = runs_dynamic_graph(case)
    stored = training and int(case.params["size"]) > 1
    return [(square, divisor, saved, cotangent) for square, divisor, saved, cotangent in _LRN_HALF_LAYOUTS
            if (stored or not (square or cotangent)) and (dynamic or (not divisor and saved == "avg"))]


def inductor_lrn_half_shows(case: Case) -> bool:
    """A valid float16 LocalResponseNorm case where some float16 buffer layout of inductor's
    (``_inductor_lrn_half``, among those ``_inductor_lrn_half_layouts`` allows) fails against the reference: an
    intermediate it stores in float16 (x², the window average, d, the average's cotangent) overflows or turns
    subnormal, which the float32 computation around it does not undo. Which buffers inductor materialises depends
    on its fusion, on the min-cut partitioner's cost model (whether pow is recomputed in the backward: it saves d on
    a dynamic graph with β = 0.75, the average otherwise) and, on a dynamic graph reused for other sizes, on which
    elements its vectorised body or its scalar tail computes (they round different intermediates), so every
    allowed layout is tried."""
    from conformance.numerics.elementwise import any_shows_against_reference

    x = case.inputs["input"]
    if case.invalid or case.dtype != "float16" or not x.size or lrn_view_fails(case):
        return False
    return any_shows_against_reference(case, (_inductor_lrn_half(case, *layout)
                                              for layout in _inductor_lrn_half_layouts(case)))
