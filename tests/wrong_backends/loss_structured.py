"""Deliberately wrong adapters of the structured losses, each one implementer's mistake on top of
torch:

- ``CTCNoBlankBetweenRepeats``: the CTC recursion allows the skip s-2 → s for every label state,
  also between two equal labels (a repeated label then needs no blank in between); written as a
  log-space recursion over torch ops, whose autograd gradient is the derivative of the loss (a form
  the declaration accepts).
- ``CTCMeanWithoutTargetLengths``: CTCLoss 'mean' as the plain batch mean of the losses (not
  divided by the target lengths first).
- ``CTCZeroInfinityIgnored``: zero_infinity=True treated as False.
- ``AdaptiveClusterLogProbNotAdded``: AdaptiveLogSoftmaxWithLoss's output for a clustered target
  is its log-probability within the cluster only (the cluster's head log-probability not added).
- ``LinearCrossEntropyIgnoresLabelSmoothing``: LinearCrossEntropyLoss built with label_smoothing
  dropped (0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.adaptive import _ASMoutput

from backends.torch_backend import TorchBackend


def _lengths(value, n: int) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.long).reshape(-1)[:n] if n else torch.zeros(0, dtype=torch.long)


def _ctc_nll_skipping_repeats(log_probs, targets, input_lengths, target_lengths, blank: int) -> torch.Tensor:
    """Per-sample CTC nll whose recursion allows s-2 → s for every label state (wrong for equal
    neighbours). log_probs (T, N, C); targets padded or concatenated."""
    t_max, n, _ = log_probs.shape
    il, tl = _lengths(input_lengths, n), _lengths(target_lengths, n)
    longest = int(tl.max()) if n else 0
    if targets.dim() == 1:
        rows, start = [], 0
        for length in tl.tolist():
            rows.append(F.pad(targets[start:start + length], (0, longest - length), value=blank))
            start += length
        targets = torch.stack(rows) if rows else targets.new_zeros((0, longest))
    labels = targets[:, :longest].clone()
    labels[torch.arange(longest)[None, :] >= tl[:, None]] = blank
    width = 2 * longest + 1
    ext = torch.full((n, width), blank, dtype=torch.long)
    ext[:, 1::2] = labels
    states = torch.arange(width)[None, :]
    valid = states <= 2 * tl[:, None]
    skip = (states % 2 == 1) & (states >= 2)  # wrong: should also require ext[s] != ext[s - 2]
    neg = torch.tensor(float("-inf"), dtype=log_probs.dtype)
    lpe = torch.where(valid[None], log_probs.gather(2, ext[None].expand(t_max, n, width)), neg)
    alpha = torch.where((states <= 1) & valid, lpe[0], neg)
    finals = [alpha]
    for t in range(1, t_max):
        one = torch.cat([neg.expand(n, 1), alpha[:, :-1]], dim=1)
        two = torch.where(skip, torch.cat([neg.expand(n, 2), alpha[:, :-2]], dim=1), neg)
        alpha = torch.logsumexp(torch.stack([alpha, one, two]), dim=0) + lpe[t]
        finals.append(alpha)
    stacked = torch.stack(finals)  # (T, N, S')
    last = stacked[(il - 1).clamp(min=0), torch.arange(n)]
    end = last.gather(1, (2 * tl)[:, None])[:, 0]
    before = torch.where(tl > 0, last.gather(1, (2 * tl - 1).clamp(min=0)[:, None])[:, 0], neg)
    nll = -torch.logaddexp(end, before)
    empty = torch.where(tl == 0, torch.zeros_like(nll), torch.full_like(nll, float("inf")))
    return torch.where(il > 0, nll, empty)


class CTCNoBlankBetweenRepeats(TorchBackend):
    name = "torch-cpu-wrong-ctc-repeats"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.CTCLoss):
            log_probs, targets, il, tl = args
            batched = log_probs.dim() == 3
            lp = log_probs if batched else log_probs.unsqueeze(1)
            nll = _ctc_nll_skipping_repeats(lp, targets, il, tl, fn.blank)
            tl_t = _lengths(tl, lp.shape[1])
            if fn.zero_infinity:
                nll = torch.where(torch.isinf(nll), torch.zeros_like(nll), nll)
            if fn.reduction == "none":
                return nll if batched else nll[0]
            if fn.reduction == "sum":
                return nll.sum()
            return (nll / tl_t.clamp(min=1).to(nll.dtype)).mean()
        return super().call_target(case, fn, args, kwargs)


class CTCMeanWithoutTargetLengths(TorchBackend):
    name = "torch-cpu-wrong-ctc-mean"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.CTCLoss) and fn.reduction == "mean":
            return F.ctc_loss(*args, blank=fn.blank, reduction="none", zero_infinity=fn.zero_infinity).mean()
        return super().call_target(case, fn, args, kwargs)


class CTCZeroInfinityIgnored(TorchBackend):
    name = "torch-cpu-wrong-ctc-zero-infinity"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.CTCLoss):
            return F.ctc_loss(*args, blank=fn.blank, reduction=fn.reduction, zero_infinity=False)
        return super().call_target(case, fn, args, kwargs)


class _ClusterLogProbNotAdded(torch.nn.AdaptiveLogSoftmaxWithLoss):
    def forward(self, input_, target_):
        batched = target_.dim() > 0
        x = input_ if batched else input_.unsqueeze(0)
        t = target_ if batched else target_.unsqueeze(0)
        head_lp = F.log_softmax(self.head(x), dim=1)
        out = head_lp.gather(1, t.clamp(max=self.shortlist_size - 1).unsqueeze(1)).squeeze(1)
        for i in range(self.n_clusters):
            lo, hi = self.cutoffs[i], self.cutoffs[i + 1]
            mask = (t >= lo) & (t < hi)
            if mask.any():
                local = F.log_softmax(self.tail[i](x[mask]), dim=1).gather(1, (t[mask] - lo).unsqueeze(1)).squeeze(1)
                out = out.index_put((mask.nonzero().squeeze(1),), local)  # wrong: + head_lp[:, shortlist + i] missing
        return _ASMoutput(out if batched else out.squeeze(0), (-out).mean())


class AdaptiveClusterLogProbNotAdded(TorchBackend):
    name = "torch-cpu-wrong-adaptive-cluster"

    def build_module(self, case, cls, kwargs):
        if cls is torch.nn.AdaptiveLogSoftmaxWithLoss:
            return _ClusterLogProbNotAdded(**kwargs)
        return super().build_module(case, cls, kwargs)


class LinearCrossEntropyIgnoresLabelSmoothing(TorchBackend):
    name = "torch-cpu-wrong-lce-smoothing"

    def build_module(self, case, cls, kwargs):
        if cls is torch.nn.LinearCrossEntropyLoss:
            return cls(**{**kwargs, "label_smoothing": 0.0})
        return super().build_module(case, cls, kwargs)
