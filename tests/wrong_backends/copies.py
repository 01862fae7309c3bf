"""Deliberately wrong adapters for the copies family: each reproduces one realistic implementer's
mistake on top of torch.

- ``ReflectionIncludesEdge``: ReflectionPad1d mirroring about the edge's outer side, so the edge
  element repeats (numpy's "symmetric" mode instead of "reflect").
- ``CircularWrapsWrongSide``: CircularPad1d filling the left pad with the input's first elements
  and the right pad with its last (the wrap taken from the near end).
- ``ConstantPadDropsNegativeZero``: ConstantPad1d filling with value + 0.0, which turns -0.0 into
  +0.0 (a fill through an addition).
- ``ZeroPadFirstDimFirst``: ZeroPad2d reading the padding tuple first dim first (top, bottom,
  left, right) instead of last dim first.
- ``ChannelShuffleInverse``: ChannelShuffle viewing the channels as (C/g, g) before transposing,
  the inverse permutation.
- ``FlattenEndExclusive``: Flatten treating end_dim as exclusive, like a Python slice's stop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tests.wrong_backends.generic import ReplacesModule


def _flat(padding, dims: int) -> tuple[int, ...]:
    return tuple(padding) if isinstance(padding, (tuple, list)) else (int(padding),) * (2 * dims)


def _gather_pad(x: torch.Tensor, flat: tuple[int, ...], source) -> torch.Tensor:
    """Pad by gathering: padded dim d (last first in ``flat``) reads input index source(L, left,
    right) at each of its positions (index_select, so autograd scatters the gradient back)."""
    for i in range(len(flat) // 2):
        dim = x.dim() - 1 - i
        index = source(x.shape[dim], flat[2 * i], flat[2 * i + 1])
        x = x.index_select(dim, torch.as_tensor(index, dtype=torch.long, device=x.device))
    return x


def _symmetric(length: int, left: int, right: int) -> np.ndarray:
    t = np.arange(-left, length + right)
    return np.where(t < 0, -t - 1, np.where(t >= length, 2 * length - 1 - t, t))  # the bug: -t - 1, not -t


class _SymmetricReflection(torch.nn.ReflectionPad1d):
    def forward(self, x):
        return _gather_pad(x, _flat(self.padding, 1), _symmetric)


class ReflectionIncludesEdge(ReplacesModule):
    name = "wrong-reflection-includes-edge"
    op, module = "ReflectionPad1d", _SymmetricReflection


def _wrong_side(length: int, left: int, right: int) -> np.ndarray:
    t = np.arange(-left, length + right)
    return np.where(t < 0, t + left, np.where(t >= length, t - right, t))  # the bug: the near end's elements


class _WrongSideCircular(torch.nn.CircularPad1d):
    def forward(self, x):
        if min(self.padding) < 0:  # crops as torch does; the wrap is what goes wrong
            return super().forward(x)
        return _gather_pad(x, _flat(self.padding, 1), _wrong_side)


class CircularWrapsWrongSide(ReplacesModule):
    name = "wrong-circular-wraps-wrong-side"
    op, module = "CircularPad1d", _WrongSideCircular


class _PositiveZeroFill(torch.nn.ConstantPad1d):
    def forward(self, x):
        return F.pad(x, self.padding, "constant", self.value + 0.0)  # the bug: -0.0 + 0.0 is +0.0


class ConstantPadDropsNegativeZero(ReplacesModule):
    name = "wrong-constant-pad-drops-negative-zero"
    op, module = "ConstantPad1d", _PositiveZeroFill


class _FirstDimFirst(torch.nn.ZeroPad2d):
    def forward(self, x):
        left, right, top, bottom = _flat(self.padding, 2)
        return F.pad(x, (top, bottom, left, right))  # the bug: the pairs in the module's reading order


class ZeroPadFirstDimFirst(ReplacesModule):
    name = "wrong-zero-pad-first-dim-first"
    op, module = "ZeroPad2d", _FirstDimFirst


class _InverseShuffle(torch.nn.ChannelShuffle):
    def forward(self, x):
        n, c, *rest = x.shape
        return x.reshape(n, c // self.groups, self.groups, *rest).transpose(1, 2).reshape(x.shape)  # (C/g, g)


class ChannelShuffleInverse(ReplacesModule):
    name = "wrong-channel-shuffle-inverse"
    op, module = "ChannelShuffle", _InverseShuffle


class _EndExclusive(torch.nn.Flatten):
    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim - 1)  # the bug: end_dim as a slice's stop


class FlattenEndExclusive(ReplacesModule):
    name = "wrong-flatten-end-exclusive"
    op, module = "Flatten", _EndExclusive
