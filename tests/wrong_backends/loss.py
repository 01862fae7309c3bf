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
- ``HuberAsSmoothL1``: HuberLoss computed as SmoothL1Loss with beta = delta (the δ factor of
  Huber = δ·SmoothL1 forgotten: right at δ = 1 only).
- ``GaussianClampAfterLog``: GaussianNLLLoss taking the log of the unclamped var (clamping only the
  divisor): wrong (-inf) wherever var < eps.
- ``PoissonStirlingEverywhere``: PoissonNLLLoss(full=True) adding the Stirling term at every
  positive target, not only where t > 1.
- ``TripletSwapIgnored``: TripletMarginLoss(swap=True) computed without the swap.
- ``TripletDistanceWithoutEps``: TripletMarginLoss's distance ‖a - p‖_p without the eps torch adds
  inside the norm.
- ``TripletDefaultDistance``: TripletMarginWithDistanceLoss ignoring its distance_function (always
  the default pairwise distance).
"""

from __future__ import annotations

import math

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


class HuberAsSmoothL1(TorchBackend):
    name = "torch-cpu-wrong-huber-as-smooth-l1"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.HuberLoss):
            return F.smooth_l1_loss(*args, reduction=fn.reduction, beta=fn.delta)
        return super().call_target(case, fn, args, kwargs)


class GaussianClampAfterLog(TorchBackend):
    name = "torch-cpu-wrong-gaussian-clamp-after-log"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.GaussianNLLLoss):
            x, t = args[:2]
            var = args[2] if len(args) > 2 else kwargs["var"]
            var = var if torch.is_tensor(var) else torch.full_like(x, var)
            if var.shape != x.shape and var.shape == x.shape[:-1]:
                var = var.unsqueeze(-1)
            loss = 0.5 * (torch.log(var) + (x - t) ** 2 / var.clamp(min=fn.eps))
            loss = loss + (0.5 * math.log(2 * math.pi) if fn.full else 0.0)
            return {"mean": loss.mean(), "sum": loss.sum()}.get(fn.reduction, loss)
        return super().call_target(case, fn, args, kwargs)


class PoissonStirlingEverywhere(TorchBackend):
    name = "torch-cpu-wrong-poisson-stirling"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.PoissonNLLLoss) and fn.full:
            x, t = args
            loss = torch.exp(x) - t * x if fn.log_input else x - t * torch.log(x + fn.eps)
            safe = torch.where(t > 0, t, torch.ones_like(t))
            stirling = safe * torch.log(safe) - safe + 0.5 * torch.log(2 * math.pi * safe)
            loss = loss + torch.where(t > 0, stirling, torch.zeros_like(t))  # wrong: torch masks t <= 1
            return {"mean": loss.mean(), "sum": loss.sum()}.get(fn.reduction, loss)
        return super().call_target(case, fn, args, kwargs)


class TripletSwapIgnored(TorchBackend):
    name = "torch-cpu-wrong-triplet-swap"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.TripletMarginLoss) and fn.swap:
            return F.triplet_margin_loss(*args, margin=fn.margin, p=fn.p, eps=fn.eps, swap=False,
                                         reduction=fn.reduction)
        return super().call_target(case, fn, args, kwargs)


class TripletDistanceWithoutEps(TorchBackend):
    name = "torch-cpu-wrong-triplet-eps"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.TripletMarginLoss):
            a, p, n = args
            dist = lambda x1, x2: torch.linalg.vector_norm(x1 - x2, ord=fn.p, dim=-1)  # noqa: E731  (no eps)
            d_neg = dist(a, n)
            if fn.swap:
                d_neg = torch.minimum(d_neg, dist(p, n))
            loss = torch.clamp_min(fn.margin + dist(a, p) - d_neg, 0)
            return {"mean": loss.mean(), "sum": loss.sum()}.get(fn.reduction, loss)
        return super().call_target(case, fn, args, kwargs)


class TripletDefaultDistance(TorchBackend):
    name = "torch-cpu-wrong-triplet-distance"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.TripletMarginWithDistanceLoss):
            return F.triplet_margin_with_distance_loss(*args, margin=fn.margin, swap=fn.swap, reduction=fn.reduction)
        return super().call_target(case, fn, args, kwargs)
