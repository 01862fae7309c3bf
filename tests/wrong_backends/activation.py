"""Deliberately wrong activation adapters: each reproduces one implementer's mistake on top of torch.

- ``SoftplusGradNoBeta``: Softplus whose backward drops the chain rule's β: g·σ(βx)/β.
- ``TanhGradFromInput``: Tanh whose backward uses 1 - x² instead of 1 - y².
- ``EluIgnoresAlpha``: ELU whose forward uses alpha = 1 (the backward is right).
- ``ThresholdWritesZero``: Threshold that writes 0 instead of ``value``.
- ``HardtanhGradAtBounds``: Hardtanh whose derivative is 1 at min_val and max_val (<= instead of <).
- ``LogSigmoidNaive``: LogSigmoid as log(sigmoid(x)), which underflows to -inf for large negative x.
- ``LogSoftmaxNoMaxShift``: LogSoftmax without the max shift: exp overflows for large inputs.
- ``SoftmaxImplicitDimLast``: Softmax(dim=None) normalising over the last dim instead of the legacy choice.
- ``Relu6SwallowsNaN``: ReLU6 as fmin(fmax(x, 0), 6), which turns NaN into 0.
- ``HardswishUncapped``: Hardswish as x·relu(x + 3)/6, the relu6's cap at 6 forgotten.
- ``GluHalvesSwapped``: GLU as σ(a)·b, the gate taken from the first half.
- ``SiluGradWithoutXTerm``: SiLU whose backward is g·σ(x), dropping x·σ'(x).
- ``CeluWithoutInputScale``: CELU as alpha·(exp(x) - 1), ELU's formula (x not divided by alpha).
- ``RreluRandomInEval``: RReLU that draws random slopes in evaluation mode too.
- ``RreluSharedSlope``: RReLU that draws one slope per call and applies it to every element.
- ``Softmax2dOverDim1``: Softmax2d over dim 1, the channels only of a batched input.
"""

from __future__ import annotations

import torch

from tests.wrong_backends.generic import ReplacesModule


class _SoftplusNoBeta(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta, threshold):
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        return torch.nn.functional.softplus(x, beta, threshold)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t = x * ctx.beta
        grad = torch.where(t > ctx.threshold, g, g * torch.sigmoid(t) / ctx.beta)  # wrong: / β
        return grad, None, None


class _Softplus(torch.nn.Softplus):
    def forward(self, x):
        return _SoftplusNoBeta.apply(x, self.beta, self.threshold)


class SoftplusGradNoBeta(ReplacesModule):
    """Softplus whose backward divides by β (the chain rule's β·(1/β) lost one factor)."""

    name = "wrong-softplus-grad-no-beta"
    op, module = "Softplus", _Softplus


class _TanhFromInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (1 - x * x)  # wrong: 1 - y²


class _Tanh(torch.nn.Tanh):
    def forward(self, x):
        return _TanhFromInput.apply(x)


class TanhGradFromInput(ReplacesModule):
    """Tanh whose backward uses 1 - x² instead of 1 - tanh(x)²."""

    name = "wrong-tanh-grad-from-input"
    op, module = "Tanh", _Tanh


class _EluAlphaOne(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return torch.nn.functional.elu(x, 1.0)  # wrong: alpha ignored

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, g, g * ctx.alpha * torch.exp(x)), None


class _Elu(torch.nn.ELU):
    def forward(self, x):
        y = _EluAlphaOne.apply(x, self.alpha)
        return x.copy_(y) if self.inplace else y


class EluIgnoresAlpha(ReplacesModule):
    """ELU whose forward always uses alpha = 1."""

    name = "wrong-elu-ignores-alpha"
    op, module = "ELU", _Elu


class _ThresholdZero(torch.nn.Threshold):
    def forward(self, x):
        y = torch.where(x > self.threshold, x, torch.zeros_like(x))  # wrong: 0 instead of value
        return x.copy_(y) if self.inplace else y


class ThresholdWritesZero(ReplacesModule):
    """Threshold that replaces x <= threshold by 0 instead of ``value``."""

    name = "wrong-threshold-writes-zero"
    op, module = "Threshold", _ThresholdZero


class _HardtanhInclusive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        inside = (x >= ctx.lo) & (x <= ctx.hi)  # wrong: the boundaries count as inside
        return torch.where(inside, g, torch.zeros_like(g)), None, None


class _Hardtanh(torch.nn.Hardtanh):
    def forward(self, x):
        y = _HardtanhInclusive.apply(x, self.min_val, self.max_val)
        return x.copy_(y) if self.inplace else y


class HardtanhGradAtBounds(ReplacesModule):
    """Hardtanh whose derivative is 1 at x == min_val and x == max_val: only visible at the kinks."""

    name = "wrong-hardtanh-grad-at-bounds"
    op, module = "Hardtanh", _Hardtanh


class _LogSigmoidNaive(torch.nn.LogSigmoid):
    def forward(self, x):
        return torch.log(torch.sigmoid(x))  # wrong: sigmoid underflows to 0 for large negative x


class LogSigmoidNaive(ReplacesModule):
    """LogSigmoid as log(sigmoid(x)): -inf where sigmoid underflows (x < -745 in float64)."""

    name = "wrong-logsigmoid-naive"
    op, module = "LogSigmoid", _LogSigmoidNaive


class _LogSoftmaxNoShift(torch.nn.LogSoftmax):
    def forward(self, x):
        dim = self.dim if self.dim is not None else torch.nn.functional._get_softmax_dim("log_softmax", x.dim(), 5)
        return x - torch.log(torch.exp(x).sum(dim, keepdim=True))  # wrong: no max shift


class LogSoftmaxNoMaxShift(ReplacesModule):
    """LogSoftmax without subtracting the maximum: exp(x) overflows for x > 709 (float64)."""

    name = "wrong-logsoftmax-no-max-shift"
    op, module = "LogSoftmax", _LogSoftmaxNoShift


class _SoftmaxLastDim(torch.nn.Softmax):
    def forward(self, x):
        return torch.softmax(x, -1 if self.dim is None else self.dim)  # wrong: the legacy choice is 0 or 1


class SoftmaxImplicitDimLast(ReplacesModule):
    """Softmax(dim=None) over the last dim (the deprecated implicit choice is 0 for 0-, 1- and 3-d
    inputs, else 1)."""

    name = "wrong-softmax-implicit-dim-last"
    op, module = "Softmax", _SoftmaxLastDim


class _Relu6FmaxFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.fmin(torch.fmax(x, torch.zeros_like(x)), torch.full_like(x, 6.0))  # wrong: fmax drops NaN

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where((x > 0) & (x < 6), g, torch.zeros_like(g))


class _Relu6Fmax(torch.nn.ReLU6):
    def forward(self, x):
        y = _Relu6FmaxFn.apply(x)
        return x.copy_(y) if self.inplace else y


class Relu6SwallowsNaN(ReplacesModule):
    """ReLU6 through fmax/fmin, which return the other operand when one is NaN: NaN becomes 0."""

    name = "wrong-relu6-swallows-nan"
    op, module = "ReLU6", _Relu6Fmax


class _HardswishUncapped(torch.nn.Hardswish):
    def forward(self, x):
        y = x * torch.relu(x + 3) / 6  # wrong: relu6(x + 3), capped at 6
        return x.copy_(y) if self.inplace else y


class HardswishUncapped(ReplacesModule):
    """Hardswish with relu where relu6 belongs: x(x + 3)/6 instead of x above 3."""

    name = "wrong-hardswish-uncapped"
    op, module = "Hardswish", _HardswishUncapped


class _GluSwapped(torch.nn.GLU):
    def forward(self, x):
        a, b = x.chunk(2, dim=self.dim)
        return torch.sigmoid(a) * b  # wrong: a·σ(b)


class GluHalvesSwapped(ReplacesModule):
    """GLU gating with the first half: σ(a)·b."""

    name = "wrong-glu-halves-swapped"
    op, module = "GLU", _GluSwapped


class _SiluNoXTerm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.silu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x)  # wrong: σ(x)·(1 + x·(1 - σ(x)))


class _Silu(torch.nn.SiLU):
    def forward(self, x):
        y = _SiluNoXTerm.apply(x)
        return x.copy_(y) if self.inplace else y


class SiluGradWithoutXTerm(ReplacesModule):
    """SiLU whose backward treats x·σ(x) as if x were constant: g·σ(x)."""

    name = "wrong-silu-grad-without-x-term"
    op, module = "SiLU", _Silu


class _CeluAsElu(torch.nn.CELU):
    def forward(self, x):
        return torch.nn.functional.elu(x, self.alpha, self.inplace)  # wrong: exp(x/alpha)


class CeluWithoutInputScale(ReplacesModule):
    """CELU computed as ELU: alpha·(exp(x) - 1) on the negative side."""

    name = "wrong-celu-without-input-scale"
    op, module = "CELU", _CeluAsElu


class _RreluAlwaysRandom(torch.nn.RReLU):
    def forward(self, x):
        return torch.nn.functional.rrelu(x, self.lower, self.upper, True, self.inplace)  # wrong: self.training


class RreluRandomInEval(ReplacesModule):
    """RReLU drawing random slopes in evaluation mode (the training flag ignored)."""

    name = "wrong-rrelu-random-in-eval"
    op, module = "RReLU", _RreluAlwaysRandom


class _RreluShared(torch.nn.RReLU):
    def forward(self, x):
        if not self.training:
            return super().forward(x)
        slope = torch.empty((), dtype=x.dtype).uniform_(self.lower, self.upper)  # wrong: one per element
        y = torch.where(x > 0, x, x * slope)
        return x.copy_(y) if self.inplace else y


class RreluSharedSlope(ReplacesModule):
    """RReLU whose training mode draws a single slope for the whole tensor: each case is right
    given its slopes, only the statistics can tell."""

    name = "wrong-rrelu-shared-slope"
    op, module = "RReLU", _RreluShared


class _Softmax2dDim1(torch.nn.Softmax2d):
    def forward(self, x):
        return torch.softmax(x, 1)  # wrong: dim -3 (dim 0 of a (C, H, W) input)


class Softmax2dOverDim1(ReplacesModule):
    """Softmax2d over dim 1: right for (N, C, H, W), over H for an unbatched (C, H, W) input."""

    name = "wrong-softmax2d-over-dim-1"
    op, module = "Softmax2d", _Softmax2dDim1
