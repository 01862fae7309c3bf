"""Deliberately wrong adapters for clip_grad_norm_ and the containers: each models a real mistake.

clip_grad_norm_ (``call_target`` replaces the function):
- ``ClipReturnsNormAfterClipping``: clips correctly but returns the norm of the clipped gradients.
- ``ClipNeverClamps``: scales by max_norm / (total + 1e-6) without clamping at 1, so gradients below
  the threshold are amplified.
- ``ClipSumsTensorNorms``: the total norm is the sum of the per-tensor norms instead of their p-norm.

Containers:
- ``SequentialSkipsLast``: a Sequential whose forward stops before its last module.
- ``BatchNormBuffersFrozen``: the container restores its BatchNorm children's running statistics after
  the call (buffers not updated inside a container).
- ``Conv2dIgnoresBias``: a bug planted in one layer: Conv2d convolves without its bias (it is still a
  parameter, and receives no gradient). Caught when only the container entries run.
- ``SequentialSortsNames``: a Sequential that runs its children in sorted-name order instead of
  insertion order (only visible with named children: ``Sequential(OrderedDict)``).
- ``DataParallelGathersReversed``: a DataParallel that scatters the batch over two replicas and
  gathers their outputs in reverse order.

Container semantics (``build_module`` replaces the container class):
- ``ModuleListNegativeSetitemOffByOne``: ``c[i] = m`` with a negative i writes one slot too far left
  (i + len - 1, the classic off-by-one of hand-written index normalisation).
- ``ModuleDictUpdateSorted``: ``update`` (and so the constructor) inserts the pairs in sorted key order
  instead of the mapping's own order.
- ``ParameterDictKeepsPlainTensors``: ``d[k] = tensor`` stores a plain tensor as it is (an attribute,
  not a registered Parameter).

Gradient utilities (``call_target`` replaces the function):
- ``ClipValueOnlyPositive``: clip_grad_value_ clamps from above only (negative gradients unbounded).
- ``TotalNormInfAsSum``: get_total_norm's infinity norm sums the magnitudes (the 1-norm's code path).
- ``VectorToParametersReversed``: vector_to_parameters fills the parameters in reverse order.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from backends.torch_backend import TorchBackend
from conformance.spec import spec_of


def _parameters(args: list[Any]) -> list[Any]:
    params = args[0]
    return [params] if isinstance(params, torch.Tensor) else list(params)


def _norm(grads: list[Any], norm_type: Any) -> Any:
    if not grads:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, float(norm_type)) for g in grads]),
                                    float(norm_type))


class _Clip(TorchBackend):
    def is_clip(self, fn: Any) -> bool:
        return fn is torch.nn.utils.clip_grad_norm_


class ClipReturnsNormAfterClipping(_Clip):
    name = "wrong-clip-norm-after"

    def call_target(self, case, fn, args, kwargs):
        out = fn(*args, **kwargs)
        if not self.is_clip(fn):
            return out
        grads = [p.grad for p in _parameters(args) if p.grad is not None]
        return _norm(grads, kwargs.get("norm_type", 2.0)).to(out.dtype)


class ClipNeverClamps(_Clip):
    name = "wrong-clip-no-clamp"

    def call_target(self, case, fn, args, kwargs):
        if not self.is_clip(fn):
            return fn(*args, **kwargs)
        grads = [p.grad for p in _parameters(args) if p.grad is not None]
        total = _norm(grads, kwargs.get("norm_type", 2.0))
        with torch.no_grad():
            for g in grads:
                g.mul_(kwargs["max_norm"] / (total.to(g.dtype) + 1e-6))
        return total.to(grads[0].dtype) if grads else total


class ClipSumsTensorNorms(_Clip):
    name = "wrong-clip-sums-norms"

    def call_target(self, case, fn, args, kwargs):
        if not self.is_clip(fn):
            return fn(*args, **kwargs)
        grads = [p.grad for p in _parameters(args) if p.grad is not None]
        if not grads:
            return fn(*args, **kwargs)
        p = float(kwargs.get("norm_type", 2.0))
        total = sum(torch.linalg.vector_norm(g, p) for g in grads)
        with torch.no_grad():
            coef = torch.clamp(kwargs["max_norm"] / (total + 1e-6), max=1.0)
            for g in grads:
                g.mul_(coef)
        return total


def _class(cls: Any) -> Any:
    return cls.func if isinstance(cls, functools.partial) else cls


class SequentialSkipsLast(TorchBackend):
    name = "wrong-sequential-skips-last"

    def call_target(self, case, fn, args, kwargs):
        if type(fn) is torch.nn.Sequential:
            x = args[0]
            for module in list(fn)[:-1]:
                x = module(x)
            return x
        return fn(*args, **kwargs)


class BatchNormBuffersFrozen(TorchBackend):
    """Every module a container case calls (the container, or each child of a loop) gets its
    BatchNorm running statistics restored after the call."""

    name = "wrong-batchnorm-buffers-frozen"

    def call_target(self, case, fn, args, kwargs):
        if not (isinstance(fn, torch.nn.Module) and spec_of(case).family == "container"):
            return fn(*args, **kwargs)
        saved = [(m, m.running_mean.clone(), m.running_var.clone()) for m in fn.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]
        out = fn(*args, **kwargs)
        with torch.no_grad():
            for m, mean, var in saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        return out


class Conv2dIgnoresBias(TorchBackend):
    name = "wrong-conv2d-ignores-bias"

    def build_module(self, case, cls, kwargs):
        module = super().build_module(case, cls, kwargs)
        if _class(cls) is torch.nn.Conv2d:
            module.forward = lambda x: module._conv_forward(x, module.weight, None)
        return module


class SequentialSortsNames(TorchBackend):
    name = "wrong-sequential-sorted-names"

    def call_target(self, case, fn, args, kwargs):
        if type(fn) is torch.nn.Sequential:
            x = args[0]
            for name in sorted(fn._modules):
                x = fn._modules[name](x)
            return x
        return fn(*args, **kwargs)


class DataParallelGathersReversed(TorchBackend):
    """Scatters the batch over two replicas, as on two devices, but gathers the chunks in reverse order."""

    name = "wrong-dataparallel-gathers-reversed"

    def call_target(self, case, fn, args, kwargs):
        if isinstance(fn, torch.nn.DataParallel) and args[0].shape[0] > 1:
            chunks = torch.tensor_split(args[0], 2)
            return torch.cat([fn.module(chunk) for chunk in reversed(chunks)])
        return fn(*args, **kwargs)


# -- container semantics ---------------------------------------------------------------------------------

class _OffByOneModuleList(torch.nn.ModuleList):
    def __setitem__(self, idx, module):
        if idx < 0:
            idx = idx + len(self) - 1  # wrong: -1 must be len - 1
        return super().__setitem__(idx, module)


class _SortedUpdateModuleDict(torch.nn.ModuleDict):
    def update(self, modules):
        pairs = modules.items() if hasattr(modules, "items") else modules
        for key, module in sorted(pairs, key=lambda pair: pair[0]):  # wrong: the mapping's order is lost
            self[key] = module


class _PlainTensorParameterDict(torch.nn.ParameterDict):
    def __setitem__(self, key, value):
        if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
            self._keys[key] = None
            self.__dict__[key] = value  # wrong: kept as a plain attribute, never registered
            return
        super().__setitem__(key, value)


class _ReplacesContainer(TorchBackend):
    """Builds ``replacement`` wherever the call tree builds ``replaced``."""

    replaced: type = torch.nn.Module
    replacement: type = torch.nn.Module

    def build_module(self, case, cls, kwargs):
        if _class(cls) is self.replaced:
            args = cls.args if isinstance(cls, functools.partial) else ()
            return self.replacement(*args, **kwargs)
        return super().build_module(case, cls, kwargs)


class ModuleListNegativeSetitemOffByOne(_ReplacesContainer):
    name = "wrong-modulelist-negative-setitem"
    replaced, replacement = torch.nn.ModuleList, _OffByOneModuleList


class ModuleDictUpdateSorted(_ReplacesContainer):
    name = "wrong-moduledict-update-sorted"
    replaced, replacement = torch.nn.ModuleDict, _SortedUpdateModuleDict


class ParameterDictKeepsPlainTensors(_ReplacesContainer):
    name = "wrong-parameterdict-plain-tensors"
    replaced, replacement = torch.nn.ParameterDict, _PlainTensorParameterDict


# -- gradient utilities ------------------------------------------------------------------------------------

class ClipValueOnlyPositive(TorchBackend):
    name = "wrong-clip-value-only-positive"

    def call_target(self, case, fn, args, kwargs):
        if fn is not torch.nn.utils.clip_grad_value_:
            return fn(*args, **kwargs)
        with torch.no_grad():
            for p in _parameters(args):
                if p.grad is not None:
                    p.grad.clamp_(max=float(kwargs["clip_value"]))  # wrong: no lower bound
        return None


class TotalNormInfAsSum(TorchBackend):
    name = "wrong-total-norm-inf-as-sum"

    def call_target(self, case, fn, args, kwargs):
        p = float(kwargs.get("norm_type", 2.0))
        if fn is not torch.nn.utils.get_total_norm or p != float("inf"):
            return fn(*args, **kwargs)
        tensors = _parameters(args)
        if not tensors:
            return torch.tensor(0.0)
        return torch.stack([t.abs().sum() for t in tensors]).sum()  # wrong: the 1-norm


class VectorToParametersReversed(TorchBackend):
    name = "wrong-vector-to-parameters-reversed"

    def call_target(self, case, fn, args, kwargs):
        if fn is not torch.nn.utils.vector_to_parameters:
            return fn(*args, **kwargs)
        vec, params = args[0], list(args[1])
        pointer = 0
        for param in reversed(params):  # wrong: the first slice belongs to the first parameter
            n = param.numel()
            param.data = vec[pointer:pointer + n].view_as(param).data
            pointer += n
        return None
