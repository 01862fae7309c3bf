"""Deliberately wrong pooling adapters: each reproduces one classic pooling bug on top of torch.

- ``AvgCeilFullDivisor``: average pooling that divides a window clipped by ceil_mode (one running
  past input + padding) by the full kernel size instead of the positions it covers.
- ``MaxPoolKeepsPaddingWindow``: max pooling whose ceil_mode output size omits torch's drop rule,
  so it keeps a last window that starts in the right padding.
- ``AdaptiveFloorEnd``: adaptive pooling whose windows end at floor((i+1)·in/out) instead of ceil.
- ``LPPool3dAbsPower``: LPPool3d summing |x|^p instead of x^p.
- ``FractionalSamplesReversed``: FractionalMaxPool3d reading its (depth, height, width) samples
  in reverse, as the 2-d layer orders them (width first).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend
from conformance.spec import spec_of


def per_dim(value, nd: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),) * nd


class _AvgFullDivisor(torch.nn.Module):
    def __init__(self, nd: int, params: dict):
        super().__init__()
        self.nd = nd
        self.kernel = per_dim(params["kernel_size"], nd)
        self.stride = per_dim(params.get("stride") or params["kernel_size"], nd)
        self.padding = per_dim(params.get("padding", 0), nd)
        self.ceil_mode = bool(params.get("ceil_mode", False))
        self.count_include_pad = bool(params.get("count_include_pad", True))

    def forward(self, x):
        spatial = x.shape[-self.nd:]
        if self.nd == 1:  # avg_pool1d has no divisor_override: go through 2d
            sums = F.avg_pool2d(x.unsqueeze(-2), (1, *self.kernel), (1, *self.stride), (0, *self.padding),
                                self.ceil_mode, True, 1).squeeze(-2)
        else:
            pool = F.avg_pool2d if self.nd == 2 else F.avg_pool3d
            sums = pool(x, self.kernel, self.stride, self.padding, self.ceil_mode, True, 1)
        divisor = np.ones(())
        for size, k, s, p, out in zip(spatial, self.kernel, self.stride, self.padding, sums.shape[-self.nd:]):
            start = np.arange(out) * s - p
            end = start + k
            if self.count_include_pad:
                count = np.minimum(end, size + p) - start
            else:
                count = np.minimum(end, size) - np.maximum(start, 0)
            count = np.where(end > size + p, k, count)  # the bug: a ceil-clipped window counts k
            divisor = np.multiply.outer(divisor, count.astype(np.float64))
        return sums / torch.as_tensor(divisor, dtype=sums.dtype)


class AvgCeilFullDivisor(TorchBackend):
    """AvgPool that divides ceil-clipped windows by the full kernel size."""

    name = "wrong-avg-ceil-divisor"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        if spec.kind == "avg" and case.params.get("divisor_override") is None:
            return _AvgFullDivisor(spec.dims, case.params)
        return super().build_module(case, cls, kwargs)


class MaxPoolGeometry(torch.nn.Module):
    """A max-pool replacement holding its geometry per dim, and the correct module to fall back on."""

    def __init__(self, nd: int, params: dict, correct: torch.nn.Module):
        super().__init__()
        self.nd = nd
        self.correct = correct
        self.kernel = per_dim(params["kernel_size"], nd)
        self.stride = per_dim(params.get("stride") or params["kernel_size"], nd)
        self.padding = per_dim(params.get("padding", 0), nd)
        self.dilation = per_dim(params.get("dilation", 1), nd)
        self.ceil_mode = bool(params.get("ceil_mode", False))
        self.return_indices = bool(params.get("return_indices", False))


class _MaxPoolNoDrop(MaxPoolGeometry):
    def forward(self, x):
        spatial = x.shape[-self.nd:]
        pads, differs = [], False
        for size, k, s, p, d in zip(spatial, self.kernel, self.stride, self.padding, self.dilation):
            e = d * (k - 1) + 1
            span = size + 2 * p - e + (s - 1 if self.ceil_mode else 0)
            out = span // s + 1  # the bug: no "last window must start inside" rule
            kept = out - 1 if self.ceil_mode and (out - 1) * s >= size + p else out
            differs |= kept != out
            pads.append((p, max(p, (out - 1) * s + e - size - p)))
        if not differs:
            return self.correct(x)
        flat_pad = [v for pair in reversed(pads) for v in pair]
        padded = F.pad(x, flat_pad, value=float("-inf"))
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[self.nd]
        return pool(padded, self.kernel, self.stride, 0, self.dilation, False, self.return_indices)


class MaxPoolKeepsPaddingWindow(TorchBackend):
    """MaxPool whose ceil_mode keeps a last window starting in the right padding."""

    name = "wrong-maxpool-no-drop"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        module = super().build_module(case, cls, kwargs)
        if spec.kind == "max":
            return _MaxPoolNoDrop(spec.dims, case.params, module)
        return module


def _floor_windows(size: int, out: int) -> list[tuple[int, int]]:
    return [((i * size) // out, ((i + 1) * size) // out) for i in range(out)]


class _AdaptiveFloor(torch.nn.Module):
    def __init__(self, nd: int, params: dict, maximum: bool):
        super().__init__()
        self.nd = nd
        self.output_size = params["output_size"]
        self.maximum = maximum
        self.return_indices = bool(params.get("return_indices", False))

    def forward(self, x):
        spatial = x.shape[-self.nd:]
        size = self.output_size if isinstance(self.output_size, (list, tuple)) else (self.output_size,) * self.nd
        outs = [int(s) if o is None else int(o) for o, s in zip(size, spatial)]
        windows = [_floor_windows(int(s), o) for s, o in zip(spatial, outs)]
        lead = x.shape[:-self.nd]
        values, indices = [], []
        for cell in itertools.product(*windows):
            region = x[(..., *[slice(a, b) for a, b in cell])]
            if region.numel() == 0:
                values.append(torch.full(lead, float("-inf") if self.maximum else float("nan"), dtype=x.dtype))
                indices.append(torch.zeros(lead, dtype=torch.long))
                continue
            flat = region.reshape(*lead, -1)
            if not self.maximum:
                values.append(flat.mean(-1))
                continue
            best, pos = flat.max(-1)
            values.append(best)
            width = cell[-1][1] - cell[-1][0]
            rows = pos // width if self.nd == 2 else torch.zeros_like(pos)
            cols = pos % width
            start = [a for a, _ in cell]
            if self.nd == 2:
                indices.append((start[0] + rows) * spatial[-1] + start[1] + cols)
            else:
                indices.append(start[0] + cols)
        out = torch.stack(values, -1).reshape(*lead, *outs)
        if self.maximum and self.return_indices:
            return out, torch.stack(indices, -1).reshape(*lead, *outs)
        return out


class AdaptiveFloorEnd(TorchBackend):
    """Adaptive pooling with window ends floor((i+1)·in/out) instead of ceil."""

    name = "wrong-adaptive-floor-end"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        if spec.kind in ("adaptive-max", "adaptive-avg"):
            return _AdaptiveFloor(spec.dims, case.params, spec.kind == "adaptive-max")
        return super().build_module(case, cls, kwargs)


class _AbsPowerLPPool3d(torch.nn.LPPool3d):
    def forward(self, x):
        p = float(self.norm_type)
        if not math.isfinite(p):
            return super().forward(x)
        kernel = per_dim(self.kernel_size, 3)
        out = F.avg_pool3d(x.abs().pow(p), kernel, self.stride, 0, self.ceil_mode)  # the bug: |x|^p
        return (torch.sign(out) * F.relu(torch.abs(out))).mul(math.prod(kernel)).pow(1.0 / p)


class LPPool3dAbsPower(TorchBackend):
    """LPPool3d summing |x|^p (torch takes no absolute value: a negative x with non-integer p, or
    a negative sum of odd powers, gives NaN)."""

    name = "wrong-lppool3d-abs"

    def build_module(self, case, cls, kwargs):
        return _AbsPowerLPPool3d(**kwargs) if case.op == "LPPool3d" else super().build_module(case, cls, kwargs)


class FractionalSamplesReversed(TorchBackend):
    """FractionalMaxPool3d reading its samples in 2-d order (width first): the depth's u drives
    the width and the width's the depth."""

    name = "wrong-fractional3d-sample-order"

    def call_target(self, case, fn, args, kwargs):
        # (the samples are the module's buffer, installed from the case: read them reversed)
        samples = getattr(fn, "_random_samples", None)
        if case.op == "FractionalMaxPool3d" and samples is not None:
            fn._random_samples = samples.flip(-1)
        return super().call_target(case, fn, args, kwargs)
