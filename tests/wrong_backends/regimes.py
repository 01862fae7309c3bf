"""Deliberately wrong adapters whose bug is confined to ONE declared regime of one layer: every
case outside that regime is computed by torch itself, so only a run that puts cases in the
regime can catch them. ``tests/test_wrong_regimes.py`` runs each at the plain ci profile.

- ``MaxPoolCeilZeroPad`` (MaxPool2d, "ceil overhang clipped"): ceil_mode implemented by padding
  the input on the right with F.pad's default value 0 (instead of -inf) and pooling in floor mode.
- ``LPPoolNegInfAsMax`` (LPPool1d, "p = -inf"): any infinite norm_type taken as the max of |x|.
- ``UnpoolSumsDuplicates`` (MaxUnpool2d, "duplicate indices"): scatter_add instead of a scatter,
  so the values sent to one position are summed.
- ``ConvReflectAsSymmetric`` (Conv2d, "reflect padding"): 'reflect' implemented as the symmetric
  (edge-repeating) mirror.
- ``ConvSameLeftHeavy`` (Conv1d, "'same' padding split unevenly"): the odd element of a 'same'
  padding goes on the left.
- ``TransposedBiasOnlyWhereWritten`` (ConvTranspose2d, "output positions no input reaches"): the
  bias added only where some input element was scattered, so the gaps hold 0.
- ``LinearOneDimKeepsBatch`` (Linear, "1-d input"): a 1-d input gets a batch dim that is never
  removed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend
from conformance.spec import spec_of
from tests.wrong_backends.pooling import MaxPoolGeometry

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


# -- MaxPool2d: ceil_mode by zero padding ------------------------------------------------------------

class _CeilByZeroPadding(MaxPoolGeometry):
    def forward(self, x: torch.Tensor) -> Any:
        spatial = x.shape[-self.nd:]
        extra = []
        for size, k, s, p, d in zip(spatial, self.kernel, self.stride, self.padding, self.dilation):
            e = d * (k - 1) + 1
            out = -(-(size + 2 * p - e) // s) + 1
            if (out - 1) * s >= size + p:
                out -= 1
            extra.append(max(0, (out - 1) * s + e - size - 2 * p))
        if not self.ceil_mode or not any(extra):
            return self.correct(x)
        padded = F.pad(x, [v for n in reversed(extra) for v in (0, n)])  # the bug: zeros, not -inf
        result = _MAX_POOL[self.nd](padded, self.kernel, self.stride, self.padding, self.dilation, False,
                                    self.return_indices)
        if not self.return_indices:
            return result
        y, idx = result
        coords, rest = [], idx
        for n in reversed(padded.shape[-self.nd:]):  # plane index of the padded input -> of the input
            coords.append(rest % n)
            rest = torch.div(rest, n, rounding_mode="floor")
        flat = torch.zeros_like(idx)
        for c, n in zip(reversed(coords), spatial):
            flat = flat * n + c
        return y, flat


class MaxPoolCeilZeroPad(TorchBackend):
    """MaxPool whose ceil_mode pads the overhang with zeros (F.pad's default) and pools in floor mode."""

    name = "wrong-maxpool-ceil-zero-pad"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        module = super().build_module(case, cls, kwargs)
        return _CeilByZeroPadding(spec.dims, case.params, module) if spec.kind == "max" else module


# -- LPPool: -inf taken as +inf ----------------------------------------------------------------------

class LPPoolNegInfAsMax(TorchBackend):
    """LPPool whose infinite norm_type is always the max of |x| (p = -inf should be the min)."""

    name = "wrong-lppool-neg-inf"

    def build_module(self, case, cls, kwargs):
        if spec_of(case).kind == "lp" and math.isinf(float(kwargs["norm_type"])):
            kwargs = {**kwargs, "norm_type": float("inf")}  # the bug
        return super().build_module(case, cls, kwargs)


# -- MaxUnpool: duplicates summed --------------------------------------------------------------------

class _UnpoolScatterAdd(torch.nn.Module):
    def __init__(self, correct: torch.nn.Module):
        super().__init__()
        self.correct = correct

    def forward(self, x: torch.Tensor, indices: torch.Tensor, output_size: Any = None) -> torch.Tensor:
        shape = self.correct(x, indices, output_size).shape
        lead = x.shape[:-len(self.correct.kernel_size)]
        plane = math.prod(shape[len(lead):])
        out = x.new_zeros((*lead, plane))
        out = out.scatter_add(-1, indices.reshape(*lead, -1), x.reshape(*lead, -1))  # the bug: add
        return out.reshape(shape)


class UnpoolSumsDuplicates(TorchBackend):
    """MaxUnpool that adds the values sent to one position instead of writing one of them."""

    name = "wrong-unpool-sums-duplicates"

    def build_module(self, case, cls, kwargs):
        module = super().build_module(case, cls, kwargs)
        return _UnpoolScatterAdd(module) if spec_of(case).kind == "unpool" else module


# -- Conv: reflect as symmetric, 'same' left-heavy -----------------------------------------------------

def _symmetric_pad(x: torch.Tensor, pads: list[int]) -> torch.Tensor:
    """Mirror padding that repeats the edge element (F.pad order: last dim first)."""
    for i in range(len(pads) // 2):
        dim, (left, right) = x.dim() - 1 - i, pads[2 * i:2 * i + 2]
        parts = [x.narrow(dim, 0, left).flip(dim)] if left else []
        parts.append(x)
        if right:
            parts.append(x.narrow(dim, x.shape[dim] - right, right).flip(dim))
        x = torch.cat(parts, dim)
    return x


def _symmetric_conv_forward(self, input, weight, bias):
    if self.padding_mode != "reflect":
        return type(self).__mro__[1]._conv_forward(self, input, weight, bias)
    padded = _symmetric_pad(input, list(self._reversed_padding_repeated_twice))  # the bug
    return _CONV[len(self.kernel_size)](padded, weight, bias, self.stride, 0, self.dilation, self.groups)


class ConvReflectAsSymmetric(TorchBackend):
    """Convolution whose 'reflect' padding repeats the edge element (numpy's 'symmetric')."""

    name = "wrong-conv-reflect-symmetric"

    def build_module(self, case, cls, kwargs):
        if spec_of(case).kind != "direct":
            return super().build_module(case, cls, kwargs)
        return type(f"Symmetric{cls.__name__}", (cls,), {"_conv_forward": _symmetric_conv_forward})(**kwargs)


def _left_heavy_conv_forward(self, input, weight, bias):
    if self.padding != "same":
        return type(self).__mro__[1]._conv_forward(self, input, weight, bias)
    pads = []
    for k, d in zip(reversed(self.kernel_size), reversed(self.dilation)):
        total = d * (k - 1)
        pads += [total - total // 2, total // 2]  # the bug: torch puts the odd element on the right
    mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
    padded = F.pad(input, pads, mode=mode)
    return _CONV[len(self.kernel_size)](padded, weight, bias, self.stride, 0, self.dilation, self.groups)


class ConvSameLeftHeavy(TorchBackend):
    """Convolution whose padding='same' puts the odd padding element on the left."""

    name = "wrong-conv-same-left-heavy"

    def build_module(self, case, cls, kwargs):
        if spec_of(case).kind != "direct":
            return super().build_module(case, cls, kwargs)
        return type(f"LeftHeavy{cls.__name__}", (cls,), {"_conv_forward": _left_heavy_conv_forward})(**kwargs)


# -- ConvTranspose: bias only where an input element was written ---------------------------------------

def _bias_where_written_forward(self, input, output_size=None):
    nd = len(self.kernel_size)
    op = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, nd, self.dilation)
    args = (self.stride, self.padding, op, self.groups, self.dilation)
    y = _CONV_T[nd](input, self.weight, None, *args)
    if self.bias is None:
        return y
    written = _CONV_T[nd](torch.ones_like(input), torch.ones_like(self.weight), None, *args) != 0
    shape = (-1,) + (1,) * nd
    return y + self.bias.reshape(shape) * written  # the bug: output positions no input reaches get 0


class TransposedBiasOnlyWhereWritten(TorchBackend):
    """Transposed convolution that adds the bias only where some input element was scattered (gaps
    between strided or dilated taps, and the output padding, must hold the bias)."""

    name = "wrong-transposed-bias-gaps"

    def build_module(self, case, cls, kwargs):
        if spec_of(case).kind != "transposed":
            return super().build_module(case, cls, kwargs)
        return type(f"Gapped{cls.__name__}", (cls,), {"forward": _bias_where_written_forward})(**kwargs)


# -- Linear: a 1-d input keeps a batch dim -------------------------------------------------------------

class LinearOneDimKeepsBatch(TorchBackend):
    """Linear that turns a 1-d input into a batch of one and returns (1, out_features)."""

    name = "wrong-linear-1d"

    def call_target(self, case, fn, args, kwargs):
        if spec_of(case).name == "Linear" and args and args[0].dim() == 1:
            return fn(args[0].unsqueeze(0), *args[1:], **kwargs)  # the bug: never squeezed back
        return super().call_target(case, fn, args, kwargs)
