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
- ``UpsampleIgnoresAlignCorners``: nn.Upsample's linear modes always with align_corners=False.
- ``UpsampleNearestRounds``: nearest's source index rounded (round(dst·s)) instead of floored.
- ``UpsampleBicubicKeysHalf``: bicubic with Keys' a = -0.5 (Pillow's, antialias's) instead of -0.75.
- ``GridSampleReflectionMixup``: reflection about the pixel edges when align_corners=True and
  about the centres when False (the two conventions swapped).
- ``AffineGridPixelBase``: affine_grid's base grid in pixel units (0 .. S - 1), not normalised.
- ``PairwiseDistanceIgnoresKeepdim``: keepdim never honoured.
- ``PairwiseDistanceEpsAfterNorm``: ‖x1 - x2‖_p + eps, the textbook reading of "eps avoids a zero
  distance", instead of ‖x1 - x2 + eps‖_p.
- ``BatchNorm3dEvalBatchStats``: BatchNorm3d that normalises with batch statistics in eval mode.
- ``BatchNormBiasedRunningVar``: running_var updated with the biased batch variance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend
from reference import interpolate as RI
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


class _AlignCornersIgnored(torch.nn.Upsample):
    def forward(self, x):
        align = False if self.mode in ("linear", "bilinear", "bicubic", "trilinear") else None
        return F.interpolate(x, self.size, self.scale_factor, self.mode, align,
                             recompute_scale_factor=self.recompute_scale_factor)


class UpsampleIgnoresAlignCorners(ReplacesModule):
    name = "wrong-upsample-align-corners-ignored"
    op, module = "Upsample", _AlignCornersIgnored


def _resize_dims(module: torch.nn.Upsample, x: torch.Tensor) -> list[tuple[int, int, float | None]]:
    """(input length, output length, the factor the kernel receives) per spatial dim, as
    F.interpolate derives them."""
    rank = x.dim() - 2
    if module.size is not None:
        sizes = module.size if isinstance(module.size, (tuple, list)) else (module.size,) * rank
        return [(x.shape[2 + i], int(sizes[i]), None) for i in range(rank)]
    scales = module.scale_factor if isinstance(module.scale_factor, tuple) else (module.scale_factor,) * rank
    kept = not module.recompute_scale_factor
    return [(x.shape[2 + i], int(x.shape[2 + i] * scales[i]), scales[i] if kept else None) for i in range(rank)]


class _RoundedNearest(torch.nn.Upsample):
    """nearest with src = min(round(dst·s), in - 1): gathers by index_select (autograd scatters back)."""

    def forward(self, x):
        if self.mode != "nearest":
            return super().forward(x)
        for d, (size_in, size_out, scale) in enumerate(_resize_dims(self, x)):
            s = np.float32(1.0 / scale) if scale else np.float32(size_in) / np.float32(size_out)
            index = np.minimum(np.rint(np.arange(size_out, dtype=np.float32) * s), size_in - 1).astype(np.int64)
            x = x.index_select(2 + d, torch.from_numpy(index).to(x.device))
        return x


class UpsampleNearestRounds(ReplacesModule):
    name = "wrong-upsample-nearest-rounds"
    op, module = "Upsample", _RoundedNearest


class _KeysHalf(torch.nn.Upsample):
    """bicubic with a = -0.5: the right taps and positions, Pillow's kernel."""

    def forward(self, x):
        if self.mode != "bicubic":
            return super().forward(x)
        mats = []
        for size_in, size_out, scale in _resize_dims(self, x):
            taps = RI.axis_taps("bicubic", size_in, size_out, scale, bool(self.align_corners))
            t = taps.src - np.floor(taps.src)
            weight = RI.keys_kernel(t[:, None] - np.arange(-1, 3)[None, :], -0.5)
            mats.append(torch.from_numpy(RI.Taps(taps.index, weight, size_in).matrix()).to(x.dtype))
        return torch.einsum("nchw,oh,pw->ncop", x, *mats)


class UpsampleBicubicKeysHalf(ReplacesModule):
    name = "wrong-upsample-bicubic-a-half"
    op, module = "Upsample", _KeysHalf


class ReplacesFunction(TorchBackend):
    """The torch adapter with the function of one entry (``op``) replaced by ``function``."""

    op = ""

    def function(self, *args, **kwargs):  # pragma: no cover - overridden
        raise NotImplementedError

    def call_target(self, case, fn, args, kwargs):
        return self.function(*args, **kwargs) if case.op == self.op else super().call_target(case, fn, args, kwargs)


def _reflect(c: torch.Tensor, twice_low: int, twice_high: int) -> torch.Tensor:
    if twice_low == twice_high:
        return torch.zeros_like(c)
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    shifted = (c - low).abs()
    extra = torch.fmod(shifted, span)
    flips = torch.floor(shifted / span)
    return torch.where(flips % 2 == 0, extra + low, span - extra + low)


class GridSampleReflectionMixup(ReplacesFunction):
    """padding_mode='reflection' about the pixel edges with align_corners=True and about the
    centres with align_corners=False: the reflected grid is sampled with border padding."""

    name = "wrong-grid-sample-reflection-mixup"
    op = "grid_sample"

    def function(self, input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
        if padding_mode != "reflection":
            return F.grid_sample(input, grid, mode, padding_mode, align_corners)
        align = bool(align_corners)
        sizes = input.shape[2:][::-1]  # the grid's last axis is (x, y[, z])
        coords = []
        for d, size in enumerate(sizes):
            c = (grid[..., d] + 1) / 2 * (size - 1) if align else ((grid[..., d] + 1) * size - 1) / 2
            c = _reflect(c, -1, 2 * size - 1) if align else _reflect(c, 0, 2 * (size - 1))  # swapped
            c = c.clamp(0, size - 1)
            coords.append(c / max(size - 1, 1) * 2 - 1 if align else (2 * c + 1) / size - 1)
        return F.grid_sample(input, torch.stack(coords, -1), mode, "border", align_corners)


class AffineGridPixelBase(ReplacesFunction):
    """affine_grid with the base grid in pixel units 0 .. S - 1 (never normalised to [-1, 1])."""

    name = "wrong-affine-grid-pixel-base"
    op = "affine_grid"

    def function(self, theta, size, align_corners=None):
        spatial = list(size[2:])
        axes = [torch.arange(s, dtype=theta.dtype) for s in spatial]
        mesh = torch.meshgrid(*axes, indexing="ij")
        base = torch.stack([*mesh[::-1], torch.ones(spatial, dtype=theta.dtype)], -1)
        return torch.einsum("...j,nij->n...i", base, theta)


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
