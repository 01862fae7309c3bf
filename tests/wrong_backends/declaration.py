"""Deliberately wrong adapters for the declaration mechanisms: randomness, mutation, call trees.

Each models a mistake a real implementer makes:
- ``DropoutInEval``: dropout that keeps dropping in eval mode (the training flag not threaded through).
- ``Dropout3dSharedMask``: channel dropout drawing one mask per sample and sharing it across channels.
- ``Dropout2dElementwise``: "channel" dropout that drops elements (an element mask, the wrong noise shape).
- ``DropoutBackwardRedraws``: a backward that draws a fresh mask instead of reusing the forward's.
- ``EmbeddingMaxNormAlwaysL2``: max-norm renormalisation with the 2-norm whatever norm_type says.
- ``EmbeddingIgnoresFrequency``: scale_grad_by_freq accepted but not applied.
- ``PadPackedIgnoresBatchFirst``: pad_packed_sequence always returning (T, B, *).
- ``PackUnsortedIndicesNotInverted``: unsorted_indices set to the sorting permutation itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence

from backends.torch_backend import TorchBackend


class DropoutInEval(TorchBackend):
    name = "wrong-dropout-in-eval"

    def call_target(self, case, fn, args, kwargs):
        if case.op == "Dropout" and not fn.training:
            return F.dropout(args[0], fn.p, True, fn.inplace)
        return super().call_target(case, fn, args, kwargs)


def _channel_dropout(x: torch.Tensor, p: float, share_across: int | None, elementwise: bool = False) -> torch.Tensor:
    """Channel dropout over the first two dims, with a deliberate mistake in the noise."""
    if elementwise:
        shape = x.shape
    else:
        shape = (x.shape[0], 1 if share_across == 1 else x.shape[1]) + (1,) * (x.dim() - 2)
    noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p).div_(1 - p)
    return x * noise


class _ChannelDropoutMistake(TorchBackend):
    op = ""
    share_across: int | None = None
    elementwise = False

    def call_target(self, case, fn, args, kwargs):
        if case.op == self.op and fn.training and 0 < fn.p < 1:
            x = args[0]
            batched = x.dim() == (5 if self.op == "Dropout3d" else 4)
            xb = x if batched or self.op == "Dropout2d" else x.unsqueeze(0)
            y = _channel_dropout(xb, fn.p, self.share_across, self.elementwise)
            y = y if batched or self.op == "Dropout2d" else y.squeeze(0)
            return x.copy_(y) if fn.inplace else y
        return super().call_target(case, fn, args, kwargs)


class Dropout3dSharedMask(_ChannelDropoutMistake):
    name = "wrong-dropout3d-shared-mask"
    op = "Dropout3d"
    share_across = 1


class Dropout2dElementwise(_ChannelDropoutMistake):
    name = "wrong-dropout2d-elementwise"
    op = "Dropout2d"
    elementwise = True


class _RedrawingDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        ctx.p = p
        keep = torch.empty_like(x).bernoulli_(1 - p)
        return x * keep / (1 - p)

    @staticmethod
    def backward(ctx, g):
        keep = torch.empty_like(g).bernoulli_(1 - ctx.p)  # the bug: a new mask
        return g * keep / (1 - ctx.p), None


class DropoutBackwardRedraws(TorchBackend):
    name = "wrong-dropout-backward-redraws"

    def call_target(self, case, fn, args, kwargs):
        if case.op == "Dropout" and fn.training and 0 < fn.p < 1 and not fn.inplace:
            return _RedrawingDropout.apply(args[0], fn.p)
        return super().call_target(case, fn, args, kwargs)


class EmbeddingMaxNormAlwaysL2(TorchBackend):
    name = "wrong-embedding-max-norm-l2"

    def build_module(self, case, cls, kwargs):
        if case.op == "Embedding" and kwargs.get("max_norm") is not None:
            kwargs = {**kwargs, "norm_type": 2.0}
        return super().build_module(case, cls, kwargs)


class EmbeddingIgnoresFrequency(TorchBackend):
    name = "wrong-embedding-ignores-frequency"

    def build_module(self, case, cls, kwargs):
        if case.op == "Embedding":
            kwargs = {**kwargs, "scale_grad_by_freq": False}
        return super().build_module(case, cls, kwargs)


class PadPackedIgnoresBatchFirst(TorchBackend):
    name = "wrong-pad-packed-batch-first"

    def call_target(self, case, fn, args, kwargs):
        if case.op == "pad_packed_sequence" and getattr(fn, "__name__", "") == "pad_packed_sequence":
            kwargs = {**kwargs, "batch_first": False}
        return super().call_target(case, fn, args, kwargs)


class PackUnsortedIndicesNotInverted(TorchBackend):
    name = "wrong-pack-unsorted-indices"

    def call_target(self, case, fn, args, kwargs):
        out = super().call_target(case, fn, args, kwargs)
        if isinstance(out, PackedSequence) and out.sorted_indices is not None:
            return PackedSequence(out.data, out.batch_sizes, out.sorted_indices, out.sorted_indices)
        return out
