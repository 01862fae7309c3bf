"""Deliberately wrong loss adapters: each reproduces one plausible implementer's mistake on top of
torch, through ``call_target`` (the module is built and its buffers installed as usual).

- ``BCEWithLogitsIgnoresPosWeight``: pos_weight is accepted and silently dropped.
- ``KLDivIgnoresLogTarget``: log_target=True is treated as probabilities.
- ``MarginRankingFlippedSign``: max(0, y·(x1 - x2) + margin) (the sign of y flipped).
- ``NLLNoneKeepsIgnored``: with reduction='none' an ignored position gets the loss of class 0
  instead of 0 (the mask is applied to the sum and the mean only).
- ``SmoothL1AsHuber``: SmoothL1Loss computed as the Huber loss with delta = beta (forgetting the
  division by beta: the two agree at beta = 1 only).
- ``MultiMarginWeightOfOtherClass``: MultiMarginLoss weighting each term by w[i] instead of w[y].
- ``L1MeanOverInput``: L1Loss 'mean' dividing by the input's element count instead of the
  broadcast shape's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend


class BCEWithLogitsIgnoresPosWeight(TorchBackend):
    name = "torch-cpu-wrong-bce-logits-pos-weight"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.BCEWithLogitsLoss):
            return F.binary_cross_entropy_with_logits(*args, weight=fn.weight, reduction=fn.reduction)
        return super().call_target(case, fn, args, kwargs)


class KLDivIgnoresLogTarget(TorchBackend):
    name = "torch-cpu-wrong-kl-log-target"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.KLDivLoss):
            return F.kl_div(*args, reduction=fn.reduction, log_target=False)
        return super().call_target(case, fn, args, kwargs)


class MarginRankingFlippedSign(TorchBackend):
    name = "torch-cpu-wrong-margin-ranking-sign"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.MarginRankingLoss):
            x1, x2, y = args
            return F.margin_ranking_loss(x1, x2, -y, margin=fn.margin, reduction=fn.reduction)
        return super().call_target(case, fn, args, kwargs)


class NLLNoneKeepsIgnored(TorchBackend):
    name = "torch-cpu-wrong-nll-none-ignored"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.NLLLoss) and fn.reduction == "none":
            x, t = args
            kept = torch.where(t == fn.ignore_index, torch.zeros_like(t), t)
            return F.nll_loss(x, kept, weight=fn.weight, reduction="none")
        return super().call_target(case, fn, args, kwargs)


class SmoothL1AsHuber(TorchBackend):
    name = "torch-cpu-wrong-smooth-l1-huber"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.SmoothL1Loss) and fn.beta > 0:
            return F.huber_loss(*args, reduction=fn.reduction, delta=fn.beta)
        return super().call_target(case, fn, args, kwargs)


class MultiMarginWeightOfOtherClass(TorchBackend):
    name = "torch-cpu-wrong-multi-margin-weight"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.MultiMarginLoss) and fn.weight is not None:
            x, t = args
            x2, t2 = x.reshape(-1, x.shape[-1]), t.reshape(-1)
            z = fn.margin - x2.gather(1, t2[:, None]) + x2
            others = torch.arange(x2.shape[1])[None, :] != t2[:, None]
            terms = torch.where(others, z.clamp_min(0) ** fn.p * fn.weight[None, :], torch.zeros_like(z))
            losses = (terms.sum(1) / x2.shape[1]).reshape(t.shape)
            return {"mean": losses.mean(), "sum": losses.sum()}.get(fn.reduction, losses)
        return super().call_target(case, fn, args, kwargs)


class L1MeanOverInput(TorchBackend):
    name = "torch-cpu-wrong-l1-mean-count"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.L1Loss) and fn.reduction == "mean":
            x, t = args
            return (x - t).abs().sum() / x.numel()
        return super().call_target(case, fn, args, kwargs)
