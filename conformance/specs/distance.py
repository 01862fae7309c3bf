"""Distances: PairwiseDistance and CosineSimilarity."""

import math

import numpy as np

from conformance.families.distance import cosine_similarity, pairwise_distance
from conformance.numerics import distance as N
from conformance.spec import Regime, declare

declare(pairwise_distance(regimes=(
    Regime("x1 == x2 (eps only)", lambda c: bool(np.all(c.inputs["x1"] - c.inputs["x2"] == 0)),
           pins={"values": "equal", "tier": "float"},
           description="d = eps everywhere: the distance is eps·D^(1/p), not 0"),
    Regime("p = inf", lambda c: N.p_of(c) == math.inf, pins={"p": math.inf},
           description="max |d|; ties share the gradient"),
    Regime("p = -inf", lambda c: N.p_of(c) == -math.inf, pins={"p": -math.inf}, description="min |d|"),
    Regime("p = 0", lambda c: N.p_of(c) == 0, pins={"p": 0.0}, description="count of non-zero entries, zero gradient"),
    Regime("fractional p", lambda c: math.isfinite(N.p_of(c)) and N.p_of(c) != round(N.p_of(c)),
           pins={"p": 1.5, "tier": "float"}, description="p = 1.5: |d|^(p-1) is not smooth at 0"),
    Regime("0 < p < 1", lambda c: 0 < N.p_of(c) < 1, pins={"p": 0.5, "tier": "float"},
           description="a quasi-norm: the sensitivity (|d|/N)^(p-1) exceeds 1"),
    Regime("negative p", lambda c: N.p_of(c) < 0, pins={"p": -1.0, "tier": "float"},
           description="(Σ|d|^p)^(1/p) with p < 0: a zero entry makes the distance 0"),
    Regime("large p", lambda c: N.p_of(c) >= 50, pins={"p": 100.0, "tier": "float"},
           description="|d|^p leaves the float range (torch discrepancy pairwise-distance-unscaled-powers)"),
    Regime("broadcast ranks", lambda c: c.inputs["x1"].ndim != c.inputs["x2"].ndim,
           pins={"broadcast": "ranks differ"}, description="x1 and x2 of different ranks"),
    Regime("kink entries", lambda c: bool(np.any(N.difference_of(c) == 0)),
           pins={"values": "kink entries", "eps": 0.0},
           description="entries with x1 - x2 + eps = 0: the kink of |d| (gradient convention applies)"),
    Regime("keepdim", lambda c: bool(c.params["keepdim"]), pins={"keepdim": True},
           description="the reduced last axis kept with size 1"),
    Regime("1-d inputs", lambda c: c.inputs["x1"].ndim == 1 and c.inputs["x2"].ndim == 1,
           pins={"broadcast": "same shape", "batch rank": 0}, description="(D) and (D): a 0-d output"),
), notes=("Follows torch's implementation: ‖x1 - x2 + eps‖_p over the last axis of the broadcast shape (eps is "
          "added to every entry of the difference: asymmetric, and d(x, x) = eps·D^(1/p)). p = 0 counts non-zero "
          "entries, ±inf takes max/min |d|, negative p is (Σ|d|^p)^(1/p). Gradient convention (torch's "
          "norm_backward): sign(d)·g·(|d|/N)^(p-1), 0 where d = 0 (the kink) or N = 0; p = ±inf shares g equally "
          "among tied extreme entries; p = 0 has zero gradient. torch discrepancy: the powers Σ|d|^p, N^(p-1), "
          "|d|^(p-2) are not scaled, so large p or tiny distances (d = eps) with p ∉ {1, 2} overflow/underflow "
          "(float32 opmath forward; the backward in the case dtype, float16's range for float16) and give inf, 0 "
          "or NaN (see unscaled_powers_leave_range).")))

declare(cosine_similarity(regimes=(
    Regime("zero vectors", N.has_zero_vector, {"values": "zero vectors"},
           "whole vectors of zeros: similarity 0, gradient g·a_other/eps"),
    Regime("norms below eps", lambda c: N.cosine_clamped_norm(c) or N.has_zero_vector(c),
           {"values": "tiny vectors", "eps": 1e-6, "x1.kind": "normal"},
           "norms clamped to eps, or underflowing to 0 (torch discrepancy cosine-similarity-clamped-norm-gradient)"),
    Regime("parallel vectors", lambda c: c.note == "parallel", {"values": "parallel", "eps": 1e-8},
           "x1 = ±2·x2: similarity ±1"),
    Regime("large eps", lambda c: c.params["eps"] == 0.5, {"eps": 0.5}, "eps = 0.5 clamps short vectors"),
    Regime("broadcast ranks", lambda c: c.inputs["x1"].ndim != c.inputs["x2"].ndim,
           {"broadcast": "ranks differ", "rank": 3, "dim": 2}, "inputs of different ranks"),
    Regime("negative dim", lambda c: c.params["dim"] < 0, {"negative dim": True}, "dim counted from the end"),
    Regime("1-d inputs", lambda c: c.inputs["x1"].ndim == 1, {"rank": 1, "dim": 0}, "(D) and (D): a 0-d output"),
), notes=("Σ (x1/max(‖x1‖₂, eps))·(x2/max(‖x2‖₂, eps)) over dim of the broadcast shape, dim removed: torch's "
          "implementation and F.cosine_similarity's documentation (each norm clamped separately). "
          "nn.CosineSimilarity's docstring still shows the older convention x1·x2/max(‖x1‖₂·‖x2‖₂, eps), which "
          "torch 2.13 no longer computes. A zero vector gives 0; eps = 0 and a zero vector give NaN. Gradient: "
          "the derivative of that forward (where a norm is clamped the clamp is a constant; torch discrepancies "
          "cosine-similarity-clamped-norm-gradient and cosine-similarity-zero-vector-float16).")))
