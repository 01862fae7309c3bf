"""Deliberately wrong adapters of torch.nn.init, the parametrizations, fusion and the lazy modules:
each models a real mistake and must be caught by a ci-profile run.

- ``KaimingFanOut``: kaiming_uniform_ with mode='fan_in' scales by fan_out.
- ``XavierNormalBound``: xavier_uniform_ draws U(±std) (the normal's scale) instead of U(±√3·std).
- ``OrthogonalWideRows``: orthogonal_ of a wide matrix normalises its rows without orthogonalising them.
- ``WeightNormWrongDim``: weight_norm(dim=0) normalises over dim 1's slices.
- ``SpectralNormFrozenU``: spectral_norm's power iteration updates v but never u in training.
- ``FusionForgetsBias``: fuse_conv_bn_eval of a conv without bias returns a conv without bias.
- ``LazyLinearFirstDim``: LazyLinear infers in_features from the input's first dim.
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend

INIT = torch.nn.init


class KaimingFanOut(TorchBackend):
    name = "wrong-kaiming-fan"

    def call_target(self, case, fn, args, kwargs):
        if fn is INIT.kaiming_uniform_ and kwargs.get("mode", "fan_in") == "fan_in":
            kwargs = {**kwargs, "mode": "fan_out"}
        return super().call_target(case, fn, args, kwargs)


class XavierNormalBound(TorchBackend):
    name = "wrong-xavier-bound"

    def call_target(self, case, fn, args, kwargs):
        if fn is INIT.xavier_uniform_:
            tensor = args[0]
            fan_in, fan_out = INIT._calculate_fan_in_and_fan_out(tensor)
            std = kwargs.get("gain", 1.0) * math.sqrt(2.0 / (fan_in + fan_out))
            with torch.no_grad():
                return tensor.uniform_(-std, std, generator=kwargs.get("generator"))
        return super().call_target(case, fn, args, kwargs)


class OrthogonalWideRows(TorchBackend):
    name = "wrong-orthogonal-wide"

    def call_target(self, case, fn, args, kwargs):
        tensor = args[0]
        if fn is INIT.orthogonal_ and tensor.ndim >= 2 and tensor.numel() and tensor.shape[0] < tensor[0].numel():
            with torch.no_grad():
                rows = torch.randn(tensor.shape[0], tensor[0].numel(), dtype=tensor.dtype,
                                   generator=kwargs.get("generator"))
                rows = F.normalize(rows, dim=1)  # unit rows, but not orthogonal to each other
                tensor.copy_(rows.reshape(tensor.shape) * kwargs.get("gain", 1.0))
            return tensor
        return super().call_target(case, fn, args, kwargs)


class WeightNormWrongDim(TorchBackend):
    """weight_norm(dim=0) that takes v's norm along dim 0 instead of over every other dim: g keeps its
    (out, 1, ...) shape, so only the values are wrong. (Building the module with dim=1 instead gave g
    another shape than the case's; on one .ci/run the worker then died of heap corruption, a crash
    rather than a wrong value. Not reduced to a torch repro.)"""
    name = "wrong-weight-norm-dim"

    def build_module(self, case, cls, kwargs):
        module = super().build_module(case, cls, kwargs)
        if cls is torch.nn.utils.parametrizations.weight_norm and kwargs.get("dim", 0) == 0:
            norm = module.parametrizations.weight[0]
            norm.forward = lambda g, v: g * v / v.norm(dim=0, keepdim=True)
        return module


def _power_method_v_only(self, weight_mat, n_power_iterations):
    with torch.no_grad():
        for _ in range(n_power_iterations):
            self._v = F.normalize(torch.mv(weight_mat.H, self._u), dim=0, eps=self.eps, out=self._v)


class SpectralNormFrozenU(TorchBackend):
    name = "wrong-spectral-norm-u"

    def build_module(self, case, cls, kwargs):
        module = super().build_module(case, cls, kwargs)
        if cls is torch.nn.utils.parametrizations.spectral_norm:
            norm = module.parametrizations.weight[0]
            norm._power_method = types.MethodType(_power_method_v_only, norm)
        return module


class FusionForgetsBias(TorchBackend):
    name = "wrong-fusion-bias"

    def call_target(self, case, fn, args, kwargs):
        fused = super().call_target(case, fn, args, kwargs)
        if fn is torch.nn.utils.fusion.fuse_conv_bn_eval and args[0].bias is None:
            fused.bias = None
        return fused


class _LazyLinearFirstDim(torch.nn.LazyLinear):
    def initialize_parameters(self, input):  # noqa: A002 (torch's name)
        if self.has_uninitialized_params():
            with torch.no_grad():
                self.in_features = input.shape[0]  # wrong: the features are the last dim
                self.weight.materialize((self.out_features, self.in_features))
                if self.bias is not None:
                    self.bias.materialize((self.out_features,))
                self.reset_parameters()


class LazyLinearFirstDim(TorchBackend):
    name = "wrong-lazy-linear"

    def build_module(self, case, cls, kwargs):
        if cls is torch.nn.LazyLinear:
            return _LazyLinearFirstDim(**kwargs)
        return super().build_module(case, cls, kwargs)
