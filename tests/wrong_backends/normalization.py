"""Deliberately wrong adapters for the normalisation layers: the torch adapter with one module
replaced by an implementation carrying one mistake a kernel writer makes.

- ``GroupNormAffinePerGroup``: GroupNorm's weight and bias indexed by group (weight[c // (C/G)])
  instead of by channel.
- ``LayerNormUnbiasedVariance``: LayerNorm normalising with the unbiased variance (K - 1).
- ``InstanceNormBatchStatistics``: InstanceNorm1d normalising with each channel's statistics over
  the whole batch (BatchNorm's), not each sample's.
- ``RMSNormEpsOutsideSqrt``: RMSNorm dividing by √mean(x²) + eps instead of √(mean(x²) + eps).
- ``LocalResponseWindowFlipped``: LocalResponseNorm whose window for even sizes reaches one channel
  further forward than back ([c - (n - 1)/2, c + n/2], the mirror image of torch's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.wrong_backends.generic import ReplacesModule


def _per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class _GroupAffine(torch.nn.GroupNorm):
    def forward(self, x):
        y = F.group_norm(x, self.num_groups, None, None, self.eps)
        if not self.affine:
            return y
        group_of = torch.arange(x.shape[1], device=x.device) // (x.shape[1] // self.num_groups)
        y = y * _per_channel(self.weight[group_of], x.dim())  # wrong: the group's first weight for all its channels
        return y if self.bias is None else y + _per_channel(self.bias[group_of], x.dim())


class GroupNormAffinePerGroup(ReplacesModule):
    name = "wrong-groupnorm-affine-per-group"
    op, module = "GroupNorm", _GroupAffine


class _UnbiasedLayerNorm(torch.nn.LayerNorm):
    def forward(self, x):
        dims = tuple(range(-len(self.normalized_shape), 0))
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, keepdim=True, correction=1)  # wrong: LayerNorm's variance is the biased one
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        return y if self.bias is None else y + self.bias


class LayerNormUnbiasedVariance(ReplacesModule):
    name = "wrong-layernorm-unbiased-variance"
    op, module = "LayerNorm", _UnbiasedLayerNorm


class _InstanceWithBatchStats(torch.nn.InstanceNorm1d):
    def forward(self, x):
        unbatched = x.dim() == 2
        x = x.unsqueeze(0) if unbatched else x
        # wrong: the statistics of each channel over the batch and the length, as BatchNorm takes them
        y = F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        return y.squeeze(0) if unbatched else y


class InstanceNormBatchStatistics(ReplacesModule):
    name = "wrong-instancenorm-batch-statistics"
    op, module = "InstanceNorm1d", _InstanceWithBatchStats


class _EpsOutside(torch.nn.RMSNorm):
    def forward(self, x):
        dims = tuple(range(-len(self.normalized_shape), 0))
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        y = x / (torch.sqrt((x * x).mean(dims, keepdim=True)) + eps)  # wrong: eps belongs under the root
        return y if self.weight is None else y * self.weight


class RMSNormEpsOutsideSqrt(ReplacesModule):
    name = "wrong-rmsnorm-eps-outside-sqrt"
    op, module = "RMSNorm", _EpsOutside


class _FlippedWindow(torch.nn.LocalResponseNorm):
    def forward(self, x):
        n = self.size
        before, after = (n - 1) // 2, n // 2  # wrong: torch pads n // 2 before and (n - 1) // 2 after
        square = (x * x).unsqueeze(1)
        if x.dim() == 3:
            average = F.avg_pool2d(F.pad(square, (0, 0, before, after)), (n, 1), stride=1).squeeze(1)
        else:
            s = x.shape
            square = square.reshape(s[0], 1, s[1], s[2], -1)
            average = F.avg_pool3d(F.pad(square, (0, 0, 0, 0, before, after)), (n, 1, 1), stride=1)
            average = average.squeeze(1).reshape(s)
        return x / average.mul(self.alpha).add(self.k).pow(self.beta)


class LocalResponseWindowFlipped(ReplacesModule):
    name = "wrong-lrn-window-flipped"
    op, module = "LocalResponseNorm", _FlippedWindow
