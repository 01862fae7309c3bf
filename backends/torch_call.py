"""The call interpreter: runs one declared call of a torch(-like) API and reads back what it did.

This module imports only NumPy and torch, never the rest of nnconform: the torch adapter uses it,
and every repro script carries its source verbatim, so a repro runs exactly what the suite ran.

A *call* is plain JSON data::

    {"kind": "module" | "function",
     "target": "torch.nn.LSTM",              # dotted name of the class or function
     "init": {name: node},                    # constructor keyword arguments (modules)
     "init_args": [node],                     # positional constructor arguments (Sequential(*modules))
     "parameters": [path], "buffers": [path], # case inputs installed on the module ("0.weight")
     "train": true,                           # module.train(train)
     "seed": 123 | null,                      # torch.manual_seed before the call (random layers)
     "args": [node], "kwargs": {name: node},  # the call's arguments
     "forward": node,                         # evaluated instead of calling the module with args
     "prepare": [node, ...],                  # evaluated once at setup, as plain calls (no grad)
     "outputs": pattern,                      # names for the call's results
     "mutated": [name],                       # tensors whose value after the call is read back
     "random": {choice: {"rule": "nonzero", "of": output}}}   # random choices read back

Argument *nodes*: a JSON scalar is itself (the strings "inf", "-inf" and "nan" are floats); a JSON
list is a tuple of nodes; objects are ``{"input": name}`` (the case input: a tensor in its layout,
a leaf that requires grad when differentiable; ``"copy": true`` passes a differentiable copy in
the same layout, for in-place calls; ``"device": "cpu"`` keeps it on the CPU), ``{"list": [node]}``
(a Python list), ``{"packed": {"data": node, "batch_sizes": node, "sorted_indices": node,
"unsorted_indices": node}}`` (a PackedSequence), ``{"parameter": name, "grad": name | null}`` (an
``nn.Parameter`` with that ``.grad``), ``{"module": {"target": ..., "init": {...}}}`` (a module
instance), ``{"call": {"target": ..., "args": [node], "kwargs": {...}}}`` (the result of calling a
function: compositions such as a pack/pad round trip, run as the backend runs calls; with
``"plain": true`` a plain Python call, never the backend's: scaffolding that builds an argument,
such as a ``functools.partial``), ``{"literal": value}`` (value as is),
``{"device": null}`` (the device the call runs on: a generator is made for it),
``{"attribute": path}`` (the module under test's attribute at that dotted path, after its
parameters are installed; ``""`` is the module itself) and ``{"loop": {"over": node, "input": node}}``
(``x = input; for m in over: x = m(x)``: a container driven by a loop, in its iteration order).
A ``forward`` node replaces the module call: a ModuleList has no forward of its own and is run by a
loop over ``{"attribute": ""}``; a functional model is a tree of calls reading a ParameterList's
entries as attributes.

Output *patterns*: a name binds the result, null ignores it, a list destructures a tuple, and
``{"packed": {"data": name, "batch_sizes": name, ...}}`` destructures a PackedSequence. A result
that is None (a PackedSequence's indices when the batch was sorted) is left out.

``mutated`` names a module parameter or buffer (by attribute path), an input passed as a copy, the
``grad`` of a parameter node, or an input tensor; its value after the call is compared like an
output. ``random`` says how each random choice is read back: rule ``nonzero`` — where output
``of`` is non-zero (cases of such layers draw non-zero inputs, so a kept element can never look
dropped); rule ``rand`` — the uniform samples the layer drew first after ``torch.manual_seed(seed)``,
replayed as ``torch.rand(shape)`` in the case dtype (FractionalMaxPool2d draws its samples so); rule
``ratio`` — output ``of`` divided by input ``over`` (its value before the call), in float64: RReLU's
slopes, whose cases draw finite non-zero inputs; rule
``bernoulli`` — the keep masks the call drew after the seed, replayed as the sequence ``draws`` of
``torch.nn.functional.dropout(ones, p, True) != 0`` on ones of that shape and dtype (stored as
``shape`` and seen through ``view`` as the layer's tensor was: the layout it had; the mask read
back in stored order, then in the reference's order through ``perm``), flattened,
concatenated: dropout inside attention and transformer layers, whose masks never reach an output.
The op itself, not ``bernoulli_``: at::dropout draws ``bernoulli_(1 - p)`` on the CPU but runs the
fused ``native_dropout`` kernel (its own Philox layout) on CUDA. On CUDA such a call runs with
sdpa's math kernel only (the fused kernels draw their dropout inside the kernel); rule
``value`` — the value after the call of output ``of`` (a name) or of node ``of`` (an object, e.g. a
module's ``{"attribute": "weight"}``): the values an initialiser drew (None, a parameter the module
does not have, reads as an empty array).

``{"steps": {"on": node, "do": [step], "names": [str]}}`` is a sequence of operations on one object
(a container edited as a user would, then observed). Each step, in order, is ``{"method": name,
"args": [node], "kwargs": {...}}`` (``on``'s method, called through ``invoke``), or without a method
a call of the object itself with ``args``, or with neither the object itself; ``"on": node`` in a
step applies it to that node's value instead (a slice, ``c + other``); ``"chain": node`` feeds that
node's value through each element of the step's result in turn (``x = m(x)``: a loop over
``values()``). Arguments are evaluated just before their step, so an ``{"attribute": ...}`` node sees
the container as it is then; modules among them (also inside lists, tuples and dicts) are moved to
the call's device and dtype, as the module under test is. The node's value is the list of the
results of the steps marked ``"read": true``, each *encoded* as data: a str is its index in
``names`` (-1 if absent), None is -2, a bool or int itself, a tensor itself, a module the order of
its first appearance among the steps' arguments and read results (-1 never), a tuple a list of its
encoded items, a mapping the encoded list of its keys, and any other iterable the list of its
encoded items, packed into one tensor (the flattened concatenation of tensors, else int64; an empty
one is an empty int64 tensor); a step with ``"pairs": true`` reads its result's (key, value) pairs
(a mapping's items) as two packed lists, [keys, values].

Gradient accumulation: ``"grad_init": {"seed": s, "scale": {input: scale}}`` sets the ``.grad`` of
every leaf that requires grad (inputs and parameters) to ``initial_grad(...)`` before the backward,
so the gradients read back are the accumulated ``G + grad`` (small integers times ``scale``, exact
in every dtype).

``backends.torch_run.run_call`` runs a call: plainly with its backward (``run_vjp``, here), or in a
derivative *mode* (``"mode": {"kind": ..., "seed": s, "tier": tier, ...}``: ``jvp``, ``vjp2``, ``vmap``).
"""

from __future__ import annotations

import functools
import importlib
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

NON_FINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def _torch() -> Any:
    import torch

    return torch


# -- arrays drawn from seeds (NumPy only: the reference draws the same; the modes' in torch_run)

def _seed(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) % 2**32, zlib.crc32(name.encode())])


def initial_grad(grad_init: dict[str, Any], name: str, shape: Any) -> np.ndarray:
    """The ``.grad`` an accumulating case presets on leaf ``name``: integers in [-3, 3] times its
    ``scale`` (a power of two), so that G + grad is exact wherever the gradient's sum is."""
    rng = _seed(grad_init["seed"], "grad." + name)
    scale = float(grad_init["scale"].get(name, 1.0))
    return rng.integers(-3, 4, size=tuple(int(n) for n in shape)).astype(np.float64) * scale


_UNSUPPORTED_MARKERS = (
    "is not implemented", "not implemented for", "NotImplemented", "not supported", "not yet supported",
    "does not support", "doesn't support", "don't support", "Batching rule not implemented", "vmap:",
    "data-dependent", "is not differentiable twice", "that does not support forward AD",
    "attempted to call in-place operation", "are not batched", "were not batched",
    "No available kernel", "under vmap transform is not allowed",  # (e.g. Tensor.data under vmap)
    "must override the setup_context staticmethod",  # a legacy autograd.Function (CrossMapLRN2d)
    "NYI:",  # functorch's "not yet implemented" (is_contiguous(memory_format) under vmap)
)


def transform_unsupported(message: str) -> bool:
    """Whether an error raised by a transform (forward AD, double backward, vmap) says that torch
    cannot apply it to the call, rather than that the call is wrong."""
    return any(marker in message for marker in _UNSUPPORTED_MARKERS)


def resolve(target: str) -> Any:
    """Import a dotted name such as ``torch.nn.Conv2d`` or ``torch.nn.utils.rnn.pack_padded_sequence``."""
    module_name, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def torch_dtype(name: str) -> Any:
    return getattr(_torch(), name)


def _fresh(values: np.ndarray) -> Any:
    """A torch tensor owning a private copy of ``values`` (never aliasing the caller's arrays)."""
    return _torch().from_numpy(np.array(values, copy=True, order="C"))


def materialise(values: np.ndarray, layout: dict[str, Any], dtype: Any, device: str) -> Any:
    """A fresh tensor holding ``values`` (logical shape) stored as ``layout`` says on ``device``.

    Layout kinds: contiguous; channels_last / permuted (dims stored in the order ``perm``,
    outermost first); strided (every ``step[d]``-th element of a buffer whose gaps hold NaN, so a
    kernel that reads them poisons its result); expanded (stride 0 along ``dims``).
    """
    torch = _torch()
    kind = layout.get("kind", "contiguous")
    shape = values.shape
    if kind in ("channels_last", "permuted"):
        perm = list(layout["perm"])
        stored = np.ascontiguousarray(values.transpose(perm))
        return _fresh(stored).to(device=device, dtype=dtype).permute(*np.argsort(perm).tolist()).detach()
    if kind == "strided":
        step = list(layout["step"])
        fill = float("nan") if dtype.is_floating_point else 0
        buf = torch.full([s * k for s, k in zip(shape, step)], fill, dtype=dtype, device=device)
        view = buf[tuple(slice(None, None, k) for k in step)]
        view.copy_(_fresh(values).to(device=device, dtype=dtype))
        return view.detach()
    if kind == "expanded":
        dims = list(layout["dims"])
        index = tuple(slice(0, 1) if d in dims else slice(None) for d in range(len(shape)))
        return _fresh(values[index]).to(device=device, dtype=dtype).expand(*shape).detach()
    return _fresh(values).to(device=device, dtype=dtype).contiguous()


def copy_into_layout(tensor: Any, layout: dict[str, Any]) -> Any:
    """A differentiable copy of ``tensor`` stored as ``layout`` says (in-place calls may not write
    into a leaf that requires grad)."""
    torch = _torch()
    kind = layout.get("kind", "contiguous")
    if kind in ("channels_last", "permuted"):
        perm = list(layout["perm"])
        out = torch.empty([tensor.shape[d] for d in perm], dtype=tensor.dtype, device=tensor.device)
        return out.permute(*np.argsort(perm).tolist()).copy_(tensor)
    if kind == "strided":
        step = list(layout["step"])
        buf = torch.full([s * k for s, k in zip(tensor.shape, step)], float("nan"), dtype=tensor.dtype,
                         device=tensor.device)
        return buf[tuple(slice(None, None, k) for k in step)].copy_(tensor)
    return tensor.clone()


def to_numpy(t: Any) -> tuple[np.ndarray, str]:
    """(float64, bool or int64 array, the tensor's dtype name)."""
    torch = _torch()
    name = str(t.dtype).replace("torch.", "")
    t = t.detach().cpu()
    if t._is_zerotensor():  # forward-mode AD's exact zero (a tangent with no dependence): no storage
        t = torch.zeros(t.shape, dtype=t.dtype)
    if t.layout != torch.strided:  # a sparse gradient (Embedding(sparse=True)) is compared densified
        t = t.to_dense()
    if t.is_floating_point():
        return t.to(torch.float64).numpy().copy(), name
    if t.dtype == torch.bool:
        return t.numpy().copy(), name
    return t.to(torch.int64).numpy().copy(), name


def _owner(module: Any, path: str) -> tuple[Any, str]:
    """(the submodule holding attribute ``path``, the attribute's own name)."""
    prefix, _, attr = path.rpartition(".")
    return (module.get_submodule(prefix) if prefix else module), attr


def _plain_call(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


class CallInterpreter:
    """Runs one call (see the module docstring) on ``device`` in floating dtype ``dtype``.

    ``inputs`` are the case's arrays, ``types`` how each travels (float | int64 | bool |
    int_list), ``layouts`` their layouts (as data), ``requires_grad`` the differentiable names.
    ``build`` constructs a module from its class and keyword arguments and ``invoke`` calls the
    target; adapters of torch-like frameworks (and deliberately wrong adapters in nnconform's
    tests) replace them.
    """

    def __init__(self, device: str, dtype: str, inputs: dict[str, np.ndarray], types: dict[str, str],
                 layouts: dict[str, dict[str, Any]], requires_grad: set[str] | frozenset[str],
                 build: Callable[[Any, dict[str, Any]], Any] | None = None,
                 invoke: Callable[[Any, list[Any], dict[str, Any]], Any] | None = None):
        self.device = device
        self.dtype = torch_dtype(dtype)
        self.inputs = inputs
        self.types = types
        self.layouts = layouts
        self.requires_grad = set(requires_grad)
        self.build = build or (lambda cls, kwargs: cls(**kwargs))
        self.invoke = invoke or _plain_call
        self.leaves: dict[str, Any] = {}  # input name -> the tensor built for it
        self.passed: dict[str, Any] = {}  # input name -> the copy passed to an in-place call
        self.parameter_nodes: dict[str, Any] = {}  # grad input name -> its Parameter
        self.module: Any = None
        self.fn: Any = None  # what the call invokes: the module, or the target function
        # Inside a transform: input name -> the tensor the transformed function received.
        self.overrides: dict[str, Any] = {}
        self.in_vmap = False
        self.seen: list[Any] = []  # modules of "steps" nodes, in order of first appearance

    # -- inputs ----------------------------------------------------------------------------------
    def tensor(self, name: str, device: str | None = None) -> Any:
        """The case input ``name`` as it travels, built once per device (the same object on every
        use, so that its gradient and its value after the call can be read back)."""
        if device is None and name in self.overrides:
            return self.overrides[name]
        key = name if device is None else f"{name}@{device}"
        if key not in self.leaves:
            self.leaves[key] = self._build_input(name, device or self.device)
        return self.leaves[key]

    def _build_input(self, name: str, device: str) -> Any:
        values = self.inputs[name]
        kind = self.types.get(name) or ("bool" if values.dtype.kind == "b" else
                                        "int64" if values.dtype.kind in "iu" else "float")
        if kind == "int_list":
            return [int(v) for v in np.asarray(values).reshape(-1)]
        if kind in ("int64", "bool"):
            return _fresh(np.asarray(values, dtype=np.int64 if kind == "int64" else bool)).to(device)
        layout = self.layouts.get(name, {"kind": "contiguous"})
        t = materialise(np.asarray(values, dtype=np.float64), layout, self.dtype, device)
        # only leaves of the gradient are marked: a tensor built inside a torch.func transform (a
        # mask first used there) may not call requires_grad_ at all
        return t.requires_grad_() if name in self.requires_grad else t

    def node(self, node: Any) -> Any:
        """Interpret an argument node."""
        if isinstance(node, str):
            return NON_FINITE.get(node, node)
        if isinstance(node, list):
            return tuple(self.node(n) for n in node)
        if not isinstance(node, dict):
            return node
        if "input" in node:
            name = node["input"]
            t = self.tensor(name, node.get("device"))
            if node.get("copy"):  # (under vmap a batched value cannot be copied into a plain tensor)
                t = t.clone() if self.in_vmap else copy_into_layout(t, self.layouts.get(name, {"kind": "contiguous"}))
                self.passed[name] = t
            return t
        if "list" in node:
            return [self.node(n) for n in node["list"]]
        if "packed" in node:
            from torch.nn.utils.rnn import PackedSequence

            fields = {k: self.node(v) for k, v in node["packed"].items()}
            return PackedSequence(fields["data"], fields["batch_sizes"], fields.get("sorted_indices"),
                                  fields.get("unsorted_indices"))
        if "parameter" in node:
            torch = _torch()
            p = torch.nn.Parameter(self.tensor(node["parameter"]).detach().clone(),
                                   requires_grad=node["parameter"] in self.requires_grad)
            if node.get("grad") is not None:
                p.grad = self.tensor(node["grad"]).detach().clone()
                self.parameter_nodes[node["grad"]] = p
            return p
        if "module" in node:
            spec = node["module"]
            return self.build(resolve(spec["target"]), {k: self.node(v) for k, v in spec.get("init", {}).items()})
        if "call" in node:
            inner = node["call"]
            run = _plain_call if inner.get("plain") else self.invoke
            return run(resolve(inner["target"]), [self.node(n) for n in inner.get("args", ())],
                       {k: self.node(v) for k, v in inner.get("kwargs", {}).items()})
        if "literal" in node:
            return node["literal"]
        if "device" in node:
            return self.device
        if "attribute" in node:
            path = node["attribute"]
            if not path:
                return self.module
            owner, attr = _owner(self.module, path)
            return getattr(owner, attr)
        if "loop" in node:
            x = self.node(node["loop"]["input"])
            for m in self.node(node["loop"]["over"]):
                x = self.invoke(m, [x], {})
            return x
        if "steps" in node:
            return self._steps(node["steps"])
        raise ValueError(f"unknown call node {node!r}")

    # -- a sequence of operations on one object (the "steps" node) ------------------------------
    def _steps(self, spec: dict[str, Any]) -> list[Any]:
        target = self.node(spec["on"])
        names = list(spec.get("names", ()))
        reads = []
        for step in spec["do"]:
            obj = self.node(step["on"]) if "on" in step else target
            args = [self.node(n) for n in step.get("args", ())]
            kwargs = {k: self.node(v) for k, v in step.get("kwargs", {}).items()}
            for value in (*args, *kwargs.values()):
                self._note(value, move=True)
            if "method" in step:
                result = self.invoke(getattr(obj, step["method"]), args, kwargs)
            else:
                result = self.invoke(obj, args, kwargs) if "args" in step or "kwargs" in step else obj
            if "chain" in step:
                x = self.node(step["chain"])
                for m in result:
                    x = self.invoke(m, [x], {})
                result = x
            if step.get("read"):
                if step.get("pairs"):
                    items = list(result.items() if hasattr(result, "items") else result)
                    reads.append([self._pack([self._encode(k, names) for k, _ in items]),
                                  self._pack([self._encode(v, names) for _, v in items])])
                else:
                    reads.append(self._encode(result, names))
        return reads

    def _note(self, value: Any, move: bool = False) -> int:
        """A module's index in order of first appearance (appended when new; moved to the call's
        device and dtype when it comes as an argument); containers are walked, -1 for anything else."""
        torch = _torch()
        if isinstance(value, torch.nn.Module):
            for i, seen in enumerate(self.seen):
                if seen is value:
                    return i
            if move:
                value.to(device=self.device, dtype=self.dtype)
            self.seen.append(value)
            return len(self.seen) - 1
        if isinstance(value, dict):
            for item in value.values():
                self._note(item, move)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._note(item, move)
        return -1

    def _encode(self, value: Any, names: list[str]) -> Any:
        torch = _torch()
        if isinstance(value, str):
            return names.index(value) if value in names else -1
        if value is None:
            return -2
        if isinstance(value, (bool, int, float)):
            return value
        if torch.is_tensor(value):
            return value  # (differentiable: a forward read can be the call's output)
        if isinstance(value, torch.nn.Module):
            return self._note(value)
        if isinstance(value, tuple):
            return [self._encode(v, names) for v in value]
        return self._pack([self._encode(v, names) for v in value])

    @staticmethod
    def _pack(items: list[Any]) -> Any:
        torch = _torch()
        if items and all(torch.is_tensor(t) for t in items):
            return torch.cat([t.reshape(-1) for t in items])
        if any(torch.is_tensor(t) or isinstance(t, list) for t in items):
            raise ValueError("a read mixes tensors with other values: read them apart")
        return torch.tensor(items, dtype=torch.int64)

    # -- the call ----------------------------------------------------------------------------------
    def setup(self, call: dict[str, Any]) -> None:
        """Build the module (installing the case's parameters and buffers) or resolve the function."""
        torch = _torch()
        target = resolve(call["target"])
        if call.get("kind", "module") == "module":
            init = {k: self.node(v) for k, v in call.get("init", {}).items()}
            init_args = [self.node(v) for v in call.get("init_args", ())]
            module = self.build(functools.partial(target, *init_args) if init_args else target, init)
            if hasattr(module, "to"):
                module = module.to(device=self.device, dtype=self.dtype)
            for path in call.get("parameters", ()):
                if path in self.inputs:
                    owner, attr = _owner(module, path)
                    value = torch.nn.Parameter(self.tensor(path), requires_grad=path in self.requires_grad)
                    setattr(owner, attr, value)
            for path in call.get("buffers", ()):
                if path in self.inputs:
                    owner, attr = _owner(module, path)
                    setattr(owner, attr, self.tensor(path).detach())
            if hasattr(module, "train"):
                module.train(bool(call.get("train", True)))
            self.module = module
            self.fn = module
            hook, self.invoke = self.invoke, _plain_call  # setup, not the call under test: run as is
            try:
                for node in call.get("prepare", ()):  # before any transform: a lazy module's dry run
                    if call.get("seed") is not None:  # (its initialisation draws as it did in the call)
                        torch.manual_seed(int(call["seed"]))
                    with torch.no_grad():
                        self.node(node)
            finally:
                self.invoke = hook
        else:
            self.fn = target

    def invoke_call(self, call: dict[str, Any]) -> Any:
        """Evaluate the arguments and invoke the call (after ``setup``); the raw result."""
        torch = _torch()
        args = [self.node(n) for n in call.get("args", ())]
        kwargs = {k: self.node(v) for k, v in call.get("kwargs", {}).items()}
        if call.get("seed") is not None:
            torch.manual_seed(int(call["seed"]))
        if str(self.device).startswith("cuda") and any(
                r.get("rule") == "bernoulli" for r in (call.get("random") or {}).values()):
            # The flash, memory-efficient and cuDNN kernels draw sdpa's dropout inside the kernel:
            # only the math kernel's at::dropout can be replayed (rule "bernoulli").
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.MATH):
                return self.node(call["forward"]) if "forward" in call else self.invoke(self.fn, args, kwargs)
        return self.node(call["forward"]) if "forward" in call else self.invoke(self.fn, args, kwargs)

    def call(self, call: dict[str, Any]) -> dict[str, Any]:
        """Build, install, call; return the named results (tensors or other values)."""
        self.setup(call)
        named: dict[str, Any] = {}
        _bind(call.get("outputs", "output"), self.invoke_call(call), named)
        return named

    def module_paths(self, call: dict[str, Any]) -> tuple[str, ...]:
        """The case inputs installed on the module (parameters and buffers)."""
        if self.module is None:
            return ()
        return tuple(p for p in (*call.get("parameters", ()), *call.get("buffers", ())) if p in self.inputs)

    def run_with(self, call: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """The call (after ``setup``) with the inputs in ``values`` replaced by the given tensors (a
        transform's inputs): module parameters and buffers through ``torch.func.functional_call``,
        other inputs where the call reads them. Returns the named results and, under
        ``state.<name>``, the value after the call of every mutated tensor."""
        torch = _torch()
        paths = set(self.module_paths(call))
        swapped = {k: v for k, v in values.items() if k in paths}
        self.overrides = dict(values)
        self.passed = {}
        named: dict[str, Any] = {}
        try:
            if swapped:
                wrapper = _Invoker(self, call)
                raw = torch.func.functional_call(wrapper, {f"inner.{k}": v for k, v in swapped.items()}, ())
            else:
                raw = self.invoke_call(call)
            _bind(call.get("outputs", "output"), raw, named)
            for name in call.get("mutated", ()):  # a copy passed to an in-place call, else a swapped tensor
                # (a parameter's .grad is a copy the interpreter made, also when the value was given)
                given = name in values and name not in self.parameter_nodes
                value = self.passed.get(name, values.get(name)) if given else self.mutated(name)
                if value is not None:
                    named[f"state.{name}"] = value
        finally:
            self.overrides = {}
        return named

    def mutated(self, name: str) -> Any:
        """The value after the call of a mutated tensor (see the module docstring)."""
        if name in self.parameter_nodes:
            return self.parameter_nodes[name].grad
        if name in self.passed:
            return self.passed[name]
        if self.module is not None:
            owner, attr = _owner(self.module, name)
            value = getattr(owner, attr, None)
            if value is not None:
                return value
        return self.leaves.get(name)

    def holder(self, name: str, parameters: tuple[str, ...]) -> Any:
        """The tensor whose ``.grad`` receives the gradient of input ``name`` (None if none)."""
        if name in parameters and self.module is not None:
            owner, attr = _owner(self.module, name)
            return getattr(owner, attr, None)
        return self.leaves.get(name)

    def grad(self, name: str, parameters: tuple[str, ...]) -> Any:
        """The gradient of input ``name`` (zeros when it received none)."""
        torch = _torch()
        holder = self.holder(name, parameters)
        if holder is None:
            return None
        return holder.grad if holder.grad is not None else torch.zeros_like(holder)


def _invoker_class() -> Any:
    torch = _torch()

    class Invoker(torch.nn.Module):
        """Holds the module under test as ``inner`` so that ``functional_call`` can swap its
        parameters and buffers while the interpreter evaluates the call."""

        def __init__(self, interp: CallInterpreter, call: dict[str, Any]):
            super().__init__()
            self.inner = interp.module
            self._interp, self._call = interp, call

        def forward(self) -> Any:
            return self._interp.invoke_call(self._call)

    return Invoker


def _Invoker(interp: CallInterpreter, call: dict[str, Any]) -> Any:
    return _invoker_class()(interp, call)


def _bind(pattern: Any, value: Any, named: dict[str, Any]) -> None:
    """Name the parts of a call's result by ``pattern`` (see the module docstring)."""
    if pattern is None:
        return
    if isinstance(pattern, str):
        named[pattern] = value
        return
    if isinstance(pattern, list):
        # A single value binds the first name (MaxPool without return_indices returns one tensor);
        # a name left unbound is reported missing by the comparison, not here.
        parts = list(value) if isinstance(value, (tuple, list)) else [value]
        for p, v in zip(pattern, parts):
            _bind(p, v, named)
        return
    if isinstance(pattern, dict) and "packed" in pattern:
        for field_name, name in pattern["packed"].items():
            _bind(name, getattr(value, field_name), named)
        return
    raise ValueError(f"unknown output pattern {pattern!r}")


def _float_tensor(value: Any) -> bool:
    return _torch().is_tensor(value) and value.is_floating_point()


def _roots(named: dict[str, Any], cotangents: dict[str, np.ndarray], device_of: Any = None,
           requires_grad: bool = True) -> tuple[list[str], list[Any], list[Any]]:
    """(output names, output tensors, cotangent tensors) of every output that has a cotangent of
    its shape (and requires grad, when ``requires_grad``)."""
    names, roots, grads = [], [], []
    for name, cot in cotangents.items():
        t = named.get(name)
        if not _float_tensor(t) or tuple(t.shape) != tuple(cot.shape):
            continue  # a wrong output shape is reported by the comparison, not here
        if requires_grad and not t.requires_grad:
            continue
        names.append(name)
        roots.append(t)
        grads.append(_fresh(np.asarray(cot, dtype=np.float64)).to(device=t.device, dtype=t.dtype))
    return names, roots, grads


def _random_choices(call: dict[str, Any], named: dict[str, Any], interp: CallInterpreter, device: str,
                    values: dict[str, Any] | None = None, replay: bool = True,
                    logical: bool = False) -> dict[str, Any]:
    """The random choices the call made (``call["random"]``), as tensors (``values``: the inputs a
    transform received, read by the ``ratio`` rule; ``replay``: seed-replayed rules allowed)."""
    torch = _torch()
    out: dict[str, Any] = {}
    for choice, rule in (call.get("random") or {}).items():
        kind = rule.get("rule")
        if kind == "nonzero":
            out[choice] = named[rule["of"]].detach() != 0
        elif kind == "ratio":
            over = (values or {}).get(rule["over"])
            over = interp.tensor(rule["over"]) if over is None else over
            out[choice] = named[rule["of"]].detach().double() / over.detach().double()
        elif kind == "value":
            of = rule["of"]
            value = named.get(of) if isinstance(of, str) else interp.node(of)
            out[choice] = value
        elif kind in ("rand", "bernoulli"):
            if not replay:
                raise NotImplementedError(f"the random choices of rule {kind!r} are replayed from the call's seed, "
                                          "which a transform's random draws do not follow")
            torch.manual_seed(int(call["seed"]))
            if kind == "rand":
                out[choice] = torch.rand(*rule["shape"], dtype=interp.dtype, device=device)
            else:
                keep = []
                for d in rule["draws"]:
                    dims = list(range(len(d["shape"])))
                    # dropout on a tensor laid out as the layer's was (stored as shape, viewed through
                    # "view"): CUDA's fused kernel assigns its draws in memory order when it vectorises
                    # and in the view's logical order when it does not (an odd number of elements);
                    # the CPU's always in memory order. The mask is then read back in stored order
                    # and through "perm" in the reference's order.
                    view = list(d.get("view", dims))
                    ones = torch.ones(d["shape"], dtype=torch_dtype(d["dtype"]), device=device).permute(*view)
                    if logical:  # (under torch.func, dropout draws a fresh tensor in the view's logical order)
                        ones = ones.contiguous()
                    kept = (torch.nn.functional.dropout(ones, d["p"], True) != 0).permute(*np.argsort(view).tolist())
                    keep.append(kept.permute(*d.get("perm", dims)).reshape(-1))
                out[choice] = torch.cat(keep)
        else:
            raise ValueError(f"unknown random-choice rule {rule!r}")
    return out


def _export(value: Any) -> tuple[np.ndarray, str]:
    torch = _torch()
    if value is None:
        return np.zeros(0), "float64"
    return to_numpy(value) if torch.is_tensor(value) else _plain(value)


def _export_choices(choices: dict[str, Any], interp: CallInterpreter,
                    prefix: str = "") -> dict[str, tuple[np.ndarray, str]]:
    out: dict[str, tuple[np.ndarray, str]] = {}
    for choice, value in choices.items():
        if value is None:
            out[f"{prefix}random.{choice}"] = (np.zeros(0), str(interp.dtype).replace("torch.", ""))
        elif value.dtype == _torch().bool:
            out[f"{prefix}random.{choice}"] = (value.cpu().numpy().copy(), "bool")
        elif value.dtype == _torch().float64 and value.dtype != interp.dtype:
            out[f"{prefix}random.{choice}"] = (value.cpu().numpy().copy(), "float64")
        else:
            out[f"{prefix}random.{choice}"] = to_numpy(value)
    return out


def run_vjp(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
             cotangents: dict[str, np.ndarray], synchronise: Callable[[], None]) -> dict[str, tuple[np.ndarray, str]]:
    """The plain call, and its backward when cotangents are given."""
    torch = _torch()
    named = interp.call(call)
    synchronise()
    out = _export_choices(_random_choices(call, named, interp, interp.device), interp)
    parameters = tuple(call.get("parameters", ()))
    if cotangents and call.get("grad_init"):
        for name in requires_grad:  # accumulate: every leaf that requires grad already holds a gradient
            holder = interp.holder(name, parameters)
            if holder is not None and holder.requires_grad:
                g = initial_grad(call["grad_init"], name, holder.shape)
                holder.grad = _fresh(g).to(device=holder.device, dtype=holder.dtype)
    _, roots, grads = _roots(named, cotangents)
    if roots:
        torch.autograd.backward(roots, grads)
        synchronise()
    for name, value in named.items():
        if value is not None:
            out[name] = to_numpy(value) if torch.is_tensor(value) else _plain(value)
    for name in requires_grad:
        g = interp.grad(name, parameters)
        if g is not None:
            out[f"grad.{name}"] = to_numpy(g)
    for name in call.get("mutated", ()):
        value = interp.mutated(name)
        if value is not None:
            out[f"state.{name}"] = to_numpy(value)
    return out


def _plain(value: Any) -> tuple[np.ndarray, str]:
    """A non-tensor result (a Python number or list) as an array."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64), "float64"
    if arr.dtype.kind == "b":
        return arr, "bool"
    return arr.astype(np.int64), "int64"
