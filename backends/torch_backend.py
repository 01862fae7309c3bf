"""The torch adapter: ``torch-cpu`` and ``torch-cuda`` (the same code on two devices).

Each case is executed the way a user would: build the torch.nn module from the declaration's
``TorchMapping``, put the case's parameters and buffers into it, give every input the case's
memory layout, run forward, then ``torch.autograd.backward`` with the case's cotangents. On CUDA,
TF32 is switched off for the whole run and every call is synchronised so that errors surface in
the case that caused them.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from backends.base import Backend, Capabilities
from conformance.case import Case, Layout, Result
from conformance.dtypes import DTYPE_NAMES
from conformance.spec import LayerSpec

_TORCH_DTYPE_NAMES = {"float64": "float64", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _torch() -> Any:
    import torch

    return torch


def torch_dtype(name: str) -> Any:
    return getattr(_torch(), _TORCH_DTYPE_NAMES[name])


def resolve(target: str) -> Any:
    """Import a dotted name such as ``torch.nn.Conv2d``."""
    module_name, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _fresh(values: np.ndarray) -> Any:
    """A torch tensor owning a private copy of ``values`` (never aliasing the case's arrays)."""
    return _torch().from_numpy(np.array(values, copy=True, order="C"))


def materialise(values: np.ndarray, layout: Layout, dtype: Any, device: str) -> Any:
    """A tensor with ``values`` (logical shape) stored in ``layout`` on ``device``.

    The result is a fresh leaf; strided layouts are views into a NaN-filled buffer so that a
    kernel reading outside the view poisons its output.
    """
    torch = _torch()
    shape = values.shape
    if layout.kind in ("channels_last", "permuted"):
        stored = np.ascontiguousarray(values.transpose(layout.perm))
        inverse = tuple(int(i) for i in np.argsort(layout.perm))
        return _fresh(stored).to(device=device, dtype=dtype).permute(*inverse).detach()
    if layout.kind == "strided":
        big = tuple(s * k for s, k in zip(shape, layout.step))
        buf = torch.full(big, float("nan"), dtype=dtype, device=device)
        view = buf[tuple(slice(None, None, k) for k in layout.step)]
        view.copy_(_fresh(values).to(device=device, dtype=dtype))
        return view.detach()
    if layout.kind == "expanded":
        index = tuple(slice(0, 1) if d in layout.dims else slice(None) for d in range(len(shape)))
        small = _fresh(values[index]).to(device=device, dtype=dtype)
        return small.expand(*shape).detach()
    return _fresh(values).to(device=device, dtype=dtype).contiguous()


def copy_into_layout(tensor: Any, layout: Layout) -> Any:
    """A differentiable copy of ``tensor`` stored in ``layout`` (used for in-place layers, which
    may not write into a leaf)."""
    torch = _torch()
    if layout.kind in ("channels_last", "permuted"):
        permuted_shape = [tensor.shape[d] for d in layout.perm]
        inverse = tuple(int(i) for i in np.argsort(layout.perm))
        out = torch.empty(permuted_shape, dtype=tensor.dtype, device=tensor.device).permute(*inverse)
        return out.copy_(tensor)
    if layout.kind == "strided":
        big = tuple(s * k for s, k in zip(tensor.shape, layout.step))
        buf = torch.full(big, float("nan"), dtype=tensor.dtype, device=tensor.device)
        return buf[tuple(slice(None, None, k) for k in layout.step)].copy_(tensor)
    return tensor.clone()


def to_numpy(t: Any) -> tuple[np.ndarray, str]:
    """(float64 or int64 array, the tensor's dtype name)."""
    torch = _torch()
    name = str(t.dtype).replace("torch.", "")
    t = t.detach().cpu()
    if t.is_floating_point():
        return t.to(torch.float64).numpy().copy(), name
    if t.dtype == torch.bool:
        return t.numpy().copy(), name
    return t.to(torch.int64).numpy().copy(), name


class TorchBackend(Backend):
    """torch.nn on one device (``cpu`` or ``cuda``).

    A subclass (an adapter for a torch-like framework, or a deliberately wrong one in the tests)
    names itself with a ``name`` class attribute; the default name is ``torch-<device>``.
    """

    name = ""

    def __init__(self, device: str = "cpu"):
        self._device = device
        self.name = type(self).name or f"torch-{device}"

    def capabilities(self) -> Capabilities:
        return Capabilities(devices=(self._device,), dtypes=DTYPE_NAMES)

    def availability(self) -> tuple[bool, str]:
        try:
            torch = _torch()
        except Exception as exc:  # torch missing or broken
            return False, f"torch cannot be imported: {exc}"
        if self._device == "cuda":
            if torch.version.cuda is None:
                return False, f"torch {torch.__version__} is a CPU-only build (no CUDA support compiled in)"
            if not torch.cuda.is_available():
                return False, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
        return True, ""

    def versions(self) -> dict[str, str]:
        torch = _torch()
        info = {"torch": torch.__version__}
        if self._device == "cuda" and torch.cuda.is_available():
            info["cuda"] = str(torch.version.cuda)
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cudnn"] = str(torch.backends.cudnn.version())
        return info

    def prepare(self) -> None:
        """Switch off reduced-precision shortcuts that would make results non-conforming by design."""
        torch = _torch()
        if self._device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

    # -- hooks for subclasses (deliberately wrong adapters in the tests override these) ---------
    def constructor_kwargs(self, spec: LayerSpec, case: Case) -> dict[str, Any]:
        """Constructor kwargs; lists under ``_``-prefixed names become tensors of the case dtype."""
        kwargs = spec.torch.constructor_kwargs(case)
        for key, value in list(kwargs.items()):
            if key.startswith("_") and isinstance(value, (list, np.ndarray)):
                kwargs[key] = _torch().tensor(np.asarray(value, dtype=np.float64), dtype=torch_dtype(case.dtype),
                                              device=self._device)
        return kwargs

    def build_module(self, spec: LayerSpec, case: Case) -> Any:
        """The module under test, before parameters and buffers are assigned."""
        return resolve(spec.torch.target)(**self.constructor_kwargs(spec, case))

    # -- execution -------------------------------------------------------------------------------
    def run(self, spec: LayerSpec, case: Case) -> Result:
        torch = _torch()
        self.prepare()
        dtype = torch_dtype(case.dtype)
        mapping = spec.torch
        tensors: dict[str, Any] = {}
        for name, arr in case.inputs.items():
            if arr.dtype.kind in "iub":
                tensors[name] = _fresh(np.asarray(arr, dtype=np.int64)).to(self._device)
            else:
                t = materialise(arr, case.layout(name), dtype, self._device)
                tensors[name] = t.requires_grad_(name in case.differentiable)
        module = self.build_module(spec, case)
        module = module.to(device=self._device, dtype=dtype) if hasattr(module, "to") else module
        for name in mapping.parameters:
            if name in tensors:
                setattr(module, name, torch.nn.Parameter(tensors[name], requires_grad=name in case.differentiable))
        for name in mapping.buffers:
            if name in tensors:
                setattr(module, name, tensors[name].detach())
        if hasattr(module, "train"):
            module.train(case.train)
        args = [tensors[name] for name in mapping.args]
        inplace = mapping.mutates_input(case)
        if inplace:
            i = mapping.args.index(mapping.inplace_input)
            args[i] = copy_into_layout(args[i], case.layout(mapping.inplace_input))
        meta = {"device": self._device, "strides": {n: list(t.stride()) for n, t in tensors.items()}}
        raw = module(*args, **case.forward_kwargs)
        raw = raw if isinstance(raw, (tuple, list)) else (raw,)
        outputs = dict(zip(mapping.outputs, raw))
        if inplace:
            outputs["mutated_input"] = args[mapping.args.index(mapping.inplace_input)]
        self._synchronise()
        self._backward(case, outputs)
        result = Result(meta=meta)
        for name, t in outputs.items():
            result.outputs[name], result.dtypes[name] = to_numpy(t)
        for name in case.differentiable:
            holder = getattr(module, name, None) if name in mapping.parameters else tensors.get(name)
            grad = None if holder is None else holder.grad
            if holder is not None and grad is None:
                grad = torch.zeros_like(holder)
            if grad is not None:
                result.grads[name], result.dtypes[f"grad.{name}"] = to_numpy(grad)
        for name in mapping.state:
            value = getattr(module, name, None)
            if value is not None:
                result.state[name], result.dtypes[f"state.{name}"] = to_numpy(value)
        return result

    def _backward(self, case: Case, outputs: dict[str, Any]) -> None:
        torch = _torch()
        roots, grads = [], []
        for name, cot in case.cotangents.items():
            t = outputs.get(name)
            if t is None or not t.requires_grad or tuple(t.shape) != cot.shape:
                continue  # a wrong output shape is reported by the comparison, not here
            roots.append(t)
            grads.append(_fresh(cot).to(device=t.device, dtype=t.dtype))
        if roots:
            torch.autograd.backward(roots, grads)
            self._synchronise()

    def _synchronise(self) -> None:
        if self._device == "cuda":
            _torch().cuda.synchronize()
