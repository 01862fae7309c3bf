"""Deliberately wrong adapters for the dropout and sparse families: each reproduces one realistic
implementer's mistake on top of torch.

Dropout (the module call replaced in training with 0 < p < 1, where the mistake shows):
- ``Dropout1dElementwise``: "channel" dropout drawing one Bernoulli per element (the noise shaped
  like the input instead of (N, C, 1)).
- ``AlphaDropoutPlainScaling``: alpha dropout scaling kept elements by 1/(1 − p) and zeroing the
  dropped ones, as plain dropout does (no affine correction a, b, no α′ for dropped units).
- ``FeatureAlphaDropoutSharedAcrossBatch``: feature alpha dropout drawing one channel mask per
  call (noise of shape (1, C, 1, ...)) and sharing it across the samples of the batch.

EmbeddingBag (the module's forward replaced by a plain-torch formulation with the mistake):
- ``EmbeddingBagMeanCountsPadding``: mode mean divides by the bag's length, padding entries included.
- ``EmbeddingBagMaxGradToAll``: mode max sends each bag's gradient to every entry of the bag (a
  sum where the forward is a maximum).
- ``EmbeddingBagIgnoresLastOffset``: include_last_offset ignored: the last offset read as the
  start of one more (empty) bag.
"""

from __future__ import annotations

import math

import torch

from backends.torch_backend import TorchBackend

ALPHA_PRIME = 1.7580993408473766


def _random(fn, x) -> bool:
    return bool(fn.training) and 0 < fn.p < 1 and x.numel() > 0


class _DropoutMistake(TorchBackend):
    """Replaces the call of ``op``'s module at its random points by ``mistake(module, x)``."""

    op = ""

    def mistake(self, fn, x):  # pragma: no cover - overridden
        raise NotImplementedError

    def call_target(self, case, fn, args, kwargs):
        if case.op == self.op and isinstance(fn, torch.nn.Module) and _random(fn, args[0]):
            return self.mistake(fn, args[0])
        return super().call_target(case, fn, args, kwargs)


class Dropout1dElementwise(_DropoutMistake):
    name = "wrong-dropout1d-elementwise"
    op = "Dropout1d"

    def mistake(self, fn, x):
        noise = torch.empty_like(x).bernoulli_(1 - fn.p).div_(1 - fn.p)  # wrong: one draw per element
        return x.mul_(noise) if fn.inplace else x * noise


class AlphaDropoutPlainScaling(_DropoutMistake):
    name = "wrong-alpha-dropout-plain-scaling"
    op = "AlphaDropout"

    def mistake(self, fn, x):
        return torch.nn.functional.dropout(x, fn.p, True)  # wrong: 1/(1 - p) and zeros


class FeatureAlphaDropoutSharedAcrossBatch(_DropoutMistake):
    name = "wrong-feature-alpha-dropout-shared-across-batch"
    op = "FeatureAlphaDropout"

    def mistake(self, fn, x):
        p = fn.p
        a = 1.0 / math.sqrt((ALPHA_PRIME**2 * p + 1) * (1 - p))
        shape = (1, *x.shape[1:2], *([1] * (x.dim() - 2)))  # wrong: one mask for every sample
        keep = torch.empty(shape, dtype=x.dtype).bernoulli_(1 - p)
        b = (keep - 1) * (ALPHA_PRIME * a) + ALPHA_PRIME * a * p
        return x * (keep * a) + b


class _EmbeddingBagMistake(TorchBackend):
    """Replaces nn.EmbeddingBag's forward by ``bag(module, input, offsets, per_sample_weights)``."""

    def call_target(self, case, fn, args, kwargs):
        if case.op == "EmbeddingBag" and isinstance(fn, torch.nn.EmbeddingBag) and self.applies(fn):
            return self.bag(fn, *args, **kwargs)
        return super().call_target(case, fn, args, kwargs)

    def applies(self, module) -> bool:
        return True


def _bag_ids(input, offsets, include_last_offset):
    """(flat indices, the bag of each entry (-1: none), B) in plain torch."""
    if input.dim() == 2:
        b, n = input.shape
        return input.reshape(-1), torch.arange(b).repeat_interleave(n), b
    starts = offsets[:-1] if include_last_offset else offsets
    ends = offsets[1:] if include_last_offset else torch.cat([offsets[1:], offsets.new_tensor([input.numel()])])
    position = torch.arange(input.numel())
    bag = torch.searchsorted(starts, position, right=True) - 1
    inside = (bag >= 0) & (position < ends[bag.clamp(min=0)]) if starts.numel() else torch.zeros_like(bag, dtype=bool)
    return input, torch.where(inside, bag, -1), starts.numel()


def _bag_reduce(module, input, offsets, per_sample_weights, include_last_offset, count_padding=False,
                max_to_all=False):
    """A plain-torch EmbeddingBag forward (no max_norm), with the switchable mistakes."""
    flat, bag, b = _bag_ids(input, offsets, include_last_offset)
    w = module.weight
    rows = w[flat]
    used = bag >= 0
    counted = used.clone()
    if module.padding_idx is not None:
        used = used & (flat != module.padding_idx)
        counted = counted if count_padding else used
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.reshape(-1, 1)
    index = bag.clamp(min=0)
    if module.mode == "max":
        values = rows.masked_fill(~used[:, None], float("-inf"))
        out = torch.full((b, w.shape[1]), float("-inf"), dtype=w.dtype).scatter_reduce(
            0, index[:, None].expand_as(values), values, "amax")
        out = torch.where(torch.isinf(out), torch.zeros_like(out), out)
        if max_to_all:  # wrong: the gradient of a sum, the forward's value
            total = torch.zeros((b, w.shape[1]), dtype=w.dtype).index_add(0, index, rows * used[:, None])
            out = total + (out - total).detach()
        return out
    out = torch.zeros((b, w.shape[1]), dtype=w.dtype).index_add(0, index, rows * used[:, None])
    if module.mode == "mean":
        size = torch.zeros(b, dtype=w.dtype).index_add(0, index, counted.to(w.dtype))
        out = out / size.clamp(min=1)[:, None]
    return out


class EmbeddingBagMeanCountsPadding(_EmbeddingBagMistake):
    name = "wrong-embedding-bag-mean-counts-padding"

    def applies(self, module):
        return (module.mode == "mean" and module.padding_idx is not None and module.max_norm is None
                and not module.scale_grad_by_freq)

    def bag(self, module, input, offsets=None, per_sample_weights=None):
        return _bag_reduce(module, input, offsets, per_sample_weights, module.include_last_offset,
                           count_padding=True)


class EmbeddingBagMaxGradToAll(_EmbeddingBagMistake):
    name = "wrong-embedding-bag-max-grad-to-all"

    def applies(self, module):
        return module.mode == "max" and module.max_norm is None

    def bag(self, module, input, offsets=None, per_sample_weights=None):
        return _bag_reduce(module, input, offsets, per_sample_weights, module.include_last_offset, max_to_all=True)


class EmbeddingBagIgnoresLastOffset(_EmbeddingBagMistake):
    name = "wrong-embedding-bag-ignores-last-offset"

    def applies(self, module):
        return module.include_last_offset

    def bag(self, module, input, offsets=None, per_sample_weights=None):
        module.include_last_offset = False  # wrong: the flag dropped on the way to the kernel
        try:
            return module(input, offsets, per_sample_weights)
        finally:
            module.include_last_offset = True
