"""Deliberately wrong adapters for the derivative modes and gradient accumulation: the torch adapter
with one module replaced by an ``autograd.Function`` whose first-order backward is right and whose
other derivative rule carries one mistake a kernel writer makes.

Forward mode (jvp):
- ``SoftmaxJvpDropsNormalisation``: Softmax's tangent y⊙t, dropping the term -y·⟨y, t⟩ that keeps
  the outputs summing to 1.
- ``LinearJvpDropsWeightTangent``: Linear's tangent W·t_x + t_b, dropping t_W·x (a bug that only a
  tangent on the weight shows).

Second order (vjp2):
- ``BatchNormDoubleBackwardConstantStatistics``: BatchNorm1d (training) whose backward is written
  with the saved mean and inverse standard deviation as constants, so that differentiating the
  backward drops their dependence on the input (the class of pytorch#186256 and #196699).
- ``PReLUDoubleBackwardDropsMixedTerm``: PReLU whose input gradient uses the weight detached: the
  mixed second derivative ∂²/∂x∂w, PReLU's only non-zero one, is lost.

vmap:
- ``SoftmaxBatchingRuleAssumesDimZero``: Softmax with a batching rule that takes the vmapped dim to
  be dim 0 whatever ``in_dims`` says: right when cases are stacked at 0, wrong when the batch dim is
  the last one.
- ``BatchNormBatchingRuleMixesCases``: BatchNorm1d (training) with a batching rule that folds the
  vmapped dim into the batch dim N, so each case is normalised with statistics over all of them.

Accumulation:
- ``GradientOverwritten``: every gradient is written into ``.grad`` instead of added to what it
  holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend
from tests.wrong_backends.generic import ReplacesModule


def _softmax_dim(module: torch.nn.Module, x: torch.Tensor) -> int:
    dim = module.dim
    return dim if dim is not None else (0 if x.dim() in (0, 1, 3) else 1)


def _softmax_backward(ctx, g):
    """Softmax's (right) backward from the saved output, for the ``autograd.Function``s below."""
    (y,) = ctx.saved_tensors
    return y * (g - (g * y).sum(ctx.dim, keepdim=True)), None


# -- jvp ------------------------------------------------------------------------------------------------

class _SoftmaxTangentWithoutNormalisation(torch.autograd.Function):
    @staticmethod
    def forward(x, dim):
        return torch.softmax(x, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    backward = staticmethod(_softmax_backward)

    @staticmethod
    def jvp(ctx, t, _):
        (y,) = ctx.saved_tensors
        return y * t  # wrong: y ⊙ (t - ⟨y, t⟩)


class _SoftmaxJvp(torch.nn.Softmax):
    def forward(self, x):
        return _SoftmaxTangentWithoutNormalisation.apply(x, _softmax_dim(self, x))


class SoftmaxJvpDropsNormalisation(ReplacesModule):
    name = "wrong-softmax-jvp"
    op, module = "Softmax", _SoftmaxJvp


class _LinearTangentWithoutWeight(torch.autograd.Function):
    @staticmethod
    def forward(x, w, b):
        return F.linear(x, w, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b = inputs
        ctx.has_bias = b is not None
        ctx.save_for_backward(x, w)
        ctx.save_for_forward(w)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gw = g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        gb = g.reshape(-1, g.shape[-1]).sum(0) if ctx.has_bias else None
        return g @ w, gw, gb

    @staticmethod
    def jvp(ctx, tx, tw, tb):
        (w,) = ctx.saved_tensors
        out = F.linear(tx, w) if tx is not None else None  # wrong: + F.linear(x, tw) is missing
        if tb is not None:
            out = tb if out is None else out + tb
        return out


class _LinearJvp(torch.nn.Linear):
    def forward(self, x):
        return _LinearTangentWithoutWeight.apply(x, self.weight, self.bias)


class LinearJvpDropsWeightTangent(ReplacesModule):
    name = "wrong-linear-jvp"
    op, module = "Linear", _LinearJvp


# -- vjp2 -----------------------------------------------------------------------------------------------

def _channel_view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _batch_norm_through(normalise: type[torch.autograd.Function]) -> type[torch.nn.BatchNorm1d]:
    """BatchNorm1d whose training-mode normalisation (over every dim but 1) is ``normalise.apply(x,
    eps)``, the running statistics updated as torch does and the affine map applied after; eval mode
    and single-value channels (which torch rejects) are torch's own."""

    class _Module(torch.nn.BatchNorm1d):
        def forward(self, x):
            if not self.training or x.shape[0] * (x.numel() // max(x.shape[0] * x.shape[1], 1)) <= 1:
                return super().forward(x)
            with torch.no_grad():  # the running statistics, as torch updates them
                super().forward(x.detach())
            y = normalise.apply(x, self.eps)
            if self.affine:
                y = y * _channel_view(self.weight, x.dim()) + _channel_view(self.bias, x.dim())
            return y

    _Module.__name__ = _Module.__qualname__ = f"_BatchNormThrough{normalise.__name__}"
    return _Module


class _BatchNormConstantStatistics(torch.autograd.Function):
    """Normalisation over every dim but 1; the backward is differentiable but holds mean and
    inverse standard deviation as constants."""

    @staticmethod
    def forward(x, eps):
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dims, keepdim=True)
        invstd = torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
        return (x - mean) * invstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, eps = inputs
        dims = [d for d in range(x.dim()) if d != 1]
        with torch.no_grad():
            mean = x.mean(dims, keepdim=True)
            invstd = torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
        ctx.dims = dims
        ctx.save_for_backward(x, mean, invstd)
        ctx.save_for_forward(x, mean, invstd)

    @staticmethod
    def backward(ctx, g):
        x, mean, invstd = ctx.saved_tensors
        xhat = (x - mean) * invstd  # wrong for the second order: mean and invstd carry no history
        return invstd * (g - g.mean(ctx.dims, keepdim=True) - xhat * (g * xhat).mean(ctx.dims, keepdim=True)), None

    @staticmethod
    def jvp(ctx, t, _):
        x, mean, invstd = ctx.saved_tensors
        xhat = (x - mean) * invstd  # the same constants: its derivative misses their dependence on x
        return invstd * (t - t.mean(ctx.dims, keepdim=True) - xhat * (t * xhat).mean(ctx.dims, keepdim=True))


class BatchNormDoubleBackwardConstantStatistics(ReplacesModule):
    name = "wrong-batchnorm-double-backward"
    op, module = "BatchNorm1d", _batch_norm_through(_BatchNormConstantStatistics)


class _PReLUWeightDetached(torch.autograd.Function):
    @staticmethod
    def forward(x, w):
        return F.prelu(x, w)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        wv = w.reshape((1, -1) + (1,) * (x.dim() - 2)) if x.dim() > 1 and w.numel() > 1 else w
        gx = torch.where(x > 0, g, g * wv.detach())  # wrong for the second order: d/dw of this is lost
        contrib = torch.where(x > 0, torch.zeros_like(g), g * x)
        if w.numel() == 1:
            gw = contrib.sum().reshape(w.shape)
        else:
            dims = [d for d in range(x.dim()) if d != (1 if x.dim() > 1 else 0)]
            gw = contrib.sum(dims).reshape(w.shape)
        return gx, gw


class _PReLUModule(torch.nn.PReLU):
    def forward(self, x):
        return _PReLUWeightDetached.apply(x, self.weight)


class PReLUDoubleBackwardDropsMixedTerm(ReplacesModule):
    name = "wrong-prelu-double-backward"
    op, module = "PReLU", _PReLUModule


# -- vmap -----------------------------------------------------------------------------------------------

class _SoftmaxRuleAtZero(torch.autograd.Function):
    @staticmethod
    def forward(x, dim):
        return torch.softmax(x, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output)

    backward = staticmethod(_softmax_backward)

    @staticmethod
    def vmap(info, in_dims, x, dim):
        if x.dim() == 1:  # scalar slices: each is its own softmax, 1
            return torch.softmax(x.unsqueeze(-1), -1).squeeze(-1), in_dims[0]
        # wrong: the vmapped dim is taken to be 0 whatever in_dims[0] says
        return torch.softmax(x, dim % (x.dim() - 1) + 1), 0


class _SoftmaxRule(torch.nn.Softmax):
    def forward(self, x):
        return _SoftmaxRuleAtZero.apply(x, _softmax_dim(self, x) % max(x.dim(), 1))


class SoftmaxBatchingRuleAssumesDimZero(ReplacesModule):
    name = "wrong-softmax-batching-rule"
    op, module = "Softmax", _SoftmaxRule


class _NormaliseMixingCases(torch.autograd.Function):
    @staticmethod
    def forward(x, eps):
        dims = [d for d in range(x.dim()) if d != 1]
        return (x - x.mean(dims, keepdim=True)) * torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, eps = inputs
        ctx.dims = [d for d in range(x.dim()) if d != 1]
        ctx.save_for_backward(output, torch.rsqrt(x.var(ctx.dims, unbiased=False, keepdim=True) + eps))

    @staticmethod
    def backward(ctx, g):
        xhat, invstd = ctx.saved_tensors
        return invstd * (g - g.mean(ctx.dims, keepdim=True) - xhat * (g * xhat).mean(ctx.dims, keepdim=True)), None

    @staticmethod
    def vmap(info, in_dims, x, eps):
        # wrong: the vmapped dim is folded into the batch dim N, so the statistics span every case
        x = x.movedim(in_dims[0], 0)
        cases, n = x.shape[:2]
        y = _NormaliseMixingCases.apply(x.reshape(cases * n, *x.shape[2:]), eps)
        return y.reshape(x.shape), 0


class BatchNormBatchingRuleMixesCases(ReplacesModule):
    name = "wrong-batchnorm-batching-rule"
    op, module = "BatchNorm1d", _batch_norm_through(_NormaliseMixingCases)


# -- accumulation ---------------------------------------------------------------------------------------

class GradientOverwritten(TorchBackend):
    """Each gradient overwrites ``.grad`` (the preset gradient of an accumulating case is lost)."""

    name = "wrong-gradient-overwritten"

    def run(self, case):
        if case.call and case.call.get("grad_init"):
            case = type(case)(**{**case.__dict__, "call": {k: v for k, v in case.call.items() if k != "grad_init"}})
        return super().run(case)
