"""Deliberately wrong adapters for the vision, distance and batch-norm declarations: each one
reproduces one realistic implementer's mistake on top of torch.

- ``PixelShuffleTransposedBlocks``: each r×r block written transposed (channel offset j·r + i).
- ``PixelUnshuffleChannelMajor``: unshuffle stacking channels as (i·r + j)·C + c, not c·r² + i·r + j.
- ``BilinearBackwardDropsBorder``: the backward's scatter loop stops one short (an off-by-one), so
  the last output row and column never reach the input's border.
- ``BilinearAlignCornersFalse``: UpsamplingBilinear2d built as nn.Upsample's default
  (align_corners=False).
- ``NearestRecomputesScale``: nearest upsampling that derives s = in/out even when a scale factor
  is given (recompute_scale_factor=True): differs from torch for fractional factors.
- ``PairwiseDistanceIgnoresKeepdim``: keepdim never honoured.
- ``PairwiseDistanceEpsAfterNorm``: ‖x1 - x2‖_p + eps, the textbook reading of "eps avoids a zero
  distance", instead of ‖x1 - x2 + eps‖_p.
- ``BatchNorm3dEvalBatchStats``: BatchNorm3d that normalises with batch statistics in eval mode.
- ``BatchNormBiasedRunningVar``: running_var updated with the biased batch variance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend
from tests.wrong_backends.generic import ReplacesModule


def _swap_block_axes(y: torch.Tensor, r: int) -> torch.Tensor:
    """Transpose every r×r block of the last two dims."""
    *lead, h, w = y.shape
    blocks = y.reshape(*lead, h // r, r, w // r, r)
    return blocks.transpose(-3, -1).reshape(*lead, h, w)


class _TransposedShuffle(torch.nn.PixelShuffle):
    def forward(self, x):
        return _swap_block_axes(super().forward(x), self.upscale_factor)


class PixelShuffleTransposedBlocks(ReplacesModule):
    name = "wrong-pixel-shuffle-transposed-blocks"
    op, module = "PixelShuffle", _TransposedShuffle


class _ChannelMajorUnshuffle(torch.nn.PixelUnshuffle):
    def forward(self, x):
        r = self.downscale_factor
        *lead, c, h, w = x.shape
        y = x.reshape(*lead, c, h // r, r, w // r, r)
        n = len(lead)
        y = y.permute(*range(n), n + 2, n + 4, n, n + 1, n + 3)  # (*, r_i, r_j, C, H, W): offset-major
        return y.reshape(*lead, c * r * r, h // r, w // r)


class PixelUnshuffleChannelMajor(ReplacesModule):
    name = "wrong-pixel-unshuffle-channel-major"
    op, module = "PixelUnshuffle", _ChannelMajorUnshuffle


class _BorderDroppingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size):
        ctx.in_shape = x.shape
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        g[..., -1, :] = 0  # the scatter loop runs over out - 1 rows and columns
        g[..., :, -1] = 0
        with torch.enable_grad():
            x = torch.zeros(ctx.in_shape, dtype=g.dtype, device=g.device, requires_grad=True)
            y = F.interpolate(x, size=tuple(g.shape[-2:]), mode="bilinear", align_corners=True)
            (grad,) = torch.autograd.grad(y, x, g)
        return grad, None


class _BorderDroppingBilinear(torch.nn.UpsamplingBilinear2d):
    def forward(self, x):
        size = tuple(F.interpolate(x.detach(), self.size, self.scale_factor, mode="nearest").shape[-2:])
        return _BorderDroppingBackward.apply(x, size)


class BilinearBackwardDropsBorder(ReplacesModule):
    name = "wrong-bilinear-backward-border"
    op, module = "UpsamplingBilinear2d", _BorderDroppingBilinear


class _AlignCornersFalse(torch.nn.UpsamplingBilinear2d):
    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, mode="bilinear", align_corners=False)


class BilinearAlignCornersFalse(ReplacesModule):
    name = "wrong-bilinear-align-corners-false"
    op, module = "UpsamplingBilinear2d", _AlignCornersFalse


class _RecomputedScale(torch.nn.UpsamplingNearest2d):
    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, mode="nearest",
                             recompute_scale_factor=True if self.scale_factor is not None else None)


class NearestRecomputesScale(ReplacesModule):
    name = "wrong-nearest-recomputed-scale"
    op, module = "UpsamplingNearest2d", _RecomputedScale


class _NoKeepdim(torch.nn.PairwiseDistance):
    def forward(self, x1, x2):
        return F.pairwise_distance(x1, x2, self.norm, self.eps, keepdim=False)


class PairwiseDistanceIgnoresKeepdim(ReplacesModule):
    name = "wrong-pairwise-distance-keepdim"
    op, module = "PairwiseDistance", _NoKeepdim


class _EpsAfterNorm(torch.nn.PairwiseDistance):
    def forward(self, x1, x2):
        return F.pairwise_distance(x1, x2, self.norm, 0.0, self.keepdim) + self.eps


class PairwiseDistanceEpsAfterNorm(ReplacesModule):
    name = "wrong-pairwise-distance-eps-after-norm"
    op, module = "PairwiseDistance", _EpsAfterNorm


class _EvalBatchStats(torch.nn.BatchNorm3d):
    def forward(self, x):
        if self.training:
            return super().forward(x)
        axes = (0, 2, 3, 4)
        mean = x.mean(axes, keepdim=True)
        var = ((x - mean) ** 2).mean(axes, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1, 1) + self.bias.view(1, -1, 1, 1, 1) if self.affine else y


class BatchNorm3dEvalBatchStats(ReplacesModule):
    name = "wrong-batchnorm3d-eval-batch-stats"
    op, module = "BatchNorm3d", _EvalBatchStats


def _biased_running_var(cls: type) -> type:
    """A subclass of the BatchNorm class whose training step rewrites running_var as if the update
    had used the biased batch variance v instead of the unbiased v·K/(K - 1)."""

    def forward(self, x):
        if not (self.training and self.track_running_stats):
            return cls.forward(self, x)
        old = self.running_var.detach().clone()
        y = cls.forward(self, x)
        k = x.numel() // x.shape[1]
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        with torch.no_grad():  # a new tensor: the old one is saved for the backward
            self.running_var = (self.running_var - (1 - m) * old) * (k - 1) / k + (1 - m) * old
        return y

    return type(f"BiasedVar{cls.__name__}", (cls,), {"forward": forward})


class BatchNormBiasedRunningVar(TorchBackend):
    name = "wrong-batchnorm-biased-running-var"

    def build_module(self, case, cls, kwargs):
        return _biased_running_var(cls)(**kwargs) if case.op.startswith("BatchNorm") else cls(**kwargs)
