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
function: compositions such as a pack/pad round trip), ``{"literal": value}`` (value as is),
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

Derivative *modes* (``"mode": {"kind": ..., "seed": s, "tier": tier, ...}``; absent: the plain
call and its backward, ``vjp``). Every array a mode needs is generated from the node's seed by the
NumPy functions below (``mode_values``, ``vmap_slice``), so that the reference and a repro script
draw the same ones:

- ``jvp``: forward-mode AD (``torch.autograd.forward_ad``): every input that requires grad, parameters
  included, gets the tangent ``mode_values(seed, "tangent." + name, ...)``; the results are the
  outputs and ``jvp.<output>`` (J·t).
- ``vjp2``: second order. With the cotangents g and the directions v (``direction_values``),
  the derivatives of s = ⟨Jᵀg, v⟩ with respect to every input (``d2.<input>``, = H_g·v) and to g
  (``d2.cotangent.<output>``, = J·v), and the first-order ``grad.<input>`` (Jᵀg) on the way, by
  one ``composition``: ``reverse-over-reverse`` (double backward,
  ``torch.autograd.grad(create_graph=True)``), ``forward-over-reverse`` (``torch.func.jvp`` of
  ``torch.func.vjp``) or ``reverse-over-forward`` (``torch.func.grad`` of ``torch.func.jvp``, the
  nested forward mode).
- ``vmap``: ``batch`` cases stacked along a new dim, ``torch.func.vmap`` over
  ``torch.func.functional_call``: slice 0 is the case, slice b its seeded permutation
  (``vmap_slice``); each input is stacked at ``in_dim[name]`` (a mutated buffer always, a
  parameter unless listed in ``shared``: shared parameters are the case's own, unbatched), in the
  case's layout with the batch dim outermost; ``inner`` is ``"forward"`` or ``"vjp"``
  (``torch.func.vjp`` with the slice's cotangents inside); ``randomness`` is vmap's flag. Results:
  ``vmap[b].<name>`` for every result name of the slice.

A transform that torch cannot apply to the call (no forward-mode formula, double backward not
implemented, no batching rule, data-dependent control flow under vmap) raises
``NotImplementedError`` with torch's message (``transform_unsupported``).
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


# -- arrays the modes and the accumulation need, drawn from seeds (NumPy only: the reference draws the same)

def _seed(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) % 2**32, zlib.crc32(name.encode())])


def short_values(values: np.ndarray, bits: int = 8) -> np.ndarray:
    """``values`` rounded to ``bits`` significant bits (half to even), magnitudes below 2^-8
    flushed to 0: exactly representable in float64, float32, float16 and bfloat16 alike."""
    values = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(values)
    short = np.ldexp(np.round(np.ldexp(mantissa, bits)), exponent - bits)
    return np.where(np.abs(short) < 2.0**-8, 0.0, short)


def mode_values(seed: int, name: str, shape: Any, tier: str = "float",
                layout: dict[str, Any] | None = None) -> np.ndarray:
    """An array a mode needs (a tangent, a second-order direction), drawn from ``seed`` and its
    ``name``: integers in [-2, 2] in the exact tier, else normals on 8 significant bits. Along the
    stride-0 dims of an ``expanded`` layout it is constant (the tangent of an expanded tensor)."""
    shape = tuple(int(n) for n in shape)
    rng = _seed(seed, name)
    values = (rng.integers(-2, 3, size=shape).astype(np.float64) if tier == "exact"
              else short_values(rng.standard_normal(shape)))
    if layout and layout.get("kind") == "expanded" and values.size:
        index = tuple(slice(0, 1) if d in layout["dims"] else slice(None) for d in range(len(shape)))
        values = np.broadcast_to(values[index], shape).copy()
    return values


def direction_values(seed: int, name: str, values: np.ndarray, tier: str = "float",
                     layout: dict[str, Any] | None = None) -> np.ndarray:
    """The second-order direction v of input ``name`` (``values``): ``mode_values`` scaled element
    by element by a power of two at the magnitude of the input (2^ceil(log2(|x| + 2^-10)), within
    [2^-10, 2^12]), so that a small step along v moves every element by a like fraction of itself
    and x + h·v is exact for a power-of-two h."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exponent = np.ceil(np.log2(np.abs(values) + 2.0**-10))
        exponent = np.clip(np.where(np.isfinite(exponent), exponent, 0.0), -10, 12)
    return mode_values(seed, "direction." + name, values.shape, tier, layout) * np.exp2(exponent)


def initial_grad(grad_init: dict[str, Any], name: str, shape: Any) -> np.ndarray:
    """The ``.grad`` an accumulating case presets on leaf ``name``: integers in [-3, 3] times its
    ``scale`` (a power of two), so that G + grad is exact wherever the gradient's sum is."""
    rng = _seed(grad_init["seed"], "grad." + name)
    scale = float(grad_init["scale"].get(name, 1.0))
    return rng.integers(-3, 4, size=tuple(int(n) for n in shape)).astype(np.float64) * scale


def vmap_slice(seed: int, b: int, name: str, values: np.ndarray, layout: dict[str, Any] | None = None) -> np.ndarray:
    """Slice ``b`` of a vmap case: slice 0 is the case's own ``values``, slice b >= 1 a seeded
    permutation of them (the same values, so every constraint on a value's range still holds; the
    structure of an ``expanded`` layout is kept by permuting its distinct values only)."""
    values = np.asarray(values)
    if b == 0 or values.size <= 1:
        return values.copy()
    rng = _seed(seed, f"slice{b}.{name}")
    if layout and layout.get("kind") == "expanded":
        index = tuple(slice(0, 1) if d in layout["dims"] else slice(None) for d in range(values.ndim))
        core = values[index]
        return np.broadcast_to(rng.permutation(core.reshape(-1)).reshape(core.shape), values.shape).copy()
    return rng.permutation(values.reshape(-1)).reshape(values.shape)


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
            return self.invoke(resolve(inner["target"]), [self.node(n) for n in inner.get("args", ())],
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


def run_call(call: dict[str, Any], inputs: dict[str, np.ndarray], *, dtype: str, device: str = "cpu",
             types: dict[str, str] | None = None, layouts: dict[str, dict[str, Any]] | None = None,
             requires_grad: tuple[str, ...] = (), cotangents: dict[str, np.ndarray] | None = None,
             build: Callable[[Any, dict[str, Any]], Any] | None = None,
             invoke: Callable[[Any, list[Any], dict[str, Any]], Any] | None = None,
             synchronise: Callable[[], None] = lambda: None) -> dict[str, tuple[np.ndarray, str]]:
    """Run ``call`` and return every compared tensor by qualified name: outputs by their names,
    ``grad.<input>``, ``state.<mutated>`` and ``random.<choice>``, each as (array, dtype name); in
    a mode (``call["mode"]``, see the module docstring) that mode's results.

    Backward runs when cotangents are given: one ``torch.autograd.backward`` over every output
    that has a cotangent of its shape and requires grad (after presetting ``.grad`` when the call
    has ``grad_init``).
    """
    interp = CallInterpreter(device, dtype, inputs, types or {}, layouts or {}, frozenset(requires_grad),
                             build=build, invoke=invoke)
    mode = call.get("mode") or {}
    kind = mode.get("kind", "vjp")
    runners = {"vjp": _run_vjp, "jvp": _run_jvp, "vjp2": _run_vjp2, "vmap": _run_vmap}
    if kind not in runners:
        raise ValueError(f"unknown mode {kind!r}")
    if kind == "vjp":
        return _run_vjp(interp, call, tuple(requires_grad), cotangents or {}, synchronise)
    try:
        return runners[kind](interp, call, tuple(requires_grad), cotangents or {}, synchronise)
    except NotImplementedError:
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if transform_unsupported(text):
            raise NotImplementedError(f"{kind}: {text}") from exc
        raise


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


def _run_vjp(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
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


def _differentiable(interp: CallInterpreter, requires_grad: tuple[str, ...]) -> list[str]:
    """The inputs a transform differentiates: float tensors that require grad."""
    return [n for n in requires_grad if n in interp.inputs and (interp.types.get(n) or "float") == "float"
            and np.asarray(interp.inputs[n]).dtype.kind == "f"]


def _direction(interp: CallInterpreter, seed: int, tier: str, name: str, like: Any) -> Any:
    """The second-order direction of input ``name``, stored like the input (``like``)."""
    layout = interp.layouts.get(name, {"kind": "contiguous"})
    values = direction_values(seed, name, interp.inputs[name], tier, layout)
    return materialise(values, layout, like.dtype, like.device)


def _run_jvp(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
             cotangents: dict[str, np.ndarray], synchronise: Callable[[], None]) -> dict[str, tuple[np.ndarray, str]]:
    """Forward mode: J·t for tangents t of every differentiable input (``jvp.<output>``)."""
    torch = _torch()
    fwad = torch.autograd.forward_ad
    mode = call["mode"]
    interp.setup(call)
    out: dict[str, tuple[np.ndarray, str]] = {}
    with fwad.dual_level():
        values = {}
        for name in _differentiable(interp, requires_grad):
            primal = interp.tensor(name).detach()
            layout = interp.layouts.get(name, {"kind": "contiguous"})
            t = mode_values(mode["seed"], "tangent." + name, primal.shape, mode.get("tier", "float"), layout)
            values[name] = fwad.make_dual(primal, materialise(t, layout, primal.dtype, primal.device))
        named = interp.run_with(call, values)
        synchronise()
        primals: dict[str, Any] = {}
        for name, value in named.items():
            if not torch.is_tensor(value):
                if value is not None:
                    out[name] = _plain(value)
                continue
            primal, tangent = fwad.unpack_dual(value)
            primals[name] = primal
            out[name] = to_numpy(primal)
            if primal.is_floating_point() and not name.startswith("state."):
                out[f"jvp.{name}"] = to_numpy(tangent if tangent is not None else torch.zeros_like(primal))
        choices = _random_choices(call, primals, interp, interp.device,
                                  {k: fwad.unpack_dual(v).primal for k, v in values.items()})
    out.update(_export_choices(choices, interp))
    return out


def _fresh_buffers(interp: CallInterpreter, call: dict[str, Any], taken: Any) -> dict[str, Any]:
    """Private copies of the mutated module buffers (a torch.func transform may not mutate a tensor
    it captured): made inside the transformed function, read back as ``state.<name>``."""
    mutated = set(call.get("mutated", ()))
    return {p: interp.tensor(p).detach().clone() for p in interp.module_paths(call) if p in mutated and p not in taken}


def _run_vjp2(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
              cotangents: dict[str, np.ndarray], synchronise: Callable[[], None]) -> dict[str, tuple[np.ndarray, str]]:
    """Second order: the derivatives of s = ⟨Jᵀg, v⟩ (see the module docstring)."""
    torch = _torch()
    mode = call["mode"]
    composition = mode.get("composition", "reverse-over-reverse")
    seed, tier = mode["seed"], mode.get("tier", "float")
    diff = _differentiable(interp, requires_grad)
    out: dict[str, tuple[np.ndarray, str]] = {}
    if composition == "reverse-over-reverse":
        named = interp.call(call)
        synchronise()
        parameters = tuple(call.get("parameters", ()))
        holders = {n: interp.holder(n, parameters) for n in diff}
        holders = {n: h for n, h in holders.items() if h is not None and h.requires_grad}
        names, roots, gs = _roots(named, cotangents)
        gs = [g.requires_grad_(True) for g in gs]
        leaves = list(holders.values())
        first = (torch.autograd.grad(roots, leaves, gs, create_graph=True, allow_unused=True)
                 if roots and leaves else [None] * len(leaves))
        dirs = {n: _direction(interp, seed, tier, n, h) for n, h in holders.items()}
        terms = [(f * dirs[n]).sum() for n, f in zip(holders, first) if f is not None]
        s = sum(terms) if terms else None
        wrt = leaves + gs
        second = (torch.autograd.grad(s, wrt, allow_unused=True) if s is not None and s.requires_grad
                  else [None] * len(wrt))
        synchronise()
        for (n, h), f, d in zip(holders.items(), first, second):
            out[f"grad.{n}"] = to_numpy(f if f is not None else torch.zeros_like(h))
            out[f"d2.{n}"] = to_numpy(d if d is not None else torch.zeros_like(h))
        for name, r, d in zip(names, roots, second[len(leaves):]):
            out[f"d2.cotangent.{name}"] = to_numpy(d if d is not None else torch.zeros_like(r))
        for name, value in named.items():
            if value is not None:
                out[name] = _export(value)
        for name in call.get("mutated", ()):
            value = interp.mutated(name)
            if value is not None:
                out[f"state.{name}"] = to_numpy(value)
        out.update(_export_choices(_random_choices(call, named, interp, interp.device), interp))
        return out
    interp.setup(call)
    primals = {n: interp.tensor(n).detach() for n in diff}
    dirs = {n: _direction(interp, seed, tier, n, p) for n, p in primals.items()}
    like = {n: t for n, t in primals.items()}
    cots: dict[str, Any] = {}

    def forward(vals: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        named = interp.run_with(call, {**vals, **_fresh_buffers(interp, call, vals)})
        outs = {}
        for name, cot in cotangents.items():
            t = named.get(name)
            if _float_tensor(t) and tuple(t.shape) == tuple(cot.shape):
                outs[name] = t
                if name not in cots:
                    cots[name] = _fresh(np.asarray(cot, dtype=np.float64)).to(device=t.device, dtype=t.dtype)
        aux = {k: v for k, v in named.items() if torch.is_tensor(v)}
        return outs, aux

    if composition == "forward-over-reverse":
        def first_order(vals: dict[str, Any]) -> tuple[tuple[dict[str, Any], dict[str, Any]], dict[str, Any]]:
            outs, vjp_fn, aux = torch.func.vjp(forward, vals, has_aux=True)
            grads = vjp_fn({k: cots[k] for k in outs})[0] if outs else {n: torch.zeros_like(v) for n, v in vals.items()}
            return (grads, outs), aux

        (grads, outs), (hv, jv), aux = torch.func.jvp(first_order, (primals,), (dirs,), has_aux=True)
    elif composition == "reverse-over-forward":
        def pairing(vals: dict[str, Any], tans: dict[str, Any]) -> tuple[Any, tuple[dict[str, Any], dict[str, Any]]]:
            outs, jv, aux = torch.func.jvp(forward, (vals,), (tans,), has_aux=True)
            zero = torch.zeros((), dtype=interp.dtype, device=interp.device)
            total = sum(((jv[k] * cots[k]).sum() for k in jv), zero)
            return total, (jv, aux)

        (hv, grads), (jv, aux) = torch.func.grad(pairing, argnums=(0, 1), has_aux=True)(primals, dirs)
    else:
        raise ValueError(f"unknown composition {composition!r}")
    synchronise()
    for n, p in like.items():
        out[f"grad.{n}"] = to_numpy(grads.get(n, torch.zeros_like(p)))
        out[f"d2.{n}"] = to_numpy(hv.get(n, torch.zeros_like(p)))
    for name, t in jv.items():
        out[f"d2.cotangent.{name}"] = to_numpy(t)
    for name, value in aux.items():
        out[name] = to_numpy(value)
    out.update(_export_choices(_random_choices(call, aux, interp, interp.device, primals, logical=True), interp))
    return out


def _stacked_layout(layout: dict[str, Any], ndim: int, at: int) -> dict[str, Any]:
    """The layout of a case's input stacked along a new dim ``at``: the case's layout for its own
    dims, the batch dim stored outermost."""
    kind = layout.get("kind", "contiguous")
    shift = [d if d < at else d + 1 for d in range(ndim)]
    if kind in ("channels_last", "permuted"):
        return {"kind": "permuted", "perm": [at, *[shift[d] for d in layout["perm"]]]}
    if kind == "strided":
        step = list(layout["step"])
        return {"kind": "strided", "step": step[:at] + [1] + step[at:]}
    if kind == "expanded":
        return {"kind": "expanded", "dims": [shift[d] for d in layout["dims"]]}
    return {"kind": "permuted", "perm": [at, *shift]} if at else {"kind": "contiguous"}


def _run_vmap(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
              cotangents: dict[str, np.ndarray], synchronise: Callable[[], None]) -> dict[str, tuple[np.ndarray, str]]:
    """``batch`` cases at once through ``torch.func.vmap`` (see the module docstring)."""
    torch = _torch()
    mode = call["mode"]
    seed, batch, out_dim = mode["seed"], int(mode["batch"]), int(mode.get("out_dim", 0))
    in_dim, shared = dict(mode.get("in_dim", {})), set(mode.get("shared", ()))
    fixed = set(mode.get("fixed", ()))  # inputs every slice repeats unpermuted (a mask under a causal hint)
    interp.setup(call)
    interp.in_vmap = True
    paths = set(interp.module_paths(call))
    mutated = set(call.get("mutated", ()))
    stacked: dict[str, Any] = {}
    for name, values in interp.inputs.items():
        kind = interp.types.get(name) or ("bool" if values.dtype.kind == "b" else
                                          "int64" if values.dtype.kind in "iu" else "float")
        if kind == "int_list" or (name in shared and name in paths and name not in mutated):
            continue
        at = int(in_dim.get(name, 0))
        layout = interp.layouts.get(name, {"kind": "contiguous"})
        slices = [vmap_slice(seed, b, name, values, layout) if kind == "float" and name not in fixed
                  else np.asarray(values)
                  for b in range(batch)]
        array = np.stack(slices, axis=at)
        if kind == "float":
            stacked[name] = materialise(array, _stacked_layout(layout, np.ndim(values), at), interp.dtype,
                                        interp.device)
        else:
            stacked[name] = _fresh(np.asarray(array, dtype=np.int64 if kind == "int64" else bool)).to(interp.device)
    diff = [n for n in _differentiable(interp, requires_grad) if n in stacked or n in paths]
    inner = mode.get("inner", "forward") if cotangents and diff else "forward"
    diff_vals = {n: stacked[n] if n in stacked else interp.tensor(n).detach() for n in diff}
    fixed_vals = {n: t for n, t in stacked.items() if n not in diff_vals}
    cots = {k: _fresh(np.stack([vmap_slice(seed, b, "cotangent." + k, v) for b in range(batch)])).to(
        device=interp.device, dtype=interp.dtype) for k, v in cotangents.items()} if inner == "vjp" else {}

    def per_slice(d: dict[str, Any], fixed: dict[str, Any], g: dict[str, Any]) -> dict[str, Any]:
        def forward(vals: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            # A buffer the call updates in place is the slice's own copy, made inside the transform
            # (torch.func.vjp may not mutate a tensor it captured).
            own = {k: (v.clone() if k in mutated and k in paths else v) for k, v in fixed.items()}
            named = interp.run_with(call, {**own, **vals})
            outs = {k: named[k] for k in g
                    if _float_tensor(named.get(k)) and tuple(named[k].shape) == tuple(g[k].shape)}
            if not outs:  # no output of the cotangents' shapes (reported by the comparison): nothing to pull
                outs = {"": torch.zeros((), dtype=interp.dtype, device=interp.device)}
            return outs, {k: v for k, v in named.items() if torch.is_tensor(v)}

        if inner == "vjp" and d:
            outs, vjp_fn, aux = torch.func.vjp(forward, d, has_aux=True)
            grads = vjp_fn({k: g[k] if k else torch.zeros_like(v) for k, v in outs.items()})[0]
            result = {**aux, **{f"grad.{n}": v for n, v in grads.items()}}
        else:
            _, result = forward(d)
        choices = _random_choices(call, result, interp, interp.device, {**fixed, **d}, replay=False)
        result.update({f"random.{k}": v for k, v in choices.items() if v is not None})
        return result

    dims = ({n: (in_dim.get(n, 0) if n in stacked else None) for n in diff_vals},
            {n: in_dim.get(n, 0) for n in fixed_vals}, {k: 0 for k in cots})
    results = torch.func.vmap(per_slice, in_dims=dims, out_dims=out_dim,
                              randomness=mode.get("randomness", "error"))(diff_vals, fixed_vals, cots)
    synchronise()
    out: dict[str, tuple[np.ndarray, str]] = {}
    for name, value in results.items():
        for b in range(batch):
            if value.dim() <= out_dim or value.shape[out_dim] != batch:  # not batched as asked: as it came
                out[f"vmap[{b}].{name}"] = to_numpy(value)
                continue
            part = value.select(out_dim, b)
            if name.startswith("random.") and part.dtype == torch.float64 and interp.dtype != torch.float64:
                out[f"vmap[{b}].{name}"] = (part.cpu().numpy().copy(), "float64")
            else:
                out[f"vmap[{b}].{name}"] = to_numpy(part)
    return out


def _plain(value: Any) -> tuple[np.ndarray, str]:
    """A non-tensor result (a Python number or list) as an array."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64), "float64"
    if arr.dtype.kind == "b":
        return arr, "bool"
    return arr.astype(np.int64), "int64"
