"""Tolerance glue of the linear family: the reduction length K of every compared tensor (sums of
products, bounded by the same computation on absolute values)."""

from __future__ import annotations

import math

import numpy as np

from backends.base import Case


def batch_size(case: Case, name: str = "input") -> int:
    """prod(leading dims) of a (*, features) input; 1 for a 1-d input."""
    return math.prod(case.inputs[name].shape[:-1])


def linear_reduction(case: Case, tensor: str) -> int:
    """in_features (+1 for the bias) for the output, out_features for grad.input, the batch size
    for grad.weight and grad.bias."""
    if tensor == "output":
        return case.params["in_features"] + int(case.params["bias"])
    if tensor == "grad.input":
        return case.params["out_features"]
    return batch_size(case)


def bilinear_reduction(case: Case, tensor: str) -> int:
    """in1·in2 (+1) for the output, out·in2 for grad.input1, out·in1 for grad.input2, the batch
    size for grad.weight and grad.bias."""
    p = case.params
    return {"output": p["in1_features"] * p["in2_features"] + int(p["bias"]),
            "grad.input1": p["out_features"] * p["in2_features"],
            "grad.input2": p["out_features"] * p["in1_features"]}.get(tensor, batch_size(case, "input1"))


def has_special_values(case: Case) -> bool:
    """Some input value is ±0, ±inf or NaN."""
    x = case.inputs["input"]
    return bool(np.any((x == 0) | ~np.isfinite(x)))
