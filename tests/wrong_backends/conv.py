"""Deliberately wrong convolution adapters: each must be caught by the conformance run.

- ``CircularPaddingWrongDims``: circular padding amounts applied to the wrong spatial dims.
- ``GroupMixup``: grouped convolution applying each group's filters to the neighbouring group.
- ``DilationIgnoredInBackward``: correct forward, input gradient computed as if dilation were 1.
- ``TransposedIgnoresOutputPadding``: transposed convolution dropping output_padding (and the
  output_padding selected by output_size) whenever a dilation exceeds 1.

Every other layer is built as torch builds it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend
from conformance.spec import spec_of

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _is_conv(spec: Any) -> bool:
    return spec.family == "convolution" and spec.kind == "direct"


def _is_conv_transpose(spec: Any) -> bool:
    return spec.family == "convolution" and spec.kind == "transposed"


class _WrongConvBackend(TorchBackend):
    name = "wrong-conv"


# -- (a) circular padding on the wrong dims -----------------------------------------------------------

class CircularPaddingWrongDims(_WrongConvBackend):
    """Reverses the per-dim order of the circular padding amounts (H's padding goes to W...)."""

    name = "wrong-circular-dims"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        module = super().build_module(case, cls, kwargs)
        if _is_conv(spec) and case.params.get("padding_mode") == "circular":
            pads = list(module._reversed_padding_repeated_twice)
            pairs = [pads[i:i + 2] for i in range(0, len(pads), 2)]
            module._reversed_padding_repeated_twice = [p for pair in reversed(pairs) for p in pair]
        return module


# -- (b) groups mixed up ------------------------------------------------------------------------------

def _group_mixing_forward(self, input):
    w = self.weight
    if self.groups > 1:
        w = w.reshape((self.groups, -1) + tuple(w.shape[1:])).roll(1, dims=0).reshape(w.shape)
    return self._conv_forward(input, w, self.bias)


class GroupMixup(_WrongConvBackend):
    """Group g's output channels use the filters of group g-1 (identical when groups == 1)."""

    name = "wrong-group-mixup"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        if not _is_conv(spec):
            return super().build_module(case, cls, kwargs)
        wrong = type(f"GroupMixing{cls.__name__}", (cls,), {"forward": _group_mixing_forward})
        return wrong(**kwargs)


# -- (c) dilation ignored in backward -------------------------------------------------------------------

def _fit(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Crop or zero-pad the trailing dims of ``t`` to ``shape``."""
    out = t.new_zeros(shape)
    index = tuple(slice(0, min(a, b)) for a, b in zip(t.shape, shape))
    out[index] = t[index]
    return out


class _IgnoreDilationInBackward(torch.autograd.Function):
    """Convolution (no padding) whose backward scatters the input gradient with undilated taps."""

    @staticmethod
    def forward(ctx, x, w, b, stride, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, dilation, groups, b is not None)
        return _CONV[w.dim() - 2](x, w, b, stride, 0, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        stride, dilation, groups, has_bias = ctx.conf
        nd = w.dim() - 2
        with torch.enable_grad():
            xx, ww = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
            gx, gw = torch.autograd.grad(_CONV[nd](xx, ww, None, stride, 0, dilation, groups), (xx, ww), g)
        if any(d > 1 for d in dilation):
            gx = _fit(_CONV_T[nd](g, w, None, stride, 0, 0, groups, 1), x.shape)  # the bug: dilation 1
        spatial = tuple(range(g.dim() - nd, g.dim()))
        batch = (0,) if g.dim() == nd + 2 else ()
        gb = g.sum(dim=batch + spatial) if has_bias else None
        return gx, gw, gb, None, None, None


def _dilation_ignoring_conv_forward(self, input, weight, bias):
    mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
    padded = F.pad(input, self._reversed_padding_repeated_twice, mode=mode)
    return _IgnoreDilationInBackward.apply(padded, weight, bias, self.stride, self.dilation, self.groups)


class DilationIgnoredInBackward(_WrongConvBackend):
    """Forward is right; the input gradient is computed as if the dilation were 1."""

    name = "wrong-dilation-backward"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        if not _is_conv(spec):
            return super().build_module(case, cls, kwargs)
        wrong = type(f"DilationIgnoring{cls.__name__}", (cls,), {"_conv_forward": _dilation_ignoring_conv_forward})
        return wrong(**kwargs)


# -- (d) transposed convolution drops output_padding when dilated ---------------------------------------

def _output_padding_dropping_forward(self, input, output_size=None):
    nd = len(self.kernel_size)
    op = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, nd, self.dilation)
    if any(d > 1 for d in self.dilation):
        op = (0,) * nd  # the bug
    return _CONV_T[nd](input, self.weight, self.bias, self.stride, self.padding, op, self.groups, self.dilation)


class TransposedIgnoresOutputPadding(_WrongConvBackend):
    """ConvTranspose*d that ignores output_padding (explicit or from output_size) when dilation > 1."""

    name = "wrong-transposed-output-padding"

    def build_module(self, case, cls, kwargs):
        spec = spec_of(case)
        if not _is_conv_transpose(spec):
            return super().build_module(case, cls, kwargs)
        wrong = type(f"OutputPaddingDropping{cls.__name__}", (cls,), {"forward": _output_padding_dropping_forward})
        return wrong(**kwargs)
