"""Predicates of the known torch.compile discrepancies of the normalisation layers
(conformance/known/torch_compile*.toml): where inductor's Welford mean of BatchNorm and InstanceNorm
turns a slice holding an infinity into NaN, and where LocalResponseNorm's composite leaves the range."""

from __future__ import annotations

import numpy as np

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph
from conformance.numerics.normalization import lrn_chain_out_of_range
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
